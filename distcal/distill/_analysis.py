"""Diagnostics of the paper's analysis: how concentrated a network's maximum logits are.

Zhu et al. (ICCV 2023) explain why temperature scaling fails on networks trained on distilled
data by the distribution of their maximum logits: concentrated (high and narrow) on the data
they saw, so a single temperature cannot spread them; masking the inputs spreads them again.
"""

from __future__ import annotations

import torch
from sklearn.utils import Bunch

from .._device import make_generator, module_device
from .._masking import mask_inputs
from .._modules import module_logits
from ..metrics import masking_spread_ratio, max_logit_statistics

__all__ = ["masking_spread", "max_logit_statistics"]


def masking_spread(
    model: torch.nn.Module,
    X,
    *,
    mask_ratio: float = 0.3,
    n_masks: int = 1,
    batch_size: int = 256,
    random_state=None,
) -> Bunch:
    """Compare the maximum-logit statistics of a model on clean and on masked inputs.

    Parameters
    ----------
    model : torch.nn.Module
        A network mapping inputs (batch, ...) to logits.
    X : array-like or Tensor of shape (n_samples, ...)
        Inputs (for instance the distilled set the model was trained on).
    mask_ratio : float, default=0.3
        Probability that an input element is zeroed (as in masked temperature scaling).
    n_masks : int, default=1
        Masked copies of every input.
    batch_size : int, default=256
        Samples per forward pass.
    random_state : int, RandomState instance or None, default=None
        Seeds the masks.

    Returns
    -------
    Bunch
        ``clean`` and ``masked``: the :func:`max_logit_statistics` of each; ``spread_ratio``:
        the masked ``iqr`` over the clean one (above 1 when masking spreads the maximum
        logits); ``clean_logits`` and ``masked_logits``: the logits themselves, on the model's
        device, for plotting (:func:`distcal.plotting.max_logit_histogram`).
    """
    if not 0 <= mask_ratio < 1:
        raise ValueError(f"mask_ratio must be a float in [0, 1); got {mask_ratio!r}.")
    if n_masks < 1:
        raise ValueError(f"n_masks must be a positive int; got {n_masks!r}.")
    clean = module_logits(model, X, batch_size=batch_size)
    generator = make_generator(random_state, module_device(model))
    masked = module_logits(
        model,
        X,
        batch_size=batch_size,
        transform=lambda batch: mask_inputs(batch, mask_ratio, generator=generator),
        n_repeats=n_masks,
    )
    clean_stats, masked_stats = max_logit_statistics(clean), max_logit_statistics(masked)
    ratio = masking_spread_ratio(clean, masked)
    return Bunch(
        clean=clean_stats,
        masked=masked_stats,
        spread_ratio=ratio,
        clean_logits=clean,
        masked_logits=masked,
    )
