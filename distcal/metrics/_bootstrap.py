"""Bootstrap confidence intervals for any metric, and for the difference of two calibrators."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils import Bunch

from .._device import as_tensor, to_numpy
from .._params import Interval, check_param
from ._resampling import check_resamples, resample_rows, resampled_scorer

__all__ = ["bootstrap_ci", "bootstrap_difference"]


def _name(metric) -> str:
    return getattr(metric, "__name__", None) or getattr(
        getattr(metric, "func", None), "__name__", type(metric).__name__
    )


def _check(metric, n_resamples, confidence, caller):
    if not callable(metric):
        raise TypeError(
            f"metric must be a callable metric(y_true, y_prob) returning a float, such as "
            f"distcal.metrics.expected_calibration_error; got a {type(metric).__name__}."
        )
    check_param(confidence, Interval(numbers.Real, 0, 1, closed="neither"), "confidence", caller)
    return check_resamples(n_resamples, confidence, caller)


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


def _finite(value: float, metric, where: str) -> float:
    """``value`` if finite; else the error a bootstrap of it owes the user."""
    if np.isfinite(value):
        return value
    what = "NaN" if np.isnan(value) else f"{value}"
    raise ValueError(
        f"metric {_name(metric)} returned {what} {where}; a bootstrap interval of non-finite "
        "values is undefined. Check the metric's inputs (a zero probability on a true class "
        "makes the NLL inf; a NaN probability, or a resample where the metric is undefined, "
        "such as one class only for a ranking metric, gives NaN)."
    )


def _check_resampled(values: np.ndarray, metric, label: str = "") -> None:
    """Raise the error of :func:`_finite` if some resamples gave a non-finite value."""
    bad = ~np.isfinite(values)
    if bad.any():
        first = values[bad][0]
        what = "NaN" if np.isnan(first) else f"{first}"
        raise ValueError(
            f"metric {_name(metric)} returned {what}{label} on {int(bad.sum())} of "
            f"{len(values)} resamples; a bootstrap interval of non-finite values is undefined. "
            "Check the metric's inputs (a NaN probability, or a resample where the metric is "
            "undefined, such as one class only for a ranking metric)."
        )


def _score_resamples(scorers, n_samples, n_resamples, random_state, verbose, desc):
    """Score each scorer on the same resamples; return one float64 array per scorer."""
    width = max(getattr(score, "width", 1) for score in scorers)
    parts = [[] for _ in scorers]
    batches = resample_rows(
        n_samples, n_resamples, random_state, width=width, verbose=verbose, desc=desc
    )
    for rows in batches:
        for part, score in zip(parts, scorers, strict=True):
            part.append(np.asarray(score(rows), dtype=np.float64))
    return [np.concatenate(part) for part in parts]


def _interval(values: np.ndarray, estimate: float, confidence: float) -> Bunch:
    alpha = (1 - confidence) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha])
    return Bunch(
        estimate=float(estimate),
        low=float(low),
        high=float(high),
        std=float(values.std(ddof=1)),
        confidence=float(confidence),
        resamples=values,
    )


def bootstrap_ci(
    metric,
    y_true,
    y_prob,
    *,
    n_resamples=1000,
    confidence=0.95,
    random_state=None,
    verbose=False,
) -> Bunch:
    """Percentile bootstrap confidence interval of ``metric(y_true, y_prob)``.

    The samples are drawn with replacement ``n_resamples`` times and the metric computed on
    each resample; the interval holds the central ``confidence`` share of those values. It is
    an interval of what the metric computes on ``n_samples`` samples: for a biased statistic,
    such as the plug-in binned calibration error of a well calibrated model, it sits above the
    truth (resampling adds the bias a second time) and can exclude the estimate itself. For the
    calibration error, :func:`debiased_calibration_error_ci` gives an interval whose coverage
    of the true error was measured.

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_prob) -> float``, such as
        :func:`~distcal.metrics.expected_calibration_error` (use :func:`with_options` to set
        its options). A metric that declares a resampler (:func:`declare_resampler`), as
        distcal's binned calibration errors, NLL and Brier score do, reduces the rows once
        and scores every resample from the reduction, with the same numbers; any other
        metric (a ``functools.partial`` too: it hides the declaration) is called on each
        resample.
    y_true : array-like or Tensor of shape (n_samples,)
        Labels.
    y_prob : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Probabilities.
    n_resamples : int, default=1000
        Bootstrap resamples, at least ``1 / (1 - confidence)`` (20 at 95%, so that some lie
        beyond the interval) and at most 100,000.
    confidence : float, default=0.95
        Coverage of the interval, in (0, 1).
    random_state : int, RandomState instance or None, default=None
        Seeds the resampling.
    verbose : bool, default=False
        Show a progress bar of the resamples.

    Returns
    -------
    Bunch
        ``estimate`` (the metric on all the data), ``low`` and ``high`` (the interval),
        ``std`` (the bootstrap standard error), ``confidence`` and ``resamples`` (the metric on
        each resample).

    Raises
    ------
    ValueError
        If the metric returns NaN or an infinity, on the data or on a resample: an interval of
        such values is undefined.

    See Also
    --------
    bootstrap_difference : The paired interval of the difference of two calibrators.
    debiased_calibration_error_ci : The calibration error with an interval that covers.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import bootstrap_ci, negative_log_likelihood
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(size=2000)
    >>> y = (rng.uniform(size=2000) < p).astype(int)  # calibrated by construction
    >>> ci = bootstrap_ci(negative_log_likelihood, y, p, n_resamples=200, random_state=0)
    >>> ci.low <= ci.estimate <= ci.high
    True
    """
    n_resamples = _check(metric, n_resamples, confidence, "bootstrap_ci")
    y, (proba,) = _as_arrays(y_true, y_prob)
    estimate = _finite(float(metric(y, proba)), metric, "on the full data")
    (values,) = _score_resamples(
        [resampled_scorer(metric, y, proba)],
        len(y),
        n_resamples,
        random_state,
        verbose,
        f"bootstrap {_name(metric)}",
    )
    _check_resampled(values, metric)
    return _interval(values, estimate, confidence)


def bootstrap_difference(
    metric,
    y_true,
    y_prob_a,
    y_prob_b,
    *,
    n_resamples=1000,
    confidence=0.95,
    random_state=None,
    verbose=False,
) -> Bunch:
    """Paired bootstrap interval of ``metric(y, a) - metric(y, b)`` on the same samples.

    Both calibrators are scored on each resample, so the interval of the difference accounts
    for what they share; when it excludes 0, the two differ at that confidence. Like
    :func:`bootstrap_ci`, it is a percentile interval of what the metric computes; for the
    calibration error, :func:`debiased_calibration_error_difference` is the one whose coverage
    was measured.

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_prob) -> float``.
    y_true : array-like or Tensor of shape (n_samples,)
        Labels.
    y_prob_a, y_prob_b : array-like or Tensor of shape (n_samples, n_classes)
        The probabilities of the two calibrators on the same samples.
    n_resamples : int, default=1000
        Bootstrap resamples, at least ``1 / (1 - confidence)`` and at most 100,000.
    confidence : float, default=0.95
        Coverage of the interval, in (0, 1).
    random_state : int, RandomState instance or None, default=None
        Seeds the resampling.
    verbose : bool, default=False
        Show a progress bar of the resamples.

    Returns
    -------
    Bunch
        As :func:`bootstrap_ci`, for the difference, plus ``excludes_zero``.

    Raises
    ------
    ValueError
        If the metric returns NaN or an infinity for either calibrator, on the data or on a
        resample (the difference of two infinite losses is undefined).

    See Also
    --------
    bootstrap_ci : The interval of one metric.

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
    n_resamples = _check(metric, n_resamples, confidence, "bootstrap_difference")
    y, (a, b) = _as_arrays(y_true, y_prob_a, y_prob_b)
    if a.shape != b.shape:
        raise ValueError(
            f"y_prob_a and y_prob_b must have the same shape; got {a.shape} and {b.shape}."
        )
    estimate_a = _finite(float(metric(y, a)), metric, "for y_prob_a on the full data")
    estimate_b = _finite(float(metric(y, b)), metric, "for y_prob_b on the full data")
    values_a, values_b = _score_resamples(
        [resampled_scorer(metric, y, a), resampled_scorer(metric, y, b)],
        len(y),
        n_resamples,
        random_state,
        verbose,
        f"bootstrap difference of {_name(metric)}",
    )
    _check_resampled(values_a, metric, " for y_prob_a")
    _check_resampled(values_b, metric, " for y_prob_b")
    result = _interval(values_a - values_b, estimate_a - estimate_b, confidence)
    result.excludes_zero = bool(result.low > 0 or result.high < 0)
    return result
