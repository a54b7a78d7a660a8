"""The paper's experiment end to end: distil, train students, calibrate, evaluate.

:func:`run_experiment` is what the ``distcal`` command runs. For every seed it distils the
training split with plain distribution matching and with the MDT mask, takes a random real
subset of the same size, trains a plain and a mixup student on each of the three sets, and
calibrates every student in two regimes:

- **held-out**: temperature scaling and the default masked temperature scaling
  (``mask_ratio="auto"``, with the network and with logits only) fitted on a held-out split of
  real images;
- **strict**: only the student's own training images are available (the distilled set), as
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
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed

from ._device import one_thread_in_workers
from ._files import atomic_write, atomic_write_text
from ._progress import progress
from .calibration import MaskedTemperatureScaling, TemperatureScaling
from .distill import (
    MDTTrainer,
    StudentClassifier,
    channel_statistics,
    load_dataset,
    masking_spread,
    max_logit_statistics,
    normalize,
    stratified_split,
)
from .exceptions import DistcalWarning
from .metrics import (
    bootstrap_difference,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
)

__all__ = [
    "COMPARISONS",
    "PROFILES",
    "Profile",
    "format_diagnostics",
    "format_summary",
    "parse_seeds",
    "run_experiment",
    "summarise",
    "summarise_diagnostics",
]

METRICS = ("accuracy", "ece10", "ece15", "nll", "brier", "confidence")

#: Calibrator rows shown in the printed table (the CSV files hold every row).
MAIN_ROWS = (
    ("none", "-"),
    ("TS", "held-out"),
    ("MTS auto", "held-out"),
    ("TS", "strict"),
    ("MTS 0.1", "strict"),
    ("MTS auto", "strict"),
)

#: Pairs compared on every student of a distilled set (DM, MDT) of every seed by a paired
#: bootstrap over the test images (test ECE-15 of the first minus the second).
COMPARISONS = (
    (("MTS auto", "strict"), ("none", "-")),
    (("MTS auto", "strict"), ("TS", "held-out")),
    (("MTS auto", "held-out"), ("TS", "held-out")),
)


@dataclass(frozen=True)
class Profile:
    """The sizes of an experiment.

    Attributes
    ----------
    ipc : int
        Images per class of the distilled and the random real sets.
    width : int
        Channels of the ConvNet (distillation and students).
    iterations : int
        Distribution-matching iterations.
    batch_real : int
        Real images per class per distillation iteration.
    student_epochs : int
        Training epochs of every student.
    mixup_alpha : float
        Mixup's Beta parameter for the mixup students.
    mdt_ratio : float
        Mask ratio of the MDT distillation (masking both batches, as docs/benchmarks.md finds
        least harmful).
    strict_ratios : tuple of float
        Fixed ratios of masked temperature scaling in the strict regime (rows "MTS 0.1", ...;
        the paper's ratio is 0.1). The row "MTS auto" uses ``mask_ratio="auto"``.
    full_data_steps : int
        SGD steps (batches of 256) of the network trained on the whole training split, the
        baseline of the maximum-logit diagnostics.
    bootstrap_resamples : int
        Resamples of the paired bootstrap intervals over the test images.
    """

    ipc: int = 10
    width: int = 32
    iterations: int = 500
    batch_real: int = 64
    student_epochs: int = 300
    mixup_alpha: float = 1.0
    mdt_ratio: float = 0.1
    strict_ratios: tuple = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    full_data_steps: int = 600
    bootstrap_resamples: int = 1000


PROFILES = {
    # Seconds: checks that the pipeline runs end to end; its numbers mean nothing.
    "smoke": Profile(
        ipc=2,
        width=8,
        iterations=5,
        batch_real=16,
        student_epochs=10,
        strict_ratios=(0.1, 0.5),
        full_data_steps=10,
        bootstrap_resamples=20,
    ),
    # Minutes on 2 CPU cores for digits; tens of minutes for Fashion-MNIST.
    "small": Profile(),
    # The published evaluation settings (ConvNet-128, 1000 student epochs); meant for a GPU.
    "paper": Profile(
        width=128, iterations=1000, batch_real=256, student_epochs=1000, full_data_steps=5000
    ),
}

_DATASETS = {
    # depth of the ConvNet, augmentation strategy
    "digits": {"depth": 2, "augment": "color_crop_cutout_scale_rotate"},
    "fashion-mnist": {"depth": 3, "augment": "dsa"},
}


def parse_seeds(text: str) -> list[int]:
    """Read seeds from the command line: ``"3"`` (seeds 0, 1, 2), ``"3-12"`` or ``"0,4,7"``.

    Parameters
    ----------
    text : str
        A count ``N`` (the seeds 0 to N-1), an inclusive range ``A-B``, or a comma-separated
        list of non-negative integers (``"5,"`` is the single seed 5).

    Returns
    -------
    list of int
        The seeds, in the order given, without repetitions.

    Examples
    --------
    >>> parse_seeds("3"), parse_seeds("3-6"), parse_seeds("0,4,7"), parse_seeds("5,")
    ([0, 1, 2], [3, 4, 5, 6], [0, 4, 7], [5])
    """
    text = text.strip()
    problem = (
        f"seeds must be a count N (seeds 0..N-1), a range A-B or a list A,B,C of non-negative "
        f"integers; got {text!r}"
    )
    try:
        if "," in text:
            seeds = [int(part) for part in text.split(",") if part.strip()]
        elif "-" in text.lstrip("-"):
            first, last = (int(part) for part in text.split("-"))
            if last < first:
                raise ValueError(problem)
            seeds = list(range(first, last + 1))
        else:
            seeds = list(range(int(text)))
    except ValueError:
        raise ValueError(problem) from None
    if not seeds or min(seeds) < 0:
        raise ValueError(problem)
    return list(dict.fromkeys(seeds))


def _splits(data, seed: int):
    """Training, held-out calibration and test indices (fixed by ``seed``)."""
    if data.test_start is None:
        return stratified_split(data.labels, [0.6, 0.2, 0.2], random_state=seed)
    pool = torch.arange(data.test_start)
    train, cal = stratified_split(
        data.labels[pool], [data.test_start - 5000, 5000], random_state=seed
    )
    return pool[train], pool[cal], torch.arange(data.test_start, len(data.labels))


def _as_numpy(proba) -> np.ndarray:
    return np.asarray(
        proba.detach().cpu() if isinstance(proba, torch.Tensor) else proba, dtype=np.float64
    )


def _scores(y_true: np.ndarray, proba) -> dict:
    proba = _as_numpy(proba)
    return {
        "accuracy": float((proba.argmax(axis=1) == y_true).mean()),
        "ece10": expected_calibration_error(y_true, proba, n_bins=10),
        "ece15": expected_calibration_error(y_true, proba, n_bins=15),
        "nll": negative_log_likelihood(y_true, proba),
        "brier": brier_score(y_true, proba),
        "confidence": float(proba.max(axis=1).mean()),
    }


def _ece15(y_true, proba) -> float:
    return expected_calibration_error(y_true, proba, n_bins=15)


def _quietly(fit):
    """Run ``fit`` and return (result, warning messages) instead of printing warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DistcalWarning)
        result = fit()
    return result, [str(w.message).split(":", 1)[-1].strip()[:80] for w in caught]


