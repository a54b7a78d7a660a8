"""The paper's experiment end to end: distil, train students, calibrate, evaluate.

:func:`run_experiment` is what the ``distcal`` command runs. For every seed it distils the
training split with plain distribution matching and with the MDT mask, takes a random real
subset of the same size, trains a plain and a mixup student on each of the three sets, and
calibrates every student in two regimes:

- **held-out**: temperature scaling and masked temperature scaling fitted on a held-out split
  of real images (the mask ratio chosen by cross-validated ECE on that split);
- **strict**: only the student's own training images are available (the distilled set), as
  when a distilled set is all one has. Temperature scaling has no optimum there; masked
  temperature scaling is fitted on masked copies of those images, with a fixed ratio and
  with the ratio chosen by the half-accuracy rule (``mask_ratio="auto"``).

Every student and calibrator is scored on the test split, which chooses nothing. Results are
written as CSV and JSON, with reliability diagrams and maximum-logit histograms as PNG files;
finished seeds are saved as they complete, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch
from joblib import Parallel, delayed
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from ._device import one_thread_in_workers
from ._files import atomic_write, atomic_write_text
from ._progress import progress
from .calibration import MaskedTemperatureScaling, TemperatureScaling
from .distill import (
    MDTTrainer,
    StudentClassifier,
    channel_statistics,
    load_dataset,
    masking_spread,
    max_logit_statistics,
    normalize,
    stratified_split,
)
from .exceptions import DistcalWarning
from .metrics import (
    brier_score,
    expected_calibration_error,
    neg_ece_scorer,
    negative_log_likelihood,
)

__all__ = [
    "PROFILES",
    "Profile",
    "format_diagnostics",
    "format_summary",
    "run_experiment",
    "summarise",
    "summarise_diagnostics",
]

METRICS = ("accuracy", "ece10", "ece15", "nll", "brier", "confidence")


@dataclass(frozen=True)
class Profile:
    """The sizes of an experiment.

    Attributes
    ----------
    ipc : int
        Images per class of the distilled and the random real sets.
    width : int
        Channels of the ConvNet (distillation and students).
    iterations : int
        Distribution-matching iterations.
    batch_real : int
        Real images per class per distillation iteration.
    student_epochs : int
        Training epochs of every student.
    mixup_alpha : float
        Mixup's Beta parameter for the mixup students.
    mdt_ratio : float
        Mask ratio of the MDT distillation (masking both batches, as docs/benchmarks.md finds
        least harmful).
    mask_ratios : tuple of float
        Candidate ratios of masked temperature scaling.
    n_masks_heldout : int
        Masked copies of every held-out image (plenty of images: one draw suffices).
    n_masks_strict : int
        Masked copies of every training image in the strict regime (few images).
    heldout_folds : int
        Folds of the cross-validation that picks the held-out mask ratio.
    strict_ratio : float
        Fixed ratio of masked temperature scaling in the strict regime (the row "MTS strict";
        the row "MTS auto strict" chooses its ratio with ``mask_ratio="auto"``).
    """

    ipc: int = 10
    width: int = 32
    iterations: int = 500
    batch_real: int = 64
    student_epochs: int = 300
    mixup_alpha: float = 1.0
    mdt_ratio: float = 0.1
    mask_ratios: tuple = (0.1, 0.2, 0.3, 0.5, 0.7)
    n_masks_heldout: int = 1
    n_masks_strict: int = 10
    heldout_folds: int = 3
    strict_ratio: float = 0.1


PROFILES = {
    # Seconds: checks that the pipeline runs end to end; its numbers mean nothing.
    "smoke": Profile(
        ipc=2,
        width=8,
        iterations=5,
        batch_real=16,
        student_epochs=10,
        mask_ratios=(0.1, 0.3),
        n_masks_strict=2,
        heldout_folds=2,
    ),
    # Minutes on 2 CPU cores for digits; tens of minutes for Fashion-MNIST.
    "small": Profile(),
    # The published evaluation settings (ConvNet-128, 1000 student epochs); meant for a GPU.
    "paper": Profile(width=128, iterations=1000, batch_real=256, student_epochs=1000),
}

_DATASETS = {
    # depth of the ConvNet, augmentation strategy, held-out split sizes
    "digits": {"depth": 2, "augment": "color_crop_cutout_scale_rotate"},
    "fashion-mnist": {"depth": 3, "augment": "dsa"},
}


def _splits(data, seed: int):
    """Training, held-out calibration and test indices (fixed by ``seed``)."""
    if data.test_start is None:
        return stratified_split(data.labels, [0.6, 0.2, 0.2], random_state=seed)
    pool = torch.arange(data.test_start)
    train, cal = stratified_split(
        data.labels[pool], [data.test_start - 5000, 5000], random_state=seed
    )
    return pool[train], pool[cal], torch.arange(data.test_start, len(data.labels))


def _scores(y_true: np.ndarray, proba) -> dict:
    proba = np.asarray(
        proba.detach().cpu() if isinstance(proba, torch.Tensor) else proba, dtype=np.float64
    )
    return {
        "accuracy": float((proba.argmax(axis=1) == y_true).mean()),
        "ece10": expected_calibration_error(y_true, proba, n_bins=10),
        "ece15": expected_calibration_error(y_true, proba, n_bins=15),
        "nll": negative_log_likelihood(y_true, proba),
        "brier": brier_score(y_true, proba),
        "confidence": float(proba.max(axis=1).mean()),
    }


def _quietly(fit):
    """Run ``fit`` and return (result, warning messages) instead of printing warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DistcalWarning)
        result = fit()
    return result, [str(w.message).split(":", 1)[-1].strip()[:80] for w in caught]


