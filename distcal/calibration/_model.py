"""LogitTransformer: a torch model as a scikit-learn transformer step (inputs to logits)."""

from __future__ import annotations

import numbers

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._batches import batch_inputs, is_batches
from .._device import PortablePickleMixin, like
from .._modules import module_logits, run_module, stream_logits
from .._params import Interval, validate_params
from .._validation import check_fitted_shape, check_input_shape, check_inputs, record_input_shape

__all__ = ["LogitTransformer", "module_logits"]


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
        X : array-like or Tensor of shape (n_samples, ...), or a stream of batches
            Model inputs (of a stream, the first batch is read for the shape).
        y : None
            Ignored.

        Returns
        -------
        self : LogitTransformer
            The fitted transformer.
        """
        validate_params(self)
        if is_batches(X):
            for batch in X:  # the first batch gives the input shape
                record_input_shape(self, check_inputs(batch_inputs(batch)))
                return self
            raise ValueError("X is a stream of batches that yielded no batch.")
        record_input_shape(self, check_inputs(X))
        return self

    def transform(self, X):
        """Return the module's logits for ``X``.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...), or a stream of batches
            Model inputs, shaped like those seen in ``fit``; or a ``DataLoader`` (or other
            stream) of input batches or ``(inputs, labels)`` pairs, whose logits are
            concatenated.

        Returns
        -------
        ndarray or Tensor of shape (n_samples, n_classes)
            Logits, in the container and on the device of ``X``.
        """
        check_is_fitted(self)
        if is_batches(X):
            logits, reference = stream_logits(
                self.module,
                X,
                check=lambda inputs: check_fitted_shape(inputs, self),
                batch_size=self.batch_size,
            )
            return like(logits, reference)
        inputs = check_input_shape(X, self)
        return like(run_module(self.module, inputs, batch_size=self.batch_size), X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        # The logits come out in the module's dtype, whatever the dtype of the inputs.
        tags.transformer_tags.preserves_dtype = []
        return tags
