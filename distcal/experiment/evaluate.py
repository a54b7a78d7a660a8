"""The calibration report card of any distilled set: ``distcal evaluate``.

:func:`evaluate_distilled` reads a set in any format of :data:`distcal.distill.FORMATS`, trains
``n_students`` students on it with a protocol of :data:`distcal.distill.PROTOCOLS`, and scores
each on the real test images, uncalibrated and calibrated by every row of :data:`CALIBRATORS`.
Beside every student it trains one on random real training images of the same size (the same
number per class), with the same protocol, as the baseline. Scores are reported per student and
as mean, sample SD (ddof=1) and 95% t-interval over students; the maximum-logit diagnostics of
each student come with them. Every finished student is saved in the output folder, so a rerun
with the same configuration resumes after it; the report (``report.html``, self-contained) and
its CSV files are written at the end.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.utils import Bunch

from .._files import atomic_write, atomic_write_text
from .._progress import progress
from ..calibration import DistilledCalibration, MaskedTemperatureScaling, TemperatureScaling
from ..distill import (
    DistilledSet,
    LoadedSet,
    check_images,
    load_dataset,
    protocol_by_name,
    read_distilled,
)
from ..exceptions import DistcalWarning
from .files import _csv, environment, load_seed, save_seed
from .pipeline import max_logit_diagnostics, split_indices
from .report import _t_interval
from .schema import SCORES, confidence_halves
from .scores import as_numpy, score_columns
from .settings import DATASETS

__all__ = [
    "CALIBRATORS",
    "EVALUATION_METRICS",
    "CalibratorRow",
    "evaluate_distilled",
    "format_evaluation",
    "summarise_students",
]

#: The score columns of the report card (keys of :data:`~distcal.experiment.schema.SCORES`):
#: those of :func:`~distcal.experiment.scores.score_columns` and the two halves of ECE-15,
#: over- and under-confidence.
EVALUATION_METRICS = (
    "accuracy",
    "ece15",
    "nll",
    "brier",
    "confidence",
    "overconfidence",
    "underconfidence",
)


@dataclass
class CalibrationContext:
    """What a calibrator row may use to calibrate one student.

    Parameters
    ----------
    student : StudentClassifier
        The fitted student.
    logits : dict
        The student's logits on ``"train"`` (its training images), ``"held_out"`` (held-out
        real images) and ``"test"``.
    train_images : Tensor
        Its training images (the distilled set, or the random real ones), in the set's space.
    train_labels : Tensor
        Their class indices (the argmax of soft labels).
    y_held_out : ndarray
        The held-out labels.
    loaded : LoadedSet
        The distilled set as read (``loaded.distilled`` is distcal's :class:`DistilledSet`,
        with everything its file carries, or None).
    training_set : str
        ``"distilled"`` or ``"random real"``.
    seed : int
        The student's seed (seeds the masks).
    """

    student: object
    logits: dict
    train_images: torch.Tensor
    train_labels: torch.Tensor
    y_held_out: np.ndarray
    loaded: LoadedSet
    training_set: str
    seed: int


@dataclass(frozen=True)
class CalibratorRow:
    """One calibrator of the report card.

    Parameters
    ----------
    name : str
        The row's name.
    data : str
        What it is fitted on, in words.
    fit : callable
        ``fit(context)`` returns a fitted calibrator with ``predict_proba(logits)`` (test
        logits in, probabilities out), or None when the row does not apply to this student.
    """

    name: str
    data: str
    fit: Callable


class _Uncalibrated:
    temperature_ = None

    def predict_proba(self, logits):
        return torch.softmax(torch.as_tensor(logits).to(torch.float64), dim=1)


def _uncalibrated(context: CalibrationContext):
    return _Uncalibrated()


def _held_out_ts(context: CalibrationContext):
    return TemperatureScaling().fit(context.logits["held_out"], context.y_held_out)


class _OnLogits:
    """A masked calibrator fitted with the network, applied to the student's test logits."""

    def __init__(self, fitted):
        self.fitted = fitted
        self.temperature_ = fitted.temperature_
        self.mask_ratio_ = fitted.mask_ratio_

    def predict_proba(self, logits):
        return self.fitted.calibrator_.predict_proba(logits)


