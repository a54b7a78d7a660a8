"""Calibrators saved without pickle: round trips, tampered files, models passed again."""

import json
import pickle

import numpy as np
import pytest
import torch

from distcal import MaskedTemperatureScaling, TemperatureScaling, load_calibrator, save_calibrator
from distcal.calibration import load_calibrator as load_from_calibration
from distcal.calibration import registered_calibrators
from distcal.exceptions import DistcalWarning

from ..conftest import make_logits


def test_temperature_scaling_round_trip(tmp_path):
    X, y = make_logits(n_samples=300, random_state=0)
    ts = TemperatureScaling(tol=1e-8).fit(X, y)
    path = save_calibrator(ts, tmp_path / "sub" / "ts.safetensors")
    loaded = load_calibrator(path)
    assert load_from_calibration is load_calibrator
    assert type(loaded) is TemperatureScaling
    assert loaded.get_params() == ts.get_params()
    for key in ("temperature_", "nll_", "n_iter_", "converged_", "n_features_in_"):
        assert getattr(loaded, key) == getattr(ts, key), key
    np.testing.assert_array_equal(loaded.classes_, ts.classes_)
    np.testing.assert_array_equal(loaded.predict_proba(X), ts.predict_proba(X))
    assert b"pickle" not in path.read_bytes()[:8]


def test_binary_decision_values_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    z = rng.normal(size=200) * 3
    y = (rng.uniform(size=200) < 1 / (1 + np.exp(-z))).astype(int)
    ts = TemperatureScaling().fit(z, y)
    loaded = load_calibrator(save_calibrator(ts, tmp_path / "b.safetensors"))
    np.testing.assert_array_equal(loaded.predict_proba(z), ts.predict_proba(z))


def test_masked_temperature_scaling_needs_its_model_again(digits_student, tmp_path):
    d = digits_student
    mts = MaskedTemperatureScaling(n_masks=2, model=d["net"], random_state=0)
    mts.fit(d["X_train"], d["y_train"])
    path = save_calibrator(mts, tmp_path / "mts.safetensors")
    with pytest.raises(ValueError, match="pass the network as model="):
        load_calibrator(path)
    loaded = load_calibrator(path, model=d["net"])
    assert loaded.mask_ratio == "auto"
    assert loaded.mask_ratio_ == mts.mask_ratio_
    assert loaded.input_shape_ == mts.input_shape_
    torch.testing.assert_close(loaded.predict_proba(d["X_test"]), mts.predict_proba(d["X_test"]))
    logits_only = TemperatureScaling().fit(*make_logits(n_samples=50, random_state=2))
    other = save_calibrator(logits_only, tmp_path / "ts.safetensors")
    with pytest.raises(ValueError, match="fitted without a model; model must be None"):
        load_calibrator(other, model=d["net"])


def test_bad_calibrators_and_files_are_refused(tmp_path):
    with pytest.raises(TypeError, match=r"calibrator must be one of .*got a object"):
        save_calibrator(object(), tmp_path / "x.safetensors")
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        save_calibrator(TemperatureScaling(), tmp_path / "x.safetensors")
    X, y = make_logits(n_samples=100, random_state=0)
    mts = MaskedTemperatureScaling(0.2, random_state=np.random.RandomState(0)).fit(X, y)
    with pytest.raises(ValueError, match="Cannot save random_state="):
        save_calibrator(mts, tmp_path / "x.safetensors")
    path = save_calibrator(TemperatureScaling().fit(X, y), tmp_path / "ts.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="not a readable distcal file"):
        load_calibrator(truncated)
    pickled = tmp_path / "pickled.safetensors"
    pickled.write_bytes(pickle.dumps(TemperatureScaling()))
    with pytest.raises(ValueError, match="not a readable distcal file"):
        load_calibrator(pickled)


def _tamper(path, tmp_path, change, *, recompute_checksum=True):
    """Rewrite the JSON header of a distcal file (same tensors).

    With ``recompute_checksum`` the file is crafted through distcal's own writer, so it passes
    the integrity check and reaches the validation of its content, as a file made by someone
    who knows the format would; without, the edit is caught by the checksum.
    """
    from safetensors import safe_open
    from safetensors.torch import save_file

    from distcal._files import write_tensors

    with safe_open(path, framework="pt") as handle:
        header = handle.metadata()
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    metadata = json.loads(header["distcal"])
    change(metadata)
    out = tmp_path / "tampered.safetensors"
    if recompute_checksum:
        write_tensors(out, tensors, metadata)
    else:
        save_file(tensors, out, metadata={**header, "distcal": json.dumps(metadata)})
    return out


def test_an_edited_file_fails_its_checksum(tmp_path):
    X, y = make_logits(n_samples=100, random_state=0)
    ts = TemperatureScaling().fit(X, y)
    path = save_calibrator(ts, tmp_path / "ts.safetensors")

    def new_temperature(m):
        m["fitted"]["temperature_"] = 2 * m["fitted"]["temperature_"]

    edited = _tamper(path, tmp_path, new_temperature, recompute_checksum=False)
    with pytest.raises(ValueError, match="does not match its checksum"):
        load_calibrator(edited)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # one flipped bit in the tensor data
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"ts\.safetensors does not match its checksum"):
        load_calibrator(path)


