"""The binned calibration errors and their curve, in scikit-learn's style: floats out.

``calibration_error`` and its named cases (ECE, MCE, adaptive, classwise) and
``calibration_curve`` take ``(y_true, y_prob)`` and call the statistics of
:mod:`distcal.metrics._binned`, as :mod:`distcal.metrics.functional` does, so both layers give
the same numbers. Each error declares its resampler (:func:`declare_resampler`): the bootstrap
reduces the rows once and bins every resample from the reduction.
"""

from __future__ import annotations

from sklearn.utils import Bunch

from .._device import to_numpy
from ._binned import _calibration_batch_resampler, _calibration_curve, _calibration_error
from ._inputs import _NAMES
from ._resampling import declare_resampler

__all__ = [
    "adaptive_calibration_error",
    "calibration_curve",
    "calibration_error",
    "classwise_calibration_error",
    "expected_calibration_error",
    "maximum_calibration_error",
]


def _binned_scorer(caller, y_true, y_prob, sample_weight, **options):
    """Return the batch scorer of a binned error, or None for fixed weights (not rows)."""
    if sample_weight is not None:
        return None
    return _calibration_batch_resampler(y_prob, y_true, caller=caller, **options, **_NAMES)


# Each error's resampler takes that error's options, with its defaults, and fixes the rest.
def _calibration_error_resampler(
    y_true,
    y_prob,
    *,
    n_bins=15,
    norm="l1",
    strategy="uniform",
    kind="top-label",
    sample_weight=None,
):
    options = {"n_bins": n_bins, "norm": norm, "strategy": strategy, "kind": kind}
    return _binned_scorer("calibration_error", y_true, y_prob, sample_weight, **options)


def _expected_calibration_error_resampler(
    y_true, y_prob, *, n_bins=15, norm="l1", strategy="uniform", sample_weight=None
):
    options = {"n_bins": n_bins, "norm": norm, "strategy": strategy, "kind": "top-label"}
    return _binned_scorer("expected_calibration_error", y_true, y_prob, sample_weight, **options)


def _maximum_calibration_error_resampler(
    y_true, y_prob, *, n_bins=15, strategy="uniform", kind="top-label", sample_weight=None
):
    options = {"n_bins": n_bins, "norm": "max", "strategy": strategy, "kind": kind}
    return _binned_scorer("maximum_calibration_error", y_true, y_prob, sample_weight, **options)


def _adaptive_calibration_error_resampler(
    y_true, y_prob, *, n_bins=15, norm="l1", kind="top-label", sample_weight=None
):
    options = {"n_bins": n_bins, "norm": norm, "strategy": "quantile", "kind": kind}
    return _binned_scorer("adaptive_calibration_error", y_true, y_prob, sample_weight, **options)


def _classwise_calibration_error_resampler(
    y_true, y_prob, *, n_bins=15, norm="l1", strategy="uniform", sample_weight=None
):
    options = {"n_bins": n_bins, "norm": norm, "strategy": strategy, "kind": "classwise"}
    return _binned_scorer("classwise_calibration_error", y_true, y_prob, sample_weight, **options)


@declare_resampler(_calibration_error_resampler)
def calibration_error(
    y_true,
    y_prob,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    strategy: str = "uniform",
    kind: str = "top-label",
    sample_weight=None,
) -> float:
    """Binned calibration error of predicted probabilities (ECE, MCE, RMS-CE, classwise).

    The confidences are split into ``n_bins`` bins; in each bin the weighted mean confidence
    is compared with the weighted frequency of the event it predicts, and the gaps are
    combined according to ``norm``. Read more in
    :func:`distcal.metrics.functional.calibration_error`.

    Parameters
    ----------
    y_true : array-like or Tensor of shape (n_samples,)
        Class labels: integers in ``[0, n_classes)``, the column index of each sample's class.
    y_prob : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities (not logits): values in [0, 1], rows summing to 1. 1-D input
        (or a single column) is the probability of class 1 of a binary problem, which is what
        scikit-learn's scorers pass for binary problems.
    n_bins : int, default=15
        Number of bins.
    norm : {"l1", "l2", "max"}, default="l1"
        ``"l1"``: expected calibration error ``sum_b (w_b / W) |acc_b - conf_b|``; ``"l2"``:
        root-mean-square error; ``"max"``: the largest gap over non-empty bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width bins over [0, 1], or equal-mass bins (weighted quantiles).
    kind : {"top-label", "classwise"}, default="top-label"
        ``"top-label"``: the confidence is the largest probability and the event is a correct
        prediction. ``"classwise"``: the mean over classes ``k`` of the error of ``p_k`` as a
        prediction of ``y_true == k``.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : float
        The calibration error, in [0, 1].

    See Also
    --------
    expected_calibration_error : This function with ``kind="top-label"``.
    maximum_calibration_error : This function with ``norm="max"``.
    adaptive_calibration_error : This function with ``strategy="quantile"``.
    classwise_calibration_error : This function with ``kind="classwise"``.
    calibration_curve : The per-bin values behind the error.

    Notes
    -----
    Bins are ``[edges[i], edges[i + 1])``, the last one closed, so confidences of exactly 0 and
    1 fall in the first and last bins. Empty bins contribute nothing. A bin holding a single
    sample of confidence ``c`` contributes ``(1 - c) / n`` to the L1 error if the prediction is
    right and ``c / n`` if it is wrong (``n`` samples, no weights), so sparse bins inflate the
    estimate.

    References
    ----------
    .. [1] C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On calibration of modern neural
       networks", ICML 2017.
    .. [2] M. Kull, M. Perello-Nieto, M. Kängsepp, T. Silva Filho, H. Song and P. Flach,
       "Beyond temperature scaling: obtaining well-calibrated multi-class probabilities with
       Dirichlet calibration", NeurIPS 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import calibration_error
    >>> y_true = np.array([0, 1, 1, 0])
    >>> y_prob = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> calibration_error(y_true, y_prob, n_bins=4)
    0.25
    >>> calibration_error(y_true, y_prob, n_bins=4, kind="classwise")
    0.45
    """
    return float(
        _calibration_error(
            y_prob,
            y_true,
            n_bins=n_bins,
            norm=norm,
            strategy=strategy,
            kind=kind,
            sample_weight=sample_weight,
            caller="calibration_error",
            **_NAMES,
        )
    )