def _calibrate(student, sets, y_test, profile: Profile, seed: int):
    """Every calibrator of the experiment on one student: rows and test probabilities."""
    net = student.network_
    X_train, y_train = sets["train"]
    X_cal, y_cal = sets["cal"]
    X_test = sets["test"]
    logits = {
        name: student.decision_function(X)
        for name, X in (("train", X_train), ("cal", X_cal), ("test", X_test))
    }
    rows, probabilities = [], {}

    def add(calibrator, regime, fitted, proba, notes=()):
        probabilities[calibrator, regime] = proba
        rows.append(
            {
                "calibrator": calibrator,
                "regime": regime,
                **_scores(y_test, proba),
                "temperature": getattr(fitted, "temperature_", None),
                "mask_ratio": getattr(fitted, "mask_ratio_", None),
                "masked_accuracy": getattr(fitted, "masked_accuracy_", None),
                "detected": getattr(fitted, "regime_", None) or "",
                "note": "; ".join(notes),
            }
        )

    add("none", "-", None, torch.softmax(logits["test"], dim=1))
    for regime, X, y, key in (
        ("held-out", X_cal, y_cal, "cal"),
        ("strict", X_train, y_train, "train"),
    ):
        ts, notes = _quietly(lambda y=y, key=key: TemperatureScaling().fit(logits[key], y))
        add("TS", regime, ts, ts.predict_proba(logits["test"]), notes)
        if regime == "strict":
            for ratio in profile.strict_ratios:
                fixed, notes = _quietly(
                    lambda ratio=ratio: MaskedTemperatureScaling(
                        ratio, model=net, random_state=seed
                    ).fit(X_train, y_train)
                )
                add(f"MTS {ratio}", regime, fixed, fixed.predict_proba(X_test), notes)
        # The default, as a user gets it: it reads the regime from the data.
        auto, notes = _quietly(
            lambda X=X, y=y: MaskedTemperatureScaling(model=net, random_state=seed).fit(X, y)
        )
        add("MTS auto", regime, auto, auto.predict_proba(X_test), notes)
        auto_logits, notes = _quietly(
            lambda y=y, key=key: MaskedTemperatureScaling(random_state=seed).fit(logits[key], y)
        )
        add(
            "MTS auto logits", regime, auto_logits, auto_logits.predict_proba(logits["test"]), notes
        )
    return rows, probabilities


