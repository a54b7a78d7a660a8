"""Resampling shared by the bootstrap and the calibration tests: row draws, bounds, fast paths.

A metric takes the fast path of a resampling method when it declares a *resampler*
(:func:`declare_resampler`): a function that validates the data and reduces its rows once, and
returns ``score(rows)``, the metric of a batch of resamples. The declaration is the only way:
nothing is guessed from a metric's signature or from a ``functools.partial``, and a metric
without a declaration is called on each resample. :func:`with_options` fixes a metric's
options and keeps its declaration.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np
from sklearn.utils import check_random_state

from .._params import Interval
from .._progress import counter
from ..exceptions import InvalidParameterError

__all__ = ["declare_resampler", "with_options"]

#: The most resamples any resampling method draws. Each resample is a row of n_samples indices
#: while it is scored and a float afterwards; 1e5 resamples put the Monte-Carlo error of a 95%
#: percentile far below any sampling error, and 1e8 of them asked for 149 GiB (issue 22).
MAX_RESAMPLES = 100_000

#: Row indices drawn at once: a batch of resamples holds this many indices at most (32 MiB).
_BATCH_ELEMENTS = 2**22


def declare_resampler(resampler):
    """Declare the fast resampling path of a metric (a decorator).

    :func:`~distcal.metrics.bootstrap_ci` and :func:`~distcal.metrics.bootstrap_difference`
    call a metric once per resample, on copies of the resampled rows. A metric that can do
    better declares a *resampler*: ``resampler(y_true, y_prob, **options)`` validates the data
    and reduces each row once (to a loss, a confidence, a bin), and returns ``score(rows)``, the
    metric on each of a batch of resamples; ``options`` are the keyword arguments that
    :func:`with_options` fixes. It returns None to decline (an option it does not resample,
    such as fixed sample weights), and the metric is called as usual. The declaration is the
    only way to the fast path: nothing is read from a metric's signature, and a
    ``functools.partial`` of a metric is called on each resample (:func:`with_options` keeps
    the declaration).

    Parameters
    ----------
    resampler : callable
        ``resampler(y_true, y_prob, **options) -> score or None``, where ``score(rows)`` takes
        an int64 array of shape (n_resamples, n_samples) of row indices and returns a float64
        array of shape (n_resamples,): the metric on ``y_true[r], y_prob[r]`` for each row
        ``r`` of ``rows``. The declaration promises the same numbers as calling the metric;
        distcal's own resamplers give them bit for bit (``tests/metrics/test_bootstrap.py``).

    Returns
    -------
    decorator : callable
        Sets ``metric.resampler`` and returns the metric unchanged.

    See Also
    --------
    bootstrap_ci : Uses the declaration.
    with_options : Fixes a metric's options and keeps its declaration.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import bootstrap_ci, declare_resampler
    >>> def mean_confidence_resampler(y_true, y_prob):
    ...     confidence = np.asarray(y_prob).max(axis=1)  # reduced once
    ...     return lambda rows: confidence[rows].mean(axis=1)
    >>> @declare_resampler(mean_confidence_resampler)
    ... def mean_confidence(y_true, y_prob):
    ...     return float(np.asarray(y_prob).max(axis=1).mean())
    >>> y_prob = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> ci = bootstrap_ci(mean_confidence, [0, 1, 1, 0], y_prob, n_resamples=100,
    ...                   random_state=0)
    >>> round(ci.estimate, 3)
    0.75
    """
    if not callable(resampler):
        raise TypeError(
            "The 'resampler' parameter of declare_resampler must be a callable "
            f"resampler(y_true, y_prob, **options). Got {resampler!r} instead."
        )

    def decorate(metric):
        metric.resampler = resampler
        return metric

    return decorate


class _WithOptions:
    """``metric`` with keyword options fixed, carrying its declared resampler along."""

    def __init__(self, metric, options):
        self.metric, self.options = metric, options
        self.__name__ = getattr(metric, "__name__", type(metric).__name__)
        declared = getattr(metric, "resampler", None)
        if declared is not None:
            self.resampler = functools.partial(declared, **options)

    def __call__(self, y_true, y_prob):
        return self.metric(y_true, y_prob, **self.options)

    def __repr__(self):
        options = ", ".join(f"{key}={value!r}" for key, value in self.options.items())
        return f"with_options({self.__name__}, {options})"


def with_options(metric, **options):
    """Fix keyword options of a metric, keeping its declared resampler.

    ``with_options(expected_calibration_error, n_bins=10)`` is the metric
    ``(y_true, y_prob) -> expected_calibration_error(y_true, y_prob, n_bins=10)``, as
    ``functools.partial`` would make it, and it declares the metric's resampler with the same
    options, so :func:`bootstrap_ci` still reduces the rows once (a ``functools.partial``
    hides the declaration, and is called on each resample, with the same numbers).

    Parameters
    ----------
    metric : callable
        ``metric(y_true, y_prob, **options) -> float``, with or without a declared resampler
        (:func:`declare_resampler`).
    **options
        Keyword arguments of ``metric``; they are handed to its resampler too.

    Returns
    -------
    bound : callable
        ``bound(y_true, y_prob)``, named as ``metric``; it has a ``resampler`` exactly when
        ``metric`` declares one.

    Raises
    ------
    TypeError
        If ``metric`` is not callable.

    See Also
    --------
    declare_resampler : Declares the resampler that this keeps.
    bootstrap_ci : Uses it.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import bootstrap_ci, expected_calibration_error, with_options
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(size=500)
    >>> y = (rng.uniform(size=500) < p).astype(int)
    >>> ece10 = with_options(expected_calibration_error, n_bins=10)
    >>> ece10
    with_options(expected_calibration_error, n_bins=10)
    >>> ece10(y, p) == expected_calibration_error(y, p, n_bins=10)
    True
    >>> ci = bootstrap_ci(ece10, y, p, n_resamples=100, random_state=0)
    >>> ci.low <= ci.high
    True
    """
    if not callable(metric):
        raise TypeError(
            "The 'metric' parameter of with_options must be a callable "
            f"metric(y_true, y_prob, **options). Got {metric!r} instead."
        )
    return _WithOptions(metric, options)


def resampled_scorer(metric, y_true, y_prob):
    """``score(rows)`` of ``metric``: its declared resampler, or the metric on each resample.

    The declaration (``metric.resampler``, set by :func:`declare_resampler` or kept by
    :func:`with_options`) is the only way to the fast path. A resampler that declines (returns
    None) leaves the metric to be called per resample.
    """
    resampler = getattr(metric, "resampler", None)
    if resampler is not None:
        score = resampler(y_true, y_prob)
        if score is not None:
            return score

    def score(rows):
        return np.array([metric(y_true[r], y_prob[r]) for r in rows], dtype=np.float64)

    return score


def check_resamples(n_resamples, confidence, caller: str) -> int:
    """Validate ``n_resamples`` for an interval of level ``confidence``; return it as an int.

    An interval leaves ``1 - confidence`` of the resamples outside it, so fewer than
    ``1 / (1 - confidence)`` resamples (20 at 95%) leave none there: the "interval" is then the
    range of a handful of values, which can exclude the estimate (``--n-resamples 1`` printed a
    single resample as the interval).
    """
    least = math.ceil(round(1 / (1 - confidence), 9))
    constraint = Interval(numbers.Integral, least, MAX_RESAMPLES, closed="both")
    if not constraint.is_satisfied_by(n_resamples):
        raise InvalidParameterError(
            f"The 'n_resamples' parameter of {caller} must be {constraint} (at least "
            f"1 / (1 - confidence) = {least} for confidence={confidence}, so that some "
            f"resamples lie beyond the interval). Got {n_resamples!r} instead."
        )
    return int(n_resamples)


def resample_rows(n_samples, n_resamples, random_state, *, width=1, verbose=False, desc=None):
    """Yield the row indices of ``n_resamples`` resamples in batches, with a progress bar.

    The batches are consecutive draws of one ``RandomState``, so they are the rows of
    ``randint(0, n_samples, size=(n_resamples, n_samples))`` drawn at once, whatever the batch
    size; a batch holds at most ``_BATCH_ELEMENTS / width`` indices (``width``: the values per
    row that scoring a resample touches), so memory stays flat for any ``n_resamples``.
    """
    rng = check_random_state(random_state)
    batch = max(1, _BATCH_ELEMENTS // max(1, n_samples * width))
    with counter(n_resamples, enabled=verbose, desc=desc, unit="resample") as bar:
        for start in range(0, n_resamples, batch):
            size = min(batch, n_resamples - start)
            yield rng.randint(0, n_samples, size=(size, n_samples))
            bar.update(size)