def _calibrate(student, sets, y_test, profile: Profile, seed: int):
    """Every calibrator of the experiment on one student: rows and test probabilities."""
    net = student.network_
    X_train, y_train = sets["train"]
    X_cal, y_cal = sets["cal"]
    X_test = sets["test"]
    logits = {
        name: student.decision_function(X)
        for name, X in (("train", X_train), ("cal", X_cal), ("test", X_test))
    }
    rows, probabilities = [], {}

    def add(calibrator, regime, proba, temperature=None, ratio=None, notes=()):
        probabilities[calibrator, regime] = proba
        rows.append(
            {
                "calibrator": calibrator,
                "regime": regime,
                **_scores(y_test, proba),
                "temperature": temperature,
                "mask_ratio": ratio,
                "note": "; ".join(notes),
            }
        )

    add("none", "-", torch.softmax(logits["test"], dim=1))
    ts, notes = _quietly(lambda: TemperatureScaling().fit(logits["cal"], y_cal))
    add("TS", "held-out", ts.predict_proba(logits["test"]), ts.temperature_, notes=notes)
    search, notes = _quietly(
        lambda: GridSearchCV(
            MaskedTemperatureScaling(model=net, n_masks=profile.n_masks_heldout, random_state=seed),
            {"mask_ratio": list(profile.mask_ratios)},
            scoring=neg_ece_scorer,
            cv=StratifiedKFold(profile.heldout_folds, shuffle=True, random_state=seed),
        ).fit(X_cal, y_cal)
    )
    best = search.best_estimator_
    add("MTS", "held-out", best.predict_proba(X_test), best.temperature_, best.mask_ratio, notes)
    ts_strict, notes = _quietly(lambda: TemperatureScaling().fit(logits["train"], y_train))
    add(
        "TS", "strict", ts_strict.predict_proba(logits["test"]), ts_strict.temperature_, notes=notes
    )
    mts_strict, notes = _quietly(
        lambda: MaskedTemperatureScaling(
            profile.strict_ratio, model=net, n_masks=profile.n_masks_strict, random_state=seed
        ).fit(X_train, y_train)
    )
    add(
        "MTS",
        "strict",
        mts_strict.predict_proba(X_test),
        mts_strict.temperature_,
        mts_strict.mask_ratio,
        notes,
    )
    # The strict regime has no real data to choose a ratio with: the half-accuracy rule.
    mts_auto, notes = _quietly(
        lambda: MaskedTemperatureScaling(
            "auto", model=net, n_masks=profile.n_masks_strict, random_state=seed
        ).fit(X_train, y_train)
    )
    add(
        "MTS auto",
        "strict",
        mts_auto.predict_proba(X_test),
        mts_auto.temperature_,
        mts_auto.mask_ratio_,
        notes,
    )
    return rows, probabilities


