"""Masked Temperature Scaling (Zhu et al., ICCV 2023)."""

from __future__ import annotations

import numbers
from functools import partial

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from .._device import draw_seed
from .._masking import mask_inputs, mask_logits
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
from ._auto_ratio import choose_ratio, resolve_n_masks
from ._model import module_logits
from ._temperature import TemperatureScaling, fit_temperature, temperature_statistics


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
        masked. ``"auto"``, the default, first reads from the calibration data which of two
        regimes it is in (``regime_``), then chooses the ratio by that regime's rule:

        - *held-out data* (the model misclassifies more than 1% of them): the ratio of
          0, 0.1, 0.2, 0.3 and 0.5 with the lowest cross-fitted NLL (``cv`` folds: the
          temperature fitted on the masked logits of the other folds, the NLL taken on the clean
          logits of the fold). Ratio 0 is plain temperature scaling, so on held-out data the
          default does what temperature scaling does unless masking measurably helps there.
        - *training data* (the model misclassifies at most 1% of them, as a student does its
          distilled set): nothing on them can score a ratio, so the *half-accuracy rule* masks
          until the accuracy on the masked data falls to ``(1 + 1 / n_classes) / 2``, halfway
          between perfect and chance (a bisection over ratios up to 0.95 on nested masks), and
          fits the temperature there. This rule carries no information about the test data;
          the documentation's results page reports how far it lands from temperature scaling on
          held-out data.

        With between 0 and 1% errors the regime is ambiguous: the data are treated as training
        data and a :class:`~distcal.exceptions.DistcalWarning` says so (pass ``regime``).
    regime : {"auto", "held-out", "training"}, default="auto"
        What the calibration data are, for ``mask_ratio="auto"``: read from the data
        (``"auto"``), or declared. A numeric ``mask_ratio`` is used as it is in either regime.
    n_masks : int or "auto", default="auto"
        Masked copies of each calibration sample; more copies lower the variance of the fitted
        temperature at the cost of more forward passes. ``"auto"`` draws
        ``ceil(2000 / n_samples)`` copies: one for 2,000 samples or more, 20 for a distilled
        set of 100 images.
    model : torch.nn.Module or None, default=None
        A trained network mapping inputs (batch, ...) to logits (batch, n_classes). It is a
        parameter: ``clone`` and ``get_params`` copy and return it, as skorch does with modules.
    batch_size : int, default=256
        Samples per forward pass of ``model``.
    input_type : {"logits", "probabilities"}, default="logits"
        With ``model=None``, what ``X`` holds (see :class:`TemperatureScaling`).
    cv : int, default=5
        Folds of the cross-fitting of the held-out rule (``mask_ratio="auto"`` only).
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
    regime_ : {"held-out", "training"} or None
        The regime ``mask_ratio="auto"`` decided or was told; with a numeric ``mask_ratio``,
        ``regime`` unless it is "auto", else None.
    cv_ratios_ : ndarray of shape (n_candidates,)
        The candidate ratios of the held-out rule (empty in the other cases).
    cv_nll_ : ndarray of shape (n_candidates,)
        Their cross-fitted NLL, the held-out rule's criterion (empty in the other cases).
    n_masks_ : int
        Masked copies per sample that were drawn.
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
    0.2494
    >>> mts.predict_proba(X[500:]).shape
    torch.Size([1297, 10])

    With the default ``mask_ratio="auto"``, held-out data (this network misclassifies 10% of
    them) get a cross-fitted ratio, 0 (plain temperature scaling) among the candidates:

    >>> auto = MaskedTemperatureScaling(model=net, random_state=0).fit(X[:500], y[:500])
    >>> auto.regime_, auto.mask_ratio_ in (0.0, 0.1, 0.2, 0.3, 0.5)
    ('held-out', True)
    """

    _parameter_constraints = {
        **TemperatureScaling._parameter_constraints,
        "mask_ratio": [Interval(numbers.Real, 0.0, 1.0, closed="left"), Options("auto")],
        "regime": [Options("auto", "held-out", "training")],
        "n_masks": [Interval(numbers.Integral, 1, None, closed="left"), Options("auto")],
        "model": [None, "module"],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "cv": [Interval(numbers.Integral, 2, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        mask_ratio="auto",
        *,
        regime="auto",
        n_masks="auto",
        model=None,
        batch_size=256,
        input_type="logits",
        cv=5,
        random_state=None,
        tol=1e-6,
        max_iter=100,
    ):
        super().__init__(input_type=input_type, tol=tol, max_iter=max_iter)
        self.mask_ratio = mask_ratio
        self.regime = regime
        self.n_masks = n_masks
        self.model = model
        self.batch_size = batch_size
        self.cv = cv
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
        else:
            inputs = check_inputs(X)
            clean = module_logits(self.model, inputs, batch_size=self.batch_size)
            # With a model, the number of classes comes from its output.
            self._record_input(Logits(clean, False, clean.shape[1]))
            record_input_shape(self, inputs)
            labels, weights = self._validate_targets(y, sample_weight, clean)
        n_samples = labels.shape[0]
        self.n_masks_ = resolve_n_masks(self.n_masks, n_samples)
        seed = draw_seed(self.random_state)
        generator = torch.Generator(device=clean.device)

        def draw(ratio):
            # The same seed at every call: masks are nested across ratios (see _auto_ratio).
            generator.manual_seed(seed)
            if self.model is None:
                return mask_logits(clean, ratio, n_masks=self.n_masks_, generator=generator)
            return module_logits(
                self.model,
                inputs,
                batch_size=self.batch_size,
                transform=partial(mask_inputs, mask_ratio=ratio, generator=generator),
                n_repeats=self.n_masks_,
            )

        if self.mask_ratio == "auto":
            chosen = choose_ratio(
                draw,
                clean,
                labels,
                weights,
                regime=self.regime,
                n_masks=self.n_masks_,
                cv=self.cv,
                seed=seed,
                fold_nll=self._fold_nll,
                owner=type(self).__name__,
            )
            self.regime_, self.mask_ratio_ = chosen.regime, chosen.ratio
            self.cv_ratios_ = np.array(list(chosen.cv_nll), dtype=np.float64)
            self.cv_nll_ = np.array(list(chosen.cv_nll.values()), dtype=np.float64)
            values = chosen.values
        else:
            self.regime_ = None if self.regime == "auto" else self.regime
            self.mask_ratio_ = float(self.mask_ratio)
            self.cv_ratios_ = self.cv_nll_ = np.empty(0)
            values = clean if self.mask_ratio == 0 else draw(self.mask_ratio)
        n_draws = values.shape[0] // n_samples
        all_labels = labels.repeat(n_draws)
        all_weights = None if weights is None else weights.repeat(n_draws)
        correct = (values.argmax(dim=1) == all_labels).to(torch.float64)
        self.masked_accuracy_ = float(
            correct.mean() if all_weights is None else (correct @ all_weights) / all_weights.sum()
        )
        return self._fit_logits(values, all_labels, all_weights)

    @staticmethod
    def _fold_nll(fit_logits, fit_labels, fit_weights, test_logits, test_labels, test_weights):
        """Cross-fitting score of the held-out rule: fit T on one part, NLL on the other."""
        result = fit_temperature(fit_logits, fit_labels, fit_weights)
        beta = 1.0 / result.temperature
        weight_sum, loss = temperature_statistics(test_logits, test_labels, test_weights, beta)[:2]
        return float(loss / weight_sum)

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
        tags.non_deterministic = self.random_state is None and self.mask_ratio != 0
        return tags
