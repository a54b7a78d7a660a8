"""Bin edges: 0.0, 1.0, values on inner edges, saturated softmax, dtypes, large inputs, and the
search-free binning of uniform edges against the search."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from distcal._binning import _uniform_n_bins, bin_edges, bin_indices, bin_statistics
from distcal.metrics import functional as F
from distcal.metrics._binned import _calibration_compute, _calibration_update

from . import _oracle

TOL = 1e-12


def test_uniform_edges_are_the_exact_fractions():
    edges = bin_edges(torch.rand(5), 10)
    assert edges.dtype == torch.float64
    assert edges.tolist() == [k / 10 for k in range(11)]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_zero_one_and_inner_edges_land_in_the_documented_bins(dtype):
    # k / 8 is exact in every dtype; each inner edge belongs to the bin above it.
    values = torch.tensor([k / 8 for k in range(9)], dtype=dtype)
    index = bin_indices(values, bin_edges(values, 8))
    assert index.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 7]


def test_decimal_confidences_on_edges_of_ten_bins():
    values = torch.tensor([k / 10 for k in range(11)], dtype=torch.float64)
    assert bin_indices(values, bin_edges(values, 10)).tolist() == [*range(10), 9]


def test_no_hidden_bin_for_exact_zero_and_one():
    confidences = torch.tensor([0.0, 0.0, 1.0, 1.0, 1.0])
    statistics = bin_statistics(confidences, torch.ones(5), bin_edges(confidences, 15))
    assert statistics.shape == (3, 1, 15)
    counts = statistics[0, 0]
    assert counts[0] == 2
    assert counts[-1] == 3
    assert counts.sum() == 5


def test_classwise_one_hot_puts_zeros_first_and_ones_last():
    y = np.array([0, 1, 2, 2])
    curve = F.calibration_curve(np.eye(3)[y], y, n_bins=15, kind="classwise")
    counts = curve.counts.numpy()
    np.testing.assert_array_equal(counts[:, 0], [3, 3, 2])
    np.testing.assert_array_equal(counts[:, -1], [1, 1, 2])
    assert counts[:, 1:-1].sum() == 0


def test_saturated_softmax():
    logits = torch.tensor([[50.0, 0.0, -50.0], [0.0, 80.0, 1.0], [40.0, 0.0, 1.0]]) * 10
    probs = torch.softmax(logits, dim=1)
    assert (probs.max(dim=1).values == 1.0).all()  # exactly 1.0 in float32
    y = np.array([0, 2, 0])
    for kind in ("top-label", "classwise"):
        for strategy in ("uniform", "quantile"):
            result = F.calibration_error(probs, y, n_bins=15, kind=kind, strategy=strategy)
            expected = _oracle.calibration_error(
                probs, y, n_bins=15, norm="l1", strategy=strategy, kind=kind
            )
            assert abs(result.item() - expected) <= TOL
    curve = F.calibration_curve(probs, y, n_bins=15)
    assert curve.counts[-1] == 3
    assert curve.accuracy[-1].item() == pytest.approx(2 / 3)


@pytest.mark.parametrize("kind", ["top-label", "classwise"])
@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_low_precision_dtypes_agree_with_the_oracle(kind, strategy):
    rng = np.random.default_rng(0)
    # Multiples of 1/64 are exact in float16, bfloat16, float32 and float64 and fall on edges.
    probs = rng.multinomial(64, [0.5, 0.3, 0.2], size=300) / 64
    y = rng.integers(0, 3, 300)
    expected = _oracle.calibration_error(
        probs, y, n_bins=16, norm="l1", strategy=strategy, kind=kind
    )
    results = []
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        tensor = torch.from_numpy(probs).to(dtype)
        assert torch.equal(tensor.to(torch.float64), torch.from_numpy(probs))
        results.append(
            F.calibration_error(tensor, y, n_bins=16, strategy=strategy, kind=kind).item()
        )
    for result in results:
        assert abs(result - expected) <= TOL
    assert len(set(results)) == 1


def test_million_float32_samples_against_the_float64_oracle():
    rng = np.random.default_rng(0)
    n_samples, n_classes = 1_000_000, 10
    logits = rng.standard_normal((n_samples, n_classes), dtype=np.float32) * 3
    probs = torch.softmax(torch.from_numpy(logits), dim=1)  # float32
    y = rng.integers(0, n_classes, n_samples)
    expected = _oracle.calibration_error(
        probs.numpy(), y, n_bins=15, norm="l1", strategy="uniform", kind="top-label"
    )
    result = F.expected_calibration_error(probs, torch.from_numpy(y))
    assert abs(result.item() - expected) <= TOL


def test_quantile_edges_hold_equal_mass_and_keep_ties_together():
    confidences = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], dtype=torch.float64)
    edges = bin_edges(confidences, 4, "quantile")
    assert edges.tolist() == [0.0, 0.3, 0.5, 0.7, 1.0]
    statistics = bin_statistics(confidences, torch.zeros(8), edges)
    assert statistics[0, 0].tolist() == [2, 2, 2, 2]
    # One value holding most of the mass: coinciding edges, empty bins, no split ties.
    tied = torch.tensor([0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 1.0], dtype=torch.float64)
    edges = bin_edges(tied, 4, "quantile")
    assert edges.tolist() == [0.0, 0.9, 0.9, 0.9, 1.0]
    statistics = bin_statistics(tied, torch.zeros(8), edges)
    assert statistics[0, 0].tolist() == [1, 0, 0, 7]


def test_quantile_edges_ignore_zero_weights():
    confidences = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], dtype=torch.float64)
    weights = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    kept = torch.tensor([0.1, 0.2, 0.5, 0.6], dtype=torch.float64)
    assert torch.equal(
        bin_edges(confidences, 2, "quantile", weights), bin_edges(kept, 2, "quantile")
    )


def test_classwise_quantile_edges_are_per_class():
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]], dtype=torch.float64)
    edges = bin_edges(probs, 2, "quantile")
    assert edges.shape == (2, 3)
    assert edges[:, 1].tolist() == [0.8, 0.4]


def test_statistics_of_batches_add_up():
    rng = np.random.default_rng(1)
    probs = torch.from_numpy(rng.dirichlet(np.ones(4), size=500))
    y = torch.from_numpy(rng.integers(0, 4, 500))
    weights = torch.from_numpy(rng.uniform(0, 2, 500))
    for kind in ("top-label", "classwise"):
        update = dict(n_bins=10, strategy="uniform", kind=kind)
        whole, edges = _calibration_update(probs, y, weights, **update)
        first, _ = _calibration_update(probs[:200], y[:200], weights[:200], **update)
        second, _ = _calibration_update(probs[200:], y[200:], weights[200:], **update, edges=edges)
        torch.testing.assert_close(first + second, whole, rtol=0, atol=1e-12)
        expected = F.calibration_error(probs, y, n_bins=10, kind=kind, sample_weight=weights)
        combined = _calibration_compute(first + second, "l1")
        assert abs(combined.item() - expected.item()) <= TOL


def test_statistics_are_float64_for_any_input_dtype():
    confidences = torch.tensor([0.5, 0.75], dtype=torch.bfloat16)
    statistics = bin_statistics(confidences, torch.tensor([True, False]), bin_edges(confidences, 4))
    assert statistics.dtype == torch.float64
    assert statistics[:, 0].tolist() == [[0, 0, 1, 1], [0, 0, 0.5, 0.75], [0, 0, 1, 0]]


def test_explicit_groups_equal_the_column_layout():
    rng = np.random.default_rng(2)
    probs = torch.from_numpy(rng.dirichlet(np.ones(3), size=50))
    hits = torch.from_numpy(rng.random((50, 3)) < probs.numpy())
    weights = torch.from_numpy(rng.uniform(0, 2, 50))
    edges = bin_edges(probs, 6)
    by_columns = bin_statistics(probs, hits, edges, weights)
    groups = torch.arange(3).repeat(50)
    by_groups = bin_statistics(
        probs.reshape(-1), hits.reshape(-1), edges, weights.repeat_interleave(3), groups, 3
    )
    torch.testing.assert_close(by_groups, by_columns, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Uniform edges are found arithmetically, not searched: that must be the search, bit for bit.
# --------------------------------------------------------------------------------------------

DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
INF = float("inf")


def _searched(values, edges):
    return torch.bucketize(values.to(torch.float64), edges[1:-1].contiguous(), right=True)


def _near_edges(edges, dtype, rng):
    """Every edge as ``dtype`` and its neighbours in ``dtype``, plus special and random values."""
    special = torch.tensor(
        [0.0, -0.0, 1.0, 5e-324, 1e-45, 0.5, 1 - 2**-53, -1e-300, -1.0, 2.0, 1 + 2**-52, INF, -INF],
        dtype=torch.float64,
    )
    base = torch.cat([edges, special, torch.from_numpy(rng.random(200))]).to(dtype)
    up = torch.nextafter(base, torch.full_like(base, INF))
    down = torch.nextafter(base, torch.full_like(base, -INF))
    return torch.cat([base, up, down, torch.nextafter(up, torch.full_like(up, INF))])


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=25, deadline=None)
@given(
    n_bins=st.one_of(st.integers(1, 40), st.sampled_from([100, 255, 1000, 4097, 20_000])),
    seed=st.integers(0, 2**32 - 1),
)
def test_uniform_indices_equal_bucketize_on_and_beside_every_edge(n_bins, seed, dtype):
    edges = bin_edges(torch.zeros(1), n_bins)
    assert _uniform_n_bins(edges) == n_bins  # the arithmetic path is the one under test
    values = _near_edges(edges, dtype, np.random.default_rng(seed))
    expected = _searched(values, edges)
    assert torch.equal(bin_indices(values, edges), expected)
    # Column layout (classwise) and the chunked statistics take the same path.
    assert torch.equal(bin_indices(values.reshape(-1, 1), edges), expected.reshape(-1, 1))
    hits = torch.from_numpy(np.random.default_rng(seed).random(values.shape[0]) < 0.5)
    inside = values.isfinite() & (values >= 0) & (values <= 1)
    values, hits, expected = values[inside], hits[inside], expected[inside]
    counts = torch.bincount(expected, minlength=n_bins).to(torch.float64)
    sums = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, expected, values.double())
    outcome = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, expected, hits.double())
    statistics = bin_statistics(values, hits, edges)[:, 0]
    assert torch.equal(statistics[0], counts)
    torch.testing.assert_close(statistics[1], sums, rtol=0, atol=1e-9)
    assert torch.equal(statistics[2], outcome)


def test_uniform_indices_of_float32_values_beside_decimal_edges():
    # float32(0.1) is above the float64 edge 0.1 and float32(0.3) below 0.3: each must land
    # where the float64 comparison puts it, whatever floor(c * n_bins) guesses.
    edges = bin_edges(torch.zeros(1), 10)
    values = torch.tensor([k / 10 for k in range(11)], dtype=torch.float32)
    expected = _searched(values, edges)
    assert torch.equal(bin_indices(values, edges), expected)
    assert bin_indices(values, edges).tolist() == [
        int(sum(float(v) >= k / 10 for k in range(1, 10))) for v in values
    ]


def test_only_exact_uniform_edges_skip_the_search():
    assert _uniform_n_bins(bin_edges(torch.zeros(1), 15)) == 15
    assert _uniform_n_bins(torch.linspace(0, 1, 16, dtype=torch.float64)) is None  # 1 ulp off
    assert _uniform_n_bins(bin_edges(torch.zeros(1), 15).float()) is None
    quantile = bin_edges(torch.tensor([0.1, 0.2, 0.6, 0.9]), 2, "quantile")
    assert _uniform_n_bins(quantile) is None
    values = torch.tensor([0.05, 0.55, 0.6, 0.95])
    assert bin_indices(values, quantile).tolist() == [0, 0, 1, 1]


def test_statistics_over_many_chunks_equal_one_search():
    # More samples than one chunk holds, many exactly on edges.
    rng = np.random.default_rng(3)
    values = torch.from_numpy(rng.integers(0, 61, 700_000) / 60)
    hits = torch.from_numpy(rng.random(700_000) < values.numpy())
    edges = bin_edges(values, 12)
    index = _searched(values, edges)
    statistics = bin_statistics(values, hits, edges)[:, 0]
    assert torch.equal(statistics[0], torch.bincount(index, minlength=12).double())
    assert torch.equal(statistics[2], torch.bincount(index, hits.double(), minlength=12))
    torch.testing.assert_close(
        statistics[1], torch.bincount(index, values, minlength=12), rtol=1e-15, atol=0
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_uniform_edges_on_cuda_are_the_exact_fractions():
    # CUDA divides by a Python number through its reciprocal; the edges must not.
    for n_bins in (10, 15, 49, 100):
        edges = bin_edges(torch.zeros(1, device="cuda"), n_bins)
        assert edges.device.type == "cuda"
        assert edges.cpu().tolist() == [k / n_bins for k in range(n_bins + 1)]


@pytest.mark.slow
@pytest.mark.parametrize("n_bins", [10, 15])
def test_every_float32_in_the_unit_interval_lands_in_its_searched_bin(n_bins):
    # All 1_065_353_217 float32 values in [0, 1], by their bit patterns.
    edges = bin_edges(torch.zeros(1), n_bins)
    one = int(torch.tensor(1.0).view(torch.int32))
    for start in range(0, one + 1, 1 << 24):
        bits = torch.arange(start, min(start + (1 << 24), one + 1), dtype=torch.int32)
        values = bits.view(torch.float32)
        assert torch.equal(bin_indices(values, edges), _searched(values, edges))