@declare_resampler(_expected_calibration_error_resampler)
def expected_calibration_error(
    y_true,
    y_prob,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    strategy: str = "uniform",
    sample_weight=None,
) -> float:
    """Top-label expected calibration error (ECE).

    :func:`calibration_error` with ``kind="top-label"``: the confidence of each sample is its
    largest probability and the event is that the predicted class is the label.

    Parameters
    ----------
    y_true : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    y_prob : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    n_bins : int, default=15
        Number of bins.
    norm : {"l1", "l2", "max"}, default="l1"
        How the per-bin gaps are combined.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : float
        The expected calibration error, in [0, 1]. Multiply by 100 for percent.

    See Also
    --------
    calibration_error : The general binned calibration error.

    Notes
    -----
    A bin with a single sample of confidence ``c`` contributes ``(1 - c) / n`` if the
    prediction is right and ``c / n`` if it is wrong (``n`` samples, no weights).

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import expected_calibration_error
    >>> y_true = np.array([0, 1, 1, 0])
    >>> y_prob = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> expected_calibration_error(y_true, y_prob, n_bins=4)
    0.25

    Binary problems can pass the probability of class 1 alone:

    >>> expected_calibration_error(y_true, y_prob[:, 1], n_bins=4)
    0.25
    """
    return float(
        _calibration_error(
            y_prob,
            y_true,
            n_bins=n_bins,
            norm=norm,
            strategy=strategy,
            kind="top-label",
            sample_weight=sample_weight,
            caller="expected_calibration_error",
            **_NAMES,
        )
    )


@declare_resampler(_maximum_calibration_error_resampler)
def maximum_calibration_error(
    y_true,
    y_prob,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    kind: str = "top-label",
    sample_weight=None,
) -> float:
    """Maximum calibration error (MCE): the largest gap between accuracy and confidence.

    :func:`calibration_error` with ``norm="max"``.

    Parameters
    ----------
    y_true : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    y_prob : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    n_bins : int, default=15
        Number of bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    kind : {"top-label", "classwise"}, default="top-label"
        Which confidences are binned; classwise gives the mean over classes of their MCE.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : float
        The maximum calibration error, in [0, 1].

    See Also
    --------
    calibration_error : The general binned calibration error.

    Notes
    -----
    Every non-empty bin counts whatever its weight, so a bin with a single sample of confidence
    ``c`` can set the MCE to ``1 - c`` or ``c`` on its own.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import maximum_calibration_error
    >>> y_true = np.array([0, 1, 1, 0])
    >>> y_prob = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> maximum_calibration_error(y_true, y_prob, n_bins=4)
    0.35
    """
    return float(
        _calibration_error(
            y_prob,
            y_true,
            n_bins=n_bins,
            norm="max",
            strategy=strategy,
            kind=kind,
            sample_weight=sample_weight,
            caller="maximum_calibration_error",
            **_NAMES,
        )
    )


