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
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from sklearn.isotonic import isotonic_regression

from .._binning import bin_edges, bin_indices
from .._device import as_tensor, row_chunks, to_numpy
from .._params import Interval, Options
from .._softmax import softmax
from ._base import BaseLogitCalibrator

__all__ = ["HistogramBinning", "IsotonicCalibration"]


class _OneVsRest(BaseLogitCalibrator):
    """Fit one map per class on the class's probability; normalise the calibrated rows.

    Subclasses implement ``_fit_maps(logits, labels, weights)``, which fits the maps on float64
    logits and returns the number of calibration rows whose K mapped values are all 0;
    ``_maps(device)``, which returns the fitted maps as tensors on ``device``; and
    ``_apply_maps(probs, maps)``.
    """

    _fits_log_probabilities = False  # binning never takes the log of a probability
    _shift_invariant = True  # the maps bin softmax(z), which a constant per row leaves alone

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
        self.n_uniform_rows_ = self._fit_maps(logits.values.to(torch.float64), labels, weights)
        return self

    @staticmethod
    def _by_chunks(logits, function, dtype):
        """Apply ``function(probs, out)`` to the float64 probabilities of row chunks of ``logits``.

        Chunks keep every temporary small (in cache on a CPU) whatever the number of samples;
        ``function`` writes its result for the chunk into ``out``, a view of one tensor of
        ``dtype`` and the shape of ``logits``, which is returned.
        """
        result = torch.empty(logits.shape, dtype=dtype, device=logits.device)
        for rows in row_chunks(logits.shape[0], logits.shape[1], logits.device):
            function(softmax(logits[rows].to(torch.float64)), result[rows])
        return result

    def _normalised(self, values: torch.Tensor) -> torch.Tensor:
        """Calibrated float64 probabilities: the mapped values divided by their row sums."""
        maps = self._maps(values.device)

        def calibrate(probs, out):
            calibrated = self._apply_maps(probs, maps)
            totals = calibrated.sum(dim=1, keepdim=True)
            # A row of zeros becomes a row of ones with total K, that is the uniform
            # distribution; on an accelerator without a branch, so nothing waits for it.
            empty = totals <= 0
            if calibrated.device.type != "cpu" or bool(empty.any()):  # a CPU check is free
                calibrated += empty
                totals += empty * calibrated.shape[1]
            torch.div(calibrated, totals, out=out)

        return self._by_chunks(values, calibrate, torch.float64)

    def _calibrate_proba(self, values: torch.Tensor) -> torch.Tensor:
        return self._normalised(values).to(values.dtype)

    def _calibrate_logits(self, values: torch.Tensor) -> torch.Tensor:
        # log(0) = -inf: a probability exactly 0
        return torch.log(self._normalised(values)).to(values.dtype)


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
        Each class's bin edges (float64, on the device of the data given to ``fit``).
    bin_values_ : Tensor of shape (n_classes, n_bins)
        The calibrated probability of each bin (float64, on the same device).
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

    _cli_name = "histogram"

    def __init__(self, n_bins=15, *, strategy="uniform", input_type="logits"):
        self.n_bins = n_bins
        self.strategy = strategy
        self.input_type = input_type

    def _fit_maps(self, logits, labels, weights):
        n_samples, n_classes = logits.shape
        # Uniform edges need no data and stay 1-D (shared by every class): the binning kernel's
        # fast path. Quantile edges need every probability at once.
        probs = logits if self.strategy == "uniform" else softmax(logits)
        edges = bin_edges(probs, self.n_bins, self.strategy, weights)
        offsets = torch.arange(n_classes, device=logits.device) * self.n_bins

        def cells_of(probs, out):  # each (sample, class) bin's index in the flat table
            torch.add(bin_indices(probs, edges), offsets, out=out)

        cells = self._by_chunks(logits, cells_of, torch.long)
        # Each sample adds its weight to the bin of every class, and its outcome only to the
        # bin of its own class (the others are 0): K + 1 additions per sample, not 2K.
        size = n_classes * self.n_bins
        own = cells.gather(1, labels[:, None]).reshape(-1)
        if weights is None:
            weight = torch.bincount(cells.reshape(-1), minlength=size).to(torch.float64)
            outcome = torch.bincount(own, minlength=size).to(torch.float64)
        else:
            spread = weights[:, None].expand(n_samples, n_classes).reshape(-1)
            weight = torch.bincount(cells.reshape(-1), weights=spread, minlength=size)
            outcome = torch.bincount(own, weights=weights, minlength=size)
        per_class = edges.expand(n_classes, -1) if edges.ndim == 1 else edges
        centres = (per_class[:, :-1] + per_class[:, 1:]) / 2
        weight = weight.reshape(n_classes, self.n_bins)
        outcome = outcome.reshape(n_classes, self.n_bins)
        values = torch.where(weight > 0, outcome / weight.clamp_min(1e-300), centres)
        self.bin_edges_ = per_class.clone()
        self.bin_values_ = values
        if not bool((values == 0).any()):
            return 0  # no bin maps to 0, so no row can
        return int((values.reshape(-1)[cells] == 0).all(dim=1).sum())

    def _maps(self, device):
        # uniform edges are shared by every class: one row, 1-D, takes the kernel's fast path
        edges = self.bin_edges_[0] if self.strategy == "uniform" else self.bin_edges_
        return edges.to(device), self.bin_values_.T.contiguous().to(device)

    def _apply_maps(self, probs, maps):
        edges, by_bin = maps  # by_bin[b, k]: the value of bin b of class k
        return by_bin.gather(0, bin_indices(probs, edges))


