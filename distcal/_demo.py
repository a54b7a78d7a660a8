"""The calibration demo run by ``distcal demo``: real logits, before and after calibration.

A ConvNet is trained on a small real subset of scikit-learn's digits (``ipc`` images per class,
the size of a distilled set), so it fits its training images perfectly, as a network trained on
distilled data does. It is then calibrated in two regimes: on held-out real images, and on its
own training images only (the strict regime, where temperature scaling has no optimum).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from .calibration import MaskedTemperatureScaling, TemperatureScaling
from .distill import StudentClassifier, load_digits, stratified_split
from .exceptions import UncalibratableDataWarning
from .metrics import (
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
)

# DSA's strategy for digits: flips would turn some digits into others.
DIGITS_AUGMENT = "color_crop_cutout_scale_rotate"


def evaluate(y_true, proba) -> dict:
    """Return the report's columns for one set of test probabilities."""
    proba = np.asarray(proba, dtype=np.float64)
    y_true = np.asarray(y_true)
    return {
        "accuracy": float((proba.argmax(axis=1) == y_true).mean()),
        "ece10": expected_calibration_error(y_true, proba, n_bins=10),
        "ece15": expected_calibration_error(y_true, proba, n_bins=15),
        "nll": negative_log_likelihood(y_true, proba),
        "brier": brier_score(y_true, proba),
        "confidence": float(proba.max(axis=1).mean()),
    }


def calibration_demo(
    *, ipc: int = 10, epochs: int = 300, random_state: int = 0, verbose: bool = True
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
        One row per calibrator: ``method``, ``calibrated_on``, the metrics of :func:`evaluate`,
        ``temperature``, ``mask_ratio`` and ``note``.
    """
    data = load_digits()
    n_train = ipc * data.n_classes
    train, cal, test = stratified_split(
        data.labels, [n_train, 500, len(data.labels) - n_train - 500], random_state=random_state
    )
    X, y = data.images, data.labels.numpy()
    student = StudentClassifier(
        width=32,
        depth=2,
        epochs=epochs,
        augment=DIGITS_AUGMENT,
        random_state=random_state,
        verbose=verbose,
    ).fit(X[train], y[train])
    net = student.network_
    logits = {
        name: student.decision_function(X[idx])
        for name, idx in (("train", train), ("cal", cal), ("test", test))
    }
    y_train, y_cal, y_test = y[train.numpy()], y[cal.numpy()], y[test.numpy()]
    rows = []

    def add(method, calibrated_on, proba, temperature=None, mask_ratio=None, note=""):
        rows.append(
            {
                "method": method,
                "calibrated_on": calibrated_on,
                **evaluate(y_test, proba),
                "temperature": temperature,
                "mask_ratio": mask_ratio,
                "note": note,
            }
        )

    add("none", "-", torch.softmax(logits["test"], dim=1))

    ts = TemperatureScaling().fit(logits["cal"], y_cal)
    add("TS", "held-out", ts.predict_proba(logits["test"]), ts.temperature_)

    # The default reads the regime from the data: held-out here, so it cross-fits the ratio.
    mts = MaskedTemperatureScaling(model=net, random_state=random_state).fit(X[cal], y_cal)
    add(
        "MTS",
        "held-out",
        mts.predict_proba(X[test]),
        mts.temperature_,
        mts.mask_ratio_,
        f"ratio 'auto' (the default), regime {mts.regime_}",
    )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UncalibratableDataWarning)
        ts_train = TemperatureScaling().fit(logits["train"], y_train)
    note = "no optimum: data separable (warned)" if caught else ""
    add(
        "TS",
        "training images",
        ts_train.predict_proba(logits["test"]),
        ts_train.temperature_,
        note=note,
    )

    mts_train = MaskedTemperatureScaling(model=net, random_state=random_state).fit(
        X[train], y_train
    )
    add(
        "MTS",
        "training images",
        mts_train.predict_proba(X[test]),
        mts_train.temperature_,
        mts_train.mask_ratio_,
        f"ratio 'auto' (the default), regime {mts_train.regime_}",
    )
    return rows


def format_rows(rows: list[dict]) -> str:
    """Render the demo's rows as a fixed-width table.

    Accuracy, ECE and confidence are in percent, as the literature reports them.
    """
    header = [
        "method",
        "calibrated on",
        "acc %",
        "ECE10 %",
        "ECE15 %",
        "NLL",
        "Brier",
        "conf %",
        "T",
        "ratio",
        "note",
    ]
    lines = [header]
    for r in rows:
        lines.append(
            [
                r["method"],
                r["calibrated_on"],
                f"{100 * r['accuracy']:.1f}",
                f"{100 * r['ece10']:.2f}",
                f"{100 * r['ece15']:.2f}",
                f"{r['nll']:.3f}",
                f"{r['brier']:.3f}",
                f"{100 * r['confidence']:.1f}",
                "-" if r["temperature"] is None else f"{r['temperature']:.3g}",
                "-" if r["mask_ratio"] is None else f"{r['mask_ratio']:.2f}",
                r["note"],
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i in (0, 1, 10) else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )
