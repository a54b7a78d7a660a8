"""Checks of data (logits, labels, probabilities, weights, images), written once.

The checks of parameters are in :mod:`distcal._params`. Each check says which argument is
wrong, what was expected and what arrived. Nothing is clipped, guessed or dropped silently:
inputs are either accepted exactly or rejected with an error.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import NamedTuple

import numpy as np
import torch
from scipy import sparse
from sklearn.exceptions import DataConversionWarning
from sklearn.utils.validation import check_is_fitted

from ._device import as_tensor, is_tensor, row_chunks
from .exceptions import ProbabilityInputWarning

__all__ = [
    "Logits",
    "check_fitted_shape",
    "check_input_shape",
    "check_inputs",
    "check_label_probabilities",
    "check_label_range",
    "check_logits",
    "check_probabilities",
    "check_sample_weight",
    "check_soft_targets",
    "check_targets",
    "check_weight_total",
    "is_soft_targets",
    "record_input_shape",
]


# --------------------------------------------------------------------------------------------
# Arrays
# --------------------------------------------------------------------------------------------


class Logits(NamedTuple):
    """Validated logits.

    Attributes
    ----------
    values : Tensor of shape (n_samples, n_classes)
        The logits on the input's device, in its floating dtype; binary decision values are
        expanded to the two columns ``[0, z]``, so that ``softmax`` gives ``sigmoid(z)`` for
        class 1.
    binary_1d : bool
        Whether the input was 1-D or a single column (binary decision values).
    n_features : int
        Number of columns of the input as given (1 for 1-D input).
    """

    values: torch.Tensor
    binary_1d: bool
    n_features: int


def _to_numeric_tensor(x, name: str) -> torch.Tensor:
    if x is None:
        raise TypeError(f"{name} must be an array-like or tensor of numbers; got None.")
    if isinstance(x, str | bytes) or (np.isscalar(x) and not is_tensor(x)):
        raise TypeError(
            f"{name} must be an array-like or tensor of numbers; got {type(x).__name__} {x!r}."
        )
    if sparse.issparse(x) or (is_tensor(x) and x.layout != torch.strided):
        raise TypeError(
            f"Sparse data was passed for {name}, but dense data is required. Convert it with "
            "X.toarray() (scipy) or X.to_dense() (torch)."
        )
    if not is_tensor(x):
        try:
            x = np.asarray(x)
        except ValueError as exc:  # ragged nested lists
            raise ValueError(f"{name} must be a rectangular array of numbers: {exc}") from None
        if x.dtype == object:
            try:
                x = x.astype(np.float64)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"{name} must hold real numbers: {exc}") from exc
        if x.dtype.kind == "c":
            raise ValueError(f"Complex data not supported: {name} must hold real numbers.")
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers; got an array of dtype {x.dtype}.")
    tensor = as_tensor(x)
    if tensor.is_complex():
        raise ValueError(f"Complex data not supported: {name} must hold real numbers.")
    return tensor


def _float_dtype(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.is_floating_point():
        return tensor
    return tensor.to(torch.float64)


def _check_finite(tensor: torch.Tensor, name: str) -> tuple[float, float]:
    """Raise if ``tensor`` holds NaN or infinity; return its minimum and maximum.

    ``aminmax`` is a single reduction without a full-size temporary (``torch.isfinite`` makes
    one the size of the input), and NaN or infinity propagates into its result.
    """
    low, high = (float(v) for v in torch.aminmax(tensor))
    if not (math.isfinite(low) and math.isfinite(high)):
        n_bad, first = 0, None
        for rows in row_chunks(tensor.shape[0], tensor[:1].numel(), tensor.device):
            bad = ~torch.isfinite(tensor[rows].reshape(rows.stop - rows.start, -1)).all(dim=1)
            if first is None and bool(bad.any()):
                first = rows.start + int(bad.nonzero()[0, 0])
            n_bad += int((~torch.isfinite(tensor[rows])).sum())
        raise ValueError(
            f"Input {name} contains NaN or infinity ({n_bad} of {tensor.numel()} values, the "
            f"first in row {first}); it must be finite."
        )
    return low, high


def _check_shape(tensor: torch.Tensor, name: str, what: str) -> None:
    if tensor.ndim not in (1, 2):
        raise ValueError(
            f"{name} must be {what} of shape (n_samples, n_classes), or 1-D values of a binary "
            f"problem of shape (n_samples,); got an array of shape {tuple(tensor.shape)}."
        )
    if tensor.shape[0] == 0:
        raise ValueError(
            f"Found array with 0 sample(s) (shape={tuple(tensor.shape)}) while a minimum of 1 is "
            f"required: {name} is empty."
        )
    if tensor.ndim == 2 and tensor.shape[1] == 0:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={tuple(tensor.shape)}) while a minimum of 1 is "
            f"required: {name} has no class columns."
        )


def _proba_atol(dtype: torch.dtype) -> float:
    # Rows of probabilities rounded to a low-precision dtype sum to 1 only up to a few ulps.
    return max(1e-4, 4 * torch.finfo(dtype).eps)


def _looks_like_probabilities(tensor: torch.Tensor, low: float, high: float) -> bool:
    if low < 0 or high > 1 or (tensor.ndim == 1 and tensor.shape[0] < 2):
        return False
    if tensor.ndim == 1 or tensor.shape[1] == 1:
        return True
    atol = _proba_atol(tensor.dtype)
    return _max_row_sum_deviation(tensor, atol)[0] <= atol


def _max_row_sum_deviation(tensor: torch.Tensor, atol: float) -> tuple[float, int, float]:
    """Largest ``|row sum - 1|``, its row and that row's sum.

    Summing in the input's own dtype is exact to ``n_classes * eps``; when that leaves the
    largest deviation clearly within ``atol`` the answer is settled without any float64 work.
    Otherwise the row sums are recomputed in float64 chunk by chunk into one vector (no float64
    copy of the whole input), so a reported deviation is always exact.
    """
    if tensor.dtype in (torch.float32, torch.float64):
        sums = tensor.sum(dim=1)
        value, index = (sums - 1).abs_().max(dim=0)
        margin = 2 * tensor.shape[1] * torch.finfo(tensor.dtype).eps
        if float(value) + margin <= atol:
            row = int(index)
            return float(value), row, float(sums[row])
    sums = torch.empty(tensor.shape[0], dtype=torch.float64, device=tensor.device)
    for rows in row_chunks(tensor.shape[0], tensor.shape[1], tensor.device):
        torch.sum(tensor[rows].to(torch.float64), dim=1, out=sums[rows])
    value, index = (sums - 1).abs_().max(dim=0)
    row = int(index)
    return float(value), row, float(sums[row])


def check_logits(X, *, input_type: str = "logits", name: str = "X") -> Logits:
    """Validate logits (or, with ``input_type="probabilities"``, turn probabilities into logits).

    Parameters
    ----------
    X : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Logits, or binary decision values when 1-D or a single column.
    input_type : {"logits", "probabilities"}, default="logits"
        What ``X`` holds. Probabilities are converted with ``log(p)``; an exact zero becomes the
        logarithm of the smallest positive float64 (about -708) so that it stays finite.
    name : str, default="X"
        The argument's name, used in error messages.

    Returns
    -------
    Logits
        The validated logits and how they were given.
    """
    tensor = _float_dtype(_to_numeric_tensor(X, name))
    _check_shape(tensor, name, "2-D logits" if input_type == "logits" else "2-D probabilities")
    low, high = _check_finite(tensor, name)
    binary_1d = tensor.ndim == 1 or tensor.shape[1] == 1
    n_features = 1 if tensor.ndim == 1 else tensor.shape[1]
    if input_type == "probabilities":
        probabilities = check_probabilities(tensor, name=name)
        tiny = torch.finfo(torch.float64).tiny
        logits = torch.log(probabilities.to(torch.float64).clamp_min(tiny)).to(tensor.dtype)
        return Logits(logits, binary_1d, n_features)
    if _looks_like_probabilities(tensor, low, high):
        warnings.warn(
            f"{name} looks like probabilities (every value lies in [0, 1] and every row sums to 1),"
            " but it is treated as logits. Pass logits (the network's outputs before softmax), or "
            "set input_type='probabilities' if these are probabilities.",
            ProbabilityInputWarning,
            stacklevel=3,
        )
    if binary_1d:
        z = tensor.reshape(-1)
        tensor = torch.stack([torch.zeros_like(z), z], dim=1)
    return Logits(tensor, binary_1d, n_features)


def check_label_probabilities(
    logits: Logits, labels: torch.Tensor, *, owner: str, name: str = "X"
) -> None:
    """Refuse probabilities that give a sample's label exactly 0, before a fit on their log.

    ``check_logits(..., input_type="probabilities")`` turns an exact 0 into the log of the
    smallest positive float64 (about -708) so that the logits stay finite, which serves
    prediction. A fit cannot use it on the label's column: the true log-probability is -inf,
    every temperature (or affine map) then gives the sample an infinite NLL, and the floor, not
    the data, decides the fit (one such row in 200 took a temperature from 3.0 to 472.7).

    Parameters
    ----------
    logits : Logits
        What ``check_logits`` made of the probabilities.
    labels : Tensor of shape (n_samples,)
        The validated labels.
    owner : str
        The calibrator's name, for the message.
    name : str, default="X"
        The argument's name.

    Raises
    ------
    ValueError
        Naming the rows (the first ten) and the remedies.
    """
    values = logits.values
    floor = torch.tensor(math.log(torch.finfo(torch.float64).tiny), dtype=values.dtype)
    picked = values.gather(1, labels.reshape(-1, 1).to(values.device))[:, 0]
    zero = picked <= floor.to(values.device)
    if not bool(zero.any()):
        return
    rows = zero.nonzero().flatten()
    shown = ", ".join(str(int(row)) for row in rows[:10]) + (", ..." if len(rows) > 10 else "")
    raise ValueError(
        f"{owner}: {name} gives the label of {len(rows)} of {len(zero)} samples a probability "
        f"of exactly 0 (in rows [{shown}]). Its log is -inf, so every calibration map gives these "
        "samples an infinite NLL and no fit is defined; a floor in place of 0 would decide the "
        "fit alone. Pass the logits (the network's outputs before the softmax), which say how "
        "wrong these predictions are, or remove these rows."
    )


def check_probabilities(y_prob, *, name: str = "y_prob") -> torch.Tensor:
    """Validate class probabilities and return them as a float tensor of shape (n, n_classes).

    1-D input (or a single column) holds the probability of class 1 of a binary problem and is
    expanded to ``[1 - p, p]``. Values must lie in [0, 1] and rows must sum to 1 within
    ``max(1e-4, 4 * eps)`` of their dtype; nothing is clipped or renormalised.
    """
    tensor = _float_dtype(_to_numeric_tensor(y_prob, name))
    _check_shape(tensor, name, "2-D probabilities")
    low, high = _check_finite(tensor, name)
    if low < 0 or high > 1:
        raise ValueError(
            f"{name} must hold probabilities in [0, 1]; got values from {low:.6g} to {high:.6g}. "
            "If these are logits, apply a softmax first (or pass them to a calibrator, which "
            "takes logits)."
        )
    if tensor.ndim == 1 or tensor.shape[1] == 1:
        p = tensor.reshape(-1)
        return torch.stack([1 - p, p], dim=1)
    atol = _proba_atol(tensor.dtype)
    deviation, row, row_sum = _max_row_sum_deviation(tensor, atol)
    if deviation > atol:
        raise ValueError(
            f"{name} must hold probabilities whose rows sum to 1 (within {atol:.1e}); row {row} "
            f"sums to {row_sum:.8g}. Normalise the rows, or apply a softmax if these are logits."
        )
    return tensor


def check_targets(
    y,
    *,
    n_samples: int,
    n_classes: int | None = None,
    device=None,
    name: str = "y",
    x_name: str = "X",
    estimator=None,
    binary: bool = False,
    min_classes: int = 2,
) -> torch.Tensor:
    """Validate integer class labels that index the columns of ``x_name``.

    The one label check of distcal: calibrators, students, the trainer and the metrics all use
    it. Labels must be integers (or integral floats, or booleans) in ``[0, n_classes)``, one per
    sample, with at least ``min_classes`` distinct values. ``n_classes=None`` checks only that
    labels are non-negative (the caller infers the number of classes). ``binary`` says the
    logits came as 1-D decision values (it only changes the error message).

    Returns
    -------
    Tensor of shape (n_samples,)
        The labels as ``torch.long`` on ``device``.
    """
    if y is None:
        if estimator is None:
            raise TypeError(f"{name} must be an array-like or tensor of class labels; got None.")
        # scikit-learn's wording, which its common checks look for
        raise ValueError(
            f"{type(estimator).__name__} requires {name} to be passed, but the target {name} "
            "is None."
        )
    if not is_tensor(y):
        array = np.asarray(y)
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"Unknown label type: {name} must hold integer class labels (the column index of "
                f"each sample's class in {x_name}); got an array of dtype {array.dtype}. Encode "
                "labels with sklearn.preprocessing.LabelEncoder first."
            )
        y = array
    tensor = _to_numeric_tensor(y, name)
    if tensor.ndim == 2 and tensor.shape[1] == 1:
        warnings.warn(
            f"A column-vector {name} was passed when a 1d array was expected; it is raveled.",
            DataConversionWarning,
            stacklevel=3,
        )
        tensor = tensor.reshape(-1)
    if tensor.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D class labels of shape (n_samples,); got an array of shape "
            f"{tuple(tensor.shape)}."
        )
    if tensor.shape[0] != n_samples:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: {x_name} has "
            f"{n_samples} and {name} has {tensor.shape[0]}."
        )
    if tensor.is_floating_point():
        _check_finite(tensor, name)  # names the first bad row
        fractional = tensor != tensor.round()
        if bool(fractional.any()):
            raise ValueError(
                f"{name} must hold integer class labels; got continuous values such as "
                f"{float(tensor[fractional][0])!r}. Regression targets cannot be calibrated as "
                "classes."
            )
    labels = tensor.to(device=device, dtype=torch.long)
    low, high = check_label_range(labels, n_classes, name=name, x_name=x_name, binary=binary)
    if min_classes > 1 and low == high:
        raise ValueError(
            f"{name} contains only one class ({low}); at least {min_classes} classes are needed."
        )
    return labels


def check_label_range(
    labels: torch.Tensor,
    n_classes: int | None,
    *,
    name: str = "y",
    x_name: str = "X",
    binary: bool = False,
) -> tuple[int, int]:
    """Check that labels index the columns of ``x_name``; return the smallest and largest.

    The range rule of :func:`check_targets`, on its own for labels whose number of classes is
    known only later: those of a model's inputs, checked before the forward pass (against
    ``n_classes=None``: non-negative) and against the model's columns after it.
    """
    low, high = (int(v) for v in torch.aminmax(labels))
    upper = n_classes if n_classes is not None else high + 1
    if low < 0 or high >= upper:
        bad = torch.unique(labels[(labels < 0) | (labels >= upper)])[:5].tolist()
        if n_classes is None:
            columns = "labels must be class indices >= 0"
        elif binary:
            columns = (
                f"{x_name} has 1 feature(s), read as the decision values of a binary problem, "
                "so labels must be 0 or 1"
            )
        else:
            columns = (
                f"{x_name} has {n_classes} class columns, so labels must be integers in "
                f"[0, {n_classes - 1}]"
            )
        raise ValueError(
            f"{name} contains labels {bad} that are not among the columns of {x_name}: "
            f"{columns}. Encode labels as the column index of their class in the network's "
            "output."
        )
    return low, high


def is_soft_targets(y) -> bool:
    """Return True if ``y`` holds soft labels: a 2-D floating array with two columns or more.

    Hard labels are 1-D (or a single column, which :func:`check_targets` ravels); a 2-D
    integer array is neither, and :func:`check_targets` rejects it.
    """
    if y is None or isinstance(y, str | bytes):
        return False
    shape = getattr(y, "shape", None)
    dtype = getattr(y, "dtype", None)
    if shape is None or dtype is None:
        return False
    floating = y.is_floating_point() if is_tensor(y) else np.dtype(dtype).kind == "f"
    return floating and len(shape) == 2 and shape[1] >= 2


def check_soft_targets(
    y, *, n_samples: int, n_classes: int | None = None, name: str = "y", x_name: str = "X"
) -> torch.Tensor:
    """Validate soft labels: one row of finite class scores (logits) per sample.

    Returns
    -------
    Tensor of shape (n_samples, n_classes)
        The scores as float32 (their softmax is the target distribution).
    """
    tensor = _to_numeric_tensor(y, name)
    if tensor.ndim != 2 or not tensor.is_floating_point() or tensor.shape[1] < 2:
        raise ValueError(
            f"{name} must hold soft labels, a float array of shape (n_samples, n_classes) with "
            f"n_classes >= 2; got {tensor.dtype} of shape {tuple(tensor.shape)}."
        )
    if tensor.shape[0] != n_samples:
        raise ValueError(
            f"Found input variables with inconsistent numbers of samples: {x_name} has "
            f"{n_samples} and {name} has {tensor.shape[0]}."
        )
    if n_classes is not None and tensor.shape[1] != n_classes:
        raise ValueError(
            f"{name} holds soft labels over {tensor.shape[1]} classes, but n_classes="
            f"{n_classes}: each row must have one score per class."
        )
    _check_finite(tensor, name)
    return tensor.to(torch.float32)


def check_sample_weight(
    sample_weight,
    *,
    n_samples: int,
    device=None,
    allow_zero_sum: bool = False,
    name: str = "sample_weight",
) -> torch.Tensor | None:
    """Validate sample weights: finite, non-negative, one per sample, not all zero.

    Returns None for ``sample_weight=None`` and otherwise a float64 tensor on ``device``.
    ``allow_zero_sum`` accepts all-zero weights (one batch of a stream may hold only those).
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Real) and not isinstance(sample_weight, bool):
        tensor = torch.full((n_samples,), float(sample_weight), dtype=torch.float64)
    else:
        tensor = _float_dtype(_to_numeric_tensor(sample_weight, name))
    if tensor.ndim != 1 or tensor.shape[0] != n_samples:
        raise ValueError(
            f"{name} must be 1-D with one weight per sample, shape ({n_samples},); got "
            f"shape {tuple(tensor.shape)}."
        )
    tensor = tensor.to(device=device, dtype=torch.float64)
    _check_finite(tensor, name)
    if bool((tensor < 0).any()):
        raise ValueError(
            f"{name} must be non-negative; got {int((tensor < 0).sum())} negative weights "
            f"(smallest {float(tensor.min()):.6g})."
        )
    if not allow_zero_sum:
        check_weight_total(float(tensor.sum()), name)
    return tensor


