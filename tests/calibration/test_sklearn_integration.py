"""distcal's calibrators inside scikit-learn: clone, Pipeline, GridSearchCV, cross-validation."""

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline

from distcal import (
    InputMasker,
    LogitTransformer,
    MaskedTemperatureScaling,
    TemperatureScaling,
)
from distcal.calibration import module_logits
from distcal.metrics import expected_calibration_error, neg_ece_scorer

from ..conftest import make_logits


def test_clone_keeps_parameters_and_copies_the_model(digits_student):
    net = digits_student["net"]
    mts = MaskedTemperatureScaling(0.3, n_masks=2, model=net, random_state=4)
    twin = clone(mts)
    assert twin.get_params()["mask_ratio"] == 0.3
    assert twin.get_params()["random_state"] == 4
    assert twin.model is not net, "clone copies modules, as skorch does"
    for a, b in zip(twin.model.parameters(), net.parameters(), strict=True):
        assert torch.equal(a, b)
    twin.set_params(mask_ratio=0.5)
    assert twin.mask_ratio == 0.5
    assert mts.mask_ratio == 0.3


def test_clone_unfits():
    X, y = make_logits(n_samples=100)
    ts = TemperatureScaling().fit(X, y)
    assert not hasattr(clone(ts), "temperature_")


def test_pipeline_fits_on_masked_inputs_and_predicts_on_clean_ones(digits_student):
    d = digits_student
    net = d["net"]
    pipe = Pipeline(
        [
            ("mask", InputMasker(0.3, random_state=0)),
            ("logits", LogitTransformer(net)),
            ("ts", TemperatureScaling()),
        ]
    )
    pipe.fit(d["X_cal"], d["y_cal"])
    masked = InputMasker(0.3, random_state=0).fit_transform(d["X_cal"])
    by_hand = TemperatureScaling().fit(module_logits(net, masked, batch_size=256), d["y_cal"])
    assert pipe.named_steps["ts"].temperature_ == pytest.approx(by_hand.temperature_, rel=1e-12)
    clean = module_logits(net, d["X_test"], batch_size=256)
    np.testing.assert_allclose(
        pipe.predict_proba(d["X_test"]), by_hand.predict_proba(clean), rtol=1e-6
    )
    # the pipeline and MaskedTemperatureScaling estimate the same temperature (different draws)
    mts = MaskedTemperatureScaling(0.3, n_masks=20, model=net, random_state=0)
    assert mts.fit(d["X_cal"], d["y_cal"]).temperature_ == pytest.approx(
        pipe.named_steps["ts"].temperature_, rel=0.05
    )


def test_grid_search_over_mask_ratios_on_logits():
    X, y = make_logits(n_samples=600, n_classes=4, random_state=2)
    search = GridSearchCV(
        MaskedTemperatureScaling(random_state=0),
        {"mask_ratio": [0.1, 0.3, 0.5, 0.7, 0.9]},
        scoring=neg_ece_scorer,
        cv=5,
    )
    search.fit(X, y)
    assert search.best_params_["mask_ratio"] in (0.1, 0.3, 0.5, 0.7, 0.9)
    scores = search.cv_results_["mean_test_score"]
    assert np.all(scores <= 0)
    assert np.ptp(scores) > 0, "different ratios must give different scores"
    assert search.best_estimator_.temperature_ > 0


def test_grid_search_over_mask_ratios_with_a_model(digits_student):
    """The issue's recipe: pick the ratio by cross-validated ECE on held-out data."""
    d = digits_student
    search = GridSearchCV(
        MaskedTemperatureScaling(model=d["net"], n_masks=2, random_state=0),
        {"mask_ratio": [0.1, 0.3, 0.5, 0.7, 0.9]},
        scoring=neg_ece_scorer,
        cv=StratifiedKFold(5, shuffle=True, random_state=0),
    )
    search.fit(d["X_cal"], d["y_cal"])
    best = search.best_estimator_
    assert search.best_params_["mask_ratio"] in (0.1, 0.3, 0.5)
    ece = expected_calibration_error(d["y_test"], best.predict_proba(d["X_test"]))
    assert ece < 0.05


def test_mask_ratio_sweep_in_parallel_processes(digits_student):
    """n_jobs=2: the model travels to loky workers and the sweep gives the same scores."""
    d = digits_student

    def search(n_jobs):
        return GridSearchCV(
            MaskedTemperatureScaling(model=d["net"], n_masks=2, random_state=0),
            {"mask_ratio": [0.1, 0.3, 0.5]},
            scoring=neg_ece_scorer,
            cv=StratifiedKFold(3, shuffle=True, random_state=0),
            n_jobs=n_jobs,
        ).fit(d["X_cal"], d["y_cal"])

    sequential, parallel = search(1), search(2)
    np.testing.assert_allclose(
        parallel.cv_results_["mean_test_score"], sequential.cv_results_["mean_test_score"]
    )
    assert parallel.best_params_ == sequential.best_params_


def test_cross_val_score_and_pickle_of_a_search():
    X, y = make_logits(n_samples=300, random_state=3)
    scores = cross_val_score(TemperatureScaling(), X, y, scoring=neg_ece_scorer, cv=3)
    assert scores.shape == (3,)
    assert np.all(scores <= 0)
    search = GridSearchCV(
        MaskedTemperatureScaling(random_state=0), {"mask_ratio": [0.0, 0.2]}, cv=3
    ).fit(X, y)
    restored = pickle.loads(pickle.dumps(search))
    np.testing.assert_array_equal(restored.predict_proba(X), search.predict_proba(X))


def test_deepcopy_of_a_fitted_model_calibrator(digits_student):
    d = digits_student
    mts = MaskedTemperatureScaling(0.2, model=d["net"], random_state=0).fit(d["X_cal"], d["y_cal"])
    twin = copy.deepcopy(mts)
    np.testing.assert_array_equal(twin.predict(d["X_test"]), mts.predict(d["X_test"]))
