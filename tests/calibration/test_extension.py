"""The extension recipe for calibrators, demonstrated: a new calibrator is one class in one file.

``PriorShift`` below is defined here and nowhere else: no list in distcal names it. Subclassing
``BaseLogitCalibrator`` registers it, and that alone makes it save and load
(``save_calibrator``/``load_calibrator``), pass the project's common checks (the functions of
``tests/test_common.py`` and scikit-learn's checks, with the default exceptions of every
calibrator), clone, and tune in ``GridSearchCV``. The recipe:

1. subclass :class:`distcal.calibration.BaseLogitCalibrator`, with a public name no other
   calibrator has;
2. declare ``_parameter_constraints`` and take the parameters as keyword arguments of
   ``__init__`` (stored unchanged, as scikit-learn requires);
3. in ``fit``, call ``self._validate_fit_inputs(X, y, sample_weight)`` (parameters, logits,
   labels, weights, ``classes_`` and ``n_features_in_``), fit, set the fitted attributes by the
   convention of ``distcal/calibration/_base.py`` (array-valued ones as tensors on the device of
   the data, scalars as Python scalars; ``n_iter_`` with ``converged_``) and return ``self``;
4. implement ``_calibrate_logits(values)`` (validated float logits to calibrated logits);
5. test it: run ``check_calibrator`` and scikit-learn's checks from ``tests/test_common.py`` on
   an instance, and test what the method itself promises.
"""

import numbers

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

from distcal._validation import Interval
from distcal.calibration import (
    BaseLogitCalibrator,
    load_calibrator,
    module_logits,
    registered_calibrators,
    save_calibrator,
)
from distcal.metrics import neg_nll_scorer

from ..test_common import check_calibrator, expected_failed_checks