def _isotonic_fit(x: np.ndarray, positive: np.ndarray, w: np.ndarray | None):
    """Weighted non-decreasing fit of ``positive`` on ``x``; return its knots and values.

    Samples with equal x are pooled first (their weighted mean and total weight); the pooled
    points then go through scikit-learn's compiled pool-adjacent-violators routine. Pooling
    makes the order of equal values irrelevant, so the unstable (faster) sort is used; without
    weights only the values are sorted, and the positives are counted per distinct value.
    """
    if w is None:
        values = np.sort(x)
        start = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
        unique = values[start]
        sums_w = np.diff(np.r_[start, len(values)]).astype(np.float64)
        hits = np.bincount(np.searchsorted(unique, x[positive]), minlength=len(unique))
        means = hits / sums_w
    else:
        keep = w > 0
        x, positive, w = x[keep], positive[keep], w[keep]
        order = np.argsort(x)
        x, positive, w = x[order], positive[order], w[order]
        start = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])
        unique = x[start]
        sums_w = np.add.reduceat(w, start)
        means = np.add.reduceat(w * positive, start) / sums_w
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
    knots_ : Tensor of shape (n_classes, n_knots)
        Row ``k`` holds the knots of class ``k``'s map in increasing order (the first and last
        distinct calibration probability of every constant block of the isotonic fit), then
        ``+inf`` after its ``n_knots_[k]`` knots (float64, on the device of the data given to
        ``fit``).
    knot_values_ : Tensor of shape (n_classes, n_knots)
        The isotonic fit at those knots; the padding repeats each class's last value.
    n_knots_ : Tensor of shape (n_classes,)
        The number of knots of each class (int64).
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
    >>> bool((iso.knot_values_.diff(dim=1) >= 0).all())  # monotone per class
    True
    """

    _fitted_may_be_infinite = frozenset({"knots_"})  # padded with +inf
    _parameter_constraints = {"input_type": [Options("logits", "probabilities")]}
    _cli_name = "isotonic"

    def __init__(self, *, input_type="logits"):
        self.input_type = input_type

    def _fit_maps(self, logits, labels, weights):
        probs = softmax(logits)
        columns = to_numpy(probs.T.contiguous())  # one contiguous row per class
        y = to_numpy(labels)
        w = None if weights is None else to_numpy(weights)

        def fit_class(k):
            return _isotonic_fit(columns[k], y == k, w)

        # numpy sorts without the GIL: classes are fitted on as many threads as torch uses
        n_threads = min(len(columns), torch.get_num_threads())
        if n_threads > 1:
            with ThreadPoolExecutor(n_threads) as pool:
                fits = list(pool.map(fit_class, range(len(columns))))
        else:
            fits = [fit_class(k) for k in range(len(columns))]
        # One tensor per attribute: knots padded with +inf (never reached), values with the
        # last value of their class.
        width = max(len(knots) for knots, _ in fits)
        knots = torch.full((len(fits), width), np.inf, dtype=torch.float64)
        values = torch.empty((len(fits), width), dtype=torch.float64)
        for k, (x, f) in enumerate(fits):
            knots[k, : len(x)] = as_tensor(x)
            values[k, : len(f)] = as_tensor(f)
            values[k, len(f) :] = f[-1]
        self.knots_ = knots.to(logits.device)
        self.knot_values_ = values.to(logits.device)
        self.n_knots_ = torch.tensor([len(x) for x, _ in fits], device=logits.device)
        # The maps are non-decreasing and non-negative: class k maps to 0 exactly up to its
        # last knot of value 0 (every calibration probability is a knot or lies in a constant
        # block between two), so a calibration row maps to all zeros when each of its
        # probabilities is at or below its class's threshold.
        thresholds = [
            knots[values == 0][-1] if values[0] == 0 else -np.inf for knots, values in fits
        ]
        if max(thresholds) == -np.inf:
            return 0
        below = probs <= as_tensor(np.array(thresholds), device=probs.device)
        return int(below.all(dim=1).sum())

    def _maps(self, device):
        # np.interp per class, for all classes at once: the padded knots (+inf) are never
        # reached and the slopes after each class's last knot are 0.
        knots = self.knots_.to(device)
        values = self.knot_values_.to(device)
        n_knots = self.n_knots_.to(device)
        width = knots.shape[1]
        slopes = torch.zeros_like(knots)
        real = torch.arange(width - 1, device=device) < (n_knots[:, None] - 1)
        slopes[:, :-1] = torch.where(
            real, values.diff(dim=1) / knots.diff(dim=1), torch.zeros((), dtype=knots.dtype)
        )
        lowest = knots[:, :1]
        highest = knots.gather(1, (n_knots - 1)[:, None])
        return knots, values, slopes, lowest, highest

    def _apply_maps(self, probs, maps):
        knots, values, slopes, lowest, highest = maps
        # constant outside [first knot, last knot]: clamp, then interpolate on the segment
        x = torch.minimum(torch.maximum(probs.T, lowest), highest).contiguous()
        segment = torch.searchsorted(knots, x, right=True).sub_(1)
        result = values.gather(1, segment)
        result += (x - knots.gather(1, segment)) * slopes.gather(1, segment)
        return result.T
