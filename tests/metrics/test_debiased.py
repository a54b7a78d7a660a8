"""The debiased RMS calibration error against a naive version, and its bias."""

import numpy as np
import pytest

from distcal.metrics import calibration_error, debiased_calibration_error


def _naive(y, p, n_bins=15):
    """Top-label binary version: bins of p, squared gap minus acc(1-acc)/(n-1)."""
    confidence = np.maximum(p, 1 - p)
    correct = ((p > 0.5).astype(int) == y).astype(float)
    edges = np.arange(n_bins + 1) / n_bins
    bins = np.clip(np.searchsorted(edges, confidence, side="right") - 1, 0, n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        members = bins == b
        n = members.sum()
        if n == 0:
            continue
        acc, conf = correct[members].mean(), confidence[members].mean()
        term = (acc - conf) ** 2
        if n > 1:
            term -= acc * (1 - acc) / (n - 1)
        total += n / len(y) * term
    return np.sqrt(max(total, 0.0))


def test_matches_a_naive_version():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=800)
    y = (rng.uniform(size=800) < np.clip(1.2 * p - 0.1, 0, 1)).astype(int)
    assert debiased_calibration_error(y, p) == pytest.approx(_naive(y, p), rel=1e-10)


def test_less_biased_than_the_plug_in_on_calibrated_data():
    rng = np.random.default_rng(1)
    plug_in, debiased = [], []
    for _ in range(30):
        p = rng.uniform(size=300)
        y = (rng.uniform(size=300) < p).astype(int)
        plug_in.append(calibration_error(y, p, norm="l2") ** 2)
        debiased.append(debiased_calibration_error(y, p) ** 2)
    assert np.mean(debiased) < 0.5 * np.mean(plug_in)


def test_classwise_and_weights_run_and_stay_non_negative():
    rng = np.random.default_rng(2)
    proba = rng.dirichlet(np.ones(4), size=500)
    y = rng.integers(0, 4, size=500)
    value = debiased_calibration_error(
        y, proba, kind="classwise", sample_weight=rng.integers(1, 3, size=500)
    )
    assert value >= 0


@pytest.mark.parametrize("kind", ["top-label", "classwise"])
def test_agrees_with_the_authors_package(kind):
    """Kumar et al.'s uncertainty-calibration package: same estimator on equal-width bins.

    They drop bins of one sample (we keep their plug-in term) and, classwise, clamp each
    class's debiased square at 0 before averaging (we clamp the average), so the data here
    fill every bin and keep every class's estimate positive, where both agree exactly.
    """
    calibration = pytest.importorskip("calibration")
    rng = np.random.default_rng(4)
    z = rng.normal(size=(20_000, 5))
    y = (z + rng.gumbel(size=z.shape)).argmax(axis=1)
    p = np.exp(2 * z) / np.exp(2 * z).sum(axis=1, keepdims=True)  # over-confident
    theirs = calibration.lower_bound_scaling_ce(
        p,
        y,
        p=2,
        debias=True,
        num_bins=15,
        binning_scheme=calibration.get_equal_prob_bins,
        mode="top-label" if kind == "top-label" else "marginal",
    )
    ours = debiased_calibration_error(y, p, n_bins=15, kind=kind)
    assert ours == pytest.approx(theirs, rel=1e-9)


def test_classwise_l2_plug_in_agrees_with_the_authors_package():
    """One classwise L2 aggregation across the metrics: the root of the mean square over
    classes, the reference package's marginal definition, for the plug-in estimate too."""
    calibration = pytest.importorskip("calibration")
    rng = np.random.default_rng(5)
    z = rng.normal(size=(20_000, 5))
    y = (z + rng.gumbel(size=z.shape)).argmax(axis=1)
    p = np.exp(2 * z) / np.exp(2 * z).sum(axis=1, keepdims=True)
    theirs = calibration.lower_bound_scaling_ce(
        p,
        y,
        p=2,
        debias=False,
        num_bins=15,
        binning_scheme=calibration.get_equal_prob_bins,
        mode="marginal",
    )
    ours = calibration_error(y, p, n_bins=15, norm="l2", kind="classwise")
    assert ours == pytest.approx(theirs, rel=1e-9)


def test_classwise_l2_is_the_root_mean_square_of_the_per_class_errors():
    rng = np.random.default_rng(6)
    proba = rng.dirichlet(np.ones(4), size=3000)
    y = rng.integers(0, 4, size=3000)
    # Each class on its own, as a binary classwise problem: its two columns mirror each other
    # and have the same error, so the binary result is that class's error.
    per_class = [
        calibration_error(
            (y == k).astype(int),
            np.stack([1 - proba[:, k], proba[:, k]], 1),
            n_bins=10,
            norm="l2",
            kind="classwise",
        )
        for k in range(4)
    ]
    combined = calibration_error(y, proba, n_bins=10, norm="l2", kind="classwise")
    assert combined == pytest.approx(np.sqrt(np.mean(np.square(per_class))), rel=1e-12)


def test_the_debiased_classwise_error_never_exceeds_the_plug_in_it_corrects():
    """The case that exposed two aggregations: constant predictions, skewed labels."""
    rng = np.random.default_rng(7)
    p = np.full((20_000, 10), 0.1)
    y = rng.choice(10, size=20_000, p=np.r_[0.5, np.full(9, 0.5 / 9)])
    plug_in = calibration_error(y, p, norm="l2", kind="classwise")
    debiased = debiased_calibration_error(y, p, kind="classwise")
    assert debiased <= plug_in
