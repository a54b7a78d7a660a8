"""InputMasker: masking as a scikit-learn transformer step.

The masks themselves are drawn by ``distcal._masking``, which distillation shares.
"""

from __future__ import annotations

import numbers

from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._device import like, make_generator
from .._masking import mask_inputs
from .._params import Interval, validate_params
from .._validation import check_input_shape, check_inputs, record_input_shape

__all__ = ["InputMasker"]


class InputMasker(TransformerMixin, BaseEstimator):
    """Mask inputs while fitting, pass them through unchanged afterwards.

    ``fit_transform`` zeroes each element of each sample independently with probability
    ``mask_ratio`` (one draw per sample, no rescaling), as Masked Temperature Scaling does to
    its calibration inputs; ``transform`` returns ``X`` as it is. In a Pipeline, the steps after
    it are therefore fitted on masked inputs and predict on clean ones::

        Pipeline([("mask", InputMasker(0.3)), ("logits", LogitTransformer(net)),
                  ("ts", TemperatureScaling())])

    fits a temperature on the logits of masked inputs and calibrates clean ones with it, which is
    :class:`MaskedTemperatureScaling` with ``n_masks=1``.

    Parameters
    ----------
    mask_ratio : float, default=0.5
        Probability in [0, 1) that an element is zeroed during ``fit_transform``.
    random_state : int, RandomState instance or None, default=None
        Seeds the masks; the same value gives the same masks.

    Attributes
    ----------
    input_shape_ : tuple of int
        Shape of one sample seen in ``fit``.
    n_features_in_ : int
        Number of features, when the inputs seen in ``fit`` were 2-D.

    See Also
    --------
    mask_inputs : The masking function.
    MaskedTemperatureScaling : Masking and temperature scaling in one estimator.

    Examples
    --------
    >>> import numpy as np
    >>> from distcal import InputMasker
    >>> X = np.ones((2, 6))
    >>> InputMasker(mask_ratio=0.5, random_state=0).fit_transform(X)
    array([[1., 0., 0., 1., 1., 1.],
           [1., 1., 1., 0., 0., 0.]])
    >>> InputMasker(mask_ratio=0.5).fit(X).transform(X) is X
    True
    """

    _parameter_constraints = {
        "mask_ratio": [Interval(numbers.Real, 0.0, 1.0, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(self, mask_ratio=0.5, *, random_state=None):
        self.mask_ratio = mask_ratio
        self.random_state = random_state

    def fit(self, X, y=None):
        """Record the input shape.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Inputs.
        y : None
            Ignored.

        Returns
        -------
        self : InputMasker
            The fitted transformer.
        """
        validate_params(self)
        record_input_shape(self, check_inputs(X))
        return self

    def fit_transform(self, X, y=None):
        """Fit, then return a masked copy of ``X``.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Inputs.
        y : None
            Ignored.

        Returns
        -------
        ndarray or Tensor of the shape of ``X``
            ``X`` with each element zeroed with probability ``mask_ratio``.
        """
        validate_params(self)
        inputs = check_inputs(X)
        record_input_shape(self, inputs)
        generator = make_generator(self.random_state, inputs.device)
        return like(mask_inputs(inputs, self.mask_ratio, generator=generator), X)

    def transform(self, X):
        """Return ``X`` unchanged: masking applies only while fitting.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Inputs, shaped like those seen in ``fit``.

        Returns
        -------
        X : ndarray or Tensor
            The input itself, unchanged.
        """
        check_is_fitted(self)
        check_input_shape(X, self)
        return X

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