def _run_seed(data, dataset, profile: Profile, seed: int, device, verbose: bool, figures) -> dict:
    spec = _DATASETS[dataset]
    train, cal, test = _splits(data, seed)
    X_train, y_train = data.images[train], data.labels[train]
    mean, std = (s.float() for s in channel_statistics(X_train))
    cal_images = normalize(data.images[cal], mean, std)
    test_images = normalize(data.images[test], mean, std)
    y_cal, y_test = data.labels[cal].numpy(), data.labels[test].numpy()

    training_sets = {}
    for name, mask_ratio in (("DM", 0.0), ("MDT", profile.mdt_ratio)):
        trainer = MDTTrainer(
            "dm",
            ipc=profile.ipc,
            mask_ratio=mask_ratio,
            mask_apply_to="both",
            width=profile.width,
            depth=spec["depth"],
            iterations=profile.iterations,
            augment=spec["augment"],
            method_params={"batch_real": profile.batch_real},
            device=device,
            random_state=seed,
            verbose=verbose,
        ).fit(X_train, y_train)
        training_sets[name] = (trainer.images_, trainer.labels_)
    pick = stratified_split(y_train, [profile.ipc * data.n_classes], random_state=seed)[0]
    training_sets["real"] = (normalize(X_train[pick], mean, std), y_train[pick])

    rows, diagnostics = [], {}
    for set_name, (images, labels) in training_sets.items():
        for student_name, alpha in (("plain", 0.0), ("mixup", profile.mixup_alpha)):
            student = StudentClassifier(
                width=profile.width,
                depth=spec["depth"],
                epochs=profile.student_epochs,
                mixup_alpha=alpha,
                augment=spec["augment"],
                n_classes=data.n_classes,
                device=device,
                random_state=seed,
                verbose=verbose,
            ).fit(images, labels)
            sets = {
                "train": (images, labels.numpy()),
                "cal": (cal_images, y_cal),
                "test": test_images,
            }
            calibrated, probabilities = _calibrate(student, sets, y_test, profile, seed)
            for row in calibrated:
                rows.append(
                    {"seed": seed, "training_set": set_name, "student": student_name, **row}
                )
            if student_name == "plain":
                spread = masking_spread(
                    student.network_, images, mask_ratio=0.3, n_masks=4, random_state=seed
                )
                if figures is not None and set_name in ("DM", "real"):
                    figures[set_name] = (probabilities, spread)
                diagnostics[set_name] = {
                    "train_clean": dict(spread.clean),
                    "train_masked": dict(spread.masked),
                    "spread_ratio": spread.spread_ratio,
                    "test": dict(max_logit_statistics(student.decision_function(test_images))),
                }
    return {"seed": seed, "rows": rows, "diagnostics": diagnostics}


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds of every (set, student, calibrator, regime)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["training_set"], row["student"], row["calibrator"], row["regime"])
        groups.setdefault(key, []).append(row)
    summary = []
    for (set_name, student, calibrator, regime), members in groups.items():
        entry = {
            "training_set": set_name,
            "student": student,
            "calibrator": calibrator,
            "regime": regime,
            "n_seeds": len(members),
        }
        for key in (*METRICS, "temperature", "mask_ratio"):
            values = np.array([m[key] for m in members if m[key] is not None], dtype=float)
            if len(values) == 0:
                entry[key] = entry[f"{key}_std"] = None
            elif not np.isfinite(values).all():
                # An infinite NLL (a probability of exactly 0 on a true class) stays visible.
                entry[key], entry[f"{key}_std"] = float(values.mean()), float("nan")
            else:
                entry[key], entry[f"{key}_std"] = float(values.mean()), float(values.std())
        entry["note"] = "; ".join(sorted({m["note"] for m in members if m["note"]}))
        summary.append(entry)
    return summary


