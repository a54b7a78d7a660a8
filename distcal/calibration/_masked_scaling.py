"""Masked calibration beyond a temperature: any logit calibrator fitted on masked inputs."""

from __future__ import annotations

import numbers
import warnings

import torch
from sklearn.base import clone

from .._params import Interval, Options
from ._base import BaseLogitCalibrator
from ._masked_fit import MASKING_CONSTRAINTS, _MaskedFit
from ._temperature import TemperatureScaling

__all__ = ["MaskedScaling"]


class MaskedScaling(_MaskedFit):
    """Fit any logit calibrator on masked calibration inputs, as MTS fits a temperature.

    The masked fit of Zhu et al. (inputs masked through ``model``, or logits masked in logit
    space without one; ``mask_ratio="auto"`` for the regime's rule, as documented in
    :class:`MaskedTemperatureScaling`), with ``calibrator`` fitted on the masked logits instead
    of a single temperature:
    vector scaling, matrix or Dirichlet calibration, ensemble temperature scaling. This tries
    the paper's idea beyond a single temperature. Predictions run ``calibrator`` on the clean
    logits. ``MaskedScaling(TemperatureScaling())`` fits what ``MaskedTemperatureScaling``
    fits; :class:`MaskedTemperatureScaling` is this class with the calibrator fixed to a
    temperature.

    Parameters
    ----------
    calibrator : BaseLogitCalibrator, default=None
        The calibrator to fit on masked logits (cloned); None means ``VectorScaling()``. Its
        parameters are reachable as ``calibrator__name`` (for ``GridSearchCV``).
    mask_ratio : float or "auto", default="auto"
        As in :class:`MaskedTemperatureScaling`; on held-out data the cross-fitting scores each
        candidate ratio by the NLL of ``calibrator`` fitted on the other folds.
    regime : {"auto", "held-out", "training"}, default="auto"
        As in :class:`MaskedTemperatureScaling`.
    n_masks : int or "auto", default="auto"
        Masked copies of each calibration sample (``"auto"``: ``ceil(2000 / n_samples)``).
    model : torch.nn.Module or None, default=None
        The network mapping inputs to logits; None masks logits.
    batch_size : int, default=256
        Samples per forward pass of ``model``.
    input_type : {"logits", "probabilities"}, default="logits"
        With ``model=None``, what ``X`` holds.
    cv : int, default=5
        Folds of the held-out rule of ``mask_ratio="auto"``.
    random_state : int, RandomState instance or None, default=None
        Seeds the masks.

    Attributes
    ----------
    calibrator_ : BaseLogitCalibrator
        The fitted clone of ``calibrator``.
    temperature_ : float
        Only when ``calibrator`` is a :class:`TemperatureScaling`: its fitted temperature.
    mask_ratio_ : float
        The mask ratio used.
    regime_ : {"held-out", "training"} or None
        As in :class:`MaskedTemperatureScaling`.
    cv_ratios_, cv_nll_ : Tensor of shape (n_candidates,)
        The held-out rule's candidate ratios and their cross-fitted NLL (empty otherwise;
        float64, on the device of the logits).
    n_masks_ : int
        Masked copies per sample that were drawn.
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

    _fitted_constraints = {
        "mask_ratio_": [Interval(numbers.Real, 0.0, 1.0, closed="left")],
    }
    _parameter_constraints = {
        "calibrator": [None, BaseLogitCalibrator],
        **MASKING_CONSTRAINTS,
        "input_type": [Options("logits", "probabilities")],
    }

    def __init__(
        self,
        calibrator=None,
        mask_ratio="auto",
        *,
        regime="auto",
        n_masks="auto",
        model=None,
        batch_size=256,
        input_type="logits",
        cv=5,
        random_state=None,
    ):
        self.calibrator = calibrator
        self.mask_ratio = mask_ratio
        self.regime = regime
        self.n_masks = n_masks
        self.model = model
        self.batch_size = batch_size
        self.input_type = input_type
        self.cv = cv
        self.random_state = random_state

    def _inner(self):
        from ._linear import VectorScaling

        inner = VectorScaling() if self.calibrator is None else clone(self.calibrator)
        if isinstance(inner, _MaskedFit):
            raise TypeError(
                "calibrator must calibrate logits, not mask them again; got a "
                f"{type(inner).__name__}."
            )
        return inner

    @property
    def _shift_invariant(self) -> bool:
        """The declaration of ``calibrator``, whose map this one applies (an instance's hook).

        A class attribute elsewhere: here it depends on the parameter, so read it on an
        instance. MaskedTemperatureScaling declares True again at class level.
        """
        from ._linear import VectorScaling

        inner = VectorScaling if self.calibrator is None else self.calibrator
        return bool(inner._shift_invariant)

    def _fold_nll(
        self, fit_logits, fit_labels, fit_weights, test_logits, test_labels, test_weights
    ):
        """Cross-fitting score of the held-out rule: ``calibrator``'s NLL on the other fold."""
        with warnings.catch_warnings():
            # A fold's fit may warn (no optimum, few samples); the final fit warns for itself.
            warnings.simplefilter("ignore")
            inner = self._inner().fit(fit_logits, fit_labels, sample_weight=fit_weights)
        log_p = torch.log_softmax(inner._calibrate_logits(test_logits).to(torch.float64), dim=1)
        nll = -log_p.gather(1, test_labels[:, None]).squeeze(1)
        if test_weights is None:
            return float(nll.mean())
        return float((nll * test_weights).sum() / test_weights.sum())

    def _fit_masked(self, values, labels, weights):
        inner = self._inner()
        self.calibrator_ = inner.fit(values, labels, sample_weight=weights)
        if isinstance(inner, TemperatureScaling):  # the temperature, where there is one
            self.temperature_ = inner.temperature_
        return self

    def _calibrate_logits(self, values: torch.Tensor) -> torch.Tensor:
        return self.calibrator_._calibrate_logits(values)

    def _calibrate_proba(self, values: torch.Tensor) -> torch.Tensor:
        return self.calibrator_._calibrate_proba(values)
