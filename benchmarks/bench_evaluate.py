"""The cost of ``distcal evaluate``: one distilled set, its report card, against training alone.

The set is the experiment's: distribution matching (``dm_trainer``, as ``distcal run`` builds
it) on the training split of one seed, at a profile's sizes (Fashion-MNIST, IPC 10, the small
profile by default). :func:`distcal.experiment.evaluate_distilled` then evaluates it with the
``small`` protocol: each student of the set comes with a student of random real images, its
logits on the held-out and test images, the calibrators and the maximum-logit diagnostics. The
stages are timed inside the evaluation. A second call on the same output folder reuses every
student (the resume path) and so times what the report itself costs: reading the data, mapping
it into the set's space, the figures, the HTML and the CSV files.

The peer is :meth:`StudentClassifier.fit` alone on the set with the same parameters and seeds,
the work a user who only trains students would do, run in the same process half before and half
after the evaluation (on a shared machine the load moves; the spread of the peer's fits shows by
how much). The last rows give the evaluation's cost per student over the fit alone (two fits,
the set's and the baseline's, are the floor of what the report card trains), and, measured
inside the evaluation itself (the same load for both), what the report card adds to its two
fits: the logits, the calibrators, the scores and the diagnostics.

Usage::

    python benchmarks/bench_evaluate.py [--dataset fashion-mnist] [--profile small]
        [--students 5] [--epochs N] [--iterations N] [--peer-seeds 2] [--seed 0]
        [--save-set FILE | --set FILE] [--output DIR] [--system-malloc]
        [--markdown docs/benchmarks/evaluate.md]
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace

import torch
from _report import add_malloc_option, argument_parser, set_malloc, write_markdown

from distcal.distill import load_dataset, load_distilled, protocol_by_name
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
    parser.add_argument("--save-set", default=None, help="write the distilled set there")
    parser.add_argument("--set", default=None, help="a set saved by --save-set: no distilling")
    parser.add_argument("--output", default=None, help="keep the report there (default: not)")
    add_malloc_option(parser)
    parser.add_argument("--markdown", default=None)
    args = parser.parse_args(argv)
    malloc = set_malloc(args)
    if args.set:
        distilled, distil_seconds = load_distilled(args.set), float("nan")
        profile = profile_by_name(args.profile)
    else:
        distilled, distil_seconds, profile = distil(args)
        if args.save_set:
            distilled.save(args.save_set)
    protocol = protocol_by_name("small")
    options = {} if args.epochs is None else {"epochs": args.epochs}
    recipe = DATASETS[args.dataset]
    n_classes = int(distilled.labels.max()) + 1

    def peer(seed):
        """One fit alone, with the evaluation's parameters; its seconds."""
        student = protocol.student(
            depth=recipe.depth, augment=recipe.augment, random_state=seed, n_classes=n_classes,
            **options,
        )  # fmt: skip
        began = time.perf_counter()
        student.fit(distilled.images, distilled.labels)
        return time.perf_counter() - began

    seeds = range(args.seed, args.seed + args.peer_seeds)
    fits = [peer(seed) for seed in seeds[: len(seeds) // 2]]
    with tempfile.TemporaryDirectory() as temporary:
        folder = args.output or temporary
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

    fits += [peer(seed) for seed in seeds[len(seeds) // 2 :]]
    config = result["config"]["protocol"]
    fit_alone = statistics.median(fits)
    fitting = sum(sum(stages.get(f"{name}: fit", [])) for name in ("distilled", "random real"))
    adding = sum(sum(v) for stage, v in stages.items() if not stage.endswith(": fit"))
    per_student = total / args.students
    rows = [["evaluate_distilled, all students", f"{total:.1f}", f"{per_student:.2f}"]]
    rows += [
        [f"  {stage}", f"{sum(values):.1f}", f"{statistics.mean(values):.2f}"]
        for stage, values in stages.items()
    ]
    rows += [
        ["  outside the students (a resumed rerun: data, space, report)", f"{report:.1f}", "-"],
        [
            f"StudentClassifier.fit alone (peer, median of {args.peer_seeds}: "
            + ", ".join(f"{fit:.1f}" for fit in fits)
            + " s)",
            "-",
            f"{fit_alone:.2f}",
        ],
        ["evaluation per student / fit alone", "-", f"{per_student / fit_alone:.2f}x"],
        [
            "evaluation per student / two fits (set + baseline)",
            "-",
            f"{per_student / (2 * fit_alone):.2f}x",
        ],
        [
            "inside the evaluation: logits, calibrators, scores, diagnostics / the two fits",
            "-",
            f"{adding / fitting:.2f}x",
        ],
    ]
    made = "a saved set" if args.set else f"{distil_seconds:.0f} s to distil, not counted below"
    header_text = (
        f"{args.dataset}, DM set of {profile.ipc} images per class ({profile.iterations} "
        f"iterations, {made}); protocol small "
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
