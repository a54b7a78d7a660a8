"""Calibration metrics on tensors: probabilities in, a 0-d float64 tensor out.

Every function takes ``preds`` (probabilities, never logits) and ``target`` (integer labels that
index the columns of ``preds``) and returns its result on the device of ``preds``. Each metric is
written as ``_check`` (validation) -> ``_update`` (sufficient statistics) -> ``_compute`` (the
value from the statistics), so that statistics of several batches or processes can be summed
before one final ``_compute``. Binned metrics use the single kernel of :mod:`distcal._binning`.

This module is the tensor front end: the statistics live in one private module per kind
(``_binned``, ``_debiased``, ``_smooth``, ``_ks``, ``_proper``; inputs in ``_inputs``), and
the scikit-learn style functions of :mod:`distcal.metrics` (``y_true, y_prob`` order, Python
floats) call the same ones; there is one implementation.
"""

from __future__ import annotations

import torch
from sklearn.utils import Bunch

from ._binned import _calibration_curve, _calibration_error

# For distcal's own packages (the reliability diagram), not for users: not in __all__.
from ._binned import binned_reliability as binned_reliability
from ._debiased import _debiased_calibration_error
from ._ks import _ks_calibration_error
from ._proper import _brier_score, _negative_log_likelihood
from ._smooth import _smooth_calibration_error

__all__ = [
    "adaptive_calibration_error",
    "brier_score",
    "calibration_curve",
    "calibration_error",
    "classwise_calibration_error",
    "debiased_calibration_error",
    "expected_calibration_error",
    "ks_calibration_error",
    "masking_spread_ratio",
    "max_logit_concentration",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "smooth_calibration_error",
]