def test_tampered_headers_construct_nothing_unexpected(tmp_path):
    X, y = make_logits(n_samples=100, random_state=0)
    path = save_calibrator(TemperatureScaling().fit(X, y), tmp_path / "ts.safetensors")

    def other_class(m):
        m["class"] = "os.system"

    with pytest.raises(ValueError, match="not a distcal calibrator"):
        load_calibrator(_tamper(path, tmp_path, other_class))

    def method_override(m):
        m["fitted"]["predict_proba"] = 1

    with pytest.raises(ValueError, match="not a fitted attribute"):
        load_calibrator(_tamper(path, tmp_path, method_override))

    def unknown_param(m):
        m["params"]["exec"] = "rm -rf /"

    with pytest.raises(ValueError, match="parameters TemperatureScaling does not take"):
        load_calibrator(_tamper(path, tmp_path, unknown_param))

    def other_kind(m):
        m["kind"] = "checkpoint"

    with pytest.raises(ValueError, match="not a 'calibrator'"):
        load_calibrator(_tamper(path, tmp_path, other_kind))


@pytest.mark.parametrize(
    "name", ["VectorScaling", "MatrixScaling", "DirichletCalibration", "EnsembleTemperatureScaling"]
)
def test_affine_calibrators_round_trip(name, tmp_path):
    import distcal.calibration as calibration

    X, y = make_logits(n_samples=300, random_state=4)
    fitted = getattr(calibration, name)().fit(X, y)
    loaded = load_calibrator(save_calibrator(fitted, tmp_path / "c.safetensors"))
    assert type(loaded) is type(fitted)
    if hasattr(fitted, "coef_"):
        torch.testing.assert_close(loaded.coef_, fitted.coef_)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))


# Headers written by save_calibrator before the registry (format 1, the six classes it listed),
# verbatim, for calibrators fitted on make_logits(n_samples=200, n_classes=4, random_state=3).
_FORMAT_1_HEADERS = {
    "TemperatureScaling": '{"binary_1d": false, "class": "TemperatureScaling", "fitted": {"converged_": true, "n_features_in_": 4, "n_iter_": 4, "nll_": 1.1070586722714062, "temperature_": 2.9721536758973652}, "format_version": 1, "has_model": false, "kind": "calibrator", "numpy": ["classes_"], "params": {"input_type": "logits", "max_iter": 100, "tol": 1e-06}}',  # noqa: E501
    "MaskedTemperatureScaling": '{"binary_1d": false, "class": "MaskedTemperatureScaling", "fitted": {"converged_": true, "mask_ratio_": 0.3, "masked_accuracy_": 0.47, "n_features_in_": 4, "n_iter_": 4, "n_masks_": 10, "nll_": 1.1883946011117328, "regime_": "held-out", "temperature_": 2.9368979154402766}, "format_version": 1, "has_model": false, "kind": "calibrator", "numpy": ["classes_", "cv_nll_", "cv_ratios_"], "params": {"batch_size": 256, "cv": 5, "input_type": "logits", "mask_ratio": "auto", "max_iter": 100, "n_masks": "auto", "random_state": 0, "regime": "auto", "tol": 1e-06}}',  # noqa: E501
    "VectorScaling": '{"binary_1d": false, "class": "VectorScaling", "fitted": {"converged_": true, "n_features_in_": 4, "n_iter_": 17, "nll_": 1.077899173062804}, "format_version": 1, "has_model": false, "kind": "calibrator", "numpy": ["classes_"], "params": {"input_type": "logits", "max_iter": 2000, "tol": 1e-08}}',  # noqa: E501
    "MatrixScaling": '{"binary_1d": false, "class": "MatrixScaling", "fitted": {"converged_": true, "n_features_in_": 4, "n_iter_": 36, "nll_": 1.0437007251742598}, "format_version": 1, "has_model": false, "kind": "calibrator", "numpy": ["classes_"], "params": {"input_type": "logits", "max_iter": 2000, "reg_lambda": 0.001, "reg_mu": null, "tol": 1e-08}}',  # noqa: E501
    "DirichletCalibration": '{"binary_1d": false, "class": "DirichletCalibration", "fitted": {"converged_": true, "n_features_in_": 4, "n_iter_": 73, "nll_": 1.0646687459347}, "format_version": 1, "has_model": false, "kind": "calibrator", "numpy": ["classes_"], "params": {"input_type": "logits", "max_iter": 2000, "reg_lambda": 0.001, "reg_mu": null, "tol": 1e-08}}',  # noqa: E501
    "EnsembleTemperatureScaling": '{"binary_1d": false, "class": "EnsembleTemperatureScaling", "fitted": {"n_features_in_": 4, "n_iter_": 9, "nll_": 1.0857969258408517, "temperature_": 2.9721536758973652}, "format_version": 1, "has_model": false, "kind": "calibrator", "numpy": ["classes_", "weights_"], "params": {"input_type": "logits", "max_iter": 100, "tol": 1e-06}}',  # noqa: E501
}


