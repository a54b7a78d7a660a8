"""Warnings and errors raised by distcal.

Every warning distcal emits derives from :class:`DistcalWarning`, so a user can silence or escalate
all of them at once (``warnings.simplefilter("error", DistcalWarning)``). Errors are subclasses of
the standard exceptions, so ``except ValueError`` keeps working.
"""

from sklearn.exceptions import ConvergenceWarning as _SklearnConvergenceWarning
from sklearn.exceptions import NotFittedError

__all__ = [
    "ConvergenceWarning",
    "DistcalWarning",
    "InvalidParameterError",
    "NotFittedError",
    "PerformanceWarning",
    "ProbabilityInputWarning",
    "UncalibratableDataWarning",
]


class DistcalWarning(UserWarning):
    """Base class of every warning emitted by distcal."""


class ConvergenceWarning(DistcalWarning, _SklearnConvergenceWarning):
    """An optimisation stopped before it converged, or its solution lies on a bound.

    It is also a :class:`sklearn.exceptions.ConvergenceWarning`, so filters written for
    scikit-learn apply.
    """


class UncalibratableDataWarning(ConvergenceWarning):
    """The calibration data cannot determine the calibration map.

    Raised when the logits separate the calibration data perfectly (every sample is classified
    correctly with a positive margin), so the negative log-likelihood keeps falling as the
    temperature goes to 0 and has no minimum. This is what happens when a network is calibrated on
    the data it was trained on, such as a distilled set.
    """


class ProbabilityInputWarning(DistcalWarning):
    """An input passed as logits looks like probabilities (non-negative rows summing to 1)."""


class PerformanceWarning(DistcalWarning):
    """The work runs, with the same results, but much slower than it could.

    A setting of the environment, named in the message, is the cause.
    """


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter has a value or type that the estimator does not accept.

    It subclasses both :class:`ValueError` and :class:`TypeError`, like scikit-learn's error of
    the same name, so either ``except`` clause catches it.
    """