def _comparisons(y_test, probabilities, seed: int, n_resamples: int) -> list[dict]:
    """Paired bootstrap intervals over the test images for the pairs of :data:`COMPARISONS`."""
    rows = []
    for first, second in COMPARISONS:
        diff = bootstrap_difference(
            _ece15,
            y_test,
            _as_numpy(probabilities[first]),
            _as_numpy(probabilities[second]),
            n_resamples=n_resamples,
            random_state=seed,
        )
        rows.append(
            {
                "first": " ".join(first),
                "second": " ".join(second),
                "metric": "ece15",
                "difference": float(diff.estimate),
                "low": float(diff.low),
                "high": float(diff.high),
            }
        )
    return rows


def _max_logit_diagnostics(net, images, test_images, seed: int) -> dict:
    spread = masking_spread(net, images, mask_ratio=0.3, n_masks=4, random_state=seed)
    from .calibration import module_logits

    test_logits = module_logits(net, test_images, batch_size=512)
    return {
        "train_clean": dict(spread.clean),
        "train_masked": dict(spread.masked),
        "spread_ratio": spread.spread_ratio,
        "test": dict(max_logit_statistics(test_logits)),
    }, spread


def _run_seed(data, dataset, profile: Profile, seed: int, device, verbose: bool, figures) -> dict:
    spec = _DATASETS[dataset]
    seconds = {}
    clock = time.perf_counter()

    def lap(stage):
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = seconds.get(stage, 0.0) + now - clock
        clock = now

    train, cal, test = _splits(data, seed)
    X_train, y_train = data.images[train], data.labels[train]
    mean, std = (s.float() for s in channel_statistics(X_train))
    cal_images = normalize(data.images[cal], mean, std)
    test_images = normalize(data.images[test], mean, std)
    y_cal, y_test = data.labels[cal].numpy(), data.labels[test].numpy()

    training_sets = {}
    for name, mask_ratio in (("DM", 0.0), ("MDT", profile.mdt_ratio)):
        trainer = MDTTrainer(
            "dm",
            ipc=profile.ipc,
            mask_ratio=mask_ratio,
            mask_apply_to="both",
            width=profile.width,
            depth=spec["depth"],
            iterations=profile.iterations,
            augment=spec["augment"],
            method_params={"batch_real": profile.batch_real},
            device=device,
            random_state=seed,
            verbose=verbose,
        ).fit(X_train, y_train)
        training_sets[name] = (trainer.images_, trainer.labels_)
    pick = stratified_split(y_train, [profile.ipc * data.n_classes], random_state=seed)[0]
    training_sets["real"] = (normalize(X_train[pick], mean, std), y_train[pick])
    lap("distillation")

    def student(images, labels, alpha, epochs):
        return StudentClassifier(
            width=profile.width,
            depth=spec["depth"],
            epochs=epochs,
            mixup_alpha=alpha,
            augment=spec["augment"],
            n_classes=data.n_classes,
            device=device,
            random_state=seed,
            verbose=verbose,
        ).fit(images, labels)

    rows, comparisons, diagnostics = [], [], {}
    for set_name, (images, labels) in training_sets.items():
        for student_name, alpha in (("plain", 0.0), ("mixup", profile.mixup_alpha)):
            fitted = student(images, labels, alpha, profile.student_epochs)
            lap("students")
            sets = {
                "train": (images, labels.numpy()),
                "cal": (cal_images, y_cal),
                "test": test_images,
            }
            calibrated, probabilities = _calibrate(fitted, sets, y_test, profile, seed)
            lap("calibration")
            key = {"seed": seed, "training_set": set_name, "student": student_name}
            rows += [{**key, **row} for row in calibrated]
            if set_name != "real":
                compared = _comparisons(y_test, probabilities, seed, profile.bootstrap_resamples)
                comparisons += [{**key, **row} for row in compared]
            lap("evaluation")
            if student_name == "plain":
                diagnostics[set_name], spread = _max_logit_diagnostics(
                    fitted.network_, images, test_images, seed
                )
                if figures is not None and set_name in ("DM", "real"):
                    figures[set_name] = (probabilities, spread)
                lap("evaluation")
    # The baseline of the paper's maximum-logit comparison: a network of the same architecture
    # trained on the whole training split, with the same recipe.
    full_images = normalize(X_train, mean, std)
    steps_per_epoch = math.ceil(len(y_train) / 256)
    full = student(
        full_images, y_train, 0.0, max(1, math.ceil(profile.full_data_steps / steps_per_epoch))
    )
    lap("full-data network")
    diagnostics["full"], _ = _max_logit_diagnostics(full.network_, full_images, test_images, seed)
    full_scores = _scores(y_test, torch.softmax(full.decision_function(test_images), dim=1))
    diagnostics["full"]["scores"] = full_scores
    lap("evaluation")
    return {
        "seed": seed,
        "rows": rows,
        "comparisons": comparisons,
        "diagnostics": diagnostics,
        "stage_seconds": seconds,
    }


