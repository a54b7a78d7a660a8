"""The extension recipe for calibrators, demonstrated: a new calibrator is one class in one file.

``PriorShift`` below is defined here and nowhere else: no list in distcal names it. Subclassing
``BaseLogitCalibrator`` registers it, and that alone makes it save and load
(``save_calibrator``/``load_calibrator``), pass the project's common checks (the functions of
``tests/test_common.py`` and scikit-learn's checks, with the default exceptions of every
calibrator), clone, and tune in ``GridSearchCV``. Its hooks, declared on the class, take it the
rest of the way: ``distcal calibrate --method prior-shift`` offers it, ``calibrated_module``
deploys it, and ``MaskedScaling`` over a network with a ``log_softmax`` last layer does not warn
(a constant per row does not change it). ``IdentityWithoutHooks``, which declares no hook, shows
the defaults: refused by ``calibrated_module`` with its name, not on the command line, warned
about under ``MaskedScaling``. The recipe (docs/design.md, "Extending distcal"):

1. subclass :class:`distcal.calibration.BaseLogitCalibrator`, with a public name no other
   calibrator has;
2. declare ``_parameter_constraints`` and take the parameters as keyword arguments of
   ``__init__`` (stored unchanged, as scikit-learn requires);
3. in ``fit``, call ``self._validate_fit_inputs(X, y, sample_weight)`` (parameters, logits,
   labels, weights, ``classes_`` and ``n_features_in_``), fit, set the fitted attributes by the
   convention of ``distcal/calibration/_base.py`` (array-valued ones as tensors on the device of
   the data, scalars as Python scalars; ``n_iter_`` with ``converged_``) and return ``self``;
4. implement ``_calibrate_logits(values)`` (validated float logits to calibrated logits);
5. declare the hooks that apply, each with a safe default: ``_shift_invariant = True`` if
   adding a constant to a row of logits leaves the probabilities unchanged; ``_cli_name`` to be
   offered by ``distcal calibrate --method``; ``_torch_head()`` returning an ``nn.Module`` with
   the fitted parameters as buffers (``forward``: calibrated logits, ``proba``: calibrated
   probabilities) to be deployed by ``calibrated_module``;
6. test it: run ``check_calibrator`` and scikit-learn's checks from ``tests/test_common.py`` on
   an instance, and test what the method itself promises.
"""

import copy
import numbers
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

from distcal._params import Interval
from distcal.calibration import (
    BaseLogitCalibrator,
    MaskedScaling,
    calibrated_module,
    load_calibrated_module,
    load_calibrator,
    module_logits,
    registered_calibrators,
    save_calibrated_module,
    save_calibrator,
)
from distcal.cli import main
from distcal.exceptions import DistcalWarning
from distcal.experiment.calibrate import METHODS
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

    # the hooks (docs/design.md, "Extending distcal"): softmax(z + c + b) = softmax(z + b)
    _shift_invariant = True
    _cli_name = "prior-shift"
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

    def _torch_head(self):
        return PriorShiftHead(self.intercept_)


class PriorShiftHead(torch.nn.Module):
    """``z + b``, for ``calibrated_module``: the fitted biases as a buffer."""

    def __init__(self, intercept):
        super().__init__()
        self.register_buffer("intercept", intercept.detach().to(torch.float64).clone())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z.to(torch.float64) + self.intercept).to(z.dtype)

    @torch.jit.export
    def proba(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.forward(z), dim=1)


class IdentityWithoutHooks(BaseLogitCalibrator):
    """The identity map, declaring no hook: what the defaults give a calibrator."""

    def fit(self, X, y, sample_weight=None):
        self._validate_fit_inputs(X, y, sample_weight)
        return self

    def _calibrate_logits(self, values):
        return values


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


# ------------------------------------------------------------------ by its hooks
def test_the_command_line_offers_it(shifted_digits, tmp_path, capsys):
    X, y, X_test, y_test = shifted_digits
    assert METHODS["prior-shift"] == "PriorShift"
    np.savez(tmp_path / "val.npz", logits=X, labels=y)
    out = tmp_path / "out"
    argv = ["calibrate", str(tmp_path / "val.npz"), "--method", "prior-shift"]
    assert main([*argv, "--output", str(out), "--n-resamples", "20"]) == 0
    assert capsys.readouterr().out.startswith("PriorShift (prior-shift)")
    fitted = load_calibrator(out / "calibrator.safetensors")
    assert type(fitted) is PriorShift
    uncalibrated = torch.softmax(torch.from_numpy(X_test), dim=1).numpy()
    assert _nll(fitted.predict_proba(X_test), y_test) < _nll(uncalibrated, y_test) - 0.02
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    assert "prior-shift (PriorShift)" in " ".join(capsys.readouterr().out.split())


