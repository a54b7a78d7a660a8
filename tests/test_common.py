"""scikit-learn's common estimator checks, run on every public estimator of distcal, and
distcal's own checks, run on every registered calibrator.

The calibrators come from the registry (``distcal.calibration.registered_calibrators``), not
from a list kept here: a new calibrator class is checked as soon as it is defined, with the
defaults below (``calibrator_instance``, ``expected_failed_checks``). The ``check_*``
functions are the project's common checks for one calibrator; a calibrator defined elsewhere
(``tests/calibration/test_extension.py``) reuses them.

scikit-learn's checks feed generic data: a few features unrelated to the number of classes,
string labels, and so on. A calibrator over logits needs one column per class and labels that
index those columns, so checks built on such data cannot apply; each is listed below with its
reason, and ``test_logit_data_contract`` re-runs what those checks verify on logit-shaped data.
"""

import pickle
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import parametrize_with_checks

import distcal
import distcal.distill
from distcal import (
    InputMasker,
    LogitTransformer,
    MaskedTemperatureScaling,
    TemperatureScaling,
)
from distcal.calibration import (
    BaseLogitCalibrator,
    DirichletCalibration,
    DistilledCalibration,
    HistogramBinning,
    MaskedScaling,
    MatrixScaling,
    VectorScaling,
    load_calibrator,
    registered_calibrators,
    save_calibrator,
)
from distcal.distill import MDTTrainer, StudentClassifier, ZCAWhitening

from .conftest import CUDA, make_logits, make_recipe

_GENERIC_DATA = (
    "scikit-learn's generic data has a number of features unrelated to the number of classes; "
    "a calibrator over logits needs one column per class and rejects labels without a column "
    "(test_logit_data_contract checks the same contract on logit data)"
)
_CALIBRATOR_EXCEPTIONS = {
    "check_estimators_overwrite_params": _GENERIC_DATA,
    "check_estimators_fit_returns_self": _GENERIC_DATA,
    "check_readonly_memmap_input": _GENERIC_DATA,
    "check_sample_weights_not_an_array": _GENERIC_DATA,
    "check_sample_weights_shape": _GENERIC_DATA,
    "check_sample_weights_not_overwritten": _GENERIC_DATA,
    "check_sample_weights_pandas_series": _GENERIC_DATA,  # pandas itself: test_pandas_inputs
    "check_classifier_data_not_an_array": _GENERIC_DATA,
    "check_classifiers_train": _GENERIC_DATA,
    "check_decision_proba_consistency": (
        "the generic features are not logits, so the check compares the ranking of a column of "
        "X with a probability of another class; on logits the ranking is preserved "
        "(test_logit_data_contract)"
    ),
    "check_classifiers_classes": (
        "labels must be integer column indices of the logits; string labels have no column and "
        "are rejected with a TypeError that says how to encode them"
    ),
}
_MASKED_EXCEPTIONS = {
    **_CALIBRATOR_EXCEPTIONS,
    "check_sample_weight_equivalence_on_dense_data": (
        "each row draws its own random mask, so a repeated row is masked differently from a "
        "row of weight 2; the weights themselves are exact (tested with mask_ratio=0)"
    ),
}
_ONE_LABEL = (
    "a temperature is defined by the logits' columns whatever the labels, so TS and MTS fit a "
    "calibration set of one class (an unstratified CV fold, issue 15) and keep the logits' "
    "argmax, as temperature scaling always does; the check's generic features are not logits, "
    "so their argmax is not the one label seen. tests/calibration/test_sklearn_friction.py "
    "checks the one-class fit on logits"
)
_LINEAR_EXCEPTIONS = {
    **_CALIBRATOR_EXCEPTIONS,
    "check_sample_weight_equivalence_on_dense_data": (
        "the check's data are nearly separable, so the optimum of W and b lies far out and "
        "L-BFGS stops on its tolerance at points about 1e-7 apart for weighted and repeated "
        "rows: the check's fixed rtol=1e-7 then holds on some CPUs and fails on others (AVX-512 "
        "reduction order). test_linear.py bounds the difference by each fit's own remaining "
        "gradient instead, on data with a finite optimum"
    ),
}
_PASS_THROUGH = (
    "by design InputMasker masks only in fit_transform and passes inputs through in transform, "
    "so that a Pipeline fits on masked inputs and predicts on clean ones"
)


