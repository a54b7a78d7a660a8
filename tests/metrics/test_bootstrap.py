"""Bootstrap intervals: reproducible, covering, paired."""

from functools import partial

import numpy as np
import pytest
import torch

from distcal.metrics import (
    adaptive_calibration_error,
    bootstrap_ci,
    bootstrap_difference,
    brier_score,
    calibration_error,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
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


@pytest.mark.parametrize(
    "metric",
    [
        expected_calibration_error,
        partial(expected_calibration_error, n_bins=15),
        partial(calibration_error, n_bins=7, norm="l2"),
        partial(maximum_calibration_error, strategy="quantile"),
        partial(adaptive_calibration_error, n_bins=5),
        partial(classwise_calibration_error, n_bins=10),
        partial(calibration_error, kind="classwise", strategy="quantile", norm="max"),
    ],
)
@pytest.mark.parametrize("shape", ["float32", "float64", "binary"])
def test_binned_metrics_resample_to_the_same_bits_as_calling_the_metric(metric, shape, monkeypatch):
    """The binned calibration errors reduce each row once and index the reduction per resample
    (metrics/_classification._resampler): each resample's value must be the metric's own on
    that resample, bit for bit, ties between classes included."""
    import distcal.metrics._bootstrap as B

    rng = np.random.default_rng(3)
    n, k = 400, 4
    if shape == "binary":
        p = rng.uniform(size=n)
        y = (rng.uniform(size=n) < p).astype(int)
    else:
        logits = rng.normal(size=(n, k))
        logits[:40, 1] = logits[:40, 0]  # ties: the first class of largest probability wins
        p = torch.softmax(torch.from_numpy(logits), dim=1).numpy().astype(shape)
        y = rng.integers(0, k, size=n)
    calls = []  # whether each metric the bootstrap was given took the resampling path
    original = B._resampler

    def spy(*args):
        score = original(*args)
        calls.append(score is not None)
        return score

    monkeypatch.setattr(B, "_resampler", spy)
    fast = bootstrap_ci(metric, y, p, n_resamples=50, random_state=0)
    assert calls == [True], "the binned metric did not take the resampling path"
    slow = bootstrap_ci(lambda *args: metric(*args), y, p, n_resamples=50, random_state=0)
    assert calls == [True, False]
    np.testing.assert_array_equal(fast.resamples, slow.resamples)
    assert (fast.low, fast.high, fast.estimate) == (slow.low, slow.high, slow.estimate)
    q = np.roll(p, 1, axis=0)
    fast = bootstrap_difference(metric, y, p, q, n_resamples=50, random_state=0)
    slow = bootstrap_difference(lambda *a: metric(*a), y, p, q, n_resamples=50, random_state=0)
    np.testing.assert_array_equal(fast.resamples, slow.resamples)


def test_a_metric_with_weights_or_positional_options_is_called_as_it_is():
    """Only keyword options without sample weights are understood; the rest is the metric's."""
    y, p = _calibrated(n=300)
    weights = np.linspace(0.5, 1.5, 300)
    weighted = partial(expected_calibration_error, sample_weight=weights)
    result = bootstrap_ci(weighted, y, p, n_resamples=20, random_state=0)
    assert result.estimate == expected_calibration_error(y, p, sample_weight=weights)
    rows = np.random.RandomState(0).randint(0, 300, size=(20, 300))
    expected = [expected_calibration_error(y[i], p[i], sample_weight=weights) for i in rows]
    np.testing.assert_array_equal(result.resamples, expected)
    positional = partial(calibration_error, y)  # y_true bound: called as metric(p) + ...
    with pytest.raises(TypeError):
        bootstrap_ci(positional, y, p, n_resamples=3, random_state=0)
    with pytest.raises(ValueError, match="n_bins"):
        bootstrap_ci(partial(expected_calibration_error, n_bins=0), y, p, n_resamples=3)
