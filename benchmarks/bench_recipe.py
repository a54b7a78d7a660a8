"""What a calibration recipe costs its maker: seconds per distilled set, beside one student.

The recipe of a set (``fit_calibration_recipe``) trains eight proxy students, runs each on the
validation images and fits masked temperature scaling on the set (a bisection for the matched
ratio, and the predictor's ratio). The peer, in the same process and on the same threads, is
what a user spends anyway: one ``StudentClassifier.fit`` of the set's own recipe. The set is
distilled first as ``distcal run`` distils it (DM, profile small), or read from a file that
``distcal run`` saved (``--set``).

Usage::

    python benchmarks/bench_recipe.py --dataset digits --markdown docs/benchmarks/recipe_cost.md
    python benchmarks/bench_recipe.py --dataset fashion-mnist \\
        --set runs/recipe-fashion-mnist/sets/seed-13-DM.safetensors --threads 2
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from _report import add_malloc_option, argument_parser, set_malloc, write_markdown

from distcal.distill import (
    channel_statistics,
    default_proxies,
    fit_calibration_recipe,
    load_dataset,
    load_distilled,
)
from distcal.experiment.pipeline import dm_trainer, split_indices, student_classifier
from distcal.experiment.recipe import validation_split
from distcal.experiment.report import render_table
from distcal.experiment.settings import PROFILES, dataset_recipe, profile_by_name

HEADER = ["dataset", "threads", "proxies", "validation images", "recipe s", "one student s",
          "recipe / student"]  # fmt: skip


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument("--dataset", default="digits", choices=["digits", "fashion-mnist"])
    parser.add_argument("--set", type=Path, default=None, help="a set saved by distcal run")
    parser.add_argument("--seed", type=int, default=13, help="the experiment seed of the split")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", default="small", choices=sorted(PROFILES),
                        help="sizes of the set and the students (smoke: a check)")  # fmt: skip
    add_malloc_option(parser)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    malloc = set_malloc(args)
    torch.set_num_threads(args.threads)
    profile, recipe = profile_by_name(args.profile), dataset_recipe(args.dataset)
    data = load_dataset(args.dataset)
    train, _, _ = split_indices(data, args.seed)
    X_train, y_train = data.images[train], data.labels[train]
    if args.set is None:
        trainer = dm_trainer(recipe, profile, random_state=args.seed, mask_apply_to="both")
        distilled = trainer.fit(X_train, y_train).to_distilled_set()
    else:
        distilled = load_distilled(args.set)
        distilled.recipe = None
    mean, std = (s.float() for s in channel_statistics(X_train))
    if not (torch.equal(mean, distilled.mean) and torch.equal(std, distilled.std)):
        raise SystemExit(f"{args.set} was not distilled from seed {args.seed}'s training split")
    template = student_classifier(recipe, width=profile.width, epochs=profile.student_epochs,
                                  random_state=args.seed, n_classes=data.n_classes)  # fmt: skip
    validation = validation_split(y_train, profile.recipe_validation, args.seed)
    clock = time.perf_counter()
    made = fit_calibration_recipe(
        distilled, X_train[validation], y_train[validation],
        proxies=default_proxies(distilled, student=template, copies=profile.recipe_copies),
        random_state=args.seed,
    )  # fmt: skip
    recipe_seconds = time.perf_counter() - clock
    clock = time.perf_counter()
    template.fit(distilled.images, distilled.labels)
    student_seconds = time.perf_counter() - clock
    row = [args.dataset, str(args.threads), str(len(made.proxies)), str(made.n_validation),
           f"{recipe_seconds:.0f}", f"{student_seconds:.1f}",
           f"{recipe_seconds / student_seconds:.1f}x"]  # fmt: skip
    header = (
        f"One DM set of {args.dataset} (IPC {profile.ipc}, ConvNet width {profile.width}, "
        f"{profile.student_epochs} student epochs), {args.threads} torch threads, CPU; {malloc}"
    )
    print(header + "\n\n" + render_table(HEADER, [row], align="right"))
    if args.markdown:
        write_markdown(args.markdown, __file__, argv, header,
                       render_table(HEADER, [row], markdown=True))  # fmt: skip


if __name__ == "__main__":
    main()
