"""The smooth ECE of Blasiok and Nakkiran (2023): kernel-smoothed residuals, no bins."""

from __future__ import annotations

import torch
from scipy.optimize import brentq

from .._device import as_tensor
from ._inputs import _NAMES, _check_inputs, _top_label

__all__ = ["smooth_calibration_error"]


_SMOOTH_GRID = 500  # points of [0, 1] at which the smoothed residual is evaluated


def _smooth_ece_at(sigma: float, mass: torch.Tensor, difference, total) -> float:
    """smECE_sigma of residual masses at the centres ``(j + 1/2) / G`` of a uniform grid.

    The reflected Gaussian kernel between grid point ``i`` and centre ``j`` depends only on
    the offsets ``i - j`` and ``i + j + 1`` (the centre's image in 0), in grid steps, each
    also shifted by the images in -2 and +2 (2G steps), so that every column integrates to 1
    over [0, 1]: the mass a Gaussian puts outside the interval is folded back in. One table
    of the density at every offset, indexed by ``difference`` (``i - j + G - 1``) and
    ``total`` (``i + j + G``), gives the G x G kernel.
    """
    grid = mass.shape[0]
    offsets = torch.arange(-(grid - 1), 2 * grid, dtype=torch.float64)
    density = sum(
        torch.exp(-0.5 * ((offsets - 2 * grid * shift) / (grid * sigma)) ** 2)
        for shift in (-1, 0, 1)
    ) / (sigma * (2 * torch.pi) ** 0.5)
    smoothed = (density[difference] + density[total]) @ mass  # smoothed residual density
    return float(smoothed.abs().mean())  # the integral over [0, 1] on a uniform grid


def _smooth_calibration_error(
    preds, target, *, sample_weight, caller, preds_name="preds", target_name="target"
) -> torch.Tensor:
    probs, labels, weights = _check_inputs(
        preds, target, sample_weight, preds_name=preds_name, target_name=target_name
    )
    confidence, correct = _top_label(probs, labels)
    # The smoothing runs on the host: a 500-point grid, and a root search that reads floats.
    confidence = as_tensor(confidence, dtype=torch.float64, device="cpu")
    residual = as_tensor(correct, dtype=torch.float64, device="cpu") - confidence
    w = (
        torch.ones_like(confidence)
        if weights is None
        else as_tensor(weights, dtype=torch.float64, device="cpu")
    )
    w = w / w.sum()
    # Residual mass at the centres (j + 1/2) / G of a fine grid (the data enter only through
    # these sums), so the cost is O(n + G^2) whatever the number of samples.
    index = torch.clamp((confidence * _SMOOTH_GRID).long(), 0, _SMOOTH_GRID - 1)
    mass = torch.zeros(_SMOOTH_GRID, dtype=torch.float64).index_add_(0, index, w * residual)
    rows = torch.arange(_SMOOTH_GRID)[:, None]
    columns = torch.arange(_SMOOTH_GRID)[None, :]
    difference, total = rows - columns + _SMOOTH_GRID - 1, rows + columns + _SMOOTH_GRID

    def excess(sigma):
        return _smooth_ece_at(sigma, mass, difference, total) - sigma

    # smECE_sigma decreases with sigma and never exceeds 1 (the total residual mass), so
    # smECE_sigma - sigma has one root in (0, 1]: the smooth ECE, its fixed point.
    low = 1e-4
    at_low = _smooth_ece_at(low, mass, difference, total)
    value = at_low if at_low <= low else brentq(excess, low, 1.0, xtol=1e-10)
    return torch.tensor(value, dtype=torch.float64, device=probs.device)


def smooth_calibration_error(y_true, y_prob, *, sample_weight=None) -> float:
    """Smooth ECE (Blasiok and Nakkiran, 2023): a top-label calibration error without bins.

    Kernel-smoothed residuals with the bandwidth fixed by ``smECE_sigma = sigma``. Read more in
    :func:`distcal.metrics.functional.smooth_calibration_error`.

    Parameters
    ----------
    y_true : array-like or Tensor of shape (n_samples,)
        Class labels indexing the columns of ``y_prob``.
    y_prob : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : float
        The smooth ECE, in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import smooth_calibration_error
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(size=4000)
    >>> y = (rng.uniform(size=4000) < p).astype(int)
    >>> smooth_calibration_error(y, p) < 0.03
    True
    """
    return float(
        _smooth_calibration_error(
            y_prob, y_true, sample_weight=sample_weight, caller="smooth_calibration_error", **_NAMES
        )
    )