class RowStatisticsLogits(torch.nn.Module):
    """A deterministic network that accepts any number of features (for the common checks)."""

    def forward(self, x):
        x = x.flatten(1)
        return torch.stack([x.sum(dim=1), x.mean(dim=1), -x.amax(dim=1)], dim=1)


_STUDENT_EXCEPTIONS = {
    "check_classifiers_classes": (
        "labels are class indices (the network's output columns); string labels are rejected "
        "with a message that says how to encode them"
    ),
    "check_classifiers_train": (
        "decision_function returns all the network's logits, also for two classes, so that "
        "they feed the calibrators unchanged; scikit-learn expects 1-D binary decisions"
    ),
    "check_decision_proba_consistency": (
        "decision_function returns the network's two logits for a binary problem, not one "
        "decision value; the check ranks its first column"
    ),
}


_MISSING_CLASS = (
    "labels are class indices and every class in [0, max(y)] needs images (a distilled set "
    "has images of every class); the check's labels skip class 0, and the error says so"
)
_TRAINER_EXCEPTIONS = {
    "check_estimators_dtypes": _MISSING_CLASS,
    "check_fit2d_1sample": _MISSING_CLASS,
    "check_fit2d_1feature": _MISSING_CLASS,
}


# Checks that do not apply, by exact class (no isinstance chain, so no order to get right); a
# calibrator not named here gets _CALIBRATOR_EXCEPTIONS.
_EXCEPTIONS = {
    MaskedTemperatureScaling: {**_MASKED_EXCEPTIONS, "check_classifiers_one_label": _ONE_LABEL},
    TemperatureScaling: {**_CALIBRATOR_EXCEPTIONS, "check_classifiers_one_label": _ONE_LABEL},
    DistilledCalibration: {
        **_MASKED_EXCEPTIONS,
        "check_classifiers_one_label": _ONE_LABEL,
        "check_non_transformer_estimators_n_iter": (
            "the common checks run the recipe's 'temperature' method (the one that needs no "
            "network), which takes the recipe's temperature as it is: no solver runs, and "
            "n_iter_ says so with 0 (the other methods report their solver's passes)"
        ),
    },
    MaskedScaling: _MASKED_EXCEPTIONS,
    VectorScaling: _LINEAR_EXCEPTIONS,
    MatrixScaling: _LINEAR_EXCEPTIONS,
    # on log-probabilities the generic features' ranking happens to be kept
    DirichletCalibration: {
        k: v for k, v in _LINEAR_EXCEPTIONS.items() if k != "check_decision_proba_consistency"
    },
    InputMasker: {
        "check_transformer_general": _PASS_THROUGH,
        "check_transformer_data_not_an_array": _PASS_THROUGH,
    },
    StudentClassifier: _STUDENT_EXCEPTIONS,
    MDTTrainer: _TRAINER_EXCEPTIONS,
}


def expected_failed_checks(estimator):
    """The scikit-learn checks that do not apply to ``estimator``, with the reasons."""
    default = _CALIBRATOR_EXCEPTIONS if isinstance(estimator, BaseLogitCalibrator) else {}
    return _EXCEPTIONS.get(type(estimator), default)


# Parameters the common checks use, where the defaults do not suit small generic data.
_CHECK_PARAMS = {
    MatrixScaling: {"reg_lambda": 1e-3},
    DirichletCalibration: {"reg_lambda": 1e-3},
    HistogramBinning: {"n_bins": 5},
    # Without a recipe it warns on every fit (the fallback); a recipe of the "temperature"
    # method calibrates logits without a model, which the generic checks need.
    DistilledCalibration: {"recipe": make_recipe(method="temperature")},
}


