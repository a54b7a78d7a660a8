"""Offline comparison of calibration-recipe candidates on the development data of issue 21.

Reads the ``.npz`` files of ``benchmarks/recipe_development.py`` and, for every student of the
pool taken in turn as "the user's student" (never one of its own proxies), computes the test
ECE-15 that each candidate gives it, next to held-out TS (the reference), no calibration, the
strict-regime default (approximated on the ratio grid) and TS on k real images per class.

Usage::

    python benchmarks/recipe_analysis.py /tmp/recipe-dev --dataset digits
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from distcal.calibration import fit_temperature
from distcal.metrics import expected_calibration_error


def temperature(logits, labels) -> float:
    fit = fit_temperature(torch.from_numpy(np.asarray(logits, dtype=np.float64)),
                          torch.from_numpy(np.asarray(labels)).long())  # fmt: skip
    return float(fit.temperature)


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def ece(logits, labels, t) -> float:
    return 100 * expected_calibration_error(
        labels, softmax(logits.astype(np.float64) / t), n_bins=15
    )


def load(path: Path) -> dict:
    """Per-student records: temperatures, features and the test logits."""
    archive = np.load(path)
    meta = json.loads(str(archive["meta"]))
    ratios = np.array(meta["ratios"])
    y_d = archive["distilled_labels"]
    n_classes = int(archive["s0_test"].shape[1])
    students = []
    for i, info in enumerate(meta["students"]):
        key = f"s{i}"
        masked = archive[f"{key}_masked"]  # (n_ratios, n_masks * n, K)
        clean = archive[f"{key}_clean"]
        repeated = np.tile(y_d, masked.shape[1] // len(y_d))
        t_masked = np.array([temperature(m, repeated) for m in masked])
        acc_masked = np.array([(m.argmax(1) == repeated).mean() for m in masked])
        top2 = np.sort(clean, axis=1)[:, -2:]
        students.append(
            {
                "recipe": info["recipe"],
                "random_state": info["random_state"],
                "fit_seconds": info["fit_seconds"],
                "t_val": temperature(archive[f"{key}_val"], archive["y_val"]),
                "t_cal": temperature(archive[f"{key}_cal"], archive["y_cal"]),
                "val": archive[f"{key}_val"],
                "test": archive[f"{key}_test"],
                "t_masked": t_masked,
                "acc_masked": acc_masked,
                "clean_max": float(clean.max(axis=1).mean()),
                "clean_margin": float((top2[:, 1] - top2[:, 0]).mean()),
                "clean_std": float(clean.std(axis=1).mean()),
                "masked_std": np.array([m.std(axis=1).mean() for m in masked]),
                "masked_max": np.array([m.max(axis=1).mean() for m in masked]),
            }
        )
    return {
        "meta": meta,
        "ratios": ratios,
        "n_classes": n_classes,
        "y_val": archive["y_val"],
        "y_test": archive["y_test"],
        "students": students,
    }


def interpolate_log(ratios, values, r):
    return float(np.exp(np.interp(r, ratios, np.log(values))))


def matched_ratio(ratios, t_masked, target):
    """The ratio where log T_masked(r) crosses log target (linear interpolation on the grid)."""
    logs = np.log(t_masked)
    goal = math.log(target)
    for j in range(len(ratios) - 1):
        a, b = logs[j] - goal, logs[j + 1] - goal
        if a == 0:
            return float(ratios[j])
        if a * b < 0:
            return float(ratios[j] + (ratios[j + 1] - ratios[j]) * a / (a - b))
    return float(ratios[0] if abs(logs[0] - goal) < abs(logs[-1] - goal) else ratios[-1])


def half_accuracy_ratio(ratios, acc, n_classes):
    target = (1 + 1 / n_classes) / 2
    for j in range(len(ratios) - 1):
        if acc[j] > target >= acc[j + 1]:
            return float(
                ratios[j] + (ratios[j + 1] - ratios[j]) * (acc[j] - target) / (acc[j] - acc[j + 1])
            )
    return float(ratios[-1])


FEATURES = {
    "logT0.3": lambda s, R: math.log(interpolate_log(R, s["t_masked"], 0.3)),
    "logT0.5": lambda s, R: math.log(interpolate_log(R, s["t_masked"], 0.5)),
    "logT0.7": lambda s, R: math.log(interpolate_log(R, s["t_masked"], 0.7)),
    "logCleanStd": lambda s, R: math.log(s["clean_std"]),
    "logCleanMax": lambda s, R: math.log(max(s["clean_max"], 1e-3)),
    "logMaskedStd0.5": lambda s, R: math.log(float(np.interp(0.5, R, s["masked_std"]))),
    "acc0.5": lambda s, R: float(np.interp(0.5, R, s["acc_masked"])),
}


def candidates(user, proxies, data, rng_seed):
    """Temperatures of every candidate for ``user`` given ``proxies`` (lists of student dicts)."""
    R = data["ratios"]
    out = {"held-out TS": user["t_cal"], "none": 1.0}
    r_half = half_accuracy_ratio(R, user["acc_masked"], data["n_classes"])
    out["default strict"] = interpolate_log(R, user["t_masked"], r_half)
    logs = np.log([p["t_val"] for p in proxies])
    out["a: proxies' T"] = float(np.exp(logs.mean()))
    r_p = [matched_ratio(R, p["t_masked"], p["t_val"]) for p in proxies]
    out["b: matched ratio"] = interpolate_log(R, user["t_masked"], float(np.mean(r_p)))
    for name, feature in FEATURES.items():
        x = np.array([feature(p, R) for p in proxies])
        xu = feature(user, R)
        if len(proxies) >= 3 and x.std() > 0:
            beta, alpha = np.polyfit(x, logs, 1)
            out[f"c: {name}"] = float(np.exp(alpha + beta * xu))
        if name.startswith("log"):
            out[f"scale: {name}"] = float(np.exp(logs.mean() + xu - x.mean()))
    # the proxies of the user's own recipe, when there are any: their mean held-out T
    same = [p for p in proxies if p["recipe"] == user["recipe"]]
    if same:
        out["matched recipe"] = float(np.exp(np.mean(np.log([p["t_val"] for p in same]))))
    else:
        out["matched recipe"] = out.get("c: logCleanStd", out["a: proxies' T"])
    # TS on k real images per class kept beside the set (from the distiller's validation split)
    rng = np.random.default_rng(rng_seed)
    y_val = data["y_val"]
    for k in (1, 2, 5):
        pick = np.concatenate(
            [
                rng.choice(np.flatnonzero(y_val == c), k, replace=False)
                for c in range(data["n_classes"])
            ]
        )
        out[f"TS on {k} real/class"] = temperature(user["val"][pick], y_val[pick])
    return out


def evaluate(files, proxy_recipes, user_recipes=None):
    """Rows: one per (file, user student), ECE of each candidate and the ratio to held-out TS."""
    rows = []
    for path in files:
        data = load(path)
        students = data["students"]
        for u, user in enumerate(students):
            if user_recipes is not None and user["recipe"] not in user_recipes:
                continue
            proxies = [p for i, p in enumerate(students) if i != u and p["recipe"] in proxy_recipes]
            temps = candidates(user, proxies, data, rng_seed=u)
            row = {
                "file": path.name,
                "recipe": user["recipe"],
                "seen": user["recipe"] in proxy_recipes,
            }
            for name, t in temps.items():
                row[name] = ece(user["test"], data["y_test"], t)
                row[f"T {name}"] = t
            rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--proxies", default="standard,mixup,epochs150,lr0.02,width16")
    args = parser.parse_args()
    import pandas as pd

    files = sorted(args.folder.glob(f"{args.dataset}-seed*.npz"))
    rows = pd.DataFrame(evaluate(files, set(args.proxies.split(","))))
    names = [
        c for c in rows.columns if not c.startswith("T ") and c not in ("file", "recipe", "seen")
    ]
    pd.set_option("display.width", 250)
    print(rows.groupby("seen")[names].mean().T.round(2))
    print(rows.groupby("recipe")[names].mean().T.round(2))


if __name__ == "__main__":
    main()


#: The pool's recipes that ``default_proxies`` trains (the set's recipe, mixup, half the
#: epochs, twice the learning rate), and how the transfer recipes of ``distcal run`` map to
#: the pool's (epochs x2 ~ 500 epochs, lr x0.5, width x2, depth +1).
PRODUCT_PROXIES = ("standard", "mixup", "epochs150", "lr0.02")
TRANSFER = {"epochs500": "epochs x2", "lr0.005": "lr x0.5", "width64": "width x2",
            "depth+1": "depth +1"}  # fmt: skip


def product_rows(files, copies=2, methods=None):
    """As ``distcal run`` will: at most ``copies`` proxies per default variation, never the
    user's own student; every pool student in turn is the user's."""
    rows = []
    for path in files:
        data = load(path)
        students = data["students"]
        for u, user in enumerate(students):
            proxies, taken = [], {}
            for i, p in enumerate(students):
                if i == u or p["recipe"] not in PRODUCT_PROXIES:
                    continue
                if taken.get(p["recipe"], 0) < copies:
                    taken[p["recipe"]] = taken.get(p["recipe"], 0) + 1
                    proxies.append(p)
            temps = candidates(user, proxies, data, rng_seed=u)
            row = {"file": path.name, "recipe": user["recipe"],
                   "seen": user["recipe"] in PRODUCT_PROXIES}  # fmt: skip
            for name, t in temps.items():
                if methods is None or name in methods:
                    row[name] = ece(user["test"], data["y_test"], t)
            rows.append(row)
    return rows
