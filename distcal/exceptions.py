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
    "InputFileError",
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


class InputFileError(ValueError):
    """A file given to a command is missing, unreadable or holds the wrong arrays.

    It is a :class:`ValueError`; ``distcal calibrate`` and ``distcal apply`` (and the readers of
    :mod:`distcal.experiment.logit_files` behind them) raise it.

    Parameters
    ----------
    argument : str
        The argument the file (or key) was given as: ``"logits"``, ``"labels"``,
        ``"logits_key"``, ``"labels_key"``, ``"calibrator"`` or ``"output"`` in Python, or
        the command line's name of it (``LOGITS``, ``--logits-key``, ...).
    message : str
        What is wrong, naming the file.
    """

    def __init__(self, argument: str, message: str):
        super().__init__(f"{argument}: {message}" if argument else message)
        self.argument = argument
        self.message = message