def _set_recipe(context: CalibrationContext):
    """DistilledCalibration with the set's calibration recipe (issue 21); only for its students."""
    recipe = getattr(context.loaded.distilled, "recipe", None)
    if recipe is None or context.training_set != "distilled":
        return None
    fitted = DistilledCalibration(
        recipe,
        model=context.student.network_,
        batch_size=context.student.batch_size,
        random_state=context.seed,
    ).fit(context.train_images, context.train_labels)
    return _OnLogits(fitted)


def _training_images_mts(context: CalibrationContext):
    fitted = MaskedTemperatureScaling(
        model=context.student.network_,
        regime="training",
        batch_size=context.student.batch_size,
        random_state=context.seed,
    ).fit(context.train_images, context.train_labels)
    return _OnLogits(fitted)


#: The calibrators of the report card, one row each, in the order they are shown. Each is fitted
#: on every student (of the distilled set and of the random real images) and scored on the test
#: images. This table is the extension point for a calibrator that travels with a set: a row
#: whose ``fit`` reads what ``context.loaded.distilled`` carries and returns None for a set
#: that carries nothing (the row is then left out for that set).
CALIBRATORS = (
    CalibratorRow("none", "-", _uncalibrated),
    CalibratorRow("TS", "held-out real images", _held_out_ts),
    CalibratorRow("MTS", "the training images alone (regime='training')", _training_images_mts),
    CalibratorRow("recipe", "the set's calibration recipe (DistilledCalibration)", _set_recipe),
)


