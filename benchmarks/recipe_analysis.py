"""Offline comparison of calibration-recipe candidates on the development data of issue 21.

Reads the ``.npz`` files of ``benchmarks/recipe_development.py`` (development seeds only) and,
for every student of the pool taken in turn as "the user's student" (never one of its own
proxies), computes the test ECE-15 that each candidate gives it, next to held-out TS (the
reference), no calibration, the strict-regime default (approximated on the ratio grid) and TS
on k real images per class. The proxies are chosen from the pool as
``distcal.distill.default_proxies`` trains them: one student of each default variation.

Usage::

    python benchmarks/recipe_analysis.py /tmp/recipe-dev \\
        --markdown docs/benchmarks/recipe_development.md \\
        --csv docs/benchmarks/recipe_development.csv

The CSV holds one row per (file, user student, proxy design): every candidate's temperature
and test ECE, so the tables can be regenerated and other candidates compared on the same
students without the hours the pool takes to train.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import torch

from distcal.calibration import fit_temperature
from distcal.experiment.report import render_table
from distcal.metrics import expected_calibration_error

#: The pool's recipes that ``default_proxies`` trains, by the name the pool gives them.
PROXIES_8 = ("standard", "mixup", "epochs150", "lr0.02", "width16", "mixup-epochs150",
             "smoothing0.1", "no-augment")  # fmt: skip
#: The first four (the design of the first draft: 2 copies of each).
PROXIES_4 = ("standard", "mixup", "epochs150", "lr0.02")
#: The pool's recipes that stand for ``distcal run``'s transfer students.
TRANSFER = ("epochs500", "lr0.005", "width64", "depth+1")
DESIGNS = {"8 recipes x 1": (PROXIES_8, 1), "4 recipes x 2": (PROXIES_4, 2)}
FEATURE_RATIO = 0.7
SOURCE_HEADER = ("dataset", "sets", "log T across recipes", "log T within a recipe",
                 f"log T_masked({FEATURE_RATIO}) within", "log(T_val / T_test)",
                 "log(T_held-out / T_test)")  # fmt: skip
CANDIDATES = (
    "none",
    "default strict",
    "TS 1 real/class",
    "TS 2 real/class",
    "TS 5 real/class",
    "a: temperature",
    "b: ratio",
    "c: line on scale",
    "c: plane (predictor)",
)


def temperature(logits, labels) -> float:
    fit = fit_temperature(torch.from_numpy(np.asarray(logits, dtype=np.float64)),
                          torch.from_numpy(np.asarray(labels)).long())  # fmt: skip
    return float(fit.temperature)


def ece(logits, labels, t) -> float:
    z = logits.astype(np.float64) / t
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return 100 * expected_calibration_error(labels, p, n_bins=15)


def load(path: Path) -> dict:
    """Per-student records of one development file: temperatures, features, test logits."""
    archive = np.load(path)
    meta = json.loads(str(archive["meta"]))
    ratios = np.array(meta["ratios"])
    y_d = archive["distilled_labels"]
    students = []
    for i, info in enumerate(meta["students"]):
        masked = archive[f"s{i}_masked"]  # (n_ratios, n_masks * n, K), nested masks
        clean = archive[f"s{i}_clean"].astype(np.float64)
        repeated = np.tile(y_d, masked.shape[1] // len(y_d))
        students.append(
            {
                "recipe": info["recipe"],
                "random_state": info["random_state"],
                "t_val": temperature(archive[f"s{i}_val"], archive["y_val"]),
                "t_cal": temperature(archive[f"s{i}_cal"], archive["y_cal"]),
                "t_test": temperature(archive[f"s{i}_test"], archive["y_test"]),
                "val": archive[f"s{i}_val"],
                "test": archive[f"s{i}_test"],
                "t_masked": np.array([temperature(m, repeated) for m in masked]),
                "acc_masked": np.array([(m.argmax(1) == repeated).mean() for m in masked]),
                "scale": float(clean.std(axis=1).mean()),
            }
        )
    return {
        "name": path.stem,
        "ratios": ratios,
        "n_classes": int(archive["s0_test"].shape[1]),
        "y_val": archive["y_val"],
        "y_test": archive["y_test"],
        "students": students,
    }


def _masked_t(data, student, ratio) -> float:
    return float(np.exp(np.interp(ratio, data["ratios"], np.log(student["t_masked"]))))


def _matched_ratio(data, student) -> float:
    """Where log T_masked(r) crosses the student's held-out log T (grid interpolation)."""
    r, logs, goal = data["ratios"], np.log(student["t_masked"]), math.log(student["t_val"])
    for j in range(len(r) - 1):
        a, b = logs[j] - goal, logs[j + 1] - goal
        if a <= 0 < b:
            return float(r[j] + (r[j + 1] - r[j]) * -a / (b - a))
    return float(r[0] if logs[0] > goal else r[-1])