def check_weight_total(total: float, name: str = "sample_weight") -> None:
    """Refuse weights that sum to zero: the one rule for arrays, streams and processes.

    A batch of a stream (or a process's shard) may hold only zero weights; the data as a
    whole may not, so streams apply this rule to the sum over every batch (and process).
    """
    if not total > 0:
        raise ValueError(f"{name} must have a positive sum; all weights are zero.")


def check_inputs(X, *, name: str = "X") -> torch.Tensor:
    """Validate model inputs: a finite, non-empty numeric array or tensor of shape (n, ...).

    Returns a tensor sharing memory with ``X`` where possible (no copy of numpy inputs).
    """
    tensor = _float_dtype(_to_numeric_tensor(X, name))
    if tensor.ndim < 2:
        raise ValueError(
            f"{name} must hold model inputs of shape (n_samples, ...) with at least 2 dimensions "
            f"(for example (n, n_features) or (n, channels, height, width)); got an array of "
            f"shape {tuple(tensor.shape)}. Reshape your data either using X.reshape(-1, 1) if "
            "your data has a single feature or X.reshape(1, -1) if it contains a single sample."
        )
    if tensor.numel() == 0:
        raise ValueError(
            f"Found array with 0 sample(s) or 0 feature(s) (shape={tuple(tensor.shape)}) while a "
            f"minimum of 1 is required: {name} is empty."
        )
    _check_finite(tensor, name)
    return tensor


