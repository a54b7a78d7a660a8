"""distcal: calibration for neural networks trained on distilled data.

The estimators a user imports first live at the top level; metrics, plotting and dataset
distillation live in :mod:`distcal.metrics`, :mod:`distcal.plotting` and :mod:`distcal.distill`.
"""

from ._version import __version__
from .calibration import (
    InputMasker,
    LogitTransformer,
    MaskedTemperatureScaling,
    TemperatureScaling,
    load_calibrator,
    save_calibrator,
)

__all__ = [
    "InputMasker",
    "LogitTransformer",
    "MaskedTemperatureScaling",
    "TemperatureScaling",
    "__version__",
    "load_calibrator",
    "save_calibrator",
]
