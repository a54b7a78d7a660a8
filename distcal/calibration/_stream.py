"""Masked logits from a stream of batches: one pass, memory bounded by the logits.

A masked calibrator given a ``DataLoader`` (or any stream of ``(X, y[, sample_weight])``
batches) must see the same masked logits as :meth:`fit` on the concatenated arrays, without
holding the inputs. :class:`MaskedStream` reads the stream once; while a batch is in memory it
computes the clean logits and, for every masked copy ``d`` and every ratio known to be needed,
the logits of the masked batch. Only logits are kept: ``n_samples x n_classes`` values per
logit set (the clean set plus ``n_masks`` per ratio).

**The same masks as fit(X, y).** In-memory fitting draws the uniforms of copy ``d`` of sample
``i`` from one generator seeded with the fit's seed, at stream position ``(d * n + i) *
numel`` (copies one after the other, samples in order; ``numel`` is the size of one input),
and thresholds the *same* uniforms at every ratio (nested masks). Here copy ``d`` has its own
generator, started at position ``d * n * numel`` (the state after drawing that many numbers
from the seeded generator), and each batch advances it by its own size; the uniforms of a batch
are drawn once per copy and thresholded at every ratio. On a CPU, torch draws uniforms one
after another from the Mersenne Twister, so a draw of ``a`` then ``b`` numbers equals one draw
of ``a + b``: the masks do not depend on how the stream is cut into batches. The result equals
``fit(X, y)`` bit for bit when, in addition, the model runs on batches of the same size
(``batch_size`` samples; a loader batch larger than that is split into chunks of
``batch_size``), since matrix products may round differently for another batch size. (On a
GPU, the Philox generator advances in blocks, so the masks there match ``fit(X, y)`` only for
batches cut at the same places.)

Positioning copy ``d`` needs ``n``, the number of samples, before the pass: a ``DataLoader``
over a sized dataset and a list of batches know it (:func:`distcal._batches.count_samples`);
an iterator of unknown length can be used with one masked copy (``n_masks=1``) only.

The half-accuracy rule of the training regime chooses each ratio from the masked accuracy at
the previous one, so its ratios cannot be known before the pass; each of its steps reads the
stream again (a re-iterable stream is needed, in the same order: an unshuffled loader).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .._batches import count_samples, one_shot_error, unpack_batch
from .._device import as_tensor, is_tensor, module_device
from .._modules import check_input_scale, module_logits
from .._validation import check_inputs
from ._auto_ratio import resolve_n_masks

__all__ = ["MaskedStream", "RestartableBatches", "concatenate_batches"]

# Uniforms drawn per call when a generator is moved forward (bounded memory).
_ADVANCE_CHUNK = 1 << 22


class RestartableBatches:
    """An iterable whose every ``iter`` calls a function for a new iterator of batches."""

    def __init__(self, start):
        self._start = start

    def __iter__(self):
        return self._start()


def _length(values, index: int, what: str) -> int:
    shape = getattr(values, "shape", None)
    if shape is None:
        values = np.asarray(values)
        shape = values.shape
    if len(shape) == 0:
        raise ValueError(f"batches[{index}]: {what} must be an array with one row per sample.")
    return int(shape[0])


def _read(batch, index: int):
    """``(X, y, w)`` of one batch, with its lengths checked against each other."""
    X, y, w = unpack_batch(batch, index)
    n_inputs = _length(X, index, "X")
    n_labels = _length(y, index, "y")
    if n_labels != n_inputs:
        raise ValueError(
            f"batches[{index}] has {n_inputs} samples in X but {n_labels} labels in y; every "
            "batch must pair each sample with its label."
        )
    if w is not None and _length(w, index, "sample_weight") != n_inputs:
        raise ValueError(
            f"batches[{index}] has {n_inputs} samples in X but "
            f"{_length(w, index, 'sample_weight')} weights; give one weight per sample."
        )
    return X, y, w


def _concatenate(parts):
    if any(is_tensor(p) for p in parts):
        return torch.cat([as_tensor(p) for p in parts])
    return np.concatenate([np.asarray(p) for p in parts])


def concatenate_batches(batches):
    """Read a stream of ``(X, y[, sample_weight])`` batches into three arrays (logits only)."""
    xs, ys, ws = [], [], []
    for index, batch in enumerate(batches):
        X, y, w = _read(batch, index)
        if index and (w is None) != (not ws):
            raise ValueError(
                f"batches[{index}] {'has no' if w is None else 'has'} sample_weight, unlike "
                "batches[0]; give weights in every batch or in none."
            )
        xs.append(X)
        ys.append(y)
        if w is not None:
            ws.append(w)
    if not xs:
        raise ValueError("batches yielded no batch; there is nothing to fit.")
    return _concatenate(xs), _concatenate(ys), (_concatenate(ws) if ws else None)


class _NoBatch(Exception):
    """A pass over the stream read no batch (turned into the error that fits the pass)."""


def _advance(generator: torch.Generator, count: int, device) -> None:
    """Move ``generator`` forward by ``count`` uniforms, as drawing them would."""
    while count > 0:
        step = min(count, _ADVANCE_CHUNK)
        torch.rand(step, generator=generator, device=device)
        count -= step


class MaskedStream:
    """The clean and masked logits of a model over a stream of batches.

    Parameters
    ----------
    model : torch.nn.Module
        The network.
    batches : iterable
        ``(X, y[, sample_weight])`` batches.
    batch_size : int
        Largest number of samples per forward pass.
    owner : str
        The calibrator's name, for messages.
    ratios : tuple of float
        Ratios whose masked logits the first pass computes.
    n_masks : int or "auto"
        Masked copies per sample.
    """

    def __init__(self, model, batches, *, batch_size, owner, ratios, n_masks):
        self.model = model
        self.batches = batches
        self.batch_size = batch_size
        self.owner = owner
        self.ratios = tuple(ratios)
        self.n_masks = n_masks
        self.n_samples = count_samples(batches)
        self._masked: dict = {}
        self._labels = None
        self._input_shape = None

    def _copies(self) -> int:
        if self.n_samples == 0:
            raise ValueError(
                f"{self.owner}.fit: batches announces 0 samples (a DataLoader over an empty "
                "dataset?); there is nothing to fit."
            )
        if self.n_samples is None:
            if self.n_masks == "auto" or int(self.n_masks) > 1:
                raise ValueError(
                    f"{self.owner}.fit: X is a stream whose number of samples cannot be known "
                    f"before reading it (a {type(self.batches).__name__}), and "
                    f"n_masks={self.n_masks!r} needs it to draw the masks of fit(X, y). Pass a "
                    "DataLoader over a sized dataset or a list of batches, or set n_masks=1."
                )
            return 1
        return resolve_n_masks(self.n_masks, self.n_samples)

    def _generators(self, seed: int, copies: int, numel: int, device) -> list:
        generators = []
        for copy in range(copies):
            generator = torch.Generator(device=device)
            if copy == 0:
                generator.manual_seed(seed)
            else:
                generator.set_state(generators[-1].get_state())
                _advance(generator, self.n_samples * numel, device)
            generators.append(generator)
        return generators

    def _pass(self, seed: int, ratios: tuple, *, clean: bool):
        """Read the stream once; return clean logits, labels, weights and masked logits."""
        device = module_device(self.model)
        copies = self._copies() if ratios else 0
        generators = None
        clean_parts, labels, weights = [], [], []
        masked = {ratio: [[] for _ in range(copies)] for ratio in ratios}
        count = 0
        scale_warned = False
        for index, batch in enumerate(self.batches):
            X, y, w = _read(batch, index)
            inputs = check_inputs(X, name=f"batches[{index}] X")
            shape = tuple(inputs.shape[1:])
            if clean and not scale_warned:  # every batch, until one warns
                scale_warned = check_input_scale(
                    inputs[: self.batch_size], self.owner, f"batches[{index}] X"
                )
            if self._input_shape is None:
                self._input_shape = shape
                self.first_inputs = inputs[:1].clone()  # not a view: the batch may go
            elif shape != self._input_shape:
                raise ValueError(
                    f"batches[{index}] has samples of shape {shape}, but batches[0] had "
                    f"{self._input_shape}; every batch must hold inputs of one shape."
                )
            if generators is None and copies:
                generators = self._generators(seed, copies, inputs[:1].numel(), device)
            if index and (w is None) != (not weights):
                raise ValueError(
                    f"batches[{index}] {'has no' if w is None else 'has'} sample_weight, unlike "
                    "batches[0]; give weights in every batch or in none."
                )
            labels.append(as_tensor(y).reshape(-1).cpu())
            if w is not None:
                weights.append(as_tensor(w).reshape(-1).to(torch.float64).cpu())
            count += inputs.shape[0]
            for start in range(0, inputs.shape[0], self.batch_size):
                chunk = inputs[start : start + self.batch_size]
                if clean:
                    clean_parts.append(self._logits(chunk, index))
                if not copies:
                    continue
                chunk = chunk.to(device=device, dtype=self._dtype())
                for copy in range(copies):
                    uniforms = torch.rand(chunk.shape, generator=generators[copy], device=device)
                    for ratio in ratios:
                        keep = (uniforms >= ratio).to(chunk.dtype)
                        masked[ratio][copy].append(self._logits(chunk * keep, index))
        if count == 0:
            raise _NoBatch()
        if self.n_samples is not None and count != self.n_samples:
            raise ValueError(
                f"batches yielded {count} samples, but it announced {self.n_samples} (the "
                "length of its sampler or dataset); the masks are drawn for the announced count."
            )
        self.n_samples = count
        values = {
            ratio: torch.cat([torch.cat(parts) for parts in per_copy])
            for ratio, per_copy in masked.items()
        }
        labels = torch.cat(labels)
        return (
            torch.cat(clean_parts) if clean else None,
            labels,
            torch.cat(weights) if weights else None,
            values,
        )

    def _dtype(self) -> torch.dtype:
        for parameter in self.model.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
        return torch.float32

    def _logits(self, chunk: torch.Tensor, index: int) -> torch.Tensor:
        return module_logits(self.model, chunk, batch_size=self.batch_size)

    def first_pass(self, seed: int):
        """Make the one pass: return clean logits, labels, weights, a first input; keep the rest."""
        self._seed = seed
        try:
            clean, labels, weights, masked = self._pass(seed, self.ratios, clean=True)
        except _NoBatch:
            raise ValueError(
                f"{self.owner}.fit: batches yielded no batch; there is nothing to fit."
            ) from None
        self.n_masks_ = (
            self._copies() if self.ratios else resolve_n_masks(self.n_masks, self.n_samples)
        )
        self._masked = masked
        self._labels = labels
        return clean, labels.to(clean.device), weights, self.first_inputs

    def draw(self, ratio: float) -> torch.Tensor:
        """Return the masked logits at ``ratio``: kept from the first pass, or read anew."""
        ratio = float(ratio)
        if ratio in self._masked:
            return self._masked[ratio]
        if isinstance(self.batches, Iterator):
            raise TypeError(
                f"{self.owner}.fit: the training regime's half-accuracy rule needs the masked "
                f"logits at ratio {ratio:.4g}, chosen from the previous ones, so it reads the "
                "batches again; an iterator can be read only once. Pass a DataLoader or a list "
                "of batches, or a numeric mask_ratio (one pass)."
            )
        try:
            _, labels, _, masked = self._pass(self._seed, (ratio,), clean=False)
        except _NoBatch:
            why = (
                "The training regime's half-accuracy rule picks each mask ratio from the masked "
                f"accuracy at the previous one, so it reads the batches once per step (here for "
                f"ratio {ratio:.4g}); a numeric mask_ratio reads them once."
            )
            raise one_shot_error(f"{self.owner}.fit", len(self._labels), why) from None
        if not torch.equal(labels, self._labels):
            raise ValueError(
                f"{self.owner}.fit: the batches came in another order on a second pass (a "
                "DataLoader with shuffle=True?); the half-accuracy rule of the training regime "
                "reads the stream once per step and needs the same order each time. Use "
                "shuffle=False."
            )
        return masked[ratio]
