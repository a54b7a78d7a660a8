"""Masked Temperature Scaling (Zhu et al., ICCV 2023)."""

from __future__ import annotations

import numbers
import warnings
from functools import partial

import torch
from sklearn.utils.validation import check_is_fitted

from .._device import make_generator, module_device
from .._validation import (
    Interval,
    Logits,
    Options,
    check_input_shape,
    check_inputs,
    check_logits,
    record_input_shape,
    validate_params,
)
from ..exceptions import DistcalWarning
from ._masking import mask_inputs, mask_logits
from ._model import module_logits
from ._temperature import TemperatureScaling

# Ratios tried, in this order, by mask_ratio="auto".
AUTO_RATIOS = tuple(round(0.05 * k, 2) for k in range(1, 20))


def _half_accuracy(n_classes: int) -> float:
    """Halfway between perfect accuracy and chance: the target of mask_ratio='auto'."""
    return (1 + 1 / n_classes) / 2


class MaskedTemperatureScaling(TemperatureScaling):
    """Temperature scaling fitted on masked calibration data.

    Networks trained on distilled data are over-confident, and on the calibration data they were
    trained on their logits separate the classes perfectly, so plain temperature scaling has no
    optimum (or a useless one). Masked Temperature Scaling fits the temperature by NLL on
    *masked* calibration inputs, in which each element is zeroed independently with probability
    ``mask_ratio`` (one mask per sample and draw, no ``1 / (1 - p)`` rescaling). Predictions are
    made on clean inputs divided by that temperature.

    Two modes:

    - ``model`` given: ``X`` are model inputs. They are masked as in the paper, the model runs in
      eval mode without gradients in batches of ``batch_size`` on its own device, and only its
      logits are kept. ``predict_proba(X)`` runs the model on clean inputs.
    - ``model=None``: ``X`` are logits and masking happens in logit space: each entry is
      replaced, with probability ``mask_ratio``, by the mean logit of its row (see
      :func:`~distcal.calibration.mask_logits`). This is a stand-in for users who only have
      logits; ``benchmarks/bench_logit_masking.py`` measures how closely it follows input
      masking.

    With ``mask_ratio=0`` the fit is exactly :class:`TemperatureScaling` on the clean logits.

    Parameters
    ----------
    mask_ratio : float or "auto", default="auto"
        Probability in [0, 1) that an input element (or, with ``model=None``, a logit) is
        masked. With held-out data, choose it there, for instance with ``GridSearchCV`` and
        :data:`~distcal.metrics.neg_ece_scorer`. ``"auto"``, the default, is for the strict
        regime, where the only calibration data is the data the model was trained on: the
        *half-accuracy rule* takes the smallest ratio of 0.05, 0.10, ..., 0.95 at which the
        accuracy on the masked calibration data falls to ``(1 + 1 / n_classes) / 2``, halfway
        between perfect and chance, and fits the temperature on those masked logits (a warning
        says so when no ratio gets there, and 0.95 is used). On students of distilled digits
        and Fashion-MNIST it lowered the test ECE below the uncalibrated one in every case,
        where the paper's fixed ratio 0.1 tripled it on Fashion-MNIST; on digits 0.1 did
        better. It was evaluated with a ``model`` (input masking); in logit space the same
        rule runs unevaluated. The documentation's results page has the numbers.
    n_masks : int, default=1
        Independent masked copies of each calibration sample; more copies lower the variance of
        the fitted temperature at the cost of more forward passes.
    model : torch.nn.Module or None, default=None
        A trained network mapping inputs (batch, ...) to logits (batch, n_classes). It is a
        parameter: ``clone`` and ``get_params`` copy and return it, as skorch does with modules.
    batch_size : int, default=256
        Samples per forward pass of ``model``.
    input_type : {"logits", "probabilities"}, default="logits"
        With ``model=None``, what ``X`` holds (see :class:`TemperatureScaling`).
    random_state : int, RandomState instance or None, default=None
        Seeds the masks; the same value gives the same temperature.
    tol : float, default=1e-6
        Convergence tolerance on ``log(T)``.
    max_iter : int, default=100
        Maximum number of passes of the temperature solver.

    Attributes
    ----------
    temperature_ : float
        The temperature fitted on masked calibration data.
    mask_ratio_ : float
        The mask ratio used: ``mask_ratio``, or the one ``"auto"`` chose.
    masked_accuracy_ : float
        Weighted accuracy of the model on the masked calibration data at ``mask_ratio_``.
    nll_ : float
        Weighted mean NLL of the masked calibration data at ``temperature_``.
    n_iter_ : int
        Passes of the temperature solver.
    converged_ : bool
        Whether the solver reached a finite optimum within ``tol``.
    classes_ : ndarray of shape (n_classes,)
        ``arange(n_classes)``.
    n_features_in_ : int
        Number of logit columns (``model=None``) or of input features (2-D inputs with a model).
    input_shape_ : tuple of int
        With a model, the shape of one input sample seen in ``fit``.

    See Also
    --------
    TemperatureScaling : The unmasked calibrator.
    InputMasker, LogitTransformer : The same method as Pipeline steps.

    References
    ----------
    .. [1] D. Zhu, B. Lei, J. Zhang, Y. Fang, Y. Xie, R. Zhang and D. Xu, "Rethinking Data
       Distillation: Do Not Overlook Calibration", ICCV 2023, arXiv:2307.12463.

    Examples
    --------
    A network that scores digits by their overlap with each class's mean image:

    >>> import torch
    >>> from distcal import MaskedTemperatureScaling
    >>> from distcal.distill import load_digits
    >>> data = load_digits()
    >>> X, y = data.images, data.labels
    >>> templates = torch.stack([X[y == k].mean(dim=0).flatten() for k in range(10)])
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10, bias=False))
    >>> with torch.no_grad():
    ...     _ = net[1].weight.copy_(templates)
    >>> mts = MaskedTemperatureScaling(mask_ratio=0.3, model=net, random_state=0)
    >>> round(mts.fit(X[:500], y[:500]).temperature_, 4)
    0.2474
    >>> mts.predict_proba(X[500:]).shape
    torch.Size([1297, 10])
    """

    _parameter_constraints = {
        **TemperatureScaling._parameter_constraints,
        "mask_ratio": [Interval(numbers.Real, 0.0, 1.0, closed="left"), Options("auto")],
        "n_masks": [Interval(numbers.Integral, 1, None, closed="left")],
        "model": [None, "module"],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        mask_ratio="auto",
        *,
        n_masks=1,
        model=None,
        batch_size=256,
        input_type="logits",
        random_state=None,
        tol=1e-6,
        max_iter=100,
    ):
        super().__init__(input_type=input_type, tol=tol, max_iter=max_iter)
        self.mask_ratio = mask_ratio
        self.n_masks = n_masks
        self.model = model
        self.batch_size = batch_size
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None):
        """Fit the temperature on masked calibration data.

        Parameters
        ----------
        X : array-like or Tensor
            With ``model``: inputs of shape (n_samples, ...). Without: logits of shape
            (n_samples, n_classes), or 1-D binary decision values.
        y : array-like or Tensor of shape (n_samples,)
            Labels: integers in ``[0, n_classes)``.
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weights, applied to every masked copy of a sample.

        Returns
        -------
        self : MaskedTemperatureScaling
            The fitted calibrator.
        """
        validate_params(self)
        if self.model is None:
            logits = check_logits(X, input_type=self.input_type)
            self._record_input(logits)
            labels, weights = self._validate_targets(y, sample_weight, logits.values)
            clean = logits.values
            device = clean.device

            def draw(ratio, generator):
                if ratio == 0:
                    return clean
                return mask_logits(clean, ratio, n_masks=self.n_masks, generator=generator)

        else:
            inputs = check_inputs(X)
            device = module_device(self.model)
            labels = weights = None

            def draw(ratio, generator):
                transform = (
                    None
                    if ratio == 0
                    else partial(mask_inputs, mask_ratio=ratio, generator=generator)
                )
                return module_logits(
                    self.model,
                    inputs,
                    batch_size=self.batch_size,
                    transform=transform,
                    n_repeats=1 if ratio == 0 else self.n_masks,
                )

        generator = make_generator(self.random_state, device)
        auto = self.mask_ratio == "auto"
        for ratio in AUTO_RATIOS if auto else (self.mask_ratio,):
            values = draw(ratio, generator)
            if labels is None:  # with a model, the number of classes comes from its output
                self._record_input(Logits(values, False, values.shape[1]))
                record_input_shape(self, inputs)
                labels, weights = self._validate_targets(
                    y, sample_weight, values[: inputs.shape[0]]
                )
            n_draws = values.shape[0] // labels.shape[0]
            all_labels = labels.repeat(n_draws)
            all_weights = None if weights is None else weights.repeat(n_draws)
            correct = (values.argmax(dim=1) == all_labels).to(torch.float64)
            self.masked_accuracy_ = float(
                correct.mean()
                if all_weights is None
                else (correct @ all_weights) / all_weights.sum()
            )
            if auto and self.masked_accuracy_ <= _half_accuracy(len(self.classes_)):
                break
        else:
            if auto:
                warnings.warn(
                    f"{type(self).__name__}(mask_ratio='auto'): the accuracy on masked "
                    f"calibration data stayed at {self.masked_accuracy_:.3f}, above "
                    f"{_half_accuracy(len(self.classes_)):.3f}, up to the largest ratio "
                    f"{ratio}; that ratio is used. The model is unusually robust to masking.",
                    DistcalWarning,
                    stacklevel=2,
                )
        self.mask_ratio_ = float(ratio)
        return self._fit_logits(values, all_labels, all_weights)

    def fit_batches(self, batches):
        """Not available: masked temperature scaling does not fit from a stream of batches.

        The temperature solver reads its data several times, and the masks of a stream would be
        drawn anew on every pass (and in another order when the batches are shuffled), so the
        passes would not see the same data. Fit in memory with :meth:`fit`, or mask the
        calibration data once, store the logits of the masked inputs, and stream those into
        :meth:`TemperatureScaling.fit_batches`.

        Raises
        ------
        TypeError
            Always.
        """
        raise TypeError(
            f"{type(self).__name__}.fit_batches is not available: the solver reads the "
            "batches several times and the masks would differ between passes. Use fit(X, y), "
            "or compute the logits of masked inputs once and pass them to "
            "TemperatureScaling().fit_batches."
        )

    def _prediction_logits(self, X) -> Logits:
        if self.model is None:
            return super()._prediction_logits(X)
        check_is_fitted(self)
        inputs = check_input_shape(X, self)
        values = module_logits(self.model, inputs, batch_size=self.batch_size)
        if values.shape[1] != len(self.classes_):
            raise ValueError(
                f"model returned {values.shape[1]} logit columns, but {type(self).__name__} was "
                f"fitted with {len(self.classes_)}."
            )
        return Logits(values, False, values.shape[1])

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None and self.mask_ratio > 0
        return tags