def _quietly(fit):
    """Run ``fit`` and return (result, warning messages), the messages shortened for tables."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DistcalWarning)
        result = fit()
    return result, [str(w.message).split(":", 1)[-1].strip()[:80] for w in caught]


def _scores(y_test, proba) -> dict:
    proba = as_numpy(proba)
    scores = score_columns(y_test, proba)
    over, under = confidence_halves(y_test, proba)
    return {
        **{key: scores[key] for key in EVALUATION_METRICS[:5]},
        "overconfidence": over,
        "underconfidence": under,
    }


def _calibrate(context: CalibrationContext, y_test) -> tuple[list[dict], dict]:
    """Every row of CALIBRATORS on one student: the score rows and the test probabilities."""
    rows, probabilities = [], {}
    for row in CALIBRATORS:
        fitted, notes = _quietly(lambda row=row: row.fit(context))
        if fitted is None:
            continue
        proba = fitted.predict_proba(context.logits["test"])
        probabilities[row.name] = as_numpy(proba, np.float32)
        temperature = getattr(fitted, "temperature_", None)
        ratio = getattr(fitted, "mask_ratio_", None)
        rows.append(
            {
                "seed": context.seed,
                "training_set": context.training_set,
                "calibrator": row.name,
                "data": row.data,
                **_scores(y_test, proba),
                "temperature": None if temperature is None else float(temperature),
                "mask_ratio": None if ratio is None else float(ratio),
                "note": "; ".join(dict.fromkeys(notes)),
            }
        )
    return rows, probabilities


# --------------------------------------------------------------------------------------------
# The real data and the set
# --------------------------------------------------------------------------------------------


def _real_data(dataset, root, n_held_out, seed: int) -> Bunch:
    """Return the real images in [0, 1] and their split: training pool, held-out, test."""
    if isinstance(dataset, str):
        data = load_dataset(dataset, root=root)
        name = dataset
    else:
        if not isinstance(dataset, list | tuple) or len(dataset) != 4:
            raise TypeError(
                "dataset must be a name ('digits', 'fashion-mnist') or a tuple (X_train, y_train, "
                f"X_test, y_test) of real images in [0, 1]; got {type(dataset).__name__}."
            )
        X_train, y_train = check_images(dataset[0], dataset[1], name="X_train")
        X_test, y_test = check_images(dataset[2], dataset[3], name="X_test")
        if X_train.shape[1:] != X_test.shape[1:]:
            raise ValueError(
                f"X_train has images of shape {tuple(X_train.shape[1:])} and X_test of shape "
                f"{tuple(X_test.shape[1:])}; they must match."
            )
        images = torch.cat([X_train.float(), X_test.float()])
        labels = torch.cat([y_train, y_test])
        data = Bunch(
            images=images,
            labels=labels,
            n_classes=int(labels.max()) + 1,
            test_start=len(y_train),
            name="arrays",
        )
        name = "arrays"
    if data.test_start is not None and n_held_out is None:
        n_held_out = min(5000, data.test_start // 5)
    train, held_out, test = split_indices(data, seed, n_held_out=n_held_out or 5000)
    data.split = {"train": train, "held_out": held_out, "test": test}
    data.dataset_name = name
    return data


def _dataset_digest(data) -> str:
    digest = hashlib.sha256()
    for tensor in (data.images, data.labels):
        digest.update(tensor.contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _set_digest(loaded: LoadedSet) -> str:
    digest = hashlib.sha256()
    for tensor in (loaded.images, loaded.labels):
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    digest.update(repr((loaded.learning_rate, loaded.space.describe(), loaded.in_pixels)).encode())
    return digest.hexdigest()[:16]


def _check_set(loaded: LoadedSet, data) -> None:
    shape = tuple(data.images.shape[1:])
    if tuple(loaded.images.shape[1:]) != shape:
        raise ValueError(
            f"{loaded.path} holds images of shape {tuple(loaded.images.shape[1:])}, but the real "
            f"images of {data.dataset_name} have shape {shape}."
        )
    n_classes = data.n_classes
    if loaded.soft and loaded.labels.shape[1] != n_classes:
        raise ValueError(
            f"{loaded.path} holds soft labels of width {loaded.labels.shape[1]}, but "
            f"{data.dataset_name} has {n_classes} classes: each row must have one score per class."
        )
    if not loaded.soft and int(loaded.labels.max()) >= n_classes:
        raise ValueError(
            f"{loaded.path} has the label {int(loaded.labels.max())}, but {data.dataset_name} has "
            f"{n_classes} classes (0 to {n_classes - 1})."
        )


def _assume(assumed: list, what: str, value, why: str) -> None:
    assumed.append({"what": what, "value": str(value), "why": why})


def _depth_and_augment(data, assumed: list) -> tuple[int, str]:
    if data.dataset_name in DATASETS:
        recipe = DATASETS[data.dataset_name]
        return recipe.depth, recipe.augment
    depth = 3 if data.images.shape[-1] >= 16 else 2
    _assume(
        assumed,
        "depth and augmentation",
        f"depth {depth}, DSA",
        "the protocol takes them from the dataset, and arrays have no recipe in "
        "distcal.experiment.settings.DATASETS (depth 3 for images of 16 pixels or more, else 2).",
    )
    return depth, "dsa"


def _pixel_statistics(set_images: torch.Tensor, real_images: torch.Tensor) -> dict:
    """Mean and SD of the set's pixels and of the real training images in the set's space.

    A set read in the wrong space (ZCA taken for normalised, other statistics) shows here:
    distilled images start from real ones and keep roughly their scale.
    """

    def moments(images):
        flat = images.to(torch.float64).reshape(-1)
        return {"mean": float(flat.mean()), "sd": float(flat.std())}

    return {"set": moments(set_images), "real": moments(real_images)}


def _random_real(data, counts: list[int], seed: int) -> torch.Tensor:
    """Return indices of random real training images, ``counts[c]`` of class ``c``."""
    rng = np.random.default_rng(seed)
    pool = data.split["train"]
    labels = data.labels[pool].numpy()
    picked = []
    for label, count in enumerate(counts):
        members = pool[labels == label].numpy()
        if count > len(members):
            raise ValueError(
                f"The set has {count} images of class {label}, but the real training split has "
                f"only {len(members)}: no random real baseline of the same size exists."
            )
        picked.append(rng.choice(members, size=count, replace=False))
    return torch.from_numpy(np.sort(np.concatenate(picked)))


# --------------------------------------------------------------------------------------------
# One student
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Job:
    """One student of the set and its random-real baseline, with everything they need."""

    loaded: LoadedSet
    set_images: torch.Tensor
    real: dict
    space: object
    make_student: Callable
    counts: list
    data: object

    def __call__(self, seed: int) -> tuple[dict, dict]:
        seconds: dict = {}
        clock = time.perf_counter()
        rows, diagnostics, figures = [], {}, {}
        hard = self.loaded.hard_labels()
        real_index = _random_real(self.data, self.counts, seed)
        sets = {
            "distilled": (self.set_images, self.loaded.labels, hard, True),
            "random real": (
                self.space.transform(self.data.images[real_index]),
                self.data.labels[real_index],
                self.data.labels[real_index],
                False,
            ),
        }

        def lap(stage):
            nonlocal clock
            now = time.perf_counter()
            seconds[stage] = seconds.get(stage, 0.0) + now - clock
            clock = now

        for name, (images, labels, hard_labels, learned) in sets.items():
            student = self.make_student(seed, learned=learned).fit(images, labels)
            lap(f"{name}: fit")
            logits = {
                "train": student.decision_function(images),
                "held_out": student.decision_function(self.real["held_out"]),
                "test": student.decision_function(self.real["test"]),
            }
            lap("logits")
            context = CalibrationContext(
                student, logits, images, hard_labels, self.real["y_held_out"], self.loaded, name,
                seed,
            )  # fmt: skip
            calibrated, probabilities = _calibrate(context, self.real["y_test"])
            rows += calibrated
            lap("calibration and scores")
            diagnostics[name], spread = max_logit_diagnostics(
                student.network_, images, self.real["test"], seed, test_logits=logits["test"]
            )
            figures[name] = {
                "probabilities": probabilities,
                "clean": as_numpy(spread.clean_logits.max(dim=1).values, np.float32),
                "masked": as_numpy(spread.masked_logits.max(dim=1).values, np.float32),
                "test": as_numpy(logits["test"].max(dim=1).values, np.float32),
            }
            lap("diagnostics")
        figures["y_test"] = self.real["y_test"]
        result = {
            "seed": seed,
            "baseline_indices": real_index.tolist(),
            "rows": rows,
            "comparisons": [],
            "diagnostics": diagnostics,
            "stage_seconds": seconds,
        }
        return result, figures


def _save_figure_data(out: Path, digest: str, figures: dict) -> None:
    arrays = {"config": np.array(digest), "y_test": figures["y_test"]}
    for name, parts in figures.items():
        if name == "y_test":
            continue
        key = name.replace(" ", "_")
        for part in ("clean", "masked", "test"):
            arrays[f"{key}.{part}"] = parts[part]
        for row, proba in parts["probabilities"].items():
            arrays[f"{key}.proba.{row}"] = proba

    def write(temporary):
        with open(temporary, "wb") as handle:
            np.savez(handle, **arrays)

    atomic_write(out / "figure-data.npz", write)


def _load_figure_data(out: Path, digest: str) -> dict | None:
    path = out / "figure-data.npz"
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as content:
            if str(content["config"]) != digest:
                return None
            figures: dict = {"y_test": content["y_test"]}
            for key in content.files:
                if key in ("config", "y_test"):
                    continue
                name, _, part = key.partition(".")
                entry = figures.setdefault(name.replace("_", " "), {"probabilities": {}})
                if part.startswith("proba."):
                    entry["probabilities"][part[len("proba.") :]] = content[key]
                else:
                    entry[part] = content[key]
            return figures
    except (OSError, ValueError, KeyError):
        return None


# --------------------------------------------------------------------------------------------
# Summaries and files
# --------------------------------------------------------------------------------------------


def summarise_students(rows: list[dict]) -> list[dict]:
    """Mean, sample SD (ddof=1) and 95% t-interval over students of every (set, calibrator).

    Parameters
    ----------
    rows : list of dict
        The per-student rows of :func:`evaluate_distilled`.

    Returns
    -------
    list of dict
        One entry per (training set, calibrator), in order of first appearance: ``n_students``
        and per metric of :data:`EVALUATION_METRICS` (and ``temperature``) its mean, ``_std``,
        ``_low`` and ``_high`` (nan with one student, or with an infinite value).
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["training_set"], row["calibrator"]), []).append(row)
    summary = []
    for (training_set, calibrator), members in groups.items():
        entry = {
            "training_set": training_set,
            "calibrator": calibrator,
            "data": members[0]["data"],
            "n_students": len(members),
        }
        for key in (*EVALUATION_METRICS, "temperature"):
            values = np.array([m[key] for m in members if m[key] is not None], dtype=float)
            if len(values) == 0:
                entry.update(
                    {key: None, f"{key}_std": None, f"{key}_low": None, f"{key}_high": None}
                )
                continue
            entry[key] = float(values.mean())
            if len(values) < 2 or not np.isfinite(values).all():
                entry[f"{key}_std"] = entry[f"{key}_low"] = entry[f"{key}_high"] = float("nan")
            else:
                entry[f"{key}_std"] = float(values.std(ddof=1))
                entry[f"{key}_low"], entry[f"{key}_high"] = _t_interval(values)
        entry["note"] = "; ".join(sorted({m["note"] for m in members if m["note"]}))
        summary.append(entry)
    return summary


