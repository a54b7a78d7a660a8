"""Calibration metrics: binned calibration errors, proper scoring rules, curves and scorers.

The functions here follow scikit-learn (``y_true, y_prob`` in, a float out) and accept numpy
arrays or tensors on any device. :mod:`distcal.metrics.functional` holds the tensor versions
(``preds, target`` in, a 0-d tensor on the input's device out). Both use one binning kernel, so
calibration errors, calibration curves and reliability diagrams always bin alike.
"""

from . import functional
from ._accumulator import CalibrationAccumulator
from ._bootstrap import bootstrap_ci, bootstrap_difference
from ._calibration_error import (
    adaptive_calibration_error,
    calibration_curve,
    calibration_error,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
)
from ._debiased import debiased_calibration_error
from ._diagnostics import masking_spread_ratio, max_logit_concentration, max_logit_statistics
from ._inference import (
    calibration_test,
    debiased_calibration_error_ci,
    debiased_calibration_error_difference,
)
from ._ks import ks_calibration_error
from ._proper import brier_score, negative_log_likelihood
from ._resampling import declare_resampler, with_options
from ._scorer import (
    SCORERS,
    get_scorer,
    neg_adaptive_ece_scorer,
    neg_brier_scorer,
    neg_classwise_ece_scorer,
    neg_debiased_ce_scorer,
    neg_ece10_scorer,
    neg_ece_scorer,
    neg_ks_scorer,
    neg_mce_scorer,
    neg_nll_scorer,
    neg_smooth_ece_scorer,
)
from ._smooth import smooth_calibration_error

__all__ = [
    "SCORERS",
    "CalibrationAccumulator",
    "adaptive_calibration_error",
    "bootstrap_ci",
    "bootstrap_difference",
    "brier_score",
    "calibration_curve",
    "calibration_error",
    "calibration_test",
    "classwise_calibration_error",
    "debiased_calibration_error",
    "debiased_calibration_error_ci",
    "debiased_calibration_error_difference",
    "declare_resampler",
    "expected_calibration_error",
    "functional",
    "get_scorer",
    "ks_calibration_error",
    "masking_spread_ratio",
    "max_logit_concentration",
    "max_logit_statistics",
    "maximum_calibration_error",
    "neg_adaptive_ece_scorer",
    "neg_brier_scorer",
    "neg_classwise_ece_scorer",
    "neg_debiased_ce_scorer",
    "neg_ece10_scorer",
    "neg_ece_scorer",
    "neg_ks_scorer",
    "neg_mce_scorer",
    "neg_nll_scorer",
    "neg_smooth_ece_scorer",
    "negative_log_likelihood",
    "smooth_calibration_error",
    "with_options",
]