def _t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean (nan with fewer than 2 values)."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean() - half), float(values.mean() + half)


def summarise(rows: list[dict]) -> list[dict]:
    """Mean, sample SD (ddof=1) and 95% t-interval over seeds of every (set, student, row).

    The SD and the interval are nan for a single seed, and for columns with an infinite value
    (an infinite NLL, a probability of exactly 0 on a true class, stays visible as the mean).
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["training_set"], row["student"], row["calibrator"], row["regime"])
        groups.setdefault(key, []).append(row)
    summary = []
    for (set_name, student, calibrator, regime), members in groups.items():
        entry = {
            "training_set": set_name,
            "student": student,
            "calibrator": calibrator,
            "regime": regime,
            "n_seeds": len(members),
        }
        for key in (*METRICS, "temperature", "mask_ratio", "masked_accuracy"):
            values = np.array([m[key] for m in members if m[key] is not None], dtype=float)
            if len(values) == 0:
                entry[key] = entry[f"{key}_std"] = None
                entry[f"{key}_low"] = entry[f"{key}_high"] = None
            elif not np.isfinite(values).all() or len(values) < 2:
                entry[key] = float(values.mean())
                entry[f"{key}_std"] = entry[f"{key}_low"] = entry[f"{key}_high"] = float("nan")
            else:
                entry[key], entry[f"{key}_std"] = float(values.mean()), float(values.std(ddof=1))
                entry[f"{key}_low"], entry[f"{key}_high"] = _t_interval(values)
        entry["detected"] = "; ".join(sorted({m["detected"] for m in members if m["detected"]}))
        entry["note"] = "; ".join(sorted({m["note"] for m in members if m["note"]}))
        summary.append(entry)
    return summary


def _prints_as_zero(value: float, digits: int) -> bool:
    """Whether a nonzero value would print as zero with ``digits`` decimals."""
    return value != 0 and abs(value) < 0.5 * 10.0**-digits


def format_summary(summary: list[dict], *, markdown: bool = False, rows=MAIN_ROWS) -> str:
    """Render the summary as a table: mean ± sample SD over seeds.

    Accuracy, ECE and confidence in percent. ``rows`` selects the (calibrator, regime) rows
    shown, in that order within each set and student (None: every row). Fixed-width text, or a
    markdown table with ``markdown=True``.
    """

    def cell(entry, key, scale=1.0, digits=2):
        mean, std = entry[key], entry[f"{key}_std"]
        if mean is None:
            return "-"
        if not math.isfinite(mean):
            return str(mean)
        if _prints_as_zero(scale * mean, digits):  # a temperature of 1e-06 stays visible
            if not math.isfinite(std):
                return f"{scale * mean:.0e}"
            return f"{scale * mean:.0e}±{scale * std:.0e}"
        if not math.isfinite(std):
            return f"{scale * mean:.{digits}f}"
        return f"{scale * mean:.{digits}f}±{scale * std:.{digits}f}"

    header = [
        "set",
        "student",
        "calibrator",
        "regime",
        "acc %",
        "ECE10 %",
        "ECE15 %",
        "NLL",
        "Brier",
        "conf %",
        "T",
        "ratio",
    ]
    if rows is not None:
        order = {row: i for i, row in enumerate(rows)}
        summary = [e for e in summary if (e["calibrator"], e["regime"]) in order]
        groups = list(dict.fromkeys((e["training_set"], e["student"]) for e in summary))
        summary = sorted(
            summary,
            key=lambda e: (
                groups.index((e["training_set"], e["student"])),
                order[e["calibrator"], e["regime"]],
            ),
        )
    lines = [header]
    for e in summary:
        lines.append(
            [
                e["training_set"],
                e["student"],
                e["calibrator"],
                e["regime"],
                cell(e, "accuracy", 100, 1),
                cell(e, "ece10", 100),
                cell(e, "ece15", 100),
                cell(e, "nll", 1, 3),
                cell(e, "brier", 1, 3),
                cell(e, "confidence", 100, 1),
                cell(e, "temperature", 1, 3),
                cell(e, "mask_ratio", 1, 2),
            ]
        )
    return _render(lines, n_left=4, markdown=markdown)


_DIAGNOSTIC_KEYS = ("cv_train", "cv_train_masked", "spread_ratio", "cv_test")


def _diagnostic_values(d: dict) -> dict:
    return {
        "cv_train": d["train_clean"]["cv"],
        "cv_train_masked": d["train_masked"]["cv"],
        "spread_ratio": d["spread_ratio"],
        "cv_test": d["test"]["cv"],
    }


def summarise_diagnostics(diagnostics: dict) -> list[dict]:
    """Mean and sample SD over seeds of the maximum-logit diagnostics, per network.

    ``diagnostics`` maps each seed to ``{network: {"train_clean", "train_masked",
    "spread_ratio", "test"}}`` as :func:`run_experiment` returns it (the plain students of each
    training set, and ``"full"``, the network trained on the whole training split). The rows
    hold the coefficient of variation (``std / |mean|``, scale-free: the smaller, the more
    concentrated) of the maximum logits on the network's clean and masked training images and
    on the test split, and the interquartile-range ratio masked / clean (above 1: masking
    spreads them). The SD is nan for one seed.
    """
    per_set: dict[str, dict[str, list[float]]] = {}
    for by_set in diagnostics.values():
        for set_name, d in by_set.items():
            values = per_set.setdefault(set_name, {})
            for key, value in _diagnostic_values(d).items():
                values.setdefault(key, []).append(float(value))
    rows = []
    for set_name, values in per_set.items():
        row = {"training_set": set_name, "n_seeds": len(values["cv_train"])}
        for key, series in values.items():
            series = np.asarray(series)
            row[key] = float(series.mean())
            row[f"{key}_std"] = float(series.std(ddof=1)) if len(series) > 1 else float("nan")
        rows.append(row)
    return rows


def format_diagnostics(rows: list[dict], *, markdown: bool = False) -> str:
    """Render :func:`summarise_diagnostics` as a table (fixed-width text or markdown)."""
    header = [
        "network",
        "max-logit CV, train",
        "CV, masked train (0.3)",
        "IQR masked/clean",
        "CV, test",
    ]
    lines = [header]
    for row in rows:
        lines.append(
            [
                row["training_set"],
                *(
                    f"{row[key]:.3f}±{row[f'{key}_std']:.3f}"
                    if math.isfinite(row[f"{key}_std"])
                    else f"{row[key]:.3f}"
                    for key in _DIAGNOSTIC_KEYS
                ),
            ]
        )
    return _render(lines, n_left=1, markdown=markdown)


def _render(lines: list[list[str]], *, n_left: int, markdown: bool) -> str:
    """Render a header and rows as markdown or fixed-width text (``n_left`` columns left)."""
    if markdown:
        header, *rows = lines
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(out + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i < n_left else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def _environment(threads: int) -> dict:
    """Return what, besides the code and the seed, fixes a run's floating-point results."""
    import scipy
    import sklearn

    return {
        "torch_threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "machine": platform.machine(),
    }


def run_experiment(
    dataset: str = "digits",
    *,
    profile: str | Profile = "small",
    seeds=(0, 1, 2),
    device=None,
    output=None,
    root=None,
    verbose: bool = True,
    n_jobs: int | None = None,
    threads: int = 1,
) -> dict:
    """Run the experiment and return its rows, summary and diagnostics.

    Parameters
    ----------
    dataset : {"digits", "fashion-mnist"}, default="digits"
        scikit-learn's digits (embedded) or Fashion-MNIST (Debian's IDX files, or ``root``).
    profile : {"smoke", "small", "paper"} or Profile, default="small"
        Sizes of the run (see :data:`PROFILES`).
    seeds : iterable of int, default=(0, 1, 2)
        One full run per seed (splits, distillation, students, masks); results are reported
        as mean and sample standard deviation over seeds.
    device : str or torch.device, default=None
        Where to train (None: the CPU).
    output : str or path, default=None
        Folder for ``results.csv`` (one row per seed, set, student and calibrator),
        ``comparisons.csv`` (paired bootstrap intervals per seed), ``diagnostics.csv``
        (maximum-logit statistics per seed), ``summary.csv``, ``max_logits.csv``,
        ``summary.md``, ``results.json``, the figures and the per-seed files that let an
        interrupted run resume; None writes nothing.
    root : str or path, default=None
        Folder of the Fashion-MNIST files.
    verbose : bool, default=True
        Show progress bars (with ``n_jobs``, one bar over the seeds).
    n_jobs : int or None, default=None
        Seeds run in parallel through joblib (None or 1: one after the other; -1: one process
        per core). The backend is joblib's: loky processes by default, or a Dask or Ray cluster
        within ``joblib.parallel_config(backend="dask")`` (or ``"ray"``). Each worker loads the
        data itself and saves its seed when it finishes, so an interrupted parallel run resumes
        too.
    threads : int, default=1
        Torch threads of each seed (restored afterwards). Floating-point sums depend on it, so
        it is part of the configuration: a seed gives the same results whichever ``n_jobs``
        runs it, and a rerun on the same machine reproduces its rows exactly.

    Returns
    -------
    dict
        ``config`` (including the thread count and library versions), ``rows``,
        ``comparisons``, ``summary`` (mean, SD and 95% t-interval over seeds),
        ``diagnostics`` (maximum-logit statistics per seed), ``diagnostics_summary``
        (:func:`summarise_diagnostics`) and ``stage_seconds`` (per seed, the seconds of each
        stage: distillation, students, calibration, evaluation, full-data network).
    """
    if dataset not in _DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; valid names are {sorted(_DATASETS)}.")
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError(f"Unknown profile {profile!r}; valid names are {sorted(PROFILES)}.")
        profile_spec = PROFILES[profile]
    else:
        profile_spec = replace(profile)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed.")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int; got {threads!r}.")
    config = {
        "dataset": dataset,
        "profile": asdict(profile_spec),
        "seeds": seeds,
        "device": None if device is None else str(device),
        "distcal": _version(),
        "environment": _environment(threads),
    }
    out = Path(output) if output is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    done = {seed: _load_seed(out, config, seed) for seed in seeds}
    todo = [seed for seed in seeds if done[seed] is None]
    # Figures show the first seed; a resumed run that has it keeps its figures.
    job = partial(
        _seed_job,
        dataset=dataset,
        root=root,
        profile=profile_spec,
        device=device,
        out=out,
        config=config,
        figure_seed=seeds[0] if out is not None else None,
        threads=threads,
    )
    if n_jobs in (None, 1) or len(todo) <= 1:
        data = load_dataset(dataset, root=root)
        for seed in todo:
            done[seed] = job(seed, data=data, verbose=verbose)
    else:
        # Seeds in parallel through joblib: loky processes by default, or any backend chosen
        # with joblib.parallel_config (Dask, Ray). Each job loads the data and saves its seed.
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(job)(seed, data=None, verbose=False, parent=os.getpid()) for seed in todo
        )
        for result in progress(results, enabled=verbose, desc="seeds", total=len(todo)):
            done[result["seed"]] = result
    per_seed = [done[seed] for seed in seeds]
    rows = [row for result in per_seed for row in result["rows"]]
    diagnostics = {r["seed"]: r["diagnostics"] for r in per_seed}
    result = {
        "config": config,
        "rows": rows,
        "comparisons": [row for r in per_seed for row in r["comparisons"]],
        "summary": summarise(rows),
        "diagnostics": diagnostics,
        "diagnostics_summary": summarise_diagnostics(diagnostics),
        "stage_seconds": {r["seed"]: r["stage_seconds"] for r in per_seed},
    }
    if out is not None:
        _write_tables(out, result)
    return result


