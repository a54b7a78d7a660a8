"""CalibrationRecipe (the record) and DistilledCalibration (its user), on small real data."""

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from distcal import MaskedTemperatureScaling, TemperatureScaling, calibrated_module
from distcal.calibration import (
    RECIPE_METHODS,
    CalibrationRecipe,
    DistilledCalibration,
    distilled_digest,
    load_calibrator,
    logit_scale,
    save_calibrator,
)
from distcal.distill import load_digits
from distcal.exceptions import DistcalWarning

from ..conftest import make_logits, make_recipe


@pytest.fixture(scope="module")
def student():
    """A template network over digits and 100 of its images (its "distilled set")."""
    data = load_digits()
    X, y = data.images, data.labels
    templates = torch.stack([X[y == k].mean(dim=0).flatten() for k in range(10)])
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(4 * templates)
    return net, X[:100], y[:100], X[100:600], y[100:600]


# ------------------------------------------------------------------------------------- record


def test_a_recipe_round_trips_through_its_dictionary():
    recipe = make_recipe(method="ratio", notes={"b": 1, "a": [1, 2]})
    data = recipe.to_dict()
    assert data["version"] == 1
    again = CalibrationRecipe.from_dict(data)
    assert again == recipe
    assert repr(again) == repr(recipe)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "magic"}, "method must be one of"),
        ({"temperature": 0.0}, "temperature must be a positive finite number"),
        ({"temperature": float("nan")}, "temperature must be a positive finite number"),
        ({"temperature": "2"}, "temperature must be a positive number"),
        ({"mask_ratio": 1.0}, r"mask_ratio must be a number in \[0, 1\)"),
        ({"scale_slope": float("inf")}, "scale_slope must be a finite number"),
        ({"feature_ratio": -0.1}, r"feature_ratio must be a number in \[0, 1\)"),
        ({"n_masks": 0}, "n_masks must be a positive int"),
        ({"n_validation": 2.5}, "n_validation must be a positive int"),
        ({"proxies": []}, "proxies must list at least one proxy"),
        ({"proxies": [{"temperature": 1.0}]}, r"proxies\[0\] lacks"),
        ({"mask_kind": "mean"}, "mask_kind must be 'zero'"),
    ],
)
def test_an_invalid_recipe_is_refused_naming_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        make_recipe(**change)


def test_from_dict_refuses_unknown_fields_newer_versions_and_non_objects():
    data = make_recipe().to_dict()
    with pytest.raises(ValueError, match=r"unknown fields \['extra'\]"):
        CalibrationRecipe.from_dict({**data, "extra": 1})
    with pytest.raises(ValueError, match="version 2; this distcal reads version 1"):
        CalibrationRecipe.from_dict({**data, "version": 2})
    with pytest.raises(ValueError, match="must be a JSON object"):
        CalibrationRecipe.from_dict([1, 2])
    del data["masked_slope"]
    with pytest.raises(ValueError, match="incomplete"):
        CalibrationRecipe.from_dict(data)


def test_every_method_has_its_map():
    recipe = make_recipe()
    assert recipe.mapping("temperature") == (math.log(recipe.temperature), [])
    assert recipe.mapping("ratio") == (0.0, [("masked_temperature", 0.5, 1.0)])
    assert recipe.mapping("predictor") == (
        0.1, [("logit_scale", None, 0.9), ("masked_temperature", 0.7, 0.2)]
    )  # fmt: skip
    assert recipe.proxy_range("masked_temperature", 0.5) == (0.05, 50.0)
    assert recipe.proxy_range("masked_temperature", 0.7) == (0.06, 60.0)
    assert recipe.proxy_range("logit_scale") == (0.04, 40.0)
    with pytest.raises(ValueError, match=r"holds no 'masked_temperature' at ratio 0\.3"):
        recipe.proxy_range("masked_temperature", 0.3)
    assert recipe.temperature_spread == pytest.approx(np.std(np.log([1.5, 2.0]), ddof=1), rel=1e-12)
    assert set(RECIPE_METHODS) == {"temperature", "ratio", "predictor"}
    with pytest.raises(ValueError, match="method must be one of"):
        recipe.mapping("scaled")


