"""What a score and a result row are: the one definition every table of the experiment reads.

A :class:`Score` is a column of scores: its key in the rows and files, its titles, how it is
shown (scale and decimals), the function that computes it from labels and probabilities, and
which way is better. :data:`SCORES` holds every score of the experiment, the demo,
``distcal evaluate`` and ``distcal calibrate``, and :data:`PARAMETERS` the fitted parameters
shown beside them; the tables pick their columns from these by key.

A :class:`RowKey` names a calibrator row, (calibrator, regime), as the rows, the
comparisons and the figures refer to it; :data:`REGIMES` names what a calibrator is fitted on.
The regime of a calibrator fitted on the network's own training images is ``"training"``, the
name :class:`~distcal.calibration.MaskedTemperatureScaling` gives it (``regime="training"``).
Result files written before this name was shared call it ``"strict"``: :func:`upgrade_regime`
and :func:`upgrade_label` read them in today's names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..metrics import (
    brier_score,
    calibration_curve,
    classwise_calibration_error,
    declare_resampler,
    expected_calibration_error,
    negative_log_likelihood,
    with_options,
)

__all__ = [
    "HELD_OUT",
    "KEPT",
    "LEGACY_REGIMES",
    "NO_REGIME",
    "PARAMETERS",
    "REGIMES",
    "SCORES",
    "TRAINING",
    "RowKey",
    "Score",
    "accuracy",
    "confidence",
    "confidence_halves",
    "fixed_ratio_row",
    "upgrade_label",
    "upgrade_regime",
]

#: The regime of the uncalibrated row: nothing is fitted.
NO_REGIME = "-"
#: Fitted on held-out real images.
HELD_OUT = "held-out"
#: Fitted on the network's own training images (a distilled set), and what its file carries:
#: :class:`~distcal.calibration.MaskedTemperatureScaling`'s ``regime="training"``.
TRAINING = "training"
#: Fitted on a few real images per class kept beside a distilled set.
KEPT = "kept"
#: Every regime a row of the experiment names.
REGIMES = (NO_REGIME, HELD_OUT, TRAINING, KEPT)
#: Earlier names of regimes, as result files written before them hold them.
LEGACY_REGIMES = {"strict": TRAINING}


def upgrade_regime(regime: str) -> str:
    """Return a regime in today's name (``"strict"``, its earlier name, becomes ``"training"``).

    Parameters
    ----------
    regime : str
        A regime as a result file holds it.

    Returns
    -------
    str
        The regime's name in :data:`REGIMES` (any other text unchanged).

    Examples
    --------
    >>> upgrade_regime("strict"), upgrade_regime("held-out")
    ('training', 'held-out')
    """
    return LEGACY_REGIMES.get(regime, regime)


def upgrade_label(label: str) -> str:
    """Return a row's label (``"MTS auto strict"``) with its regime in today's name.

    Parameters
    ----------
    label : str
        A :attr:`RowKey.label`, as the ``first`` and ``second`` columns of a comparisons file
        hold it.

    Returns
    -------
    str
        The label with its last word upgraded by :func:`upgrade_regime`.

    Examples
    --------
    >>> upgrade_label("recipe strict"), upgrade_label("none -")
    ('recipe training', 'none -')
    """
    calibrator, _, regime = label.rpartition(" ")
    if not calibrator:
        return label
    return f"{calibrator} {upgrade_regime(regime)}"


class RowKey(NamedTuple):
    """A calibrator row: which calibrator, fitted on what.

    A tuple, so that ``RowKey("TS", "held-out") == ("TS", "held-out")``.

    Parameters
    ----------
    calibrator : str
        The calibrator's name in the rows ("none", "TS", "MTS auto", "MTS 0.1", "recipe", ...).
    regime : str
        What it is fitted on, one of :data:`REGIMES`.

    Examples
    --------
    >>> RowKey("MTS auto", TRAINING).label
    'MTS auto training'
    >>> RowKey.of({"calibrator": "TS", "regime": "held-out", "ece15": 0.1})
    RowKey(calibrator='TS', regime='held-out')
    """

    calibrator: str
    regime: str

    @property
    def label(self) -> str:
        """The row's name in one string, as comparisons and tables print it."""
        return f"{self.calibrator} {self.regime}"

    @classmethod
    def of(cls, row: dict) -> RowKey:
        """Return the key of a result row (a dict with ``calibrator`` and ``regime``).

        Parameters
        ----------
        row : dict
            A row of ``results.csv``, or of :func:`~distcal.experiment.scores.calibrator_row`.

        Returns
        -------
        RowKey
            Its calibrator and regime.
        """
        return cls(row["calibrator"], row["regime"])


def fixed_ratio_row(ratio: float) -> RowKey:
    """Return the row of masked temperature scaling with a fixed ratio, on the training images.

    Parameters
    ----------
    ratio : float
        The mask ratio (a :attr:`~distcal.experiment.Profile.training_ratios` entry).

    Returns
    -------
    RowKey
        ``RowKey(f"MTS {ratio}", "training")``.

    Examples
    --------
    >>> fixed_ratio_row(0.1).label
    'MTS 0.1 training'
    """
    return RowKey(f"MTS {ratio}", TRAINING)


def _accuracy_resampler(y_true, y_prob):
    correct = np.asarray(y_prob).argmax(axis=1) == np.asarray(y_true)  # reduced once
    return lambda rows: np.array([np.mean(correct[r]) for r in rows])


@declare_resampler(_accuracy_resampler)
def accuracy(y_true, y_prob) -> float:
    """Return the share of samples whose most probable class is their label.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        The true class indices.
    y_prob : array-like of shape (n_samples, n_classes)
        Predicted probabilities.

    Returns
    -------
    float
        The accuracy, in [0, 1].

    Examples
    --------
    >>> accuracy([0, 1], [[0.9, 0.1], [0.7, 0.3]])
    0.5
    """
    return float(np.mean(np.asarray(y_prob).argmax(axis=1) == np.asarray(y_true)))


