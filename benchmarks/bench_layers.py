"""Where a forward pass of the experiment's ConvNet spends its time, layer by layer.

The experiment's stages (distillation, students, calibration, the full-data network) are
forward and backward passes of one ConvNet. This script times each layer of its forward pass
on the batch a distribution-matching iteration embeds (``batch_real`` real images for each of
the 10 classes), in the default memory layout (NCHW) and, side by side, in channels-last, and
says whether the two layouts give the same outputs bit for bit. It shows what is left to gain
without changing the arithmetic: a layer's time in either layout, and how far each layer is
from the memory bandwidth (the bytes it reads and writes over its time). As ``distcal run``
does, the script first has glibc keep freed memory (``--system-malloc`` leaves malloc alone):
otherwise each layer's output is faulted in afresh and the table measures page faults.

Usage::

    python benchmarks/bench_layers.py [--dataset fashion-mnist|digits] [--threads 1]
        [--repeat 10] [--system-malloc] [--markdown docs/benchmarks/layer_profile.md]
"""

from __future__ import annotations

import statistics
import time

import torch
from _report import add_malloc_option, argument_parser, set_malloc, write_markdown

from distcal.distill import build_network
from distcal.experiment.report import render_table
from distcal.experiment.settings import dataset_recipe, profile_by_name

SHAPES = {"digits": (1, 8, 8), "fashion-mnist": (1, 28, 28)}


def timed(fn, repeat: int) -> float:
    """Median seconds of ``fn()`` over ``repeat`` calls, after one call to warm up."""
    fn()
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def layer_rows(network, x, repeat: int) -> tuple[list, torch.Tensor]:
    """Per layer of ``network.features``: its name, input shape, median seconds, bytes moved."""
    rows = []
    with torch.no_grad():
        for layer in network.features:
            # ReLU runs in place in the network; time it on a copy so every call sees the input
            run = (lambda h=x: torch.relu(h)) if isinstance(layer, torch.nn.ReLU) else None
            run = run or (lambda h=x, layer=layer: layer(h))
            seconds = timed(run, repeat)
            out = run()
            moved = (x.numel() + out.numel()) * x.element_size()
            rows.append((type(layer).__name__, tuple(x.shape), seconds, moved))
            x = out
    return rows, x


def main(argv=None) -> int:
    parser = argument_parser(__doc__)
    parser.add_argument("--dataset", default="fashion-mnist", choices=sorted(SHAPES))
    parser.add_argument("--profile", default="small", help="the experiment profile's sizes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--repeat", type=int, default=10)
    add_malloc_option(parser)
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args(argv)
    malloc = set_malloc(args)
    torch.set_num_threads(args.threads)
    profile = profile_by_name(args.profile)
    recipe = dataset_recipe(args.dataset)
    shape = SHAPES[args.dataset]
    n_images = 10 * profile.batch_real
    generator = torch.Generator().manual_seed(0)
    images = torch.randn((n_images, *shape), generator=generator)

    def network():
        return build_network(
            "convnet",
            input_shape=shape,
            n_classes=10,
            width=profile.width,
            depth=recipe.depth,
            random_state=0,
        )

    plain, plain_out = layer_rows(network(), images, args.repeat)
    last = network().to(memory_format=torch.channels_last)
    cl, cl_out = layer_rows(last, images.contiguous(memory_format=torch.channels_last), args.repeat)
    rows = []
    for (name, in_shape, seconds, moved), (_, _, cl_seconds, _) in zip(plain, cl, strict=True):
        rows.append(
            [
                name,
                "x".join(str(d) for d in in_shape),
                f"{1e3 * seconds:.1f}",
                f"{moved / seconds / 1e9:.1f}",
                f"{1e3 * cl_seconds:.1f}",
                f"{seconds / cl_seconds:.2f}x",
            ]
        )
    total, cl_total = sum(r[2] for r in plain), sum(r[2] for r in cl)
    rows.append(["total", "", f"{1e3 * total:.1f}", "", f"{1e3 * cl_total:.1f}", ""])
    rows[-1][-1] = f"{total / cl_total:.2f}x"
    same = torch.equal(plain_out, cl_out.contiguous())
    difference = (plain_out - cl_out).abs().max().item()
    header = ["layer", "input", "NCHW ms", "GB/s moved", "channels-last ms", "speed-up"]
    table = render_table(header, rows, markdown=True, align=["left"] + ["right"] * 5)
    note = (
        f"{args.dataset}, profile {args.profile!r}: ConvNet width {profile.width} depth "
        f"{recipe.depth} on {n_images} images ({profile.batch_real} per class, one "
        f"distribution-matching batch), forward without gradients, {args.threads} torch "
        f"thread(s), median of {args.repeat}. 'GB/s moved': bytes read and written by the layer "
        "over its time. Channels-last gives the same features bit for bit: "
        f"{'yes' if same else f'no (largest difference {difference:.1e})'}. {malloc}."
    )
    print(note)
    print(render_table(header, rows, align=["left"] + ["right"] * 5))
    if args.markdown:
        write_markdown(args.markdown, "bench_layers.py", argv, note, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
