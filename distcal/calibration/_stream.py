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

import torch

from .._batches import RestartableBatches, concatenate, count_samples, one_shot_error
from .._device import as_tensor, module_device
from .._masking import apply_input_mask, draw_uniforms
from .._modules import input_dtype, run_module
from ._auto_ratio import resolve_n_masks

__all__ = ["MaskedStream", "RestartableBatches"]

# Uniforms drawn per call when a generator is moved forward (bounded memory).
_ADVANCE_CHUNK = 1 << 22


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
    source : BatchSource
        The stream, as the batch source reads it (model inputs, labels, weights).
    batch_size : int
        Largest number of samples per forward pass.
    owner : str
        The calibrator's name, for messages.
    ratios : tuple of float
        Ratios whose masked logits the first pass computes.
    n_masks : int or "auto"
        Masked copies per sample.
    """

    def __init__(self, model, source, *, batch_size, owner, ratios, n_masks):
        self.model = model
        self.source = source
        self.batch_size = batch_size
        self.owner = owner
        self.ratios = tuple(ratios)
        self.n_masks = n_masks
        self.n_samples = count_samples(source.X)
        self.n_masks_ = None
        self._masked: dict = {}
        self._labels = None
        if self.ratios:  # the masks of the first pass are placed by the copies
            self._resolve_copies()

    def _resolve_copies(self) -> int:
        """Resolve ``n_masks`` (once): it needs the number of samples, known or counted."""
        if self.n_masks_ is None:
            if self.n_samples == 0:
                raise ValueError(
                    f"{self.owner}.fit: batches announces 0 samples (a DataLoader over an empty "
                    "dataset?); there is nothing to fit."
                )
            self.n_masks_ = resolve_n_masks(
                self.n_masks, self.n_samples, owner=f"{self.owner}.fit", stream=self.source.X
            )
        return self.n_masks_

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
        """Read the stream once; return the clean logits (a chunk) and the masked logits.

        Each batch comes checked from the batch source; its inputs are masked (drawn once per
        copy, applied at every ratio) and run through the model while it is in memory.
        """
        device = module_device(self.model)
        dtype = input_dtype(self.model)
        copies = self._resolve_copies() if ratios else 0
        generators = None
        parts = []
        masked = {ratio: [[] for _ in range(copies)] for ratio in ratios}
        for chunk in self.source.chunks(allow_empty=not clean):
            inputs = chunk.values
            if generators is None and copies:
                generators = self._generators(seed, copies, inputs[:1].numel(), device)
            logits = []
            for start in range(0, inputs.shape[0], self.batch_size):
                piece = inputs[start : start + self.batch_size]
                if clean:
                    logits.append(self._logits(piece))
                if not copies:
                    continue
                piece = piece.to(device=device, dtype=dtype)
                for copy in range(copies):
                    uniforms = draw_uniforms(piece.shape, generator=generators[copy], device=device)
                    for ratio in ratios:
                        masked[ratio][copy].append(
                            self._logits(apply_input_mask(piece, uniforms, ratio))
                        )
            values = torch.cat(logits) if clean else chunk.values[:, :0]
            if self._input_shape is None:
                self._input_shape = tuple(inputs.shape[1:])
                self.first_inputs = inputs[:1].clone()  # not a view: the batch may go
            parts.append(chunk.with_values(values))
        if not parts:
            raise _NoBatch()
        joined = concatenate(parts)
        count = len(joined)
        if self.n_samples is not None and count != self.n_samples:
            raise ValueError(
                f"batches yielded {count} samples, but it announced {self.n_samples} (the "
                "length of its sampler or dataset); the masks are drawn for the announced count."
            )
        self.n_samples = count
        values = {
            ratio: torch.cat([torch.cat(pieces) for pieces in per_copy])
            for ratio, per_copy in masked.items()
        }
        return joined, values

    _input_shape = None

    def _logits(self, piece: torch.Tensor) -> torch.Tensor:
        return run_module(self.model, piece, batch_size=self.batch_size)

    def first_pass(self, seed: int):
        """Make the one pass: return the clean logits (a chunk) and a first input."""
        self._seed = seed
        try:
            clean, masked = self._pass(seed, self.ratios, clean=True)
        except _NoBatch:  # pragma: no cover - the source refuses an empty first pass
            raise ValueError(f"{self.owner}.fit: batches yielded no batch.") from None
        self._resolve_copies()
        self._masked = masked
        self._labels = clean.labels
        return clean, self.first_inputs

    def draw(self, ratio: float) -> torch.Tensor:
        """Return the masked logits at ``ratio``: kept from the first pass, or read anew."""
        ratio = float(ratio)
        if ratio in self._masked:
            return self._masked[ratio]
        if isinstance(self.source.X, Iterator):
            raise TypeError(
                f"{self.owner}.fit: the training regime's half-accuracy rule needs the masked "
                f"logits at ratio {ratio:.4g}, chosen from the previous ones, so it reads the "
                "batches again; an iterator can be read only once. Pass a DataLoader or a list "
                "of batches, or a numeric mask_ratio (one pass)."
            )
        try:
            again, masked = self._pass(self._seed, (ratio,), clean=False)
        except _NoBatch:
            why = (
                "The training regime's half-accuracy rule picks each mask ratio from the masked "
                f"accuracy at the previous one, so it reads the batches once per step (here for "
                f"ratio {ratio:.4g}); a numeric mask_ratio reads them once."
            )
            raise one_shot_error(f"{self.owner}.fit", len(self._labels), why) from None
        if not torch.equal(as_tensor(again.labels, device=self._labels.device), self._labels):
            raise ValueError(
                f"{self.owner}.fit: the batches came in another order on a second pass (a "
                "DataLoader with shuffle=True?); the half-accuracy rule of the training regime "
                "reads the stream once per step and needs the same order each time. Use "
                "shuffle=False."
            )
        return masked[ratio]
