"""scikit-learn friction (issue 15, item 6): scorer warnings and one-class folds."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold

from distcal import MaskedTemperatureScaling, TemperatureScaling
from distcal.exceptions import UncalibratableDataWarning


def _logits(n=600, k=10, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    z = (3 * rng.normal(size=(n, k))).astype(dtype)
    y = (z + 3 * rng.normal(size=z.shape)).argmax(axis=1)
    return z, y


def _grid(X, y, estimator, cv=3):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        search = GridSearchCV(
            estimator, {"tol": [1e-6, 1e-5]}, scoring="neg_log_loss", cv=cv, error_score="raise"
        ).fit(X, y)
    return search, [str(w.message) for w in caught]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_sum_to_one_warning_from_the_log_loss_scorer_on_numpy(dtype):
    z, y = _logits(dtype=dtype)
    search, messages = _grid(z, y, TemperatureScaling())
    assert not [m for m in messages if "sum to one" in m], messages
    assert np.isfinite(search.best_score_)
    # the rows sum to one at the tolerance scikit-learn applies for their dtype
    proba = search.best_estimator_.predict_proba(z)
    assert proba.dtype == dtype
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=np.sqrt(np.finfo(dtype).eps))


def test_float64_tensors_pass_the_scorer_silently():
    z, y = _logits(dtype=np.float64)
    _, messages = _grid(torch.from_numpy(z), torch.from_numpy(y), TemperatureScaling())
    assert not [m for m in messages if "sum to one" in m], messages


def test_float32_tensors_keep_their_dtype():
    # Documented (user guide, "scikit-learn's scorers"): a tensor's dtype is kept; the float32
    # rows sum to one within float32 rounding, which scikit-learn's log_loss, converting a
    # tensor to float64, checks at float64 tolerance.
    z, y = _logits(dtype=np.float32)
    proba = TemperatureScaling().fit(z, y).predict_proba(torch.from_numpy(z))
    assert proba.dtype == torch.float32
    assert float((proba.sum(dim=1) - 1).abs().max()) <= 4 * np.finfo(np.float32).eps


def _one_class_fold_data():
    # Labels of all classes in the first half, class 0 only in the second: the unshuffled
    # KFold(2) calibrates its first fold on the second half, one class.
    z, y = _logits(n=300, k=3, seed=1, dtype=np.float64)
    y = y.copy()
    y[150:] = 0
    return z, y


@pytest.mark.parametrize(
    "estimator",
    [TemperatureScaling(), MaskedTemperatureScaling(0.2, random_state=0)],
    ids=["TS", "MTS"],
)
def test_an_unstratified_cv_with_a_one_class_fold_fits(estimator):
    z, y = _one_class_fold_data()
    assert any(len(np.unique(y[train])) == 1 for train, _ in KFold(2).split(z))
    fitted = type(estimator)(**estimator.get_params()).fit(z[150:], y[150:])
    assert fitted.temperature_ > 0
    assert fitted.converged_
    assert list(fitted.classes_) == [0, 1, 2]  # the logits define the classes
    # (neg_log_loss cannot score a one-class *test* fold, in scikit-learn itself; accuracy can)
    search = GridSearchCV(
        estimator, {"tol": [1e-6, 1e-5]}, scoring="accuracy", cv=KFold(2), error_score="raise"
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("error", category=UncalibratableDataWarning)
        search.fit(z, y)
    assert np.isfinite(search.best_score_)


def test_one_class_with_nothing_to_learn_warns():
    # every sample of the one class holds its largest logit: no finite temperature
    z = np.array([[4.0, 0.0, 1.0], [3.0, 1.0, 0.0], [5.0, 2.0, 2.0]])
    with pytest.warns(UncalibratableDataWarning, match="separate the calibration data"):
        TemperatureScaling().fit(z, [0, 0, 0])
    with pytest.warns(UncalibratableDataWarning, match="below the mean logit"):
        TemperatureScaling().fit(z, [1, 1, 1])


def test_scikit_learn_for_comparison_does_not_fit_one_class():
    # scikit-learn 1.9's temperature calibration of a frozen classifier fails on a one-class
    # calibration set (an IndexError in 1.9.1; a ValueError in other versions).
    z, y = _one_class_fold_data()
    classifier = LogisticRegression().fit(z, y)
    one_class = y == 0
    calibrated = CalibratedClassifierCV(FrozenEstimator(classifier), method="temperature")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises((ValueError, IndexError)):
            calibrated.fit(z[one_class], y[one_class])