def calibrator_instance(cls):
    """The instance of a calibrator class that the common checks run on (seeded if random)."""
    params = dict(_CHECK_PARAMS.get(cls, {}))
    if "random_state" in cls().get_params():
        params["random_state"] = 0
    return cls(**params)


def distcal_calibrators():
    """distcal's registered calibrator classes (not those defined by tests or users)."""
    return [c for c in registered_calibrators().values() if c.__module__.startswith("distcal.")]


CALIBRATORS = [calibrator_instance(cls) for cls in distcal_calibrators()]

ESTIMATORS = [
    *CALIBRATORS,
    InputMasker(random_state=0),
    LogitTransformer(RowStatisticsLogits()),
    StudentClassifier("mlp", width=16, depth=1, epochs=20, batch_size=32, lr=0.05, random_state=0),
    MDTTrainer(
        network="mlp",
        ipc=1,
        width=8,
        depth=1,
        iterations=2,
        augment="none",
        random_state=0,
        method_params={"batch_real": 8},
    ),
    ZCAWhitening(),
]


def test_every_public_estimator_is_checked():
    checked = {type(e) for e in ESTIMATORS}
    public = {
        obj
        for module in (distcal, distcal.distill)
        for name in module.__all__
        if isinstance(obj := getattr(module, name), type) and hasattr(obj, "get_params")
    }
    assert public <= checked, f"estimators without common checks: {public - checked}"


# Generic data are not logits: fits on them legitimately warn (probability-like rows, separable
# or uninformative data). The warnings are tested where they are meant to fire.
@pytest.mark.filterwarnings("ignore::distcal.exceptions.DistcalWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def check_logit_data_contract(estimator):
    """What the skipped common checks verify, on logits whose columns are the classes."""
    X, y = make_logits(n_samples=120, n_classes=3, random_state=1)
    w = np.linspace(0.5, 2.0, len(y))
    params_before = clone(estimator).get_params()

    # fit returns self and does not change its parameters
    est = clone(estimator)
    assert est.fit(X, y) is est
    assert est.get_params() == params_before

    # read-only (memory-mapped) input, lists instead of arrays, sample_weight as a list
    X_ro, y_ro, w_ro = X.copy(), y.copy(), w.copy()
    for array in (X_ro, y_ro, w_ro):
        array.setflags(write=False)
    from_readonly = clone(estimator).fit(X_ro, y_ro, sample_weight=w_ro)
    from_lists = clone(estimator).fit(X.tolist(), y.tolist(), sample_weight=w.tolist())
    np.testing.assert_allclose(
        from_readonly.predict_proba(X), from_lists.predict_proba(X), rtol=1e-12, atol=1e-15
    )

    # sample_weight is not modified
    w_copy = w.copy()
    clone(estimator).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(w, w_copy)

    # decision_function, predict_proba and predict agree; for a binary problem the ranking of
    # the decision values is the ranking of the probability of class 1
    proba = est.predict_proba(X)
    decision = est.decision_function(X)
    np.testing.assert_array_equal(est.predict(X), proba.argmax(axis=1))
    np.testing.assert_array_equal(est.predict(X), decision.argmax(axis=1))
    z_binary = X[:, 1] - X[:, 0]
    binary = clone(estimator).fit(z_binary, (y == 1).astype(int))
    np.testing.assert_array_equal(
        np.argsort(binary.decision_function(z_binary), kind="stable"),
        np.argsort(binary.predict_proba(z_binary)[:, 1], kind="stable"),
    )

    # pickling keeps predictions exactly
    restored = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(restored.predict_proba(X), proba)

    # string labels say how to encode them
    with pytest.raises(TypeError, match="Unknown label type: y must hold integer class labels"):
        clone(estimator).fit(X, np.array(["a", "b", "c"])[y])


def check_pandas_inputs(estimator):
    """A DataFrame of logits, Series of labels and weights fit as their numpy values do."""
    pd = pytest.importorskip("pandas")
    X, y = make_logits(n_samples=120, n_classes=3, random_state=2)
    w = np.linspace(0.5, 2.0, len(y))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    from_pandas = clone(estimator).fit(frame, pd.Series(y), sample_weight=pd.Series(w))
    from_numpy = clone(estimator).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(
        from_pandas.predict_proba(frame), from_numpy.predict_proba(X), rtol=1e-10, atol=1e-12
    )


def check_round_trip(estimator, folder):
    """Saved and loaded through the registry: same class, parameters and predictions."""
    X, y = make_logits(n_samples=150, n_classes=4, random_state=3)
    fitted = clone(estimator).fit(X, y)
    loaded = load_calibrator(save_calibrator(fitted, Path(folder) / "c.safetensors"))
    assert type(loaded) is type(fitted)
    assert repr(loaded.get_params()) == repr(fitted.get_params())
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.decision_function(X), fitted.decision_function(X))
    z = X[:, 1] - X[:, 0]  # binary decision values
    fitted = clone(estimator).fit(z, (y == 1).astype(int))
    loaded = load_calibrator(save_calibrator(fitted, Path(folder) / "b.safetensors"))
    np.testing.assert_array_equal(loaded.predict_proba(z), fitted.predict_proba(z))