def _half_accuracy_ratio(data, student) -> float:
    r, acc, target = data["ratios"], student["acc_masked"], (1 + 1 / data["n_classes"]) / 2
    for j in range(len(r) - 1):
        if acc[j] > target >= acc[j + 1]:
            return float(r[j] + (r[j + 1] - r[j]) * (acc[j] - target) / (acc[j] - acc[j + 1]))
    return float(r[-1])


def candidates(data, user, proxies, seed: int) -> dict:
    """The temperature each candidate gives ``user`` with ``proxies`` (student records)."""
    held_out = np.log([p["t_val"] for p in proxies])
    scale = np.log([p["scale"] for p in proxies])
    masked = np.log([_masked_t(data, p, FEATURE_RATIO) for p in proxies])
    out = {"held-out TS": user["t_cal"], "none": 1.0}
    out["default strict"] = _masked_t(data, user, _half_accuracy_ratio(data, user))
    rng = np.random.default_rng(seed)
    y_val = data["y_val"]
    order = {c: rng.permutation(np.flatnonzero(y_val == c)) for c in range(data["n_classes"])}
    for k in (1, 2, 5):
        pick = np.concatenate([order[c][:k] for c in range(data["n_classes"])])
        out[f"TS {k} real/class"] = temperature(user["val"][pick], y_val[pick])
    out["a: temperature"] = float(np.exp(held_out.mean()))
    ratio = float(np.mean([_matched_ratio(data, p) for p in proxies]))
    out["b: ratio"] = _masked_t(data, user, ratio)
    slope, intercept = np.polyfit(scale, held_out, 1)
    out["c: line on scale"] = float(np.exp(intercept + slope * math.log(user["scale"])))
    design = np.column_stack([np.ones(len(proxies)), scale, masked])
    coef = np.linalg.lstsq(design, held_out, rcond=None)[0]
    user_masked = math.log(_masked_t(data, user, FEATURE_RATIO))
    features = np.array([1.0, math.log(user["scale"]), user_masked])
    out["c: plane (predictor)"] = float(np.exp(features @ coef))
    return out


def rows_of(data) -> list[dict]:
    rows = []
    students = data["students"]
    for design, (recipes, copies) in DESIGNS.items():
        for u, user in enumerate(students):
            if user["recipe"] not in recipes and user["recipe"] not in TRANSFER:
                continue
            taken, proxies = {}, []
            for i, p in enumerate(students):
                if i != u and p["recipe"] in recipes and taken.get(p["recipe"], 0) < copies:
                    taken[p["recipe"]] = taken.get(p["recipe"], 0) + 1
                    proxies.append(p)
            temps = candidates(data, user, proxies, seed=u)
            row = {"file": data["name"], "design": design, "student": u, "recipe": user["recipe"],
                   "group": "seen" if user["recipe"] in recipes else "transfer",
                   "n_proxies": len(proxies)}  # fmt: skip
            for name, t in temps.items():
                row[f"T {name}"] = t
                row[f"ECE {name}"] = ece(user["test"], data["y_test"], t)
            rows.append(row)
    return rows


