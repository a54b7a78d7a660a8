"""fit_calibration_recipe, MDTTrainer(calibration_recipe=...) and recipes in distilled-set files."""

import math
import warnings

import numpy as np
import pytest
import torch

from distcal import MaskedTemperatureScaling, TemperatureScaling
from distcal.calibration import DistilledCalibration, distilled_digest, logit_scale
from distcal.distill import (
    DistilledSet,
    MDTTrainer,
    StudentClassifier,
    default_proxies,
    fit_calibration_recipe,
    load_digits,
    load_distilled,
    stratified_split,
)
from distcal.exceptions import DistcalWarning

from ..conftest import make_recipe


@pytest.fixture(scope="module")
def digits_set():
    """A small DM set of digits, the real images it was distilled from, and a test split."""
    data = load_digits()
    train, test = stratified_split(data.labels, [0.7, 0.3], random_state=0)
    trainer = MDTTrainer(ipc=3, width=8, depth=2, iterations=20, random_state=0,
                         method_params={"batch_real": 16})  # fmt: skip
    trainer.fit(data.images[train], data.labels[train])
    return trainer.to_distilled_set(), data.images[train], data.labels[train], data, test


def _proxies(copies=1, epochs=40):
    return [
        StudentClassifier(width=8, depth=2, epochs=epochs, augment="none").set_params(**change)
        for change in ({}, {"lr": 0.02}, {"mixup_alpha": 1.0})
        for _ in range(copies)
    ]


@pytest.fixture(scope="module")
def recipe(digits_set):
    distilled, X_val, y_val, _, _ = digits_set
    return fit_calibration_recipe(
        distilled, X_val[:400], y_val[:400], proxies=_proxies(), n_masks=4, random_state=0
    )


def test_a_recipe_records_every_proxy_and_what_it_rests_on(recipe, digits_set):
    distilled = digits_set[0]
    assert recipe.method == "predictor"
    assert len(recipe.proxies) == 3
    assert recipe.n_validation == 400
    assert recipe.n_masks == 4
    assert recipe.images_digest == distilled_digest(distilled.images, distilled.labels)
    assert recipe.seconds > 0
    assert recipe.distcal_version
    held_out = np.log([p["temperature"] for p in recipe.proxies])
    assert recipe.temperature == pytest.approx(math.exp(held_out.mean()), rel=1e-12)
    assert recipe.mask_ratio == pytest.approx(np.mean([p["matched_ratio"] for p in recipe.proxies]))
    # three proxies: the line on the logit scale (a plane needs four)
    feature = np.log([p["logit_scale"] for p in recipe.proxies])
    slope, intercept = np.polyfit(feature, held_out, 1)
    assert (recipe.scale_slope, recipe.intercept) == pytest.approx((slope, intercept), rel=1e-10)
    assert recipe.masked_slope == 0.0
    assert recipe.feature_ratio == 0.7
    for proxy in recipe.proxies:
        assert proxy["feature_temperature"] > 0
    assert [p["params"]["mixup_alpha"] for p in recipe.proxies] == [0.0, 0.0, 1.0]


def test_each_proxys_held_out_temperature_is_temperature_scaling_on_the_validation_images(
    recipe, digits_set
):
    distilled, X_val, y_val, _, _ = digits_set
    params = dict(recipe.proxies[1]["params"])
    student = StudentClassifier(**params).fit(distilled.images, distilled.labels)
    logits = student.decision_function(distilled.normalize(X_val[:400]))
    assert TemperatureScaling().fit(logits, y_val[:400]).temperature_ == pytest.approx(
        recipe.proxies[1]["temperature"], rel=1e-9
    )
    clean = student.decision_function(distilled.images)
    assert logit_scale(clean) == pytest.approx(recipe.proxies[1]["logit_scale"], rel=1e-12)


