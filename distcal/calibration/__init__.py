"""Calibrators that map logits to calibrated probabilities, and their Pipeline building blocks."""

from .._masking import mask_inputs, mask_logits
from ._base import BaseLogitCalibrator, registered_calibrators
from ._calibrated_module import (
    CalibratedModule,
    calibrated_module,
    load_calibrated_module,
    save_calibrated_module,
)
from ._ensemble import EnsembleTemperatureScaling
from ._input_masker import InputMasker
from ._linear import DirichletCalibration, MatrixScaling, VectorScaling
from ._masked_scaling import MaskedScaling
from ._masked_temperature import MaskedTemperatureScaling
from ._model import LogitTransformer, module_logits
from ._one_vs_rest import HistogramBinning, IsotonicCalibration
from ._persistence import load_calibrator, save_calibrator
from ._recipe import (
    RECIPE_METHODS,
    CalibrationRecipe,
    DistilledCalibration,
    distilled_digest,
    logit_scale,
)
from ._temperature import TemperatureFit, TemperatureScaling, fit_temperature

__all__ = [
    "RECIPE_METHODS",
    "BaseLogitCalibrator",
    "CalibratedModule",
    "CalibrationRecipe",
    "DirichletCalibration",
    "DistilledCalibration",
    "EnsembleTemperatureScaling",
    "HistogramBinning",
    "InputMasker",
    "IsotonicCalibration",
    "LogitTransformer",
    "MaskedScaling",
    "MaskedTemperatureScaling",
    "MatrixScaling",
    "TemperatureFit",
    "TemperatureScaling",
    "VectorScaling",
    "calibrated_module",
    "distilled_digest",
    "fit_temperature",
    "load_calibrated_module",
    "load_calibrator",
    "logit_scale",
    "mask_inputs",
    "mask_logits",
    "module_logits",
    "registered_calibrators",
    "save_calibrated_module",
    "save_calibrator",
]
