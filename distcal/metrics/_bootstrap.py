"""Bootstrap confidence intervals for any metric, and for the difference of two calibrators."""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.utils import Bunch, check_random_state

from .._device import as_tensor, to_numpy
from .._validation import Interval, check_param
from ._classification import _resampler

__all__ = ["bootstrap_ci", "bootstrap_difference"]


def _resample_indices(n_samples, n_resamples, random_state):
    rng = check_random_state(random_state)
    return rng.randint(0, n_samples, size=(n_resamples, n_samples))


def _scorer(metric, y, proba):
    """``score(rows)``: the metric on the rows of a resample.

    distcal's binned calibration errors reduce the rows once and index the reduction
    (``_resampler``, the same bits); any other metric is called on the rows.
    """
    fast = _resampler(metric, y, proba)
    if fast is not None:
        return fast

    def score(rows):
        i = rows.numpy()
        return metric(y[i], proba[i])

    return score


def _check(metric, n_resamples, confidence, caller):
    if not callable(metric):
        raise TypeError(
            f"metric must be a callable metric(y_true, y_prob) returning a float, such as "
            f"distcal.metrics.expected_calibration_error; got a {type(metric).__name__}."
        )
    check_param(
        n_resamples, Interval(numbers.Integral, 1, None, closed="left"), "n_resamples", caller
    )
    check_param(confidence, Interval(numbers.Real, 0, 1, closed="neither"), "confidence", caller)


def _as_arrays(y_true, *probas):
    y = np.asarray(to_numpy(as_tensor(y_true)))
    arrays = [np.asarray(to_numpy(as_tensor(p))) for p in probas]
    for name, array in zip(("y_prob", "y_prob_b"), arrays, strict=False):
        if array.shape[0] != y.shape[0]:
            raise ValueError(
                f"Found input variables with inconsistent numbers of samples: y_true has "
                f"{y.shape[0]} and {name} has {array.shape[0]}."
            )
    if y.shape[0] < 2:
        raise ValueError(f"A bootstrap needs at least 2 samples; got {y.shape[0]}.")
    return y, arrays


def _interval(values: np.ndarray, estimate: float, confidence: float, metric) -> Bunch:
    # A NaN would make np.quantile return a NaN interval without a word; say where it came from.
    n_nan = int(np.isnan(values).sum())
    if n_nan or np.isnan(estimate):
        name = getattr(metric, "__name__", type(metric).__name__)
        parts = ["on the full data"] if np.isnan(estimate) else []
        parts += [f"on {n_nan} of {len(values)} resamples"] if n_nan else []
        where = " and ".join(parts)
        raise ValueError(
            f"metric {name} returned NaN {where}; a bootstrap interval of NaN values is "
            "undefined. Check the metric's inputs (NaN probabilities, or a resample where the "
            "metric is undefined, such as one class only for a ranking metric)."
        )
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return Bunch(
        estimate=float(estimate),
        low=float(low),
        high=float(high),
        std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        confidence=float(confidence),
        resamples=values,
    )


def bootstrap_ci(
    metric, y_true, y_prob, *, n_resamples=1000, confidence=0.95, random_state=None
) -> Bunch:
    """Percentile bootstrap confidence interval of ``metric(y_true, y_prob)``.

    The samples are drawn with replacement ``n_resamples`` times and the metric computed on
    each resample; the interval holds the central ``confidence`` share of those values.

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_prob) -> float``, such as
        :func:`~distcal.metrics.expected_calibration_error` (use ``functools.partial`` to set
        its options).
    y_true : array-like or Tensor of shape (n_samples,)
        Labels.
    y_prob : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Probabilities.
    n_resamples : int, default=1000
        Bootstrap resamples.
    confidence : float, default=0.95
        Coverage of the interval, in (0, 1).
    random_state : int, RandomState instance or None, default=None
        Seeds the resampling.

    Returns
    -------
    Bunch
        ``estimate`` (the metric on all the data), ``low`` and ``high`` (the interval),
        ``std`` (the bootstrap standard error), ``confidence`` and ``resamples`` (the metric on
        each resample).

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import bootstrap_ci, expected_calibration_error
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(size=2000)
    >>> y = (rng.uniform(size=2000) < p).astype(int)  # calibrated by construction
    >>> ci = bootstrap_ci(expected_calibration_error, y, p, n_resamples=200, random_state=0)
    >>> ci.low <= ci.estimate <= ci.high
    True
    """
    _check(metric, n_resamples, confidence, "bootstrap_ci")
    y, (proba,) = _as_arrays(y_true, y_prob)
    indices = _resample_indices(len(y), n_resamples, random_state)
    score = _scorer(metric, y, proba)
    values = np.array([score(torch.from_numpy(i)) for i in indices], dtype=np.float64)
    return _interval(values, metric(y, proba), confidence, metric)


def bootstrap_difference(
    metric, y_true, y_prob_a, y_prob_b, *, n_resamples=1000, confidence=0.95, random_state=None
) -> Bunch:
    """Paired bootstrap interval of ``metric(y, a) - metric(y, b)`` on the same samples.

    Both calibrators are scored on each resample, so the interval of the difference accounts
    for what they share; when it excludes 0, the two differ at that confidence.

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_prob) -> float``.
    y_true : array-like or Tensor of shape (n_samples,)
        Labels.
    y_prob_a, y_prob_b : array-like or Tensor of shape (n_samples, n_classes)
        The probabilities of the two calibrators on the same samples.
    n_resamples : int, default=1000
        Bootstrap resamples.
    confidence : float, default=0.95
        Coverage of the interval, in (0, 1).
    random_state : int, RandomState instance or None, default=None
        Seeds the resampling.

    Returns
    -------
    Bunch
        As :func:`bootstrap_ci`, for the difference, plus ``excludes_zero``.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import bootstrap_difference, expected_calibration_error
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(size=2000)
    >>> y = (rng.uniform(size=2000) < p).astype(int)
    >>> worse = np.clip(1.3 * p, 0, 1)  # over-confident for p > 0.5
    >>> diff = bootstrap_difference(expected_calibration_error, y, worse, p,
    ...                             n_resamples=200, random_state=0)
    >>> diff.excludes_zero, diff.low > 0
    (True, True)
    """
    _check(metric, n_resamples, confidence, "bootstrap_difference")
    y, (a, b) = _as_arrays(y_true, y_prob_a, y_prob_b)
    if a.shape != b.shape:
        raise ValueError(
            f"y_prob_a and y_prob_b must have the same shape; got {a.shape} and {b.shape}."
        )
    indices = _resample_indices(len(y), n_resamples, random_state)
    score_a = _scorer(metric, y, a)
    score_b = _scorer(metric, y, b)
    rows = (torch.from_numpy(i) for i in indices)
    values = np.array([score_a(i) - score_b(i) for i in rows], dtype=np.float64)
    result = _interval(values, metric(y, a) - metric(y, b), confidence, metric)
    result.excludes_zero = bool(result.low > 0 or result.high < 0)
    return result
