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
    negative_log_likelihood,
    with_options,
)


def _calibrated(n=1500, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=n)
    return (rng.uniform(size=n) < p).astype(int), p


def test_interval_is_reproducible_and_brackets_the_estimate():
    y, p = _calibrated()
    ece10 = with_options(expected_calibration_error, n_bins=10)
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
        bootstrap_ci(lambda a, b: float("nan"), y, p, n_resamples=20, random_state=0)
    with pytest.raises(ValueError, match="returned NaN"):
        bootstrap_difference(sometimes_nan, y, p, 1 - p, n_resamples=200, random_state=0)


def _data(shape, n=400, k=4, seed=3):
    rng = np.random.default_rng(seed)
    if shape == "binary":
        p = rng.uniform(size=n)
        return (rng.uniform(size=n) < p).astype(int), p
    logits = rng.normal(size=(n, k))
    logits[:40, 1] = logits[:40, 0]  # ties: the first class of largest probability wins
    p = torch.softmax(torch.from_numpy(logits), dim=1).numpy().astype(shape)
    return rng.integers(0, k, size=n), p


def _spy(monkeypatch):
    """Record, for each metric the bootstrap scores, whether it took a declared resampler."""
    import distcal.metrics._bootstrap as B

    calls = []
    original = B.resampled_scorer

    def spy(metric, *args):
        score = original(metric, *args)
        calls.append(score.__module__ != "distcal.metrics._resampling")
        return score

    monkeypatch.setattr(B, "resampled_scorer", spy)
    return calls


@pytest.mark.parametrize(
    "metric",
    [
        expected_calibration_error,
        calibration_error,
        maximum_calibration_error,
        adaptive_calibration_error,
        classwise_calibration_error,
        with_options(expected_calibration_error, n_bins=15),
        with_options(calibration_error, n_bins=7, norm="l2"),
        with_options(maximum_calibration_error, strategy="quantile"),
        with_options(adaptive_calibration_error, n_bins=5),
        with_options(classwise_calibration_error, n_bins=10),
        with_options(calibration_error, kind="classwise", strategy="quantile", norm="max"),
        negative_log_likelihood,
        brier_score,
    ],
)
@pytest.mark.parametrize("shape", ["float32", "float64", "binary"])
def test_declared_metrics_resample_to_the_same_bits_as_calling_the_metric(
    metric, shape, monkeypatch
):
    """Binned calibration errors, NLL and Brier declare a resampler: each row is reduced once
    and every resample scored from the reduction. Each resample's value must be the metric's
    own on that resample, bit for bit, ties between classes included."""
    y, p = _data(shape)
    calls = _spy(monkeypatch)
    fast = bootstrap_ci(metric, y, p, n_resamples=50, random_state=0)
    assert calls == [True], "the metric did not take its declared resampler"
    slow = bootstrap_ci(lambda *args: metric(*args), y, p, n_resamples=50, random_state=0)
    assert calls == [True, False]
    np.testing.assert_array_equal(fast.resamples, slow.resamples)
    assert (fast.low, fast.high, fast.estimate) == (slow.low, slow.high, slow.estimate)
    q = np.roll(p, 1, axis=0)
    fast = bootstrap_difference(metric, y, p, q, n_resamples=50, random_state=0)
    slow = bootstrap_difference(lambda *a: metric(*a), y, p, q, n_resamples=50, random_state=0)
    np.testing.assert_array_equal(fast.resamples, slow.resamples)


@pytest.mark.parametrize("n_classes", [2, 3, 10, 100, 1000])
@pytest.mark.parametrize("threads", [1, 2])
def test_the_same_bits_for_wide_inputs_and_any_thread_count(n_classes, threads):
    """Batches of resamples and chunked row losses give each resample the metric's bits
    whatever the width and the number of torch threads (the sums the metric splits into row
    chunks are split at the same rows)."""
    rng = np.random.default_rng(n_classes)
    n = 3000
    p = torch.softmax(torch.from_numpy(rng.normal(size=(n, n_classes))), dim=1).numpy()
    y = rng.integers(0, n_classes, size=n)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for metric in (expected_calibration_error, negative_log_likelihood, brier_score):
            fast = bootstrap_ci(metric, y, p, n_resamples=20, random_state=1)
            slow = bootstrap_ci(lambda *a, m=metric: m(*a), y, p, n_resamples=20, random_state=1)
            np.testing.assert_array_equal(fast.resamples, slow.resamples)
    finally:
        torch.set_num_threads(previous)