def record_input_shape(estimator, inputs: torch.Tensor) -> None:
    """Set ``input_shape_`` (and ``n_features_in_`` for 2-D inputs) in ``fit``.

    :func:`check_input_shape` checks later inputs against them.
    """
    estimator.input_shape_ = tuple(inputs.shape[1:])
    if inputs.ndim == 2:
        estimator.n_features_in_ = inputs.shape[1]


def check_input_shape(X, estimator) -> torch.Tensor:
    """Validate inputs at prediction time against the ``input_shape_`` seen in ``fit``."""
    check_is_fitted(estimator)
    return check_fitted_shape(check_inputs(X), estimator)


def check_fitted_shape(inputs: torch.Tensor, estimator) -> torch.Tensor:
    """Compare checked inputs with the ``input_shape_`` seen in ``fit``; return them."""
    check_is_fitted(estimator)
    shape = tuple(inputs.shape[1:])
    if shape != estimator.input_shape_:
        owner = type(estimator).__name__
        message = (
            f"X has samples of shape {shape}, but {owner} was fitted on samples of shape "
            f"{estimator.input_shape_}."
        )
        if inputs.ndim == 2 and hasattr(estimator, "n_features_in_"):
            message += (
                f" X has {inputs.shape[1]} features, but {owner} is expecting "
                f"{estimator.n_features_in_} features as input."
            )
        raise ValueError(message)
    return inputs
