"""Random masks, the primitive that calibration (MTS) and distillation (MDT) share.

Inputs are masked element by element (:func:`mask_inputs`); logits, when no model is at hand,
entry by entry towards their row's mean (:func:`mask_logits`). Both draw from an explicit
:class:`torch.Generator`; neither touches global state.

Each is a *draw* (:func:`draw_uniforms`: one uniform per element) and an *apply*
(:func:`apply_input_mask`, :func:`apply_logit_mask`: threshold the uniforms at the ratio).
Masking in memory (``fit(X, y)``) draws and applies at once; a stream of batches draws a
batch's uniforms once and applies them at every ratio it needs. Both go through the same two
functions, so they mask alike by construction.
"""

from __future__ import annotations

import torch

__all__ = ["apply_input_mask", "apply_logit_mask", "draw_uniforms", "mask_inputs", "mask_logits"]


def draw_uniforms(shape, *, generator: torch.Generator, device) -> torch.Tensor:
    """Draw the uniforms of a mask: one per element, from ``generator``, on ``device``."""
    return torch.rand(shape, generator=generator, device=device)


def apply_input_mask(
    x: torch.Tensor, uniforms: torch.Tensor, mask_ratio: float, *, kind: str = "zero"
) -> torch.Tensor:
    """Mask the elements of ``x`` whose uniform lies below ``mask_ratio`` (see :func:`mask_inputs`).

    The same uniforms thresholded at a larger ratio mask a superset: masks are nested.
    """
    keep = uniforms >= mask_ratio
    if kind == "zero":
        return x * keep.to(x.dtype)
    if kind == "mean":
        channel_mean = x.mean(dim=(0, *range(2, x.ndim)), keepdim=True)
        return torch.where(keep, x, channel_mean)
    raise ValueError(f"kind must be 'zero' or 'mean'; got {kind!r}.")


def apply_logit_mask(
    logits: torch.Tensor, uniforms: torch.Tensor, mask_ratio: float
) -> torch.Tensor:
    """Replace the logits whose uniform lies below ``mask_ratio`` by their row's mean."""
    row_mean = logits.mean(dim=1, keepdim=True)
    return torch.where(uniforms < mask_ratio, row_mean, logits)


def mask_inputs(
    x: torch.Tensor, mask_ratio: float, *, generator: torch.Generator, kind: str = "zero"
) -> torch.Tensor:
    """Mask each element of each sample independently with probability ``mask_ratio``.

    This is the masking of Masked Temperature Scaling (Zhu et al., ICCV 2023): one Bernoulli draw
    per input element (every channel of every pixel on its own), no ``1 / (1 - p)`` rescaling of
    the elements that are kept.

    Parameters
    ----------
    x : Tensor of shape (n_samples, ...)
        A batch of inputs; the mask is drawn on its device.
    mask_ratio : float
        Probability in [0, 1) that an element is zeroed.
    generator : torch.Generator
        Source of randomness, on the device of ``x``.
    kind : {"zero", "mean"}, default="zero"
        The value a masked element takes: 0 (the paper's masking, used by Masked Temperature
        Scaling), or the per-channel mean of the batch ``x`` (dimension 1 is the channel).

    Returns
    -------
    Tensor
        A masked copy of ``x``; ``x`` itself is not modified.
    """
    uniforms = draw_uniforms(x.shape, generator=generator, device=x.device)
    return apply_input_mask(x, uniforms, mask_ratio, kind=kind)


def mask_logits(
    logits: torch.Tensor, mask_ratio: float, *, n_masks: int, generator: torch.Generator
) -> torch.Tensor:
    """Mask logits: each entry is replaced, with probability ``mask_ratio``, by its row's mean.

    This is the logit-space stand-in for input masking, for users who only have logits. A masked
    entry takes the mean logit of its (unmasked) row: it then carries no evidence for or against
    its class relative to the others, and the operation commutes with adding a constant to a
    row, as the softmax does. (Replacing by 0 would not: ``[10, 11, 12]`` and ``[0, 1, 2]``
    give the same probabilities but would mask differently.) Each of ``n_masks`` draws masks
    every row independently; the draws are stacked, draw after draw.

    Parameters
    ----------
    logits : Tensor of shape (n_samples, n_classes)
        Logits of clean inputs; each row is masked towards its own mean.
    mask_ratio : float
        Probability in [0, 1) that an entry is masked.
    n_masks : int
        Number of independent masked copies of each row.
    generator : torch.Generator
        Source of randomness, on the device of ``logits``.

    Returns
    -------
    Tensor of shape (n_masks * n_samples, n_classes)
        Rows ``d * n_samples + i`` hold draw ``d`` of sample ``i``.
    """
    repeated = logits.repeat(n_masks, 1)
    uniforms = draw_uniforms(repeated.shape, generator=generator, device=logits.device)
    return apply_logit_mask(repeated, uniforms, mask_ratio)
