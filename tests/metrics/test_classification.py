"""The scikit-learn layer: floats out, numpy and torch alike, binary shapes, input errors."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve as sklearn_calibration_curve
from sklearn.exceptions import DataConversionWarning
from sklearn.metrics import brier_score_loss, log_loss

from distcal.metrics import (
    adaptive_calibration_error,
    brier_score,
    calibration_curve,
    calibration_error,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
)
from distcal.metrics import functional as F

from . import _oracle

METRICS = [
    calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    adaptive_calibration_error,
    classwise_calibration_error,
    negative_log_likelihood,
    brier_score,
]
BINNED = METRICS[:5]


def make_data(n_samples=300, n_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(n_classes, 0.7), size=n_samples)
    y = np.where(
        rng.random(n_samples) < 0.7, probs.argmax(axis=1), rng.integers(0, n_classes, n_samples)
    )
    return y, probs


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
def test_returns_a_python_float_equal_to_the_functional_layer(metric):
    y, probs = make_data()
    result = metric(y, probs)
    assert type(result) is float
    functional = getattr(F, metric.__name__)
    assert result == functional(torch.from_numpy(probs), torch.from_numpy(y)).item()


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
def test_numpy_and_torch_give_the_same_float(metric):
    y, probs = make_data(seed=1)
    weights = np.random.default_rng(1).uniform(0, 3, len(y))
    as_numpy = metric(y, probs, sample_weight=weights)
    as_torch = metric(torch.from_numpy(y), torch.from_numpy(probs), sample_weight=weights)
    as_lists = metric(y.tolist(), probs.tolist(), sample_weight=weights.tolist())
    assert as_numpy == as_torch == as_lists


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
def test_cuda_agrees_with_cpu(metric):
    y, probs = make_data(seed=2)
    weights = np.random.default_rng(2).uniform(0, 3, len(y))
    cpu = metric(y, probs, sample_weight=weights)
    cuda = metric(
        torch.from_numpy(y).cuda(),
        torch.from_numpy(probs).float().cuda(),
        sample_weight=torch.from_numpy(weights).cuda(),
    )
    cpu32 = metric(y, probs.astype(np.float32), sample_weight=weights)
    assert cuda == pytest.approx(cpu32, abs=1e-12)
    assert cuda == pytest.approx(cpu, abs=1e-6)
    functional = getattr(F, metric.__name__)
    assert functional(torch.from_numpy(probs).cuda(), torch.from_numpy(y)).device.type == "cuda"


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
def test_binary_shapes_agree(metric):
    rng = np.random.default_rng(3)
    p = rng.uniform(size=200)
    p[:5] = [0.0, 1.0, 0.5, 0.25, 0.75]
    y = (rng.uniform(size=200) < p).astype(np.int64)
    if metric is negative_log_likelihood:
        p = np.clip(p, 0.01, 0.99)
    two_columns = np.stack([1 - p, p], axis=1)
    results = {metric(y, p), metric(y, p[:, None]), metric(y, two_columns)}
    assert len(results) == 1
    # float32 values whose complement is exact in float32 give the same result too.
    grid = np.round(p * 64) / 64
    grid32 = grid.astype(np.float32)
    assert metric(y, grid32) == metric(y, np.stack([1 - grid32, grid32], axis=1)) == metric(y, grid)


def test_binary_top_label_confidence_is_the_larger_probability():
    y = np.array([0, 1, 1, 0])
    p = np.array([0.2, 0.9, 0.4, 0.5])
    # Confidences 0.8, 0.9, 0.6 (predicts 0, wrong), 0.5 (tie: argmax picks class 0, right).
    expected = _oracle.calibration_error(
        p, y, n_bins=1, norm="l1", strategy="uniform", kind="top-label"
    )
    assert expected == pytest.approx(abs(0.75 - (0.8 + 0.9 + 0.6 + 0.5) / 4))
    assert expected_calibration_error(y, p, n_bins=1) == pytest.approx(expected, abs=1e-15)


def test_agrees_with_scikit_learn_scores():
    y, probs = make_data(seed=4)
    assert negative_log_likelihood(y, probs) == pytest.approx(log_loss(y, probs), abs=1e-12)
    binary_y = (y == 1).astype(int)
    p = probs[:, 1] / probs[:, :2].sum(axis=1)
    # The multiclass Brier score counts both classes: twice scikit-learn's binary loss.
    assert brier_score(binary_y, p) == pytest.approx(2 * brier_score_loss(binary_y, p), abs=1e-12)


def test_classwise_curve_agrees_with_scikit_learn_on_continuous_data():
    y, probs = make_data(n_samples=500, n_classes=2, seed=5)
    curve = calibration_curve(y, probs[:, 1], n_bins=8, kind="classwise")
    prob_true, prob_pred = sklearn_calibration_curve(y, probs[:, 1], n_bins=8)
    occupied = curve.counts[1] > 0
    np.testing.assert_allclose(curve.accuracy[1][occupied], prob_true, atol=1e-12)
    np.testing.assert_allclose(curve.mean_confidence[1][occupied], prob_pred, atol=1e-12)


def test_agrees_with_netcal_on_continuous_multiclass_data():
    netcal_metrics = pytest.importorskip("netcal.metrics")
    y, probs = make_data(n_samples=2000, n_classes=5, seed=6)
    reference = netcal_metrics.ECE(bins=15).measure(probs, y)
    assert expected_calibration_error(y, probs) == pytest.approx(reference, abs=1e-12)


def test_calibration_curve_returns_numpy_arrays():
    y, probs = make_data(seed=7)
    curve = calibration_curve(torch.from_numpy(y), torch.from_numpy(probs), n_bins=5)
    assert set(curve) == {"bin_edges", "counts", "mean_confidence", "accuracy"}
    for value in curve.values():
        assert isinstance(value, np.ndarray)
        assert value.dtype == np.float64
    assert curve.bin_edges.shape == (6,)
    assert curve.counts.sum() == len(y)
    classwise = calibration_curve(y, probs, n_bins=5, kind="classwise", strategy="quantile")
    assert classwise.bin_edges.shape == (4, 6)
    assert classwise.accuracy.shape == (4, 5)


def test_empty_bins_are_nan_in_the_curve():
    curve = calibration_curve([0, 1], np.array([[0.9, 0.1], [0.95, 0.05]]), n_bins=10)
    assert np.isnan(curve.accuracy[:9]).all()
    assert np.isnan(curve.mean_confidence[:9]).all()
    assert curve.accuracy[9] == 0.5


def test_percent_is_a_multiplication():
    y, probs = make_data(seed=8)
    assert 0 < 100 * expected_calibration_error(y, probs) < 100


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------

GOOD_Y = np.array([0, 1, 1])
GOOD_P = np.array([[0.8, 0.2], [0.3, 0.7], [0.5, 0.5]])


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("y_true", "y_prob", "error", "match"),
    [
        (GOOD_Y, np.array([[0.8, 0.2], [np.nan, 0.7], [0.5, 0.5]]), ValueError, "y_prob.*NaN"),
        (GOOD_Y, np.array([[1.2, -0.2], [0.3, 0.7], [0.5, 0.5]]), ValueError, r"y_prob.*\[0, 1\]"),
        (GOOD_Y, np.array([[0.8, 0.1], [0.3, 0.7], [0.5, 0.5]]), ValueError, "y_prob.*sum to 1"),
        (np.array([0, 1]), GOOD_P, ValueError, "y_prob has 3 and y_true has 2"),
        (np.array([], dtype=int), np.empty((0, 2)), ValueError, "y_prob is empty"),
        (GOOD_Y, GOOD_P[:, :, None], ValueError, "y_prob must be 2-D"),
        (np.array([0, 1, 2]), GOOD_P, ValueError, r"y_true contains labels \[2\]"),
        (np.array([0, -1, 1]), GOOD_P, ValueError, r"y_true contains labels \[-1\]"),
        (np.array([0, 0.5, 1]), GOOD_P, ValueError, "y_true must hold integer class labels"),
        (np.array(["a", "b", "b"]), GOOD_P, TypeError, "y_true must hold integer class labels"),
        (np.array([[0, 1, 1]]), GOOD_P, ValueError, "y_true must be 1-D"),
        (None, GOOD_P, TypeError, "y_true"),
        (GOOD_Y, "probabilities", TypeError, "y_prob"),
    ],
)
def test_bad_input_names_the_argument(metric, y_true, y_prob, error, match):
    with pytest.raises(error, match=match):
        metric(y_true, y_prob)


@pytest.mark.parametrize("metric", METRICS, ids=lambda f: f.__name__)
@pytest.mark.parametrize(
    ("sample_weight", "match"),
    [
        (np.array([1.0, -1.0, 1.0]), "sample_weight must be non-negative"),
        (np.array([1.0, 1.0]), r"sample_weight must be 1-D.*\(3,\)"),
        (np.array([0.0, 0.0, 0.0]), "sample_weight must have a positive sum"),
        (np.array([1.0, np.nan, 1.0]), "sample_weight contains NaN"),
    ],
)
def test_bad_sample_weight(metric, sample_weight, match):
    with pytest.raises(ValueError, match=match):
        metric(GOOD_Y, GOOD_P, sample_weight=sample_weight)


@pytest.mark.parametrize("metric", BINNED, ids=lambda f: f.__name__)
@pytest.mark.parametrize("n_bins", [0, -3, 2.5, True, "10", None])
def test_bad_n_bins(metric, n_bins):
    with pytest.raises((ValueError, TypeError), match=rf"'n_bins' parameter of {metric.__name__}"):
        metric(GOOD_Y, GOOD_P, n_bins=n_bins)


def test_n_bins_accepts_numpy_integers():
    assert expected_calibration_error(GOOD_Y, GOOD_P, n_bins=np.int64(3)) == (
        expected_calibration_error(GOOD_Y, GOOD_P, n_bins=3)
    )


@pytest.mark.parametrize(
    ("option", "value"),
    [("norm", "l3"), ("norm", None), ("strategy", "kmeans"), ("kind", "marginal")],
)
def test_bad_options_name_the_parameter_and_the_choices(option, value):
    with pytest.raises(
        ValueError, match=rf"'{option}' parameter of calibration_error must be one of"
    ):
        calibration_error(GOOD_Y, GOOD_P, **{option: value})


def test_bad_curve_options():
    with pytest.raises(ValueError, match="'strategy' parameter of calibration_curve"):
        calibration_curve(GOOD_Y, GOOD_P, strategy="equal")


def test_functional_errors_name_preds_and_target():
    with pytest.raises(ValueError, match="preds has 3 and target has 2"):
        F.calibration_error(GOOD_P, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"preds must hold probabilities in \[0, 1\]"):
        F.brier_score(GOOD_P * 2, GOOD_Y)


def test_column_vector_labels_warn_and_are_raveled():
    with pytest.warns(DataConversionWarning, match="column-vector y_true"):
        result = expected_calibration_error(GOOD_Y[:, None], GOOD_P)
    assert result == expected_calibration_error(GOOD_Y, GOOD_P)


def test_valid_input_raises_no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for metric in METRICS:
            metric(GOOD_Y, GOOD_P)
