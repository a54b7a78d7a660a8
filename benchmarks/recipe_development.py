"""Development data for issue 21: what a distiller can ship so that a student calibrates itself.

For each seed, the script distils the DM and MDT sets exactly as ``distcal run`` does, then
trains a pool of students on each set with varied recipes (epochs, learning rate, mixup,
width, depth, label smoothing, augmentation) and several seeds, and records per student the
raw material every candidate needs, so that candidates are compared offline without
retraining:

- logits on the distiller's validation split (real images of the training split, the only real
  images a distiller has), on the user's held-out split (the reference, held-out TS) and on the
  test split;
- logits on the clean distilled images and on nested masked copies of them at ratios 0.05 to
  0.95 (the same uniform draws at every ratio).

These seeds (0-12) are development seeds of issue 13; they decide nothing. The deciding run is
``distcal run`` on seeds 13-22 (docs/preregistration_recipe.md).

Usage::

    python benchmarks/recipe_development.py --dataset digits --seeds 0-5 --output /tmp/recipe-dev
    python benchmarks/recipe_development.py --dataset fashion-mnist --seeds 0,1 --sets DM \
        --small-pool --output /tmp/recipe-dev

Each (dataset, seed, set) writes one ``.npz`` (not committed: results are not data of the
repository); a rerun skips the files that exist.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from distcal.distill import channel_statistics, load_dataset, normalize, stratified_split
from distcal.experiment import parse_seeds
from distcal.experiment.pipeline import dm_trainer, split_indices, student_classifier
from distcal.experiment.settings import PROFILES, dataset_recipe

#: Recipes of the pool, as changes to the run's student (width 32, 300 epochs, lr 0.01, the
#: dataset's depth and augmentation, no mixup), with the number of students of each.
POOL = {
    "standard": ({}, 4),
    "mixup": ({"mixup_alpha": 1.0}, 4),
    "epochs150": ({"epochs": 150}, 2),
    "epochs500": ({"epochs": 500}, 2),
    "lr0.005": ({"lr": 0.005}, 2),
    "lr0.02": ({"lr": 0.02}, 2),
    "width16": ({"width": 16}, 2),
    "width64": ({"width": 64}, 2),
    "depth+1": ({"depth": +1}, 2),
    "mixup-epochs150": ({"mixup_alpha": 1.0, "epochs": 150}, 2),
    "smoothing0.1": ({"label_smoothing": 0.1}, 2),
    "no-augment": ({"augment": "none"}, 2),
}
RATIOS = tuple(round(0.05 * k, 2) for k in range(1, 20))
N_MASKS = 20
N_VALIDATION = 5000


def student_seed(seed: int, recipe_index: int, copy: int) -> int:
    return int(np.random.SeedSequence([21, seed, recipe_index, copy]).generate_state(1)[0])


def logits(net, images, batch_size=500):
    from distcal.calibration import module_logits

    return module_logits(net, images, batch_size=batch_size).numpy().astype(np.float32)


def masked_logits(net, images, seed):
    """Logits of N_MASKS nested masked copies of ``images`` at every ratio of RATIOS."""
    generator = torch.Generator().manual_seed(seed)
    draws = torch.rand((N_MASKS, *images.shape), generator=generator)
    rows = []
    for ratio in RATIOS:
        masked = (images.unsqueeze(0) * (draws >= ratio)).reshape(-1, *images.shape[1:])
        rows.append(logits(net, masked))
    return np.stack(rows)


def run(dataset, seed, output, profile, *, sets=("DM", "MDT"), copies=None):
    data = load_dataset(dataset)
    recipe = dataset_recipe(dataset)
    train, cal, test = split_indices(data, seed)
    X_train, y_train = data.images[train], data.labels[train]
    mean, std = (s.float() for s in channel_statistics(X_train))
    # The distiller's validation split: real images of the training split (the only real images
    # a distiller has), stratified, at most N_VALIDATION.
    n_val = min(N_VALIDATION, len(train))
    val = (
        stratified_split(y_train, [n_val], random_state=seed)[0]
        if n_val < len(train)
        else (torch.arange(len(train)))
    )
    images = {
        "val": normalize(X_train[val], mean, std),
        "cal": normalize(data.images[cal], mean, std),
        "test": normalize(data.images[test], mean, std),
    }
    labels = {
        "val": y_train[val].numpy(),
        "cal": data.labels[cal].numpy(),
        "test": data.labels[test].numpy(),
    }
    for set_name, mask_ratio in (("DM", 0.0), ("MDT", profile.mdt_ratio)):
        if set_name not in sets:
            continue
        path = output / f"{dataset}-seed{seed}-{set_name}.npz"
        if path.exists():
            continue
        clock = time.perf_counter()
        trainer = dm_trainer(recipe, profile, random_state=seed, mask_ratio=mask_ratio,
                             mask_apply_to="both", verbose=False)  # fmt: skip
        trainer.fit(X_train, y_train)
        distilled, distilled_labels = trainer.images_, trainer.labels_
        seconds = {"distillation": time.perf_counter() - clock}
        record = {
            "distilled_labels": distilled_labels.numpy(),
            **{f"y_{k}": v for k, v in labels.items()},
        }
        students = []
        for index, (name, (changes, count)) in enumerate(POOL.items()):
            for copy in range(count if copies is None else min(count, copies.get(name, 1))):
                options = dict(changes)
                width = options.pop("width", profile.width)
                epochs = options.pop("epochs", profile.student_epochs)
                depth_change = options.pop("depth", 0)
                rs = student_seed(seed, index, copy)
                student = student_classifier(
                    recipe, width=width, epochs=epochs, random_state=rs,
                    n_classes=data.n_classes, **options,
                )  # fmt: skip
                if depth_change:
                    student.set_params(depth=recipe.depth + depth_change)
                clock = time.perf_counter()
                student.fit(distilled, distilled_labels)
                fit_seconds = time.perf_counter() - clock
                net = student.network_
                key = f"s{len(students)}"
                for split in ("val", "cal", "test"):
                    record[f"{key}_{split}"] = logits(net, images[split])
                record[f"{key}_clean"] = logits(net, distilled)
                record[f"{key}_masked"] = masked_logits(net, distilled, rs)
                students.append({"recipe": name, "copy": copy, "random_state": rs,
                                 "fit_seconds": fit_seconds, **student.get_params()})  # fmt: skip
                for k in ("device", "verbose"):
                    students[-1].pop(k)
        seconds["total"] = sum(s["fit_seconds"] for s in students)
        meta = {"dataset": dataset, "seed": seed, "set": set_name, "students": students,
                "ratios": RATIOS, "n_masks": N_MASKS, "seconds": seconds}  # fmt: skip
        np.savez_compressed(path, meta=json.dumps(meta), **record)
        print(f"{path.name}: {len(students)} students, {seconds}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-2"))
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--sets", default="DM,MDT", help="distilled sets to make (DM, MDT)")
    parser.add_argument(
        "--small-pool",
        action="store_true",
        help="3 students of the standard and mixup recipes, 1 of each other (Fashion-MNIST)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.output.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        copies = {"standard": 3, "mixup": 3} if args.small_pool else None
        run(args.dataset, seed, args.output, PROFILES["small"], sets=args.sets.split(","),
            copies=copies)  # fmt: skip


if __name__ == "__main__":
    main()