def _prints_as_zero(value: float, digits: int) -> bool:
    """Whether a nonzero value would print as zero with ``digits`` decimals."""
    return value != 0 and abs(value) < 0.5 * 10.0**-digits


def format_summary(summary: list[dict], *, markdown: bool = False) -> str:
    """Render the summary as a table (accuracy, ECE and confidence in percent).

    Fixed-width text, or a markdown table with ``markdown=True``.
    """

    def cell(entry, key, scale=1.0, digits=2):
        mean, std = entry[key], entry[f"{key}_std"]
        if mean is None:
            return "-"
        if not math.isfinite(mean):
            return str(mean)
        if _prints_as_zero(scale * mean, digits):  # a temperature of 1e-06 stays visible
            return f"{scale * mean:.0e}±{scale * std:.0e}"
        return f"{scale * mean:.{digits}f}±{scale * std:.{digits}f}"

    header = [
        "set",
        "student",
        "calibrator",
        "regime",
        "acc %",
        "ECE10 %",
        "ECE15 %",
        "NLL",
        "Brier",
        "conf %",
        "T",
        "ratio",
    ]
    lines = [header]
    for e in summary:
        lines.append(
            [
                e["training_set"],
                e["student"],
                e["calibrator"],
                e["regime"],
                cell(e, "accuracy", 100, 1),
                cell(e, "ece10", 100),
                cell(e, "ece15", 100),
                cell(e, "nll", 1, 3),
                cell(e, "brier", 1, 3),
                cell(e, "confidence", 100, 1),
                cell(e, "temperature", 1, 3),
                cell(e, "mask_ratio", 1, 2),
            ]
        )
    return _render(lines, n_left=4, markdown=markdown)


def summarise_diagnostics(diagnostics: dict) -> list[dict]:
    """Mean and std over seeds of the maximum-logit diagnostics, per training set.

    ``diagnostics`` maps each seed to ``{training set: {"train_clean", "train_masked",
    "spread_ratio", "test"}}`` as :func:`run_experiment` returns it. The rows hold the
    coefficient of variation (``std / |mean|``, scale-free: the smaller, the more concentrated) of
    the plain student's maximum logits on its clean and masked training images and on the test
    split, and the interquartile-range ratio masked / clean (above 1: masking spreads them).
    """
    per_set: dict[str, dict[str, list[float]]] = {}
    for by_set in diagnostics.values():
        for set_name, d in by_set.items():
            values = per_set.setdefault(set_name, {})
            for key, value in (
                ("cv_train", d["train_clean"]["cv"]),
                ("cv_train_masked", d["train_masked"]["cv"]),
                ("spread_ratio", d["spread_ratio"]),
                ("cv_test", d["test"]["cv"]),
            ):
                values.setdefault(key, []).append(float(value))
    rows = []
    for set_name, values in per_set.items():
        row = {"training_set": set_name, "n_seeds": len(values["cv_train"])}
        for key, series in values.items():
            row[key], row[f"{key}_std"] = float(np.mean(series)), float(np.std(series))
        rows.append(row)
    return rows


def format_diagnostics(rows: list[dict], *, markdown: bool = False) -> str:
    """Render :func:`summarise_diagnostics` as a table (fixed-width text or markdown)."""
    header = [
        "set",
        "max-logit CV, train",
        "CV, masked train (0.3)",
        "IQR masked/clean",
        "CV, test",
    ]
    lines = [header]
    for row in rows:
        lines.append(
            [
                row["training_set"],
                *(
                    f"{row[key]:.3f}±{row[f'{key}_std']:.3f}"
                    for key in ("cv_train", "cv_train_masked", "spread_ratio", "cv_test")
                ),
            ]
        )
    return _render(lines, n_left=1, markdown=markdown)


def _render(lines: list[list[str]], *, n_left: int, markdown: bool) -> str:
    """Render a header and rows as markdown or fixed-width text (``n_left`` columns left)."""
    if markdown:
        header, *rows = lines
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        return "\n".join(out + ["| " + " | ".join(row) + " |" for row in rows])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(
            c.ljust(w) if i < n_left else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )


