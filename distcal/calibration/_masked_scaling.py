"""Masked calibration beyond a temperature: any logit calibrator fitted on masked inputs."""

from __future__ import annotations

import numbers

import torch
from sklearn.base import clone

from .._validation import Interval, Options
from ._base import BaseLogitCalibrator
from ._masked_temperature import MaskedTemperatureScaling
from ._temperature import TemperatureScaling

__all__ = ["MaskedScaling"]


class MaskedScaling(MaskedTemperatureScaling):
    """Fit any logit calibrator on masked calibration inputs, as MTS fits a temperature.

    The masking of :class:`MaskedTemperatureScaling` (inputs masked through ``model``, or
    logits masked in logit space without one; ``mask_ratio="auto"`` for the half-accuracy
    rule), with ``calibrator`` fitted on the masked logits instead of a single temperature:
    vector scaling, matrix or Dirichlet calibration, ensemble temperature scaling. This tries
    the paper's idea beyond a single temperature. Predictions run ``calibrator`` on the clean
    logits. ``MaskedScaling(TemperatureScaling())`` is ``MaskedTemperatureScaling``.

    Parameters
    ----------
    calibrator : BaseLogitCalibrator, default=None
        The calibrator to fit on masked logits (cloned); None means ``VectorScaling()``. Its
        parameters are reachable as ``calibrator__name`` (for ``GridSearchCV``).
    mask_ratio : float or "auto", default="auto"
        As in :class:`MaskedTemperatureScaling`.
    n_masks : int, default=1
        Masked copies of each calibration sample.
    model : torch.nn.Module or None, default=None
        The network mapping inputs to logits; None masks logits.
    batch_size : int, default=256
        Samples per forward pass of ``model``.
    input_type : {"logits", "probabilities"}, default="logits"
        With ``model=None``, what ``X`` holds.
    random_state : int, RandomState instance or None, default=None
        Seeds the masks.

    Attributes
    ----------
    calibrator_ : BaseLogitCalibrator
        The fitted clone of ``calibrator``.
    mask_ratio_ : float
        The mask ratio used.
    masked_accuracy_ : float
        Accuracy on the masked calibration data.
    classes_ : ndarray of shape (n_classes,)
        ``arange(n_classes)``.
    n_features_in_ : int
        Number of logit columns (``model=None``) or of input features (2-D inputs).

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.calibration import MaskedScaling, VectorScaling
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(1000, 3))
    >>> y = z.argmax(axis=1)  # the training data: separable, TS has no optimum here
    >>> ms = MaskedScaling(VectorScaling(), mask_ratio=0.3, random_state=0).fit(3 * z, y)
    >>> bool(np.isfinite(ms.calibrator_.coef_.numpy()).all())
    True
    """

    _parameter_constraints = {
        "calibrator": [None, BaseLogitCalibrator],
        "mask_ratio": [Interval(numbers.Real, 0.0, 1.0, closed="left"), Options("auto")],
        "n_masks": [Interval(numbers.Integral, 1, None, closed="left")],
        "model": [None, "module"],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "input_type": [Options("logits", "probabilities")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        calibrator=None,
        mask_ratio="auto",
        *,
        n_masks=1,
        model=None,
        batch_size=256,
        input_type="logits",
        random_state=None,
    ):
        self.calibrator = calibrator
        self.mask_ratio = mask_ratio
        self.n_masks = n_masks
        self.model = model
        self.batch_size = batch_size
        self.input_type = input_type
        self.random_state = random_state

    def _fit_logits(self, values, labels, weights, *, stacklevel=4):
        from ._linear import VectorScaling

        inner = VectorScaling() if self.calibrator is None else clone(self.calibrator)
        if isinstance(inner, MaskedTemperatureScaling):
            raise TypeError(
                "calibrator must calibrate logits, not mask them again; got a "
                f"{type(inner).__name__}."
            )
        self.calibrator_ = inner.fit(values, labels, sample_weight=weights)
        if isinstance(inner, TemperatureScaling):  # the temperature, where there is one
            self.temperature_ = inner.temperature_
        return self

    def _calibrate_logits(self, values: torch.Tensor) -> torch.Tensor:
        return self.calibrator_._calibrate_logits(values)

    def _calibrate_proba(self, values: torch.Tensor) -> torch.Tensor:
        return self.calibrator_._calibrate_proba(values)
