"""The data path of fitting and of ``distcal calibrate``, timed on two copies of distcal.

The path every input takes into a fit (checked, batched, run through the model, masked) was
rewritten in issue 23; this script shows it is no slower. Each workload runs in a fresh worker
process that imports distcal from one source tree, once untimed (first-call costs), then
``--inner`` times timed, of which the least counts (a shared machine's load only adds time):
the tree this script belongs to, and ``--against``, another copy of the ``distcal`` package
(for instance the commit before, unpacked with ``git archive <commit> distcal | tar -x -C
/tmp/before``). The two trees alternate, ``--repeat`` workers each, so that the load falls on
both alike; the table gives each median, their ratio (this tree over the other) and whether
the results agree.

Workloads (sizes by the options):

- ``TS fit``: ``TemperatureScaling().fit(z, y)`` on N x K float32 logits;
- ``TS fit_batches``: ``fit_batches`` on the same logits in batches of 10,000 rows;
- ``MTS fit``: ``MaskedTemperatureScaling(model=net, mask_ratio=0.3, n_masks=2)`` on
  ``--inputs`` images of 1 x 28 x 28 through a small convolutional network;
- ``MTS fit(loader)``: the same from a ``DataLoader`` of batches of 256;
- ``calibrate``: ``calibrate_files`` (what ``distcal calibrate`` runs) on a ``.npy`` file of the
  logits and one of the labels, temperature scaling, ``--n-resamples`` resamples.

Usage::

    git archive ab3fc00 distcal | tar -x -C /tmp/before   # the commit before issue 23's door
    python benchmarks/bench_data_path.py --against /tmp/before
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
from _report import argument_parser, quiet, write_markdown

HERE = Path(__file__).resolve().parents[1]
WORKLOADS = ("TS fit", "TS fit_batches", "MTS fit", "MTS fit(loader)", "calibrate")


def _network(torch):
    torch.manual_seed(0)  # the benchmark's own process: a fixed network, nothing else drawn
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 14 * 14, 10),
    )


def worker(name: str, folder: str, n_inputs: int, n_resamples: int, inner: int = 1) -> None:
    """Run one workload in this process; print its seconds and a result as JSON."""
    import torch

    from distcal import MaskedTemperatureScaling, TemperatureScaling

    torch.set_num_threads(1)
    folder = Path(folder)
    z = np.load(folder / "logits.npy")
    y = np.load(folder / "labels.npy")
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand((n_inputs, 1, 28, 28), generator=generator)
    net = _network(torch)
    with torch.no_grad():
        noisy = net(inputs) + 2 * torch.randn((n_inputs, 10), generator=generator)
    targets = noisy.argmax(dim=1)

    def workload():
        if name == "TS fit":
            return TemperatureScaling().fit(z, y).temperature_
        if name == "TS fit_batches":
            batches = [(z[i : i + 10_000], y[i : i + 10_000]) for i in range(0, len(y), 10_000)]
            return TemperatureScaling().fit_batches(batches).temperature_
        if name.startswith("MTS"):
            mts = MaskedTemperatureScaling(
                model=net, mask_ratio=0.3, n_masks=2, batch_size=256, random_state=0
            )
            if name == "MTS fit":
                return mts.fit(inputs, targets).temperature_
            dataset = torch.utils.data.TensorDataset(inputs, targets)
            loader = torch.utils.data.DataLoader(dataset, batch_size=256)
            return mts.fit(loader).temperature_
        from distcal.experiment.calibrate import calibrate_files

        report = calibrate_files(
            folder / "logits.npy",
            folder / "labels.npy",
            output=folder / f"out-{os.getpid()}",
            n_resamples=n_resamples,
            force=True,
        )
        return report["calibrator"].temperature_

    with quiet():
        workload()  # once untimed: lazily loaded kernels and first-call costs are not the path
        runs = []
        for _ in range(inner):
            start = time.perf_counter()
            result = workload()
            runs.append(time.perf_counter() - start)
    seconds = min(runs)  # the least disturbed run: the machine's load only adds time
    print(json.dumps({"seconds": seconds, "result": float(result)}))


def run(tree: Path, name: str, folder: str, args) -> dict:
    """Run a workload in a fresh process that imports distcal from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--worker", name, folder]
    command += ["--inputs", str(args.inputs), "--n-resamples", str(args.n_resamples)]
    command += ["--inner", str(args.inner)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{name} on {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argument_parser(__doc__)
    parser.add_argument("--against", type=Path, required=False, help="another distcal tree")
    parser.add_argument("--n-samples", type=int, default=200_000)
    parser.add_argument("--n-classes", type=int, default=100)
    parser.add_argument("--inputs", type=int, default=4000, help="images of the MTS workloads")
    parser.add_argument("--n-resamples", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--inner", type=int, default=3, help="timed runs per worker (the least)")
    parser.add_argument("--only", nargs="*", default=list(WORKLOADS), choices=WORKLOADS)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.inputs, args.n_resamples, args.inner)
        return
    trees = {"this tree": HERE}
    if args.against is not None:
        trees["other tree"] = args.against.resolve()
    with tempfile.TemporaryDirectory() as folder:
        z, y = make_data(args.n_samples, args.n_classes, seed=0)
        np.save(Path(folder) / "logits.npy", z.astype(np.float32))
        np.save(Path(folder) / "labels.npy", y)
        rows = []
        for name in args.only:
            times = {label: [] for label in trees}
            results = {label: None for label in trees}
            for _ in range(args.repeat):
                for label, tree in trees.items():
                    out = run(tree, name, folder, args)
                    times[label].append(out["seconds"])
                    results[label] = out["result"]
            medians = {label: statistics.median(t) for label, t in times.items()}
            row = [name, f"{medians['this tree']:.3f}"]
            if "other tree" in trees:
                same = results["this tree"] == results["other tree"]
                row += [
                    f"{medians['other tree']:.3f}",
                    f"{medians['this tree'] / medians['other tree']:.2f}",
                    "same" if same else f"{results['this tree']!r} vs {results['other tree']!r}",
                ]
            rows.append(row)
            print(" | ".join(row), flush=True)
    from distcal.experiment.report import render_table

    header = ["workload", "this tree (s)"]
    if "other tree" in trees:
        header += ["other tree (s)", "ratio", "result"]
    caption = (
        f"N = {args.n_samples}, K = {args.n_classes}, {args.inputs} images, "
        f"{args.n_resamples} resamples, median of {args.repeat} workers (each the least of "
        f"{args.inner} runs), one thread"
    )
    print(caption)
    print(render_table(header, rows, align=["left"] + ["right"] * (len(header) - 1)))
    if args.markdown is not None:
        align = ["left"] + ["right"] * (len(header) - 1)
        table = render_table(header, rows, align=align, markdown=True)
        write_markdown(args.markdown, __file__, None, caption, table)


if __name__ == "__main__":
    main()
