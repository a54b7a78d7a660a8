"""The strict regime: calibrating with nothing but the distilled set.

A student trained on a distilled set classifies its training images perfectly, so temperature
scaling on them has no optimum. Masked temperature scaling fits on masked copies, but which
mask ratio? There is no real data to choose it with. This script compares, on DM students of
digits or Fashion-MNIST (plain and mixup, several seeds), ways of setting the ratio that need
no real data:

- fixed ratios (0.1, 0.3, 0.5, 0.7);
- the *half-accuracy rule*, ``MaskedTemperatureScaling(mask_ratio="auto")``: the smallest ratio
  of 0.05, 0.10, ..., 0.95 at which the student's accuracy on masked copies of its training
  images falls to halfway between perfect and chance, ``(1 + 1/K) / 2``;

against the uncalibrated student, temperature scaling on the distilled set, and temperature
scaling on 5,000 (Fashion-MNIST) or 360 (digits) held-out real images, which the strict regime
does not have and which is shown as the reference. Test ECE (15 bins) in percent.

Usage::

    python benchmarks/bench_strict_regime.py --dataset fashion-mnist --seeds 3 \\
        --markdown docs/benchmarks/strict_regime_fashion_mnist.md
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from _report import render, write_markdown

from distcal import MaskedTemperatureScaling, TemperatureScaling
from distcal.distill import (
    MDTTrainer,
    StudentClassifier,
    channel_statistics,
    load_dataset,
    normalize,
    stratified_split,
)
from distcal.exceptions import DistcalWarning
from distcal.metrics import expected_calibration_error

FIXED = (0.1, 0.3, 0.5, 0.7)


def splits(data, seed):
    if data.test_start is None:
        return stratified_split(data.labels, [0.6, 0.2, 0.2], random_state=seed)
    pool = torch.arange(data.test_start)
    train, cal = stratified_split(
        data.labels[pool], [data.test_start - 5000, 5000], random_state=seed
    )
    return pool[train], pool[cal], torch.arange(data.test_start, len(data.labels))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="digits", choices=["digits", "fashion-mnist"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--n-masks", type=int, default=10)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DistcalWarning)
    data = load_dataset(args.dataset)
    depth = 2 if args.dataset == "digits" else 3
    augment = "color_crop_cutout_scale_rotate" if args.dataset == "digits" else "dsa"
    columns = ["none", "TS distilled", *[f"MTS {r}" for r in FIXED], "MTS half-acc", "TS held-out"]
    results = {(s, c): [] for s in ("plain", "mixup") for c in columns}
    chosen = {"plain": [], "mixup": []}
    extra = {"plain": [], "mixup": []}
    for seed in range(args.seeds):
        train, cal, test = splits(data, seed)
        X_train, y_train = data.images[train], data.labels[train]
        mean, std = (s.float() for s in channel_statistics(X_train))
        X_test, y_test = normalize(data.images[test], mean, std), data.labels[test].numpy()
        X_cal, y_cal = normalize(data.images[cal], mean, std), data.labels[cal].numpy()
        trainer = MDTTrainer(
            "dm",
            ipc=10,
            width=32,
            depth=depth,
            iterations=args.iterations,
            augment=augment,
            method_params={"batch_real": 64},
            random_state=seed,
        ).fit(X_train, y_train)
        images, labels = trainer.images_, trainer.labels_
        for student_name, alpha in (("plain", 0.0), ("mixup", 1.0)):
            student = StudentClassifier(
                width=32,
                depth=depth,
                epochs=args.epochs,
                augment=augment,
                mixup_alpha=alpha,
                random_state=seed,
            ).fit(images, labels)
            net = student.network_
            logits_test = student.decision_function(X_test)

            def record(column, proba, name=student_name, y_test=y_test):
                proba = proba.numpy() if isinstance(proba, torch.Tensor) else proba
                results[name, column].append(100 * expected_calibration_error(y_test, proba))

            record("none", torch.softmax(logits_test, 1))
            ts = TemperatureScaling().fit(student.decision_function(images), labels)
            record("TS distilled", ts.predict_proba(logits_test))
            for ratio in FIXED:
                mts = MaskedTemperatureScaling(
                    ratio, model=net, n_masks=args.n_masks, random_state=seed
                ).fit(images, labels)
                record(f"MTS {ratio}", mts.predict_proba(X_test))
            mts = MaskedTemperatureScaling(
                "auto", model=net, n_masks=args.n_masks, random_state=seed
            ).fit(images, labels)
            chosen[student_name].append(mts.mask_ratio_)
            record("MTS half-acc", mts.predict_proba(X_test))
            held = TemperatureScaling().fit(student.decision_function(X_cal), y_cal)
            record("TS held-out", held.predict_proba(logits_test))
            accuracy = float((logits_test.argmax(1).numpy() == y_test).mean())
            confidence = float(torch.softmax(logits_test, 1).amax(1).mean())
            extra[student_name].append((accuracy, confidence, held.temperature_))
        print(f"seed {seed} done", file=sys.stderr, flush=True)

    header = ["student", "acc %", "conf %", "T held-out", *columns, "half-acc ratio"]
    lines = []
    for name in ("plain", "mixup"):
        acc, conf, t_held = (np.array(v) for v in zip(*extra[name], strict=True))
        row = [name, f"{100 * acc.mean():.1f}", f"{100 * conf.mean():.1f}", f"{t_held.mean():.2f}"]
        row += [
            f"{np.mean(results[name, c]):.2f} ± {np.std(results[name, c]):.2f}" for c in columns
        ]
        row.append(f"{np.mean(chosen[name]):.2f}")
        lines.append(row)
    context = (
        f"{args.dataset}, DM ipc 10 ({args.iterations} iterations), ConvNet width 32 depth "
        f"{depth}, students {args.epochs} epochs, {args.seeds} seeds, {args.n_masks} masked "
        "copies per image; cells: test ECE (15 bins, %), mean ± std over seeds"
    )
    print(context)
    print(render(header, lines, align="right"))
    if args.markdown:
        write_markdown(args.markdown, __file__, argv, context, render(header, lines, markdown=True))


if __name__ == "__main__":
    main()
