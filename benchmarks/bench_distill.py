"""Distillation quality: DM and the MDT readings against random real images of the same size.

Distils Fashion-MNIST (or digits) to ``ipc`` images per class with plain DM and with the MDT
mask in each reading (which batches are masked, ratio, kind), trains ``--students`` students
on every set and reports their accuracy and uncalibrated ECE (15 bins), mean and standard
deviation over students. The readings are compared on a validation split carved out of the
training images; the test split is scored for the report only and chooses nothing.

Usage::

    python benchmarks/bench_distill.py --dataset fashion-mnist --students 3 \\
        --markdown docs/benchmarks/distill_fashion_mnist.md

The default profile fits a 2-core CPU in tens of minutes: ConvNet width 32 depth 3, DM 1000
iterations with 64 real images per class, students trained 300 epochs with DSA augmentation.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from _report import argument_parser, bullets, write_markdown

from distcal.distill import channel_statistics, load_dataset, normalize, stratified_split
from distcal.experiment.pipeline import dm_trainer, split_indices, student_classifier
from distcal.experiment.report import render_table
from distcal.experiment.scores import score_columns
from distcal.experiment.settings import DATASETS

READINGS = [
    ("random real", None),
    ("DM", {"mask_ratio": 0.0}),
    ("MDT synthetic 0.2", {"mask_ratio": 0.2, "mask_apply_to": "synthetic"}),
    ("MDT both 0.2", {"mask_ratio": 0.2, "mask_apply_to": "both"}),
    ("MDT both 0.5", {"mask_ratio": 0.5, "mask_apply_to": "both"}),
    ("MDT both 0.2 mean", {"mask_ratio": 0.2, "mask_apply_to": "both", "mask_kind": "mean"}),
    ("MDT both 0.1", {"mask_ratio": 0.1, "mask_apply_to": "both"}),
]


def evaluate(images, labels, splits, args, recipe):
    """Train ``args.students`` students on a set; their accuracy, ECE-15 and confidence."""
    rows = []
    for seed in range(args.students):
        student = student_classifier(
            recipe, width=args.width, epochs=args.epochs, random_state=seed
        ).fit(images, labels)
        scores = {}
        for split, (X, y) in splits.items():
            # Scored in the students' float32, as they output it.
            columns = score_columns(y, student.predict_proba(X).numpy(), dtype=None)
            scores[f"{split}_accuracy"] = columns["accuracy"]
            scores[f"{split}_ece"] = columns["ece15"]
            scores[f"{split}_confidence"] = columns["confidence"]
        rows.append(scores)
    return {key: [r[key] for r in rows] for key in rows[0]}


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument("--dataset", default="fashion-mnist", choices=list(DATASETS))
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--batch-real", type=int, default=64)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--depth", type=int, default=None, help="default: the dataset's recipe")
    parser.add_argument("--epochs", type=int, default=300, help="student epochs")
    parser.add_argument("--students", type=int, default=3)
    parser.add_argument("--validation", type=int, default=5000, help="validation images")
    parser.add_argument("--readings", nargs="+", default=[name for name, _ in READINGS])
    parser.add_argument("--json", type=Path, help="write every student's scores here")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    data = load_dataset(args.dataset)
    recipe = DATASETS[args.dataset]
    args.depth = args.depth or recipe.depth
    recipe = replace(recipe, depth=args.depth)
    # digits has no test split of its own: one is carved out, as the validation split is
    train, val, test = split_indices(data, 0, n_held_out=args.validation)
    X_train, y_train = data.images[train], data.labels[train]
    results = {}
    for name, params in READINGS:
        if name not in args.readings:
            continue
        began = time.perf_counter()
        if params is None:
            # ipc random real images per class, normalised like the distilled sets
            pick = stratified_split(y_train, [args.ipc * data.n_classes], random_state=0)[0]
            mean, std = (s.float() for s in channel_statistics(X_train))
            images, labels = normalize(X_train[pick], mean, std), y_train[pick]
        else:
            trainer = dm_trainer(recipe, args, random_state=0, verbose=not args.quiet, **params)
            trainer.fit(X_train, y_train)
            images, labels = trainer.images_, trainer.labels_
            mean, std = trainer.mean_, trainer.std_
        distil_seconds = time.perf_counter() - began
        splits = {
            "val": (normalize(data.images[val], mean, std), data.labels[val].numpy()),
            "test": (normalize(data.images[test], mean, std), data.labels[test].numpy()),
        }
        scores = evaluate(images, labels, splits, args, recipe)
        scores["distil_seconds"] = distil_seconds
        results[name] = scores
        print(
            f"{name}: val acc {100 * np.mean(scores['val_accuracy']):.2f} "
            f"ECE {100 * np.mean(scores['val_ece']):.2f} ({distil_seconds:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    header = [
        "set",
        "val acc %",
        "val ECE %",
        "test acc %",
        "test ECE %",
        "test conf %",
        "distil s",
    ]

    def cell(values):
        values = 100 * np.asarray(values)
        spread = values.std(ddof=1) if len(values) > 1 else 0.0  # sample SD
        return f"{values.mean():.2f} ± {spread:.2f}"

    lines = [
        [
            name,
            cell(s["val_accuracy"]),
            cell(s["val_ece"]),
            cell(s["test_accuracy"]),
            cell(s["test_ece"]),
            cell(s["test_confidence"]),
            f"{s['distil_seconds']:.0f}",
        ]
        for name, s in results.items()
    ]
    context = (
        f"{args.dataset}, ipc {args.ipc}, DM {args.iterations} iterations with "
        f"{args.batch_real} real images per class, ConvNet width {args.width} depth "
        f"{args.depth}; {args.students} students per set ({args.epochs} epochs, augment "
        f"{recipe.augment!r}); validation {len(val)} images from the training split, "
        f"test {len(test)}; "
        f"{torch.get_num_threads()} torch threads"
    )
    verdicts = []
    if "DM" in results:
        dm = results["DM"]
        for name, s in results.items():
            if name == "DM":
                continue
            gap = 100 * (np.mean(s["val_accuracy"]) - np.mean(dm["val_accuracy"]))
            ece_gap = 100 * (np.mean(s["val_ece"]) - np.mean(dm["val_ece"]))
            verdicts.append(
                f"{name}: validation accuracy {gap:+.2f} points, ECE {ece_gap:+.2f} points "
                "against DM"
            )
    print(context)
    print(render_table(header, lines, align="right"))
    print("\n".join(verdicts))
    if args.json:
        args.json.write_text(json.dumps({"context": context, "results": results}, indent=1))
    if args.markdown:
        table = render_table(header, lines, markdown=True)
        write_markdown(args.markdown, __file__, argv, context, table, bullets(verdicts))


if __name__ == "__main__":
    main()
