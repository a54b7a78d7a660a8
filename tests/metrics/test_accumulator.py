"""CalibrationAccumulator: streamed metrics equal the in-memory metrics."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from distcal.metrics import (
    CalibrationAccumulator,
    brier_score,
    calibration_error,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
)


def _data(n=3000, k=6, seed=0):
    rng = np.random.default_rng(seed)
    logits = 2.5 * rng.normal(size=(n, k))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    y = (logits / 2 + rng.gumbel(size=(n, k))).argmax(axis=1)
    return logits, probs, y


def _expected(y, probs, n_bins, weights=None):
    kw = {"n_bins": n_bins, "sample_weight": weights}
    return {
        "ece": expected_calibration_error(y, probs, **kw),
        "mce": maximum_calibration_error(y, probs, **kw),
        "rmsce": calibration_error(y, probs, norm="l2", **kw),
        "classwise_ece": classwise_calibration_error(y, probs, **kw),
        "nll": negative_log_likelihood(y, probs, sample_weight=weights),
        "brier": brier_score(y, probs, sample_weight=weights),
    }


@pytest.mark.parametrize("size", [1, 64, 3000])
def test_batches_give_the_in_memory_metrics(size):
    _, probs, y = _data()
    accumulator = CalibrationAccumulator(n_bins=10)
    for start in range(0, len(y), size):
        accumulator.update(probs[start : start + size], y[start : start + size])
    result = accumulator.compute()
    for name, value in _expected(y, probs, 10).items():
        assert result[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert result.accuracy == pytest.approx(np.mean(probs.argmax(axis=1) == y))
    assert result.confidence == pytest.approx(probs.max(axis=1).mean())
    assert result.n_samples == len(y)


def test_logits_weights_and_a_dataloader():
    logits, probs, y = _data(seed=1)
    weights = np.random.default_rng(5).uniform(0.1, 3, size=len(y))
    loader = DataLoader(
        TensorDataset(torch.tensor(logits), torch.tensor(y), torch.tensor(weights)),
        batch_size=128,
    )
    result = CalibrationAccumulator(input_type="logits").update_batches(loader).compute()
    for name, value in _expected(y, probs, 15, weights).items():
        assert result[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name


def test_generators_stream_in_one_pass():
    def batches():
        for seed in range(4):
            _, probs, y = _data(n=500, seed=seed)
            yield probs, y

    result = CalibrationAccumulator().update_batches(batches()).compute()
    parts = [_data(n=500, seed=seed) for seed in range(4)]
    probs = np.concatenate([p for _, p, _ in parts])
    y = np.concatenate([t for _, _, t in parts])
    assert result.ece == pytest.approx(expected_calibration_error(y, probs), rel=1e-9)


def test_merging_workers_equals_one_accumulator():
    _, probs, y = _data(seed=2)
    whole = CalibrationAccumulator().update(probs, y).compute()
    first = CalibrationAccumulator().update(probs[:1000], y[:1000])
    second = CalibrationAccumulator().update(probs[1000:], y[1000:])
    merged = CalibrationAccumulator().merge(first).merge(second).merge(CalibrationAccumulator())
    for name, value in whole.items():
        assert merged.compute()[name] == pytest.approx(value, rel=1e-12), name


def test_binary_probabilities_of_the_positive_class():
    rng = np.random.default_rng(3)
    p = rng.uniform(size=400)
    y = (rng.uniform(size=400) < p).astype(int)
    accumulator = CalibrationAccumulator(n_bins=5)
    accumulator.update(p[:200], y[:200]).update(p[200:], y[200:])
    assert accumulator.compute().ece == pytest.approx(
        expected_calibration_error(y, p, n_bins=5), rel=1e-9
    )


def test_errors_name_the_problem():
    _, probs, y = _data(n=100)
    with pytest.raises(ValueError, match="seen no batch yet"):
        CalibrationAccumulator().compute()
    accumulator = CalibrationAccumulator().update(probs, y)
    with pytest.raises(ValueError, match="4 class columns, but the earlier batches had 6"):
        accumulator.update(probs[:, :4] / probs[:, :4].sum(1, keepdims=True), y % 4)
    with pytest.raises(ValueError, match="different bins"):
        accumulator.merge(CalibrationAccumulator(n_bins=10).update(probs, y))
    with pytest.raises(TypeError, match="must be a CalibrationAccumulator"):
        accumulator.merge("ece")
    with pytest.raises(TypeError, match="batches must be an iterable"):
        accumulator.update_batches(3)
    with pytest.raises(TypeError, match=r"batches\[0\] must be a pair"):
        accumulator.update_batches([probs])
    with pytest.raises(Exception, match="'n_bins' parameter of CalibrationAccumulator"):
        CalibrationAccumulator(n_bins=0)
    with pytest.raises(Exception, match="'input_type' parameter"):
        CalibrationAccumulator(input_type="scores")
    assert "100 samples" in repr(accumulator)


def test_reset_forgets():
    _, probs, y = _data(n=100)
    accumulator = CalibrationAccumulator().update(probs, y).reset()
    assert accumulator.n_samples_ == 0
    assert accumulator.update(probs[:50], y[:50]).compute().n_samples == 50
