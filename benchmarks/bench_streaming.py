"""Streaming against in-memory: temperature scaling and calibration metrics at scale.

The logits ``3 * z`` (labels drawn from ``softmax(z)``, so the optimum is near T = 3) are made
batch by batch from a seeded generator, so every pass sees the same data without it ever being
whole in memory. Each path runs in a fresh worker process that measures its own peak resident
memory above the baseline taken after its imports (Linux ``VmHWM``, reset first):

- **in memory**: the batches are concatenated into one float32 array, then
  ``TemperatureScaling().fit`` and ``expected_calibration_error`` run on it (the data's own
  size counts: that is the point);
- **streaming**: ``TemperatureScaling().fit_batches`` and ``CalibrationAccumulator`` read the
  batches from a function that makes them on demand. A batch holds ``--batch-elements``
  logits (1e6 by default, 4 MB), so its memory does not depend on N.

Both report the temperature, the top-label ECE (15 bins) of the calibrated probabilities, the
time (data generation included, in both) and the peak memory.

Usage::

    python benchmarks/bench_streaming.py --markdown docs/benchmarks/streaming.md
    python benchmarks/bench_streaming.py --sizes 100000x10 --batch-elements 100000   # seconds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _data import logit_batch
from _report import argument_parser, reset_peak_rss, status_kib, write_markdown


def batches(n_samples: int, n_classes: int, batch: int):
    def generate():
        for index in range(-(-n_samples // batch)):
            yield logit_batch(index, batch, n_samples, n_classes)

    return generate


def worker(path: str, n_samples: int, n_classes: int, batch: int) -> None:
    import torch

    from distcal import TemperatureScaling
    from distcal.metrics import CalibrationAccumulator, expected_calibration_error

    source = batches(n_samples, n_classes, batch)
    # A small fit first: kernels and thread pools loaded lazily are not the path's memory.
    TemperatureScaling().fit_batches(batches(1000, n_classes, 500))
    baseline = reset_peak_rss()
    start = time.perf_counter()
    if path == "in memory":
        parts = list(source())
        logits = np.concatenate([z for z, _ in parts])
        labels = np.concatenate([y for _, y in parts])
        del parts
        ts = TemperatureScaling().fit(logits, labels)
        # The calibrated probabilities of all samples at once, as the in-memory metric takes them.
        proba = ts.predict_proba(logits)
        ece = expected_calibration_error(labels, proba)
    else:
        ts = TemperatureScaling().fit_batches(source)
        accumulator = CalibrationAccumulator()
        for z, y in source():
            accumulator.update(torch.softmax(torch.from_numpy(z) / ts.temperature_, dim=1), y)
        ece = accumulator.compute().ece
    elapsed = time.perf_counter() - start
    peak = status_kib("VmHWM")
    print(
        json.dumps(
            {
                "temperature": ts.temperature_,
                "passes": ts.n_iter_,
                "ece": ece,
                "time": elapsed,
                "extra_mib": (peak - baseline) / 1024,
                "data_mib": n_samples * n_classes * 4 / 2**20,
            }
        )
    )


def run(sizes, batch_elements, timeout):
    rows = []
    for n_samples, n_classes in sizes:
        batch = max(1, batch_elements // n_classes)
        for path in ("in memory", "streaming"):
            command = [
                sys.executable,
                __file__,
                "--worker",
                path,
                str(n_samples),
                str(n_classes),
                str(batch),
            ]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                rows.append({"N": n_samples, "K": n_classes, "path": path, "error": "timeout"})
                continue
            if done.returncode != 0:
                lines = done.stderr.strip().splitlines()
                rows.append(
                    {
                        "N": n_samples,
                        "K": n_classes,
                        "path": path,
                        "error": lines[-1] if lines else f"exit {done.returncode}",
                    }
                )
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append({"N": n_samples, "K": n_classes, "path": path, "batch": batch, **result})
            print(f"{n_samples}x{n_classes} {path}: {result}", file=sys.stderr, flush=True)
    return rows


def format_table(rows, markdown=False):
    from distcal.experiment.report import render_table

    header = [
        "N",
        "K",
        "path",
        "batch rows",
        "T",
        "passes",
        "ECE %",
        "time (s)",
        "peak extra MiB",
        "data MiB",
    ]
    lines = []
    for r in rows:
        if "error" in r:
            lines.append([f"{r['N']:.0e}", str(r["K"]), r["path"], "-", r["error"], *["-"] * 5])
            continue
        lines.append(
            [
                f"{r['N']:.0e}",
                str(r["K"]),
                r["path"],
                str(r["batch"]) if r["path"] == "streaming" else "-",
                f"{r['temperature']:.6f}",
                str(r["passes"]),
                f"{100 * r['ece']:.4f}",
                f"{r['time']:.1f}",
                f"{r['extra_mib']:.0f}",
                f"{r['data_mib']:.0f}",
            ]
        )
    return render_table(header, lines, markdown=markdown, align="right")


def _size(text: str) -> tuple[int, int]:
    try:
        n, k = text.lower().split("x")
        return int(float(n)), int(k)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NxK such as 1e7x10; got {text!r}") from None


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument(
        "--sizes", type=_size, nargs="+", default=[(10_000_000, 10), (1_000_000, 1000)]
    )
    parser.add_argument(
        "--batch-elements",
        type=int,
        default=1_000_000,
        help="logits per batch (rows = this / K; default 1e6, 4 MB of float32)",
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown here")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        path, n_samples, n_classes, batch = args.worker
        worker(path, int(n_samples), int(n_classes), int(batch))
        return
    rows = run(args.sizes, args.batch_elements, args.timeout)
    print(format_table(rows))
    if args.markdown:
        write_markdown(args.markdown, __file__, argv, format_table(rows, markdown=True))


if __name__ == "__main__":
    main()
