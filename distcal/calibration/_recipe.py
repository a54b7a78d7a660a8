"""Calibration recipes: what the maker of a distilled set measures so that students calibrate.

The maker of a distilled set still has the real data; the user of a student trained on the set
has only the set. A :class:`CalibrationRecipe` carries what the one measured to the other: proxy
students were trained on the set, temperature scaling was fitted on each proxy's logits of real
validation images, and masked temperature scaling (MTS) on the set was related to those
held-out temperatures. :class:`DistilledCalibration` applies the recipe to the user's student:
it fits MTS on the distilled images at the recipe's mask ratio (nested masks, as
:class:`~distcal.MaskedTemperatureScaling` draws them) and maps that temperature through the
recipe's log-linear map,

    ``log T = offset + slope * log T_masked(ratio)``,

which covers every method a recipe offers:

- ``"temperature"``: the proxies' held-out temperature itself (``slope = 0``; no masking);
- ``"ratio"``: MTS at the ratio where MTS reproduced the proxies' held-out temperatures
  (``offset = 0``, ``slope = 1``);
- ``"scaled"``: MTS at a fixed ratio, rescaled by the proxies' mean ratio of held-out to masked
  temperature (``slope = 1``);
- ``"predictor"``: a straight line in log space fitted across the proxies (both free).

Recipes are computed by :func:`distcal.distill.fit_calibration_recipe` (or by
``MDTTrainer(calibration_recipe=...)``) and travel inside the distilled set's file.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import asdict, dataclass, field

import torch
from sklearn.utils.validation import check_is_fitted

from .._validation import Interval, Options
from ..exceptions import DistcalWarning
from ._masked_fit import _MaskedFit
from ._persistence import parameter_type
from ._temperature import (
    TemperatureScaling,
    _warn_for_fit,
    fit_temperature,
    temperature_statistics,
)

__all__ = ["RECIPE_METHODS", "CalibrationRecipe", "DistilledCalibration"]

#: The methods a recipe offers (see the module docstring).
RECIPE_METHODS = ("temperature", "ratio", "scaled", "predictor")
#: Version of the recipe's dictionary form (:meth:`CalibrationRecipe.to_dict`).
RECIPE_VERSION = 1
#: How far (in log temperature) a student's masked temperature may lie outside the proxies'
#: range before :class:`DistilledCalibration` warns: 0.1 is a tenth of the range of masked
#: temperatures that the development seeds' recipes spanned.
COVERAGE_MARGIN = 0.1

_PROXY_KEYS = ("params", "temperature", "accuracy", "matched_ratio", "masked_temperatures")


def _canonical(value):
    """``value`` with every dict's keys in sorted order (lists and tuples as lists)."""
    if isinstance(value, dict):
        return {key: _canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def _positive(value, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where}: {name} must be a positive number; got {value!r}.")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: {name} must be a positive finite number; got {value!r}.")
    return value


