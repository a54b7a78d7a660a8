"""Distillation throughput and memory: distcal's steps against the per-class reference recipe.

For each method the same iteration (same data, same random draws) runs through distcal's step
and through ``reference_step``, the straightforward re-implementation of the original algorithm
(one class at a time, no batching across classes), alternately in one process. MTT is measured
with the unrolled backward and with the constant-memory backward; its memory column is the
peak of the bytes saved for backward (counted exactly with saved-tensor hooks), for several
numbers of unrolled steps. As ``distcal run`` does, the script first has glibc keep freed
memory (``distcal._allocator``; ``--system-malloc`` leaves malloc alone), for both sides.

Usage::

    python benchmarks/bench_distill_throughput.py [--dataset digits|fashion-mnist] [--repeat 5]
        [--system-malloc] [--markdown docs/benchmarks/distill_throughput.md]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from _report import add_malloc_option, set_malloc, write_markdown

from distcal.distill import (
    METHODS,
    MDTMask,
    RealData,
    SiameseAugment,
    StepContext,
    build_network,
    load_dataset,
    normalize,
)
from distcal.distill._data import channel_statistics
from distcal.experiment.report import render_table


def make_context(real, ipc, width, depth, seed, lr, *, augment, extra_groups=()):
    labels = torch.arange(real.n_classes).repeat_interleave(ipc)
    start = torch.Generator().manual_seed(1000 + seed)
    images, _ = real.sample(ipc, start)
    images = images.clone().requires_grad_(True)
    groups = [{"params": [images], "lr": lr, "momentum": 0.5}, *extra_groups]
    augmenter = SiameseAugment() if augment else None
    shape = tuple(real.images.shape[1:])
    return StepContext(
        images=images,
        labels=labels,
        optimizer=torch.optim.SGD(groups),
        real=real,
        generator=torch.Generator().manual_seed(seed),
        augment=augmenter.apply if augmenter else None,
        sample_augment=augmenter.sample if augmenter else None,
        mask=MDTMask(),
        iteration=seed,
        build_network=lambda s: build_network(
            "convnet",
            input_shape=shape,
            n_classes=real.n_classes,
            width=width,
            depth=depth,
            random_state=s,
        ),
    )


def time_pair(method, real, ipc, width, depth, repeat, lr, augment):
    fast, slow = [], []
    for round_ in range(repeat + 1):  # the first round warms up and is dropped
        for runner, times in ((method.step, fast), (method.reference_step, slow)):
            ctx = make_context(real, ipc, width, depth, round_, lr, augment=augment)
            began = time.perf_counter()
            runner(ctx)
            if round_ > 0:
                times.append(time.perf_counter() - began)
    return statistics.median(fast), statistics.median(slow)


class _Saved:
    """A tensor saved for backward; counts itself out of the live total when the graph frees it."""

    def __init__(self, tensor, live):
        self.tensor = tensor
        self.size = tensor.numel() * tensor.element_size()
        self.live = live
        live["now"] += self.size
        live["peak"] = max(live["peak"], live["now"])

    def __del__(self):
        self.live["now"] -= self.size


def saved_bytes(fn):
    """Peak bytes of tensors held for backward at any moment while ``fn`` runs (exact)."""
    live = {"now": 0, "peak": 0}
    with torch.autograd.graph.saved_tensors_hooks(
        lambda tensor: _Saved(tensor, live), lambda saved: saved.tensor
    ):
        fn()
    return live["peak"]


def mtt_rows(real, ipc, width, depth, repeat, syn_steps_list):
    from distcal.distill import MTT

    rows = []
    method_for = {}
    shape = tuple(real.images.shape[1:])
    for memory in ("unrolled", "constant"):
        method = MTT(
            {
                **MTT.defaults,
                "n_experts": 1,
                "expert_train_epochs": 3,
                "max_start_epoch": 1,
                "expert_epochs": 1,
                "memory": memory,
            }
        )
        generator = torch.Generator().manual_seed(0)
        method.prepare(
            real,
            build_network=lambda s: build_network(
                "convnet",
                input_shape=shape,
                n_classes=real.n_classes,
                width=width,
                depth=depth,
                random_state=s,
            ),
            generator=generator,
            augment=None,
            sample_augment=None,
            mask=MDTMask(),
            verbose=False,
        )
        method_for[memory] = method
    for syn_steps in syn_steps_list:
        for memory, method in method_for.items():
            method.options["syn_steps"] = syn_steps
            times, peaks = [], []
            for round_ in range(repeat + 1):
                ctx = make_context(
                    real,
                    ipc,
                    width,
                    depth,
                    round_,
                    100.0,
                    augment=False,
                    extra_groups=method.parameter_groups(),
                )
                began = time.perf_counter()
                peaks.append(saved_bytes(lambda ctx=ctx, method=method: method.step(ctx)))
                if round_ > 0:
                    times.append(time.perf_counter() - began)
            rows.append(
                {
                    "method": f"mtt ({memory})",
                    "syn_steps": syn_steps,
                    "seconds": statistics.median(times),
                    "saved_mib": max(peaks) / 2**20,
                }
            )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="digits", choices=["digits", "fashion-mnist"])
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    add_malloc_option(parser)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    malloc = set_malloc(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_dataset(args.dataset)
    end = data.test_start or len(data.labels)
    images = data.images[:end]
    mean, std = (s.float() for s in channel_statistics(images))
    real = RealData(normalize(images, mean, std), data.labels[:end], data.n_classes)
    depth = 2 if images.shape[-1] == 8 else 3

    rows = []
    dc_options = {"outer_loop": 5, "inner_loop": 5, "batch_real": 64}
    for name, options, lr, augment in (
        ("dm", {"batch_real": 64}, 1.0, True),
        ("dc", dc_options, 0.1, False),
        ("dsa", dc_options, 0.1, True),
    ):
        method_cls = METHODS[name]
        method = method_cls({**method_cls.defaults, **options})
        fast, slow = time_pair(method, real, args.ipc, args.width, depth, args.repeat, lr, augment)
        rows.append(
            {
                "method": name,
                "distcal it/s": 1 / fast,
                "reference it/s": 1 / slow,
                "speed-up": slow / fast,
            }
        )
        print(f"{name} done", file=sys.stderr, flush=True)
    mtt = mtt_rows(real, args.ipc, args.width, depth, args.repeat, (5, 10, 20))

    header = ["method", "distcal it/s", "reference it/s", "speed-up"]
    lines = [header] + [
        [
            r["method"],
            f"{r['distcal it/s']:.2f}",
            f"{r['reference it/s']:.2f}",
            f"{r['speed-up']:.2f}x",
        ]
        for r in rows
    ]
    mtt_header = ["method", "syn_steps", "s / iteration", "saved for backward (MiB)"]
    mtt_lines = [mtt_header] + [
        [r["method"], str(r["syn_steps"]), f"{r['seconds']:.3f}", f"{r['saved_mib']:.1f}"]
        for r in mtt
    ]
    context = (
        f"{args.dataset}, ipc {args.ipc}, ConvNet width {args.width} depth {depth}, "
        f"{torch.get_num_threads()} torch threads, median of {args.repeat}; DC/DSA with "
        f"outer_loop 5, inner_loop 5, batch_real 64; DM batch_real 64; {malloc}"
    )
    print(context)
    for table in (lines, mtt_lines):
        print(render_table(table[0], table[1:], align="right"))
        print()
    if args.markdown:
        tables = [render_table(t[0], t[1:], markdown=True) for t in (lines, mtt_lines)]
        write_markdown(args.markdown, __file__, argv, context, *tables)


if __name__ == "__main__":
    main()
