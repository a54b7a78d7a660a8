"""Linear calibrators of the scaling family: vector scaling, matrix scaling, Dirichlet.

Each maps features of the logits through an affine map and a softmax, ``softmax(W f(z) + b)``,
and fits ``W`` and ``b`` by minimising the weighted negative log-likelihood of the calibration
data, plus the ODIR penalty of Kull et al. (2019) where asked: ``lambda`` times the mean squared
off-diagonal entry of ``W`` plus ``mu`` times the mean squared intercept. The problems are
smooth and convex in (W, b); they are solved in float64 with L-BFGS and a strong Wolfe line
search (the stopping rule of ``_lbfgs.py``, shared with ensemble temperature scaling), on the
device of the logits, starting from the identity (``W = I``, ``b = 0``: the uncalibrated
model).

- :class:`VectorScaling`: ``W`` diagonal, ``f(z) = z`` (Guo et al., 2017).
- :class:`MatrixScaling`: ``W`` full, ``f(z) = z``.
- :class:`DirichletCalibration`: ``W`` full, ``f(z) = log softmax(z)`` (Kull et al., 2019).
"""

from __future__ import annotations

import numbers
import warnings

import torch

from .._params import Interval, Options
from ..exceptions import ConvergenceWarning, UncalibratableDataWarning
from ._base import BaseLogitCalibrator
from ._heads import AffineHead
from ._lbfgs import minimize_lbfgs

__all__ = ["DirichletCalibration", "MatrixScaling", "VectorScaling"]


def _fit_affine(
    features: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    diagonal: bool,
    reg_lambda: float,
    reg_mu: float,
    tol: float,
    max_iter: int,
    owner: str,
):
    """Minimise the penalised weighted NLL of ``softmax(features @ W.T + b)``; return W, b."""
    n_samples, n_classes = features.shape
    x = features.to(torch.float64)
    device = x.device
    # Each sample's share of the loss: 1 / n, or its normalised weight.
    share = (
        torch.full((n_samples, 1), 1.0 / n_samples, dtype=torch.float64, device=device)
        if weights is None
        else (weights.to(torch.float64) / weights.sum())[:, None]
    )
    if diagonal:
        scale = torch.ones(n_classes, dtype=torch.float64, device=device)
    else:
        scale = torch.eye(n_classes, dtype=torch.float64, device=device)
    bias = torch.zeros(n_classes, dtype=torch.float64, device=device)
    off_diagonal = None
    if not diagonal and n_classes > 1:
        off_diagonal = ~torch.eye(n_classes, dtype=torch.bool, device=device)
    n_off = n_classes * (n_classes - 1)
    state = {"nll": float("nan")}

    def closure():
        # The NLL of a softmax and its gradient in closed form, d/dscores = p - onehot(y): one
        # softmax and two small matrix products per evaluation, no autograd graph.
        scores = x * scale + bias if diagonal else torch.addmm(bias, x, scale.T)
        top = scores.amax(dim=1, keepdim=True)
        residual = (scores - top).exp_()
        total = residual.sum(dim=1, keepdim=True)
        residual /= total  # the softmax
        log_norm = total.log_().add_(top)  # the log-sum-exp of each row
        nll = (share * (log_norm - scores.gather(1, labels[:, None]))).sum()
        residual.scatter_add_(1, labels[:, None], -torch.ones_like(log_norm))
        residual *= share
        scale.grad = (residual * x).sum(dim=0) if diagonal else residual.T @ x
        bias.grad = residual.sum(dim=0)
        loss = nll
        if off_diagonal is not None and reg_lambda > 0:
            loss = loss + reg_lambda * scale[off_diagonal].square().sum() / n_off
            scale.grad += (2 * reg_lambda / n_off) * scale * off_diagonal
        if reg_mu > 0:
            loss = loss + reg_mu * bias.square().mean()
            bias.grad += (2 * reg_mu / n_classes) * bias
        state["nll"] = float(nll)
        return loss

    result = minimize_lbfgs([scale, bias], closure, tol=tol, max_iter=max_iter, owner=owner)
    return scale, bias, state["nll"], result.n_iter, result.converged


def _present_classes(labels, weights, n_classes: int) -> torch.Tensor:
    """Return a mask of the classes with calibration weight in the labels."""
    mass = torch.zeros(n_classes, dtype=torch.float64, device=labels.device)
    ones = torch.ones_like(labels, dtype=torch.float64)
    mass.index_add_(0, labels, ones if weights is None else weights.to(torch.float64))
    return mass > 0


