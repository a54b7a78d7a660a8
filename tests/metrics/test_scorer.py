"""Scorers: negated metrics of predict_proba, usable in GridSearchCV."""

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_val_score

from distcal import MaskedTemperatureScaling
from distcal.metrics import (
    SCORERS,
    adaptive_calibration_error,
    brier_score,
    classwise_calibration_error,
    debiased_calibration_error,
    expected_calibration_error,
    get_scorer,
    ks_calibration_error,
    maximum_calibration_error,
    neg_ece10_scorer,
    neg_ece_scorer,
    neg_nll_scorer,
    negative_log_likelihood,
    smooth_calibration_error,
)

METRIC_OF = {
    "neg_ece": expected_calibration_error,
    "neg_ece10": lambda y, p: expected_calibration_error(y, p, n_bins=10),
    "neg_adaptive_ece": adaptive_calibration_error,
    "neg_classwise_ece": classwise_calibration_error,
    "neg_mce": maximum_calibration_error,
    "neg_nll": negative_log_likelihood,
    "neg_brier": brier_score,
    "neg_debiased_ce": debiased_calibration_error,
    "neg_smooth_ece": smooth_calibration_error,
    "neg_ks": ks_calibration_error,
}


def make_problem(n_classes):
    return make_classification(
        n_samples=240,
        n_features=6,
        n_informative=4,
        n_classes=n_classes,
        random_state=0,
    )


def test_registry_is_complete():
    assert set(SCORERS) == set(METRIC_OF)


@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("name", sorted(METRIC_OF))
def test_scorer_is_the_negated_metric_of_predict_proba(name, n_classes):
    X, y = make_problem(n_classes)
    model = LogisticRegression().fit(X, y)
    probs = model.predict_proba(X)
    expected = -METRIC_OF[name](y, probs)
    assert SCORERS[name](model, X, y) == pytest.approx(expected, abs=1e-12)
    assert get_scorer(name)(model, X, y) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_scorers_in_grid_search(n_classes):
    X, y = make_problem(n_classes)
    search = GridSearchCV(
        LogisticRegression(),
        {"C": [0.01, 1.0, 100.0]},
        scoring={"ece": neg_ece_scorer, "ece10": neg_ece10_scorer, "nll": neg_nll_scorer},
        refit="nll",
        cv=3,
    ).fit(X, y)
    results = search.cv_results_
    for key in ("mean_test_ece", "mean_test_ece10", "mean_test_nll"):
        assert np.all(results[key] <= 0)
    best = int(np.argmax(results["mean_test_nll"]))
    assert search.best_params_ == results["params"][best]
    assert search.best_score_ == results["mean_test_nll"][best]


def test_scorer_passes_sample_weight():
    X, y = make_problem(3)
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(y))
    model = LogisticRegression().fit(X, y)
    expected = -expected_calibration_error(y, model.predict_proba(X), sample_weight=weights)
    assert neg_ece_scorer(model, X, y, sample_weight=weights) == pytest.approx(expected)


def test_scorer_in_cross_val_score_by_name():
    X, y = make_problem(2)
    scores = cross_val_score(LogisticRegression(), X, y, cv=3, scoring=get_scorer("neg_brier"))
    assert scores.shape == (3,)
    assert np.all((scores <= 0) & (scores >= -2))


def test_get_scorer_returns_a_copy():
    assert get_scorer("neg_ece") is not SCORERS["neg_ece"]


@pytest.mark.parametrize("name", ["ece", "neg_log_loss", None, 3])
def test_get_scorer_lists_valid_names(name):
    with pytest.raises(ValueError, match=r"not a valid distcal scorer name.*'neg_adaptive_ece'"):
        get_scorer(name)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_scorer_selects_a_calibrator_on_logits(n_classes):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(300, n_classes)) * 3
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = (p.cumsum(axis=1) > rng.random((300, 1))).argmax(axis=1)
    # Over-confident logits; binary problems pass 1-D decision values.
    logits = 2 * z if n_classes > 2 else 2 * (z[:, 1] - z[:, 0])
    search = GridSearchCV(
        MaskedTemperatureScaling(random_state=0),
        {"mask_ratio": [0.0, 0.3]},
        scoring=neg_ece_scorer,
        cv=3,
    ).fit(logits, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(np.isfinite(scores) & (scores <= 0))
    model = search.best_estimator_
    expected = -expected_calibration_error(y, model.predict_proba(logits))
    assert neg_ece_scorer(model, logits, y) == pytest.approx(expected, abs=1e-12)
