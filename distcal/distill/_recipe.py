"""Calibration recipes computed where the real data are: proxy students on a distilled set.

Whoever distils a set still has the real training data. :func:`fit_calibration_recipe` trains
proxy students on the distilled set, fits temperature scaling on each proxy's logits of real
validation images (a split of the real training data, never test data), and relates those
held-out temperatures to what the same proxy shows on the distilled set: its logit scale on
the clean images, and masked temperature scaling (MTS) on them. The proxies vary the student
recipe (mixup, epochs, learning rate, width, label smoothing, augmentation), so that the
relation learnt across them holds for students of other recipes. The result, a
:class:`~distcal.calibration.CalibrationRecipe`, travels in the distilled set's file;
:class:`~distcal.calibration.DistilledCalibration` applies it to a student that its user trained
on the set alone.

The masked temperatures are those of ``MaskedTemperatureScaling(ratio, n_masks=n_masks)`` on the
distilled images, with one mask seed per proxy: the same uniform draws at every ratio, so the
masks are nested and ``T(ratio)`` is a smooth, increasing function that a bisection can follow
to the ratio where it equals the proxy's held-out temperature.
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
from sklearn.base import clone

from .._device import draw_seed
from .._progress import progress
from ..calibration import (
    CalibrationRecipe,
    MaskedTemperatureScaling,
    TemperatureScaling,
    distilled_digest,
    logit_scale,
    module_logits,
)
from ..exceptions import DistcalWarning
from ._data import check_samples
from ._student import StudentClassifier

__all__ = [
    "DEFAULT_FEATURE_RATIO",
    "DEFAULT_N_MASKS",
    "DEFAULT_RECIPE_METHOD",
    "default_proxies",
    "fit_calibration_recipe",
]

#: The method a recipe recommends unless told otherwise (docs/recipe.md says why).
DEFAULT_RECIPE_METHOD = "predictor"
#: The mask ratio of the predictor's masked temperature.
DEFAULT_FEATURE_RATIO = 0.7
#: Masked copies of every distilled image behind each masked temperature (2,000 masked images
#: for a set of 100, as MTS's n_masks="auto" draws).
DEFAULT_N_MASKS = 20
#: The largest ratio the matched-ratio search tries (as MTS's half-accuracy rule).
MAX_RATIO = 0.95
#: Bisection steps of the matched-ratio search: the bracket shrinks to 0.95 / 2**8 < 0.004.
BISECTION_STEPS = 8

#: The proxies' recipes, as changes to the set's own student recipe (``default_proxies``):
#: factors for ``epochs``, ``lr`` and ``width``, values for the others.
PROXY_VARIATIONS = (
    {},
    {"mixup_alpha": 1.0},
    {"epochs": 0.5},
    {"lr": 2.0},
    {"width": 0.5},
    {"mixup_alpha": 1.0, "epochs": 0.5},
    {"label_smoothing": 0.1},
    {"augment": "none"},
)


def _student_of(distilled) -> StudentClassifier:
    """Return the student a distilled set's configuration describes (network, width, ...)."""
    config = getattr(distilled, "config", {}) or {}
    kwargs = {k: config[k] for k in ("network", "width", "depth", "norm") if k in config}
    if isinstance(config.get("augment"), str):
        kwargs["augment"] = config["augment"]
    if getattr(distilled, "learning_rate", None) is not None:
        kwargs["lr"] = distilled.learning_rate
    return StudentClassifier(**kwargs)


def default_proxies(distilled, *, student=None, copies: int = 1) -> list:
    """Return the proxy students of a recipe: the set's student recipe and variations of it.

    Parameters
    ----------
    distilled : DistilledSet
        The set; its configuration gives the network, width, depth, normalisation and
        augmentation of the student recipe (and its learned learning rate, if any).
    student : StudentClassifier or None, default=None
        The student recipe to vary instead of the set's own.
    copies : int, default=1
        Proxies of each variation (each gets its own seed in :func:`fit_calibration_recipe`).
        Development found that a recipe's held-out temperature varies little from seed to
        seed, so variety of recipes matters more than copies.

    Returns
    -------
    list of StudentClassifier
        Unfitted students: for each of :data:`PROXY_VARIATIONS` (the recipe itself; with mixup
        of Beta(1, 1); half the epochs; twice the learning rate; half the width; mixup and half
        the epochs; label smoothing 0.1; no augmentation), ``copies`` of it.
    """
    base = _student_of(distilled) if student is None else clone(student)
    proxies = []
    for change in PROXY_VARIATIONS:
        params = {}
        for key, value in change.items():
            current = base.get_params()[key]
            if key in ("epochs", "width"):
                params[key] = max(1, round(current * value))
            elif key == "lr":
                params[key] = current * value
            else:
                params[key] = value
        proxies += [clone(base).set_params(**params) for _ in range(copies)]
    return proxies


