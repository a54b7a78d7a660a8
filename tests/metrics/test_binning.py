"""Bin edges: 0.0, 1.0, values on inner edges, saturated softmax, dtypes, large inputs."""

import numpy as np
import pytest
import torch

from distcal.metrics import functional as F
from distcal.metrics._binning import bin_edges, bin_indices, bin_statistics

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
        whole, edges = F._calibration_update(probs, y, weights, **update)
        first, _ = F._calibration_update(probs[:200], y[:200], weights[:200], **update)
        second, _ = F._calibration_update(
            probs[200:], y[200:], weights[200:], **update, edges=edges
        )
        torch.testing.assert_close(first + second, whole, rtol=0, atol=1e-12)
        expected = F.calibration_error(probs, y, n_bins=10, kind=kind, sample_weight=weights)
        combined = F._calibration_compute(first + second, "l1")
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
