"""Saving and loading fitted calibrators in a format that cannot execute code.

A pickle of a calibrator runs code when it is loaded, which is no way to receive one from
someone else. :func:`save_calibrator` writes a safetensors file instead: the calibrator's class
name, its parameters and scalar fitted attributes in the JSON header, tensors as tensors.
:func:`load_calibrator` rebuilds the calibrator from an allow-list: the registered calibrator
classes (:func:`~distcal.calibration.registered_calibrators`), so nothing else is ever
constructed from a file, and every calibrator, distcal's or one defined by subclassing
:class:`~distcal.calibration.BaseLogitCalibrator`, saves and loads without being listed here.

The format is generic over the fitted-attribute convention of ``_base.py``: tensors (and numpy
arrays, ``classes_``) go into the tensor part, Python scalars into the header, and a fitted
inner calibrator (``MaskedScaling.calibrator_``) is stored the same way under ``nested``, its
tensors named ``"<attribute>.<tensor>"``. A parameter that is a calibrator
(``MaskedScaling(calibrator=...)``) is stored as its class and parameters. A model
(``MaskedTemperatureScaling(model=...)``) is not stored: networks have their own files
(:func:`distcal.distill.save_network`), and the model is passed again when loading. Files of
format 1 written before the registry existed (the six classes it listed) load unchanged.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from .._files import read_tensors, write_tensors
from .._params import validate_constraints, validate_params
from ..exceptions import InvalidParameterError
from ._base import BaseLogitCalibrator, registered_calibrators

__all__ = ["load_calibrator", "parameter_type", "save_calibrator"]

_KIND = "calibrator"
# Fitted attributes that the convention keeps as numpy arrays (scikit-learn's); every other
# array-valued attribute loads as a tensor, also from files that stored it as numpy.
_NUMPY_ATTRIBUTES = frozenset({"classes_"})


def _json_value(value, name: str):
    """Return ``value`` as JSON (tuples become lists), or raise naming the attribute."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, tuple | list):
        return [_json_value(v, name) for v in value]
    raise ValueError(
        f"Cannot save {name}={value!r} ({type(value).__name__}): only numbers, strings, None "
        "and lists of them can be stored. Set it to an int or None (random_state) first."
    )


# Name -> class of the parameter values that are stored by their ``to_dict()`` and rebuilt by
# their ``from_dict()`` (see :func:`parameter_type`).
_PARAMETER_TYPES: dict[str, type] = {}


def parameter_type(name: str):
    """Class decorator: let instances of a class be calibrator parameters in files.

    A calibrator parameter that is neither a JSON value nor a calibrator (a
    :class:`~distcal.calibration.CalibrationRecipe`, for instance) is stored as
    ``{"type": name, "value": value.to_dict()}`` and rebuilt on loading with
    ``cls.from_dict(value)``, which must check what it is given: the file may come from anyone.

    Parameters
    ----------
    name : str
        The name the files record.

    Returns
    -------
    callable
        The decorator; it returns the class unchanged.
    """

    def register(cls):
        known = _PARAMETER_TYPES.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"A parameter type named {name!r} is registered already ({known}).")
        _PARAMETER_TYPES[name] = cls
        cls._parameter_type = name
        return cls

    return register


def _registered_class(calibrator):
    name = type(calibrator).__name__
    if registered_calibrators().get(name) is not type(calibrator):
        raise TypeError(
            f"calibrator must be one of {sorted(registered_calibrators())} (the registered "
            f"subclasses of BaseLogitCalibrator); got a {name}. Other estimators have no "
            "code-free file format in distcal."
        )
    return name


def _param_json(value, name: str):
    """Return a parameter as JSON; a calibrator parameter becomes its class and parameters."""
    if isinstance(value, BaseLogitCalibrator):
        params = value.get_params(deep=False)
        if params.get("model") is not None:
            raise ValueError(f"Cannot save {name}: a calibrator parameter with a model.")
        return {
            "class": _registered_class(value),
            "params": {k: _param_json(v, f"{name}__{k}") for k, v in params.items()},
        }
    kind = getattr(type(value), "_parameter_type", None)
    if kind is not None and _PARAMETER_TYPES.get(kind) is type(value):
        return {"type": kind, "value": value.to_dict()}
    return _json_value(value, name)


def _param_value(value, name: str, path):
    """Rebuild one stored parameter: a calibrator, a registered parameter type, or JSON."""
    if not isinstance(value, dict):
        return value
    if "class" in value:
        return _construct(value, path)
    kind = value.get("type")
    cls = _PARAMETER_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None or "value" not in value:
        raise ValueError(
            f"{path} stores the parameter {name!r} as {sorted(value)!r}, which is neither a "
            f"calibrator nor one of the parameter types {sorted(_PARAMETER_TYPES)}."
        )
    try:
        return cls.from_dict(value["value"])
    except ValueError as exc:
        raise ValueError(f"{path} holds an invalid {name!r} parameter: {exc}") from None