def test_mts_at_a_proxys_matched_ratio_reproduces_its_held_out_temperature(recipe, digits_set):
    """The defining property of the search: MTS on the set (the proxy's nested masks) gives a
    temperature below the proxy's held-out one at the low end of the last bracket and at least
    it at the high end, and the bracket is as narrow as the bisection makes it."""
    distilled = digits_set[0]
    proxy = recipe.proxies[0]
    params = dict(proxy["params"])
    net = StudentClassifier(**params).fit(distilled.images, distilled.labels).network_
    # the proxy's mask seed is the draw after its own seed in the recipe's stream
    rng = np.random.default_rng(0)
    assert int(rng.integers(2**31)) == params["random_state"]
    seed = int(rng.integers(2**31))

    def masked_temperature(r):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DistcalWarning)
            mts = MaskedTemperatureScaling(r, n_masks=4, model=net, random_state=seed)
            return mts.fit(distilled.images, distilled.labels).temperature_

    low, high = proxy["matched_bracket"]
    assert 0 < high - low <= 0.95 / 2**8 + 1e-15  # 8 halvings of [0, 0.95]
    assert low <= proxy["matched_ratio"] <= high
    assert masked_temperature(low) < proxy["temperature"] <= masked_temperature(high)
    # and the record of each proxy's temperature at the recipe's ratio is that same curve's
    assert proxy["masked_temperature"] == masked_temperature(recipe.mask_ratio)


def test_the_same_seed_gives_the_same_recipe(recipe, digits_set):
    distilled, X_val, y_val, _, _ = digits_set
    again = fit_calibration_recipe(
        distilled, X_val[:400], y_val[:400], proxies=_proxies(), n_masks=4, random_state=0
    )
    assert {**again.to_dict(), "seconds": 0} == {**recipe.to_dict(), "seconds": 0}


def test_the_recipe_calibrates_a_student_of_another_recipe_on_real_images(recipe, digits_set):
    """On digits, a student the proxies did not include (another width, twice the epochs),
    calibrated by the recipe alone, has a lower NLL on real test images than uncalibrated."""
    distilled, _, _, data, test = digits_set
    student = StudentClassifier(width=16, depth=2, epochs=80, augment="none", random_state=7)
    student.fit(distilled.images, distilled.labels)
    X_test, y_test = distilled.normalize(data.images[test]), data.labels[test]
    calibrator = DistilledCalibration(recipe, model=student.network_, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DistcalWarning)  # coverage is not what is tested here
        calibrator.fit(distilled.images, distilled.labels)
    logits = student.decision_function(X_test).double()
    nll_before = torch.nn.functional.cross_entropy(logits, y_test).item()
    nll_after = torch.nn.functional.cross_entropy(logits / calibrator.temperature_, y_test).item()
    assert nll_after < nll_before


def test_bad_validation_data_are_refused(digits_set):
    distilled, X_val, y_val, _, _ = digits_set
    with pytest.raises(ValueError, match=r"X_val must hold images of the distilled set's shape"):
        fit_calibration_recipe(distilled, X_val[:20, :, :4], y_val[:20], proxies=_proxies())
    with pytest.raises(ValueError, match=r"y_val must hold labels in \[0, 9\]"):
        fit_calibration_recipe(distilled, X_val[:20], y_val[:20] + 5, proxies=_proxies())
    with pytest.raises(ValueError, match="at least one StudentClassifier"):
        fit_calibration_recipe(distilled, X_val[:20], y_val[:20], proxies=[])
    with pytest.raises(TypeError, match="StudentClassifier instances"):
        fit_calibration_recipe(distilled, X_val[:20], y_val[:20], proxies=["convnet"])


def test_default_proxies_vary_the_sets_student_recipe(digits_set):
    distilled = digits_set[0]
    assert len(default_proxies(distilled, copies=2)) == 16
    params = [p.get_params() for p in default_proxies(distilled)]
    assert {p["depth"] for p in params} == {2}
    keys = ("epochs", "lr", "width", "mixup_alpha", "label_smoothing", "augment")
    assert [tuple(p[k] for k in keys) for p in params] == [
        (300, 0.01, 8, 0.0, 0.0, "auto"),
        (300, 0.01, 8, 1.0, 0.0, "auto"),
        (150, 0.01, 8, 0.0, 0.0, "auto"),
        (300, 0.02, 8, 0.0, 0.0, "auto"),
        (300, 0.01, 4, 0.0, 0.0, "auto"),
        (150, 0.01, 8, 1.0, 0.0, "auto"),
        (300, 0.01, 8, 0.0, 0.1, "auto"),
        (300, 0.01, 8, 0.0, 0.0, "none"),
    ]


