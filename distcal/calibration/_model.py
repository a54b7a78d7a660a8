"""Running a torch model over inputs in batches to collect its logits."""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._device import PortablePickleMixin, like, module_device
from .._validation import (
    Interval,
    check_input_shape,
    check_inputs,
    record_input_shape,
    validate_params,
)

__all__ = ["LogitTransformer", "module_logits"]


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
                    outputs.append(_check_output(module(batch), batch.shape[0], outputs, name))
    finally:
        module.train(was_training)
    return torch.cat(outputs)


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


class LogitTransformer(PortablePickleMixin, TransformerMixin, BaseEstimator):
    """Turn model inputs into logits with a trained torch module, in a Pipeline.

    ``fit`` records the input shape and leaves the module untouched (it is already trained);
    ``transform`` runs it in eval mode without gradients, in batches on its own device.

    Parameters
    ----------
    module : torch.nn.Module
        A trained network mapping inputs of shape (batch, ...) to logits (batch, n_classes).
        It is a parameter, so ``clone`` copies it and ``get_params`` returns it.
    batch_size : int, default=256
        Samples per forward pass.

    Attributes
    ----------
    input_shape_ : tuple of int
        Shape of one sample seen in ``fit``.
    n_features_in_ : int
        Number of features, when the inputs seen in ``fit`` were 2-D.

    See Also
    --------
    InputMasker : Masks inputs during ``fit_transform`` only.
    TemperatureScaling : Calibrates the logits this transformer produces.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from distcal import LogitTransformer
    >>> net = torch.nn.Linear(4, 3)
    >>> logits = LogitTransformer(net).fit_transform(np.ones((5, 4), dtype=np.float32))
    >>> logits.shape
    (5, 3)
    """

    _parameter_constraints = {
        "module": ["module"],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, module, *, batch_size=256):
        self.module = module
        self.batch_size = batch_size

    def fit(self, X, y=None):
        """Record the input shape; the module is already trained.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Model inputs.
        y : None
            Ignored.

        Returns
        -------
        self : LogitTransformer
        """
        validate_params(self)
        record_input_shape(self, check_inputs(X))
        return self

    def transform(self, X):
        """Return the module's logits for ``X``.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Model inputs, shaped like those seen in ``fit``.

        Returns
        -------
        ndarray or Tensor of shape (n_samples, n_classes)
            Logits, in the container and on the device of ``X``.
        """
        check_is_fitted(self)
        inputs = check_input_shape(X, self)
        return like(module_logits(self.module, inputs, batch_size=self.batch_size), X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        # The logits come out in the module's dtype, whatever the dtype of the inputs.
        tags.transformer_tags.preserves_dtype = []
        return tags
