"""One-vs-rest calibrators of the probabilities: histogram binning and isotonic regression.

Each class ``k`` gets a non-parametric map of its probability ``p_k = softmax(z)_k`` to the
frequency of class ``k`` among the calibration samples with that probability; the K calibrated
values of a sample are then divided by their sum so that they form a distribution. Two rules
make the result always a distribution, and are documented rather than hidden:

- a row whose K calibrated values are all 0 becomes uniform (``n_uniform_rows_`` counts those
  of the calibration data; ``predict_proba`` cannot know in advance);
- unlike the scaling family, these maps can give a label probability exactly 0 (an infinite
  NLL) and can change the predicted class.

``decision_function`` returns the log of the normalised values (``-inf`` where they are 0).
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.isotonic import isotonic_regression

from .._device import to_numpy
from .._validation import Interval, Options
from ..metrics._binning import bin_edges, bin_indices, bin_statistics
from ._base import BaseLogitCalibrator

__all__ = ["HistogramBinning", "IsotonicCalibration"]


class _OneVsRest(BaseLogitCalibrator):
    """Fit one map per class on the class's probability; normalise the calibrated rows."""

    def fit(self, X, y, sample_weight=None):
        """Fit one map per class on calibration logits.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
            Logits of the calibration samples, or 1-D binary decision values.
        y : array-like or Tensor of shape (n_samples,)
            Labels indexing the columns of ``X``.
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self
            The fitted calibrator.
        """
        logits, labels, weights = self._validate_fit_inputs(X, y, sample_weight)
        probs = torch.softmax(logits.values.to(torch.float64), dim=1)
        onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).to(torch.float64)
        self._fit_maps(probs, onehot, weights)
        values = self._apply_maps(probs)
        self.n_uniform_rows_ = int((values.sum(dim=1) <= 0).sum())
        return self

    def _calibrate_logits(self, values: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(values.to(torch.float64), dim=1)
        calibrated = self._apply_maps(probs)
        totals = calibrated.sum(dim=1, keepdim=True)
        uniform = torch.full_like(calibrated, 1.0 / calibrated.shape[1])
        normalised = torch.where(totals > 0, calibrated / totals.clamp_min(1e-300), uniform)
        return torch.log(normalised).to(values.dtype)  # log(0) = -inf: probability exactly 0


class HistogramBinning(_OneVsRest):
    """Histogram binning, one-vs-rest: each class's probability mapped to its bin's frequency.

    For every class, the calibration samples are binned by their probability of that class
    (with distcal's one binning kernel, the one of the calibration metrics) and each bin is
    mapped to the weighted frequency of the class among its samples; an empty bin keeps the
    mean of its edges. Rows are then normalised to sum to 1.

    Parameters
    ----------
    n_bins : int, default=15
        Bins per class.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width bins, or equal-mass bins computed per class on the calibration data.
    input_type : {"logits", "probabilities"}, default="logits"
        What ``X`` holds.

    Attributes
    ----------
    bin_edges_ : Tensor of shape (n_classes, n_bins + 1)
        Each class's bin edges (float64).
    bin_values_ : Tensor of shape (n_classes, n_bins)
        The calibrated probability of each bin.
    n_uniform_rows_ : int
        Calibration rows whose calibrated values were all 0 (made uniform).
    classes_ : ndarray of shape (n_classes,)
        ``arange(n_classes)``.
    n_features_in_ : int
        Number of logit columns seen in ``fit``.

    References
    ----------
    .. [1] B. Zadrozny and C. Elkan, "Obtaining calibrated probability estimates from decision
       trees and naive Bayesian classifiers", ICML 2001.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.calibration import HistogramBinning
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(2000, 3))
    >>> y = (z + rng.gumbel(size=z.shape)).argmax(axis=1)
    >>> hb = HistogramBinning(n_bins=10).fit(4 * z, y)
    >>> hb.bin_values_.shape
    torch.Size([3, 10])
    >>> bool(np.allclose(hb.predict_proba(4 * z).sum(axis=1), 1))
    True
    """

    _parameter_constraints = {
        "n_bins": [Interval(numbers.Integral, 1, None, closed="left")],
        "strategy": [Options("uniform", "quantile")],
        "input_type": [Options("logits", "probabilities")],
    }

    def __init__(self, n_bins=15, *, strategy="uniform", input_type="logits"):
        self.n_bins = n_bins
        self.strategy = strategy
        self.input_type = input_type

    def _fit_maps(self, probs, onehot, weights):
        n_classes = probs.shape[1]
        # uniform edges stay 1-D (shared by every class): the binning kernel's fast path
        edges = bin_edges(probs, self.n_bins, self.strategy, weights)
        weight, _, outcome = bin_statistics(probs, onehot, edges, weights)
        per_class = edges.expand(n_classes, -1) if edges.ndim == 1 else edges
        centres = (per_class[:, :-1] + per_class[:, 1:]) / 2
        values = torch.where(weight > 0, outcome / weight.clamp_min(1e-300), centres)
        self.bin_edges_ = per_class.cpu().clone()
        self.bin_values_ = values.cpu()

    def _apply_maps(self, probs):
        # uniform edges are shared by every class: one row, 1-D, takes the kernel's fast path
        edges = self.bin_edges_[0] if self.strategy == "uniform" else self.bin_edges_
        edges = edges.to(probs.device)
        index = bin_indices(probs, edges)
        values = self.bin_values_.to(probs.device)
        return values.gather(1, index.T).T


def _isotonic_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Weighted non-decreasing fit of y on x; return the distinct x and the fitted values.

    Samples with equal x are pooled first (their weighted mean and total weight); the pooled
    points then go through scikit-learn's compiled pool-adjacent-violators routine.
    """
    keep = w > 0
    x, y, w = x[keep], y[keep], w[keep]
    order = np.argsort(x, kind="stable")
    x, y, w = x[order], y[order], w[order]
    start = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])
    unique = x[start]
    sums_w = np.add.reduceat(w, start)
    means = np.add.reduceat(w * y, start) / sums_w
    fitted = isotonic_regression(means, sample_weight=sums_w, increasing=True)
    # The fit is constant on blocks: the first and last point of each block are the only
    # knots the linear interpolation needs (fewer knots, faster predictions, same values).
    change = np.r_[True, fitted[1:] != fitted[:-1]]
    keep = change | np.r_[change[1:], True]
    return unique[keep], fitted[keep]


class IsotonicCalibration(_OneVsRest):
    """Isotonic regression, one-vs-rest: each class's probability mapped monotonically.

    For every class, a non-decreasing map of the class's probability to its frequency is
    fitted by weighted isotonic regression (pool adjacent violators, scikit-learn's compiled
    routine, on the distinct probabilities) on the calibration data;
    between the fitted points the map is linear, and outside them it is constant. Rows are
    then normalised to sum to 1.

    Parameters
    ----------
    input_type : {"logits", "probabilities"}, default="logits"
        What ``X`` holds.

    Attributes
    ----------
    knots_ : list of ndarray
        Per class, the knots of the map: the first and last distinct calibration probability
        of every constant block of the isotonic fit.
    knot_values_ : list of ndarray
        Per class, the isotonic fit at those knots.
    n_uniform_rows_ : int
        Calibration rows whose calibrated values were all 0 (made uniform).
    classes_ : ndarray of shape (n_classes,)
        ``arange(n_classes)``.
    n_features_in_ : int
        Number of logit columns seen in ``fit``.

    References
    ----------
    .. [1] B. Zadrozny and C. Elkan, "Transforming classifier scores into accurate multiclass
       probability estimates", KDD 2002.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.calibration import IsotonicCalibration
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(2000, 3))
    >>> y = (z + rng.gumbel(size=z.shape)).argmax(axis=1)
    >>> iso = IsotonicCalibration().fit(4 * z, y)
    >>> all(np.all(np.diff(v) >= 0) for v in iso.knot_values_)  # monotone per class
    True
    """

    _parameter_constraints = {"input_type": [Options("logits", "probabilities")]}

    def __init__(self, *, input_type="logits"):
        self.input_type = input_type

    def _fit_maps(self, probs, onehot, weights):
        p = to_numpy(probs.cpu())
        targets = to_numpy(onehot.cpu())
        w = np.ones(len(p)) if weights is None else to_numpy(weights.cpu())
        self.knots_, self.knot_values_ = [], []
        for k in range(p.shape[1]):
            knots, values = _isotonic_fit(p[:, k], targets[:, k], w)
            self.knots_.append(knots)
            self.knot_values_.append(values)

    def _apply_maps(self, probs):
        p = to_numpy(probs.detach().cpu())
        columns = [
            np.interp(p[:, k], knots, values)
            for k, (knots, values) in enumerate(zip(self.knots_, self.knot_values_, strict=True))
        ]
        return torch.as_tensor(np.stack(columns, axis=1), device=probs.device)
