"""Ready-made scorers for model selection (``GridSearchCV(..., scoring=neg_ece_scorer)``).

Declared as scikit-learn declares ``neg_brier_score_scorer`` in ``sklearn/metrics/_scorer.py``:
the scorer calls ``predict_proba`` and negates the loss, so that greater is better. For binary
problems scikit-learn passes the probability of the positive class (a 1-D array) to the metric;
distcal's metrics read 1-D probabilities as p(class 1), so labels must be 0 and 1. In general the
labels must be the column indices of ``predict_proba`` (integers in ``[0, n_classes)``), as they
are for distcal's calibrators; encode others with :class:`sklearn.preprocessing.LabelEncoder`.
"""

from __future__ import annotations

import copy

from sklearn.metrics import make_scorer

from ._calibration_error import (
    adaptive_calibration_error,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
)
from ._debiased import debiased_calibration_error
from ._ks import ks_calibration_error
from ._proper import brier_score, negative_log_likelihood
from ._smooth import smooth_calibration_error

__all__ = [
    "SCORERS",
    "get_scorer",
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
]

neg_ece_scorer = make_scorer(
    expected_calibration_error, greater_is_better=False, response_method="predict_proba"
)
# 10 equal-width bins, as in the dataset-distillation calibration literature.
neg_ece10_scorer = make_scorer(
    expected_calibration_error,
    greater_is_better=False,
    response_method="predict_proba",
    n_bins=10,
)
neg_adaptive_ece_scorer = make_scorer(
    adaptive_calibration_error, greater_is_better=False, response_method="predict_proba"
)
neg_classwise_ece_scorer = make_scorer(
    classwise_calibration_error, greater_is_better=False, response_method="predict_proba"
)
neg_mce_scorer = make_scorer(
    maximum_calibration_error, greater_is_better=False, response_method="predict_proba"
)
neg_nll_scorer = make_scorer(
    negative_log_likelihood, greater_is_better=False, response_method="predict_proba"
)
neg_brier_scorer = make_scorer(
    brier_score, greater_is_better=False, response_method="predict_proba"
)
# Calibration errors without the bias of binning, or without bins at all.
neg_debiased_ce_scorer = make_scorer(
    debiased_calibration_error, greater_is_better=False, response_method="predict_proba"
)
neg_smooth_ece_scorer = make_scorer(
    smooth_calibration_error, greater_is_better=False, response_method="predict_proba"
)
neg_ks_scorer = make_scorer(
    ks_calibration_error, greater_is_better=False, response_method="predict_proba"
)

SCORERS = {
    "neg_ece": neg_ece_scorer,
    "neg_ece10": neg_ece10_scorer,
    "neg_adaptive_ece": neg_adaptive_ece_scorer,
    "neg_classwise_ece": neg_classwise_ece_scorer,
    "neg_mce": neg_mce_scorer,
    "neg_nll": neg_nll_scorer,
    "neg_brier": neg_brier_scorer,
    "neg_debiased_ce": neg_debiased_ce_scorer,
    "neg_smooth_ece": neg_smooth_ece_scorer,
    "neg_ks": neg_ks_scorer,
}


def get_scorer(name: str):
    """Return a copy of the distcal scorer called ``name``.

    Parameters
    ----------
    name : str
        One of the keys of :data:`SCORERS`: ``"neg_ece"`` (15 equal-width bins, top-label),
        ``"neg_ece10"`` (10 bins), ``"neg_adaptive_ece"``, ``"neg_classwise_ece"``,
        ``"neg_mce"``, ``"neg_nll"``, ``"neg_brier"``, ``"neg_debiased_ce"`` (debiased
        root-mean-square error), ``"neg_smooth_ece"`` or ``"neg_ks"`` (Kolmogorov-Smirnov).

    Returns
    -------
    scorer : callable
        A scorer ``scorer(estimator, X, y)`` returning the negated metric; a new copy on each
        call, as :func:`sklearn.metrics.get_scorer` returns.

    Raises
    ------
    ValueError
        If ``name`` is not a distcal scorer; the message lists the valid names.

    See Also
    --------
    sklearn.metrics.get_scorer : Scikit-learn's scorers (accuracy, ROC AUC, ...).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from distcal.metrics import get_scorer
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = np.array([0, 0, 1, 1])
    >>> model = LogisticRegression().fit(X, y)
    >>> get_scorer("neg_brier")(model, X, y) <= 0
    True
    """
    if not isinstance(name, str) or name not in SCORERS:
        raise ValueError(
            f"{name!r} is not a valid distcal scorer name. Valid names are "
            f"{sorted(SCORERS)}; scikit-learn's own scorers come from "
            "sklearn.metrics.get_scorer."
        )
    return copy.deepcopy(SCORERS[name])
