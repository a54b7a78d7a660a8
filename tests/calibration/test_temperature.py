import pickle
import warnings

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score

import distcal._device
from distcal import TemperatureScaling
from distcal.calibration import fit_temperature
from distcal.exceptions import (
    ConvergenceWarning,
    InvalidParameterError,
    ProbabilityInputWarning,
    UncalibratableDataWarning,
)

from ..conftest import CUDA, make_logits


def reference_nll(logits, y, temperature, weights=None):
    """Independent float64 NLL of softmax(logits / T) (scipy's log_softmax)."""
    per_sample = -log_softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)[
        np.arange(len(y)), y
    ]
    return np.average(per_sample, weights=weights)


def reference_temperature(logits, y, weights=None):
    """The optimum found by an independent method: bounded Brent on log T to machine precision."""
    result = minimize_scalar(
        lambda log_t: reference_nll(logits, y, np.exp(log_t), weights),
        bounds=(-5, 5),
        method="bounded",
        options={"xatol": 1e-12},
    )
    return float(np.exp(result.x)), float(result.fun)


# ------------------------------------------------------------------------------- exactness
def test_fit_reaches_the_optimum_of_an_independent_method():
    X, y = make_logits(n_samples=3000, n_classes=5, scale=3.0, random_state=0)
    ts = TemperatureScaling().fit(X, y)
    t_ref, nll_ref = reference_temperature(X, y)
    assert ts.converged_
    assert ts.temperature_ == pytest.approx(t_ref, rel=1e-6)
    assert ts.nll_ == pytest.approx(nll_ref, rel=1e-10)
    assert ts.nll_ <= nll_ref + 1e-12
    # the data were generated with T = 3
    assert ts.temperature_ == pytest.approx(3.0, rel=0.1)
    assert ts.n_iter_ <= 10


def test_fit_moves_the_temperature_and_lowers_the_nll():
    # netcal returns T = 1 here (FIELD-NOTES: "the fit silently does nothing")
    X, y = make_logits(n_samples=500, scale=4.0, random_state=3)
    ts = TemperatureScaling().fit(X, y)
    assert abs(ts.temperature_ - 1) > 0.5
    assert ts.nll_ < reference_nll(X, y, 1.0) - 0.05


def test_nll_never_worse_than_at_temperature_one():
    for seed in range(5):
        X, y = make_logits(n_samples=100, scale=0.5 + seed, random_state=seed)
        ts = TemperatureScaling().fit(X, y)
        assert ts.nll_ <= reference_nll(X, y, 1.0) + 1e-12


@pytest.mark.parametrize("c", [0.25, 7.0])
def test_scaling_the_logits_scales_the_temperature(c):
    X, y = make_logits(n_samples=400, random_state=4)
    t = TemperatureScaling().fit(X, y).temperature_
    assert TemperatureScaling().fit(c * X, y).temperature_ == pytest.approx(c * t, rel=1e-8)


def test_float32_and_float64_input_give_the_same_temperature():
    X, y = make_logits(n_samples=5000, n_classes=10, random_state=5)
    t64 = TemperatureScaling().fit(X, y).temperature_
    t32 = TemperatureScaling().fit(X.astype(np.float32), y).temperature_
    assert t32 == pytest.approx(t64, rel=1e-6)


def test_chunked_passes_equal_one_pass(monkeypatch):
    X, y = make_logits(n_samples=1000, n_classes=7, random_state=6)
    whole = TemperatureScaling().fit(X, y)
    monkeypatch.setattr(distcal._device, "_CPU_CHUNK_ELEMENTS", 50)  # 7 rows per chunk
    chunked = TemperatureScaling().fit(X, y)
    assert chunked.temperature_ == pytest.approx(whole.temperature_, rel=1e-12)