class PriorShift(BaseLogitCalibrator):
    """Bias-only calibration: ``softmax(z + b)``, one bias per class.

    The NLL is convex in ``b`` and minimal where the mean calibrated probability of every class
    equals its (weighted) frequency in the calibration data; ``b`` is found by the fixed-point
    iteration ``b_k += log(freq_k) - log(mean_p_k)`` (the prior correction of Saerens et al.,
    2002). It corrects a shift of the class priors and leaves the scale of the logits alone.

    Parameters
    ----------
    shrinkage : float, default=0.01
        Weight in [0, 1] of the uniform distribution mixed into the class frequencies before
        they are matched (0: the frequencies as they are, which needs a sample of every class).
    tol : float, default=1e-10
        Stop when no bias moves by more than ``tol``.
    max_iter : int, default=1000
        Maximum number of iterations.

    Attributes
    ----------
    intercept_ : Tensor of shape (n_classes,)
        The biases ``b`` (float64, centred).
    n_iter_ : int
        Iterations made.
    converged_ : bool
        Whether the last step was below ``tol``.
    """

    _parameter_constraints = {
        "shrinkage": [Interval(numbers.Real, 0.0, 1.0, closed="both")],
        "tol": [Interval(numbers.Real, 0.0, None, closed="neither")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
    }

    def __init__(self, *, shrinkage=0.01, tol=1e-10, max_iter=1000):
        self.shrinkage = shrinkage
        self.tol = tol
        self.max_iter = max_iter

    def fit(self, X, y, sample_weight=None):
        logits, labels, weights = self._validate_fit_inputs(X, y, sample_weight)
        z = logits.values.to(torch.float64)
        n_samples, n_classes = z.shape
        share = (
            torch.full((n_samples,), 1.0 / n_samples, dtype=torch.float64, device=z.device)
            if weights is None
            else weights.to(torch.float64) / weights.sum()
        )
        frequency = torch.zeros(n_classes, dtype=torch.float64, device=z.device)
        frequency.index_add_(0, labels, share)
        target = (1 - self.shrinkage) * frequency + self.shrinkage / n_classes
        if bool((target == 0).any()):
            raise ValueError(
                "y must hold every class of the logits' columns when shrinkage=0; class "
                f"{int((target == 0).nonzero()[0, 0])} has no sample (its bias would be -inf). "
                "Pass shrinkage > 0."
            )
        bias = torch.zeros(n_classes, dtype=torch.float64, device=z.device)
        n_iter, converged = 0, False
        while n_iter < self.max_iter and not converged:
            mean_p = share @ torch.softmax(z + bias, dim=1)
            step = target.log() - mean_p.log()
            bias += step - step.mean()
            n_iter += 1
            converged = float(step.abs().max()) <= self.tol
        self.intercept_ = bias
        self.n_iter_ = n_iter
        self.converged_ = converged
        return self

    def _calibrate_logits(self, values):
        return (values.to(torch.float64) + self.intercept_.to(values.device)).to(values.dtype)


# ------------------------------------------------------------------ by the registry alone
def test_defining_the_class_registered_it():
    assert registered_calibrators()["PriorShift"] is PriorShift


def test_the_projects_common_checks_pass():
    check_calibrator(PriorShift())  # logit contract, pandas, attribute convention, save/load


@parametrize_with_checks([PriorShift()], expected_failed_checks=expected_failed_checks)
def test_scikit_learn_checks_pass(estimator, check):
    check(estimator)


# ------------------------------------------------------------------ on real data
SHIFT = 4.0


@pytest.fixture(scope="module")
def shifted_digits(digits_student):
    """Logits of a small digits network, with the prior of class 0 inflated (+4 on its logit)."""
    d = digits_student
    shift = torch.zeros(10, dtype=torch.float64)
    shift[0] = SHIFT
    cal = module_logits(d["net"], d["X_cal"], batch_size=256).double() + shift
    test = module_logits(d["net"], d["X_test"], batch_size=256).double() + shift
    return cal.numpy(), d["y_cal"], test.numpy(), d["y_test"]


def _nll(proba, y):
    return float(-np.log(np.asarray(proba)[np.arange(len(y)), y]).mean())


def test_it_undoes_a_prior_shift_on_digits(shifted_digits):
    X, y, X_test, y_test = shifted_digits
    calibrator = PriorShift(shrinkage=0.0).fit(X, y)
    assert calibrator.converged_
    # the optimum: the mean calibrated probabilities are the class frequencies
    np.testing.assert_allclose(
        calibrator.predict_proba(X).mean(axis=0), np.bincount(y, minlength=10) / len(y), atol=1e-9
    )
    # the fitted bias takes the shift back: the same predictions as without the shift
    unshifted = PriorShift(shrinkage=0.0).fit(X - SHIFT * (np.arange(10) == 0), y)
    bias = calibrator.intercept_.numpy() - unshifted.intercept_.numpy()
    np.testing.assert_allclose(bias - bias.mean(), -SHIFT * ((np.arange(10) == 0) - 0.1), atol=1e-6)
    np.testing.assert_allclose(
        calibrator.predict_proba(X_test),
        unshifted.predict_proba(X_test - SHIFT * (np.arange(10) == 0)),
        atol=1e-9,
    )
    uncalibrated = torch.softmax(torch.from_numpy(X_test), dim=1).numpy()
    assert _nll(calibrator.predict_proba(X_test), y_test) < _nll(uncalibrated, y_test) - 0.02


def test_it_saves_loads_clones_and_tunes(shifted_digits, tmp_path):
    X, y, X_test, _ = shifted_digits
    fitted = PriorShift(shrinkage=0.1).fit(X, y)
    loaded = load_calibrator(save_calibrator(fitted, tmp_path / "prior.safetensors"))
    assert type(loaded) is PriorShift
    assert loaded.shrinkage == 0.1
    np.testing.assert_array_equal(loaded.predict_proba(X_test), fitted.predict_proba(X_test))
    assert clone(fitted).get_params() == fitted.get_params()
    search = GridSearchCV(
        PriorShift(), {"shrinkage": [0.0, 0.3, 0.9]}, scoring=neg_nll_scorer, cv=3
    ).fit(X, y)
    assert search.best_params_["shrinkage"] in (0.0, 0.3)  # not the near-uniform prior
    assert isinstance(search.best_estimator_, PriorShift)


def test_bad_parameters_are_named():
    X, y = np.zeros((4, 3)), np.array([0, 1, 2, 0])
    with pytest.raises(Exception, match="'shrinkage' parameter of PriorShift"):
        PriorShift(shrinkage=2.0).fit(X, y)
    with pytest.raises(ValueError, match="class 2 has no sample"):
        PriorShift(shrinkage=0.0).fit(X, np.array([0, 1, 1, 0]))
