"""scikit-learn's common estimator checks, run on every public estimator of distcal.

scikit-learn's checks feed generic data: a few features unrelated to the number of classes,
string labels, and so on. A calibrator over logits needs one column per class and labels that
index those columns, so checks built on such data cannot apply; each is listed below with its
reason, and ``test_logit_data_contract`` re-runs what those checks verify on logit-shaped data.
"""

import pickle

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
    EnsembleTemperatureScaling,
    HistogramBinning,
    IsotonicCalibration,
    MaskedScaling,
    MatrixScaling,
    VectorScaling,
)
from distcal.distill import MDTTrainer, StudentClassifier

from .conftest import make_logits

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
_LINEAR_EXCEPTIONS = {
    **_CALIBRATOR_EXCEPTIONS,
    "check_sample_weight_equivalence_on_dense_data": (
        "the check's data are nearly separable, so the optimum of W and b lies far out and "
        "L-BFGS stops on its tolerance at points 1e-7 apart for weighted and repeated rows; on "
        "data with a finite optimum weights equal repetitions (test_linear.py)"
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


def _expected_failed_checks(estimator):
    if isinstance(estimator, MDTTrainer):
        return _TRAINER_EXCEPTIONS
    if isinstance(estimator, StudentClassifier):
        return _STUDENT_EXCEPTIONS
    if isinstance(estimator, MaskedTemperatureScaling):
        return _MASKED_EXCEPTIONS
    if isinstance(estimator, DirichletCalibration):
        # on log-probabilities the generic features' ranking happens to be kept
        return {
            k: v for k, v in _LINEAR_EXCEPTIONS.items() if k != "check_decision_proba_consistency"
        }
    if isinstance(estimator, MatrixScaling):
        return _LINEAR_EXCEPTIONS
    if isinstance(estimator, VectorScaling):
        # K + K parameters: the closed-form gradient reaches the same optimum either way
        return _CALIBRATOR_EXCEPTIONS
    if isinstance(estimator, EnsembleTemperatureScaling | HistogramBinning | IsotonicCalibration):
        return _CALIBRATOR_EXCEPTIONS
    if isinstance(estimator, TemperatureScaling):
        return _CALIBRATOR_EXCEPTIONS
    if isinstance(estimator, InputMasker):
        return {
            "check_transformer_general": _PASS_THROUGH,
            "check_transformer_data_not_an_array": _PASS_THROUGH,
        }
    return {}


ESTIMATORS = [
    TemperatureScaling(),
    MaskedTemperatureScaling(random_state=0),
    VectorScaling(),
    MatrixScaling(reg_lambda=1e-3),
    DirichletCalibration(reg_lambda=1e-3),
    EnsembleTemperatureScaling(),
    HistogramBinning(n_bins=5),
    IsotonicCalibration(),
    MaskedScaling(random_state=0),
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
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


CALIBRATORS = [
    TemperatureScaling(),
    MaskedTemperatureScaling(mask_ratio=0.2, random_state=0),
]


@pytest.mark.parametrize("estimator", CALIBRATORS, ids=lambda e: type(e).__name__)
def test_logit_data_contract(estimator):
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
    from_readonly = clone(estimator).fit(X_ro, y_ro, sample_weight=w_ro).temperature_
    from_lists = clone(estimator).fit(X.tolist(), y.tolist(), sample_weight=w.tolist())
    assert from_readonly == pytest.approx(from_lists.temperature_, rel=1e-12)

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


@pytest.mark.parametrize(
    "estimator",
    [e for e in ESTIMATORS if isinstance(e, BaseLogitCalibrator)],
    ids=lambda e: type(e).__name__,
)
def test_pandas_inputs(estimator):
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