def test_statistics_hook_gives_the_in_memory_result():
    """Streaming and distributed fits plug their own pass in; the sums must add up."""
    from distcal.calibration._temperature import temperature_statistics

    X, y = make_logits(n_samples=600, random_state=7)
    Z, labels = torch.from_numpy(X), torch.from_numpy(y)

    def two_batches(beta, limits):
        return sum(
            temperature_statistics(Z[rows], labels[rows], None, beta, limits=limits)
            for rows in (slice(0, 250), slice(250, None))
        )

    streamed = fit_temperature(None, None, statistics=two_batches)
    in_memory = fit_temperature(Z, labels)
    assert streamed.temperature == pytest.approx(in_memory.temperature, rel=1e-12)
    assert streamed.n_iter == in_memory.n_iter


# ------------------------------------------------------------------------------- invariants
def test_argmax_accuracy_and_auc_are_unchanged():
    X, y = make_logits(n_samples=300, random_state=8)
    ts = TemperatureScaling().fit(X, y)
    np.testing.assert_array_equal(ts.predict(X), X.argmax(axis=1))
    z = X[:, 1] - X[:, 0]
    yb = (y == 1).astype(int)
    tb = TemperatureScaling().fit(z, yb)
    assert roc_auc_score(yb, tb.predict_proba(z)[:, 1]) == pytest.approx(roc_auc_score(yb, z))


def test_predictions_are_softmax_of_scaled_logits():
    X, y = make_logits(n_samples=50, random_state=9)
    ts = TemperatureScaling().fit(X, y)
    T = ts.temperature_
    np.testing.assert_allclose(ts.predict_proba(X), softmax(X / T, axis=1), rtol=1e-12)
    np.testing.assert_allclose(ts.predict_log_proba(X), log_softmax(X / T, axis=1), rtol=1e-12)
    np.testing.assert_allclose(ts.decision_function(X), X / T, rtol=1e-15)


# ------------------------------------------------------------------------------- weights
def test_integer_weights_equal_repetition_and_zero_weights_equal_removal():
    X, y = make_logits(n_samples=200, random_state=10)
    w = np.random.default_rng(0).integers(0, 4, size=len(y))
    weighted = TemperatureScaling().fit(X, y, sample_weight=w).temperature_
    repeated = TemperatureScaling().fit(np.repeat(X, w, axis=0), np.repeat(y, w)).temperature_
    assert weighted == pytest.approx(repeated, rel=1e-10)
    t_ref, _ = reference_temperature(X, y, weights=w)
    assert weighted == pytest.approx(t_ref, rel=1e-6)


# ------------------------------------------------------------------------------- containers
def test_numpy_in_numpy_out_and_tensor_in_tensor_out():
    X, y = make_logits(n_samples=100, random_state=11)
    from_numpy = TemperatureScaling().fit(X, y)
    from_torch = TemperatureScaling().fit(torch.from_numpy(X), torch.from_numpy(y))
    assert isinstance(from_torch.temperature_, float)
    assert from_numpy.temperature_ == from_torch.temperature_
    out = from_torch.predict_proba(torch.from_numpy(X))
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float64
    assert isinstance(from_torch.predict_proba(X), np.ndarray)
    assert isinstance(from_torch.predict(torch.from_numpy(X)), torch.Tensor)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_tensors_are_accepted_and_promoted(dtype):
    X, y = make_logits(n_samples=400, random_state=12)
    Xt = torch.from_numpy(X).to(dtype)
    ts = TemperatureScaling().fit(Xt, torch.from_numpy(y))
    t_ref, _ = reference_temperature(Xt.double().numpy(), y)
    assert ts.temperature_ == pytest.approx(t_ref, rel=1e-6)
    proba = ts.predict_proba(Xt)
    assert proba.dtype == torch.promote_types(dtype, torch.float32)
    assert torch.allclose(proba.sum(dim=1), torch.ones(len(y), dtype=proba.dtype))


