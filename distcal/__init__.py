"""distcal: calibration for neural networks trained on distilled data.

The estimators a user imports first live at the top level; metrics, plotting and dataset
distillation live in :mod:`distcal.metrics`, :mod:`distcal.plotting` and :mod:`distcal.distill`.
"""

from ._version import __version__
from .calibration import (
    DistilledCalibration,
    InputMasker,
    LogitTransformer,
    MaskedTemperatureScaling,
    TemperatureScaling,
    calibrated_module,
    load_calibrated_module,
    load_calibrator,
    save_calibrated_module,
    save_calibrator,
)

__all__ = [
    "DistilledCalibration",
    "InputMasker",
    "LogitTransformer",
    "MaskedTemperatureScaling",
    "TemperatureScaling",
    "__version__",
    "calibrated_module",
    "load_calibrated_module",
    "load_calibrator",
    "save_calibrated_module",
    "save_calibrator",
]
