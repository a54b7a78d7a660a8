"""Temperature scaling: distcal against scikit-learn, netcal and the classic LBFGS recipe.

All methods fit the same logits ``3 * z`` with labels drawn from ``softmax(z)``, so the optimal
temperature is close to 3. Each (method, size) runs in a fresh process that loads the logits
from disk, so its peak resident memory above that baseline is the method's own extra memory.
The NLL column is re-evaluated for every method by one independent float64 routine.

Usage::

    python benchmarks/bench_temperature.py                  # full table, CPU
    python benchmarks/bench_temperature.py --quick          # small sizes only
    python benchmarks/bench_temperature.py --device cuda    # distcal and LBFGS on the GPU
    python benchmarks/bench_temperature.py --markdown docs/benchmarks/temperature.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _data import make_data
from _report import argument_parser, frozen_logits, reset_peak_rss, status_kib, write_markdown

FULL_SIZES = [(10_000, 10), (100_000, 10), (1_000_000, 10), (100_000, 100), (100_000, 1000)]
QUICK_SIZES = [(10_000, 10), (100_000, 10)]
METHODS = ["distcal", "distcal-float32", "sklearn", "netcal", "torch-lbfgs"]


def reference_nll(logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Float64 NLL of softmax(logits / T), in chunks (independent of every method)."""
    from scipy.special import logsumexp

    total = 0.0
    for start in range(0, len(y), 100_000):
        z = logits[start : start + 100_000].astype(np.float64) / temperature
        rows = np.arange(len(z))
        total += float(np.sum(logsumexp(z, axis=1) - z[rows, y[start : start + 100_000]]))
    return total / len(y)


# ----------------------------------------------------------------------------- the methods
def fit_distcal(X, y, device):
    import torch

    from distcal import TemperatureScaling

    if device != "cpu":
        X, y = torch.from_numpy(X).to(device), torch.from_numpy(y).to(device)
    ts = TemperatureScaling().fit(X, y)
    return ts.temperature_, ts.n_iter_


def fit_sklearn(X, y, device):
    import sklearn.calibration
    from sklearn.calibration import CalibratedClassifierCV

    calls = {"n": 0}
    original = sklearn.calibration.minimize_scalar

    def counting_minimize_scalar(fun, *args, **kwargs):
        def counted(x):
            calls["n"] += 1
            return fun(x)

        return original(counted, *args, **kwargs)

    sklearn.calibration.minimize_scalar = counting_minimize_scalar
    model = frozen_logits(np.arange(X.shape[1]))
    calibrated = CalibratedClassifierCV(model, method="temperature").fit(X, y)
    beta = float(calibrated.calibrated_classifiers_[0].calibrators[0].beta_)
    return 1.0 / beta, calls["n"]


def fit_netcal(X, y, device):
    from netcal.scaling import TemperatureScaling

    # netcal takes probabilities (as float32, the dtype networks produce them in).
    z = X - X.max(axis=1, keepdims=True)
    P = np.exp(z)
    P /= P.sum(axis=1, keepdims=True)
    ts = TemperatureScaling()
    ts.fit(P.astype(np.float32), y, tensorboard=False)
    # netcal's `temperature` property holds the inverse temperature.
    return 1.0 / float(np.ravel(ts.temperature)[0]), None


def fit_torch_lbfgs(X, y, device):
    """The classic recipe (gpleiss/temperature_scaling): LBFGS, lr 0.01, 50 iterations."""
    import torch

    logits = torch.from_numpy(X).to(device)
    labels = torch.from_numpy(y).to(device)
    temperature = torch.nn.Parameter(torch.ones(1, dtype=logits.dtype, device=device) * 1.5)
    optimizer = torch.optim.LBFGS([temperature], lr=0.01, max_iter=50)
    calls = {"n": 0}

    def closure():
        calls["n"] += 1
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits / temperature, labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(temperature.item()), calls["n"]


FITTERS = {
    "distcal": fit_distcal,
    "distcal-float32": fit_distcal,
    "sklearn": fit_sklearn,
    "netcal": fit_netcal,
    "torch-lbfgs": fit_torch_lbfgs,
}


