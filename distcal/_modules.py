"""Running a torch module over inputs in batches to collect its logits.

The primitive that calibration (a ``model=`` parameter), distillation students and the
diagnostics share.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._device import module_device
from ._validation import check_inputs

__all__ = ["module_logits"]


def _input_dtype(module: torch.nn.Module) -> torch.dtype:
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


def module_logits(
    module: torch.nn.Module,
    X,
    *,
    batch_size: int,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    n_repeats: int = 1,
    name: str = "model",
) -> torch.Tensor:
    """Return ``module``'s logits for ``X``, computed in batches on the module's own device.

    The module runs in eval mode and without gradients; its previous mode is restored afterwards.
    Only the logits of each batch are kept, never activations.

    Parameters
    ----------
    module : torch.nn.Module
        A network mapping a batch of shape (batch, ...) to logits of shape (batch, n_classes).
    X : array-like or Tensor of shape (n_samples, ...)
        Inputs; numpy arrays are converted batch by batch to the module's dtype and device.
    batch_size : int
        Samples per forward pass.
    transform : callable, default=None
        Applied to each batch on the module's device before the forward pass (masking, for
        instance).
    n_repeats : int, default=1
        Passes over ``X``; with a random ``transform`` each pass draws anew. Rows of the result
        are ordered pass after pass.
    name : str, default="model"
        The parameter's name, used in error messages.

    Returns
    -------
    Tensor of shape (n_repeats * n_samples, n_classes)
        Logits on the module's device.
    """
    inputs = check_inputs(X)
    device = module_device(module)
    dtype = _input_dtype(module)
    n_samples = inputs.shape[0]
    was_training = module.training
    module.eval()
    outputs = []
    try:
        with torch.no_grad():
            for _ in range(n_repeats):
                for start in range(0, n_samples, batch_size):
                    batch = inputs[start : start + batch_size].to(device=device, dtype=dtype)
                    if transform is not None:
                        batch = transform(batch)
                    output = _check_output(module(batch), batch.shape[0], outputs, name)
                    _check_finite(output, start, name)
                    outputs.append(output)
    finally:
        module.train(was_training)
    return torch.cat(outputs)


def _check_finite(output: torch.Tensor, start: int, name: str) -> None:
    finite = torch.isfinite(output).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        raise ValueError(
            f"{name} returned NaN or infinite logits for {bad.numel()} of {output.shape[0]} "
            f"inputs of a batch (the first at input {start + int(bad[0])}); no calibration or "
            "prediction can be made from them. Check the model on those inputs (or the inputs "
            "themselves)."
        )


def _check_output(output, n_rows: int, previous: list, name: str) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise TypeError(
            f"{name} must return a Tensor of logits of shape (batch_size, n_classes); it returned "
            f"a {type(output).__name__}."
        )
    if output.ndim != 2 or output.shape[0] != n_rows:
        raise ValueError(
            f"{name} must return logits of shape (batch_size, n_classes) = ({n_rows}, n_classes); "
            f"it returned shape {tuple(output.shape)}."
        )
    if output.shape[1] < 2:
        raise ValueError(
            f"{name} must return at least 2 logit columns (one per class); it returned shape "
            f"{tuple(output.shape)}. For a binary model with one output z, wrap it to return "
            "torch.cat([torch.zeros_like(z), z], dim=1)."
        )
    if previous and output.shape[1] != previous[0].shape[1]:
        raise ValueError(
            f"{name} returned {output.shape[1]} logit columns for one batch and "
            f"{previous[0].shape[1]} for another."
        )
    return output.detach()
