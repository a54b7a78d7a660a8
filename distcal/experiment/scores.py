"""How test probabilities are scored: the score columns, and paired comparisons of two rows.

:func:`score_columns` computes the columns that the experiment, the demo and the calibrator
benchmark report for a set of test probabilities, with the functions of
:data:`~distcal.experiment.schema.SCORES` (the one definition of every score).
"""

from __future__ import annotations

import numpy as np
import torch

from ..metrics import bootstrap_difference
from .schema import SCORES, RowKey
from .settings import COMPARISONS, METRICS

__all__ = ["as_numpy", "calibrator_row", "compare_rows", "score_columns"]


def as_numpy(proba, dtype=np.float64) -> np.ndarray:
    """Return probabilities (an array, or a tensor on any device) as a numpy array.

    Parameters
    ----------
    proba : array-like or Tensor of shape (n_samples, n_classes)
        The probabilities.
    dtype : numpy dtype or None, default=np.float64
        The array's type (None keeps the input's).

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        The probabilities on the CPU.
    """
    if isinstance(proba, torch.Tensor):
        proba = proba.detach().cpu()
    return np.asarray(proba, dtype=dtype)


def score_columns(y_true, proba, *, classwise: bool = False, dtype=np.float64) -> dict:
    """Score one set of test probabilities: the columns of every results table.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        The true class indices.
    proba : array-like or Tensor of shape (n_samples, n_classes)
        Predicted probabilities.
    classwise : bool, default=False
        Add the classwise ECE (15 bins) as ``cwece``.
    dtype : numpy dtype or None, default=np.float64
        The type the probabilities are scored in (None keeps the input's).

    Returns
    -------
    dict
        ``accuracy``, ``ece10`` and ``ece15`` (top-label ECE with 10 and 15 equal-width bins),
        ``cwece`` if asked, ``nll`` (not clipped: a probability of 0 on a true class gives
        inf), ``brier`` and ``confidence`` (the mean top probability), all floats.

    Examples
    --------
    >>> scores = score_columns([0, 1], [[0.9, 0.1], [0.2, 0.8]])
    >>> list(scores), scores["accuracy"]
    (['accuracy', 'ece10', 'ece15', 'nll', 'brier', 'confidence'], 1.0)
    """
    proba = as_numpy(proba, dtype)
    y_true = np.asarray(y_true)
    keys = [key for key in SCORES if key in METRICS or (classwise and key == "cwece")]
    with np.errstate(divide="ignore"):  # an NLL of a zero probability on a true class: inf
        return {key: SCORES[key](y_true, proba) for key in keys}


def calibrator_row(key: RowKey, fitted, proba, y_true, notes=()) -> dict:
    """One calibrator's row of the experiment: its scores and what the fit chose.

    Parameters
    ----------
    key : RowKey
        The row: the calibrator's name ("TS", "MTS auto", "recipe", ...) and what it was
        fitted on (a regime of :data:`~distcal.experiment.schema.REGIMES`).
    fitted : object or None
        The fitted calibrator; its ``temperature_``, ``mask_ratio_``, ``masked_accuracy_`` and
        ``regime_`` are read where it has them.
    proba : array-like or Tensor of shape (n_samples, n_classes)
        Its test probabilities.
    y_true : array-like of shape (n_samples,)
        The test labels.
    notes : sequence of str, default=()
        The warnings of the fit.

    Returns
    -------
    dict
        ``calibrator``, ``regime``, the :func:`score_columns`, ``temperature``,
        ``mask_ratio``, ``masked_accuracy``, ``detected`` (the regime the fit read) and
        ``note``.
    """
    return {
        "calibrator": key.calibrator,
        "regime": key.regime,
        **score_columns(y_true, proba),
        "temperature": getattr(fitted, "temperature_", None),
        "mask_ratio": getattr(fitted, "mask_ratio_", None),
        "masked_accuracy": getattr(fitted, "masked_accuracy_", None),
        "detected": getattr(fitted, "regime_", None) or "",
        "note": "; ".join(notes),
    }


#: The schema's ECE-15 keeps its declared resampler (``with_options``): the bootstrap reduces
#: each test row to its confidence once instead of once per resample (the same numbers).
_ece15 = SCORES["ece15"].function


def compare_rows(
    y_test, probabilities: dict, seed: int, n_resamples: int, *, pairs=COMPARISONS
) -> list[dict]:
    """Paired bootstrap intervals over the test images for pairs of rows.

    Parameters
    ----------
    y_test : array-like of shape (n_samples,)
        The test labels.
    probabilities : dict
        Test probabilities by :class:`~distcal.experiment.schema.RowKey`, holding every row
        that ``pairs`` names.
    seed : int
        Seeds the resamples.
    n_resamples : int
        Bootstrap resamples.
    pairs : sequence of (RowKey, RowKey), default=COMPARISONS
        The rows to compare, first minus second.

    Returns
    -------
    list of dict
        One row per pair: ``first``, ``second`` (the rows' :attr:`~RowKey.label`),
        ``metric`` ("ece15"), ``difference`` (first minus second), ``low`` and ``high`` (the
        95% interval).
    """
    rows = []
    for first, second in pairs:
        diff = bootstrap_difference(
            _ece15,
            y_test,
            as_numpy(probabilities[first]),
            as_numpy(probabilities[second]),
            n_resamples=n_resamples,
            random_state=seed,
        )
        rows.append(
            {
                "first": RowKey(*first).label,
                "second": RowKey(*second).label,
                "metric": "ece15",
                "difference": float(diff.estimate),
                "low": float(diff.low),
                "high": float(diff.high),
            }
        )
    return rows