def _seed_job(
    seed,
    *,
    data,
    dataset,
    root,
    profile,
    device,
    out,
    config,
    figure_seed,
    verbose,
    threads,
    parent=None,
) -> dict:
    """Run one seed on ``threads`` torch threads, draw its figures if it is the first, save it."""
    one_thread_in_workers(parent)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if data is None:
            data = load_dataset(dataset, root=root)
        figures = {} if seed == figure_seed else None
        result = _run_seed(data, dataset, profile, seed, device, verbose, figures)
        if figures:
            _figures(out, figures, _splits(data, seed), data)
    finally:
        torch.set_num_threads(previous)
    _save_seed(out, config, result)
    return result


def _version() -> str:
    from ._version import __version__

    return __version__


def _seed_file(out: Path, seed: int) -> Path:
    return out / f"seed-{seed}.json"


def _load_seed(out, config, seed):
    if out is None or not _seed_file(out, seed).exists():
        return None
    saved = json.loads(_seed_file(out, seed).read_text())
    # Compare as JSON would store it (tuples become lists).
    if saved.get("config") != json.loads(json.dumps({**config, "seeds": None})):
        return None  # another configuration: recompute rather than mix results
    return saved["result"]


def _save_seed(out, config, result):
    if out is None:
        return
    payload = json.dumps({"config": {**config, "seeds": None}, "result": result})
    atomic_write_text(_seed_file(out, result["seed"]), payload)


