"""TemperatureScaling.fit_batches: the streaming fit equals the in-memory fit."""

import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from distcal import MaskedTemperatureScaling, TemperatureScaling
from distcal.exceptions import UncalibratableDataWarning


def _data(n=2000, k=7, seed=0, scale=3.0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    return scale * z, y


def _batches(logits, y, size, weights=None):
    out = []
    for i in range(0, len(y), size):
        part = (logits[i : i + size], y[i : i + size])
        if weights is not None:
            part += (weights[i : i + size],)
        out.append(part)
    return out


@pytest.mark.parametrize("size", [1, 7, 333, 2000])
def test_streaming_fit_equals_the_in_memory_fit(size):
    logits, y = _data()
    in_memory = TemperatureScaling().fit(logits, y)
    streamed = TemperatureScaling().fit_batches(_batches(logits, y, size))
    assert streamed.temperature_ == pytest.approx(in_memory.temperature_, rel=1e-10)
    assert streamed.nll_ == pytest.approx(in_memory.nll_, rel=1e-10)
    assert streamed.converged_
    assert streamed.n_features_in_ == 7
    np.testing.assert_array_equal(streamed.classes_, np.arange(7))
    np.testing.assert_allclose(streamed.predict_proba(logits), in_memory.predict_proba(logits))


def test_weights_and_a_shuffling_dataloader():
    logits, y = _data(seed=1)
    weights = np.random.default_rng(2).uniform(0, 2, size=len(y))
    weights[:50] = 0  # a batch of zero weights is allowed in a stream
    in_memory = TemperatureScaling().fit(logits, y, sample_weight=weights)
    dataset = TensorDataset(torch.tensor(logits), torch.tensor(y), torch.tensor(weights))
    loader = DataLoader(
        dataset, batch_size=50, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    streamed = TemperatureScaling().fit_batches(loader)
    assert streamed.temperature_ == pytest.approx(in_memory.temperature_, rel=1e-10)


def test_a_function_returning_a_generator_streams_without_holding_the_data():
    calls = []

    def generate():
        calls.append(1)
        for seed in range(5):  # each batch is made on demand and dropped after use
            yield _data(n=400, seed=seed)

    streamed = TemperatureScaling().fit_batches(generate)
    together = [_data(n=400, seed=seed) for seed in range(5)]
    in_memory = TemperatureScaling().fit(
        np.concatenate([z for z, _ in together]), np.concatenate([y for _, y in together])
    )
    assert streamed.temperature_ == pytest.approx(in_memory.temperature_, rel=1e-10)
    assert len(calls) == streamed.n_iter_  # one pass per solver iteration


def test_binary_decision_values_and_float32_tensors():
    rng = np.random.default_rng(3)
    z = rng.normal(size=1000) * 4
    y = (rng.uniform(size=1000) < 1 / (1 + np.exp(-z / 2))).astype(int)
    in_memory = TemperatureScaling().fit(z, y)
    batches = [
        (torch.tensor(z[i : i + 100], dtype=torch.float32), y[i : i + 100])
        for i in range(0, 1000, 100)
    ]
    streamed = TemperatureScaling().fit_batches(batches)
    assert streamed.temperature_ == pytest.approx(in_memory.temperature_, rel=1e-6)
    assert streamed.n_features_in_ == 1


def test_separable_batches_warn_as_the_in_memory_fit_does():
    logits = np.array([[5.0, 0.0], [0.0, 5.0]] * 10)
    y = np.array([0, 1] * 10)
    with pytest.warns(UncalibratableDataWarning, match="separa"):
        ts = TemperatureScaling().fit_batches(_batches(logits, y, 4))
    assert not ts.converged_
    assert ts.temperature_ == pytest.approx(1e-6)


def test_one_shot_iterators_are_refused_with_the_remedy():
    logits, y = _data(n=100)
    with pytest.raises(TypeError, match=r"re-iterable.*function that returns a new iterator"):
        TemperatureScaling().fit_batches(iter(_batches(logits, y, 10)))
    with pytest.raises(TypeError, match="got a single ndarray"):
        TemperatureScaling().fit_batches(logits)
    with pytest.raises(TypeError, match="got a int"):
        TemperatureScaling().fit_batches(3)
    with pytest.raises(TypeError, match="it returned a int"):
        TemperatureScaling().fit_batches(lambda: 3)


def test_bad_batches_are_named():
    logits, y = _data(n=100)
    batches = _batches(logits, y, 10)
    with pytest.raises(TypeError, match=r"batches\[2\] must be a pair .* got a tuple of length 1"):
        TemperatureScaling().fit_batches([*batches[:2], (logits[:3],)])
    with pytest.raises(ValueError, match=r"batches\[1\]\[0\] has 3 logit column\(s\).* had 7"):
        TemperatureScaling().fit_batches([batches[0], (logits[:5, :3], y[:5] % 3)])
    with pytest.raises(ValueError, match=r"batches\[0\]\[1\] contains labels \[9\]"):
        TemperatureScaling().fit_batches([(logits[:2], np.array([9, 0]))])
    # One class: the same rule as fit (TemperatureScaling._min_classes = 1), the same result.
    one_class = [(logits[:5], np.zeros(5, dtype=int))] * 3
    streamed = TemperatureScaling().fit_batches(one_class)
    joined = TemperatureScaling().fit(np.concatenate([logits[:5]] * 3), np.zeros(15, dtype=int))
    assert streamed.temperature_ == pytest.approx(joined.temperature_, rel=1e-9)
    with pytest.raises(ValueError, match="batches is empty"):
        TemperatureScaling().fit_batches([])
    bad = logits[:10].copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        TemperatureScaling().fit_batches([(bad, y[:10])])


def test_batches_that_change_between_passes_are_detected():
    logits, y = _data(n=300)
    state = {"pass": 0}

    def shrinking():
        state["pass"] += 1
        stop = 300 if state["pass"] == 1 else 200
        return iter(_batches(logits[:stop], y[:stop], 100))

    with pytest.raises(ValueError, match="first pass read 300 samples and a later one 200"):
        TemperatureScaling().fit_batches(shrinking)


def test_masked_temperature_scaling_streams_logits_like_fit():
    # Issue 15: fit_batches of the masked calibrators now works (tests/calibration/
    # test_loaders.py has the model path); without a model the batches are logits.
    logits, y = _data(n=100)
    streamed = MaskedTemperatureScaling(0.2, random_state=0).fit_batches(_batches(logits, y, 10))
    direct = MaskedTemperatureScaling(0.2, random_state=0).fit(logits, y)
    assert streamed.temperature_ == direct.temperature_


def test_refit_from_batches_replaces_the_input_shape():
    logits, y = _data(n=200, k=7)
    ts = TemperatureScaling().fit(logits[:, :3], y % 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ts.fit_batches(_batches(logits, y, 50))
    assert ts.n_features_in_ == 7
    assert ts.predict_proba(logits).shape == (200, 7)