@declare_resampler(_adaptive_calibration_error_resampler)
def adaptive_calibration_error(
    y_true,
    y_prob,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    kind: str = "top-label",
    sample_weight=None,
) -> float:
    """Adaptive calibration error: the calibration error over equal-mass bins.

    :func:`calibration_error` with ``strategy="quantile"``. The default is the top-label
    adaptive ECE of Mukhoti et al. (2020); ``kind="classwise"`` gives the ACE of Nixon et al.
    (2019), with equal-mass bins per class.

    Parameters
    ----------
    y_true : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    y_prob : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    n_bins : int, default=15
        Number of bins.
    norm : {"l1", "l2", "max"}, default="l1"
        How the per-bin gaps are combined.
    kind : {"top-label", "classwise"}, default="top-label"
        Which confidences are binned.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights; the bins hold equal weight.

    Returns
    -------
    error : float
        The adaptive calibration error, in [0, 1].

    See Also
    --------
    calibration_error : The general binned calibration error.

    Notes
    -----
    Equal confidences always share a bin, so the bins are only roughly equal in mass when many
    confidences coincide; several edges may then coincide and leave empty bins.

    References
    ----------
    .. [1] J. Mukhoti, V. Kulharia, A. Sanyal, S. Golodetz, P. Torr and P. Dokania,
       "Calibrating deep neural networks using focal loss", NeurIPS 2020.
    .. [2] J. Nixon, M. Dusenberry, L. Zhang, G. Jerfel and D. Tran, "Measuring calibration in
       deep learning", CVPR Workshops 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import adaptive_calibration_error
    >>> y_true = np.array([0, 1, 1, 0])
    >>> y_prob = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> adaptive_calibration_error(y_true, y_prob, n_bins=2)
    0.25
    """
    return float(
        _calibration_error(
            y_prob,
            y_true,
            n_bins=n_bins,
            norm=norm,
            strategy="quantile",
            kind=kind,
            sample_weight=sample_weight,
            caller="adaptive_calibration_error",
            **_NAMES,
        )
    )


@declare_resampler(_classwise_calibration_error_resampler)
def classwise_calibration_error(
    y_true,
    y_prob,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    strategy: str = "uniform",
    sample_weight=None,
) -> float:
    """Classwise expected calibration error: the mean over classes of each class's ECE.

    :func:`calibration_error` with ``kind="classwise"`` (Kull et al., 2019).

    Parameters
    ----------
    y_true : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    y_prob : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    n_bins : int, default=15
        Number of bins.
    norm : {"l1", "l2", "max"}, default="l1"
        How the per-bin gaps of each class are combined.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width bins, or equal-mass bins computed per class.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : float
        The classwise calibration error, in [0, 1].

    See Also
    --------
    calibration_error : The general binned calibration error.

    References
    ----------
    .. [1] M. Kull, M. Perello-Nieto, M. Kängsepp, T. Silva Filho, H. Song and P. Flach,
       "Beyond temperature scaling: obtaining well-calibrated multi-class probabilities with
       Dirichlet calibration", NeurIPS 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import classwise_calibration_error
    >>> y_true = np.array([0, 1, 1, 0])
    >>> y_prob = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> classwise_calibration_error(y_true, y_prob, n_bins=4)
    0.45
    """
    return float(
        _calibration_error(
            y_prob,
            y_true,
            n_bins=n_bins,
            norm=norm,
            strategy=strategy,
            kind="classwise",
            sample_weight=sample_weight,
            caller="classwise_calibration_error",
            **_NAMES,
        )
    )


def calibration_curve(
    y_true,
    y_prob,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    kind: str = "top-label",
    sample_weight=None,
) -> Bunch:
    """Per-bin accuracy and mean confidence: the data of a reliability diagram.

    The bins are those of :func:`calibration_error` with the same options.

    Parameters
    ----------
    y_true : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    y_prob : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    n_bins : int, default=15
        Number of bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    kind : {"top-label", "classwise"}, default="top-label"
        Top-label gives one curve; classwise one curve per class (one row each).
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    curve : :class:`~sklearn.utils.Bunch`
        Float64 numpy arrays:

        bin_edges : ndarray of shape (n_bins + 1,)
            The bin edges (shape (n_classes, n_bins + 1) for classwise quantile bins).
        counts : ndarray of shape (n_bins,)
            The weight in each bin (the number of samples without weights).
        mean_confidence : ndarray of shape (n_bins,)
            The weighted mean confidence in each bin.
        accuracy : ndarray of shape (n_bins,)
            The weighted frequency of correct predictions (classwise: of the class).

        Classwise curves have shape (n_classes, n_bins). ``mean_confidence`` and ``accuracy``
        are NaN in empty bins.

    See Also
    --------
    sklearn.calibration.calibration_curve : The binary version, which drops empty bins.
    distcal.plotting.reliability_diagram : Draws this curve.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import calibration_curve
    >>> y_prob = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> curve = calibration_curve([0, 1, 1, 0], y_prob, n_bins=4)
    >>> curve.counts
    array([0., 0., 2., 2.])
    >>> curve.accuracy
    array([nan, nan, 0.5, 0.5])
    >>> curve.mean_confidence
    array([ nan,  nan, 0.65, 0.85])
    """
    curve = _calibration_curve(
        y_prob,
        y_true,
        n_bins=n_bins,
        strategy=strategy,
        kind=kind,
        sample_weight=sample_weight,
        caller="calibration_curve",
        **_NAMES,
    )
    return Bunch(**{key: to_numpy(value) for key, value in curve.items()})
