"""The cost of ``distcal evaluate``: one distilled set, its report card, against training alone.

The set is the experiment's: distribution matching (``dm_trainer``, as ``distcal run`` builds
it) on the training split of one seed, at a profile's sizes (Fashion-MNIST, IPC 10, the small
profile by default). :func:`distcal.experiment.evaluate_distilled` then evaluates it with the
``small`` protocol: each student of the set comes with a student of random real images, its
logits on the held-out and test images, the calibrators and the maximum-logit diagnostics. The
stages are timed inside the evaluation. A second call on the same output folder reuses every
student (the resume path) and so times what the report itself costs: reading the data, mapping
it into the set's space, the figures, the HTML and the CSV files.

The peer, run in the same process after the evaluation, is :meth:`StudentClassifier.fit` alone
on the set with the same parameters and seeds: the work a user who only trains students would
do. The last rows give the evaluation's cost per student over the fit alone (two fits, the set's
and the baseline's, are the floor of what the report card trains).

Usage::

    python benchmarks/bench_evaluate.py [--dataset fashion-mnist] [--profile small]
        [--students 5] [--epochs N] [--iterations N] [--peer-seeds 2] [--seed 0]
        [--system-malloc] [--markdown docs/benchmarks/evaluate.md]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace

import torch
from _report import add_malloc_option, argument_parser, set_malloc, write_markdown

from distcal.distill import load_dataset, protocol_by_name
from distcal.experiment import evaluate_distilled
from distcal.experiment.pipeline import dm_trainer, split_indices
from distcal.experiment.report import render_table
from distcal.experiment.settings import DATASETS, profile_by_name


def distil(args):
    """The experiment's DM set of one seed, and the seconds it took."""
    profile = profile_by_name(args.profile)
    if args.iterations:
        profile = replace(profile, iterations=args.iterations)
    recipe = DATASETS[args.dataset]
    data = load_dataset(args.dataset)
    train, _, _ = split_indices(data, args.seed)
    trainer = dm_trainer(recipe, profile, random_state=args.seed, verbose=False)
    began = time.perf_counter()
    trainer.fit(data.images[train], data.labels[train])
    seconds = time.perf_counter() - began
    return trainer.to_distilled_set(), seconds, profile


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument("--dataset", default="fashion-mnist", choices=sorted(DATASETS))
    parser.add_argument("--profile", default="small", help="sizes of PROFILES (default: small)")
    parser.add_argument("--students", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=None, help="default: the protocol's 300")
    parser.add_argument("--iterations", type=int, default=None, help="default: the profile's")
    parser.add_argument("--peer-seeds", type=int, default=2, help="fits of the peer (2)")
    parser.add_argument("--seed", type=int, default=0)
    add_malloc_option(parser)
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args(argv)
    malloc = set_malloc(args)
    distilled, distil_seconds, profile = distil(args)
    protocol = protocol_by_name("small")
    options = {} if args.epochs is None else {"epochs": args.epochs}
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        result = evaluate_distilled(
            distilled, args.dataset, n_students=args.students, random_state=args.seed,
            student_options=options, output=folder, verbose=False,
        )  # fmt: skip
        total = time.perf_counter() - began
        began = time.perf_counter()
        evaluate_distilled(
            distilled, args.dataset, n_students=args.students, random_state=args.seed,
            student_options=options, output=folder, verbose=False,
        )  # fmt: skip
        report = time.perf_counter() - began
    stages: dict[str, list[float]] = {}
    for seconds in result["stage_seconds"].values():
        for stage, value in seconds.items():
            stages.setdefault(stage, []).append(value)

    # The peer: the students alone, with the evaluation's parameters and seeds.
    config = result["config"]["protocol"]
    fits = []
    for seed in range(args.seed, args.seed + args.peer_seeds):
        student = protocol.student(
            depth=config["depth"], augment=config["augment"], random_state=seed,
            n_classes=result["config"]["dataset"]["n_classes"], **options,
        )  # fmt: skip
        began = time.perf_counter()
        student.fit(distilled.images, distilled.labels)
        fits.append(time.perf_counter() - began)
    fit_alone = statistics.median(fits)
    per_student = total / args.students
    rows = [["evaluate_distilled, all students", f"{total:.1f}", f"{per_student:.2f}"]]
    rows += [
        [f"  {stage}", f"{sum(values):.1f}", f"{statistics.mean(values):.2f}"]
        for stage, values in stages.items()
    ]
    rows += [
        ["  outside the students (a resumed rerun: data, space, report)", f"{report:.1f}", "-"],
        [
            f"StudentClassifier.fit alone (peer, median of {args.peer_seeds})",
            "-",
            f"{fit_alone:.2f}",
        ],
        ["evaluation per student / fit alone", "-", f"{per_student / fit_alone:.2f}x"],
        [
            "evaluation per student / two fits (set + baseline)",
            "-",
            f"{per_student / (2 * fit_alone):.2f}x",
        ],
    ]
    header_text = (
        f"{args.dataset}, DM set of {profile.ipc} images per class ({profile.iterations} "
        f"iterations, {distil_seconds:.0f} s to distil, not counted below); protocol small "
        f"(ConvNet width {config['width']} depth {config['depth']}, {config['epochs']} epochs, "
        f"augment {config['augment']!r}); {args.students} students, each with a random-real "
        f"baseline; {result['config']['dataset']['held_out']} held-out and "
        f"{result['config']['dataset']['test']} test images; {torch.get_num_threads()} torch "
        f"threads; {malloc}"
    )
    table_header = ["stage", "seconds", "per student"]
    print(header_text + "\n\n" + render_table(table_header, rows, align=["left", "right", "right"]))
    if args.markdown:
        table = render_table(table_header, rows, markdown=True)
        write_markdown(args.markdown, __file__, argv, header_text, table)


if __name__ == "__main__":
    main()