def calibration_error(
    preds,
    target,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    strategy: str = "uniform",
    kind: str = "top-label",
    sample_weight=None,
) -> torch.Tensor:
    r"""Binned calibration error of predicted probabilities (ECE, MCE, RMS-CE, classwise).

    The confidences are split into ``n_bins`` bins; in each bin ``b`` the weighted mean
    confidence ``conf_b`` is compared with the weighted frequency ``acc_b`` of the event the
    confidence predicts, and the gaps are combined according to ``norm``.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities (not logits): values in [0, 1], rows summing to 1. 1-D input
        (or a single column) is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels: integers in ``[0, n_classes)``, the column index of each sample's class.
    n_bins : int, default=15
        Number of bins.
    norm : {"l1", "l2", "max"}, default="l1"
        ``"l1"``: the expected calibration error ``sum_b (w_b / W) |acc_b - conf_b|``.
        ``"l2"``: the root-mean-square error ``sqrt(sum_b (w_b / W) (acc_b - conf_b)^2)``.
        ``"max"``: the maximum calibration error ``max_b |acc_b - conf_b|`` over non-empty bins.
        Here ``w_b`` is the weight in bin ``b`` and ``W`` the total weight.
    strategy : {"uniform", "quantile"}, default="uniform"
        ``"uniform"``: equal-width bins over [0, 1]. ``"quantile"``: equal-mass bins whose edges
        are weighted quantiles of the confidences (adaptive calibration error); with
        ``kind="classwise"`` each class gets its own edges.
    kind : {"top-label", "classwise"}, default="top-label"
        ``"top-label"``: the confidence is the largest probability of each row and the event is
        that its class (the first one, on ties, as ``argmax``) is the label. ``"classwise"``:
        for every class ``k`` the confidence is ``p_k`` and the event ``target == k``; the
        calibration error of each class is computed and the errors are aggregated as their
        power mean (Kull et al., 2019; Kumar et al., 2019): the mean for ``"l1"`` and
        ``"max"``, the root of the mean square for ``"l2"``, the definition that
        :func:`debiased_calibration_error` and the authors' package use.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights. An integer weight counts as that many copies of the sample
        and a zero weight removes it.

    Returns
    -------
    error : Tensor of shape ()
        The calibration error, in [0, 1], as float64 on the device of ``preds``.

    See Also
    --------
    expected_calibration_error : This function with ``kind="top-label"``.
    maximum_calibration_error : This function with ``norm="max"``.
    adaptive_calibration_error : This function with ``strategy="quantile"``.
    classwise_calibration_error : This function with ``kind="classwise"``.
    distcal.metrics.calibration_error : The scikit-learn style version returning a float.
    calibration_curve : The per-bin accuracies and confidences behind the error.

    Notes
    -----
    Bin ``i`` holds the confidences in ``[edges[i], edges[i + 1])``, the last bin also 1.0, so a
    confidence of exactly 0 or 1 falls in the first or last bin. Empty bins contribute nothing.
    A bin holding a single sample of confidence ``c`` and weight ``w`` contributes
    ``(w / W) * (1 - c)`` to the L1 error if the event happened and ``(w / W) * c`` if not; its
    gap alone sets the maximum error when it is the largest. Bins with few samples therefore
    inflate the estimate: a perfectly calibrated model has a positive expected error on finite
    data, the more so the more bins there are per sample.

    All statistics are accumulated in float64 whatever the dtype of ``preds``, so float16,
    bfloat16 and float32 inputs give the float64 result for their values.

    References
    ----------
    .. [1] M. P. Naeini, G. Cooper and M. Hauskrecht, "Obtaining well calibrated probabilities
       using Bayesian binning", AAAI 2015.
    .. [2] C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On calibration of modern neural
       networks", ICML 2017.
    .. [3] M. Kull, M. Perello-Nieto, M. Kängsepp, T. Silva Filho, H. Song and P. Flach,
       "Beyond temperature scaling: obtaining well-calibrated multi-class probabilities with
       Dirichlet calibration", NeurIPS 2019.
    .. [4] J. Nixon, M. Dusenberry, L. Zhang, G. Jerfel and D. Tran, "Measuring calibration in
       deep learning", CVPR Workshops 2019.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import calibration_error
    >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> target = torch.tensor([0, 1, 1, 0])
    >>> calibration_error(preds, target, n_bins=4)
    tensor(0.2500, dtype=torch.float64)
    >>> calibration_error(preds, target, n_bins=4, norm="max")
    tensor(0.3500, dtype=torch.float64)
    """
    return _calibration_error(
        preds,
        target,
        n_bins=n_bins,
        norm=norm,
        strategy=strategy,
        kind=kind,
        sample_weight=sample_weight,
        caller="calibration_error",
    )


def expected_calibration_error(
    preds,
    target,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    strategy: str = "uniform",
    sample_weight=None,
) -> torch.Tensor:
    """Top-label expected calibration error (ECE) of predicted probabilities.

    :func:`calibration_error` with ``kind="top-label"``; see it for the parameters and the
    binning rule.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    n_bins : int, default=15
        Number of bins.
    norm : {"l1", "l2", "max"}, default="l1"
        How the per-bin gaps are combined.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : Tensor of shape ()
        The expected calibration error as float64 on the device of ``preds``.

    See Also
    --------
    calibration_error : The general binned calibration error.

    Notes
    -----
    A bin with a single sample of confidence ``c`` contributes ``(1 - c) / n`` (correct
    prediction) or ``c / n`` (wrong prediction) without weights.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import expected_calibration_error
    >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> expected_calibration_error(preds, torch.tensor([0, 1, 1, 0]), n_bins=4)
    tensor(0.2500, dtype=torch.float64)
    """
    return _calibration_error(
        preds,
        target,
        n_bins=n_bins,
        norm=norm,
        strategy=strategy,
        kind="top-label",
        sample_weight=sample_weight,
        caller="expected_calibration_error",
    )