def test_the_logit_scale_ignores_row_shifts_and_follows_scaling():
    z = torch.randn(50, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    scale = logit_scale(z)
    assert scale == pytest.approx(float(z.std(dim=1, unbiased=False).mean()), rel=1e-15)
    shifted = z + torch.arange(50.0, dtype=torch.float64)[:, None]
    assert logit_scale(shifted) == pytest.approx(scale, rel=1e-12)
    assert logit_scale(3 * z) == pytest.approx(3 * scale, rel=1e-12)
    weights = torch.zeros(50, dtype=torch.float64)
    weights[:10] = 2.0
    assert logit_scale(z, weights) == pytest.approx(logit_scale(z[:10]), rel=1e-12)


# -------------------------------------------------------------------------------- calibrator


def test_the_ratio_method_is_mts_at_the_recipes_ratio(student):
    net, X, y, _, _ = student
    recipe = make_recipe(method="ratio", mask_ratio=0.35, n_masks=5)
    fitted = DistilledCalibration(recipe, model=net, random_state=3).fit(X, y)
    mts = MaskedTemperatureScaling(0.35, n_masks=5, model=net, random_state=3).fit(X, y)
    assert fitted.method_ == "ratio"
    assert fitted.mask_ratio_ == 0.35
    assert fitted.masked_temperature_ == mts.temperature_
    assert fitted.logit_scale_ is None
    assert fitted.temperature_ == mts.temperature_  # offset 0, slope 1
    assert fitted.masked_accuracy_ == mts.masked_accuracy_
    assert fitted.regime_ == "training"


def test_the_predictor_maps_the_students_features_through_the_recipes_plane(student):
    net, X, y, _, _ = student
    recipe = make_recipe(method="predictor", intercept=-0.3, scale_slope=0.8, masked_slope=0.3,
                         feature_ratio=0.6, n_masks=4)  # fmt: skip
    fitted = DistilledCalibration(recipe, model=net, random_state=2).fit(X, y)
    with torch.no_grad():
        scale = logit_scale(net(X))
    masked = MaskedTemperatureScaling(0.6, n_masks=4, model=net, random_state=2).fit(X, y)
    assert fitted.logit_scale_ == pytest.approx(scale, rel=1e-12)
    assert fitted.masked_temperature_ == masked.temperature_
    assert fitted.mask_ratio_ == 0.6
    expected = math.exp(-0.3 + 0.8 * math.log(scale) + 0.3 * math.log(masked.temperature_))
    assert fitted.temperature_ == pytest.approx(expected, rel=1e-12)
    assert fitted.covered_ is True


def test_the_temperature_method_needs_no_network():
    X, y = make_logits(n_samples=120, n_classes=3)
    recipe = make_recipe(method="temperature", temperature=2.5)
    fitted = DistilledCalibration(recipe).fit(X, y)
    assert fitted.temperature_ == 2.5
    assert fitted.covered_ is None
    assert fitted.n_iter_ == 0
    expected = TemperatureScaling().fit(X, y)
    expected.temperature_ = 2.5
    np.testing.assert_allclose(fitted.predict_proba(X), expected.predict_proba(X), rtol=1e-12)


def test_a_masking_method_without_the_network_is_refused():
    X, y = make_logits(n_samples=60, n_classes=3)
    for method in ("ratio", "predictor"):
        with pytest.raises(ValueError, match="needs the student network as model="):
            DistilledCalibration(make_recipe(method=method)).fit(X, y)


def test_without_a_recipe_it_warns_and_is_the_training_regime_default(student):
    net, X, y, _, _ = student
    with pytest.warns(DistcalWarning, match="no calibration recipe"):
        fallback = DistilledCalibration(model=net, random_state=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DistcalWarning)
        default = MaskedTemperatureScaling(regime="training", model=net, random_state=0).fit(X, y)
    assert fallback.method_ == "fallback"
    assert fallback.temperature_ == default.temperature_
    assert fallback.mask_ratio_ == default.mask_ratio_


def test_a_student_outside_the_proxies_range_warns(student):
    net, X, y, _, _ = student
    # proxies' masked temperatures of 50 to 60: this student's is far below
    proxies = [
        {**p, "masked_temperature": t}
        for p, t in zip(make_recipe().proxies, (50.0, 60.0), strict=True)
    ]
    recipe = make_recipe(method="ratio", proxies=proxies)
    with pytest.warns(DistcalWarning, match="masked temperature at ratio 0.500 is"):
        fitted = DistilledCalibration(recipe, model=net, random_state=0).fit(X, y)
    assert fitted.covered_ is False


def test_other_images_than_the_recipes_warn(student):
    net, X, y, _, _ = student
    recipe = make_recipe(method="ratio", images_digest=distilled_digest(X, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DistcalWarning)
        kept = DistilledCalibration(recipe, model=net, random_state=0).fit(X, y)
    assert kept.temperature_ > 0
    with pytest.warns(DistcalWarning, match="not the distilled set this recipe"):
        DistilledCalibration(recipe, model=net, random_state=0).fit(X.flip(0), y.flip(0))


def test_predictions_keep_the_classes_and_flow_through_the_standard_tools(student, tmp_path):
    net, X, y, X_test, _ = student
    recipe = make_recipe(method="ratio", n_masks=3)
    fitted = DistilledCalibration(recipe, model=net, random_state=0).fit(X, y)
    proba = fitted.predict_proba(X_test)
    with torch.no_grad():
        logits = net(X_test)
    assert torch.equal(proba.argmax(dim=1), logits.argmax(dim=1))
    torch.testing.assert_close(
        proba, torch.softmax(logits.double() / fitted.temperature_, 1).float()
    )
    # clone, pickle, save/load with the network, calibrated_module
    assert clone(fitted).get_params()["recipe"] == recipe
    torch.testing.assert_close(pickle.loads(pickle.dumps(fitted)).predict_proba(X_test), proba)
    loaded = load_calibrator(save_calibrator(fitted, tmp_path / "c.safetensors"), model=net)
    assert loaded.recipe == recipe
    assert loaded.temperature_ == fitted.temperature_
    torch.testing.assert_close(loaded.predict_proba(X_test), proba)
    module = calibrated_module(net, fitted)
    with torch.no_grad():
        torch.testing.assert_close(module(X_test), proba)


def test_from_distilled_fits_on_the_sets_images(student):
    net, X, y, _, _ = student

    class Set:  # what DistilledCalibration reads of a DistilledSet
        images, labels = X, y
        recipe = make_recipe(method="predictor", n_masks=2)

    fitted = DistilledCalibration.from_distilled(Set, model=net, random_state=5)
    again = DistilledCalibration(Set.recipe, model=net, random_state=5).fit(X, y)
    assert fitted.temperature_ == again.temperature_


def test_a_file_with_a_damaged_recipe_is_refused(student, tmp_path):
    net, X, y, _, _ = student
    fitted = DistilledCalibration(make_recipe(method="ratio"), model=net, random_state=0)
    path = save_calibrator(fitted.fit(X, y), tmp_path / "c.safetensors")
    from distcal._files import read_tensors, write_tensors

    tensors, metadata = read_tensors(path, kind="calibrator")
    metadata["params"]["recipe"]["value"]["temperature"] = -1.0
    write_tensors(path, tensors, metadata)
    with pytest.raises(ValueError, match=r"invalid 'recipe' parameter: .*temperature"):
        load_calibrator(path, model=net)
    metadata["params"]["recipe"] = {"type": "unheard-of", "value": {}}
    write_tensors(path, tensors, metadata)
    with pytest.raises(ValueError, match="neither a calibrator nor one of the parameter types"):
        load_calibrator(path, model=net)