def worker(method: str, path: str, device: str, repeat: int) -> None:
    import warnings

    warnings.simplefilter("ignore")
    # import what the method needs before the baseline is taken
    import torch

    if method == "netcal":
        import netcal.scaling  # noqa: F401
    # .npy files load straight into their arrays: no transient copy inflates the baseline peak.
    X, y = np.load(path + ".X.npy"), np.load(path + ".y.npy")
    if method == "distcal-float32":
        X = X.astype(np.float32)
    # One small fit first: lazily loaded kernels and thread pools are not the method's memory.
    warm = np.concatenate([np.flatnonzero(y == k)[:5] for k in np.unique(y)])
    FITTERS[method](np.ascontiguousarray(X[warm]), y[warm], device)
    # ru_maxrss would carry the parent's high-water mark across fork and exec; the process's
    # own VmHWM, reset here, counts only what this process holds from now on.
    baseline_kib = reset_peak_rss()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        temperature, passes = FITTERS[method](X, y, device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        if times[-1] > 20:  # one timing of a fit this slow is enough
            break
    peak_kib = status_kib("VmHWM")
    print(
        json.dumps(
            {
                "time": statistics.median(times),
                "temperature": temperature,
                "passes": passes,
                "extra_mib": (peak_kib - baseline_kib) / 1024,
                "input_mib": X.nbytes / 2**20,
            }
        )
    )


# ----------------------------------------------------------------------------- driver
def run(sizes, methods, device, repeat, timeout):
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_samples, n_classes in sizes:
            X, y = make_data(n_samples, n_classes, labels="inverse")
            path = os.path.join(tmp, f"data_{n_samples}_{n_classes}")
            np.save(path + ".X.npy", X)
            np.save(path + ".y.npy", y)
            for method in methods:
                worker_device = (
                    device if method in ("distcal", "distcal-float32", "torch-lbfgs") else "cpu"
                )
                command = [
                    sys.executable,
                    __file__,
                    "--worker",
                    method,
                    path,
                    worker_device,
                    str(repeat),
                ]
                try:
                    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
                except subprocess.TimeoutExpired:
                    rows.append(
                        {"N": n_samples, "K": n_classes, "method": method, "error": "timeout"}
                    )
                    continue
                if done.returncode != 0:
                    error = (
                        done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
                    )
                    rows.append({"N": n_samples, "K": n_classes, "method": method, "error": error})
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                result["nll"] = reference_nll(X, y, result["temperature"])
                rows.append(
                    {
                        "N": n_samples,
                        "K": n_classes,
                        "method": method,
                        "device": worker_device,
                        **result,
                    }
                )
            print_partial(rows, n_samples, n_classes)
    return rows


def annotate(rows):
    """Add speed-up against scikit-learn and NLL gap to the best method of each size."""
    by_size = {}
    for row in rows:
        by_size.setdefault((row["N"], row["K"]), []).append(row)
    for group in by_size.values():
        ok = [r for r in group if "error" not in r]
        best = min(r["nll"] for r in ok)
        sk = next((r for r in ok if r["method"] == "sklearn"), None)
        for r in ok:
            r["nll_gap"] = (r["nll"] - best) / best
            r["speedup"] = sk["time"] / r["time"] if sk else float("nan")


def format_table(rows, markdown=False):
    from distcal.experiment.report import render_table

    header = [
        "N",
        "K",
        "method",
        "device",
        "time (s)",
        "x sklearn",
        "passes",
        "T",
        "NLL",
        "NLL rel. gap",
        "extra MiB",
        "input MiB",
    ]
    lines = []
    for r in rows:
        if "error" in r:
            lines.append(
                [
                    f"{r['N']:.0e}",
                    str(r["K"]),
                    r["method"],
                    "",
                    r["error"][:40],
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
            continue
        lines.append(
            [
                f"{r['N']:.0e}",
                str(r["K"]),
                r["method"],
                r["device"],
                f"{r['time']:.3f}",
                f"{r['speedup']:.1f}",
                "-" if r["passes"] is None else str(r["passes"]),
                f"{r['temperature']:.6f}",
                f"{r['nll']:.8f}",
                f"{r['nll_gap']:.1e}",
                f"{r['extra_mib']:.1f}",
                f"{r['input_mib']:.0f}",
            ]
        )
    return render_table(header, lines, markdown=markdown, align="right")


def print_partial(rows, n_samples, n_classes):
    print(f"done N={n_samples} K={n_classes}", file=sys.stderr, flush=True)


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes only (seconds)")
    parser.add_argument("--device", default="cpu", help="device for distcal and LBFGS (cpu, cuda)")
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="fits per method (1 when a fit takes over 20 s); the median time is shown",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per method and size")
    parser.add_argument(
        "--markdown", type=Path, help="also write the table as markdown to this file"
    )
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        method, path, device, repeat = args.worker
        worker(method, path, device, int(repeat))
        return
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    rows = run(sizes, args.methods, args.device, args.repeat, args.timeout)
    annotate(rows)
    print(format_table(rows))
    if args.markdown:
        write_markdown(args.markdown, __file__, argv, format_table(rows, markdown=True))


if __name__ == "__main__":
    main()