def run_experiment(
    dataset: str = "digits",
    *,
    profile: str | Profile = "small",
    seeds=(0, 1, 2),
    device=None,
    output=None,
    root=None,
    verbose: bool = True,
    n_jobs: int | None = None,
) -> dict:
    """Run the experiment and return its rows, summary and diagnostics.

    Parameters
    ----------
    dataset : {"digits", "fashion-mnist"}, default="digits"
        scikit-learn's digits (embedded) or Fashion-MNIST (Debian's IDX files, or ``root``).
    profile : {"smoke", "small", "paper"} or Profile, default="small"
        Sizes of the run (see :data:`PROFILES`).
    seeds : iterable of int, default=(0, 1, 2)
        One full run per seed (splits, distillation, students, masks); results are reported
        as mean and standard deviation over seeds.
    device : str or torch.device, default=None
        Where to train (None: the CPU).
    output : str or path, default=None
        Folder for ``results.csv``, ``summary.csv``, ``max_logits.csv``, ``summary.md`` (both
        tables in markdown), ``results.json``, the figures and the per-seed files that let an
        interrupted run resume; None writes nothing.
    root : str or path, default=None
        Folder of the Fashion-MNIST files.
    verbose : bool, default=True
        Show progress bars (with ``n_jobs``, one bar over the seeds).
    n_jobs : int or None, default=None
        Seeds run in parallel through joblib (None or 1: one after the other; -1: one process
        per core). The backend is joblib's: loky processes by default, or a Dask or Ray cluster
        within ``joblib.parallel_config(backend="dask")`` (or ``"ray"``). Each worker uses one
        torch thread, loads the data itself and saves its seed when it finishes, so an
        interrupted parallel run resumes too. A seed gives the same results whichever
        ``n_jobs`` runs it, on the same number of torch threads.

    Returns
    -------
    dict
        ``config``, ``rows`` (one per seed, training set, student and calibrator), ``summary``
        (mean and std over seeds), ``diagnostics`` (maximum-logit statistics per seed) and
        ``diagnostics_summary`` (their mean and std over seeds, :func:`summarise_diagnostics`).
    """
    if dataset not in _DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; valid names are {sorted(_DATASETS)}.")
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError(f"Unknown profile {profile!r}; valid names are {sorted(PROFILES)}.")
        profile_spec = PROFILES[profile]
    else:
        profile_spec = replace(profile)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed.")
    config = {
        "dataset": dataset,
        "profile": asdict(profile_spec),
        "seeds": seeds,
        "device": None if device is None else str(device),
        "distcal": _version(),
    }
    out = Path(output) if output is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    done = {seed: _load_seed(out, config, seed) for seed in seeds}
    todo = [seed for seed in seeds if done[seed] is None]
    # Figures show the first seed; a resumed run that has it keeps its figures.
    job = partial(
        _seed_job,
        dataset=dataset,
        root=root,
        profile=profile_spec,
        device=device,
        out=out,
        config=config,
        figure_seed=seeds[0] if out is not None else None,
    )
    if n_jobs in (None, 1) or len(todo) <= 1:
        data = load_dataset(dataset, root=root)
        for seed in todo:
            done[seed] = job(seed, data=data, verbose=verbose)
    else:
        # Seeds in parallel through joblib: loky processes by default, or any backend chosen
        # with joblib.parallel_config (Dask, Ray). Each job loads the data and saves its seed.
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(job)(seed, data=None, verbose=False, parent=os.getpid()) for seed in todo
        )
        for result in progress(results, enabled=verbose, desc="seeds", total=len(todo)):
            done[result["seed"]] = result
    per_seed = [done[seed] for seed in seeds]
    rows = [row for result in per_seed for row in result["rows"]]
    summary = summarise(rows)
    result = {
        "config": config,
        "rows": rows,
        "summary": summary,
        "diagnostics": {r["seed"]: r["diagnostics"] for r in per_seed},
        "diagnostics_summary": summarise_diagnostics(
            {r["seed"]: r["diagnostics"] for r in per_seed}
        ),
        "seconds": {r["seed"]: r.get("seconds") for r in per_seed},
    }
    if out is not None:
        _write_tables(out, result)
    return result