def _fit_present_classes(
    calibrator, features, labels, weights, present, *, reg_lambda, reg_mu
) -> tuple:
    """Fit the map of the classes that occur; keep the others at the identity.

    A class that never occurs in the labels has no finite optimum: lowering its logit lowers
    the NLL for ever, and through the softmax drags every other bias along (with 20,000
    classes and 300 samples, minutes of L-BFGS towards a meaningless map). The fit is made on
    the classes that occur, among themselves (their columns of the features, their softmax);
    the absent classes keep scale 1 and bias 0 and the present ones get no weight on them, so
    the network's logits for a class never seen are passed through as they are.
    """
    n_classes = features.shape[1]
    diagonal = calibrator._diagonal
    index = present.nonzero().flatten()
    absent = (~present).nonzero().flatten()
    shown = ", ".join(str(int(c)) for c in absent[:10]) + (", ..." if absent.numel() > 10 else "")
    warnings.warn(
        f"{type(calibrator).__name__}: {absent.numel()} of the {n_classes} classes have no "
        f"calibration sample ({shown}); their parameters have no finite optimum, so they keep "
        "the identity (scale 1, bias 0) and the map is fitted on the classes that occur. "
        "Calibrate on data covering every class (stratify the split) to fit them all.",
        UncalibratableDataWarning,
        stacklevel=3,
    )
    device = features.device
    if diagonal:
        scale = torch.ones(n_classes, dtype=torch.float64, device=device)
    else:
        scale = torch.eye(n_classes, dtype=torch.float64, device=device)
    bias = torch.zeros(n_classes, dtype=torch.float64, device=device)
    if index.numel() < 2:  # one class: the softmax over it is constant, nothing to fit
        return scale, bias, 0.0, 0, False
    remap = torch.full((n_classes,), -1, dtype=torch.long, device=device)
    remap[index] = torch.arange(index.numel(), device=device)
    keep = present[labels] if weights is None else present[labels] & (weights > 0)
    sub_weights = None if weights is None else weights[keep]
    sub_scale, sub_bias, nll, n_iter, converged = _fit_affine(
        features[keep][:, index],
        remap[labels[keep]],
        sub_weights,
        diagonal=diagonal,
        reg_lambda=reg_lambda,
        reg_mu=reg_mu,
        tol=calibrator.tol,
        max_iter=calibrator.max_iter,
        owner=type(calibrator).__name__,
    )
    if diagonal:
        scale[index] = sub_scale
    else:
        scale[index] = 0.0
        scale[index[:, None], index[None, :]] = sub_scale
    bias[index] = sub_bias
    return scale, bias, nll, n_iter, converged