# ------------------------------------------------------------------------------- binary
def test_binary_shapes_agree():
    rng = np.random.default_rng(13)
    z = 3 * rng.normal(size=300)
    y = (rng.random(300) < 1 / (1 + np.exp(-z / 3))).astype(int)
    a = TemperatureScaling().fit(z, y)
    b = TemperatureScaling().fit(z[:, None], y)
    c = TemperatureScaling().fit(np.stack([np.zeros_like(z), z], axis=1), y)
    d = TemperatureScaling().fit(np.stack([-z / 2, z / 2], axis=1), y)
    for other in (b, c, d):
        assert other.temperature_ == pytest.approx(a.temperature_, rel=1e-10)
    np.testing.assert_allclose(a.predict_proba(z), c.predict_proba(np.stack([0 * z, z], 1)))
    np.testing.assert_allclose(a.predict_proba(z)[:, 1], 1 / (1 + np.exp(-z / a.temperature_)))
    assert a.decision_function(z).shape == (300,)
    assert b.decision_function(z[:, None]).shape == (300,)
    assert a.predict_proba(z).shape == (300, 2)
    np.testing.assert_array_equal(a.classes_, [0, 1])


# ------------------------------------------------------------------------------- pitfalls
def test_probabilities_passed_as_logits_warn():
    X, y = make_logits(n_samples=100, random_state=14)
    P = softmax(X, axis=1)
    with pytest.warns(ProbabilityInputWarning, match="input_type='probabilities'"):
        TemperatureScaling().fit(P, y)


def test_probabilities_are_accepted_when_declared():
    X, y = make_logits(n_samples=300, random_state=15)
    P = softmax(X, axis=1)
    from_probabilities = TemperatureScaling(input_type="probabilities").fit(P, y)
    from_logits = TemperatureScaling().fit(X, y)
    assert from_probabilities.temperature_ == pytest.approx(from_logits.temperature_, rel=1e-8)
    np.testing.assert_allclose(
        from_probabilities.predict_proba(P), from_logits.predict_proba(X), atol=1e-10
    )
    with pytest.raises(ValueError, match=r"X must hold probabilities in \[0, 1\]"):
        TemperatureScaling(input_type="probabilities").fit(X, y)
    with pytest.raises(ValueError, match="rows sum to 1"):
        TemperatureScaling(input_type="probabilities").fit(P * 0.9, y)


def test_separable_data_warn_and_never_pose_a_bound_as_an_optimum():
    # a network evaluated on its own training set: every sample correct with a margin
    X, y = make_logits(n_samples=100, random_state=16)
    y = X.argmax(axis=1)
    with pytest.warns(UncalibratableDataWarning, match="held-out data") as record:
        ts = TemperatureScaling().fit(X, y)
    assert "MaskedTemperatureScaling" in str(record[0].message)
    assert not ts.converged_
    assert ts.temperature_ == pytest.approx(1e-6)
    assert ts.n_iter_ == 1


def test_constant_and_uninformative_logits_warn():
    y = np.array([0, 1, 2, 0, 1, 2])
    with pytest.warns(UncalibratableDataWarning, match="constant"):
        ts = TemperatureScaling().fit(np.full((6, 3), 2.0), y)
    assert ts.temperature_ == 1.0
    X_wrong = -3 * np.eye(3)[y]  # the label's logit is always the lowest
    with pytest.warns(UncalibratableDataWarning, match="uniform prediction"):
        ts = TemperatureScaling().fit(X_wrong, y)
    assert not ts.converged_
    assert ts.temperature_ == pytest.approx(1e6)


def test_non_convergence_warns_with_the_reason():
    X, y = make_logits(n_samples=100, random_state=17)
    with pytest.warns(ConvergenceWarning, match="max_iter=1"):
        ts = TemperatureScaling(max_iter=1).fit(X, y)
    assert not ts.converged_
    assert ts.n_iter_ == 1


def test_no_warning_on_ordinary_data():
    X, y = make_logits(n_samples=100, random_state=18)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TemperatureScaling().fit(X, y)


