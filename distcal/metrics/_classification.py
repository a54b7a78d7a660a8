"""Calibration metrics in scikit-learn's style: ``(y_true, y_prob)`` in, a Python float out.

These functions accept numpy arrays, lists or tensors (on any device) and call the private
implementations of :mod:`distcal.metrics.functional`, so both layers give the same numbers.
"""

from __future__ import annotations

from sklearn.utils import Bunch

from .._device import to_numpy
from . import functional as F
from ._resampling import declare_resampler

__all__ = [
    "adaptive_calibration_error",
    "brier_score",
    "calibration_curve",
    "calibration_error",
    "classwise_calibration_error",
    "debiased_calibration_error",
    "expected_calibration_error",
    "ks_calibration_error",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "smooth_calibration_error",
]

_NAMES = {"preds_name": "y_prob", "target_name": "y_true"}


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
        F._calibration_error(
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
        F._calibration_error(
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
        F._calibration_error(
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
        F._calibration_error(
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
        F._calibration_error(
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


def _declare_binned(metric, **fixed) -> None:
    """Declare the resampler of a binned calibration error (see ``declare_resampler``).

    The options a ``functools.partial`` of ``metric`` fixes are those of its signature
    (``metric.__kwdefaults__``, read once here); ``fixed`` are the ones the metric sets itself
    (``kind="top-label"`` for the ECE). Fixed sample weights are declined: they are not rows
    of the data, so the bootstrap calls the metric with them on each resample.
    """
    defaults = dict(metric.__kwdefaults__)

    def resampler(y_true, y_prob, **options):
        if not set(options) <= set(defaults) or options.get("sample_weight") is not None:
            return None
        chosen = {**defaults, **options, **fixed}
        del chosen["sample_weight"]
        return F._calibration_batch_resampler(
            y_prob, y_true, caller=metric.__name__, **chosen, **_NAMES
        )

    declare_resampler(resampler)(metric)


def _declare_mean(metric, kind: str) -> None:
    """Declare the resampler of a mean of per-row losses (NLL, Brier), without weights."""

    def resampler(y_true, y_prob, *, sample_weight=None):
        if sample_weight is not None:
            return None
        return F._mean_resampler(y_prob, y_true, kind=kind, **_NAMES)

    declare_resampler(resampler)(metric)


_declare_binned(calibration_error)
_declare_binned(expected_calibration_error, kind="top-label")
_declare_binned(maximum_calibration_error, norm="max")
_declare_binned(adaptive_calibration_error, strategy="quantile")
_declare_binned(classwise_calibration_error, kind="classwise")


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
        F._debiased_calibration_error(
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
        F._smooth_calibration_error(
            y_prob, y_true, sample_weight=sample_weight, caller="smooth_calibration_error", **_NAMES
        )
    )


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
        F._ks_calibration_error(
            y_prob,
            y_true,
            kind=kind,
            sample_weight=sample_weight,
            caller="ks_calibration_error",
            **_NAMES,
        )
    )


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
    return float(F._negative_log_likelihood(y_prob, y_true, sample_weight, **_NAMES))


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
    return float(F._brier_score(y_prob, y_true, sample_weight, **_NAMES))


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
    curve = F._calibration_curve(
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


_declare_mean(negative_log_likelihood, "nll")
_declare_mean(brier_score, "brier")
