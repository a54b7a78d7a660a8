"""Masked calibrators fit from DataLoaders and predict on them (issue 15, item 1).

The contract: one pass over the stream computes the clean and masked logits, and the result
equals ``fit(X, y)`` on the concatenated data bit for bit on a CPU when the stream yields the
same samples in the same order in batches of ``batch_size``.
"""

import gc
import warnings
import weakref

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from distcal import LogitTransformer, MaskedTemperatureScaling, TemperatureScaling
from distcal.calibration import MaskedScaling, VectorScaling
from distcal.distill import load_digits
from distcal.exceptions import DistcalWarning

BATCH = 64


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    X, y = data.images[:600], data.labels[:600]
    templates = torch.stack([X[y == k].mean(dim=0).flatten() for k in range(10)])
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(templates)
    return net, X, y


def _batch_list(X, y, size):
    return [(X[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


class CountingLoader(DataLoader):
    """A DataLoader that counts how often it is read."""

    def __init__(self, X, y, size, w=None):
        super().__init__(TensorDataset(X, y, *(() if w is None else (w,))), batch_size=size)
        self.passes = 0

    def __iter__(self):
        self.passes += 1
        return super().__iter__()


def _quiet(estimator, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(*args)


FITTED = ("temperature_", "mask_ratio_", "regime_", "n_masks_", "masked_accuracy_", "nll_")


@pytest.mark.parametrize(
    "params",
    [
        {"mask_ratio": 0.3},
        {"mask_ratio": 0.3, "n_masks": 3},
        {"mask_ratio": 0},
        {},  # auto: held-out regime, 4 candidate ratios, cross-fitting
        {"regime": "training"},  # the half-accuracy bisection
    ],
    ids=["ratio", "copies", "zero", "auto-held-out", "auto-training"],
)
def test_fit_on_a_loader_equals_fit_on_arrays_bit_for_bit(digits, params):
    net, X, y = digits
    direct = _quiet(MaskedTemperatureScaling(model=net, random_state=0, **params), X, y)
    loader = DataLoader(TensorDataset(X, y), batch_size=BATCH)
    streamed = _quiet(MaskedTemperatureScaling(model=net, random_state=0, **params), loader)
    for key in FITTED:
        assert getattr(streamed, key) == getattr(direct, key), key
    assert torch.equal(streamed.cv_nll_, direct.cv_nll_)
    assert streamed.input_shape_ == direct.input_shape_ == (1, 8, 8)


def test_the_masks_do_not_depend_on_where_the_stream_is_cut(digits):
    # Batches of 50 instead of batch_size: the uniforms are the same (the CPU generator draws
    # one number after another); only the matrix products may round differently, so the
    # temperature agrees to the solver's tolerance.
    net, X, y = digits
    params = {"mask_ratio": 0.3, "n_masks": 3, "random_state": 0, "batch_size": BATCH}
    direct = MaskedTemperatureScaling(model=net, **params).fit(X, y)
    odd = MaskedTemperatureScaling(model=net, **params).fit(CountingLoader(X, y, 50))
    assert odd.temperature_ == pytest.approx(direct.temperature_, rel=1e-6)
    assert odd.masked_accuracy_ == direct.masked_accuracy_


def test_masked_scaling_of_any_calibrator_streams_too(digits):
    net, X, y = digits
    params = {"mask_ratio": 0.2, "model": net, "random_state": 0}
    direct = MaskedScaling(VectorScaling(), **params).fit(X, y)
    streamed = MaskedScaling(VectorScaling(), **params).fit_batches(
        DataLoader(TensorDataset(X, y), batch_size=BATCH)
    )
    assert torch.equal(streamed.calibrator_.coef_, direct.calibrator_.coef_)
    assert torch.equal(streamed.calibrator_.intercept_, direct.calibrator_.intercept_)


@pytest.mark.parametrize("params", [{"mask_ratio": 0.3}, {}], ids=["ratio", "auto"])
def test_one_pass_over_the_loader(digits, params):
    net, X, y = digits
    loader = CountingLoader(X, y, BATCH)
    MaskedTemperatureScaling(model=net, random_state=0, **params).fit(loader)
    assert loader.passes == 1


def test_the_training_regime_reads_the_stream_once_per_bisection_step(digits):
    # Documented: the half-accuracy rule picks each ratio from the previous one.
    net, X, y = digits
    loader = CountingLoader(X, y, BATCH)
    _quiet(MaskedTemperatureScaling(model=net, regime="training", random_state=0), loader)
    assert 2 <= loader.passes <= 10


def test_weights_in_the_batches_equal_sample_weight(digits):
    net, X, y = digits
    w = torch.linspace(0.5, 2.0, len(y), dtype=torch.float64)
    params = {"mask_ratio": 0.3, "n_masks": 2, "model": net, "random_state": 0}
    direct = MaskedTemperatureScaling(**params).fit(X, y, sample_weight=w)
    streamed = MaskedTemperatureScaling(**params).fit(CountingLoader(X, y, BATCH, w))
    assert streamed.temperature_ == direct.temperature_


def test_fit_batches_takes_a_function_returning_an_iterator(digits):
    # Its length is unknown before reading it: one masked copy (see the next test).
    net, X, y = digits
    batches = _batch_list(X, y, BATCH)
    params = {"mask_ratio": 0.3, "n_masks": 1, "model": net, "random_state": 0}
    streamed = MaskedTemperatureScaling(**params).fit_batches(lambda: iter(batches))
    assert streamed.temperature_ == MaskedTemperatureScaling(**params).fit(X, y).temperature_


def test_an_iterator_streams_with_one_copy_and_says_why_not_with_more(digits):
    net, X, y = digits
    batches = _batch_list(X, y, BATCH)
    params = {"mask_ratio": 0.3, "model": net, "random_state": 0}
    one = MaskedTemperatureScaling(n_masks=1, **params).fit(iter(batches))
    assert one.temperature_ == MaskedTemperatureScaling(n_masks=1, **params).fit(X, y).temperature_
    with pytest.raises(ValueError, match=r"cannot be known before reading it.*n_masks=1"):
        MaskedTemperatureScaling(n_masks=2, **params).fit(iter(batches))


def test_logits_stream_without_a_model():
    rng = np.random.default_rng(0)
    z = 3 * rng.normal(size=(300, 4))
    y = (z + 2 * rng.normal(size=z.shape)).argmax(axis=1)
    batches = [(z[i : i + 70], y[i : i + 70]) for i in range(0, 300, 70)]
    streamed = MaskedTemperatureScaling(0.2, random_state=0).fit(batches)
    assert (
        streamed.temperature_
        == MaskedTemperatureScaling(0.2, random_state=0).fit(z, y).temperature_
    )


def test_predictions_take_streams(digits):
    net, X, y = digits
    mts = MaskedTemperatureScaling(0.3, model=net, random_state=0).fit(X, y)
    loader = DataLoader(TensorDataset(X, y), batch_size=100)
    assert torch.equal(mts.predict_proba(loader), mts.predict_proba(X))
    assert torch.equal(mts.predict(loader), mts.predict(X))
    assert torch.equal(mts.decision_function(loader), mts.decision_function(X))
    # batches of inputs alone, as numpy: numpy out
    numpy_batches = iter([X[:250].numpy(), X[250:].numpy()])
    proba = mts.predict_proba(numpy_batches)
    assert isinstance(proba, np.ndarray)
    np.testing.assert_array_equal(proba, mts.predict_proba(X.numpy()))
    with pytest.raises(ValueError, match=r"batches\[1\] has samples of shape \(64,\)"):
        mts.predict_proba([(X[:10], y[:10]), (X[10:20].flatten(1), y[10:20])])


def test_logit_calibrators_predict_on_streams_of_logits():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(200, 3))
    ts = TemperatureScaling().fit(z, z.argmax(axis=1) * 0 + rng.integers(0, 3, 200))
    batches = [(z[:120], None), (z[120:], None)]
    np.testing.assert_array_equal(ts.predict_proba(iter(batches)), ts.predict_proba(z))


# ------------------------------------------------------------------------------- bad streams
def test_y_with_a_loader_is_refused(digits):
    net, X, y = digits
    loader = DataLoader(TensorDataset(X, y), batch_size=BATCH)
    with pytest.raises(ValueError, match="so y must be omitted"):
        MaskedTemperatureScaling(0.3, model=net).fit(loader, y)


def test_a_batch_with_mismatched_lengths_is_named(digits):
    net, X, y = digits
    batches = [(X[:64], y[:64]), (X[64:128], y[64:127])]
    mismatch = r"inconsistent numbers of samples: batches\[1\]\[0\] has 64 and batches\[1\]\[1\] h"
    with pytest.raises(ValueError, match=mismatch):
        MaskedTemperatureScaling(0.3, model=net).fit(batches)
    z = X.flatten(1)[:, :10]  # ten columns of numbers, as logits of ten classes
    with pytest.raises(ValueError, match=mismatch):
        MaskedTemperatureScaling(0.3).fit([(z[:64], y[:64]), (z[64:128], y[64:127])])


def test_a_batch_of_another_shape_is_named(digits):
    net, X, y = digits
    batches = [(X[:64], y[:64]), (X[64:128, :, :4], y[64:128])]
    with pytest.raises(ValueError, match=r"batches\[1\] has samples of shape \(1, 4, 8\)"):
        MaskedTemperatureScaling(0.3, model=net).fit(batches)


def test_the_training_regime_needs_the_same_order_on_every_pass(digits):
    net, X, y = digits
    shuffled = DataLoader(
        TensorDataset(X, y), batch_size=BATCH, shuffle=True, generator=torch.Generator()
    )
    with pytest.raises(ValueError, match="another order on a second pass"):
        _quiet(MaskedTemperatureScaling(model=net, regime="training", random_state=0), shuffled)
    once = iter(_batch_list(X, y, BATCH))
    with pytest.raises(TypeError, match="an iterator can be read only once"):
        _quiet(
            MaskedTemperatureScaling(model=net, regime="training", n_masks=1, random_state=0),
            once,
        )


def test_a_loader_of_unknown_length_needs_one_copy(digits):
    net, X, y = digits

    class Stream(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(zip(X, y, strict=True))

    loader = DataLoader(Stream(), batch_size=BATCH)
    with pytest.raises(ValueError, match=r"n_masks='auto' needs it"):
        MaskedTemperatureScaling(0.3, model=net).fit(loader)
    params = {"mask_ratio": 0.3, "n_masks": 1, "model": net, "random_state": 0}
    streamed = MaskedTemperatureScaling(**params).fit(loader)
    assert streamed.temperature_ == MaskedTemperatureScaling(**params).fit(X, y).temperature_


def test_logit_transformer_takes_streams(digits):
    net, X, y = digits
    loader = DataLoader(TensorDataset(X, y), batch_size=100)
    transformer = LogitTransformer(net).fit(loader)
    assert transformer.input_shape_ == (1, 8, 8)
    assert torch.equal(transformer.transform(loader), transformer.transform(X))


def test_calibrators_without_a_model_point_a_loader_to_what_takes_it():
    rng = np.random.default_rng(2)
    z = torch.as_tensor(rng.normal(size=(100, 3)))
    y = torch.as_tensor(rng.integers(0, 3, 100))
    loader = DataLoader(TensorDataset(z, y), batch_size=25)
    with pytest.raises(TypeError, match=r"use TemperatureScaling\(\).fit_batches\(X\)"):
        TemperatureScaling().fit(loader)
    with pytest.raises(TypeError, match="concatenate the batches' logits"):
        VectorScaling().fit(loader, None)


def test_no_input_batch_outlives_the_fit(digits):
    # Only logits are kept: every input batch the stream made is freed once the fit is done.
    net, X, y = digits
    made = weakref.WeakSet()

    class Stream:
        def __iter__(self):
            for start in range(0, len(y), BATCH):
                batch = X[start : start + BATCH].clone()
                made.add(batch)
                yield batch, y[start : start + BATCH]

    mts = MaskedTemperatureScaling(0.3, n_masks=1, model=net, random_state=0).fit(Stream())
    gc.collect()
    assert len(made) == 0
    assert mts.temperature_ > 0


# --------------------------------------------------------------- hostile streams (issue 22)
class _Indexed(torch.utils.data.Dataset):
    """A dataset that returns (x, y, index), as many do to track samples."""

    def __init__(self, X, y):
        self.X, self.y = X, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.X[i], self.y[i], i


def test_an_index_as_third_element_is_not_taken_for_sample_weights(digits):
    """Before: (x, y, index) triples were fitted with the index as sample weight."""
    net, X, y = digits
    loader = DataLoader(_Indexed(X, y), batch_size=BATCH)
    message = r"batches\[0\]\[2\] holds integers \(torch.int64\).* \(x, y, index\)"
    with pytest.raises(TypeError, match=message):
        _quiet(MaskedTemperatureScaling(0.3, model=net, random_state=0), loader)
    logits = net(X).detach()
    with pytest.raises(TypeError, match=message):
        TemperatureScaling().fit_batches(DataLoader(_Indexed(logits, y), batch_size=BATCH))
    # float weights are weights, as before
    w = torch.ones(len(y), dtype=torch.float64)
    TemperatureScaling().fit_batches(DataLoader(TensorDataset(logits, y, w), batch_size=BATCH))


def test_unscaled_inputs_after_the_first_batch_warn_as_a_first_batch_does(digits):
    """Before: only the first batch was looked at."""
    net, X, y = digits
    pixels = X.clone()
    pixels[3 * BATCH :] = torch.round(255 * pixels[3 * BATCH :] / pixels.max())
    loader = DataLoader(TensorDataset(pixels, y), batch_size=BATCH)
    with pytest.warns(DistcalWarning, match=r"batches\[3\]\[0\] holds whole numbers from 0 to 255"):
        MaskedTemperatureScaling(0.3, model=net, random_state=0).fit(loader)
    with pytest.warns(DistcalWarning, match=r"X holds whole numbers from 0 to 255"):
        MaskedTemperatureScaling(0.3, model=net, random_state=0).fit(pixels, y)  # arrays too


def test_an_empty_loader_is_a_clear_error(digits):
    """Before: ZeroDivisionError in resolve_n_masks."""
    net, X, y = digits
    empty = DataLoader(TensorDataset(X[:0], y[:0]), batch_size=BATCH)
    with pytest.raises(ValueError, match=r"announces 0 samples .*nothing to fit"):
        MaskedTemperatureScaling(model=net, random_state=0).fit(empty)


class _OneShot:
    """An iterable whose __iter__ returns the same iterator: readable once."""

    def __init__(self, batches):
        self.iterator = iter(batches)

    def __iter__(self):
        return self.iterator


def test_a_one_shot_iterable_in_the_training_regime_says_a_reiterable_loader_is_needed(digits):
    """Before: "batches yielded no batch; there is nothing to fit" after 600 samples."""
    net, X, y = digits
    mts = MaskedTemperatureScaling(regime="training", n_masks=1, model=net, random_state=0)
    with pytest.raises(ValueError, match=r"no batch when read again, though the first pass read "
                       r"600 samples.*half-accuracy rule.*re-iterable loader"):  # fmt: skip
        _quiet(mts, _OneShot(_batch_list(X, y, BATCH)))
    logits = net(X).detach()
    with pytest.raises(ValueError, match=r"fit_batches: batches yielded no batch when read again"):
        TemperatureScaling().fit_batches(_OneShot(_batch_list(logits, y, BATCH)))