def _seed_job(
    seed, *, data, dataset, root, profile, device, out, config, figure_seed, verbose, parent=None
) -> dict:
    """Run one seed, draw its figures if it is the first, save it; return its results."""
    one_thread_in_workers(parent)
    if data is None:
        data = load_dataset(dataset, root=root)
    figures = {} if seed == figure_seed else None
    began = time.perf_counter()
    result = _run_seed(data, dataset, profile, seed, device, verbose, figures)
    result["seconds"] = time.perf_counter() - began
    if figures:
        _figures(out, figures, _splits(data, seed), data, profile)
    _save_seed(out, config, result)
    return result


def _version() -> str:
    from ._version import __version__

    return __version__


def _seed_file(out: Path, seed: int) -> Path:
    return out / f"seed-{seed}.json"


def _load_seed(out, config, seed):
    if out is None or not _seed_file(out, seed).exists():
        return None
    saved = json.loads(_seed_file(out, seed).read_text())
    # Compare as JSON would store it (tuples become lists).
    if saved.get("config") != json.loads(json.dumps({**config, "seeds": None})):
        return None  # another configuration: recompute rather than mix results
    return saved["result"]


def _save_seed(out, config, result):
    if out is None:
        return
    payload = json.dumps({"config": {**config, "seeds": None}, "result": result})
    atomic_write_text(_seed_file(out, result["seed"]), payload)


def _write_tables(out: Path, result) -> None:
    for name, table in (
        ("results.csv", result["rows"]),
        ("summary.csv", result["summary"]),
        ("max_logits.csv", result["diagnostics_summary"]),
    ):
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
        atomic_write_text(out / name, text.getvalue())
    atomic_write_text(
        out / "summary.md",
        format_summary(result["summary"], markdown=True)
        + "\n\n"
        + format_diagnostics(result["diagnostics_summary"], markdown=True)
        + "\n",
    )
    atomic_write_text(out / "results.json", json.dumps(result, indent=1, default=str))


def _figures(out: Path, figures: dict, splits, data, profile: Profile) -> None:
    """Reliability diagrams of the plain DM student; maximum-logit histograms (first seed)."""
    try:
        import matplotlib
    except ImportError:
        return  # figures are optional (pip install "distcal[plot]")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plotting import max_logit_histogram, reliability_diagram

    y_test = data.labels[splits[2]].numpy()
    probabilities, _ = figures["DM"]
    panels = [
        ("uncalibrated", ("none", "-")),
        ("TS on the distilled set", ("TS", "strict")),
        (f"MTS on the distilled set ({profile.strict_ratio})", ("MTS", "strict")),
        ("MTS on the distilled set (ratio 'auto')", ("MTS auto", "strict")),
        ("TS on held-out data", ("TS", "held-out")),
    ]
    fig, axes = plt.subplots(
        2, len(panels), figsize=(4 * len(panels), 5), height_ratios=[3, 1], sharex=True
    )
    for column, (title, key) in enumerate(panels):
        proba = probabilities[key]
        proba = proba.detach().cpu().numpy() if isinstance(proba, torch.Tensor) else proba
        reliability_diagram(y_test, proba, ax=axes[:, column], label=key[0])
        axes[0, column].set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_write(out / "reliability.png", partial(fig.savefig, dpi=100, format="png"))
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, (title, set_name) in zip(
        axes,
        (
            ("plain student of the DM set, on its training images", "DM"),
            ("plain student of random real images, on its training images", "real"),
        ),
        strict=True,
    ):
        spread = figures[set_name][1]
        max_logit_histogram(
            spread.clean_logits,
            masked_logits=spread.masked_logits,
            ax=ax,
            labels=("clean", "masked (ratio 0.3, 4 copies)"),
            density=True,
        )
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    atomic_write(out / "max_logits.png", partial(fig.savefig, dpi=100, format="png"))
    plt.close(fig)