def _describe(calibrator, prefix: str, tensors: dict) -> dict:
    """Return the header entry of one fitted calibrator; add its tensors to ``tensors``."""
    name = _registered_class(calibrator)
    check_is_fitted(calibrator)
    params = calibrator.get_params(deep=False)
    has_model = params.pop("model", None) is not None
    fitted, nested, as_numpy = {}, {}, []
    for key, value in vars(calibrator).items():
        if not key.endswith("_") or key.startswith("_") or key in params:
            continue
        if isinstance(value, BaseLogitCalibrator):
            nested[key] = _describe(value, f"{prefix}{key}.", tensors)
        elif isinstance(value, np.ndarray):
            tensors[prefix + key] = torch.from_numpy(np.ascontiguousarray(value))
            as_numpy.append(key)
        elif isinstance(value, torch.Tensor):
            tensors[prefix + key] = value
        else:
            fitted[key] = _json_value(value, key)
    return {
        "class": name,
        "params": {key: _param_json(value, key) for key, value in params.items()},
        "fitted": fitted,
        "numpy": sorted(as_numpy),
        "binary_1d": bool(getattr(calibrator, "_binary_1d", False)),
        "has_model": has_model,
        "nested": nested,
    }


def save_calibrator(calibrator, path) -> Path:
    """Save a fitted calibrator to a safetensors file (atomic; no pickle).

    Parameters
    ----------
    calibrator : BaseLogitCalibrator
        A fitted calibrator of a registered class: any of distcal's, or a subclass of
        :class:`~distcal.calibration.BaseLogitCalibrator` defined in this process. A
        ``MaskedScaling`` is saved with its fitted inner calibrator.
    path : str or path
        Where to write; the folder is created, and a crash while writing leaves any previous
        file intact.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    TypeError
        ``calibrator`` is not of a registered calibrator class.
    ValueError
        A parameter or fitted attribute cannot be stored (a ``RandomState`` instance as
        ``random_state``, for instance).

    Examples
    --------
    >>> import numpy as np
    >>> from distcal import TemperatureScaling, load_calibrator, save_calibrator
    >>> logits = np.array([[4.0, 0.0], [0.0, 4.0], [4.0, 0.0], [0.0, 4.0]])
    >>> ts = TemperatureScaling().fit(logits, [0, 1, 0, 0])
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "ts.safetensors")
    >>> loaded = load_calibrator(save_calibrator(ts, path))
    >>> loaded.temperature_ == ts.temperature_
    True
    """
    tensors: dict = {}
    entry = _describe(calibrator, "", tensors)
    metadata = {"kind": _KIND, "format_version": 1, **entry}
    return write_tensors(path, tensors, metadata)