def maximum_calibration_error(
    preds,
    target,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    kind: str = "top-label",
    sample_weight=None,
) -> torch.Tensor:
    """Maximum calibration error (MCE): the largest gap between accuracy and confidence.

    :func:`calibration_error` with ``norm="max"``; see it for the parameters.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    n_bins : int, default=15
        Number of bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    kind : {"top-label", "classwise"}, default="top-label"
        Which confidences are binned; classwise returns the mean over classes of their MCE.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : Tensor of shape ()
        The maximum calibration error as float64 on the device of ``preds``.

    See Also
    --------
    calibration_error : The general binned calibration error.

    Notes
    -----
    Only non-empty bins count, whatever their weight, so a bin with a single sample of
    confidence ``c`` can set the MCE to ``1 - c`` or ``c`` on its own.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import maximum_calibration_error
    >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> maximum_calibration_error(preds, torch.tensor([0, 1, 1, 0]), n_bins=4)
    tensor(0.3500, dtype=torch.float64)
    """
    return _calibration_error(
        preds,
        target,
        n_bins=n_bins,
        norm="max",
        strategy=strategy,
        kind=kind,
        sample_weight=sample_weight,
        caller="maximum_calibration_error",
    )


def adaptive_calibration_error(
    preds,
    target,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    kind: str = "top-label",
    sample_weight=None,
) -> torch.Tensor:
    """Adaptive calibration error: the calibration error over equal-mass bins.

    :func:`calibration_error` with ``strategy="quantile"``. The default top-label version is
    the adaptive ECE of Mukhoti et al. (2020); ``kind="classwise"`` gives the ACE of Nixon et
    al. (2019), with equal-mass bins per class.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    n_bins : int, default=15
        Number of bins.
    norm : {"l1", "l2", "max"}, default="l1"
        How the per-bin gaps are combined.
    kind : {"top-label", "classwise"}, default="top-label"
        Which confidences are binned.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights; the bins hold equal weight.

    Returns
    -------
    error : Tensor of shape ()
        The adaptive calibration error as float64 on the device of ``preds``.

    See Also
    --------
    calibration_error : The general binned calibration error.

    Notes
    -----
    Equal confidences stay in one bin, so bins are only roughly equal in mass when many
    confidences coincide (several edges may then coincide, leaving empty bins). A bin with a
    single sample contributes as described in :func:`calibration_error`.

    References
    ----------
    .. [1] J. Mukhoti, V. Kulharia, A. Sanyal, S. Golodetz, P. Torr and P. Dokania,
       "Calibrating deep neural networks using focal loss", NeurIPS 2020.
    .. [2] J. Nixon, M. Dusenberry, L. Zhang, G. Jerfel and D. Tran, "Measuring calibration in
       deep learning", CVPR Workshops 2019.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import adaptive_calibration_error
    >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> adaptive_calibration_error(preds, torch.tensor([0, 1, 1, 0]), n_bins=2)
    tensor(0.2500, dtype=torch.float64)
    """
    return _calibration_error(
        preds,
        target,
        n_bins=n_bins,
        norm=norm,
        strategy="quantile",
        kind=kind,
        sample_weight=sample_weight,
        caller="adaptive_calibration_error",
    )


def classwise_calibration_error(
    preds,
    target,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    strategy: str = "uniform",
    sample_weight=None,
) -> torch.Tensor:
    """Classwise expected calibration error: the mean over classes of each class's ECE.

    :func:`calibration_error` with ``kind="classwise"`` (Kull et al., 2019): for every class
    ``k`` the probabilities ``p_k`` of all samples are binned and compared with the frequency
    of ``target == k``.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    n_bins : int, default=15
        Number of bins.
    norm : {"l1", "l2", "max"}, default="l1"
        How the per-bin gaps of each class are combined.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width bins, or equal-mass bins computed per class.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : Tensor of shape ()
        The classwise calibration error as float64 on the device of ``preds``.

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
    >>> import torch
    >>> from distcal.metrics.functional import classwise_calibration_error
    >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> classwise_calibration_error(preds, torch.tensor([0, 1, 1, 0]), n_bins=4)
    tensor(0.4500, dtype=torch.float64)
    """
    return _calibration_error(
        preds,
        target,
        n_bins=n_bins,
        norm=norm,
        strategy=strategy,
        kind="classwise",
        sample_weight=sample_weight,
        caller="classwise_calibration_error",
    )