def temperature_sources(datas) -> list[list[str]]:
    """How much held-out and masked temperatures move within a recipe and across recipes."""
    out = []
    for name, group in datas.items():
        within, across, masked_within = [], [], []
        agree_val, agree_cal = [], []
        for data in group:
            by_recipe = {}
            for s in data["students"]:
                by_recipe.setdefault(s["recipe"], []).append(s)
                agree_val.append(math.log(s["t_val"] / s["t_test"]))
                agree_cal.append(math.log(s["t_cal"] / s["t_test"]))
            across.append(np.std([math.log(s["t_val"]) for s in data["students"]], ddof=1))
            for members in by_recipe.values():
                if len(members) > 1:
                    within.append(np.std([math.log(s["t_val"]) for s in members], ddof=1))
                    masked = [math.log(_masked_t(data, s, FEATURE_RATIO)) for s in members]
                    masked_within.append(np.std(masked, ddof=1))
        out.append([name, str(len(group)), f"{np.mean(across):.3f}", f"{np.mean(within):.3f}",
                    f"{np.mean(masked_within):.3f}",
                    f"{np.mean(agree_val):+.3f} ({np.std(agree_val, ddof=1):.3f})",
                    f"{np.mean(agree_cal):+.3f} ({np.std(agree_cal, ddof=1):.3f})"])  # fmt: skip
    return out


def candidate_table(rows, dataset: str) -> str:
    header = ["proxies", "students", "n", *CANDIDATES]
    body = []
    for design in DESIGNS:
        for group in ("seen", "transfer"):
            chosen = [r for r in rows if r["file"].startswith(dataset) and r["design"] == design
                      and r["group"] == group]  # fmt: skip
            reference = np.mean([r["ECE held-out TS"] for r in chosen])
            means = [np.mean([r[f"ECE {c}"] for r in chosen]) for c in CANDIDATES]
            cells = [f"{mean / reference:.2f}" for mean in means]
            body.append([design, group, str(len(chosen)), *cells])
    return render_table(header, body, markdown=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--csv", type=Path, default=None)
    args = parser.parse_args()
    datas = {}
    for dataset in ("digits", "fashion-mnist"):
        files = sorted(args.folder.glob(f"{dataset}-seed*.npz"))
        if files:
            datas[dataset] = [load(f) for f in files]
    rows = [row for group in datas.values() for data in group for row in rows_of(data)]
    sections = [
        "Generated by `python benchmarks/recipe_analysis.py` from the development data of "
        "`benchmarks/recipe_development.py` (seeds 0-7 of digits, 0-2 of Fashion-MNIST; DM sets, "
        "and MDT sets of digits). Every student of the pool is in turn the user's student; its "
        "proxies are other students of the pool, never itself.",
        "**Where the held-out temperature comes from.** SD of log held-out temperature across "
        "all students of a set, and within students of one recipe (different seeds); the SD of "
        f"log MTS temperature at ratio {FEATURE_RATIO} within one recipe; and how the "
        "temperature on the distiller's validation images (of the training split) and on the "
        "user's held-out split compare with the one the test split wants (mean (SD) of the log "
        "ratio).",
        render_table(SOURCE_HEADER, temperature_sources(datas), markdown=True),
    ]
    for dataset in datas:
        sections += [
            f"**{dataset}: test ECE-15 of each candidate as a ratio of held-out TS** (mean over "
            "students; `seen`: the user's recipe is among the proxies' (another seed), "
            "`transfer`: epochs x500/300, lr x0.5, width x2, depth +1, none among the proxies').",
            candidate_table(rows, dataset),
        ]
    text = "\n\n".join(sections)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.csv:
        with args.csv.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows({k: float.__repr__(v) if isinstance(v, float) else v
                              for k, v in row.items()} for row in rows)  # fmt: skip


if __name__ == "__main__":
    main()
