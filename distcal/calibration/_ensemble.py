"""Ensemble temperature scaling (Zhang, Kailkhura and Han, ICML 2020)."""

from __future__ import annotations

import math
import numbers
import warnings

import torch

from .._params import Interval, Options
from .._softmax import softmax
from ..exceptions import ConvergenceWarning
from ._base import BaseLogitCalibrator
from ._heads import EnsembleHead
from ._lbfgs import minimize_lbfgs
from ._temperature import _warn_for_fit, fit_temperature

__all__ = ["EnsembleTemperatureScaling"]


class EnsembleTemperatureScaling(BaseLogitCalibrator):
    """Ensemble temperature scaling: a mixture of TS, the uncalibrated model and the uniform.

    Calibrated probabilities are ``w_1 softmax(z / T) + w_2 softmax(z) + w_3 / K``, where ``T``
    is the temperature of :class:`TemperatureScaling` and the weights, on the simplex, minimise
    the (weighted) negative log-likelihood of the calibration data (a convex problem, solved in
    float64). The uniform component keeps every probability above ``w_3 / K``, so no label is
    ever given probability 0. Like temperature scaling it never changes the predicted class.
    ``decision_function`` returns the log of the mixture.

    Parameters
    ----------
    input_type : {"logits", "probabilities"}, default="logits"
        What ``X`` holds (probabilities are converted with ``log(p)``).
    tol : float, default=1e-6
        Tolerance of the temperature (see :class:`TemperatureScaling`) and of the weights:
        L-BFGS stops when the largest gradient entry falls below ``tol`` (or the loss changes
        by less than ``tol / 1000``), the rule of every L-BFGS fit in distcal.
    max_iter : int, default=100
        Maximum passes of the temperature solver and iterations of the weight solver.

    Attributes
    ----------
    temperature_ : float
        The temperature of the first component.
    weights_ : Tensor of shape (3,)
        The mixture weights of ``softmax(z / T)``, ``softmax(z)`` and the uniform (float64, on
        the device of the data given to ``fit``).
    nll_ : float
        Weighted mean NLL of the calibration data at the fit.
    n_iter_ : int
        Passes of the temperature solver plus iterations of the weight solver.
    converged_ : bool
        Whether both the temperature and the weights converged (a warning says why not).
    classes_ : ndarray of shape (n_classes,)
        ``arange(n_classes)``.
    n_features_in_ : int
        Number of logit columns seen in ``fit``.

    References
    ----------
    .. [1] J. Zhang, B. Kailkhura and T. Y.-J. Han, "Mix-n-Match: Ensemble and Compositional
       Methods for Uncertainty Calibration in Deep Learning", ICML 2020.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.calibration import EnsembleTemperatureScaling
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(3000, 4))
    >>> y = (z + rng.gumbel(size=z.shape)).argmax(axis=1)
    >>> ets = EnsembleTemperatureScaling().fit(3 * z, y)
    >>> bool(abs(ets.temperature_ - 3) < 0.2), bool(ets.weights_[0] > 0.9)
    (True, True)
    """

    _fitted_constraints = {
        "temperature_": [Interval(numbers.Real, 0, None, closed="neither")],
    }
    _shift_invariant = True
    _cli_name = "ensemble"
    _parameter_constraints = {
        "input_type": [Options("logits", "probabilities")],
        "tol": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, *, input_type="logits", tol=1e-6, max_iter=100):
        self.input_type = input_type
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X, y, sample_weight=None):
        """Fit the temperature, then the mixture weights, on calibration logits.

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
        self : EnsembleTemperatureScaling
            The fitted calibrator.
        """
        logits, labels, weights = self._validate_fit_inputs(X, y, sample_weight)
        values = logits.values
        result = fit_temperature(values, labels, weights, tol=self.tol, max_iter=self.max_iter)
        _warn_for_fit(result, type(self).__name__, self.max_iter, 3)
        self.temperature_ = float(result.temperature)
        # The probability each component gives the label: (n_samples, 3), in float64.
        z = values.to(torch.float64)
        rows = torch.arange(len(labels), device=z.device)
        components = torch.stack(
            [
                softmax(z / self.temperature_)[rows, labels],
                softmax(z)[rows, labels],
                torch.full_like(z[:, 0], 1.0 / z.shape[1]),
            ],
            dim=1,
        )
        w = None if weights is None else weights / weights.sum()
        theta = torch.zeros(3, dtype=torch.float64, device=z.device, requires_grad=True)

        def closure():
            theta.grad = None
            mixture = components @ torch.softmax(theta, dim=0)
            losses = -torch.log(mixture)
            loss = losses.mean() if w is None else losses @ w
            loss.backward()
            return loss

        weights_fit = minimize_lbfgs(
            [theta], closure, tol=self.tol, max_iter=self.max_iter, owner=type(self).__name__
        )
        if not weights_fit.converged:
            warnings.warn(
                f"{type(self).__name__}: L-BFGS reached max_iter={self.max_iter} before the "
                "mixture weights converged; increase max_iter.",
                ConvergenceWarning,
                stacklevel=2,
            )
        self.n_iter_ = int(result.n_iter) + weights_fit.n_iter
        self.converged_ = bool(result.converged and weights_fit.converged)
        mix = torch.softmax(theta.detach(), dim=0)
        self.weights_ = mix
        with torch.no_grad():
            losses = -torch.log(components @ mix)
            self.nll_ = float(losses.mean() if w is None else losses @ w)
        return self

    def _calibrate_proba(self, values: torch.Tensor) -> torch.Tensor:
        z = values.to(torch.float64)
        w = [float(v) for v in self.weights_]
        mixture = softmax(z / self.temperature_).mul_(w[0])
        mixture.add_(softmax(z), alpha=w[1]).add_(w[2] / z.shape[1])
        return mixture.to(values.dtype)

    def _calibrate_logits(self, values: torch.Tensor) -> torch.Tensor:
        z = values.to(torch.float64)
        # log of the mixture, with logsumexp over the components for stability; a weight of 0
        # becomes log(1e-300), a component that contributes nothing
        log_w = [math.log(max(float(v), 1e-300)) for v in self.weights_]
        parts = torch.stack(
            [
                torch.log_softmax(z / self.temperature_, dim=1) + log_w[0],
                torch.log_softmax(z, dim=1) + log_w[1],
                torch.full_like(z, log_w[2] - math.log(z.shape[1])),
            ]
        )
        return torch.logsumexp(parts, dim=0).to(values.dtype)

    def _torch_head(self):
        return EnsembleHead(float(self.temperature_), self.weights_)
