"""Calibration metrics over a stream of batches, from summable statistics."""

from __future__ import annotations

import numbers

import torch
from sklearn.utils import Bunch

from .._batches import unpack_batch
from .._binning import MAX_BINS, bin_edges
from .._device import as_tensor
from .._distributed import agree, agree_settings, all_reduce, check_distributed
from .._params import Interval, Options, check_param
from .._validation import check_logits
from ._binned import _calibration_compute, _calibration_update
from ._inputs import _check_inputs
from ._proper import _brier_update, _nll_update

__all__ = ["CalibrationAccumulator"]


class CalibrationAccumulator:
    """Calibration metrics of data that arrives in batches, with one batch in memory at a time.

    Every metric here is a function of sums over samples: per-bin weights, confidences and
    outcomes (the binning kernel's statistics, with equal-width bins fixed in advance), the
    log-loss, the squared error and the number of correct predictions. :meth:`update` adds a
    batch's sums, :meth:`merge` adds another accumulator's (another worker's, another
    process's), and :meth:`compute` reduces them. The results equal the in-memory metrics of
    :mod:`distcal.metrics` on all the batches together, up to floating-point summation order.
    Quantile (equal-mass) bins need all the confidences at once and are not offered here.

    Parameters
    ----------
    n_bins : int, default=15
        Number of equal-width bins of the calibration errors.
    input_type : {"probabilities", "logits"}, default="probabilities"
        What the first element of a batch holds. Logits are turned into probabilities with a
        softmax per batch (for 1-D binary decision values ``z``, ``sigmoid(z)``).

    Attributes
    ----------
    n_classes_ : int or None
        Number of classes, set by the first batch.
    n_samples_ : int
        Number of samples seen.

    See Also
    --------
    distcal.metrics.expected_calibration_error : The in-memory top-label ECE.
    distcal.TemperatureScaling.fit_batches : Fitting a temperature from a stream of batches.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import CalibrationAccumulator, expected_calibration_error
    >>> rng = np.random.default_rng(0)
    >>> probs = rng.dirichlet(np.ones(4), size=1000)
    >>> y = rng.integers(0, 4, size=1000)
    >>> accumulator = CalibrationAccumulator(n_bins=10)
    >>> for start in range(0, 1000, 250):
    ...     _ = accumulator.update(probs[start : start + 250], y[start : start + 250])
    >>> metrics = accumulator.compute()
    >>> bool(np.isclose(metrics.ece, expected_calibration_error(y, probs, n_bins=10)))
    True
    >>> metrics.n_samples
    1000
    """

    _constraints = {
        "n_bins": Interval(numbers.Integral, 1, MAX_BINS, closed="both"),
        "input_type": Options("probabilities", "logits"),
    }

    def __init__(self, n_bins: int = 15, *, input_type: str = "probabilities"):
        for name, constraint in self._constraints.items():
            check_param(locals()[name], constraint, name, type(self).__name__)
        self.n_bins = int(n_bins)
        self.input_type = input_type
        self.reset()

    def reset(self) -> CalibrationAccumulator:
        """Forget every batch seen; return ``self``.

        Returns
        -------
        self : CalibrationAccumulator
            The accumulator, for chaining.
        """
        self.n_classes_ = None
        self.n_samples_ = 0
        self._top = None  # (3, 1, n_bins) per-bin sums of the top-label confidences
        self._classwise = None  # (3, n_classes, n_bins) per-bin sums of every class
        self._sums = None  # [log-loss, squared error, correct, confidence, weight]
        return self

    def update(self, preds, target, sample_weight=None) -> CalibrationAccumulator:
        """Add one batch; return ``self``.

        Parameters
        ----------
        preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
            Probabilities (or logits, with ``input_type="logits"``), numpy or torch on any
            device; the statistics are computed there and kept on the CPU in float64.
        target : array-like or Tensor of shape (n_samples,)
            Integer labels indexing the columns of ``preds``.
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : CalibrationAccumulator
            The accumulator, for chaining.
        """
        if self.input_type == "logits":
            logits = check_logits(preds, name="preds")
            values = logits.values.to(torch.float64)
            preds = torch.softmax(values, dim=1)
        probs, labels, weights = _check_inputs(preds, target, sample_weight)
        n_samples, n_classes = probs.shape
        if self.n_classes_ is not None and n_classes != self.n_classes_:
            raise ValueError(
                f"preds has {n_classes} class columns, but the earlier batches had "
                f"{self.n_classes_}; every batch must have the same classes."
            )
        edges = bin_edges(probs.new_zeros(0), self.n_bins)  # fixed: the sums add up
        top, _ = _calibration_update(
            probs,
            labels,
            weights,
            n_bins=self.n_bins,
            strategy="uniform",
            kind="top-label",
            edges=edges,
        )
        classwise, _ = _calibration_update(
            probs,
            labels,
            weights,
            n_bins=self.n_bins,
            strategy="uniform",
            kind="classwise",
            edges=edges,
        )
        nll = _nll_update(probs, labels, weights)
        brier = _brier_update(probs, labels, weights)
        # The top-label sums hold the weight, the confidence and the correct predictions.
        sums = torch.stack([nll[0], brier[0], top[2].sum(), top[1].sum(), nll[1]])
        sums, top, classwise = (
            as_tensor(t, dtype=torch.float64, device="cpu") for t in (sums, top, classwise)
        )
        if self.n_classes_ is None:
            self.n_classes_ = n_classes
            self._top, self._classwise, self._sums = top, classwise, sums
        else:
            self._top += top
            self._classwise += classwise
            self._sums += sums
        self.n_samples_ += n_samples
        return self

    def update_batches(self, batches) -> CalibrationAccumulator:
        """Add every batch of an iterable of ``(preds, target[, sample_weight])``; return ``self``.

        One pass: a generator, a ``DataLoader`` or a list all work.

        Parameters
        ----------
        batches : iterable of tuples
            Each item is ``(preds, target)`` or ``(preds, target, sample_weight)``, as
            :meth:`update` takes them.

        Returns
        -------
        self : CalibrationAccumulator
            The accumulator, for chaining.
        """
        if not hasattr(batches, "__iter__") or isinstance(batches, torch.Tensor | str | bytes):
            raise TypeError(
                "batches must be an iterable of (preds, target) or (preds, target, "
                f"sample_weight) batches; got a {type(batches).__name__}."
            )
        for index, batch in enumerate(batches):
            self.update(*unpack_batch(batch, index))
        return self

    def merge(self, other: CalibrationAccumulator) -> CalibrationAccumulator:
        """Add the statistics of another accumulator (same ``n_bins``); return ``self``.

        Parameters
        ----------
        other : CalibrationAccumulator
            An accumulator with the same ``n_bins`` (and classes, once both have seen data),
            for example one filled on another process or shard.

        Returns
        -------
        self : CalibrationAccumulator
            The accumulator, for chaining.
        """
        if not isinstance(other, CalibrationAccumulator):
            raise TypeError(
                f"other must be a CalibrationAccumulator; got a {type(other).__name__}."
            )
        if other.n_bins != self.n_bins:
            raise ValueError(
                f"Cannot merge accumulators with different bins: n_bins={self.n_bins} and "
                f"n_bins={other.n_bins}."
            )
        if other.n_classes_ is None:
            return self
        if self.n_classes_ is None:
            self.n_classes_ = other.n_classes_
            self._top = other._top.clone()
            self._classwise = other._classwise.clone()
            self._sums = other._sums.clone()
            self.n_samples_ = other.n_samples_
            return self
        if other.n_classes_ != self.n_classes_:
            raise ValueError(
                f"Cannot merge accumulators of {self.n_classes_} and {other.n_classes_} classes."
            )
        self._top += other._top
        self._classwise += other._classwise
        self._sums += other._sums
        self.n_samples_ += other.n_samples_
        return self

    def compute(self, *, distributed: bool = False) -> Bunch:
        """Return the metrics of every batch seen.

        Parameters
        ----------
        distributed : bool, default=False
            Under ``torchrun``, with a process group initialised: sum the statistics of every
            process (each has seen its own shard), so that every process returns the metrics
            of all the data. The accumulator itself is left as it was; a process may have seen
            no batch.

        Returns
        -------
        Bunch
            Floats ``ece``, ``mce`` and ``rmsce`` (top-label, l1, max and l2 norms),
            ``classwise_ece``, ``nll``, ``brier``, ``accuracy`` and ``confidence`` (mean top
            probability), weighted when sample weights were given, and ``n_samples``.
        """
        top, classwise, sums, n_samples = self._top, self._classwise, self._sums, self.n_samples_
        if distributed:
            top, classwise, sums, n_samples = self._all_reduced()
        elif self.n_classes_ is None:
            raise ValueError(
                "CalibrationAccumulator has seen no batch yet: call update (or "
                "update_batches) before compute."
            )
        log_loss, squared, correct, confidence, weight = sums.tolist()
        return Bunch(
            ece=float(_calibration_compute(top, "l1")),
            mce=float(_calibration_compute(top, "max")),
            rmsce=float(_calibration_compute(top, "l2")),
            classwise_ece=float(_calibration_compute(classwise, "l1")),
            nll=log_loss / weight,
            brier=squared / weight,
            accuracy=correct / weight,
            confidence=confidence / weight,
            n_samples=n_samples,
        )

    def _all_reduced(self):
        """Sum the statistics over every process; processes without batches add zeros."""
        caller = "CalibrationAccumulator.compute"
        check_distributed(caller)
        agree_settings({"n_bins": self.n_bins, "input_type": self.input_type}, caller)
        mine = None if self.n_classes_ is None else (self.n_classes_, self.n_bins)
        agreed = agree(mine, 2, caller, "the classes and bins (n_classes, n_bins)")
        if agreed is None:
            raise ValueError(
                "CalibrationAccumulator has seen no batch on any process: call update (or "
                "update_batches) before compute."
            )
        n_classes = int(agreed[0])
        if self.n_classes_ is None:
            top = torch.zeros(3, 1, self.n_bins, dtype=torch.float64)
            classwise = torch.zeros(3, n_classes, self.n_bins, dtype=torch.float64)
            sums = torch.zeros(5, dtype=torch.float64)
        else:
            top, classwise, sums = self._top, self._classwise, self._sums
        flat = torch.cat(
            [top.flatten(), classwise.flatten(), sums, sums.new_tensor([self.n_samples_])]
        )
        flat = all_reduce(flat)
        sizes = [top.numel(), classwise.numel(), 5, 1]
        top_sum, classwise_sum, sums_sum, n_samples = torch.split(flat, sizes)
        return (
            top_sum.reshape(top.shape),
            classwise_sum.reshape(classwise.shape),
            sums_sum,
            int(n_samples.item()),
        )

    def __repr__(self) -> str:
        return (
            f"CalibrationAccumulator(n_bins={self.n_bins}, input_type={self.input_type!r}) "
            f"with {self.n_samples_} samples"
        )
