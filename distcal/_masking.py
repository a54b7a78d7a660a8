"""Random masks, the primitive that calibration (MTS) and distillation (MDT) share.

Inputs are masked element by element (:func:`mask_inputs`); logits, when no model is at hand,
entry by entry towards their row's mean (:func:`mask_logits`). Both draw from an explicit
:class:`torch.Generator`; neither touches global state.
"""

from __future__ import annotations

import torch

__all__ = ["mask_inputs", "mask_logits"]


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
    keep = torch.rand(x.shape, generator=generator, device=x.device) >= mask_ratio
    if kind == "zero":
        return x * keep.to(x.dtype)
    if kind == "mean":
        channel_mean = x.mean(dim=(0, *range(2, x.ndim)), keepdim=True)
        return torch.where(keep, x, channel_mean)
    raise ValueError(f"kind must be 'zero' or 'mean'; got {kind!r}.")


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
        The clean logits (not modified).
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
    row_mean = repeated.mean(dim=1, keepdim=True)
    masked = torch.rand(repeated.shape, generator=generator, device=logits.device) < mask_ratio
    return torch.where(masked, row_mean, repeated)