def test_calibrated_module_deploys_it(digits_student, tmp_path):
    d = digits_student
    net = d["net"]
    cal = module_logits(net, d["X_cal"], batch_size=256)
    fitted = PriorShift().fit(cal, d["y_cal"])
    X_test = torch.from_numpy(d["X_test"])
    with torch.no_grad():
        logits = net(X_test)
        module = calibrated_module(net, fitted)
        proba = module(X_test)
        calibrated_logits = calibrated_module(net, fitted, output="logits")(X_test)
    assert isinstance(module.head, PriorShiftHead)
    tol = 16 * torch.finfo(torch.float32).eps
    np.testing.assert_allclose(proba.numpy(), fitted.predict_proba(logits).numpy(), atol=tol)
    np.testing.assert_allclose(
        calibrated_logits.numpy(), fitted.decision_function(logits).numpy(), rtol=tol
    )
    path = save_calibrated_module(module, tmp_path / "deployed.safetensors")
    with torch.no_grad():
        reloaded = load_calibrated_module(path, copy.deepcopy(net))(X_test)
    np.testing.assert_array_equal(reloaded.numpy(), proba.numpy())


def test_masked_scaling_reads_its_shift_invariance(digits_student):
    d = digits_student
    net, X, y = d["net"], torch.from_numpy(d["X_cal"]), d["y_cal"]
    log_net = torch.nn.Sequential(net, torch.nn.LogSoftmax(dim=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # declared shift invariant: nothing to warn about
        on_log = MaskedScaling(PriorShift(), 0.3, model=log_net, random_state=0).fit(X, y)
    on_logits = MaskedScaling(PriorShift(), 0.3, model=net, random_state=0).fit(X, y)
    # and the declaration is true: the same fit, to the float32 rounding of log_softmax
    with torch.no_grad():
        largest = float(net(X).abs().max())
    np.testing.assert_allclose(
        on_log.predict_proba(X).numpy(),
        on_logits.predict_proba(X).numpy(),
        atol=64 * torch.finfo(torch.float32).eps * largest,
    )


def test_a_calibrator_without_hooks_gets_the_safe_defaults(digits_student, shifted_digits):
    d = digits_student
    net, X, y = d["net"], torch.from_numpy(d["X_cal"]), d["y_cal"]
    fitted = IdentityWithoutHooks().fit(*shifted_digits[:2])  # it fits, it is registered
    assert registered_calibrators()["IdentityWithoutHooks"] is IdentityWithoutHooks
    with pytest.raises(
        TypeError,
        match=r"does not support IdentityWithoutHooks: it declares no torch head.*PriorShift",
    ):
        calibrated_module(net, fitted)
    masked = MaskedScaling(IdentityWithoutHooks(), 0.3, random_state=0).fit(*shifted_digits[:2])
    with pytest.raises(
        TypeError, match=r"support IdentityWithoutHooks \(the fitted calibrator of MaskedScaling\)"
    ):
        calibrated_module(net, masked)
    assert "IdentityWithoutHooks" not in METHODS.values()  # no command-line name
    log_net = torch.nn.Sequential(net, torch.nn.LogSoftmax(dim=1))
    with pytest.warns(DistcalWarning, match="look like log-probabilities"):
        MaskedScaling(IdentityWithoutHooks(), 0.3, model=log_net, random_state=0).fit(X, y)


def test_a_command_line_name_is_a_unique_word():
    with pytest.raises(TypeError, match=r"'prior-shift' of .*Again is already the name of"):

        class Again(PriorShift):
            _cli_name = "prior-shift"

    with pytest.raises(TypeError, match=r"must be None or a lower-case word.*got 'Two words'"):

        class Spaced(PriorShift):
            _cli_name = "Two words"

    class PriorShiftSubclass(PriorShift):  # a subclass is not offered under its parent's name
        pass

    assert PriorShiftSubclass._cli_name is None
    assert METHODS["prior-shift"] == "PriorShift"
