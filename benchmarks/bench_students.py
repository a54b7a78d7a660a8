"""Student throughput: students trained as one batch against the same students one after another.

The students are those of one experiment seed at a profile's sizes (ConvNet of the profile's
width, the dataset's depth and augmentation, the profile's epochs): three training sets of
``ipc`` images per class (disjoint stratified draws of real images standing in for the DM, MDT
and real sets), each with a plain and a mixup student, all with the seed's ``random_state``.
The peer is :meth:`StudentClassifier.fit` on each in turn; :func:`distcal.distill.fit_students`
trains the same students as one vectorised computation. Both run alternately in one process,
the first round is a warm-up and dropped, and the table gives the median. The last column is
the largest difference between a batched student's test logits and its sequential twin's
(float rounding: the batched convolutions sum in another order).

The ceiling columns time a third run in the same rounds: one network trained on the sets
joined into one (``students`` times the images, one SGD step per epoch as each student takes).
A batched computation of the students does at least that arithmetic, on separate weights, so
its speed-up over one-after-another cannot much exceed that network's: the ceiling says how
much of a student's time is arithmetic that grows with its images (on a CPU core, most of it)
and how much is per-step cost that batching can share. As ``distcal run`` does, the script
first has glibc keep freed memory (``distcal._allocator``; ``--system-malloc`` leaves malloc
alone): otherwise the joined network's activations, the largest allocations here, are
faulted in afresh at every step and the ceiling measures page faults.

Usage::

    python benchmarks/bench_students.py [--dataset digits|fashion-mnist] [--profile small]
        [--epochs N] [--repeat 3] [--threads N [N ...]] [--device cpu|cuda]
        [--system-malloc] [--markdown docs/benchmarks/students.md]
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch
from _report import add_malloc_option, argument_parser, set_malloc, write_markdown

from distcal.distill import (
    StudentClassifier,
    channel_statistics,
    fit_students,
    load_dataset,
    normalize,
    stratified_split,
)
from distcal.experiment.report import render_table
from distcal.experiment.settings import DATASETS, profile_by_name


def training_sets(dataset: str, ipc: int, n_sets: int, seed: int):
    """Disjoint stratified sets of ``ipc`` images per class, standardised, and test images."""
    data = load_dataset(dataset)
    end = data.test_start or len(data.labels)
    images, labels = data.images[:end], data.labels[:end]
    size = ipc * data.n_classes
    parts = stratified_split(labels, [size] * n_sets + [500], random_state=seed)
    mean, std = (s.float() for s in channel_statistics(images))
    sets = [(normalize(images[part], mean, std), labels[part]) for part in parts[:-1]]
    return sets, normalize(images[parts[-1]], mean, std), data.n_classes


def make_students(options: dict, alphas, seed: int):
    return [StudentClassifier(**options, mixup_alpha=alpha, random_state=seed) for alpha in alphas]


def run(args):
    profile = profile_by_name(args.profile)
    recipe = DATASETS[args.dataset]
    epochs = args.epochs or profile.student_epochs
    n_sets = -(-args.students // 2)
    sets, test_images, n_classes = training_sets(args.dataset, profile.ipc, n_sets, args.seed)
    # Each set gets a plain and a mixup student, as in one seed of the experiment.
    alphas = [0.0 if i % 2 == 0 else profile.mixup_alpha for i in range(args.students)]
    datasets = [sets[i // 2] for i in range(args.students)]
    options = {
        "width": profile.width,
        "depth": recipe.depth,
        "epochs": epochs,
        "augment": recipe.augment,
        "n_classes": n_classes,
        "device": args.device,
    }
    # The students' training sets end to end: what one network would train on in their place.
    joined = (torch.cat([X for X, _ in datasets]), torch.cat([y for _, y in datasets]))
    n_joined = len(joined[1])
    sequential_times, batched_times, ceiling_times = [], [], []
    for round_ in range(args.repeat + 1):  # the first round warms up and is dropped
        students = make_students(options, alphas, args.seed)
        began = time.perf_counter()
        alone = [s.fit(X, y) for s, (X, y) in zip(students, datasets, strict=True)]
        elapsed = time.perf_counter() - began
        if round_ > 0:
            sequential_times.append(elapsed)
        students = make_students(options, alphas, args.seed)
        began = time.perf_counter()
        batched = fit_students(students, datasets)
        elapsed = time.perf_counter() - began
        if round_ > 0:
            batched_times.append(elapsed)
        one = StudentClassifier(**options, batch_size=n_joined, random_state=args.seed)
        began = time.perf_counter()
        one.fit(*joined)
        elapsed = time.perf_counter() - began
        if round_ > 0:
            ceiling_times.append(elapsed)
    difference = max(
        (a.decision_function(test_images) - b.decision_function(test_images)).abs().max().item()
        for a, b in zip(alone, batched, strict=True)
    )
    sequential, together = statistics.median(sequential_times), statistics.median(batched_times)
    ceiling = statistics.median(ceiling_times)
    return [
        str(torch.get_num_threads()),
        str(args.students),
        str(epochs),
        f"{sequential:.2f}",
        f"{together:.2f}",
        f"{args.students / sequential:.3f}",
        f"{args.students / together:.3f}",
        f"{sequential / together:.2f}x",
        f"{ceiling:.2f}",
        f"{sequential / ceiling:.2f}x",
        f"{difference:.1e}",
    ]


HEADER = [
    "torch threads",
    "students",
    "epochs",
    "one after another (s)",
    "batched (s)",
    "students/s alone",
    "students/s batched",
    "speed-up",
    "one network on all sets (s)",
    "ceiling",
    "max logit difference",
]


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument("--dataset", default="digits", choices=sorted(DATASETS))
    parser.add_argument("--profile", default="small", help="sizes of PROFILES (default: small)")
    parser.add_argument("--students", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=None, help="default: the profile's")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, nargs="*", default=None, help="torch threads, one row each"
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cpu)")
    add_malloc_option(parser)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    malloc = set_malloc(args)
    rows = []
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        rows.append(run(args))
    profile = profile_by_name(args.profile)
    device = args.device or "cpu"
    header = (
        f"{args.dataset}, profile {args.profile}: {args.students} students, ConvNet width "
        f"{profile.width} depth {DATASETS[args.dataset].depth}, augment "
        f"{DATASETS[args.dataset].augment!r}, {profile.ipc} images per class, plain and mixup "
        f"(alpha {profile.mixup_alpha}); {device}, median of {args.repeat}; {malloc}"
    )
    print(header + "\n\n" + render_table(HEADER, rows, align="right"))
    if args.markdown:
        table = render_table(HEADER, rows, markdown=True)
        write_markdown(args.markdown, __file__, argv, header, table)


if __name__ == "__main__":
    main()
