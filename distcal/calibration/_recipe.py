"""Calibration recipes: what the maker of a distilled set measures so that students calibrate.

The maker of a distilled set still has the real data; the user of a student trained on the set
has only the set. A :class:`CalibrationRecipe` carries what the one measured to the other: proxy
students were trained on the set, temperature scaling was fitted on each proxy's logits of real
validation images (its *held-out temperature*), and what each proxy shows on the distilled set
was related to that temperature. :class:`DistilledCalibration` applies the recipe to the user's
student by one of three methods:

- ``"temperature"``: the proxies' held-out temperature itself (their geometric mean); the
  student is not looked at.
- ``"ratio"``: masked temperature scaling (MTS) on the distilled images at the mask ratio where
  MTS gave the proxies their held-out temperatures (nested masks, as
  :class:`~distcal.MaskedTemperatureScaling` draws them).
- ``"predictor"``: a plane, fitted by least squares across proxies trained with varied
  recipes, from two things the student shows on the distilled set to its log held-out
  temperature: the log of its *logit scale* on the clean images (:func:`logit_scale`: the mean
  over images of the standard deviation of a row of logits; blind to a constant added to a
  row, as the softmax is, and growing with the logits as a temperature does) and the log of
  MTS's temperature at a fixed ratio. Development found that this plane follows the held-out
  temperature across student recipes the proxies did not use (docs/recipe.md).

Recipes are computed by :func:`distcal.distill.fit_calibration_recipe` (or by
``MDTTrainer(calibration_recipe=...)``) and travel inside the distilled set's file.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import asdict, dataclass, field

import torch

from .._params import Interval, Options
from ..exceptions import DistcalWarning
from ._masked_fit import _MaskedFit
from ._masked_temperature import _TemperatureOnMasked
from ._persistence import parameter_type
from ._temperature import (
    _warn_for_fit,
    fit_temperature,
    temperature_statistics,
)

__all__ = [
    "RECIPE_METHODS",
    "CalibrationRecipe",
    "DistilledCalibration",
    "distilled_digest",
    "logit_scale",
]

#: The methods a recipe offers (see the module docstring).
RECIPE_METHODS = ("temperature", "ratio", "predictor")
#: Version of the recipe's dictionary form (:meth:`CalibrationRecipe.to_dict`).
RECIPE_VERSION = 1
#: How far (in log units) a student's feature may lie outside the proxies' range before
#: :class:`DistilledCalibration` warns that the recipe's map is extrapolated.
COVERAGE_MARGIN = 0.1

_PROXY_KEYS = (
    "params", "temperature", "accuracy", "logit_scale", "matched_ratio", "masked_temperature",
    "feature_temperature",
)  # fmt: skip


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


def _finite(value, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{where}: {name} must be a finite number; got {value!r}.")
    return float(value)


def logit_scale(logits, weights=None) -> float:
    """Return the logit scale of a network on some inputs: the mean SD of a row of logits.

    The standard deviation over the classes of each row (population SD, ``ddof=0``), averaged
    over the rows (weighted by ``weights`` if given). Adding a constant to a row leaves it
    unchanged, as it leaves the softmax; multiplying the logits by ``c`` multiplies it by ``c``,
    as it multiplies the temperature they need.

    Parameters
    ----------
    logits : Tensor of shape (n_samples, n_classes)
        Logits.
    weights : Tensor of shape (n_samples,) or None, default=None
        Non-negative weights of the rows.

    Returns
    -------
    float
        The logit scale (computed in float64).

    Examples
    --------
    >>> import torch
    >>> from distcal.calibration import logit_scale
    >>> logit_scale(torch.tensor([[1.0, -1.0], [5.0, 3.0]]))
    1.0
    """
    values = torch.as_tensor(logits).to(torch.float64)
    spread = values.std(dim=1, unbiased=False)
    if weights is None:
        return float(spread.mean())
    weights = torch.as_tensor(weights, dtype=torch.float64, device=spread.device)
    return float((spread * weights).sum() / weights.sum())


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
    method : {"temperature", "ratio", "predictor"}
        The method the maker recommends (what :class:`DistilledCalibration` uses by default).
    temperature : float
        Geometric mean of the proxies' held-out temperatures (method ``"temperature"``).
    mask_ratio : float
        Mask ratio at which MTS on the distilled set reproduces the proxies' held-out
        temperatures: the mean over proxies of each one's matched ratio (method ``"ratio"``).
    feature_ratio : float
        The mask ratio of the predictor's masked temperature.
    intercept, scale_slope, masked_slope : float
        The predictor's plane, ``log T = intercept + scale_slope * log(logit scale) +
        masked_slope * log(MTS temperature at feature_ratio)``, fitted by least squares across
        the proxies (with fewer than 4 proxies, the line on the logit scale alone; with fewer
        than 3, temperature proportional to the logit scale).
    n_masks : int
        Masked copies of each distilled image behind every MTS temperature; a student's user
        draws as many.
    proxies : tuple of dict
        Per proxy student: ``params`` (its :class:`~distcal.distill.StudentClassifier`
        parameters), ``temperature`` (held-out), ``accuracy`` (on the validation images),
        ``logit_scale`` (on the clean distilled images), ``matched_ratio`` (where MTS on the
        set gave its held-out temperature; with ``matched_bracket``, the search's last
        interval, when recorded), ``masked_temperature`` (MTS's temperature at ``mask_ratio``)
        and ``feature_temperature`` (MTS's temperature at ``feature_ratio``).
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
    intercept: float
    scale_slope: float
    masked_slope: float
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
        _positive(self.temperature, "temperature", where)
        for name in ("mask_ratio", "feature_ratio"):
            ratio = getattr(self, name)
            if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 <= ratio < 1:
                raise ValueError(f"{where}: {name} must be a number in [0, 1); got {ratio!r}.")
        for name in ("intercept", "scale_slope", "masked_slope", "seconds"):
            _finite(getattr(self, name), name, where)
        for name in ("n_masks", "n_validation"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{where}: {name} must be a positive int; got {value!r}.")
        if self.mask_kind != "zero":
            raise ValueError(f"{where}: mask_kind must be 'zero'; got {self.mask_kind!r}.")
        if not isinstance(self.notes, dict):
            raise ValueError(f"{where}: notes must be a dict; got {self.notes!r}.")
        if not isinstance(self.proxies, tuple | list) or not self.proxies:
            raise ValueError(
                f"{where}: proxies must list at least one proxy; got {self.proxies!r}."
            )
        for i, proxy in enumerate(self.proxies):
            missing = [k for k in _PROXY_KEYS if not isinstance(proxy, dict) or k not in proxy]
            if missing:
                raise ValueError(f"{where}: proxies[{i}] lacks {missing}.")
            for key in ("temperature", "logit_scale", "masked_temperature", "feature_temperature"):
                _positive(proxy[key], f"proxies[{i}][{key!r}]", where)
        # Canonical form (keys sorted at every level), as the JSON of a file has it: a recipe
        # and its reloaded copy are equal and print the same.
        object.__setattr__(self, "proxies", tuple(_canonical(p) for p in self.proxies))
        object.__setattr__(self, "notes", _canonical(self.notes))

    def mapping(self, method: str | None = None) -> tuple[float, list]:
        """Return a method's map: ``log T = offset + sum(slope * log(feature))``.

        Parameters
        ----------
        method : str or None, default=None
            One of :data:`RECIPE_METHODS`; None is the recipe's :attr:`method`.

        Returns
        -------
        offset : float
            The constant of the map.
        terms : list of (str, float or None, float)
            ``(feature, ratio, slope)`` for each feature the map reads of the student:
            ``"logit_scale"`` (on the clean distilled images; ratio None) or
            ``"masked_temperature"`` (MTS's temperature at that mask ratio). Empty for
            ``"temperature"``.
        """
        method = self.method if method is None else method
        if method == "temperature":
            return math.log(self.temperature), []
        if method == "ratio":
            return 0.0, [("masked_temperature", self.mask_ratio, 1.0)]
        if method == "predictor":
            return self.intercept, [
                ("logit_scale", None, self.scale_slope),
                ("masked_temperature", self.feature_ratio, self.masked_slope),
            ]
        raise ValueError(f"method must be one of {RECIPE_METHODS} or None; got {method!r}.")

    def proxy_range(self, feature: str, ratio: float | None = None) -> tuple[float, float]:
        """Return the proxies' smallest and largest value of a feature.

        Parameters
        ----------
        feature : {"logit_scale", "masked_temperature"}
            The feature (see :meth:`mapping`).
        ratio : float or None, default=None
            The mask ratio of a masked temperature: :attr:`mask_ratio` or :attr:`feature_ratio`.

        Returns
        -------
        tuple of float
            ``(min, max)`` over the proxies.

        Raises
        ------
        ValueError
            If the recipe holds no such feature.
        """
        if feature == "logit_scale":
            key = "logit_scale"
        elif feature == "masked_temperature" and ratio == self.mask_ratio:
            key = "masked_temperature"
        elif feature == "masked_temperature" and ratio == self.feature_ratio:
            key = "feature_temperature"
        else:
            raise ValueError(f"the recipe holds no {feature!r} at ratio {ratio!r}.")
        values = [p[key] for p in self.proxies]
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


class DistilledCalibration(_TemperatureOnMasked, _MaskedFit):
    """Calibrate a student trained on a distilled set with the set's calibration recipe.

    The maker of a distilled set, who has the real data, trained proxy students on it and
    related what each shows on the set to the temperature that real held-out images want
    (:class:`CalibrationRecipe`). This calibrator does on the user's student what the recipe
    says, by the recipe's method (or ``method``): ``"predictor"`` reads the student's logit
    scale on the clean distilled images (:func:`logit_scale`) and masked temperature scaling's
    temperature on them at the recipe's feature ratio, and maps both through the recipe's
    plane; ``"ratio"`` fits masked temperature scaling on the distilled images at the recipe's
    mask ratio; ``"temperature"`` takes the proxies' temperature. Masks are ``n_masks``
    nested copies per image, as the proxies had.
    Predictions divide the student's clean logits by ``T``, as
    :class:`~distcal.TemperatureScaling` does, so the predicted classes never change.

    Without a recipe (``recipe=None``, a set written before recipes existed or by another tool)
    it falls back to ``MaskedTemperatureScaling(regime="training")``, the default on a distilled
    set alone, and warns: docs/results.md measures that fallback at several times the error of
    temperature scaling on held-out data.

    Parameters
    ----------
    recipe : CalibrationRecipe or None, default=None
        The set's recipe (:attr:`distcal.distill.DistilledSet.recipe`).
    method : {"auto", "temperature", "ratio", "predictor"}, default="auto"
        Which of the recipe's methods to use; ``"auto"`` is the recipe's own choice
        (:attr:`CalibrationRecipe.method`).
    model : torch.nn.Module or None, default=None
        The student network (inputs to logits). Required by the methods that mask the images
        (``"ratio"``, ``"predictor"``); with ``"temperature"`` it may be None, and ``X`` are
        then the student's logits on the distilled images.
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
        The mask ratio of the masked fit (0 for ``"temperature"``).
    logit_scale_ : float or None
        The student's logit scale on the clean distilled images, where the method reads it
        (``"predictor"``).
    masked_temperature_ : float or None
        MTS's temperature at ``mask_ratio_`` before the recipe's map, where the method reads it
        (``"ratio"``, ``"predictor"``).
    covered_ : bool or None
        Whether each of these lies within the proxies' range (widened by
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
        Mean NLL of the (masked, for ``"ratio"``) distilled images at ``temperature_``.
    n_iter_ : int
        Passes of the temperature solver (0 where none runs).
    converged_ : bool
        Whether the masked fit converged (True where none runs).
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
    A recipe is made by :func:`~distcal.distill.fit_calibration_recipe`; here, one written by
    hand with one proxy whose held-out temperature was 1.5. Its ``"temperature"`` method needs
    only the student's logits; the other methods take the network as ``model`` and the
    distilled images as ``X`` (see the user guide).

    >>> import torch
    >>> from distcal import DistilledCalibration
    >>> from distcal.calibration import CalibrationRecipe
    >>> proxy = {"params": {}, "temperature": 1.5, "accuracy": 0.8, "logit_scale": 2.0,
    ...          "matched_ratio": 0.5, "masked_temperature": 1.4, "feature_temperature": 1.6}
    >>> recipe = CalibrationRecipe(method="temperature", temperature=1.5, mask_ratio=0.5,
    ...                            feature_ratio=0.7, intercept=0.0, scale_slope=1.0,
    ...                            masked_slope=0.0, n_masks=20, proxies=[proxy],
    ...                            n_validation=1000)
    >>> logits = torch.tensor([[3.0, 0.0], [0.0, 1.5]])
    >>> calibrator = DistilledCalibration(recipe).fit(logits, [0, 1])
    >>> calibrator.temperature_, calibrator.method_
    (1.5, 'temperature')
    >>> calibrator.predict_proba(logits)[0]
    tensor([0.8808, 0.1192])
    """

    _fitted_constraints = {
        "temperature_": [Interval(numbers.Real, 0, None, closed="neither")],
        "mask_ratio_": [Interval(numbers.Real, 0.0, 1.0, closed="left")],
    }
    _min_classes = 1
    _shift_invariant = True
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
        """The ratio of the masked fit: the method's, 0 without masking, "auto" in the fallback."""
        if self.recipe is None:
            return "auto"
        ratios = [r for _, r, _ in self.recipe.mapping(self._method())[1] if r is not None]
        return ratios[0] if ratios else 0.0

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
                "without one only method='temperature' applies (X are then the student's "
                "logits on the distilled images)."
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
            self.logit_scale_ = self.masked_temperature_ = self.covered_ = None
            fitted = super()._fit_drawn(draw, clean, labels, weights, seed)
            self.regime_ = "training"
            return fitted
        method = self._method()
        offset, terms = self.recipe.mapping(method)
        self.method_, self.regime_ = method, "training"
        self.cv_ratios_ = torch.empty(0, dtype=torch.float64, device=clean.device)
        self.cv_nll_ = torch.empty(0, dtype=torch.float64, device=clean.device)
        self.mask_ratio_ = float(self.mask_ratio)
        values = draw(self.mask_ratio_) if self.mask_ratio_ > 0 else clean
        n_draws = values.shape[0] // labels.shape[0]
        all_labels = labels.repeat(n_draws)
        all_weights = None if weights is None else weights.repeat(n_draws)
        correct = (values.argmax(dim=1) == all_labels).to(torch.float64)
        self.masked_accuracy_ = float(
            correct.mean() if all_weights is None else (correct @ all_weights) / all_weights.sum()
        )
        self.n_iter_, self.converged_ = 0, True
        features = {}
        log_temperature = offset
        for feature, _, slope in terms:
            if feature == "logit_scale":
                value = logit_scale(clean, weights)
            else:
                result = fit_temperature(values, all_labels, all_weights, tol=self.tol,
                                         max_iter=self.max_iter)  # fmt: skip
                _warn_for_fit(result, type(self).__name__, self.max_iter, stacklevel=5)
                value = float(result.temperature)
                self.n_iter_, self.converged_ = int(result.n_iter), bool(result.converged)
            features[feature] = value
            log_temperature += slope * math.log(value)
        self.logit_scale_ = features.get("logit_scale")
        self.masked_temperature_ = features.get("masked_temperature")
        self.temperature_ = math.exp(log_temperature)
        self.covered_ = self._covered(terms, features) if terms else None
        beta = 1.0 / self.temperature_
        weight_sum, loss = temperature_statistics(values, all_labels, all_weights, beta)[:2]
        self.nll_ = float(loss / weight_sum)
        return self

    def _covered(self, terms, features) -> bool:
        outside = []
        for feature, ratio, _ in terms:
            low, high = self.recipe.proxy_range(feature, ratio)
            value = math.log(features[feature])
            if not math.log(low) - COVERAGE_MARGIN <= value <= math.log(high) + COVERAGE_MARGIN:
                what = (
                    "logit scale" if ratio is None else f"masked temperature at ratio {ratio:.3f}"
                )
                outside.append(f"its {what} is {features[feature]:.3g} ({low:.3g} to "
                               f"{high:.3g} for the proxies)")  # fmt: skip
        if outside:
            warnings.warn(
                f"DistilledCalibration: on the distilled images the student lies outside the "
                f"range of the recipe's {len(self.recipe.proxies)} proxies: "
                f"{'; '.join(outside)}. It behaves unlike every proxy the set's maker trained, "
                "so the recipe's map is extrapolated and its temperature is less certain. Check "
                "it on a few real images if you can.",
                DistcalWarning,
                stacklevel=6,
            )
        return not outside