def _diagnostic_rows(diagnostics: dict) -> list[dict]:
    """One row per seed and network: the maximum-logit statistics, flattened."""
    rows = []
    for seed, by_set in diagnostics.items():
        for network, d in by_set.items():
            row = {"seed": seed, "network": network, **_diagnostic_values(d)}
            for part in ("train_clean", "test"):
                for key in ("mean", "std"):
                    row[f"{part}_{key}"] = d[part][key]
            for key in METRICS:
                row[f"full_{key}"] = d.get("scores", {}).get(key)
            rows.append(row)
    return rows


def _csv(table: list[dict]) -> str:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(table[0]))
    writer.writeheader()
    # repr: the shortest text that reads back as the same float, so a rerun can be compared
    # to the last bit.
    writer.writerows(
        {k: float.__repr__(v) if isinstance(v, float) else v for k, v in row.items()}
        for row in table
    )
    return text.getvalue()


def _write_tables(out: Path, result) -> None:
    for name, table in (
        ("results.csv", result["rows"]),
        ("comparisons.csv", result["comparisons"]),
        ("diagnostics.csv", _diagnostic_rows(result["diagnostics"])),
        ("summary.csv", result["summary"]),
        ("max_logits.csv", result["diagnostics_summary"]),
    ):
        atomic_write_text(out / name, _csv(table))
    atomic_write_text(
        out / "summary.md",
        format_summary(result["summary"], markdown=True, rows=None)
        + "\n\n"
        + format_diagnostics(result["diagnostics_summary"], markdown=True)
        + "\n",
    )
    atomic_write_text(out / "results.json", json.dumps(result, indent=1, default=str))


