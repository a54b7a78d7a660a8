"""MaskedScaling: any logit calibrator on masked calibration data."""

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV

from distcal import MaskedTemperatureScaling, TemperatureScaling
from distcal.calibration import MaskedScaling, MatrixScaling, VectorScaling
from distcal.metrics import neg_nll_scorer

from ..conftest import make_logits


def test_with_a_temperature_it_is_masked_temperature_scaling(digits_student):
    X, y = make_logits(n_samples=300, random_state=0)
    ours = MaskedScaling(TemperatureScaling(), 0.3, n_masks=2, random_state=0).fit(X, y)
    mts = MaskedTemperatureScaling(0.3, n_masks=2, random_state=0).fit(X, y)
    assert ours.temperature_ == mts.temperature_
    np.testing.assert_allclose(ours.predict_proba(X), mts.predict_proba(X))
    d = digits_student
    ours = MaskedScaling(TemperatureScaling(), model=d["net"], random_state=0)
    mts = MaskedTemperatureScaling(model=d["net"], random_state=0)
    ours.fit(d["X_train"], d["y_train"])
    mts.fit(d["X_train"], d["y_train"])
    assert ours.mask_ratio_ == mts.mask_ratio_
    assert ours.temperature_ == mts.temperature_


def test_vector_scaling_on_masked_training_images_of_a_student(digits_student):
    d = digits_student
    ms = MaskedScaling(model=d["net"], n_masks=3, random_state=0).fit(d["X_train"], d["y_train"])
    assert isinstance(ms.calibrator_, VectorScaling)
    assert ms.calibrator_.converged_
    assert 0 < ms.mask_ratio_ < 1
    proba = ms.predict_proba(d["X_test"])
    assert proba.shape == (len(d["X_test"]), 10)
    assert bool(torch.isfinite(torch.as_tensor(proba)).all())


def test_the_inner_calibrator_is_tunable_in_a_grid_search():
    X, y = make_logits(n_samples=300, random_state=1)
    search = GridSearchCV(
        MaskedScaling(MatrixScaling(), 0.2, random_state=0),
        {"calibrator__reg_lambda": [1e-3, 1.0]},
        scoring=neg_nll_scorer,
        cv=3,
    ).fit(X, y)
    assert search.best_params_["calibrator__reg_lambda"] in (1e-3, 1.0)


def test_bad_calibrators_are_named():
    X, y = make_logits(n_samples=100, random_state=2)
    with pytest.raises(Exception, match="'calibrator' parameter of MaskedScaling"):
        MaskedScaling("vector").fit(X, y)
    with pytest.raises(TypeError, match="not mask them again"):
        MaskedScaling(MaskedTemperatureScaling(0.1), 0.2).fit(X, y)