class _AffineCalibrator(BaseLogitCalibrator):
    """Shared fit and prediction of the affine scaling calibrators."""

    _diagonal = False
    #: Whether the map acts on ``log_softmax(z)`` (Dirichlet calibration) instead of ``z``.
    _log_softmax = False

    def _features(self, values: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(values, dim=1) if self._log_softmax else values

    def _penalties(self) -> tuple[float, float]:
        return 0.0, 0.0

    def fit(self, X, y, sample_weight=None):
        """Fit the affine map on calibration logits.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
            Logits of the calibration samples (numpy or torch, on any device), or 1-D binary
            decision values.
        y : array-like or Tensor of shape (n_samples,)
            Labels: integers in ``[0, n_classes)`` indexing the columns of ``X``.
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weights; None weighs every sample equally.

        Returns
        -------
        self
            The fitted calibrator.
        """
        logits, labels, weights = self._validate_fit_inputs(X, y, sample_weight)
        reg_lambda, reg_mu = self._penalties()
        features = self._features(logits.values.to(torch.float64))
        present = _present_classes(labels, weights, features.shape[1])
        if bool(present.all()):
            scale, bias, nll, n_iter, converged = _fit_affine(
                features,
                labels,
                weights,
                diagonal=self._diagonal,
                reg_lambda=reg_lambda,
                reg_mu=reg_mu,
                tol=self.tol,
                max_iter=self.max_iter,
                owner=type(self).__name__,
            )
        else:
            scale, bias, nll, n_iter, converged = _fit_present_classes(
                self, features, labels, weights, present, reg_lambda=reg_lambda, reg_mu=reg_mu
            )
        if not converged and n_iter > 0:  # n_iter 0: one class, nothing to fit (warned)
            warnings.warn(
                f"{type(self).__name__}: L-BFGS reached max_iter={self.max_iter} before "
                "converging; increase max_iter.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.coef_ = scale
        self.intercept_ = bias
        self.nll_ = nll
        self.n_iter_ = n_iter
        self.converged_ = bool(converged)
        return self

    def _calibrate_logits(self, values: torch.Tensor) -> torch.Tensor:
        features = self._features(values.to(torch.float64))
        scale = self.coef_.to(features.device)
        bias = self.intercept_.to(features.device)
        out = features * scale + bias if self._diagonal else features @ scale.T + bias
        return out.to(values.dtype)

    def _torch_head(self):
        return AffineHead(
            self.coef_, self.intercept_, diagonal=self._diagonal, log_softmax=self._log_softmax
        )


_COMMON_CONSTRAINTS = {
    "input_type": [Options("logits", "probabilities")],
    "tol": [Interval(numbers.Real, 0, None, closed="neither")],
    "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
}
_ODIR_CONSTRAINTS = {
    **_COMMON_CONSTRAINTS,
    "reg_lambda": [Interval(numbers.Real, 0, None, closed="left")],
    "reg_mu": [None, Interval(numbers.Real, 0, None, closed="left")],
}


class VectorScaling(_AffineCalibrator):
    """Vector scaling: calibrated probabilities ``softmax(w * z + b)``, one scale per class.

    A per-class temperature and bias: ``2 K`` parameters fitted by (weighted) negative
    log-likelihood. It can change the predicted class, unlike temperature scaling.

    It has no penalty, and on a small calibration set where some class is (nearly) separated
    its scale grows until a few test images get a label probability near 0: on digits
    students calibrated on 449 images, its test NLL was 0.70 against 0.11 for temperature
    scaling (``docs/results.md``). With few calibration samples per class prefer
    :class:`TemperatureScaling`, or :class:`MatrixScaling` with its ODIR penalty.

    Parameters
    ----------
    input_type : {"logits", "probabilities"}, default="logits"
        What ``X`` holds (probabilities are converted with ``log(p)``).
    tol : float, default=1e-8
        L-BFGS stops when the largest gradient entry falls below ``tol`` (or the loss changes
        by less than ``tol / 1000``).
    max_iter : int, default=2000
        Maximum number of L-BFGS iterations.

    Attributes
    ----------
    coef_ : Tensor of shape (n_classes,)
        The per-class scales ``w`` (float64).
    intercept_ : Tensor of shape (n_classes,)
        The per-class biases ``b`` (float64).
    nll_ : float
        Weighted mean NLL of the calibration data at the fit.
    n_iter_ : int
        L-BFGS iterations.
    converged_ : bool
        Whether L-BFGS stopped on its tolerances rather than at ``max_iter``.
    classes_ : ndarray of shape (n_classes,)
        ``arange(n_classes)``.
    n_features_in_ : int
        Number of logit columns seen in ``fit``.

    See Also
    --------
    TemperatureScaling : One scale for all classes.
    MatrixScaling : A full matrix.

    References
    ----------
    .. [1] C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration of Modern Neural
       Networks", ICML 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.calibration import VectorScaling
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(20000, 3))
    >>> y = (z * [1.0, 2.0, 0.5] + rng.gumbel(size=z.shape)).argmax(axis=1)
    >>> vs = VectorScaling().fit(3 * z, y)
    >>> bool(np.allclose(vs.coef_.numpy() * 3, [1.0, 2.0, 0.5], atol=0.1))  # the true scales
    True
    """

    _diagonal = True
    _cli_name = "vector"
    _parameter_constraints = _COMMON_CONSTRAINTS

    def __init__(self, *, input_type="logits", tol=1e-8, max_iter=2000):
        self.input_type = input_type
        self.tol = tol
        self.max_iter = max_iter


class MatrixScaling(_AffineCalibrator):
    """Matrix scaling: calibrated probabilities ``softmax(W z + b)``, with ODIR regularisation.

    A full affine map of the logits (``K^2 + K`` parameters), fitted by (weighted) negative
    log-likelihood plus the off-diagonal and intercept regularisation (ODIR) of Kull et al.:
    ``reg_lambda`` times the mean squared off-diagonal entry of ``W`` and ``reg_mu`` times the
    mean squared entry of ``b``. Without regularisation it is multinomial logistic regression
    on the logits.

    Parameters
    ----------
    reg_lambda : float, default=0.0
        Weight of the off-diagonal penalty.
    reg_mu : float or None, default=None
        Weight of the intercept penalty; None uses ``reg_lambda``.
    input_type : {"logits", "probabilities"}, default="logits"
        What ``X`` holds (probabilities are converted with ``log(p)``).
    tol : float, default=1e-8
        L-BFGS stops when the largest gradient entry falls below ``tol`` (or the loss changes
        by less than ``tol / 1000``).
    max_iter : int, default=2000
        Maximum number of L-BFGS iterations.

    Attributes
    ----------
    coef_ : Tensor of shape (n_classes, n_classes)
        ``W`` (float64).
    intercept_ : Tensor of shape (n_classes,)
        ``b`` (float64).
    nll_ : float
        Weighted mean NLL of the calibration data at the fit (without the penalty).
    n_iter_ : int
        L-BFGS iterations.
    converged_ : bool
        Whether L-BFGS stopped on its tolerances rather than at ``max_iter``.
    classes_ : ndarray of shape (n_classes,)
        ``arange(n_classes)``.
    n_features_in_ : int
        Number of logit columns seen in ``fit``.

    See Also
    --------
    DirichletCalibration : The same map on log-probabilities.
    VectorScaling : A diagonal ``W``.

    References
    ----------
    .. [1] M. Kull, M. Perello-Nieto, M. Kängsepp, T. Silva Filho, H. Song and P. Flach,
       "Beyond temperature scaling: Obtaining well-calibrated multiclass probabilities with
       Dirichlet calibration", NeurIPS 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.calibration import MatrixScaling
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(20000, 3))
    >>> y = (z + rng.gumbel(size=z.shape)).argmax(axis=1)
    >>> ms = MatrixScaling(reg_lambda=1e-3).fit(4 * z, y)
    >>> bool(np.allclose(ms.coef_.numpy() * 4, np.eye(3), atol=0.1))  # the truth: softmax(z)
    True
    """

    _cli_name = "matrix"
    _parameter_constraints = _ODIR_CONSTRAINTS

    def __init__(
        self, *, reg_lambda=0.0, reg_mu=None, input_type="logits", tol=1e-8, max_iter=2000
    ):
        self.reg_lambda = reg_lambda
        self.reg_mu = reg_mu
        self.input_type = input_type
        self.tol = tol
        self.max_iter = max_iter

    def _penalties(self) -> tuple[float, float]:
        mu = self.reg_lambda if self.reg_mu is None else self.reg_mu
        return float(self.reg_lambda), float(mu)


class DirichletCalibration(MatrixScaling):
    """Dirichlet calibration: ``softmax(W log p + b)`` with ODIR regularisation.

    Matrix scaling of the log-probabilities ``log p = log softmax(z)`` (Kull et al., 2019): a
    multinomial logistic regression on log-probabilities, which is the calibration map of a
    Dirichlet model of the probabilities of each class. Parameters and attributes are those of
    :class:`MatrixScaling`.

    Parameters
    ----------
    reg_lambda : float, default=0.0
        Weight of the off-diagonal penalty.
    reg_mu : float or None, default=None
        Weight of the intercept penalty; None uses ``reg_lambda``.
    input_type : {"logits", "probabilities"}, default="logits"
        What ``X`` holds.
    tol : float, default=1e-8
        L-BFGS stops when the largest gradient entry falls below ``tol`` (or the loss changes
        by less than ``tol / 1000``).
    max_iter : int, default=2000
        Maximum number of L-BFGS iterations.

    Attributes
    ----------
    coef_ : Tensor of shape (n_classes, n_classes)
        ``W`` (float64).
    intercept_ : Tensor of shape (n_classes,)
        ``b`` (float64).
    nll_ : float
        Weighted mean NLL of the calibration data at the fit (without the penalty).
    n_iter_ : int
        L-BFGS iterations.
    converged_ : bool
        Whether L-BFGS stopped on its tolerances rather than at ``max_iter``.
    classes_ : ndarray of shape (n_classes,)
        ``arange(n_classes)``.
    n_features_in_ : int
        Number of logit columns seen in ``fit``.

    References
    ----------
    .. [1] M. Kull, M. Perello-Nieto, M. Kängsepp, T. Silva Filho, H. Song and P. Flach,
       "Beyond temperature scaling: Obtaining well-calibrated multiclass probabilities with
       Dirichlet calibration", NeurIPS 2019.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.calibration import DirichletCalibration
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(1000, 4))
    >>> y = (z + rng.gumbel(size=z.shape)).argmax(axis=1)
    >>> proba = DirichletCalibration(reg_lambda=1e-3).fit(3 * z, y).predict_proba(3 * z)
    >>> proba.shape
    (1000, 4)
    """

    _log_softmax = True
    _shift_invariant = True  # the map sees log_softmax(z), which a constant per row leaves alone
    _cli_name = "dirichlet"