def debiased_calibration_error(
    preds,
    target,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    kind: str = "top-label",
    sample_weight=None,
) -> torch.Tensor:
    r"""Debiased root-mean-square calibration error (Kumar, Liang and Ma, 2019).

    The plug-in binned L2 error is biased upwards: even a calibrated model's bins show gaps,
    of the size of the noise of each bin's mean outcome. This estimator subtracts that noise,
    ``acc_b (1 - acc_b) / (n_b - 1)``, from each bin's squared gap before averaging, and returns
    the square root of the (non-negative part of the) result. ``n_b`` is the bin's weight
    (sample count without weights); a bin of a single sample keeps its plug-in term.

    The authors' package (``uncertainty-calibration``) gives the same value when every bin holds
    two samples or more and, classwise, every class's debiased square is positive (tested); it
    drops single-sample bins and clamps each class at 0 before averaging, where distcal clamps
    the average, which is less biased when some classes are calibrated.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities.
    target : array-like or Tensor of shape (n_samples,)
        Class labels indexing the columns of ``preds``.
    n_bins : int, default=15
        Number of bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    kind : {"top-label", "classwise"}, default="top-label"
        Top-label, or classwise: the root of the mean over classes of the squared one-vs-rest
        error, as :func:`calibration_error` with ``norm="l2"`` aggregates.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative weights; integer weights count as copies.

    Returns
    -------
    error : Tensor of shape ()
        The debiased RMS calibration error, float64 on the device of ``preds``.

    References
    ----------
    .. [1] A. Kumar, P. Liang and T. Ma, "Verified Uncertainty Calibration", NeurIPS 2019.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import calibration_error, debiased_calibration_error
    >>> generator = torch.Generator().manual_seed(0)
    >>> p = torch.rand(2000, generator=generator, dtype=torch.float64)
    >>> y = (torch.rand(2000, generator=generator, dtype=torch.float64) < p).long()
    >>> plug_in = calibration_error(p, y, norm="l2")
    >>> bool(debiased_calibration_error(p, y) < plug_in)  # calibrated data: less bias
    True
    """
    return _debiased_calibration_error(
        preds,
        target,
        n_bins=n_bins,
        strategy=strategy,
        kind=kind,
        sample_weight=sample_weight,
        caller="debiased_calibration_error",
    )


def smooth_calibration_error(preds, target, *, sample_weight=None) -> torch.Tensor:
    r"""Smooth ECE (Blasiok and Nakkiran, 2023): top-label calibration error without bins.

    The residuals ``correct - confidence`` are smoothed over the confidence axis with a
    Gaussian kernel reflected at 0 and 1; ``smECE_sigma`` is the integral of the absolute
    smoothed residual. It decreases with the bandwidth ``sigma``, and the smooth ECE is its
    fixed point ``smECE_sigma = sigma`` (found by bisection), which makes the choice of
    bandwidth part of the definition rather than a user's setting. Computed on a grid of 500
    points of [0, 1] (the confidences are pooled on that grid), so the cost is linear in the
    number of samples.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities.
    target : array-like or Tensor of shape (n_samples,)
        Class labels indexing the columns of ``preds``.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : Tensor of shape ()
        The smooth ECE, in [0, 1], float64.

    References
    ----------
    .. [1] J. Blasiok and P. Nakkiran, "Smooth ECE: Principled Reliability Diagrams via Kernel
       Smoothing", ICLR 2024.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import smooth_calibration_error
    >>> generator = torch.Generator().manual_seed(0)
    >>> p = torch.rand(4000, generator=generator, dtype=torch.float64)
    >>> y = (torch.rand(4000, generator=generator, dtype=torch.float64) < p).long()
    >>> bool(smooth_calibration_error(p, y) < 0.03)  # calibrated
    True
    >>> bool(smooth_calibration_error(p.clamp(0.25, 0.75), y) > 0.05)  # under-confident
    True
    """
    return _smooth_calibration_error(
        preds, target, sample_weight=sample_weight, caller="smooth_calibration_error"
    )


