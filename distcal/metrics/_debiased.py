"""The debiased binned calibration error of Kumar, Liang and Ma (2019).

The plug-in squared gap of a bin overestimates the true one by the noise of the bin's mean
outcome; ``_debiased_squared`` subtracts it. :mod:`distcal.metrics._inference` builds its
interval and its test of calibration on the same statistic.
"""

from __future__ import annotations

import torch

from ._binned import _calibration_update
from ._inputs import _NAMES, _check_binning_params, _check_inputs

__all__ = ["debiased_calibration_error"]


def _debiased_calibration_error(
    preds,
    target,
    *,
    n_bins,
    strategy,
    kind,
    sample_weight,
    caller,
    preds_name="preds",
    target_name="target",
) -> torch.Tensor:
    n_bins = _check_binning_params(n_bins, strategy, kind, caller, "l2")
    probs, labels, weights = _check_inputs(
        preds, target, sample_weight, preds_name=preds_name, target_name=target_name
    )
    statistics, _ = _calibration_update(
        probs, labels, weights, n_bins=n_bins, strategy=strategy, kind=kind
    )
    return _debiased_squared(statistics).clamp_min(0).sqrt()


def _debiased_squared(statistics: torch.Tensor) -> torch.Tensor:
    """Return the debiased mean squared calibration error of per-bin sums, before its clamp.

    ``statistics`` has shape (3, ..., n_groups, n_bins); the result has the leading shape
    ``...`` (a 0-d tensor for one set of statistics). It can be negative: the estimate of a
    square that is 0 or nearly so is as often below 0 as above it, which is what makes it
    unbiased, and what an interval of the squared error needs.
    """
    weight, confidence_sum, outcome_sum = statistics
    occupied = weight > 0
    safe = torch.where(occupied, weight, torch.ones_like(weight))
    accuracy, confidence = outcome_sum / safe, confidence_sum / safe
    squared = (accuracy - confidence).square()
    # The plug-in squared gap overestimates by the variance of the bin's mean outcome,
    # acc (1 - acc) / (n - 1) unbiased; a bin of one sample has no estimate of it.
    several = weight > 1
    variance = accuracy * (1 - accuracy) / torch.where(several, weight - 1, torch.ones_like(weight))
    terms = torch.where(several, squared - variance, squared)
    terms = torch.where(occupied, terms, torch.zeros_like(terms))
    per_group = (weight * terms).sum(dim=-1) / weight.sum(dim=-1)
    return per_group.mean(dim=-1)


def debiased_calibration_error(
    y_true,
    y_prob,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    kind: str = "top-label",
    sample_weight=None,
) -> float:
    """Debiased root-mean-square calibration error (Kumar, Liang and Ma, 2019).

    The binned L2 error with each bin's squared gap corrected for the noise of its mean
    outcome. Read more in :func:`distcal.metrics.functional.debiased_calibration_error`.

    Parameters
    ----------
    y_true : array-like or Tensor of shape (n_samples,)
        Class labels indexing the columns of ``y_prob``.
    y_prob : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities.
    n_bins : int, default=15
        Number of bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    kind : {"top-label", "classwise"}, default="top-label"
        Top-label, or the mean over classes of the one-vs-rest error.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights.

    Returns
    -------
    error : float
        The debiased error, at least 0.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import calibration_error, debiased_calibration_error
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(size=500)
    >>> y = (rng.uniform(size=500) < p).astype(int)  # calibrated
    >>> debiased_calibration_error(y, p) < calibration_error(y, p, norm="l2")
    True
    """
    return float(
        _debiased_calibration_error(
            y_prob,
            y_true,
            n_bins=n_bins,
            strategy=strategy,
            kind=kind,
            sample_weight=sample_weight,
            caller="debiased_calibration_error",
            **_NAMES,
        )
    )
