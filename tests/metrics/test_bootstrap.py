"""Bootstrap intervals: reproducible, covering, paired."""

from functools import partial

import numpy as np
import pytest
import torch

from distcal.metrics import (
    bootstrap_ci,
    bootstrap_difference,
    brier_score,
    expected_calibration_error,
)


def _calibrated(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    return (rng.uniform(size=n) < p).astype(int), p


def test_interval_is_reproducible_and_brackets_the_estimate():
    y, p = _calibrated()
    ece10 = partial(expected_calibration_error, n_bins=10)
    first = bootstrap_ci(ece10, y, p, n_resamples=300, random_state=1)
    again = bootstrap_ci(ece10, y, p, n_resamples=300, random_state=1)
    assert first.low == again.low
    assert first.high == again.high
    assert first.low <= first.estimate <= first.high
    assert first.estimate == expected_calibration_error(y, p, n_bins=10)
    assert len(first.resamples) == 300
    assert first.std > 0


def test_the_brier_interval_covers_the_truth_of_a_simulation():
    """Brier score of calibrated p is E[p(1-p)] = 1/6 for uniform p: the 95% interval covers it."""
    covered = 0
    for seed in range(20):
        y, p = _calibrated(n=800, seed=seed)
        ci = bootstrap_ci(brier_score, y, p, n_resamples=200, random_state=seed)
        # brier_score of a binary problem sums the squared errors of both columns
        covered += ci.low <= 2 * (1 / 6) <= ci.high
    assert covered >= 16  # 95% nominal; 16 of 20 leaves room for chance


def test_paired_difference_detects_a_worse_calibrator_and_not_an_equal_one():
    y, p = _calibrated()
    worse = np.clip(1.4 * p - 0.2, 0, 1)
    diff = bootstrap_difference(
        expected_calibration_error, y, worse, p, n_resamples=300, random_state=0
    )
    assert diff.excludes_zero
    assert diff.low > 0
    same = bootstrap_difference(
        expected_calibration_error, y, p, p.copy(), n_resamples=50, random_state=0
    )
    assert same.estimate == 0
    assert not same.excludes_zero


def test_tensors_and_errors():
    y, p = _calibrated(n=200)
    ci = bootstrap_ci(
        expected_calibration_error, torch.tensor(y), torch.tensor(p), n_resamples=20, random_state=0
    )
    assert np.isfinite(ci.estimate)
    with pytest.raises(TypeError, match="metric must be a callable"):
        bootstrap_ci("ece", y, p)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        bootstrap_ci(expected_calibration_error, y, p[:10])
    with pytest.raises(ValueError, match="same shape"):
        bootstrap_difference(expected_calibration_error, y, p, np.stack([1 - p, p], axis=1))
    with pytest.raises(Exception, match="'confidence' parameter of bootstrap_ci"):
        bootstrap_ci(expected_calibration_error, y, p, confidence=1.5)
    with pytest.raises(ValueError, match="at least 2 samples"):
        bootstrap_ci(expected_calibration_error, y[:1], p[:1])


def test_a_metric_returning_nan_is_an_error_not_a_nan_interval():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=50)
    y = (rng.uniform(size=50) < p).astype(int)

    def sometimes_nan(y_true, y_prob):
        return float("nan") if y_true.sum() % 2 else float(np.mean(y_prob))

    with pytest.raises(ValueError, match=r"sometimes_nan returned NaN on \d+ of 200 resamples"):
        bootstrap_ci(sometimes_nan, y, p, n_resamples=200, random_state=0)
    with pytest.raises(ValueError, match="NaN on the full data"):
        bootstrap_ci(lambda a, b: float("nan"), y, p, n_resamples=10, random_state=0)
    with pytest.raises(ValueError, match="returned NaN"):
        bootstrap_difference(sometimes_nan, y, p, 1 - p, n_resamples=200, random_state=0)
