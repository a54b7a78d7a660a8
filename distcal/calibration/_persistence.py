"""Saving and loading fitted calibrators in a format that cannot execute code.

A pickle of a calibrator runs code when it is loaded, which is no way to receive one from
someone else. :func:`save_calibrator` writes a safetensors file instead: the calibrator's class
name (one of distcal's), its parameters and fitted attributes in the JSON header, tensors as
tensors. :func:`load_calibrator` rebuilds the calibrator from an allow-list of classes. A model
(``MaskedTemperatureScaling(model=...)``) is not stored: networks have their own files
(:func:`distcal.distill.save_network`), and the model is passed again when loading.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted

from .._files import read_tensors, write_tensors
from ._base import BaseLogitCalibrator
from ._ensemble import EnsembleTemperatureScaling
from ._linear import DirichletCalibration, MatrixScaling, VectorScaling
from ._masked_temperature import MaskedTemperatureScaling
from ._temperature import TemperatureScaling

__all__ = ["load_calibrator", "save_calibrator"]

_KIND = "calibrator"
# The classes a file may name: nothing else is ever constructed from a file.
_CLASSES = {
    cls.__name__: cls
    for cls in (
        TemperatureScaling,
        MaskedTemperatureScaling,
        VectorScaling,
        MatrixScaling,
        DirichletCalibration,
        EnsembleTemperatureScaling,
    )
}


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


def save_calibrator(calibrator, path) -> Path:
    """Save a fitted calibrator to a safetensors file (atomic; no pickle).

    Parameters
    ----------
    calibrator : BaseLogitCalibrator
        A fitted ``TemperatureScaling``, ``MaskedTemperatureScaling``, ``VectorScaling``,
        ``MatrixScaling`` or ``DirichletCalibration``.
    path : str or path
        Where to write; the folder is created, and a crash while writing leaves any previous
        file intact.

    Returns
    -------
    Path
        ``path``.

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
    name = type(calibrator).__name__
    if _CLASSES.get(name) is not type(calibrator):
        raise TypeError(
            f"calibrator must be one of {sorted(_CLASSES)}; got a {name}. Other estimators "
            "have no code-free file format in distcal."
        )
    check_is_fitted(calibrator)
    params = calibrator.get_params(deep=False)
    has_model = params.pop("model", None) is not None
    tensors, fitted = {}, {}
    for key, value in vars(calibrator).items():
        if not key.endswith("_") or key.startswith("__") or key in params:
            continue
        if isinstance(value, np.ndarray):
            tensors[key] = torch.from_numpy(np.ascontiguousarray(value))
        elif isinstance(value, torch.Tensor):
            tensors[key] = value
        else:
            fitted[key] = _json_value(value, key)
    metadata = {
        "kind": _KIND,
        "format_version": 1,
        "class": name,
        "params": {key: _json_value(value, key) for key, value in params.items()},
        "fitted": fitted,
        "numpy": sorted(k for k, v in vars(calibrator).items() if isinstance(v, np.ndarray)),
        "binary_1d": bool(getattr(calibrator, "_binary_1d", False)),
        "has_model": has_model,
    }
    return write_tensors(path, tensors, metadata)


def load_calibrator(path, *, model=None) -> BaseLogitCalibrator:
    """Load a calibrator written by :func:`save_calibrator`.

    Parameters
    ----------
    path : str or path
        The file.
    model : torch.nn.Module, default=None
        The network of a ``MaskedTemperatureScaling`` saved with one (load it with
        :func:`distcal.distill.load_network`); must be None for the others.

    Returns
    -------
    BaseLogitCalibrator
        The fitted calibrator, of the class it was saved as.

    Raises
    ------
    ValueError
        The file is truncated, tampered with, not a calibrator, or names a class distcal does
        not load; or ``model`` is missing or superfluous.
    """
    tensors, metadata = read_tensors(path, kind=_KIND)
    try:
        name = metadata["class"]
        params, fitted = dict(metadata["params"]), dict(metadata["fitted"])
        has_model, binary = bool(metadata["has_model"]), bool(metadata["binary_1d"])
        as_numpy = set(metadata["numpy"])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a readable distcal calibrator: {exc!r} missing.") from exc
    if name not in _CLASSES:
        raise ValueError(f"{path} names the class {name!r}, which is not a distcal calibrator.")
    if has_model and model is None:
        raise ValueError(
            f"{path} holds a {name} fitted with a model: pass the network as model= (networks "
            "are saved separately, with distcal.distill.save_network)."
        )
    if not has_model and model is not None:
        raise ValueError(f"{path} holds a {name} fitted without a model; model must be None.")
    if has_model:
        params["model"] = model
    for key in ("input_shape_",):
        if isinstance(fitted.get(key), list):
            fitted[key] = tuple(fitted[key])
    try:
        calibrator = _CLASSES[name](**params)
    except TypeError as exc:
        raise ValueError(f"{path} has parameters {name} does not take: {exc}") from exc
    for key in [*fitted, *tensors]:
        if not key.endswith("_") or key.startswith("_"):
            raise ValueError(f"{path} sets {key!r}, which is not a fitted attribute.")
    for key, value in fitted.items():
        setattr(calibrator, key, value)
    for key, value in tensors.items():
        setattr(calibrator, key, value.numpy() if key in as_numpy else value)
    calibrator._binary_1d = binary
    check_is_fitted(calibrator)
    return calibrator