def test_a_metric_with_weights_or_positional_options_is_called_as_it_is():
    """Fixed sample weights are declined; a partial is called as it is, whatever it binds."""
    y, p = _calibrated(n=300)
    weights = np.linspace(0.5, 1.5, 300)
    weighted = with_options(expected_calibration_error, sample_weight=weights)
    result = bootstrap_ci(weighted, y, p, n_resamples=20, random_state=0)
    assert result.estimate == expected_calibration_error(y, p, sample_weight=weights)
    rows = np.random.RandomState(0).randint(0, 300, size=(20, 300))
    expected = [expected_calibration_error(y[i], p[i], sample_weight=weights) for i in rows]
    np.testing.assert_array_equal(result.resamples, expected)
    positional = partial(calibration_error, y)  # y_true bound: called as metric(p) + ...
    with pytest.raises(TypeError):
        bootstrap_ci(positional, y, p, n_resamples=20, random_state=0)
    with pytest.raises(ValueError, match="n_bins"):
        bootstrap_ci(partial(expected_calibration_error, n_bins=0), y, p, n_resamples=20)


def test_a_metric_returning_inf_is_an_error_not_an_interval_of_nan():
    """The docs promise an error for an undefined interval; inf gave high=nan (issue 22)."""

    y, p = _calibrated(n=200)
    p = p.copy()
    p[0] = float(y[0] == 0)  # a zero probability on the true class: NLL = inf
    nll = negative_log_likelihood
    with pytest.raises(ValueError, match="negative_log_likelihood returned inf on the full data"):
        bootstrap_ci(nll, y, p, n_resamples=50, random_state=0)
    with pytest.raises(ValueError, match=r"returned inf on \d+ of 50 resamples"):
        bootstrap_ci(
            lambda a, b: 0.5 if np.array_equal(a, y) else float("inf"), y, p, n_resamples=50
        )


def test_the_difference_of_two_infinite_losses_is_named_as_such():
    """Two infinite NLLs said "returned NaN", though neither calibrator's loss is NaN."""
    y, p = _calibrated(n=200)
    p = p.copy()
    p[0] = float(y[0] == 0)
    with pytest.raises(ValueError, match="returned inf for y_prob_a on the full data"):
        bootstrap_difference(negative_log_likelihood, y, p, p.copy(), n_resamples=50)


@pytest.mark.parametrize("caller", [bootstrap_ci, bootstrap_difference])
def test_n_resamples_is_bounded_with_the_reason(caller):
    """One resample gave an "interval" that excluded its estimate; 1e8 asked for 149 GiB."""
    y, p = _calibrated(n=200)
    args = (expected_calibration_error, y, p) + ((p,) if caller is bootstrap_difference else ())
    name = caller.__name__
    for bad in (0, 1, 19, 100_001, 100_000_000, 2.5):
        with pytest.raises(
            ValueError,
            match=rf"'n_resamples' parameter of {name} must be an int in the range "
            rf"\[20, 100000\].*Got {bad!r} instead",
        ):
            caller(*args, n_resamples=bad)
    with pytest.raises(
        ValueError,
        match=r"range \[100, 100000\] \(at least 1 / \(1 - confidence\) = 100 for "
        r"confidence=0.99",
    ):
        caller(*args, n_resamples=50, confidence=0.99)
    caller(*args, n_resamples=20, random_state=0)