def _diagnostic_rows(per_student: list[dict]) -> list[dict]:
    rows = []
    for result in per_student:
        for training_set, d in result["diagnostics"].items():
            row = {"seed": result["seed"], "training_set": training_set}
            for part in ("train_clean", "train_masked", "test"):
                for key, value in d[part].items():
                    row[f"{part}_{key}"] = value
            row["spread_ratio"] = d["spread_ratio"]
            rows.append(row)
    return rows


def _write_outputs(out: Path, result: dict, figures: dict | None) -> Path:
    from .report_card import draw_figures, render_report

    for name, table in (
        ("students.csv", result["rows"]),
        ("summary.csv", result["summary"]),
        ("diagnostics.csv", result["diagnostics"]),
    ):
        atomic_write_text(out / name, _csv(table))
    atomic_write_text(out / "evaluation.json", json.dumps(result, indent=1, default=str))
    images = draw_figures(figures, result) if figures else {}
    return atomic_write_text(out / "report.html", render_report(result, images))


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------


def evaluate_distilled(
    distilled,
    dataset="digits",
    *,
    format=None,
    protocol="small",
    n_students: int = 5,
    random_state: int = 0,
    experiment: int = 0,
    zca=None,
    statistics=None,
    learning_rate=None,
    soft_label_loss=None,
    soft_label_temperature=None,
    student_options=None,
    n_held_out=None,
    device=None,
    root=None,
    output=None,
    verbose: bool = True,
) -> dict:
    """Train students on a distilled set of any format and report how calibratable they are.

    Parameters
    ----------
    distilled : str, os.PathLike, LoadedSet or DistilledSet
        The set: a file or folder of any format of :data:`distcal.distill.FORMATS`, or a set
        already read.
    dataset : str or tuple, default="digits"
        The real data the set was distilled from: ``"digits"`` or ``"fashion-mnist"`` (split as
        ``distcal run`` splits them), or a tuple ``(X_train, y_train, X_test, y_test)`` of images
        in [0, 1] (held-out images are taken from ``X_train``).
    format : str or None, default=None
        The set's format; None tells it from the file.
    protocol : str or Protocol, default="small"
        How students are trained: a key of :data:`distcal.distill.PROTOCOLS`.
    n_students : int, default=5
        Students of the set (and as many of random real images); seeds
        ``random_state + i``.
    random_state : int, default=0
        Seeds the real split, the first student, its baseline images and masks.
    experiment : int, default=0
        The experiment of a DatasetCondensation file.
    zca : {"none", "kornia", "kip"} or None, default=None
        The set's ZCA, refitted on the real training images; None takes the format's default.
    statistics : str, pair or None, default=None
        The per-channel statistics of a normalised set (see
        :func:`~distcal.distill.read_distilled`).
    learning_rate : float or None, default=None
        The students' learning rate; None takes the set's learned rate (where the protocol
        uses one) or the protocol's.
    soft_label_loss : {"cross-entropy", "kl"} or None, default=None
        The loss of soft labels; None takes the protocol's.
    soft_label_temperature : float or None, default=None
        Its temperature; None takes the protocol's.
    student_options : dict or None, default=None
        Parameters of :class:`~distcal.distill.StudentClassifier` that replace the protocol's
        for every student (``{"epochs": 10}`` for a quick look); recorded in the report.
    n_held_out : int or None, default=None
        Held-out real images (the calibration data of TS); None: 5000 for Fashion-MNIST,
        a fifth of ``X_train`` up to 5000 for arrays, the split of ``distcal run`` for digits.
    device : str, torch.device or None, default=None
        Where students train (None: the CPU).
    root : str or path, default=None
        Folder of Fashion-MNIST's files.
    output : str or path, default=None
        Folder of ``report.html``, ``students.csv``, ``summary.csv``, ``diagnostics.csv``,
        ``evaluation.json`` and the per-student files a rerun resumes from; None writes
        nothing.
    verbose : bool, default=True
        A progress bar over students.

    Returns
    -------
    dict
        ``path`` (the set's file), ``config`` (the set, data, protocol, environment; a rerun
        with the same one resumes), ``assumed`` (what the file did not
        hold and was assumed), ``rows`` (per student, training set and calibrator),
        ``summary`` (:func:`summarise_students`), ``diagnostics`` (maximum-logit statistics per
        student), ``baseline_indices`` (per seed, the indices of the random real images in
        the dataset) and ``stage_seconds``; with ``output``, ``report`` (the HTML file's
        path).

    Raises
    ------
    ValueError
        If the set does not match the real data (image shape, number of classes), or a file
        is invalid (see :func:`~distcal.distill.read_distilled`).

    Examples
    --------
    A set of two real digits per class, as a stand-in for a distilled one:

    >>> import torch
    >>> from distcal.distill import DistilledSet, load_digits
    >>> from distcal.experiment import evaluate_distilled
    >>> data = load_digits()
    >>> picked = torch.cat([torch.nonzero(data.labels == c)[:2, 0] for c in range(10)])
    >>> toy = DistilledSet(
    ...     (data.images[picked] - 0.3) / 0.4, data.labels[picked], torch.tensor([0.3]),
    ...     torch.tensor([0.4]))
    >>> result = evaluate_distilled(toy, "digits", n_students=2, student_options={"epochs": 2},
    ...                             verbose=False)
    >>> [(row["training_set"], row["calibrator"]) for row in result["summary"]][:4]
    [('distilled', 'none'), ('distilled', 'TS'), ('distilled', 'MTS'), ('random real', 'none')]
    """
    protocol = protocol_by_name(protocol)
    if isinstance(n_students, bool) or not isinstance(n_students, int) or n_students < 1:
        raise ValueError(f"n_students must be a positive int; got {n_students!r}.")
    dataset_name = dataset if isinstance(dataset, str) else None
    reading = {"format": format, "zca": zca, "statistics": statistics}
    given = [name for name, value in reading.items() if value is not None] + (
        ["experiment"] if experiment != 0 else []
    )
    if isinstance(distilled, LoadedSet | DistilledSet) and given:
        raise ValueError(
            f"{', '.join(given)} say how to read a file, and distilled is a "
            f"{type(distilled).__name__} already read; pass them to read_distilled instead."
        )
    if isinstance(distilled, LoadedSet):
        loaded = distilled
    elif isinstance(distilled, DistilledSet):
        loaded = LoadedSet.from_distilled(distilled)
    else:
        loaded = read_distilled(
            distilled, format=format, dataset=dataset_name, experiment=experiment, zca=zca,
            statistics=statistics,
        )  # fmt: skip
    data = _real_data(dataset, root, n_held_out, random_state)
    _check_set(loaded, data)
    split = data.split
    pool = torch.cat([split["train"], split["held_out"]]).sort().values
    # the space the set lives in, fitted on the whole real training split (as MTT fits its ZCA)
    space = loaded.space.fit(data.images[pool]) if loaded.space.needs_fit else loaded.space
    set_images = space.transform(loaded.images) if loaded.in_pixels else loaded.images
    real = {
        "train": space.transform(data.images[split["train"]]),
        "held_out": space.transform(data.images[split["held_out"]]),
        "test": space.transform(data.images[split["test"]]),
        "y_held_out": data.labels[split["held_out"]].numpy(),
        "y_test": data.labels[split["test"]].numpy(),
    }
    assumed = list(loaded.assumed)  # what the file lacked, then what the evaluation lacked
    depth, augment = _depth_and_augment(data, assumed)
    rate = _learning_rate(loaded, protocol, learning_rate, assumed)
    soft_options = {
        "soft_label_loss": soft_label_loss or protocol.soft_label_loss,
        "soft_label_temperature": soft_label_temperature or protocol.soft_label_temperature,
    }

    overrides = dict(student_options or {})

    def make_student(seed: int, *, learned: bool):
        return protocol.student(
            depth=depth,
            augment=augment,
            **{
                "lr": rate if learned else protocol.lr,
                **soft_options,
                **overrides,
                "random_state": seed,
                "n_classes": data.n_classes,
                "device": device,
            },
        )

    counts = loaded.class_counts(data.n_classes)
    seeds = [random_state + i for i in range(n_students)]
    config = {
        "kind": "evaluate",
        "set": {
            "format": loaded.format,
            "digest": _set_digest(loaded),
            "images": list(loaded.images.shape),
            "labels": "soft" if loaded.soft else "hard",
            "learning_rate": loaded.learning_rate,
            "space": space.describe(),
            "details": loaded.details,
        },
        "dataset": {
            "name": data.dataset_name,
            "digest": _dataset_digest(data),
            "n_classes": data.n_classes,
            "train": len(split["train"]),
            "held_out": len(split["held_out"]),
            "test": len(split["test"]),
            "split_seed": random_state,
        },
        "protocol": {
            **protocol.as_dict(),
            "depth": depth,
            "augment": augment,
            "lr": rate,
            "baseline_lr": protocol.lr,
            **soft_options,
            **overrides,
            "overrides": sorted(overrides),
        },
        "pixels": _pixel_statistics(set_images, real["train"]),
        "counts_per_class": counts,
        "seeds": seeds,
        "device": None if device is None else str(device),
        "distcal": _version(),
        "environment": environment(torch.get_num_threads()),
    }
    out = Path(output) if output is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    job = _Job(loaded, set_images, real, space, make_student, counts, data)
    digest = hashlib.sha256(json.dumps({**config, "seeds": None}, default=str).encode()).hexdigest()
    done = {seed: load_seed(out, config, seed) for seed in seeds}
    figures = _load_figure_data(out, digest) if out is not None else None
    if figures is None and done[seeds[0]] is not None:
        done[seeds[0]] = None  # the report's figures show the first student: recompute it
    todo = [seed for seed in seeds if done[seed] is None]
    for seed in progress(todo, enabled=verbose, desc="students", total=len(todo)):
        done[seed], student_figures = job(seed)
        save_seed(out, config, done[seed])
        if seed == seeds[0]:
            figures = student_figures
            if out is not None:
                _save_figure_data(out, digest, figures)
    per_student = [done[seed] for seed in seeds]
    rows = [row for result in per_student for row in result["rows"]]
    result = {
        "path": loaded.path,  # not in the configuration: a moved set still resumes
        "config": config,
        "assumed": assumed,
        "rows": rows,
        "summary": summarise_students(rows),
        "diagnostics": _diagnostic_rows(per_student),
        "baseline_indices": {r["seed"]: r["baseline_indices"] for r in per_student},
        "stage_seconds": {r["seed"]: r["stage_seconds"] for r in per_student},
    }
    if out is not None:
        result["report"] = str(_write_outputs(out, result, figures))
    return result