@pytest.mark.parametrize("name", _FORMAT_1_HEADERS)
def test_files_of_format_1_still_load(name, tmp_path):
    """Old files load, with their arrays as the fitted-attribute convention has them now."""
    from safetensors.torch import save_file

    import distcal.calibration as calibration

    header = json.loads(_FORMAT_1_HEADERS[name])
    X, y = make_logits(n_samples=200, n_classes=4, random_state=3)
    fresh = getattr(calibration, name)(**header["params"]).fit(X, y)
    # the tensors as the old writer stored them: numpy arrays listed under "numpy"
    tensors = {
        key: torch.as_tensor(np.asarray(getattr(fresh, key))).contiguous()
        for key in ("classes_", "coef_", "intercept_", "weights_", "cv_nll_", "cv_ratios_")
        if hasattr(fresh, key)
    }
    path = tmp_path / "old.safetensors"
    save_file(tensors, path, metadata={"distcal": json.dumps(header)})
    with pytest.warns(DistcalWarning, match="carries no checksum"):
        loaded = load_calibrator(path)
    assert type(loaded) is type(fresh)
    assert isinstance(loaded.classes_, np.ndarray)
    for key in tensors.keys() - {"classes_"}:
        assert isinstance(getattr(loaded, key), torch.Tensor), key
    for key, value in header["fitted"].items():
        assert getattr(loaded, key) == value
    np.testing.assert_array_equal(loaded.predict_proba(X), fresh.predict_proba(X))


def test_masked_scaling_saves_its_inner_calibrator(digits_student, tmp_path):
    from distcal.calibration import MaskedScaling, MatrixScaling

    d = digits_student
    ms = MaskedScaling(MatrixScaling(reg_lambda=0.01), 0.2, n_masks=2, model=d["net"])
    ms.set_params(random_state=0).fit(d["X_cal"], d["y_cal"])
    path = save_calibrator(ms, tmp_path / "ms.safetensors")
    with pytest.raises(ValueError, match="pass the network as model="):
        load_calibrator(path)
    loaded = load_calibrator(path, model=d["net"])
    assert type(loaded.calibrator) is MatrixScaling
    assert loaded.calibrator.reg_lambda == 0.01
    assert type(loaded.calibrator_) is MatrixScaling
    torch.testing.assert_close(loaded.calibrator_.coef_, ms.calibrator_.coef_, rtol=0, atol=0)
    np.testing.assert_array_equal(loaded.predict_proba(d["X_test"]), ms.predict_proba(d["X_test"]))

    def rename_inner(m):
        m["nested"]["calibrator_"]["class"] = "subprocess.Popen"

    with pytest.raises(ValueError, match="not a distcal calibrator"):
        load_calibrator(_tamper(path, tmp_path, rename_inner), model=d["net"])


