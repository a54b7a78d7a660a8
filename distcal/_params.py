"""Parameter checks: the constraints of estimators' parameters and of functions' arguments.

Each estimator declares ``_parameter_constraints`` (a table of :class:`Interval`,
:class:`Options`, types and special names such as ``"random_state"``); :func:`validate_params`
checks them at the top of ``fit``, and :func:`check_param` checks one argument of a function the
same way. The error names the parameter, its owner, what was expected and what arrived, in
scikit-learn's wording. The checks of data (logits, labels, weights, images) are in
:mod:`distcal._validation`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .exceptions import InvalidParameterError

__all__ = ["Interval", "Options", "check_param", "validate_constraints", "validate_params"]


class Interval:
    """A real or integer range, for ``_parameter_constraints`` tables.

    Parameters
    ----------
    kind : {numbers.Real, numbers.Integral}
        Whether floats or only integers are accepted.
    left, right : float or None
        The bounds; None means unbounded.
    closed : {"both", "left", "right", "neither"}
        Which bounds belong to the range.
    """

    def __init__(self, kind, left, right, *, closed):
        self.kind = kind
        self.left = left
        self.right = right
        self.closed = closed

    def is_satisfied_by(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, self.kind):
            return False
        if isinstance(value, numbers.Real) and math.isnan(value):
            return False
        if self.left is not None:
            if self.closed in ("both", "left"):
                if value < self.left:
                    return False
            elif value <= self.left:
                return False
        if self.right is not None:
            if self.closed in ("both", "right"):
                if value > self.right:
                    return False
            elif value >= self.right:
                return False
        return True

    def __str__(self) -> str:
        noun = "an int" if self.kind is numbers.Integral else "a float"
        left_bracket = "[" if self.closed in ("both", "left") and self.left is not None else "("
        right_bracket = "]" if self.closed in ("both", "right") and self.right is not None else ")"
        left = "-inf" if self.left is None else repr(self.left)
        right = "inf" if self.right is None else repr(self.right)
        return f"{noun} in the range {left_bracket}{left}, {right}{right_bracket}"


class Options:
    """A fixed set of accepted values (usually strings)."""

    def __init__(self, *values):
        self.values = values

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, str | bool | int | float | type(None)) and value in self.values

    def __str__(self) -> str:
        return "one of {" + ", ".join(repr(v) for v in self.values) + "}"


class _InstanceOf:
    def __init__(self, kind, description):
        self.kind = kind
        self.description = description

    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, self.kind) and not (
            self.kind in (numbers.Integral, numbers.Real) and isinstance(value, bool)
        )

    def __str__(self) -> str:
        return self.description


class _RandomState:
    def is_satisfied_by(self, value) -> bool:
        if value is None or isinstance(value, np.random.RandomState | np.random.Generator):
            return True
        return (
            isinstance(value, numbers.Integral)
            and not isinstance(value, bool)
            and 0 <= value < 2**63
        )

    def __str__(self) -> str:
        return (
            "an int in the range [0, 2**63), an instance of numpy.random.RandomState or "
            "numpy.random.Generator, or None"
        )


def _as_constraint(spec):
    if spec is None:
        return _InstanceOf(type(None), "None")
    if spec == "boolean":
        return _InstanceOf((bool, np.bool_), "a bool")
    if spec == "random_state":
        return _RandomState()
    if spec == "device":
        return _InstanceOf((str, torch.device), "a str or torch.device naming a device")
    if spec == "module":
        return _InstanceOf(torch.nn.Module, "an instance of torch.nn.Module")
    if spec == "callable":
        return _InstanceOf(object, "a callable")  # refined in is_satisfied_by below
    if isinstance(spec, type):
        return _InstanceOf(spec, f"an instance of {spec.__name__!r}")
    return spec


def validate_constraints(values: dict, constraints: dict, owner: str, *, noun: str = "parameter"):
    """Check named values against a ``_parameter_constraints``-style table.

    This is the one implementation behind :func:`validate_params` (estimators' parameters) and
    the options of distillation methods.

    Parameters
    ----------
    values : dict
        The values by name; every name of ``constraints`` must be a key.
    constraints : dict
        For each name, a list of accepted specifications: None, ``"boolean"``,
        ``"random_state"``, ``"device"``, ``"module"``, ``"callable"``, a type, or an object with
        ``is_satisfied_by(value)`` and ``__str__`` (such as :class:`Interval` or :class:`Options`).
    owner : str
        The name of the owner of the values, used in error messages.
    noun : str, default="parameter"
        What a value is called in error messages (``"parameter"``, ``"option"``).

    Raises
    ------
    InvalidParameterError
        For the first value that satisfies none of its constraints, with a message such as
        ``The 'mask_ratio' parameter of MaskedTemperatureScaling must be a float in the range
        [0.0, 1.0). Got 1.5 instead.``
    """
    for name, specs in constraints.items():
        value = values[name]
        checks = [_as_constraint(spec) for spec in specs]
        satisfied = any(
            (callable(value) if spec == "callable" else c.is_satisfied_by(value))
            for spec, c in zip(specs, checks, strict=True)
        )
        if satisfied:
            continue
        descriptions = [str(c) for c in checks]
        expected = (
            descriptions[0]
            if len(descriptions) == 1
            else ", ".join(descriptions[:-1]) + " or " + descriptions[-1]
        )
        raise InvalidParameterError(
            f"The {name!r} {noun} of {owner} must be {expected}. Got {value!r} instead."
        )


def validate_params(estimator) -> None:
    """Check every parameter of ``estimator`` against its ``_parameter_constraints`` table.

    Raises
    ------
    InvalidParameterError
        For the first parameter that satisfies none of its constraints, with a message such as
        ``The 'mask_ratio' parameter of MaskedTemperatureScaling must be a float in the range
        [0.0, 1.0). Got 1.5 instead.``
    """
    validate_constraints(
        estimator.get_params(deep=False),
        estimator._parameter_constraints,
        type(estimator).__name__,
    )


def check_param(value, constraint, name: str, caller: str):
    """Check one argument of a function against a constraint, as estimators' parameters are.

    Raises :class:`InvalidParameterError` naming ``name`` and ``caller``, the constraint and the
    value that arrived; returns ``value`` otherwise.
    """
    if not constraint.is_satisfied_by(value):
        raise InvalidParameterError(
            f"The {name!r} parameter of {caller} must be {constraint}. Got {value!r} instead."
        )
    return value