def ks_calibration_error(
    preds, target, *, kind: str = "top-label", sample_weight=None
) -> torch.Tensor:
    r"""Kolmogorov-Smirnov calibration error: a calibration error without bins.

    The samples are sorted by confidence; the error is the largest distance between the
    cumulative (weighted) frequency of the predicted event and the cumulative confidence,
    ``max_i |sum_{j <= i} w_j (o_j - c_j)| / W`` (Gupta et al., 2021). It is 0 for a perfectly
    calibrated model on infinite data and, unlike binned errors, depends on no bin choice.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities (1-D: the probability of class 1 of a binary problem).
    target : array-like or Tensor of shape (n_samples,)
        Class labels indexing the columns of ``preds``.
    kind : {"top-label", "classwise"}, default="top-label"
        Top-label confidence and correctness, or the mean over classes ``k`` of the error of
        ``p_k`` as a prediction of ``target == k``.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : Tensor of shape ()
        The error, in [0, 1], float64 on the device of ``preds``.

    References
    ----------
    .. [1] K. Gupta, A. Rahimi, T. Ajanthan, T. Mensink, C. Sminchisescu and R. Hartley,
       "Calibration of neural networks using splines", ICLR 2021.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import ks_calibration_error
    >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> ks_calibration_error(preds, torch.tensor([0, 1, 1, 0]))
    tensor(0.2750, dtype=torch.float64)
    """
    return _ks_calibration_error(
        preds, target, kind=kind, sample_weight=sample_weight, caller="ks_calibration_error"
    )


def max_logit_concentration(logits) -> torch.Tensor:
    """Coefficient of variation of the maximum logits, as a 0-d float64 tensor.

    See :func:`distcal.metrics.max_logit_concentration`.

    Parameters
    ----------
    logits : array-like or Tensor of shape (n_samples, n_classes)
        Logits of a network.

    Returns
    -------
    Tensor of shape ()
        Standard deviation over mean of the row maxima (lower: more concentrated).

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import max_logit_concentration
    >>> max_logit_concentration(torch.tensor([[1.0, 4.0], [6.0, 0.0]]))
    tensor(0.2000, dtype=torch.float64)
    """
    from ._diagnostics import _concentration

    return _concentration(logits)


def masking_spread_ratio(logits, masked_logits) -> torch.Tensor:
    """Ratio of the interquartile ranges of masked and clean maximum logits (0-d tensor).

    See :func:`distcal.metrics.masking_spread_ratio`.

    Parameters
    ----------
    logits : array-like or Tensor of shape (n_samples, n_classes)
        Logits of clean inputs.
    masked_logits : array-like or Tensor of shape (n_masked, n_classes)
        Logits of masked inputs.

    Returns
    -------
    Tensor of shape ()
        IQR of the masked row maxima over the IQR of the clean ones (above 1: masking spreads).

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import masking_spread_ratio
    >>> clean = torch.tensor([[5.0], [6.0], [7.0], [8.0], [9.0]]) * torch.tensor([[1.0, 0.0]])
    >>> masked = torch.tensor([[1.0], [3.0], [5.0], [7.0], [9.0]]) * torch.tensor([[1.0, 0.0]])
    >>> masking_spread_ratio(clean, masked)
    tensor(2., dtype=torch.float64)
    """
    from ._diagnostics import _spread_ratio

    return _spread_ratio(logits, masked_logits)


