"""The masked fit that MaskedScaling and MaskedTemperatureScaling share.

A masked calibrator fits a calibration map on *masked* calibration data and applies it to clean
data. This module holds everything about the masking: input masking through ``model`` or logit
masking without one, the number of masked copies, the ratio (a number, or ``"auto"``: the regime
decision and its rule, in :mod:`._auto_ratio`), the masked accuracy, and prediction through the
model. Subclasses say only what is fitted on the masked logits:

- ``_fit_masked(values, labels, weights)`` fits the map on the masked logits (rows draw after
  draw, labels and weights repeated to match) and returns ``self``;
- ``_fold_nll(fit_logits, fit_labels, fit_weights, test_logits, test_labels, test_weights)``
  scores a ratio in the cross-fitting of the held-out rule: fit on the first three, return the
  weighted mean NLL of the last three;
- ``_calibrate_logits`` (and optionally ``_calibrate_proba``), as every calibrator does.
"""

from __future__ import annotations

import numbers
from abc import abstractmethod
from functools import partial

import torch
from sklearn.utils.validation import check_is_fitted

from .._device import draw_seed
from .._masking import mask_inputs, mask_logits
from .._validation import (
    Interval,
    Logits,
    Options,
    check_input_shape,
    check_inputs,
    check_logits,
    record_input_shape,
    validate_params,
)
from ._auto_ratio import choose_ratio, resolve_n_masks
from ._base import BaseLogitCalibrator
from ._model import module_logits

#: The constraints of the masking parameters, shared by every masked calibrator.
MASKING_CONSTRAINTS = {
    "mask_ratio": [Interval(numbers.Real, 0.0, 1.0, closed="left"), Options("auto")],
    "regime": [Options("auto", "held-out", "training")],
    "n_masks": [Interval(numbers.Integral, 1, None, closed="left"), Options("auto")],
    "model": [None, "module"],
    "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
    "cv": [Interval(numbers.Integral, 2, None, closed="left")],
    "random_state": ["random_state"],
}


class _MaskedFit(BaseLogitCalibrator):
    """Fit a calibration map on masked calibration data; predict on clean data.

    Subclasses set the parameters ``mask_ratio``, ``regime``, ``n_masks``, ``model``,
    ``batch_size``, ``input_type``, ``cv`` and ``random_state`` in their ``__init__`` and
    implement ``_fit_masked`` and ``_fold_nll`` (see the module docstring).
    """

    def fit(self, X, y, sample_weight=None):
        """Fit the calibration map on masked calibration data.

        Parameters
        ----------
        X : array-like or Tensor
            With ``model``: inputs of shape (n_samples, ...). Without: logits of shape
            (n_samples, n_classes), or 1-D binary decision values.
        y : array-like or Tensor of shape (n_samples,)
            Labels: integers in ``[0, n_classes)``.
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weights, applied to every masked copy of a sample.

        Returns
        -------
        self : object
            The fitted calibrator.
        """
        validate_params(self)
        if self.model is None:
            logits = check_logits(X, input_type=self.input_type)
            self._record_input(logits)
            labels, weights = self._validate_targets(y, sample_weight, logits.values)
            clean = logits.values
        else:
            inputs = check_inputs(X)
            clean = module_logits(self.model, inputs, batch_size=self.batch_size)
            # With a model, the number of classes comes from its output.
            self._record_input(Logits(clean, False, clean.shape[1]))
            record_input_shape(self, inputs)
            labels, weights = self._validate_targets(y, sample_weight, clean)
        n_samples = labels.shape[0]
        self.n_masks_ = resolve_n_masks(self.n_masks, n_samples)
        seed = draw_seed(self.random_state)
        generator = torch.Generator(device=clean.device)

        def draw(ratio):
            # The same seed at every call: masks are nested across ratios (see _auto_ratio).
            generator.manual_seed(seed)
            if self.model is None:
                return mask_logits(clean, ratio, n_masks=self.n_masks_, generator=generator)
            return module_logits(
                self.model,
                inputs,
                batch_size=self.batch_size,
                transform=partial(mask_inputs, mask_ratio=ratio, generator=generator),
                n_repeats=self.n_masks_,
            )

        if self.mask_ratio == "auto":
            chosen = choose_ratio(
                draw,
                clean,
                labels,
                weights,
                regime=self.regime,
                n_masks=self.n_masks_,
                cv=self.cv,
                seed=seed,
                fold_nll=self._fold_nll,
                owner=type(self).__name__,
            )
            self.regime_, self.mask_ratio_ = chosen.regime, chosen.ratio
            self.cv_ratios_ = torch.tensor(
                list(chosen.cv_nll), dtype=torch.float64, device=clean.device
            )
            self.cv_nll_ = torch.tensor(
                list(chosen.cv_nll.values()), dtype=torch.float64, device=clean.device
            )
            values = chosen.values
        else:
            self.regime_ = None if self.regime == "auto" else self.regime
            self.mask_ratio_ = float(self.mask_ratio)
            self.cv_ratios_ = torch.empty(0, dtype=torch.float64, device=clean.device)
            self.cv_nll_ = torch.empty(0, dtype=torch.float64, device=clean.device)
            values = clean if self.mask_ratio == 0 else draw(self.mask_ratio)
        n_draws = values.shape[0] // n_samples
        all_labels = labels.repeat(n_draws)
        all_weights = None if weights is None else weights.repeat(n_draws)
        correct = (values.argmax(dim=1) == all_labels).to(torch.float64)
        self.masked_accuracy_ = float(
            correct.mean() if all_weights is None else (correct @ all_weights) / all_weights.sum()
        )
        return self._fit_masked(values, all_labels, all_weights)

    @abstractmethod
    def _fit_masked(self, values, labels, weights):
        """Fit the calibration map on masked logits (rows draw after draw); return ``self``."""

    @abstractmethod
    def _fold_nll(
        self, fit_logits, fit_labels, fit_weights, test_logits, test_labels, test_weights
    ):
        """Cross-fitting score of the held-out rule: fit on one part, weighted NLL on the other."""

    def fit_batches(self, batches):
        """Not available: a masked calibrator does not fit from a stream of batches.

        The solvers read their data several times, and the masks of a stream would be drawn
        anew on every pass (and in another order when the batches are shuffled), so the passes
        would not see the same data. Fit in memory with :meth:`fit`, or mask the calibration
        data once, store the logits of the masked inputs, and stream those into
        :meth:`TemperatureScaling.fit_batches`.

        Parameters
        ----------
        batches : iterable or callable
            Ignored.

        Raises
        ------
        TypeError
            Always.
        """
        raise TypeError(
            f"{type(self).__name__}.fit_batches is not available: the solver reads the "
            "batches several times and the masks would differ between passes. Use fit(X, y), "
            "or compute the logits of masked inputs once and pass them to "
            "TemperatureScaling().fit_batches."
        )

    def _prediction_logits(self, X) -> Logits:
        if self.model is None:
            return super()._prediction_logits(X)
        check_is_fitted(self)
        inputs = check_input_shape(X, self)
        values = module_logits(self.model, inputs, batch_size=self.batch_size)
        if values.shape[1] != len(self.classes_):
            raise ValueError(
                f"model returned {values.shape[1]} logit columns, but {type(self).__name__} was "
                f"fitted with {len(self.classes_)}."
            )
        return Logits(values, False, values.shape[1])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None and self.mask_ratio != 0
        return tags