def test_four_proxies_or_more_fit_the_predictors_plane(digits_set):
    distilled, X_val, y_val, _, _ = digits_set
    proxies = [*_proxies(), StudentClassifier(width=4, depth=2, epochs=40, augment="none")]
    recipe = fit_calibration_recipe(distilled, X_val[:300], y_val[:300], proxies=proxies,
                                    n_masks=2, feature_ratio=0.6, random_state=1)  # fmt: skip
    held_out = np.log([p["temperature"] for p in recipe.proxies])
    design = np.column_stack([
        np.ones(4),
        np.log([p["logit_scale"] for p in recipe.proxies]),
        np.log([p["feature_temperature"] for p in recipe.proxies]),
    ])  # fmt: skip
    expected = np.linalg.lstsq(design, held_out, rcond=None)[0]
    found = (recipe.intercept, recipe.scale_slope, recipe.masked_slope)
    assert found == pytest.approx(tuple(expected), rel=1e-9, abs=1e-12)


def test_a_trainer_computes_the_recipe_and_the_saved_set_carries_it(tmp_path):
    data = load_digits()
    options = {"n_validation": 200, "copies": 1, "n_masks": 2}
    trainer = MDTTrainer(ipc=2, width=8, depth=2, iterations=3, random_state=0,
                         method_params={"batch_real": 16}, calibration_recipe=options)  # fmt: skip
    plain = MDTTrainer(**{**trainer.get_params(), "calibration_recipe": False})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DistcalWarning)
        trainer.fit(data.images[:600], data.labels[:600])
    plain.fit(data.images[:600], data.labels[:600])
    assert torch.equal(trainer.images_, plain.images_)  # the recipe changes nothing distilled
    assert plain.recipe_ is None
    recipe = trainer.recipe_
    assert recipe.n_validation == 200
    assert len(recipe.proxies) == 8
    assert "stratified split of 200" in recipe.notes["validation"]
    loaded = load_distilled(trainer.save(tmp_path / "set.safetensors"))
    assert loaded.recipe == recipe
    with pytest.raises(ValueError, match=r"may set .*Got the unknown keys \['proxies'\]"):
        MDTTrainer(calibration_recipe={"proxies": 3}).fit(data.images[:600], data.labels[:600])


def test_a_set_file_of_format_1_loads_without_a_recipe_and_a_newer_one_is_refused(
    digits_set, tmp_path
):
    from distcal._files import write_tensors

    distilled = digits_set[0]
    tensors = {"images": distilled.images, "labels": distilled.labels,
               "mean": distilled.mean, "std": distilled.std}  # fmt: skip
    old = {"kind": "distilled-set", "format_version": 1, "learning_rate": None,
           "config": {"ipc": 3}, "history": []}  # fmt: skip
    loaded = load_distilled(write_tensors(tmp_path / "old.safetensors", tensors, old))
    assert loaded.recipe is None
    assert torch.equal(loaded.images, distilled.images)
    with pytest.raises(ValueError, match=r"newer distcal .*format 3"):
        load_distilled(write_tensors(tmp_path / "new.safetensors", tensors,
                                     {**old, "format_version": 3}))  # fmt: skip
    damaged = {**old, "format_version": 2, "calibration_recipe": {"method": "magic"}}
    with pytest.raises(ValueError, match="invalid calibration recipe"):
        load_distilled(write_tensors(tmp_path / "bad.safetensors", tensors, damaged))


def test_a_set_saves_only_a_recipe_as_its_recipe(digits_set, tmp_path):
    distilled = digits_set[0]
    odd = DistilledSet(distilled.images, distilled.labels, distilled.mean, distilled.std,
                       recipe={"method": "ratio"})  # fmt: skip
    with pytest.raises(TypeError, match="recipe must be a CalibrationRecipe or None"):
        odd.save(tmp_path / "x.safetensors")
    fine = DistilledSet(distilled.images, distilled.labels, distilled.mean, distilled.std,
                        recipe=make_recipe())  # fmt: skip
    assert load_distilled(fine.save(tmp_path / "y.safetensors")).recipe == make_recipe()