def confidence(y_true, y_prob) -> float:
    """Return the mean top probability.

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        The true class indices (not read; every score takes the same arguments).
    y_prob : array-like of shape (n_samples, n_classes)
        Predicted probabilities.

    Returns
    -------
    float
        The mean over samples of the largest probability.

    Examples
    --------
    >>> confidence([0, 1], [[0.9, 0.1], [0.7, 0.3]])
    0.8
    """
    return float(np.asarray(y_prob).max(axis=1).mean())


def confidence_halves(y_true, y_prob) -> tuple[float, float]:
    """Return ECE-15 split into over- and under-confidence (they sum to ECE-15).

    Parameters
    ----------
    y_true : array-like of shape (n_samples,)
        The true class indices.
    y_prob : array-like of shape (n_samples, n_classes)
        Predicted probabilities.

    Returns
    -------
    overconfidence, underconfidence : float
        The weighted gaps of the 15 equal-width bins where the mean confidence is above the
        accuracy, and where it is below.

    Examples
    --------
    >>> over, under = confidence_halves([0, 1], [[0.9, 0.1], [0.9, 0.1]])
    >>> round(over, 6), under
    (0.4, 0.0)
    """
    curve = calibration_curve(y_true, y_prob, n_bins=15)
    weights = curve.counts / curve.counts.sum()
    gap = np.nan_to_num(curve.mean_confidence - curve.accuracy)
    return float((weights * np.maximum(gap, 0)).sum()), float((weights * np.maximum(-gap, 0)).sum())


@dataclass(frozen=True)
class Score:
    """One column of scores: what it is called, how it is shown, how it is computed.

    Parameters
    ----------
    key : str
        The column's name in rows and files (``"ece15"``).
    title : str
        The column's title in tables (``"ECE-15 %"``).
    short : str
        A shorter title, for the fixed-width tables the experiment prints (``"ECE15 %"``).
    scale : float
        Values are multiplied by it when shown (100: percent).
    digits : int
        Decimals shown.
    function : callable or None
        ``function(y_true, y_prob) -> float`` on numpy labels and probabilities; None for a
        column that a fit sets (a temperature), not computed from probabilities.
    lower_is_better : bool or None
        Which way is better: True for errors, False for accuracy, None where neither is
        (confidence, a fitted parameter).

    Examples
    --------
    >>> score = SCORES["ece15"]
    >>> score.title, score.show(0.0123)
    ('ECE-15 %', '1.23')
    """

    key: str
    title: str
    short: str
    scale: float
    digits: int
    function: Callable | None
    lower_is_better: bool | None

    def __call__(self, y_true, y_prob) -> float:
        """Return the score of labels and probabilities (see :attr:`function`).

        Parameters
        ----------
        y_true : array-like of shape (n_samples,)
            The true class indices.
        y_prob : array-like of shape (n_samples, n_classes)
            Predicted probabilities.

        Returns
        -------
        float
            The score.
        """
        if self.function is None:
            raise TypeError(f"the column {self.key!r} is set by a fit; it has no function.")
        return self.function(y_true, y_prob)

    def show(self, value, std=math.nan) -> str:
        """Return a value (with its SD when finite) as the tables show this column.

        Parameters
        ----------
        value : float or None
            The value (None: "-").
        std : float, default=nan
            Its SD, shown after a ± when finite.

        Returns
        -------
        str
            The cell (see :func:`~distcal.experiment.report.format_cell`).
        """
        from .report import format_cell

        return format_cell(value, std, scale=self.scale, digits=self.digits)


#: Every score of the experiment's tables, by key, in the order of the result rows.
SCORES = {
    score.key: score
    for score in (
        Score("accuracy", "accuracy %", "acc %", 100, 1, accuracy, False),
        Score(
            "ece10",
            "ECE-10 %",
            "ECE10 %",
            100,
            2,
            with_options(expected_calibration_error, n_bins=10),
            True,
        ),
        # with_options keeps the ECE's declared resampler, which the bootstrap of the
        # comparisons (scores.compare_rows) reads to take its fast path.
        Score(
            "ece15",
            "ECE-15 %",
            "ECE15 %",
            100,
            2,
            with_options(expected_calibration_error, n_bins=15),
            True,
        ),
        Score(
            "cwece",
            "classwise ECE-15 %",
            "cwECE %",
            100,
            2,
            with_options(classwise_calibration_error, n_bins=15),
            True,
        ),
        # not clipped: a probability of 0 on a true class gives inf, which stays visible
        Score("nll", "NLL", "NLL", 1, 3, negative_log_likelihood, True),
        Score("brier", "Brier", "Brier", 1, 3, brier_score, True),
        Score("confidence", "confidence %", "conf %", 100, 1, confidence, None),
        # the two halves of ECE-15 (distcal evaluate computes both from one curve)
        Score(
            "overconfidence",
            "over-conf. %",
            "over %",
            100,
            2,
            lambda y_true, y_prob: confidence_halves(y_true, y_prob)[0],
            True,
        ),
        Score(
            "underconfidence",
            "under-conf. %",
            "under %",
            100,
            2,
            lambda y_true, y_prob: confidence_halves(y_true, y_prob)[1],
            True,
        ),
    )
}

#: The fitted parameters the tables show beside the scores, by key.
PARAMETERS = {
    column.key: column
    for column in (
        Score("temperature", "T", "T", 1, 3, None, None),
        Score("mask_ratio", "ratio", "ratio", 1, 2, None, None),
    )
}
