"""The memory and time of reading a CSV file of logits: distcal's reader against pandas'.

A CSV file of N x K float64 logits (seeded normal values) is written the way pandas writes
one by default (``DataFrame(z).to_csv(path)``: a header ``,0,1,...`` and an index column), then
read in a fresh worker process per reader, which measures its own peak resident memory above
the baseline taken after its imports (Linux ``VmHWM``, reset first):

- **distcal**: ``distcal.experiment.logit_files.read_logits``, what ``distcal calibrate`` and
  ``distcal apply`` read logits with (header and index column recognised by its rules);
- **pandas**: ``pandas.read_csv(path, index_col=0).to_numpy()``, the peer (skipped where
  pandas is not installed).

Both must return the same array (checked); the table gives the time, the peak memory above
the baseline, and that peak divided by the size of the numbers (N x K x 8 bytes). The reader's
target is at most about 2 (issue 22: the reader it replaced used 17).

Usage::

    python benchmarks/bench_csv_memory.py --markdown docs/benchmarks/csv_memory.md
    python benchmarks/bench_csv_memory.py --sizes 2000x50      # seconds
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import argument_parser, reset_peak_rss, status_kib, write_markdown

READERS = ("distcal", "pandas")


def write_csv(path: Path, n_samples: int, n_classes: int) -> None:
    """Write seeded logits as pandas writes a DataFrame: header ``,0,1,...``, index column."""
    rng = np.random.default_rng(0)
    with open(path, "w") as handle:
        handle.write("," + ",".join(str(j) for j in range(n_classes)) + "\n")
        for start in range(0, n_samples, 1000):
            block = 3 * rng.normal(size=(min(1000, n_samples - start), n_classes))
            for offset, row in enumerate(block):
                handle.write(f"{start + offset}," + ",".join(map(repr, row.tolist())) + "\n")


def worker(reader: str, path: str) -> None:
    if reader == "pandas":
        import pandas as pd

        read = lambda: pd.read_csv(path, index_col=0).to_numpy()  # noqa: E731
    else:
        from distcal.experiment.logit_files import read_logits

        read = lambda: read_logits(path)  # noqa: E731
    baseline = reset_peak_rss()
    start = time.perf_counter()
    values = read()
    elapsed = time.perf_counter() - start
    peak = status_kib("VmHWM")
    digest = hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()
    result = {
        "time": elapsed,
        "extra_mib": (peak - baseline) / 1024,
        "data_mib": values.size * 8 / 2**20,
        "shape": list(values.shape),
        "digest": digest,
    }
    print(json.dumps(result))


def run(sizes, timeout):
    rows = []
    readers = [r for r in READERS if r != "pandas" or importlib.util.find_spec("pandas")]
    with tempfile.TemporaryDirectory() as folder:
        for n_samples, n_classes in sizes:
            path = Path(folder) / f"logits_{n_samples}x{n_classes}.csv"
            write_csv(path, n_samples, n_classes)
            size_mib = path.stat().st_size / 2**20
            digests = set()
            for reader in readers:
                command = [sys.executable, __file__, "--worker", reader, str(path)]
                base = {"N": n_samples, "K": n_classes, "reader": reader, "file_mib": size_mib}
                try:
                    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
                except subprocess.TimeoutExpired:
                    rows.append({**base, "error": "timeout"})
                    continue
                if done.returncode != 0:
                    lines = done.stderr.strip().splitlines()
                    rows.append({**base, "error": lines[-1] if lines else "failed"})
                    continue
                result = json.loads(done.stdout.strip().splitlines()[-1])
                if result["shape"] != [n_samples, n_classes]:
                    raise SystemExit(f"{reader} read shape {result['shape']}")
                digests.add(result["digest"])
                rows.append({**base, **result})
                print(f"{n_samples}x{n_classes} {reader}: {result}", file=sys.stderr, flush=True)
            if len(digests) > 1:
                raise SystemExit(f"the readers disagree on {n_samples}x{n_classes}")
            path.unlink()
    return rows


def format_table(rows, markdown=False):
    from distcal.experiment.report import render_table

    header = ["N", "K", "reader", "file MiB", "time (s)", "peak extra MiB", "numbers MiB", "ratio"]
    lines = []
    for r in rows:
        first = [f"{r['N']:.0e}", str(r["K"]), r["reader"], f"{r['file_mib']:.0f}"]
        if "error" in r:
            lines.append([*first, r["error"], "-", "-", "-"])
            continue
        lines.append(
            [
                *first,
                f"{r['time']:.1f}",
                f"{r['extra_mib']:.0f}",
                f"{r['data_mib']:.0f}",
                f"{r['extra_mib'] / r['data_mib']:.2f}",
            ]
        )
    return render_table(header, lines, markdown=markdown, align="right")


def _size(text: str) -> tuple[int, int]:
    try:
        n, k = text.lower().split("x")
        return int(float(n)), int(k)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NxK such as 30000x1000; got {text!r}") from None


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument("--sizes", type=_size, nargs="+", default=[(30_000, 1000)])
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown here")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(*args.worker)
        return
    rows = run(args.sizes, args.timeout)
    print(format_table(rows))
    if args.markdown:
        write_markdown(args.markdown, __file__, argv, format_table(rows, markdown=True))


if __name__ == "__main__":
    main()