def test_resamples_are_drawn_in_batches_as_one_draw(monkeypatch):
    """Memory stays flat (batches of rows), and the resamples are those of the single draw of
    randint(0, n, size=(n_resamples, n)) that the bootstrap made before."""
    import distcal.metrics._resampling as R

    monkeypatch.setattr(R, "_BATCH_ELEMENTS", 7 * 300)  # batches of 7 resamples
    y, p = _calibrated(n=300)
    rows = np.random.RandomState(5).randint(0, 300, size=(45, 300))
    for metric in (expected_calibration_error, lambda a, b: float(np.mean(b))):
        result = bootstrap_ci(metric, y, p, n_resamples=45, random_state=5)
        np.testing.assert_array_equal(result.resamples, [metric(y[i], p[i]) for i in rows])


def test_progress_bar_of_the_resamples(capsys):
    y, p = _calibrated(n=300)
    bootstrap_ci(expected_calibration_error, y, p, n_resamples=40, random_state=0, verbose=True)
    assert "resample" in capsys.readouterr().err
    bootstrap_ci(expected_calibration_error, y, p, n_resamples=40, random_state=0)
    assert capsys.readouterr().err == ""


def test_a_declared_resampler_that_declines_leaves_the_metric_to_be_called():
    from distcal.metrics import declare_resampler

    calls = []

    def resampler(y_true, y_prob, **options):
        calls.append(options)
        return None  # declines

    @declare_resampler(resampler)
    def mean_probability(y_true, y_prob, *, scale=1.0):
        return scale * float(np.mean(y_prob))

    y, p = _calibrated(n=100)
    result = bootstrap_ci(with_options(mean_probability, scale=2.0), y, p, n_resamples=20)
    assert calls == [{"scale": 2.0}]
    assert result.estimate == 2 * np.mean(p)
    with pytest.raises(TypeError, match="'resampler' parameter of declare_resampler"):
        declare_resampler("fast")


def test_only_the_declaration_chooses_the_fast_path(monkeypatch):
    """A functools.partial is not recognised (nothing is read from it or from a signature):
    it is called on each resample, with the same numbers; with_options keeps the declaration,
    and a metric whose resampler is taken away is called on each resample too."""
    y, p = _calibrated(n=300)
    calls = _spy(monkeypatch)
    slow = bootstrap_ci(partial(expected_calibration_error, n_bins=10), y, p, n_resamples=20)
    fast = bootstrap_ci(with_options(expected_calibration_error, n_bins=10), y, p, n_resamples=20)
    assert calls == [False, True]
    assert not hasattr(partial(expected_calibration_error, n_bins=10), "resampler")

    def undeclared(y_true, y_prob, *, n_bins=15):
        return expected_calibration_error(y_true, y_prob, n_bins=n_bins)

    bootstrap_ci(with_options(undeclared, n_bins=10), y, p, n_resamples=20)
    assert calls == [False, True, False]
    rows = np.random.RandomState(0).randint(0, 300, size=(20, 300))
    for result in (
        bootstrap_ci(partial(expected_calibration_error, n_bins=10), y, p, n_resamples=20,
                     random_state=0),
        bootstrap_ci(with_options(expected_calibration_error, n_bins=10), y, p, n_resamples=20,
                     random_state=0),
    ):  # fmt: skip
        expected = [expected_calibration_error(y[i], p[i], n_bins=10) for i in rows]
        np.testing.assert_array_equal(result.resamples, expected)
    assert slow.estimate == fast.estimate


def test_with_options_names_the_metric_and_rejects_a_non_callable():
    ece10 = with_options(expected_calibration_error, n_bins=10)
    assert ece10.__name__ == "expected_calibration_error"
    assert repr(ece10) == "with_options(expected_calibration_error, n_bins=10)"
    y, p = _calibrated(n=100)
    assert ece10(y, p) == expected_calibration_error(y, p, n_bins=10)
    with pytest.raises(TypeError, match="'metric' parameter of with_options"):
        with_options("ece", n_bins=10)
    with pytest.raises(TypeError, match="kind"):  # an option the metric does not take
        bootstrap_ci(with_options(expected_calibration_error, kind="classwise"), y, p,
                     n_resamples=20)  # fmt: skip