def negative_log_likelihood(preds, target, *, sample_weight=None) -> torch.Tensor:
    """Mean negative log-likelihood (cross-entropy) of the labels under ``preds``.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights; the result is the weighted mean.

    Returns
    -------
    nll : Tensor of shape ()
        ``mean(-log p_y)`` as float64 on the device of ``preds``, in [0, inf].

    See Also
    --------
    brier_score : A bounded proper scoring rule.

    Notes
    -----
    Probabilities are not clipped: a sample whose label has probability exactly 0 (and a
    positive weight) makes the result ``inf``, which is the true value of the loss. Compute it
    from logits (``torch.nn.functional.cross_entropy``) if the probabilities underflow.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import negative_log_likelihood
    >>> preds = torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64)
    >>> negative_log_likelihood(preds, torch.tensor([0, 1]))
    tensor(0.4904, dtype=torch.float64)
    """
    return _negative_log_likelihood(preds, target, sample_weight)


def brier_score(preds, target, *, sample_weight=None) -> torch.Tensor:
    """Multiclass Brier score: mean squared distance between ``preds`` and the one-hot labels.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights; the result is the weighted mean.

    Returns
    -------
    score : Tensor of shape ()
        ``mean_i sum_k (p_ik - 1[y_i = k])^2`` as float64 on the device of ``preds``, in
        [0, 2]: 0 for certain correct predictions, 2 for certain wrong ones.

    See Also
    --------
    negative_log_likelihood : The logarithmic proper scoring rule.

    Notes
    -----
    The sum runs over all classes, as in Brier (1950). For a binary problem this is twice
    :func:`sklearn.metrics.brier_score_loss`, which counts only the positive class.

    References
    ----------
    .. [1] G. W. Brier, "Verification of forecasts expressed in terms of probability",
       Monthly Weather Review 78(1), 1950.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import brier_score
    >>> preds = torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64)
    >>> brier_score(preds, torch.tensor([0, 1]))
    tensor(0.3125, dtype=torch.float64)
    """
    return _brier_score(preds, target, sample_weight)


def calibration_curve(
    preds,
    target,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    kind: str = "top-label",
    sample_weight=None,
) -> Bunch:
    """Per-bin accuracy and mean confidence: the data of a reliability diagram.

    The bins are those of :func:`calibration_error` with the same options, so the curve and the
    error always agree.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    n_bins : int, default=15
        Number of bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    kind : {"top-label", "classwise"}, default="top-label"
        Top-label gives one curve; classwise gives one curve per class (one row each).
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    curve : :class:`~sklearn.utils.Bunch`
        Float64 tensors on the device of ``preds``:

        bin_edges : Tensor of shape (n_bins + 1,)
            The bin edges. Classwise quantile bins have one row of edges per class, shape
            (n_classes, n_bins + 1).
        counts : Tensor of shape (n_bins,)
            The weight in each bin (the number of samples without weights).
        mean_confidence : Tensor of shape (n_bins,)
            The weighted mean confidence in each bin.
        accuracy : Tensor of shape (n_bins,)
            The weighted frequency of correct predictions (classwise: of the class) in each bin.

        Classwise curves have shape (n_classes, n_bins). ``mean_confidence`` and ``accuracy``
        are NaN in empty bins (zero weight): they have no value there.

    See Also
    --------
    calibration_error : The error summarising the curve.
    distcal.plotting.reliability_diagram : Draws the curve.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import calibration_curve
    >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> curve = calibration_curve(preds, torch.tensor([0, 1, 1, 0]), n_bins=4)
    >>> curve.counts
    tensor([0., 0., 2., 2.], dtype=torch.float64)
    >>> curve.accuracy
    tensor([   nan,    nan, 0.5000, 0.5000], dtype=torch.float64)
    """
    return _calibration_curve(
        preds,
        target,
        n_bins=n_bins,
        strategy=strategy,
        kind=kind,
        sample_weight=sample_weight,
        caller="calibration_curve",
    )