def format_evaluation(result: dict) -> str:
    """Return the summary of :func:`evaluate_distilled` as a text table, with what was assumed.

    Parameters
    ----------
    result : dict
        What :func:`evaluate_distilled` returns.

    Returns
    -------
    str
        A header line, the table (mean ± sample SD over students) and the assumptions.
    """
    from .report import render_table

    config = result["config"]
    the_set, protocol = config["set"], config["protocol"]
    columns = [SCORES[key] for key in EVALUATION_METRICS if key != "confidence"]

    def cell(entry, score):
        mean, sd = entry[score.key], entry[f"{score.key}_std"]
        if mean is None:
            return "-"
        text = f"{mean * score.scale:.{score.digits}f}"
        return text if sd is None or np.isnan(sd) else f"{text}±{sd * score.scale:.{score.digits}f}"

    lines = [
        f"{the_set['format']} set {result['path']}: {the_set['images'][0]} images, "
        f"{the_set['labels']} labels, {the_set['space']}; real data {config['dataset']['name']}; "
        f"protocol {protocol['name']!r}; {len(config['seeds'])} students per training set",
        "test-set metrics, mean±SD over students (sample SD); TS: fitted on held-out real images; "
        "MTS: fitted on the student's training images alone",
        render_table(
            ["training set", "calibrator", *[score.short for score in columns]],
            [
                [e["training_set"], e["calibrator"], *[cell(e, score) for score in columns]]
                for e in result["summary"]
            ],
            align=["left", "left"] + ["right"] * len(columns),
        ),
    ]
    for assumption in result["assumed"]:
        lines.append(f"assumed {assumption['what']}: {assumption['value']} ({assumption['why']})")
    return "\n".join(lines)