class _MaskedCurve:
    """MTS temperatures of one network on fixed images at any ratio, with nested masks."""

    def __init__(self, network, images, labels, *, n_masks, seed, batch_size):
        self.network, self.images, self.labels = network, images, labels
        self.n_masks, self.seed, self.batch_size = n_masks, seed, batch_size
        self._cache = {}

    def __call__(self, ratio: float) -> float:
        ratio = float(ratio)
        if ratio not in self._cache:
            mts = MaskedTemperatureScaling(
                ratio,
                n_masks=self.n_masks,
                model=self.network,
                batch_size=self.batch_size,
                random_state=self.seed,
            )
            with warnings.catch_warnings():
                # Light masks leave a trained-on set separable: T then sits at its lower
                # bound, which is what the search needs to know (it is below the target).
                warnings.simplefilter("ignore", DistcalWarning)
                mts.fit(self.images, self.labels)
            self._cache[ratio] = mts.temperature_
        return self._cache[ratio]

    def solve(self, temperature: float) -> tuple[float, list]:
        """Return the ratio in [0, MAX_RATIO] where ``T(ratio) = temperature``, and its bracket.

        Bisection in log T, then linear interpolation in the last bracket ``[low, high]``,
        where ``T(low) < temperature <= T(high)``. With a target outside ``[T(0), T(MAX_RATIO)]``
        the nearer end is returned, with the bracket ``[end, end]``.
        """
        goal = math.log(temperature)
        low, high = 0.0, MAX_RATIO
        f_low, f_high = math.log(self(low)) - goal, math.log(self(high)) - goal
        if f_low >= 0:
            return low, [low, low]
        if f_high <= 0:
            return high, [high, high]
        for _ in range(BISECTION_STEPS):
            middle = (low + high) / 2
            f_middle = math.log(self(middle)) - goal
            if f_middle < 0:
                low, f_low = middle, f_middle
            else:
                high, f_high = middle, f_middle
        return low + (high - low) * (-f_low) / (f_high - f_low), [low, high]