def _figures(out: Path, figures: dict, splits, data) -> None:
    """Reliability diagrams of the plain DM student; maximum-logit histograms (first seed)."""
    try:
        import matplotlib
    except ImportError:
        return  # figures are optional (pip install "distcal[plot]")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plotting import max_logit_histogram, reliability_diagram

    y_test = data.labels[splits[2]].numpy()
    probabilities, _ = figures["DM"]
    panels = [
        ("uncalibrated", ("none", "-")),
        ("TS on the distilled set", ("TS", "strict")),
        ("MTS on the distilled set (0.1)", ("MTS 0.1", "strict")),
        ("MTS on the distilled set ('auto')", ("MTS auto", "strict")),
        ("TS on held-out data", ("TS", "held-out")),
    ]
    fig, axes = plt.subplots(
        2, len(panels), figsize=(4 * len(panels), 5), height_ratios=[3, 1], sharex=True
    )
    for column, (title, key) in enumerate(panels):
        proba = _as_numpy(probabilities[key])
        reliability_diagram(y_test, proba, ax=axes[:, column], label=key[0])
        axes[0, column].set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_write(out / "reliability.png", partial(fig.savefig, dpi=100, format="png"))
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, (title, set_name) in zip(
        axes,
        (
            ("plain student of the DM set, on its training images", "DM"),
            ("plain student of random real images, on its training images", "real"),
        ),
        strict=True,
    ):
        spread = figures[set_name][1]
        max_logit_histogram(
            spread.clean_logits,
            masked_logits=spread.masked_logits,
            ax=ax,
            labels=("clean", "masked (ratio 0.3, 4 copies)"),
            density=True,
        )
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_write(out / "max_logits.png", partial(fig.savefig, dpi=100, format="png"))
    plt.close(fig)