def _learning_rate(loaded: LoadedSet, protocol, learning_rate, assumed: list) -> float:
    """Return the students' learning rate; record what had to be assumed about it."""
    if learning_rate is not None:
        rate = float(learning_rate)
        if not 0 < rate < float("inf"):
            raise ValueError(f"learning_rate must be a positive float; got {learning_rate!r}.")
        return rate
    if loaded.learning_rate is not None and not protocol.learned_lr:
        _assume(
            assumed,
            "learning rate",
            protocol.lr,
            f"the set's learned rate {loaded.learning_rate:g} is not used: the {protocol.name!r} "
            "protocol trains with a fixed rate; pass learning_rate= (--lr) to use it.",
        )
    elif loaded.learning_rate is None and protocol.learned_lr and _learns_its_rate(loaded):
        why = {
            "mtt": "MTT does not save its learned learning rate (it only logs it)",
            "datm": "the folder has no lr_best.pt",
        }.get(loaded.format, "the file holds no learned learning rate")
        _assume(
            assumed,
            "learning rate",
            protocol.lr,
            f"{why}; the protocol's rate is used. Pass learning_rate= (--lr).",
        )
    return protocol.learning_rate(loaded.learning_rate)


def _learns_its_rate(loaded: LoadedSet) -> bool:
    """Whether the method behind the set learns a learning rate (so a missing one is assumed).

    MTT and DATM learn one; DC, DSA, DM, KIP and SRe2L/RDED evaluate at a fixed rate, and a
    plain file could come from anything.
    """
    if loaded.format == "distcal":
        return loaded.details.get("method") == "mtt"
    return loaded.format in ("mtt", "datm", "plain")


def _version() -> str:
    from .._version import __version__

    return __version__
