"""Speed of distcal's calibrators against netcal's (and scikit-learn's) on the same logits.

Logits ``3 * z`` with labels drawn from ``softmax(z)`` (N samples, K classes; default N = 1e5, K
= 10). Each pair runs in a fresh process of its own (see ``run_isolated``), its two methods
alternately, ``--repeat`` times; the table shows the median time of ``fit`` + ``predict_proba``
on the calibration data, the speed-up of distcal, the test NLL of both (on a second draw of the
same size) and the largest difference between their probabilities, to show they compute the same
map (or how they differ). netcal is given float64 probabilities, which it needs (see the
temperature benchmark for float32).

Pairs: temperature scaling (netcal ``TemperatureScaling``), vector scaling (netcal
``LogisticCalibration``, its multiclass form), histogram binning (netcal ``HistogramBinning``),
isotonic regression (netcal ``IsotonicRegression``). netcal has no matrix scaling, Dirichlet
calibration or ensemble temperature scaling, so those are compared with what a user would
otherwise write: scikit-learn's multinomial ``LogisticRegression`` (no penalty) on the logits
(matrix scaling) and on the log-probabilities (Dirichlet calibration, as its authors describe
it), and the Mix-n-Match recipe in scipy for ensemble temperature scaling (the temperature by
``minimize_scalar`` on the NLL, then the simplex weights by SLSQP, written here).

Usage::

    python benchmarks/bench_calibrator_speed.py --markdown docs/benchmarks/calibrator_speed.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _data import make_data
from _report import argument_parser, quiet, write_markdown


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def nll(proba, y):
    p = np.clip(proba[np.arange(len(y)), y], 1e-300, None)
    return float(-np.log(p).mean())


def distcal_pair(name):
    from distcal.calibration import (
        DirichletCalibration,
        EnsembleTemperatureScaling,
        HistogramBinning,
        IsotonicCalibration,
        MatrixScaling,
        TemperatureScaling,
        VectorScaling,
    )

    def run(estimator):
        def fit_predict(z, y, z_test):
            fitted = estimator().fit(z, y)
            return fitted.predict_proba(z), fitted.predict_proba(z_test)

        return fit_predict

    return run(
        {
            "temperature scaling": TemperatureScaling,
            "vector scaling": VectorScaling,
            "histogram binning": lambda: HistogramBinning(n_bins=15),
            "isotonic regression": IsotonicCalibration,
            "matrix scaling": MatrixScaling,
            "Dirichlet calibration": DirichletCalibration,
            "ensemble temperature scaling": EnsembleTemperatureScaling,
        }[name]
    )


def log_softmax(z):
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def scipy_ensemble_ts(z, y, z_test):
    """Ensemble temperature scaling as a research script would fit it, with scipy."""
    from scipy.optimize import minimize, minimize_scalar

    rows = np.arange(len(y))

    def nll_at(temperature):
        return -log_softmax(z / temperature)[rows, y].mean()

    temperature = minimize_scalar(nll_at, bounds=(0.05, 20), method="bounded").x
    n_classes = z.shape[1]

    def components(logits):
        return np.stack(
            [softmax(logits / temperature), softmax(logits), np.full(logits.shape, 1 / n_classes)]
        )

    parts = components(z)[:, rows, y].T
    weights = minimize(
        lambda w: -np.log(parts @ w).mean(),
        np.full(3, 1 / 3),
        method="SLSQP",
        bounds=[(0, 1)] * 3,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
    ).x

    def predict(logits):
        return np.tensordot(weights, components(logits), axes=1)

    return predict(z), predict(z_test)


def peer_pair(name):
    if name in ("matrix scaling", "Dirichlet calibration"):
        from sklearn.linear_model import LogisticRegression

        features = (lambda z: z) if name == "matrix scaling" else log_softmax

        def fit_predict(z, y, z_test):
            fitted = LogisticRegression(C=np.inf, max_iter=1000).fit(features(z), y)
            return fitted.predict_proba(features(z)), fitted.predict_proba(features(z_test))

        label = "sklearn LogisticRegression" + ("" if name == "matrix scaling" else " on log p")
        return label, fit_predict
    if name == "ensemble temperature scaling":
        return "scipy Mix-n-Match recipe", scipy_ensemble_ts

    with quiet():  # netcal prints progress
        from netcal.binning import HistogramBinning, IsotonicRegression
        from netcal.scaling import LogisticCalibration, TemperatureScaling
    make = {
        "temperature scaling": TemperatureScaling,
        "vector scaling": LogisticCalibration,
        "histogram binning": lambda: HistogramBinning(bins=15),
        "isotonic regression": IsotonicRegression,
    }[name]

    def fit_predict(z, y, z_test):
        with quiet():
            model = make()
            p, p_test = softmax(z), softmax(z_test)
            if name in ("temperature scaling", "vector scaling"):
                model.fit(p, y, tensorboard=False)
            else:
                model.fit(p, y)
            return np.asarray(model.transform(p)), np.asarray(model.transform(p_test))

    label = {
        "temperature scaling": "netcal TemperatureScaling",
        "vector scaling": "netcal LogisticCalibration",
        "histogram binning": "netcal HistogramBinning",
        "isotonic regression": "netcal IsotonicRegression",
    }[name]
    return label, fit_predict


def run(n_samples, n_classes, repeat, names):
    z, y = make_data(n_samples, n_classes, 0)
    z_test, y_test = make_data(n_samples, n_classes, 1)
    rows = []
    for name in names:
        ours = distcal_pair(name)
        peer_name, theirs = peer_pair(name)
        times = {"distcal": [], "peer": []}
        outputs = {}
        for _ in range(repeat):
            for key, function in (("distcal", ours), ("peer", theirs)):
                start = time.perf_counter()
                outputs[key] = function(z, y, z_test)
                times[key].append(time.perf_counter() - start)
        ours_time = statistics.median(times["distcal"])
        peer_time = statistics.median(times["peer"])
        test_ours = np.asarray(outputs["distcal"][1], dtype=np.float64)
        test_peer = np.asarray(outputs["peer"][1], dtype=np.float64)
        if test_peer.ndim == 1:  # netcal returns one column for two classes
            test_peer = np.stack([1 - test_peer, test_peer], axis=1)
        rows.append(
            {
                "method": name,
                "peer": peer_name,
                "distcal s": ours_time,
                "peer s": peer_time,
                "speed-up": peer_time / ours_time,
                "distcal NLL": nll(test_ours, y_test),
                "peer NLL": nll(test_peer, y_test),
                "max |dp|": float(np.abs(test_ours - test_peer).max()),
            }
        )
        print(rows[-1], file=sys.stderr, flush=True)
    return rows


def format_table(rows, markdown=False):
    from distcal.experiment.report import render_table

    header = list(rows[0])
    lines = []
    for r in rows:
        lines.append(
            [
                r["method"],
                r["peer"],
                f"{r['distcal s']:.3f}",
                f"{r['peer s']:.3f}",
                f"{r['speed-up']:.1f}x",
                f"{r['distcal NLL']:.4f}",
                f"{r['peer NLL']:.4f}",
                f"{r['max |dp|']:.1e}",
            ]
        )
    return render_table(header, lines, markdown=markdown)


METHODS = [
    "temperature scaling",
    "vector scaling",
    "histogram binning",
    "isotonic regression",
    "matrix scaling",
    "Dirichlet calibration",
    "ensemble temperature scaling",
]


def run_isolated(n_samples, n_classes, repeat, names):
    """Each pair in a fresh process: one method's imports and allocations do not slow the next.

    The first use of ``torch.optim`` in a process (the linear calibrators' L-BFGS) imports
    ``torch._dynamo``, after which large temporary tensors page-fault on every call, slowing
    the allocation-heavy one-vs-rest calibrators that run later; scikit-learn's and netcal's
    solvers leave thread pools and caches of their own.
    """
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory() as folder:
            out = Path(folder) / "row.json"
            command = [
                sys.executable,
                __file__,
                "--n-samples",
                str(n_samples),
                "--n-classes",
                str(n_classes),
                "--repeat",
                str(repeat),
                "--methods",
                name,
                "--row-json",
                str(out),
            ]
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            rows += json.loads(out.read_text())
    return rows


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--row-json", type=Path, help=argparse.SUPPRESS)  # one isolated pair
    args = parser.parse_args(argv)
    import torch

    if args.row_json or len(args.methods) == 1:
        rows = run(args.n_samples, args.n_classes, args.repeat, args.methods)
        if args.row_json:
            args.row_json.write_text(json.dumps(rows))
            return
    else:
        rows = run_isolated(args.n_samples, args.n_classes, args.repeat, args.methods)
    context = (
        f"N = {args.n_samples}, K = {args.n_classes}, median of {args.repeat} runs of fit + "
        f"predict_proba (calibration and test data), each pair in a fresh process; "
        f"{torch.get_num_threads()} torch threads"
    )
    print(context)
    print(format_table(rows))
    if args.markdown:
        write_markdown(args.markdown, __file__, argv, context, format_table(rows, markdown=True))


if __name__ == "__main__":
    main()