def _ratio(value, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{where}: {name} must be a number in [0, 1); got {value!r}.")
    value = float(value)
    if not 0 <= value < 1:
        raise ValueError(f"{where}: {name} must be a number in [0, 1); got {value!r}.")
    return value


@parameter_type("calibration-recipe")
@dataclass(frozen=True)
class CalibrationRecipe:
    """What a distilled set's maker measured so that a student trained on it can be calibrated.

    Build one with :func:`distcal.distill.fit_calibration_recipe`; it is stored in the set's
    file (:attr:`distcal.distill.DistilledSet.recipe`) and used by
    :class:`DistilledCalibration`. Every number is in the recipe so that a user can see what
    the calibration rests on.

    Parameters
    ----------
    method : {"temperature", "ratio", "scaled", "predictor"}
        The method the maker recommends (what :class:`DistilledCalibration` uses by default).
    temperature : float
        Geometric mean of the proxies' held-out temperatures (method ``"temperature"``).
    mask_ratio : float
        Mask ratio at which MTS on the distilled set reproduces the proxies' held-out
        temperatures: the mean over proxies of each one's matched ratio (method ``"ratio"``).
    feature_ratio : float
        The fixed mask ratio of methods ``"scaled"`` and ``"predictor"``.
    scale : float
        Geometric mean over proxies of held-out temperature / MTS temperature at
        ``feature_ratio`` (method ``"scaled"``).
    intercept, slope : float
        Least-squares line of log held-out temperature on log MTS temperature at
        ``feature_ratio`` across the proxies (method ``"predictor"``).
    n_masks : int
        Masked copies of each distilled image behind every MTS temperature; a student's user
        draws as many.
    proxies : tuple of dict
        Per proxy student: ``params`` (its :class:`~distcal.distill.StudentClassifier`
        parameters), ``temperature`` (held-out), ``accuracy`` (on the validation images),
        ``matched_ratio`` (where MTS on the set gave its held-out temperature; with
        ``matched_bracket``, the search's last interval, when recorded) and
        ``masked_temperatures`` (MTS temperature at ``mask_ratio`` and at ``feature_ratio``,
        keyed ``"ratio"`` and ``"scaled"``).
    n_validation : int
        Real validation images behind the held-out temperatures.
    mask_kind : {"zero"}, default="zero"
        How a masked element is replaced (MTS's zeroing).
    images_digest : str, default=""
        SHA-256 of the distilled images and labels the recipe was computed on (see
        :func:`distilled_digest`); :class:`DistilledCalibration` warns when fitted on others.
    seconds : float, default=0.0
        Wall-clock seconds it took to compute (proxies, validation passes, masked fits).
    distcal_version : str, default=""
        The version of distcal that computed it.
    notes : dict, default={}
        Anything else the maker records (the validation split's origin, for instance).

    See Also
    --------
    DistilledCalibration : Calibrates a student with a recipe.
    distcal.distill.fit_calibration_recipe : Computes a recipe.
    """

    method: str
    temperature: float
    mask_ratio: float
    feature_ratio: float
    scale: float
    intercept: float
    slope: float
    n_masks: int
    proxies: tuple
    n_validation: int
    mask_kind: str = "zero"
    images_digest: str = ""
    seconds: float = 0.0
    distcal_version: str = ""
    notes: dict = field(default_factory=dict)

    def __post_init__(self):
        where = "CalibrationRecipe"
        if self.method not in RECIPE_METHODS:
            raise ValueError(
                f"{where}: method must be one of {RECIPE_METHODS}; got {self.method!r}."
            )
        for name in ("temperature", "scale"):
            _positive(getattr(self, name), name, where)
        for name in ("mask_ratio", "feature_ratio"):
            _ratio(getattr(self, name), name, where)
        for name in ("intercept", "slope", "seconds"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not math.isfinite(value)
            ):
                raise ValueError(f"{where}: {name} must be a finite number; got {value!r}.")
        for name in ("n_masks", "n_validation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{where}: {name} must be a positive int; got {value!r}.")
        if self.mask_kind != "zero":
            raise ValueError(f"{where}: mask_kind must be 'zero'; got {self.mask_kind!r}.")
        if not isinstance(self.proxies, tuple | list) or not self.proxies:
            raise ValueError(
                f"{where}: proxies must list at least one proxy; got {self.proxies!r}."
            )
        if not isinstance(self.notes, dict):
            raise ValueError(f"{where}: notes must be a dict; got {self.notes!r}.")
        for i, proxy in enumerate(self.proxies):
            missing = [k for k in _PROXY_KEYS if not isinstance(proxy, dict) or k not in proxy]
            if missing:
                raise ValueError(f"{where}: proxies[{i}] lacks {missing}.")
            _positive(proxy["temperature"], f"proxies[{i}]['temperature']", where)
            for key in ("ratio", "scaled"):
                value = proxy["masked_temperatures"].get(key) if isinstance(
                    proxy["masked_temperatures"], dict) else None  # fmt: skip
                _positive(value, f"proxies[{i}]['masked_temperatures'][{key!r}]", where)
        # Canonical form (keys sorted at every level), as the JSON of a file has it: a recipe
        # and its reloaded copy are equal and print the same.
        object.__setattr__(self, "proxies", tuple(_canonical(p) for p in self.proxies))
        object.__setattr__(self, "notes", _canonical(self.notes))

    def mapping(self, method: str | None = None) -> tuple[float | None, float, float]:
        """Return ``(ratio, offset, slope)`` of a method's map ``log T = offset + slope log T_r``.

        Parameters
        ----------
        method : str or None, default=None
            One of :data:`RECIPE_METHODS`; None is the recipe's :attr:`method`.

        Returns
        -------
        ratio : float or None
            The mask ratio of the masked temperature ``T_r``; None when the map ignores it
            (method ``"temperature"``).
        offset, slope : float
            The map in log space.
        """
        method = self.method if method is None else method
        if method == "temperature":
            return None, math.log(self.temperature), 0.0
        if method == "ratio":
            return self.mask_ratio, 0.0, 1.0
        if method == "scaled":
            return self.feature_ratio, math.log(self.scale), 1.0
        if method == "predictor":
            return self.feature_ratio, self.intercept, self.slope
        raise ValueError(f"method must be one of {RECIPE_METHODS} or None; got {method!r}.")

    def proxy_range(self, method: str | None = None) -> tuple[float, float]:
        """Return the proxies' smallest and largest masked temperature at a method's ratio.

        Parameters
        ----------
        method : str or None, default=None
            ``"ratio"``, ``"scaled"`` or ``"predictor"``; None is the recipe's :attr:`method`.

        Returns
        -------
        tuple of float
            ``(min, max)`` over the proxies.
        """
        method = self.method if method is None else method
        key = "ratio" if method == "ratio" else "scaled"
        values = [p["masked_temperatures"][key] for p in self.proxies]
        return min(values), max(values)

    @property
    def temperature_spread(self) -> float:
        """Sample SD (ddof=1) of the proxies' log held-out temperatures (0 for one proxy)."""
        logs = [math.log(p["temperature"]) for p in self.proxies]
        if len(logs) < 2:
            return 0.0
        mean = sum(logs) / len(logs)
        return math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))

    def to_dict(self) -> dict:
        """Return the recipe as JSON-serialisable data (what the distilled set's file stores).

        Returns
        -------
        dict
            Every field, and ``"version"``.
        """
        data = asdict(self)
        data["proxies"] = [dict(p) for p in self.proxies]
        data["version"] = RECIPE_VERSION
        return data

    @classmethod
    def from_dict(cls, data) -> CalibrationRecipe:
        """Rebuild a recipe from :meth:`to_dict`'s form, checking every field.

        Parameters
        ----------
        data : dict
            What :meth:`to_dict` returned.

        Returns
        -------
        CalibrationRecipe
            The recipe.

        Raises
        ------
        ValueError
            If a field is missing, unknown or invalid, or the form is of a newer version.
        """
        if not isinstance(data, dict):
            raise ValueError(
                f"a calibration recipe must be a JSON object; got {type(data).__name__}."
            )
        data = dict(data)
        version = data.pop("version", RECIPE_VERSION)
        if not isinstance(version, int) or version > RECIPE_VERSION:
            raise ValueError(
                f"the calibration recipe is of version {version!r}; this distcal reads "
                f"version {RECIPE_VERSION} and older."
            )
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"the calibration recipe has unknown fields {unknown}.")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"the calibration recipe is incomplete: {exc}") from None


