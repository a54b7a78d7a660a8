"""Proper scoring rules: the negative log-likelihood and the Brier score.

Each is a mean of per-row losses, kept as the sums (weighted loss, weight), so batches and
processes add up; ``_mean_resampler`` reduces each row to its loss once for the bootstrap.
"""

from __future__ import annotations

import numpy as np
import torch

from .._device import as_tensor, row_chunks, to_numpy
from ._inputs import _NAMES, _check_inputs
from ._resampling import declare_resampler

__all__ = ["brier_score", "negative_log_likelihood"]


def _nll_update(probs, labels, weights):
    """Return the sums (weighted -log p_y, weight) as a float64 tensor of shape (2,)."""
    p_true = probs.gather(1, labels[:, None]).squeeze(1).to(torch.float64)
    losses = -torch.log(p_true)
    if weights is None:
        return torch.stack([losses.sum(), losses.new_tensor(float(losses.numel()))])
    # A zero weight removes its sample, even one with p_y = 0 (0 * inf would be NaN).
    weighted = torch.where(weights > 0, weights * losses, 0.0)
    return torch.stack([weighted.sum(), weights.sum()])


def _brier_update(probs, labels, weights):
    """Return the sums (weighted squared error, weight) as a float64 tensor of shape (2,)."""
    sums = torch.zeros(2, dtype=torch.float64, device=probs.device)
    # Row chunks keep the float64 copy of the probabilities small on large inputs.
    for rows in row_chunks(probs.shape[0], probs.shape[1], probs.device):
        chunk = probs[rows].to(torch.float64, copy=True)
        y = labels[rows]
        chunk[torch.arange(chunk.shape[0], device=chunk.device), y] -= 1.0
        errors = chunk.square().sum(dim=1)
        if weights is None:
            sums[0] += errors.sum()
            sums[1] += errors.shape[0]
        else:
            w = weights[rows]
            sums[0] += (w * errors).sum()
            sums[1] += w.sum()
    return sums


def _mean_compute(sums: torch.Tensor) -> torch.Tensor:
    return sums[0] / sums[1]


def _negative_log_likelihood(preds, target, sample_weight, **names) -> torch.Tensor:
    probs, labels, weights = _check_inputs(preds, target, sample_weight, **names)
    return _mean_compute(_nll_update(probs, labels, weights))


def _brier_score(preds, target, sample_weight, **names) -> torch.Tensor:
    probs, labels, weights = _check_inputs(preds, target, sample_weight, **names)
    return _mean_compute(_brier_update(probs, labels, weights))


def _brier_errors(probs, labels) -> torch.Tensor:
    """Each row's squared error, float64: the terms :func:`_brier_update` sums."""
    errors = torch.empty(probs.shape[0], dtype=torch.float64, device=probs.device)
    for rows in row_chunks(probs.shape[0], probs.shape[1], probs.device):
        chunk = probs[rows].to(torch.float64, copy=True)
        chunk[torch.arange(chunk.shape[0], device=chunk.device), labels[rows]] -= 1.0
        errors[rows] = chunk.square().sum(dim=1)
    return errors


def _mean_resampler(preds, target, *, kind: str, **names):
    """Validate and reduce each row to its loss once; return ``score(rows)`` of resamples.

    ``kind`` is "nll" or "brier". ``score(rows)`` gives, for each resample (a row of
    ``rows``), the bits :func:`_negative_log_likelihood` or :func:`_brier_score` give on the
    resampled rows: a row's loss reads that row alone, and the resample's losses are summed
    as the metric sums them (one sum for the NLL; the Brier score's sums over the same row
    chunks, in the same order), then divided by the count.
    """
    probs, labels, _ = _check_inputs(preds, target, None, **names)
    n_samples, n_classes = probs.shape
    device = probs.device
    if kind == "nll":
        losses = -torch.log(probs.gather(1, labels[:, None]).squeeze(1).to(torch.float64))
        count = losses.new_tensor(float(n_samples))

        def one(index):
            return losses[index].sum() / count

    else:
        losses = _brier_errors(probs, labels)
        chunks = list(row_chunks(n_samples, n_classes, device))

        def one(index):
            sums = torch.zeros(2, dtype=torch.float64, device=device)
            chosen = losses[index]
            for rows in chunks:
                sums[0] += chosen[rows].sum()
                sums[1] += rows.stop - rows.start
            return _mean_compute(sums)

    def score(rows) -> np.ndarray:
        index = as_tensor(rows, device=device)
        return to_numpy(torch.stack([one(r) for r in index]).to(torch.float64))

    return score


def _nll_resampler(y_true, y_prob, *, sample_weight=None):
    """Score resamples of the NLL from per-row losses; decline fixed weights (not rows)."""
    if sample_weight is not None:
        return None
    return _mean_resampler(y_prob, y_true, kind="nll", **_NAMES)


def _brier_resampler(y_true, y_prob, *, sample_weight=None):
    """Score resamples of the Brier score from per-row errors; decline fixed weights."""
    if sample_weight is not None:
        return None
    return _mean_resampler(y_prob, y_true, kind="brier", **_NAMES)


@declare_resampler(_nll_resampler)
def negative_log_likelihood(y_true, y_prob, *, sample_weight=None) -> float:
    """Mean negative log-likelihood (cross-entropy, log loss) of the labels.

    Parameters
    ----------
    y_true : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    y_prob : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights; the result is the weighted mean.

    Returns
    -------
    nll : float
        ``mean(-log p_y)``, in [0, inf].

    See Also
    --------
    brier_score : A bounded proper scoring rule.

    Notes
    -----
    Probabilities are not clipped: a label with probability exactly 0 makes the result
    ``inf``, the true value of the loss.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import negative_log_likelihood
    >>> negative_log_likelihood([0, 1], np.array([[0.5, 0.5], [0.25, 0.75]]))
    0.4904
    """
    return float(_negative_log_likelihood(y_prob, y_true, sample_weight, **_NAMES))


@declare_resampler(_brier_resampler)
def brier_score(y_true, y_prob, *, sample_weight=None) -> float:
    """Multiclass Brier score: mean squared distance between probabilities and one-hot labels.

    Parameters
    ----------
    y_true : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    y_prob : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights; the result is the weighted mean.

    Returns
    -------
    score : float
        ``mean_i sum_k (p_ik - 1[y_i = k])^2``, in [0, 2] (lower is better).

    See Also
    --------
    negative_log_likelihood : The logarithmic proper scoring rule.

    Notes
    -----
    The sum runs over all classes, so for a binary problem this is twice
    :func:`sklearn.metrics.brier_score_loss`.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import brier_score
    >>> brier_score([0, 1], np.array([[0.5, 0.5], [0.25, 0.75]]))
    0.3125
    """
    return float(_brier_score(y_prob, y_true, sample_weight, **_NAMES))
