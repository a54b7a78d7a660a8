"""The paper's experiment end to end: distil, train students, calibrate, evaluate.

:func:`run_experiment` is what the ``distcal`` command runs. For every seed it distils the
training split with plain distribution matching and with the MDT mask, takes a random real
subset of the same size, trains a plain and a mixup student on each of the three sets, and
calibrates every student in two regimes:

- **held-out**: temperature scaling and the default masked temperature scaling
  (``mask_ratio="auto"``, with the network and with logits only) fitted on a held-out split of
  real images;
- **training**: only the student's own training images are available (the distilled set), as
  when a distilled set is all one has. Temperature scaling has no optimum there; masked
  temperature scaling is fitted on masked copies of those images, with fixed ratios (the
  paper's 0.1 among them) and with its default ``mask_ratio="auto"``, which reads from the
  images that they are training data and applies the half-accuracy rule.

Every student and calibrator is scored on the test split, which chooses nothing; paired
bootstrap intervals over the test images compare the calibrators that matter per seed. A
network trained on the whole training split is the baseline of the maximum-logit diagnostics.
Results are written as CSV and JSON (one row per seed, so that every table can be recomputed),
with reliability diagrams and maximum-logit histograms as PNG files; finished seeds are saved
as they complete, so an interrupted run resumes where it stopped. Each seed runs on a fixed
number of torch threads (``threads``), which with the seed fixes every floating-point sum:
a rerun of a seed on the same machine reproduces its rows exactly.

The package has one module per concept: ``schema`` (what a score and a row are: each score's
key, titles, scale and function, the row keys and the regimes' names), ``settings`` (profiles,
the recipe of each dataset, the demo's sizes, the rows shown and compared), ``pipeline`` (one
seed: split, distil, students, calibrate), ``scores`` (the score columns and paired
comparisons), ``report`` (summaries over seeds and the one table
renderer), ``files`` (per-seed files, resuming, the CSV and JSON tables), ``figures`` and
``runner`` (seeds in sequence or in parallel). The demo (``distcal demo``) and the benchmarks
use the same settings, scores and renderer. Two modules serve the user's own logits rather
than the experiment: ``logit_files`` (logits and labels saved by other tools, read and checked)
and ``calibrate`` (``distcal calibrate`` and ``distcal apply``: fit on a split, score with
bootstrap intervals, write the calibrator, the diagram and the probabilities). Two serve
distilled sets made by any tool: ``evaluate`` (``distcal evaluate``: students of the set and of
random real images, calibrated and scored over students, resumable) and ``report_card`` (its
self-contained HTML page).
"""

from .evaluate import CALIBRATORS, CalibratorRow, evaluate_distilled, summarise_students
from .report import format_diagnostics, format_summary, summarise, summarise_diagnostics
from .runner import run_experiment
from .schema import SCORES, RowKey, Score
from .settings import (
    COMPARISONS,
    PROFILES,
    RECIPE_COMPARISONS,
    TRANSFER_RECIPES,
    Profile,
    parse_seeds,
)
from .settings import MAIN_ROWS as MAIN_ROWS
from .settings import METRICS as METRICS

__all__ = [
    "CALIBRATORS",
    "COMPARISONS",
    "PROFILES",
    "RECIPE_COMPARISONS",
    "SCORES",
    "TRANSFER_RECIPES",
    "CalibratorRow",
    "Profile",
    "RowKey",
    "Score",
    "evaluate_distilled",
    "format_diagnostics",
    "format_summary",
    "parse_seeds",
    "run_experiment",
    "summarise",
    "summarise_diagnostics",
    "summarise_students",
]