def _construct(spec, path):
    """Build an unfitted calibrator from ``{"class": ..., "params": ...}`` (registry only)."""
    try:
        name, params = spec["class"], dict(spec["params"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a readable distcal calibrator: {exc!r} missing.") from exc
    cls = registered_calibrators().get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"{path} names the class {name!r}, which is not a distcal calibrator.")
    params = {key: _param_value(value, key, path) for key, value in params.items()}
    try:
        calibrator = cls(**params)
    except TypeError as exc:
        raise ValueError(f"{path} has parameters {name} does not take: {exc}") from exc
    try:  # the values a constructor stores unchecked (tol="abc"), checked as fit would
        validate_params(calibrator)
    except InvalidParameterError as exc:
        raise ValueError(f"{path} holds an invalid {name}: {exc}") from None
    return calibrator


def _rebuild(entry, tensors: dict, prefix: str, path, model):
    """Rebuild the fitted calibrator of one header entry (and its nested ones)."""
    try:
        name = entry["class"]
        fitted, nested = dict(entry["fitted"]), dict(entry.get("nested", {}))
        has_model, binary = bool(entry["has_model"]), bool(entry["binary_1d"])
        entry["numpy"]
        params = dict(entry["params"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a readable distcal calibrator: {exc!r} missing.") from exc
    if has_model and model is None:
        raise ValueError(
            f"{path} holds a {name} fitted with a model: pass the network as model= (networks "
            "are saved separately, with distcal.distill.save_network)."
        )
    if not has_model and model is not None and not prefix:
        raise ValueError(f"{path} holds a {name} fitted without a model; model must be None.")
    if has_model:
        params["model"] = model
    calibrator = _construct({"class": name, "params": params}, path)
    own = {
        key[len(prefix) :]: value
        for key, value in tensors.items()
        if key.startswith(prefix) and "." not in key[len(prefix) :]
    }
    for key in [*fitted, *own, *nested]:
        if not key.endswith("_") or key.startswith("_"):
            raise ValueError(f"{path} sets {key!r}, which is not a fitted attribute.")
    if isinstance(fitted.get("input_shape_"), list):
        fitted["input_shape_"] = tuple(fitted["input_shape_"])
    values = {
        key: value.numpy() if key in _NUMPY_ATTRIBUTES else value for key, value in own.items()
    }
    for key, value in nested.items():
        values[key] = _rebuild(value, tensors, f"{prefix}{key}.", path, None)
    for key, value in {**fitted, **values}.items():
        try:
            setattr(calibrator, key, value)
        except AttributeError as exc:  # a read-only property
            raise ValueError(f"{path} sets {key!r}, which is not a fitted attribute.") from exc
    calibrator._binary_1d = binary
    check_is_fitted(calibrator)
    _check_content(calibrator, path)
    if not has_model and not prefix:
        _check_predictions(calibrator, path)
    return calibrator


def _check_content(calibrator, path) -> None:
    """Check a loaded calibrator's fitted attributes before anything predicts with them."""
    name = type(calibrator).__name__
    constraints = type(calibrator)._fitted_constraints
    present = {key: getattr(calibrator, key) for key in constraints if hasattr(calibrator, key)}
    try:
        validate_constraints(present, {key: constraints[key] for key in present}, name,
                             noun="fitted attribute")  # fmt: skip
    except InvalidParameterError as exc:
        raise ValueError(f"{path} holds an invalid {name}: {exc}") from None
    for key, value in present.items():
        if isinstance(value, float) and not np.isfinite(value):
            raise ValueError(f"{path} holds an invalid {name}: {key} = {value} is not finite.")
    classes = getattr(calibrator, "classes_", None)
    if classes is not None and (np.ndim(classes) != 1 or len(classes) < 2):
        raise ValueError(
            f"{path} holds an invalid {name}: classes_ must list at least 2 classes; got "
            f"shape {np.shape(classes)}."
        )
    for key, value in vars(calibrator).items():
        if (
            isinstance(value, torch.Tensor)
            and value.is_floating_point()
            and key not in type(calibrator)._fitted_may_be_infinite
            and not bool(torch.isfinite(value).all())
        ):
            raise ValueError(
                f"{path} holds an invalid {name}: its fitted tensor {key} has NaN or infinite "
                "values."
            )


def _check_predictions(calibrator, path) -> None:
    """Predict on a fixed probe: shapes and probabilities must come out right.

    The probe is logits, or their softmax for a calibrator of ``input_type="probabilities"``.

    A tensor of the wrong shape, or values no fit produces, would otherwise surface only at
    the user's first prediction, as a torch error far from the file.
    """
    name = type(calibrator).__name__
    n_columns = int(getattr(calibrator, "n_features_in_", len(calibrator.classes_)))
    grid = torch.arange(16 * n_columns, dtype=torch.float64).reshape(16, n_columns)
    probe = 5 * torch.sin(grid)  # spread, deterministic logits
    binary = getattr(calibrator, "_binary_1d", False)
    if getattr(calibrator, "input_type", "logits") == "probabilities":
        # what such a calibrator predicts on: probabilities (of class 1, for 1-D input)
        probe = torch.sigmoid(probe[:, 0]) if binary else torch.softmax(probe, dim=1)
    elif binary:
        probe = probe[:, 0]
    try:
        proba = calibrator.predict_proba(probe)
    except Exception as exc:
        raise ValueError(
            f"{path} holds a {name} that cannot predict ({type(exc).__name__}: {exc}); its "
            "fitted attributes do not fit together."
        ) from None
    expected = (16, len(calibrator.classes_))
    tolerance = 8 * expected[1] * torch.finfo(torch.float64).eps
    if (
        tuple(proba.shape) != expected
        or not bool(torch.isfinite(proba).all())
        or bool((proba < 0).any())
        or float((proba.sum(dim=1) - 1).abs().max()) > tolerance
    ):
        raise ValueError(
            f"{path} holds a {name} whose predictions are not probabilities of shape "
            f"{expected} (got shape {tuple(proba.shape)}); its fitted attributes are invalid."
        )


def load_calibrator(path, *, model=None) -> BaseLogitCalibrator:
    """Load a calibrator written by :func:`save_calibrator`.

    Parameters
    ----------
    path : str or path
        The file.
    model : torch.nn.Module, default=None
        The network of a masked calibrator saved with one (load it with
        :func:`distcal.distill.load_network`); must be None for the others.

    Returns
    -------
    BaseLogitCalibrator
        The fitted calibrator, of the class it was saved as. Its tensors are on the CPU.

    Raises
    ------
    ValueError
        The file is truncated, tampered with, not a calibrator, or names a class that is not
        a registered calibrator; or ``model`` is missing or superfluous.
    """
    tensors, metadata = read_tensors(path, kind=_KIND)
    return _rebuild(metadata, tensors, "", path, model)