# ------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.array([[np.nan, 1.0], [0.0, 1.0]]), [0, 1], "X contains NaN or infinity"),
        (np.array([[np.inf, 1.0], [0.0, 1.0]]), [0, 1], "X contains NaN or infinity"),
        (np.zeros((2, 3, 4)), [0, 1], r"got an array of shape \(2, 3, 4\)"),
        (np.zeros((0, 3)), [], "0 sample"),
        (np.zeros((2, 0)), [0, 1], "0 feature"),
        (4 * np.eye(3) - 1, [0, 1, 3], r"labels \[3\] that are not among the columns"),
        (4 * np.eye(3) - 1, [0, 1, -1], r"labels \[-1\]"),
        (4 * np.eye(3) - 1, [0, 1], "inconsistent numbers of samples"),
        (4 * np.eye(3) - 1, [0, 1, 1.5], "continuous"),
        (np.array([0.3, -0.2, 1.0]), [0, 2, 1], "must be 0 or 1"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_error(X, y, match):
    with pytest.raises(ValueError, match=match):
        TemperatureScaling().fit(X, y)


def test_bad_types_and_weights():
    X, y = make_logits(n_samples=10, random_state=19)
    with pytest.raises(TypeError, match="X must be an array-like"):
        TemperatureScaling().fit(None, y)
    with pytest.raises(TypeError, match="X must hold real numbers"):
        TemperatureScaling().fit(np.array([["a", "b"]] * 10), y)
    with pytest.raises(ValueError, match="requires y to be passed"):
        TemperatureScaling().fit(X, None)
    with pytest.raises(ValueError, match="sample_weight must be non-negative"):
        TemperatureScaling().fit(X, y, sample_weight=-np.ones(10))
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        TemperatureScaling().fit(X, y, sample_weight=np.ones(9))
    with pytest.raises(ValueError, match="all weights are zero"):
        TemperatureScaling().fit(X, y, sample_weight=np.zeros(10))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"tol": -1.0}, r"The 'tol' parameter of TemperatureScaling must be a float in the range"),
        ({"max_iter": 0}, r"'max_iter' parameter .* an int in the range \[1, inf\)\. Got 0"),
        ({"input_type": "probs"}, r"one of \{'logits', 'probabilities'\}\. Got 'probs'"),
    ],
)
def test_bad_parameters_are_named(params, match):
    X, y = make_logits(n_samples=10, random_state=20)
    with pytest.raises(InvalidParameterError, match=match):
        TemperatureScaling(**params).fit(X, y)


def test_prediction_checks():
    X, y = make_logits(n_samples=20, n_classes=3, random_state=21)
    with pytest.raises(NotFittedError):
        TemperatureScaling().predict_proba(X)
    ts = TemperatureScaling().fit(X, y)
    with pytest.raises(ValueError, match="X has 4 features, but TemperatureScaling is expecting 3"):
        ts.predict_proba(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"X.reshape\(1, -1\)"):
        ts.predict_proba(X[0])  # one sample's logits passed as 1-D
    with pytest.raises(ValueError, match="NaN"):
        ts.predict(np.full((2, 3), np.nan))


# ------------------------------------------------------------------------------- persistence
def test_pickle_round_trip():
    X, y = make_logits(n_samples=50, random_state=22)
    ts = TemperatureScaling().fit(torch.from_numpy(X), y)
    restored = pickle.loads(pickle.dumps(ts))
    assert restored.temperature_ == ts.temperature_
    np.testing.assert_array_equal(restored.predict_proba(X), ts.predict_proba(X))


@pytest.mark.cuda
@CUDA
def test_cuda_tensors_stay_on_their_device():
    X, y = make_logits(n_samples=2000, n_classes=10, random_state=23)
    Xc, yc = torch.from_numpy(X).cuda(), torch.from_numpy(y).cuda()
    ts = TemperatureScaling().fit(Xc, yc)
    assert ts.temperature_ == pytest.approx(TemperatureScaling().fit(X, y).temperature_, rel=1e-10)
    assert ts.predict_proba(Xc).device == Xc.device
    assert ts.decision_function(Xc).device == Xc.device
    assert isinstance(ts.predict_proba(X), np.ndarray)
