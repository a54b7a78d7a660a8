"""The calibration demo run by ``distcal demo``: real logits, before and after calibration.

The demo is a profile of the experiment (:data:`~distcal.experiment.settings.DEMO`): one
student of the small profile's size, trained on ``ipc`` real digits per class instead of a
distilled set, so that it fits its training images perfectly, as a network trained on distilled
data does. It is calibrated by the experiment's own step
(:func:`~distcal.experiment.pipeline.calibrate_student`) in its two regimes, on held-out real
images and on its own training images only (the training regime, where temperature scaling has
no optimum), scored by the shared score columns and shown by the shared table renderer.
"""

from __future__ import annotations

from dataclasses import replace

from ..distill import load_dataset
from .pipeline import calibrate_student, split_indices, student_classifier
from .report import format_cell, render_table
from .schema import HELD_OUT, NO_REGIME, SCORES, TRAINING, RowKey
from .settings import DEMO, DEMO_HELD_OUT, METRICS, dataset_recipe

__all__ = ["calibration_demo", "format_rows", "max_ipc"]

DATASET = "digits"

#: The experiment's rows the demo shows: (calibrator, regime) -> (method, calibrated on).
SHOWN = {
    RowKey("none", NO_REGIME): ("none", "-"),
    RowKey("TS", HELD_OUT): ("TS", "held-out"),
    RowKey("MTS auto", HELD_OUT): ("MTS", "held-out"),
    RowKey("TS", TRAINING): ("TS", "training images"),
    RowKey("MTS auto", TRAINING): ("MTS", "training images"),
}


def _note(row: dict) -> str:
    if row["calibrator"] == "MTS auto":
        return f"ratio 'auto' (the default), regime {row['detected']}"
    if row["regime"] == TRAINING and row["note"]:
        return "no optimum: data separable (warned)"
    return ""


def max_ipc(data=None) -> int:
    """Return the most training images per class the demo's split of digits allows.

    The demo trains on ``ipc`` images per class, calibrates on
    :data:`~distcal.experiment.settings.DEMO_HELD_OUT` held-out images and tests on the rest,
    which must keep at least one image per class.

    Parameters
    ----------
    data : Dataset, default=None
        The digits as :func:`distcal.distill.load_dataset` returns them (loaded if None).

    Returns
    -------
    int
        The largest ``ipc`` :func:`calibration_demo` accepts.
    """
    data = load_dataset(DATASET) if data is None else data
    return (len(data.labels) - DEMO_HELD_OUT - data.n_classes) // data.n_classes


def calibration_demo(
    *,
    ipc: int = DEMO.ipc,
    epochs: int = DEMO.student_epochs,
    random_state: int = 0,
    verbose: bool = True,
) -> list[dict]:
    """Train a small student on digits and compare calibrators on its test logits.

    Parameters
    ----------
    ipc : int, default=10
        Training images per class.
    epochs : int, default=300
        Training epochs of the student.
    random_state : int, default=0
        Seeds the split, the student and the masks.
    verbose : bool, default=True
        Show progress bars.

    Returns
    -------
    list of dict
        One row per calibrator: ``method``, ``calibrated_on``, the score columns
        (:func:`~distcal.experiment.scores.score_columns`), ``temperature``, ``mask_ratio``
        and ``note``.

    Raises
    ------
    ValueError
        If ``ipc`` is not between 1 and :func:`max_ipc`.
    """
    profile = replace(DEMO, ipc=ipc, student_epochs=epochs)
    data = load_dataset(DATASET)
    limit = max_ipc(data)
    if not 1 <= ipc <= limit:
        raise ValueError(
            f"ipc must be between 1 and {limit}: digits has {len(data.labels)} images, of which "
            f"ipc x {data.n_classes} train, {DEMO_HELD_OUT} calibrate and at least one per class "
            f"test; got {ipc}."
        )
    n_train = profile.ipc * data.n_classes
    train, cal, test = split_indices(
        data,
        random_state,
        sizes=[n_train, DEMO_HELD_OUT, len(data.labels) - n_train - DEMO_HELD_OUT],
    )
    X, y = data.images, data.labels.numpy()
    y_train, y_cal, y_test = y[train.numpy()], y[cal.numpy()], y[test.numpy()]
    student = student_classifier(
        dataset_recipe(DATASET),
        width=profile.width,
        epochs=profile.student_epochs,
        random_state=random_state,
        verbose=verbose,
    ).fit(X[train], y_train)
    sets = {"train": (X[train], y_train), "cal": (X[cal], y_cal), "test": X[test]}
    rows, _ = calibrate_student(
        student, sets, y_test, training_ratios=profile.training_ratios, seed=random_state
    )
    by_key = {RowKey.of(row): row for row in rows}
    return [
        {
            "method": method,
            "calibrated_on": calibrated_on,
            **{key: by_key[shown][key] for key in METRICS},
            "temperature": by_key[shown]["temperature"],
            "mask_ratio": by_key[shown]["mask_ratio"],
            "note": _note(by_key[shown]),
        }
        for shown, (method, calibrated_on) in SHOWN.items()
    ]


def format_rows(rows: list[dict]) -> str:
    """Render the demo's rows as a fixed-width table.

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`calibration_demo`.

    Returns
    -------
    str
        The table; accuracy, ECE and confidence in percent, as the literature reports them.
    """
    scores = [SCORES[key] for key in METRICS]
    header = ["method", "calibrated on", *(score.short for score in scores), "T", "ratio", "note"]
    lines = [
        [
            r["method"],
            r["calibrated_on"],
            *(score.show(r[score.key]) for score in scores),
            "-" if r["temperature"] is None else f"{r['temperature']:.3g}",
            format_cell(r["mask_ratio"]),
            r["note"],
        ]
        for r in rows
    ]
    align = ["left", "left", *["right"] * (len(header) - 3), "left"]
    return render_table(header, lines, align=align)