def fit_calibration_recipe(
    distilled,
    X_val,
    y_val,
    *,
    proxies="auto",
    method: str = DEFAULT_RECIPE_METHOD,
    n_masks: int = DEFAULT_N_MASKS,
    feature_ratio: float = DEFAULT_FEATURE_RATIO,
    batch_size: int = 256,
    random_state=None,
    verbose: bool = False,
    notes: dict | None = None,
) -> CalibrationRecipe:
    """Compute a distilled set's calibration recipe from real validation images.

    Trains each proxy student on the distilled set, fits temperature scaling on its logits of
    the validation images (its *held-out temperature*), and relates it to what the proxy shows
    on the distilled set: its logit scale on the clean images
    (:func:`~distcal.calibration.logit_scale`) and masked temperature scaling's temperature at
    ``feature_ratio`` (a plane of log temperature on both logs is fitted across the proxies),
    and the mask ratio where masked temperature scaling on the set gives its held-out
    temperature (a bisection on nested masks). The recipe holds every method's numbers and
    recommends ``method``; see :class:`~distcal.calibration.CalibrationRecipe`.

    Parameters
    ----------
    distilled : DistilledSet
        The set (its images, labels, normalisation and configuration).
    X_val : array-like or Tensor of shape (n_val, C, H, W)
        Real validation images with values in [0, 1], as the set's maker has them: a split of
        the real training data (the images the set was distilled from are fine), never test
        data. They are normalised with the set's statistics.
    y_val : array-like or Tensor of shape (n_val,)
        Their labels.
    proxies : "auto" or list of StudentClassifier, default="auto"
        Unfitted proxy students (cloned; each gets its own seed from ``random_state``).
        ``"auto"`` is :func:`default_proxies` of the set.
    method : {"temperature", "ratio", "predictor"}, default="predictor"
        The method the recipe recommends.
    n_masks : int, default=20
        Masked copies of each distilled image behind every masked temperature.
    feature_ratio : float, default=0.7
        The mask ratio of the predictor's masked temperature.
    batch_size : int, default=256
        Images per forward pass.
    random_state : int, RandomState instance or None, default=None
        Seeds the proxies and their masks.
    verbose : bool, default=False
        Show a progress bar over the proxies.
    notes : dict or None, default=None
        Recorded in the recipe as they are (where the validation images came from, say).

    Returns
    -------
    CalibrationRecipe
        The recipe, with every proxy's numbers and the seconds it took.

    Raises
    ------
    ValueError
        If the validation images do not match the set's image shape or classes, or a proxy
        classifies every validation image correctly (temperature scaling has no optimum then).

    See Also
    --------
    distcal.calibration.DistilledCalibration : Uses the recipe.
    distcal.distill.MDTTrainer : Computes one at the end of a distillation
        (``calibration_recipe=``).
    """
    from .._version import __version__

    clock = time.perf_counter()
    images, labels = distilled.images, distilled.labels
    X, y = check_samples(X_val, y_val, name="X_val")
    if tuple(X.shape[1:]) != tuple(images.shape[1:]):
        raise ValueError(
            f"X_val must hold images of the distilled set's shape {tuple(images.shape[1:])}; "
            f"got {tuple(X.shape[1:])}."
        )
    n_classes = distilled.n_classes
    if int(y.max()) >= n_classes or int(y.min()) < 0:
        raise ValueError(
            f"y_val must hold labels in [0, {n_classes - 1}] (the set's classes); got labels "
            f"from {int(y.min())} to {int(y.max())}."
        )
    X = distilled.normalize(X).to(images.device)
    if proxies == "auto":
        proxies = default_proxies(distilled)
    if not proxies:
        raise ValueError("proxies must list at least one StudentClassifier; got none.")
    rng = np.random.default_rng(draw_seed(random_state))
    records, curves = [], []
    for proxy in progress(proxies, enabled=verbose, desc="recipe proxies"):
        if not isinstance(proxy, StudentClassifier):
            raise TypeError(
                f"proxies must be StudentClassifier instances; got {type(proxy).__name__}."
            )
        student = clone(proxy).set_params(
            random_state=int(rng.integers(2**31)), n_classes=n_classes, verbose=False
        )
        student.fit(images, labels)
        logits = module_logits(student.network_, X, batch_size=batch_size)
        accuracy = float((logits.argmax(dim=1).cpu() == y).double().mean())
        if accuracy == 1.0:
            raise ValueError(
                "a proxy classifies every validation image correctly, so temperature scaling "
                "has no optimum on them; use more (or harder) validation images."
            )
        temperature = TemperatureScaling().fit(logits, y.to(logits.device)).temperature_
        curve = _MaskedCurve(student.network_, images, labels, n_masks=n_masks,
                             seed=int(rng.integers(2**31)), batch_size=batch_size)  # fmt: skip
        params = {k: v for k, v in student.get_params().items() if k not in ("device", "verbose")}
        matched, bracket = curve.solve(temperature)
        clean = module_logits(student.network_, images, batch_size=batch_size)
        records.append(
            {
                "params": params,
                "temperature": float(temperature),
                "accuracy": accuracy,
                "logit_scale": logit_scale(clean),
                "matched_ratio": matched,
                "matched_bracket": bracket,
            }
        )
        curves.append(curve)
    ratio = float(np.mean([r["matched_ratio"] for r in records]))
    for record, curve in zip(records, curves, strict=True):
        record["masked_temperature"] = curve(ratio)
        record["feature_temperature"] = curve(feature_ratio)
    held_out = np.log([r["temperature"] for r in records])
    intercept, scale_slope, masked_slope = _plane(
        held_out,
        np.log([r["logit_scale"] for r in records]),
        np.log([r["feature_temperature"] for r in records]),
    )
    return CalibrationRecipe(
        method=method,
        temperature=float(np.exp(held_out.mean())),
        mask_ratio=ratio,
        feature_ratio=float(feature_ratio),
        intercept=intercept,
        scale_slope=scale_slope,
        masked_slope=masked_slope,
        n_masks=int(n_masks),
        proxies=tuple(records),
        n_validation=len(y),
        images_digest=distilled_digest(images, labels),
        seconds=time.perf_counter() - clock,
        distcal_version=__version__,
        notes=dict(notes or {}),
    )


def _plane(target: np.ndarray, scale: np.ndarray, masked: np.ndarray) -> tuple[float, float, float]:
    """Least-squares ``target = a + b * scale + c * masked``, as far as the proxies determine it.

    Four proxies or more (of independent features) fit the plane; fewer fit the line on the
    logit scale alone (``c = 0``), and fewer than three, or proxies of one logit scale, make the
    temperature proportional to the scale (``b = 1``, ``c = 0``).
    """
    n = len(target)
    design = np.column_stack([np.ones(n), scale, masked])
    if n >= 4 and np.linalg.matrix_rank(design) == 3:
        a, b, c = np.linalg.lstsq(design, target, rcond=None)[0]
        return float(a), float(b), float(c)
    if n >= 3 and float(np.var(scale)) > 0:
        b, a = np.polyfit(scale, target, 1)
        return float(a), float(b), 0.0
    return float(np.mean(target - scale)), 1.0, 0.0
