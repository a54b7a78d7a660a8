"""The Kolmogorov-Smirnov calibration error: cumulative gaps over sorted confidences, no bins."""

from __future__ import annotations

import torch

from .._params import Options, check_param
from ._inputs import _KINDS, _NAMES, _check_inputs, _confidences_and_outcomes

__all__ = ["ks_calibration_error"]


def _ks_calibration_error(
    preds, target, *, kind, sample_weight, caller, preds_name="preds", target_name="target"
) -> torch.Tensor:
    check_param(kind, Options(*_KINDS), "kind", caller)
    probs, labels, weights = _check_inputs(
        preds, target, sample_weight, preds_name=preds_name, target_name=target_name
    )
    confidences, outcomes = _confidences_and_outcomes(probs, labels, kind)
    if confidences.ndim == 1:
        confidences, outcomes = confidences[:, None], outcomes[:, None]
    confidences = confidences.to(torch.float64)
    outcomes = outcomes.to(torch.float64)
    w = (
        torch.ones(confidences.shape[0], dtype=torch.float64, device=confidences.device)
        if weights is None
        else weights
    )
    w = (w / w.sum())[:, None]
    order = torch.argsort(confidences, dim=0, stable=True)
    gaps = torch.cumsum(
        (w * (outcomes - confidences)).gather(0, order), dim=0
    )  # running difference of the cumulative frequency and the cumulative confidence
    return gaps.abs().amax(dim=0).mean()


def ks_calibration_error(y_true, y_prob, *, kind: str = "top-label", sample_weight=None) -> float:
    """Kolmogorov-Smirnov calibration error, without bins (Gupta et al., 2021).

    The largest distance between the cumulative frequency of the predicted event and the
    cumulative confidence, samples sorted by confidence. Read more in
    :func:`distcal.metrics.functional.ks_calibration_error`.

    Parameters
    ----------
    y_true : array-like or Tensor of shape (n_samples,)
        Class labels indexing the columns of ``y_prob``.
    y_prob : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities.
    kind : {"top-label", "classwise"}, default="top-label"
        Top-label, or the mean over classes of the one-vs-rest error.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : float
        The error, in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import ks_calibration_error
    >>> y_prob = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> round(ks_calibration_error(np.array([0, 1, 1, 0]), y_prob), 6)
    0.275
    """
    return float(
        _ks_calibration_error(
            y_prob,
            y_true,
            kind=kind,
            sample_weight=sample_weight,
            caller="ks_calibration_error",
            **_NAMES,
        )
    )
