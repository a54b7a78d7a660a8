"""``distcal calibrate`` on big logits: the whole command, its bootstraps, its affine fits.

Issue 22 measured about 3 s per bootstrap resample on 100,000 x 1,000 logits (only the binned
ECE reduced each row once; accuracy, NLL and Brier were computed on full copies of every
resample), so the default 1,000 resamples took about 50 minutes, and vector, matrix and
Dirichlet scaling did not finish in 115 s. This script writes ``--n-samples`` x ``--n-classes``
logits (``3 z``, labels drawn from ``softmax(z)``: benchmarks/_data.py) to a float32 ``.npy``
file and measures, in one process:

- the command itself (``calibrate_files``, as ``distcal calibrate`` calls it: temperature
  scaling, half the samples scored, ``--n-resamples`` resamples, every score with its interval,
  the diagram and the files), wall seconds;
- each score's bootstrap on the scored half, distcal's declared resampler (rows reduced once)
  against the metric called on each resample (what the old code did for accuracy, NLL and
  Brier), the latter timed on ``--peer-resamples`` resamples and scaled to ``--n-resamples``;
- vector, matrix and Dirichlet scaling on the fitted half: the seconds of one L-BFGS
  iteration (two iterations timed), the iterations vector scaling needs to converge on
  ``--iteration-rows`` rows, and what the command does with that size (fits, or refuses with
  the reason before any work).

Usage::

    python benchmarks/bench_calibrate_command.py --markdown docs/benchmarks/calibrate_command.md
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import _data
import numpy as np
import torch
from _report import argument_parser, bullets, write_markdown

from distcal.calibration import DirichletCalibration, MatrixScaling, VectorScaling
from distcal.experiment import SCORES
from distcal.experiment import calibrate as C
from distcal.experiment.logit_files import InputFileError
from distcal.experiment.report import render_table
from distcal.metrics import (
    bootstrap_ci,
    brier_score,
    debiased_calibration_error_ci,
    expected_calibration_error,
    negative_log_likelihood,
    with_options,
)

AFFINE = {"vector": VectorScaling, "matrix": MatrixScaling, "dirichlet": DirichletCalibration}


def table(header, body, align):
    """A table to render later, as text (printed) and as markdown (the file)."""
    return lambda markdown: render_table(header, body, align=align, markdown=markdown)


def timed(function):
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def command_row(path, n_resamples):
    with tempfile.TemporaryDirectory() as folder:
        seconds, report = timed(
            lambda: C.calibrate_files(
                path, output=Path(folder) / "out", n_resamples=n_resamples, verbose=False
            )
        )
    headline = report["scores"][0]
    after = headline["after"]
    summary = (
        f"after: calibration error {100 * after['estimate']:.2f}% "
        f"[{100 * after['low']:.2f}, {100 * after['high']:.2f}], p = {after['pvalue']:.3f}"
    )
    return seconds, summary


def bootstrap_rows(y, proba, n_resamples, peer_resamples, repeat):
    rows = []
    metrics = {
        "accuracy": SCORES["accuracy"].function,
        "ECE-15 (plug-in)": with_options(expected_calibration_error, n_bins=15),
        "NLL": negative_log_likelihood,
        "Brier": brier_score,
    }
    for name, metric in metrics.items():
        runs = [
            timed(lambda m=metric: bootstrap_ci(m, y, proba, n_resamples=n_resamples))
            for _ in range(repeat)
        ]
        ours, fast = statistics.median(t for t, _ in runs), runs[0][1]
        called, _ = timed(
            lambda m=metric: bootstrap_ci(
                lambda a, b: m(a, b),
                y,
                proba,
                n_resamples=peer_resamples,
                confidence=1 - 1 / peer_resamples,
            )
        )
        rows.append([name, ours, called * n_resamples / peer_resamples, fast.std])
    seconds = statistics.median(
        timed(lambda: debiased_calibration_error_ci(y, proba, n_resamples=n_resamples))[0]
        for _ in range(repeat)
    )
    rows.append(["calibration error (debiased), its interval", seconds, float("nan"), 0.0])
    return rows


def fit_rows(z, y, n_classes, iteration_rows):
    rows = []
    names = {"method": "--method", "test_size": "--test-size"}
    for method, cls in AFFINE.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cls(max_iter=2).fit(z[:50], y[:50])  # warm-up: first calls pay for set-up
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seconds, fitted = timed(lambda c=cls: c(max_iter=2).fit(z, y))
        per_iteration = seconds / max(fitted.n_iter_, 1)
        try:
            C._check_fit_size(method, len(y), n_classes, names)
            decision = "fits"
        except InputFileError as error:
            decision = "refuses: " + error.message.split(";")[0]
        rows.append([cls.__name__, per_iteration, decision])
    small = slice(0, iteration_rows)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds, fitted = timed(lambda: VectorScaling().fit(z[small], y[small]))
    return rows, (fitted.n_iter_, seconds, fitted.converged_)


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--n-classes", type=int, default=1000)
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--peer-resamples", type=int, default=5)
    parser.add_argument("--iteration-rows", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3, help="runs of distcal's bootstraps")
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    logits, y = _data.make_data(args.n_samples, args.n_classes, seed=0)
    logits = logits.astype(np.float32)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "logits.npz"
        np.savez(path, logits=logits, labels=y)
        seconds, summary = command_row(path, args.n_resamples)
    fitted, scored, _ = C._split(y, 0.5, True, 0, {"test_size": "--test-size"})
    before = C._probabilities(logits[scored], "logits")
    # one thread, as the command scores: thousands of small evaluations on two threads pay
    # for waking the second one every time (3x slower on a loaded machine)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    boot = bootstrap_rows(y[scored], before, args.n_resamples, args.peer_resamples, args.repeat)
    torch.set_num_threads(threads)
    affine, (n_iter, vector_seconds, converged) = fit_rows(
        logits[fitted], y[fitted], args.n_classes, args.iteration_rows
    )
    shape = f"{args.n_samples:,} x {args.n_classes:,}"
    command = table(
        ["command", "logits", "resamples", "seconds", "result"],
        [["distcal calibrate (ts)", shape, str(args.n_resamples), f"{seconds:.0f}", summary]],
        align=["left", "right", "right", "right", "left"],
    )
    bootstraps = table(
        ["bootstrap on the scored half", "distcal s", "metric per resample s", "speed-up"],
        [
            [
                name,
                f"{ours:.2f}",
                "-" if np.isnan(slow) else f"{slow:.1f}",
                "-" if np.isnan(slow) else f"{slow / ours:.0f}x",
            ]
            for name, ours, slow, _ in boot
        ],
        align=["left", "right", "right", "right"],
    )
    fits = table(
        ["affine fit on the fitted half", "s per L-BFGS iteration", "distcal calibrate"],
        [[name, f"{s:.2f}", decision] for name, s, decision in affine],
        align=["left", "right", "left"],
    )
    notes = [
        f"{shape} logits; {len(scored):,} scored and {len(fitted):,} fitted; "
        f"one torch thread for the bootstraps (as the command scores), {threads} for the fits.",
        f"distcal s: median of {args.repeat} runs. Metric per resample: the metric called on "
        f"a copy of each resample, {args.peer_resamples} resamples timed and scaled to "
        f"{args.n_resamples}: what the old code did for accuracy, NLL and Brier (for the ECE "
        "it already reduced the rows once, scoring one resample at a time). The command runs "
        "3 bootstraps of each score (before, after, change), 3 of the debiased error and 2 "
        "calibration tests.",
        f"Vector scaling needs {n_iter} L-BFGS iterations on {args.iteration_rows:,} x "
        f"{args.n_classes:,} logits ({vector_seconds:.0f} s, converged {converged}); matrix "
        f"and Dirichlet scaling, with a {args.n_classes:,} x {args.n_classes:,} matrix, have "
        "more parameters to fit.",
    ]
    tables = [command, bootstraps, fits]
    print("\n\n".join(render(False) for render in tables))
    print()
    print("\n".join(notes))
    if args.markdown:
        blocks = [render(True) for render in tables]
        write_markdown(args.markdown, __file__, argv, *blocks, bullets(notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
