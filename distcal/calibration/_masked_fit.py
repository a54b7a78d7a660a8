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
from collections.abc import Iterable
from functools import partial

import torch
from sklearn.utils.validation import check_is_fitted

from .._batches import BatchSource, Chunk, batch_passes, is_batches
from .._device import as_tensor, draw_seed
from .._masking import mask_inputs, mask_logits
from .._modules import check_output_kind, run_module, stream_logits
from .._params import Interval, Options, validate_params
from .._validation import Logits, check_fitted_shape, record_input_shape
from ._auto_ratio import HELD_OUT_RATIOS, choose_ratio, masked_accuracy, resolve_n_masks
from ._base import BaseLogitCalibrator
from ._stream import MaskedStream, RestartableBatches

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

    def fit(self, X, y=None, sample_weight=None):
        """Fit the calibration map on masked calibration data.

        Parameters
        ----------
        X : array-like, Tensor, DataLoader or iterable of batches
            With ``model``: inputs of shape (n_samples, ...). Without: logits of shape
            (n_samples, n_classes), or 1-D binary decision values. Or a stream of batches
            ``(X, y)`` or ``(X, y, sample_weight)`` of those (a torch ``DataLoader``, an
            iterator, a list of pairs): then ``y`` and ``sample_weight`` are omitted, one pass
            over the stream computes the clean and masked logits (only the logits are kept,
            never the inputs), and the fit runs on them; see the user guide, "Fitting from a
            DataLoader".
        y : array-like or Tensor of shape (n_samples,), default=None
            Labels: integers in ``[0, n_classes)``. Required with arrays; omitted with a stream.
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weights, applied to every masked copy of a sample.

        Returns
        -------
        self : object
            The fitted calibrator.
        """
        validate_params(self)
        if self.model is None:
            return self._fit_logits_masked(X, y, sample_weight)
        source = self._input_source(X, y, sample_weight)
        if source.is_stream:
            return self._fit_stream(source)
        data = source.read()  # inputs, labels and weights checked before any forward pass
        clean = run_module(self.model, data.values, batch_size=self.batch_size)
        labels, weights = self._record_model_fit(source, data, clean, data.values)
        self.n_masks_ = resolve_n_masks(self.n_masks, labels.shape[0])
        seed = draw_seed(self.random_state)
        draw = partial(self._draw_input_masks, data.values, torch.Generator(device=clean.device))
        return self._fit_drawn(partial(draw, seed), clean, labels, weights, seed)

    def _input_source(self, X, y, sample_weight) -> BatchSource:
        """Return the batch source of the model's inputs (with their labels and weights)."""
        return BatchSource(
            X,
            y,
            sample_weight,
            kind="inputs",
            owner=f"{type(self).__name__}.fit",
            estimator=self,
            min_classes=self._min_classes,
            scale_rows=self.batch_size,
        )

    def _fit_logits_masked(self, X, y, sample_weight):
        """Fit without a model: logit masks of the logits (arrays, a stream, checked data)."""
        data = self._logit_source(X, y, sample_weight).read()
        logits = data.logits
        self._record_input(logits)
        self._check_label_probabilities(logits, data.labels)
        self.n_masks_ = resolve_n_masks(self.n_masks, len(data))
        seed = draw_seed(self.random_state)
        generator = torch.Generator(device=logits.values.device)

        def draw(ratio):
            generator.manual_seed(seed)  # the same seed at every call: nested masks
            return mask_logits(logits.values, ratio, n_masks=self.n_masks_, generator=generator)

        return self._fit_drawn(draw, logits.values, data.labels, data.weights, seed)

    def _draw_input_masks(self, inputs, generator, seed, ratio):
        """Return the logits of ``n_masks_`` masked copies of ``inputs`` at ``ratio``.

        The same seed at every call: masks are nested across ratios (see ``_auto_ratio``).
        """
        generator.manual_seed(seed)
        return run_module(
            self.model,
            inputs,
            batch_size=self.batch_size,
            transform=partial(mask_inputs, mask_ratio=ratio, generator=generator),
            n_repeats=self.n_masks_,
        )

    def _record_model_fit(self, source, data: Chunk, clean, first_inputs):
        """Check and record what the clean forward pass tells; return labels and weights.

        The labels against the model's columns, the kind of its outputs, the fitted input
        attributes; the labels and weights come back on the logits' device.
        """
        source.check_classes(data.labels, clean.shape[1])
        check_output_kind(clean, type(self).__name__, shift_invariant=self._shift_invariant)
        # With a model, the number of classes comes from its output.
        self._record_input(Logits(clean, False, clean.shape[1]))
        record_input_shape(self, first_inputs)
        labels = as_tensor(data.labels, device=clean.device)
        weights = None if data.weights is None else as_tensor(data.weights, device=clean.device)
        return labels, weights

    def _fitted_map(self):
        return self.calibrator_

    def _fit_drawn(self, draw, clean, labels, weights, seed):
        """Choose the ratio (or take it), then fit the map on the masked logits of ``draw``."""
        n_samples = labels.shape[0]
        chosen = None
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
        self.masked_accuracy_ = (
            chosen.accuracy
            if self.mask_ratio == "auto"
            else masked_accuracy(values, labels, weights)
        )
        return self._fit_masked(values, all_labels, all_weights)

    def _fit_stream(self, source: BatchSource):
        """Fit from a stream of ``(X, y[, sample_weight])`` batches (see :mod:`._stream`)."""
        stream = MaskedStream(
            self.model,
            source,
            batch_size=self.batch_size,
            owner=type(self).__name__,
            ratios=self._ratios_in_first_pass(),
            n_masks=self.n_masks,
        )
        seed = draw_seed(self.random_state)
        clean, first_inputs = stream.first_pass(seed)
        labels, weights = self._record_model_fit(source, clean, clean.values, first_inputs)
        self.n_masks_ = stream.n_masks_
        return self._fit_drawn(stream.draw, clean.values, labels, weights, seed)

    def _ratios_in_first_pass(self) -> tuple:
        """Return the ratios whose masked logits are needed whatever the logits turn out to be."""
        if self.mask_ratio == "auto":
            return () if self.regime == "training" else HELD_OUT_RATIOS[1:]
        return () if self.mask_ratio == 0 else (float(self.mask_ratio),)

    @abstractmethod
    def _fit_masked(self, values, labels, weights):
        """Fit the calibration map on masked logits (rows draw after draw); return ``self``."""

    @abstractmethod
    def _fold_nll(
        self, fit_logits, fit_labels, fit_weights, test_logits, test_labels, test_weights
    ):
        """Cross-fitting score of the held-out rule: fit on one part, weighted NLL on the other."""

    def fit_batches(self, batches):
        """Fit on calibration data that arrive in batches: :meth:`fit` on a stream.

        One pass over ``batches`` computes the logits of the clean inputs and of their masked
        copies (the inputs of a batch are masked for every copy and every candidate ratio
        while the batch is in memory, and only logits are kept); the solver then runs on those
        logits, exactly as :meth:`fit` does on arrays. With the same samples in the same order
        and batches of ``batch_size`` samples, the result equals ``fit(X, y)`` on the
        concatenated data bit for bit on a CPU. The half-accuracy rule of the training regime
        picks each ratio from the previous one, so it reads the stream again per step; see the
        user guide.

        Parameters
        ----------
        batches : iterable or callable
            ``(X, y)`` or ``(X, y, sample_weight)`` batches: a ``DataLoader``, a list, an
            iterator, or a function without arguments that returns a new iterator of them.

        Returns
        -------
        self : object
            The fitted calibrator.
        """
        if callable(batches) and not isinstance(batches, Iterable):
            batches = RestartableBatches(batch_passes(batches))
        if not is_batches(batches):
            raise TypeError(
                f"batches must be a DataLoader, a list of (X, y) batches, an iterator or a "
                f"function returning one; got a {type(batches).__name__}. Use fit(X, y) for "
                "arrays."
            )
        return self.fit(batches)

    def _prediction_logits(self, X) -> Logits:
        if self.model is None:
            return super()._prediction_logits(X)
        check_is_fitted(self)
        inputs = BatchSource(X, kind="inputs", with_labels=False).read().values
        values = run_module(
            self.model, check_fitted_shape(inputs, self), batch_size=self.batch_size
        )
        return self._check_model_columns(values)

    def _stream_prediction_logits(self, batches):
        if self.model is None:
            return super()._stream_prediction_logits(batches)
        check_is_fitted(self)
        values, reference = stream_logits(
            self.model,
            batches,
            check=lambda inputs: check_fitted_shape(inputs, self),
            batch_size=self.batch_size,
        )
        return self._check_model_columns(values), reference

    def _check_model_columns(self, values) -> Logits:
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