def _check_attributes(fitted, device):
    attributes = {k: v for k, v in vars(fitted).items() if k.endswith("_") and k[0] != "_"}
    assert attributes, "fit sets no fitted attribute"
    if "n_iter_" in attributes:  # an iterative fit says whether it converged
        assert type(attributes.get("converged_")) is bool, type(fitted).__name__
    for key, value in attributes.items():
        where = f"{type(fitted).__name__}.{key}"
        if key == "classes_":
            assert isinstance(value, np.ndarray), where
        elif key == "input_shape_":
            assert isinstance(value, tuple), where
            assert all(isinstance(v, int) for v in value), where
        elif isinstance(value, torch.Tensor):
            assert value.device.type == torch.device(device).type, f"{where} is on {value.device}"
        elif isinstance(value, BaseLogitCalibrator):
            _check_attributes(value, device)
        else:
            assert value is None or type(value) in (bool, int, float, str), (
                f"{where} is a {type(value).__name__}: array-valued fitted attributes must be "
                "tensors, scalar ones Python scalars"
            )


def check_fitted_attribute_convention(estimator, device="cpu"):
    """The convention of ``distcal/calibration/_base.py`` for every fitted attribute."""
    X, y = make_logits(n_samples=150, n_classes=4, random_state=4)
    X, y = torch.as_tensor(X, device=device), torch.as_tensor(y, device=device)
    _check_attributes(clone(estimator).fit(X, y), device)


def check_calibrator(estimator):
    """Every distcal check of one calibrator but scikit-learn's (those run per check)."""
    check_logit_data_contract(estimator)
    check_pandas_inputs(estimator)
    check_fitted_attribute_convention(estimator)
    with tempfile.TemporaryDirectory() as folder:
        check_round_trip(estimator, folder)


def test_every_public_calibrator_is_registered():
    import distcal.calibration as calibration

    public = {
        obj
        for name in calibration.__all__
        if isinstance(obj := getattr(calibration, name), type)
        and issubclass(obj, BaseLogitCalibrator)
        and obj is not BaseLogitCalibrator
    }
    assert public == set(distcal_calibrators())
    assert len(public) == 10


_IDS = {"ids": lambda e: type(e).__name__}


@pytest.mark.parametrize("estimator", CALIBRATORS, **_IDS)
def test_logit_data_contract(estimator):
    check_logit_data_contract(estimator)


@pytest.mark.parametrize("estimator", CALIBRATORS, **_IDS)
def test_pandas_inputs(estimator):
    check_pandas_inputs(estimator)


@pytest.mark.parametrize("estimator", CALIBRATORS, **_IDS)
def test_every_calibrator_saves_and_loads(estimator, tmp_path):
    check_round_trip(estimator, tmp_path)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, CUDA])])
@pytest.mark.parametrize("estimator", CALIBRATORS, **_IDS)
def test_fitted_attributes_follow_the_convention(estimator, device):
    check_fitted_attribute_convention(estimator, device)
