"""Histogram binning and isotonic regression (one-vs-rest) against independent versions."""

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.isotonic import IsotonicRegression

from distcal.calibration import HistogramBinning, IsotonicCalibration


def _data(n=1500, k=4, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k))
    y = (z + rng.gumbel(size=(n, k))).argmax(axis=1)
    return 3 * z, y


def _normalise(values):
    totals = values.sum(axis=1, keepdims=True)
    return np.where(totals > 0, values / np.where(totals > 0, totals, 1), 1 / values.shape[1])


def test_isotonic_matches_scikit_learn_per_class():
    z, y = _data()
    weights = np.random.default_rng(1).uniform(0.2, 2, size=len(y))
    ours = IsotonicCalibration().fit(z, y, sample_weight=weights)
    p = softmax(z, axis=1)
    z_test, _ = _data(n=500, seed=9)
    p_test = softmax(z_test, axis=1)
    columns = []
    for k in range(4):
        iso = IsotonicRegression(out_of_bounds="clip").fit(
            p[:, k], (y == k).astype(float), sample_weight=weights
        )
        columns.append(iso.predict(p_test[:, k]))
    expected = _normalise(np.stack(columns, axis=1))
    np.testing.assert_allclose(ours.predict_proba(z_test), expected, atol=1e-10)


def test_histogram_binning_matches_a_naive_version():
    z, y = _data(seed=2)
    ours = HistogramBinning(n_bins=8).fit(z, y)
    p = softmax(z, axis=1)
    z_test, _ = _data(n=500, seed=8)
    p_test = softmax(z_test, axis=1)
    edges = np.arange(9) / 8
    columns = []
    for k in range(4):
        bins = np.clip(np.searchsorted(edges, p[:, k], side="right") - 1, 0, 7)
        values = np.array(
            [
                (y[bins == b] == k).mean() if (bins == b).any() else (edges[b] + edges[b + 1]) / 2
                for b in range(8)
            ]
        )
        test_bins = np.clip(np.searchsorted(edges, p_test[:, k], side="right") - 1, 0, 7)
        columns.append(values[test_bins])
    expected = _normalise(np.stack(columns, axis=1))
    np.testing.assert_allclose(ours.predict_proba(z_test), expected, atol=1e-12)


def test_quantile_bins_hold_equal_mass():
    z, y = _data(seed=3)
    hb = HistogramBinning(n_bins=5, strategy="quantile").fit(z, y)
    p = softmax(z, axis=1)
    for k in range(4):
        counts, _ = np.histogram(p[:, k], bins=hb.bin_edges_[k].numpy())
        assert counts.min() >= 0.8 * len(y) / 5


@pytest.mark.parametrize("calibrator", [HistogramBinning(n_bins=5), IsotonicCalibration()])
def test_rows_are_distributions_and_zeros_are_said(calibrator):
    z, y = _data(n=300, seed=4)
    proba = calibrator.fit(z, y).predict_proba(z)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.all(proba >= 0)
    decision = calibrator.decision_function(z)
    assert np.all(np.isfinite(decision) | (proba == 0))  # log(0) = -inf exactly where p = 0


@pytest.mark.parametrize("name", ["HistogramBinning", "IsotonicRegression"])
def test_agrees_with_netcal(name):
    """netcal's one-vs-rest maps, given float64 probabilities, are the same maps."""
    import contextlib
    import io
    import warnings

    binning = pytest.importorskip("netcal.binning")
    z, y = _data(n=2000, seed=5)
    z_test, _ = _data(n=500, seed=6)
    p, p_test = softmax(z, axis=1), softmax(z_test, axis=1)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = (
            binning.HistogramBinning(bins=15)
            if name == "HistogramBinning"
            else binning.IsotonicRegression()
        )
        theirs.fit(p, y)
        expected = np.asarray(theirs.transform(p_test))
    ours = HistogramBinning(n_bins=15) if name == "HistogramBinning" else IsotonicCalibration()
    np.testing.assert_allclose(ours.fit(z, y).predict_proba(z_test), expected, atol=1e-9)


@pytest.mark.parametrize("calibrator", [HistogramBinning(n_bins=20), IsotonicCalibration()])
def test_rows_mapped_to_all_zeros_are_counted_and_made_uniform(calibrator):
    # Every class sees 0.25 only on weighted samples of other classes, so its map sends 0.25
    # to 0; the zero-weight last row (all 0.25) maps to all zeros and becomes uniform. The
    # weighted rows each keep their own class's positive value.
    p = np.array(
        [
            [0.25, 0.25, 0.5, 0.0],
            [0.5, 0.0, 0.25, 0.25],
            [0.25, 0.25, 0.25, 0.25],
        ]
    )
    y = np.array([2, 0, 1])
    weights = np.array([1.0, 1.0, 0.0])
    calibrator.set_params(input_type="probabilities").fit(p, y, sample_weight=weights)
    assert calibrator.n_uniform_rows_ == 1
    proba = calibrator.predict_proba(p)
    np.testing.assert_array_equal(proba[2], np.full(4, 0.25))
    assert proba[0, 2] == proba[0].max() > 0.25
    assert proba[1, 0] == proba[1].max() > 0.25
    # the same rows, fitted with weight: no row maps to all zeros any more
    assert calibrator.fit(p[:2], y[:2]).n_uniform_rows_ == 0


def test_unweighted_and_unit_weights_fit_the_same_isotonic_maps():
    z, y = _data(seed=7)
    z = np.round(z, 1)  # ties: equal probabilities are pooled by both paths
    plain = IsotonicCalibration().fit(z, y)
    weighted = IsotonicCalibration().fit(z, y, sample_weight=np.ones(len(y)))
    for a, b in zip(plain.knots_, weighted.knots_, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(plain.knot_values_, weighted.knot_values_, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_quantile_bins_map_as_a_naive_version_with_weights():
    z, y = _data(seed=10)
    weights = np.random.default_rng(11).uniform(0.1, 3.0, size=len(y))
    hb = HistogramBinning(n_bins=6, strategy="quantile").fit(z, y, sample_weight=weights)
    p = softmax(z, axis=1)
    z_test, _ = _data(n=400, seed=12)
    p_test = softmax(z_test, axis=1)
    columns = []
    for k in range(4):
        edges = hb.bin_edges_[k].numpy()
        inner = edges[1:-1]
        bins = np.searchsorted(inner, p[:, k], side="right")
        values = []
        for b in range(6):
            inside = bins == b
            if weights[inside].sum() > 0:
                values.append(weights[inside] @ (y[inside] == k) / weights[inside].sum())
            else:
                values.append((edges[b] + edges[b + 1]) / 2)
        columns.append(np.asarray(values)[np.searchsorted(inner, p_test[:, k], side="right")])
    expected = _normalise(np.stack(columns, axis=1))
    np.testing.assert_allclose(hb.predict_proba(z_test), expected, atol=1e-12)
