"""Masked Temperature Scaling (Zhu et al., ICCV 2023): masked scaling with a temperature."""

from __future__ import annotations

import numbers

from sklearn.utils.validation import check_is_fitted

from .._params import Interval, Options
from .._softmax import softmax
from ._masked_fit import MASKING_CONSTRAINTS
from ._masked_scaling import MaskedScaling
from ._temperature import (
    TemperatureScaling,
    _warn_for_fit,
    fit_temperature,
    temperature_statistics,
)

__all__ = ["MaskedTemperatureScaling"]


class _TemperatureOnMasked:
    """What a masked fit of one temperature needs, shared by the calibrators that have one.

    :class:`MaskedTemperatureScaling` and :class:`~distcal.DistilledCalibration` both solve a
    temperature on masked logits and divide the clean logits by it; the masking is their base
    class's (``_MaskedFit``). This mixin goes first in their bases.
    """

    @property
    def calibrator_(self):
        """The fitted temperature as a :class:`TemperatureScaling` of the clean logits.

        Returns
        -------
        TemperatureScaling
            A calibrator of the clean logits with ``temperature_``, ``nll_``, ``n_iter_`` and
            ``converged_`` of this fit.
        """
        check_is_fitted(self)
        inner = TemperatureScaling(tol=self.tol, max_iter=self.max_iter)
        for key in ("temperature_", "nll_", "n_iter_", "converged_", "classes_"):
            setattr(inner, key, getattr(self, key))
        # it calibrates logits, also when this calibrator runs a model on inputs
        logit_mode = self.model is None
        inner.n_features_in_ = self.n_features_in_ if logit_mode else len(self.classes_)
        inner._binary_1d = self._binary_1d if logit_mode else False
        return inner

    def _fit_masked(self, values, labels, weights):
        # The temperature solver runs on the masked logits directly (no second validation), and
        # its warnings name the calibrator's class.
        result = fit_temperature(values, labels, weights, tol=self.tol, max_iter=self.max_iter)
        _warn_for_fit(result, type(self).__name__, self.max_iter, stacklevel=4)
        self.temperature_ = float(result.temperature)
        self.nll_ = float(result.nll)
        self.n_iter_ = int(result.n_iter)
        self.converged_ = bool(result.converged)
        return self

    @staticmethod
    def _fold_nll(fit_logits, fit_labels, fit_weights, test_logits, test_labels, test_weights):
        """Cross-fitting score of the held-out rule: fit T on one part, NLL on the other."""
        result = fit_temperature(fit_logits, fit_labels, fit_weights)
        beta = 1.0 / result.temperature
        weight_sum, loss = temperature_statistics(test_logits, test_labels, test_weights, beta)[:2]
        return float(loss / weight_sum)

    def _calibrate_logits(self, values):
        return values / self.temperature_

    def _calibrate_proba(self, values):
        return softmax(self._calibrate_logits(values))


class MaskedTemperatureScaling(_TemperatureOnMasked, MaskedScaling):
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

    It is :class:`MaskedScaling` with the calibrator fixed to a temperature: the masking, the
    ratio choice and prediction through ``model`` are MaskedScaling's; the temperature is
    solved on the masked logits with :func:`~distcal.calibration.fit_temperature`. It is not a
    :class:`TemperatureScaling` (it predicts from inputs when it has a model), and its
    ``fit`` and ``fit_batches`` take a ``DataLoader`` of ``(inputs, labels)`` batches: one pass
    computes the clean and masked logits, with the masks ``fit(X, y)`` draws (see
    :meth:`fit_batches`).

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
        data and a :class:`~distcal.exceptions.DistcalWarning` says so (pass ``regime``). A
        warning also comes when the evidence does not fit the regime: in the training regime
        (read or declared), a masked accuracy at the chosen ratio more than 0.1 from the
        target; in the held-out regime read from data with at most 5% errors, the largest
        candidate ratio winning the cross-fitting.
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
    cv_ratios_ : Tensor of shape (n_candidates,)
        The candidate ratios of the held-out rule (empty in the other cases; float64, on the
        device of the logits).
    cv_nll_ : Tensor of shape (n_candidates,)
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
    calibrator_ : TemperatureScaling
        The same fit as a calibrator of clean logits (built on access from the attributes
        above).
    classes_ : ndarray of shape (n_classes,)
        ``arange(n_classes)``.
    n_features_in_ : int
        Number of logit columns (``model=None``) or of input features (2-D inputs with a model).
    input_shape_ : tuple of int
        With a model, the shape of one input sample seen in ``fit``.

    See Also
    --------
    TemperatureScaling : The unmasked calibrator.
    MaskedScaling : Any calibrator fitted on masked data.
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

    _fitted_constraints = {
        "temperature_": [Interval(numbers.Real, 0, None, closed="neither")],
        "mask_ratio_": [Interval(numbers.Real, 0.0, 1.0, closed="left")],
    }
    _min_classes = 1
    _shift_invariant = True
    _cli_name = "mts"
    _parameter_constraints = {
        "input_type": [Options("logits", "probabilities")],
        "tol": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        **MASKING_CONSTRAINTS,
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
        self.mask_ratio = mask_ratio
        self.regime = regime
        self.n_masks = n_masks
        self.model = model
        self.batch_size = batch_size
        self.cv = cv
        self.random_state = random_state
        self.input_type = input_type
        self.tol = tol
        self.max_iter = max_iter