def distilled_digest(images, labels) -> str:
    """SHA-256 of a distilled set's images and labels (what a recipe records it was made on).

    Parameters
    ----------
    images : Tensor
        The distilled images.
    labels : Tensor
        Their labels.

    Returns
    -------
    str
        The hexadecimal digest.
    """
    import hashlib

    digest = hashlib.sha256()
    for tensor in (images, labels):
        tensor = torch.as_tensor(tensor).detach().to("cpu").contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


class DistilledCalibration(_MaskedFit):
    """Calibrate a student trained on a distilled set with the set's calibration recipe.

    The maker of a distilled set, who has the real data, trained proxy students on it and
    measured how masked temperature scaling (MTS) on the set relates to temperature scaling on
    real held-out images (:class:`CalibrationRecipe`). This calibrator does on the user's
    student what the recipe says: it fits MTS on the distilled images at the recipe's mask
    ratio (``n_masks`` nested masked copies, as the proxies had) and maps that temperature
    ``T_r`` to the student's temperature ``T = exp(offset) * T_r ** slope``. Predictions divide
    the student's clean logits by ``T``, as :class:`~distcal.TemperatureScaling` does, so the
    predicted classes never change.

    Without a recipe (``recipe=None``, a set written before recipes existed or by another tool)
    it falls back to ``MaskedTemperatureScaling(regime="training")``, the default on a distilled
    set alone, and warns: docs/results.md measures that fallback at several times the error of
    temperature scaling on held-out data.

    Parameters
    ----------
    recipe : CalibrationRecipe or None, default=None
        The set's recipe (:attr:`distcal.distill.DistilledSet.recipe`).
    method : {"auto", "temperature", "ratio", "scaled", "predictor"}, default="auto"
        Which of the recipe's methods to use; ``"auto"`` is the recipe's own choice
        (:attr:`CalibrationRecipe.method`).
    model : torch.nn.Module or None, default=None
        The student network (inputs to logits). Required except with method
        ``"temperature"``, where ``X`` may be the student's logits instead.
    batch_size : int, default=256
        Samples per forward pass of ``model``.
    random_state : int, RandomState instance or None, default=None
        Seeds the masks.
    tol : float, default=1e-6
        Convergence tolerance of the temperature solver on ``log(T)``.
    max_iter : int, default=100
        Maximum number of passes of the temperature solver.

    Attributes
    ----------
    temperature_ : float
        The student's temperature.
    method_ : str
        The method used: one of :data:`RECIPE_METHODS`, or ``"fallback"`` without a recipe.
    mask_ratio_ : float
        The mask ratio of the masked fit (0 for method ``"temperature"``).
    masked_temperature_ : float or None
        MTS's temperature ``T_r`` at ``mask_ratio_`` before the recipe's map (None for method
        ``"temperature"``).
    covered_ : bool or None
        Whether ``masked_temperature_`` lies within the proxies' range (widened by
        :data:`COVERAGE_MARGIN` in log space); None where the method does not look at the
        student. Outside, a :class:`~distcal.exceptions.DistcalWarning` says so: the student
        behaves unlike every proxy, and the recipe's map is extrapolated.
    regime_ : str
        ``"training"``: a recipe calibrates on the set the student was trained on.
    n_masks_ : int
        Masked copies per distilled image.
    masked_accuracy_ : float
        Accuracy on the masked images at ``mask_ratio_`` (the clean accuracy for
        ``"temperature"``).
    nll_ : float
        Mean NLL of the masked images at ``temperature_``.
    n_iter_ : int
        Passes of the temperature solver (0 for ``"temperature"``).
    converged_ : bool
        Whether the masked fit converged.
    calibrator_ : TemperatureScaling
        The same temperature as a calibrator of the student's clean logits.
    classes_ : ndarray of shape (n_classes,)
        ``arange(n_classes)``.
    n_features_in_ : int
        Number of logit columns (logits) or of input features (2-D inputs with a model).
    input_shape_ : tuple of int
        With a model, the shape of one input sample seen in ``fit``.

    See Also
    --------
    CalibrationRecipe : What the recipe holds.
    distcal.distill.fit_calibration_recipe : How the maker computes it.
    MaskedTemperatureScaling : The fallback, and the masked fit underneath.

    Examples
    --------
    >>> from distcal.calibration import DistilledCalibration
    >>> DistilledCalibration(method="ratio").method
    'ratio'
    """

    _fitted_constraints = {
        "temperature_": [Interval(numbers.Real, 0, None, closed="neither")],
        "mask_ratio_": [Interval(numbers.Real, 0.0, 1.0, closed="left")],
    }
    _min_classes = 1
    _parameter_constraints = {
        "recipe": [None, CalibrationRecipe],
        "method": [Options("auto", *RECIPE_METHODS)],
        "model": [None, "module"],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "tol": [Interval(numbers.Real, 0, None, closed="neither")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        recipe=None,
        *,
        method="auto",
        model=None,
        batch_size=256,
        random_state=None,
        tol=1e-6,
        max_iter=100,
    ):
        self.recipe = recipe
        self.method = method
        self.model = model
        self.batch_size = batch_size
        self.random_state = random_state
        self.tol = tol
        self.max_iter = max_iter

    # The masked fit reads these settings; a recipe fixes them, so they are not parameters.
    @property
    def mask_ratio(self):
        """The ratio of the masked fit: the recipe's, or ``"auto"`` in the fallback."""
        if self.recipe is None:
            return "auto"
        ratio = self.recipe.mapping(self._method())[0]
        return 0.0 if ratio is None else ratio

    @property
    def n_masks(self):
        """Masked copies per image: the recipe's, or ``"auto"`` in the fallback."""
        return "auto" if self.recipe is None else self.recipe.n_masks

    regime = "training"
    input_type = "logits"
    cv = 5

    def _method(self) -> str:
        return self.recipe.method if self.method == "auto" else self.method

    @classmethod
    def from_distilled(cls, distilled, *, model, **params):
        """Fit a student on the distilled set it was trained on, with the set's recipe.

        Parameters
        ----------
        distilled : DistilledSet
            The set (:func:`distcal.distill.load_distilled`); its ``recipe`` may be None.
        model : torch.nn.Module
            The student network.
        **params
            Further parameters (``method``, ``batch_size``, ``random_state``, ...).

        Returns
        -------
        DistilledCalibration
            The calibrator, fitted on ``distilled.images`` and ``distilled.labels``.
        """
        return cls(getattr(distilled, "recipe", None), model=model, **params).fit(
            distilled.images, distilled.labels
        )

    def fit(self, X, y=None, sample_weight=None):
        """Calibrate the student with the recipe, on the images it was trained on.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            The distilled images the recipe was computed on (``DistilledSet.images``); or, for
            method ``"temperature"`` without a model, the student's logits on them.
        y : array-like or Tensor of shape (n_samples,)
            Their labels.
        sample_weight : array-like or Tensor of shape (n_samples,), default=None
            Non-negative weights of the images.

        Returns
        -------
        self : object
            The fitted calibrator.
        """
        if self.recipe is None:
            warnings.warn(
                "DistilledCalibration: no calibration recipe (the distilled set was saved "
                "without one: by a distcal before recipes, by another tool, or without "
                "real validation images); falling back to MaskedTemperatureScaling("
                "regime='training'), which lands several times above temperature scaling on "
                "held-out data (docs/results.md). Keep a few real images per class to "
                "calibrate with, or ask the set's maker for a recipe "
                "(distcal.distill.fit_calibration_recipe).",
                DistcalWarning,
                stacklevel=2,
            )
        elif self.model is None and self._method() != "temperature":
            raise ValueError(
                f"DistilledCalibration(method={self._method()!r}) masks the distilled images "
                "and runs the student on them, so it needs the student network as model=; "
                "without one only method='temperature' applies (X are then the student's logits)."
            )
        elif self.model is not None and self.recipe.images_digest:
            images = X if isinstance(X, torch.Tensor) else None
            if images is not None and y is not None:
                labels = torch.as_tensor(y)
                if labels.dtype != torch.long:
                    labels = labels.long()
                if distilled_digest(images, labels) != self.recipe.images_digest:
                    warnings.warn(
                        "DistilledCalibration: X and y are not the distilled set this recipe "
                        "was computed on (their digest differs from recipe.images_digest); the "
                        "recipe's map relates the proxies' behaviour on that set, so fit on "
                        "DistilledSet.images and DistilledSet.labels.",
                        DistcalWarning,
                        stacklevel=2,
                    )
        return super().fit(X, y, sample_weight)

    def _fit_drawn(self, draw, clean, labels, weights, seed):
        if self.recipe is None:
            self.method_ = "fallback"
            self.masked_temperature_, self.covered_ = None, None
            fitted = super()._fit_drawn(draw, clean, labels, weights, seed)
            self.regime_ = "training"
            return fitted
        method = self._method()
        ratio, offset, slope = self.recipe.mapping(method)
        self.method_, self.regime_ = method, "training"
        self.cv_ratios_ = torch.empty(0, dtype=torch.float64, device=clean.device)
        self.cv_nll_ = torch.empty(0, dtype=torch.float64, device=clean.device)
        values = clean if ratio is None else draw(ratio)
        n_draws = values.shape[0] // labels.shape[0]
        all_labels = labels.repeat(n_draws)
        all_weights = None if weights is None else weights.repeat(n_draws)
        correct = (values.argmax(dim=1) == all_labels).to(torch.float64)
        self.masked_accuracy_ = float(
            correct.mean() if all_weights is None else (correct @ all_weights) / all_weights.sum()
        )
        self.mask_ratio_ = 0.0 if ratio is None else float(ratio)
        if ratio is None:
            self.temperature_ = math.exp(offset)
            self.masked_temperature_, self.covered_ = None, None
            self.n_iter_, self.converged_ = 0, True
        else:
            result = fit_temperature(values, all_labels, all_weights, tol=self.tol,
                                     max_iter=self.max_iter)  # fmt: skip
            _warn_for_fit(result, type(self).__name__, self.max_iter, stacklevel=5)
            self.masked_temperature_ = float(result.temperature)
            self.temperature_ = math.exp(offset + slope * math.log(self.masked_temperature_))
            self.n_iter_, self.converged_ = int(result.n_iter), bool(result.converged)
            self.covered_ = self._covered(method)
        beta = 1.0 / self.temperature_
        weight_sum, loss = temperature_statistics(values, all_labels, all_weights, beta)[:2]
        self.nll_ = float(loss / weight_sum)
        return self

    def _covered(self, method) -> bool:
        low, high = self.recipe.proxy_range(method)
        value = math.log(self.masked_temperature_)
        covered = math.log(low) - COVERAGE_MARGIN <= value <= math.log(high) + COVERAGE_MARGIN
        if not covered:
            warnings.warn(
                f"DistilledCalibration: the student's masked temperature at ratio "
                f"{self.mask_ratio_:.3f} is {self.masked_temperature_:.3g}, outside the range of "
                f"the recipe's {len(self.recipe.proxies)} proxies ({low:.3g} to {high:.3g}): "
                "this student behaves unlike every proxy the set's maker trained, so the "
                "recipe's map is extrapolated and its temperature is less certain. Check it on "
                "a few real images if you can.",
                DistcalWarning,
                stacklevel=6,
            )
        return covered

    # The parts of the masked fit that the fallback (MaskedTemperatureScaling's rule) uses.
    def _fit_masked(self, values, labels, weights):
        result = fit_temperature(values, labels, weights, tol=self.tol, max_iter=self.max_iter)
        _warn_for_fit(result, type(self).__name__, self.max_iter, stacklevel=4)
        self.temperature_ = float(result.temperature)
        self.nll_ = float(result.nll)
        self.n_iter_ = int(result.n_iter)
        self.converged_ = bool(result.converged)
        return self

    @staticmethod
    def _fold_nll(fit_logits, fit_labels, fit_weights, test_logits, test_labels, test_weights):
        result = fit_temperature(fit_logits, fit_labels, fit_weights)
        weight_sum, loss = temperature_statistics(
            test_logits, test_labels, test_weights, 1.0 / result.temperature
        )[:2]
        return float(loss / weight_sum)

    def _shift_invariant(self) -> bool:
        return True

    @property
    def calibrator_(self):
        """The fitted temperature as a :class:`TemperatureScaling` of the clean logits.

        Returns
        -------
        TemperatureScaling
            A calibrator with ``temperature_``, ``nll_``, ``n_iter_`` and ``converged_`` of
            this fit.
        """
        check_is_fitted(self)
        inner = TemperatureScaling(tol=self.tol, max_iter=self.max_iter)
        for key in ("temperature_", "nll_", "n_iter_", "converged_", "classes_"):
            setattr(inner, key, getattr(self, key))
        logit_mode = self.model is None
        inner.n_features_in_ = self.n_features_in_ if logit_mode else len(self.classes_)
        inner._binary_1d = self._binary_1d if logit_mode else False
        return inner

    def _calibrate_logits(self, values):
        return values / self.temperature_