@pytest.mark.parametrize(
    ("temperature", "message"),
    [(0.0, "must be a float in the range"), (-1.0, "must be a float in the range")],
)
def test_a_crafted_temperature_is_refused_on_load(tmp_path, temperature, message):
    """A file with a valid checksum but T = 0 (NaN predictions) or T = -1 (inverted
    probabilities) names the file and the attribute; nothing predicts with it."""
    X, y = make_logits(n_samples=100, random_state=0)
    path = save_calibrator(TemperatureScaling().fit(X, y), tmp_path / "ts.safetensors")

    def set_temperature(m):
        m["fitted"]["temperature_"] = temperature

    crafted = _tamper(path, tmp_path, set_temperature)
    with pytest.raises(ValueError, match=rf"tampered\.safetensors holds an invalid .*{message}"):
        load_calibrator(crafted)


def test_a_crafted_tensor_of_the_wrong_shape_or_with_nan_is_refused_on_load(tmp_path):
    from safetensors import safe_open

    from distcal._files import write_tensors
    from distcal.calibration import VectorScaling

    X, y = make_logits(n_samples=200, random_state=1)
    path = save_calibrator(VectorScaling().fit(X, y), tmp_path / "vs.safetensors")
    with safe_open(path, framework="pt") as handle:
        metadata = json.loads(handle.metadata()["distcal"])
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    wrong_shape = {**tensors, "coef_": torch.ones(7, dtype=torch.float64)}
    write_tensors(tmp_path / "shape.safetensors", wrong_shape, metadata)
    with pytest.raises(ValueError, match=r"shape\.safetensors holds a VectorScaling that cannot"):
        load_calibrator(tmp_path / "shape.safetensors")
    with_nan = {**tensors, "intercept_": tensors["intercept_"].clone().fill_(float("nan"))}
    write_tensors(tmp_path / "nan.safetensors", with_nan, metadata)
    with pytest.raises(ValueError, match="fitted tensor intercept_ has NaN or infinite values"):
        load_calibrator(tmp_path / "nan.safetensors")
    one_class = {**tensors, "classes_": torch.tensor([0])}
    write_tensors(tmp_path / "classes.safetensors", one_class, metadata)
    with pytest.raises(ValueError, match="classes_ must list at least 2 classes"):
        load_calibrator(tmp_path / "classes.safetensors")


PROBABILITY_CALIBRATORS = [  # distcal's own (other test modules register theirs)
    name
    for name, cls in registered_calibrators().items()
    if cls.__module__.startswith("distcal.") and "input_type" in cls().get_params()
]


@pytest.mark.parametrize("name", PROBABILITY_CALIBRATORS)
@pytest.mark.parametrize("binary", [False, True], ids=["multiclass", "binary 1-D"])
def test_a_calibrator_fitted_on_probabilities_saves_and_loads(name, binary, tmp_path):
    """Before: every calibrator fitted with input_type="probabilities" was written but could
    never be loaded (the load-time probe fed it logits)."""
    X, y = make_logits(n_samples=300, n_classes=2 if binary else 4, random_state=3)
    proba = torch.softmax(torch.as_tensor(X), dim=1).numpy()
    if binary:
        proba = proba[:, 1]
    cls = registered_calibrators()[name]
    params = {"random_state": 0} if "random_state" in cls().get_params() else {}
    fitted = cls(input_type="probabilities", **params).fit(proba, y)
    loaded = load_calibrator(save_calibrator(fitted, tmp_path / "p.safetensors"))
    assert loaded.input_type == "probabilities"
    np.testing.assert_array_equal(loaded.predict_proba(proba), fitted.predict_proba(proba))


@pytest.mark.parametrize(
    ("parameter", "value", "message"),
    [
        ("tol", "abc", r"The 'tol' parameter of TemperatureScaling must be .* Got 'abc'"),
        ("max_iter", "lots", r"The 'max_iter' parameter of TemperatureScaling .* Got 'lots'"),
        ("input_type", "both", r"The 'input_type' parameter of TemperatureScaling"),
    ],
)
def test_parameters_are_validated_on_load(tmp_path, parameter, value, message):
    """Before: a file with params tol='abc' or max_iter='lots' loaded."""
    from distcal._files import read_tensors, write_tensors

    ts = TemperatureScaling().fit(*make_logits(n_samples=100, random_state=0))
    path = save_calibrator(ts, tmp_path / "ts.safetensors")
    tensors, metadata = read_tensors(path, kind="calibrator")
    metadata["params"][parameter] = value
    write_tensors(path, tensors, metadata)
    with pytest.raises(
        ValueError, match=rf"ts\.safetensors holds an invalid TemperatureScaling: {message}"
    ):
        load_calibrator(path)
