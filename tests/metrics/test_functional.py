"""The functional layer against the float64 oracle, and the invariants every metric must keep."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from distcal.exceptions import InvalidParameterError
from distcal.metrics import functional as F
from distcal.metrics._inputs import _top_label

from . import _oracle

KINDS = ["top-label", "classwise"]
STRATEGIES = ["uniform", "quantile"]
NORMS = ["l1", "l2", "max"]
TOL = 1e-12

PROPERTY_SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def calibration_data(draw, max_samples=40, max_classes=5, weighted=None):
    """Probabilities (with exact 0s, 1s, ties and values on bin edges), labels and weights."""
    n_samples = draw(st.integers(1, max_samples))
    n_classes = draw(st.integers(2, max_classes))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    style = draw(st.sampled_from(["random", "grid", "one-hot", "mixed"]))
    if style == "grid":
        # Multiples of 1/16: many ties and many values exactly on edges of 2, 4, 8 or 16 bins.
        probs = rng.multinomial(16, np.full(n_classes, 1 / n_classes), size=n_samples) / 16
    else:
        raw = rng.gamma(rng.choice([0.2, 1.0, 5.0]), size=(n_samples, n_classes))
        raw[raw.sum(axis=1) == 0, 0] = 1.0
        probs = raw / raw.sum(axis=1, keepdims=True)
        if style != "random":
            share = 1.0 if style == "one-hot" else 0.3
            hot = rng.random(n_samples) < share
            probs[hot] = np.eye(n_classes)[rng.integers(0, n_classes, hot.sum())]
    # Labels agree with the argmax often enough to fill bins with both outcomes.
    y = np.where(
        rng.random(n_samples) < 0.6, probs.argmax(axis=1), rng.integers(0, n_classes, n_samples)
    )
    if weighted is None:
        weighted = draw(st.booleans())
    weights = None
    if weighted:
        if draw(st.booleans()):
            weights = rng.integers(0, 4, n_samples).astype(np.float64)
        else:
            weights = rng.uniform(0.0, 2.0, n_samples)
        weights[rng.integers(n_samples)] += 1.0  # at least one positive weight
    return probs, y, weights


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("kind", KINDS)
@PROPERTY_SETTINGS
@given(data=calibration_data(), n_bins=st.integers(1, 16))
def test_calibration_error_matches_oracle(data, n_bins, kind, strategy, norm):
    probs, y, weights = data
    expected = _oracle.calibration_error(
        probs, y, n_bins=n_bins, norm=norm, strategy=strategy, kind=kind, weights=weights
    )
    result = F.calibration_error(
        torch.from_numpy(probs),
        torch.from_numpy(y),
        n_bins=n_bins,
        norm=norm,
        strategy=strategy,
        kind=kind,
        sample_weight=None if weights is None else torch.from_numpy(weights),
    )
    assert result.dtype == torch.float64
    assert result.shape == ()
    assert abs(result.item() - expected) <= TOL
    assert 0.0 <= result.item() <= 1.0


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("kind", KINDS)
@PROPERTY_SETTINGS
@given(data=calibration_data(), n_bins=st.integers(1, 16))
def test_calibration_curve_matches_oracle(data, n_bins, kind, strategy):
    probs, y, weights = data
    expected = _oracle.calibration_curve(
        probs, y, n_bins=n_bins, strategy=strategy, kind=kind, weights=weights
    )
    curve = F.calibration_curve(
        probs, y, n_bins=n_bins, strategy=strategy, kind=kind, sample_weight=weights
    )
    result = (curve.bin_edges, curve.counts, curve.mean_confidence, curve.accuracy)
    for got, want in zip(result, expected, strict=True):
        if strategy == "uniform" and kind == "classwise" and got.ndim < want.ndim:
            want = want[0]  # uniform edges are shared by every class
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=TOL)


def _random_data(seed, n_samples=200, n_classes=4):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(n_classes, 0.5), size=n_samples)
    y = np.where(
        rng.random(n_samples) < 0.7, probs.argmax(axis=1), rng.integers(0, n_classes, n_samples)
    )
    return probs, y, rng.uniform(0.5, 2.0, n_samples)


@pytest.mark.parametrize("name", ["expected", "maximum", "adaptive", "classwise"])
def test_named_versions_fix_one_option(name):
    probs, y, weights = _random_data(seed=0)
    named = getattr(F, f"{name}_calibration_error")
    options = {
        "expected": {"kind": "top-label"},
        "maximum": {"norm": "max"},
        "adaptive": {"strategy": "quantile"},
        "classwise": {"kind": "classwise"},
    }[name]
    assert named(probs, y, n_bins=7, sample_weight=weights) == F.calibration_error(
        probs, y, n_bins=7, sample_weight=weights, **options
    )


@PROPERTY_SETTINGS
@given(data=calibration_data())
def test_nll_and_brier_match_oracle(data):
    probs, y, weights = data
    # Exact zeros in p_y give an infinite loss; keep the NLL comparison finite here.
    safe = (probs + 1e-3) / (1 + 1e-3 * probs.shape[1])
    nll = F.negative_log_likelihood(safe, y, sample_weight=weights)
    assert abs(nll.item() - _oracle.negative_log_likelihood(safe, y, weights)) <= TOL
    brier = F.brier_score(probs, y, sample_weight=weights)
    assert abs(brier.item() - _oracle.brier_score(probs, y, weights)) <= TOL
    assert 0.0 <= brier.item() <= 2.0


# --------------------------------------------------------------------------------------------
# Invariants
# --------------------------------------------------------------------------------------------


def _all_metrics(probs, y, weights=None):
    values = {
        (kind, strategy, norm): F.calibration_error(
            probs, y, n_bins=6, norm=norm, strategy=strategy, kind=kind, sample_weight=weights
        ).item()
        for kind in KINDS
        for strategy in STRATEGIES
        for norm in NORMS
    }
    values["brier"] = F.brier_score(probs, y, sample_weight=weights).item()
    return values


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert abs(a[key] - b[key]) <= TOL, key


@PROPERTY_SETTINGS
@given(data=calibration_data(), seed=st.integers(0, 2**32 - 1))
def test_invariant_to_sample_order(data, seed):
    probs, y, weights = data
    order = np.random.default_rng(seed).permutation(len(y))
    shuffled_weights = None if weights is None else weights[order]
    _assert_same(
        _all_metrics(probs, y, weights), _all_metrics(probs[order], y[order], shuffled_weights)
    )


@PROPERTY_SETTINGS
@given(data=calibration_data())
def test_invariant_to_duplicating_the_data(data):
    probs, y, weights = data
    doubled_weights = None if weights is None else np.concatenate([weights, weights])
    doubled = _all_metrics(np.concatenate([probs, probs]), np.concatenate([y, y]), doubled_weights)
    _assert_same(_all_metrics(probs, y, weights), doubled)


@PROPERTY_SETTINGS
@given(data=calibration_data(weighted=False), seed=st.integers(0, 2**32 - 1))
def test_integer_weights_equal_duplication(data, seed):
    probs, y, _ = data
    counts = np.random.default_rng(seed).integers(0, 4, len(y))
    counts[0] += 1
    repeated = _all_metrics(np.repeat(probs, counts, axis=0), np.repeat(y, counts))
    _assert_same(_all_metrics(probs, y, counts.astype(np.float64)), repeated)


@pytest.mark.parametrize("n_classes", [2, 5])
def test_zero_for_one_hot_correct_predictions(n_classes):
    y = np.arange(40) % n_classes
    probs = np.eye(n_classes)[y]
    for value in _all_metrics(probs, y).values():
        assert value == 0.0
    assert F.negative_log_likelihood(probs, y).item() == 0.0


def test_result_is_a_float64_scalar_on_the_input_device():
    probs = torch.tensor([[0.7, 0.3], [0.2, 0.8]], dtype=torch.float16)
    for metric in (F.calibration_error, F.negative_log_likelihood, F.brier_score):
        result = metric(probs, torch.tensor([0, 0]))
        assert result.shape == ()
        assert result.dtype == torch.float64
        assert result.device == probs.device


def test_single_class_targets_are_accepted():
    probs = np.array([[0.9, 0.1], [0.6, 0.4]])
    assert F.expected_calibration_error(probs, np.array([0, 0]), n_bins=2).item() == pytest.approx(
        0.25
    )


def test_nll_is_infinite_when_the_label_has_probability_zero():
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    y = np.array([1, 0])
    assert F.negative_log_likelihood(probs, y).item() == np.inf
    # A zero weight removes the sample instead of producing 0 * inf = NaN.
    result = F.negative_log_likelihood(probs, y, sample_weight=np.array([0.0, 1.0]))
    assert result.item() == pytest.approx(np.log(2))


def test_brier_score_range_ends():
    y = np.array([0, 1, 2])
    assert F.brier_score(np.eye(3)[y], y).item() == 0.0
    assert F.brier_score(np.eye(3)[(y + 1) % 3], y).item() == 2.0


def test_classwise_curve_rows_are_one_vs_rest_curves():
    probs, y, weights = _random_data(seed=1)
    curve = F.calibration_curve(probs, y, n_bins=5, kind="classwise", sample_weight=weights)
    for k in range(probs.shape[1]):
        # 1-D input is p(class 1) of a binary problem; its class-1 row is p_k against y == k.
        one_vs_rest = F.calibration_curve(
            probs[:, k],
            (y == k).astype(np.int64),
            n_bins=5,
            kind="classwise",
            sample_weight=weights,
        )
        for key in ("counts", "mean_confidence", "accuracy"):
            np.testing.assert_array_equal(curve[key][k].numpy(), one_vs_rest[key][1].numpy())


def test_top_label_ties_go_to_the_first_maximum():
    probs = torch.tensor([[0.4, 0.4, 0.2], [0.25, 0.375, 0.375]], dtype=torch.float64)
    # Predictions are classes 0 and 1 (the first maxima): right for y = [0, 1], wrong otherwise.
    right = F.calibration_error(probs, torch.tensor([0, 1]), n_bins=1).item()
    wrong = F.calibration_error(probs, torch.tensor([1, 2]), n_bins=1).item()
    assert right == pytest.approx(1 - (0.4 + 0.375) / 2)
    assert wrong == pytest.approx((0.4 + 0.375) / 2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@PROPERTY_SETTINGS
@given(
    n_samples=st.integers(1, 3000),
    n_classes=st.integers(1, 400),
    levels=st.sampled_from([0, 1, 2, 3, 64]),
    seed=st.integers(0, 2**32 - 1),
)
def test_top_label_keys_agree_with_max(dtype, n_samples, n_classes, levels, seed):
    # Confidences and correctness must be exactly those of max(dim=1): its values, and its
    # index (the first maximum) compared with the label. Coarse levels give many ties; rows
    # of zeros and -0.0, and maxima one ulp apart, probe the tie-break and the ordering.
    rng = np.random.default_rng(seed)
    shape = (n_samples, n_classes)
    raw = rng.random(shape) if levels == 0 else rng.integers(0, levels + 1, shape) / max(levels, 1)
    probs = torch.from_numpy(raw).to(dtype)
    rows = torch.from_numpy(rng.random(n_samples) < 0.1)
    probs[rows] = torch.nextafter(probs[rows], torch.ones_like(probs[rows]))
    probs[torch.from_numpy(rng.random(n_samples) < 0.05)] = 0.0
    probs[torch.from_numpy(rng.random(shape) < 0.02)] = -0.0
    values, index = probs.max(dim=1)
    labels = torch.where(
        torch.from_numpy(rng.random(n_samples) < 0.5),
        index,
        torch.from_numpy(rng.integers(0, n_classes, n_samples)),
    )
    ties = probs == values[:, None]
    last_tie = n_classes - 1 - ties.flip(1).to(torch.uint8).argmax(dim=1)
    labels = torch.where(torch.from_numpy(rng.random(n_samples) < 0.3), last_tie, labels)
    confidence, correct = _top_label(probs, labels)
    assert confidence.dtype == dtype
    assert torch.equal(confidence, values)
    assert torch.equal(correct, index == labels)


@pytest.mark.parametrize("n_bins", [10**9, 100_001])
def test_an_unbounded_bin_count_is_refused_before_anything_is_allocated(n_bins):
    """Per-bin sums are 3 x groups x bins float64s: 1e9 bins would try to allocate 24 GB."""
    from distcal.metrics import CalibrationAccumulator

    probs = np.full((400, 2), 0.5)
    y = np.zeros(400, dtype=int)
    for function in (F.calibration_error, F.calibration_curve, F.debiased_calibration_error):
        with pytest.raises(InvalidParameterError, match=r"'n_bins'.*\[1, 100000\].*Got"):
            function(probs, y, n_bins=n_bins)
    with pytest.raises(InvalidParameterError, match="'n_bins'"):
        CalibrationAccumulator(n_bins=n_bins).update(probs, y)
    assert F.calibration_error(probs, y, n_bins=100_000).item() == pytest.approx(0.5)
