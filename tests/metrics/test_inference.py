"""The debiased calibration error's interval, its paired change, and the calibration test."""

import numpy as np
import pytest
import torch

from distcal.metrics import (
    bootstrap_ci,
    calibration_test,
    debiased_calibration_error,
    debiased_calibration_error_ci,
    debiased_calibration_error_difference,
    expected_calibration_error,
)


def _model(n, tau, seed, n_classes=10):
    """Labels drawn from softmax(z), probabilities softmax(tau z): calibrated at tau = 1."""
    rng = np.random.default_rng(seed)
    z = 2.0 * rng.standard_normal((n, n_classes))
    q = np.exp(z - z.max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    y = (q.cumsum(axis=1) > rng.uniform(size=(n, 1))).argmax(axis=1)
    p = np.exp(tau * (z - z.max(axis=1, keepdims=True)))
    return y, p / p.sum(axis=1, keepdims=True)


def _binary(n, seed, slope=1.0):
    """p uniform on [0, 1], the event's true probability clip(slope (p - 1/2) + 1/2)."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    truth = np.clip(slope * (p - 0.5) + 0.5, 0, 1)
    return (rng.uniform(size=n) < truth).astype(int), p


_GRID = (np.arange(2_000_000) + 0.5) / 2_000_000  # a uniform variable, on a fine grid


def _true_error(predicted, true, n_bins=15):
    """The true binned RMS error of binary predictions ``predicted`` of events of probability
    ``true`` (both functions of the uniform variable on _GRID)."""
    confidence = np.maximum(predicted, 1 - predicted)
    correct = np.where(predicted >= 0.5, true, 1 - true)  # P(the predicted class occurs)
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    gap = np.bincount(bins, correct - confidence, minlength=n_bins) / np.maximum(count, 1)
    return float(np.sqrt((count / len(_GRID) * gap**2).sum()))


def _binary_truth(slope):
    return _true_error(_GRID, np.clip(slope * (_GRID - 0.5) + 0.5, 0, 1))


def test_the_estimate_is_the_debiased_error_and_lies_in_its_interval():
    for tau in (1.0, 1.1, 2.0):
        for seed in range(5):
            y, p = _model(600, tau, seed)
            ci = debiased_calibration_error_ci(y, p, n_resamples=100, random_state=seed)
            assert ci.estimate == debiased_calibration_error(y, p)
            assert ci.estimate == pytest.approx(np.sqrt(max(ci.squared, 0)), rel=1e-12)
            assert 0 <= ci.low <= ci.estimate <= ci.high
            assert ci.squared_std == pytest.approx(ci.resamples.std(ddof=1))


def test_resamples_are_the_debiased_squared_error_of_each_resample():
    y, p = _model(400, 1.3, 0)
    ci = debiased_calibration_error_ci(y, p, n_resamples=30, random_state=3)
    rows = np.random.RandomState(3).randint(0, 400, size=(30, 400))
    expected = [debiased_calibration_error(y[r], p[r]) for r in rows]
    np.testing.assert_allclose(np.sqrt(np.maximum(ci.resamples, 0)), expected, rtol=1e-12)


def test_calibrated_models_get_intervals_that_reach_zero_unlike_the_plug_in_percentile():
    """Issue 22: 20 well-calibrated data sets, 0 of 20 plug-in intervals reached 0."""
    debiased_reach, plug_in_reach = 0, 0
    for seed in range(20):
        y, p = _model(1000, 1.0, seed)
        debiased_reach += (
            debiased_calibration_error_ci(y, p, n_resamples=200, random_state=seed).low == 0
        )
        plug_in_reach += (
            bootstrap_ci(expected_calibration_error, y, p, n_resamples=200, random_state=seed).low
            <= 0
        )
    assert plug_in_reach == 0
    assert debiased_reach >= 18


def test_coverage_of_the_true_error_on_a_simulation():
    """A binary model with a known true binned error: the 95% interval covers it in at least
    34 of 40 data sets (the benchmark measures it at scale)."""
    for slope, n in ((1.0, 1000), (1.3, 1000), (0.6, 2000)):
        truth = _binary_truth(slope)
        covered = 0
        for seed in range(40):
            y, p = _binary(n, seed, slope)
            ci = debiased_calibration_error_ci(y, p, n_resamples=200, random_state=seed)
            covered += ci.low <= truth <= ci.high
        assert covered >= 34, (slope, truth, covered)


def test_classwise_quantile_and_tensors():
    y, p = _model(500, 1.5, 1, n_classes=4)
    for kind in ("top-label", "classwise"):
        for strategy in ("uniform", "quantile"):
            ci = debiased_calibration_error_ci(
                y, p, kind=kind, strategy=strategy, n_resamples=40, random_state=0
            )
            assert ci.estimate == debiased_calibration_error(y, p, kind=kind, strategy=strategy)
            assert ci.low <= ci.estimate <= ci.high
    ci = debiased_calibration_error_ci(
        torch.from_numpy(y), torch.from_numpy(p), n_resamples=40, random_state=0
    )
    assert ci.estimate == debiased_calibration_error(y, p)


def test_the_change_is_paired_and_reaches_the_boundary():
    y, p = _model(2000, 1.0, 2)
    _, over = _model(2000, 2.0, 2)
    diff = debiased_calibration_error_difference(y, p, over, n_resamples=200, random_state=0)
    a = debiased_calibration_error_ci(y, p, n_resamples=200, random_state=0)
    b = debiased_calibration_error_ci(y, over, n_resamples=200, random_state=0)
    assert diff.estimate == pytest.approx(a.estimate - b.estimate, abs=1e-15)
    assert diff.low <= diff.estimate <= diff.high
    assert diff.excludes_zero
    assert diff.high < 0
    assert diff.squared == pytest.approx(a.squared - b.squared, abs=1e-15)
    np.testing.assert_array_equal(diff.resamples[:, 0], a.resamples)  # the same resamples
    same = debiased_calibration_error_difference(y, p, p.copy(), n_resamples=50, random_state=0)
    assert (same.estimate, same.low, same.high, same.excludes_zero) == (0.0, 0.0, 0.0, False)


def test_the_change_covers_on_a_simulation():
    """From over-confident to calibrated, on the same samples: the interval of the change
    covers the true change in at least 34 of 40 data sets."""
    over = np.clip(1.6 * (_GRID - 0.5) + 0.5, 0, 1)
    truth = _true_error(_GRID, _GRID) - _true_error(over, _GRID)
    covered = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        q = rng.uniform(size=1500)  # calibrated probabilities of the event
        y = (rng.uniform(size=1500) < q).astype(int)
        diff = debiased_calibration_error_difference(
            y, q, np.clip(1.6 * (q - 0.5) + 0.5, 0, 1), n_resamples=200, random_state=seed
        )
        covered += diff.low <= truth <= diff.high
    assert truth < -0.1
    assert covered >= 34


def test_calibration_test_holds_its_level_and_detects_miscalibration():
    pvalues = []
    for seed in range(40):
        y, p = _model(800, 1.0, seed)
        result = calibration_test(y, p, n_resamples=100, random_state=seed)
        pvalues.append(result.pvalue)
        assert 1 / 101 <= result.pvalue <= 1
        assert result.statistic == pytest.approx(
            debiased_calibration_error_ci(y, p, n_resamples=20, random_state=0).squared
        )
    assert np.mean(np.array(pvalues) <= 0.05) <= 0.15  # 5% nominal; room for chance
    y, p = _model(800, 1.4, 0)
    assert calibration_test(y, p, n_resamples=100, random_state=0).pvalue < 0.02


def test_the_null_distribution_is_centred_on_zero_for_both_kinds():
    """Labels drawn from the probabilities make the debiased squared error unbiased for 0."""
    y, p = _model(1000, 1.8, 5, n_classes=4)  # miscalibrated data: the null ignores the labels
    for kind in ("top-label", "classwise"):
        null = calibration_test(y, p, kind=kind, n_resamples=400, random_state=1)
        spread = null.null_distribution.std(ddof=1) / np.sqrt(400)
        assert abs(null.null_distribution.mean()) < 4 * spread
        assert null.pvalue < 0.01


def test_bad_arguments_are_named():
    y, p = _model(200, 1.0, 0)
    with pytest.raises(ValueError, match="'n_resamples' parameter of calibration_test"):
        calibration_test(y, p, n_resamples=5)
    with pytest.raises(
        ValueError, match="'n_resamples' parameter of debiased_calibration_error_ci"
    ):
        debiased_calibration_error_ci(y, p, n_resamples=1)
    with pytest.raises(ValueError, match="'confidence' parameter of debiased_calibration_error_ci"):
        debiased_calibration_error_ci(y, p, confidence=95)
    with pytest.raises(ValueError, match="'n_bins' parameter of debiased_calibration_error_ci"):
        debiased_calibration_error_ci(y, p, n_bins=0)
    with pytest.raises(ValueError, match="same shape"):
        debiased_calibration_error_difference(y % 5, p[:, :5] / p[:, :5].sum(1, keepdims=True), p)
