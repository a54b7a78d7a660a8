"""Adversarial inputs for every calibrator and metric: a finite, correct result or a clear error.

Hypothesis draws logits that break naive code: magnitudes up to 1e4, float16, bfloat16, float32
and float64, two classes or ten thousand, one sample per class, constant rows, duplicated rows.
Whatever arrives, the answer is a valid result (finite temperature in the search bounds,
probabilities in [0, 1] whose rows sum to 1, metrics in their range) or an error that names
the problem; never NaN, never a silent wrong answer.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from distcal import InputMasker, LogitTransformer, MaskedTemperatureScaling, TemperatureScaling
from distcal.metrics import (
    CalibrationAccumulator,
    adaptive_calibration_error,
    brier_score,
    calibration_curve,
    classwise_calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
)

DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}
CLEAR = (ValueError, TypeError)  # the errors distcal raises for bad input, with a message
# 40 examples per test in the default run; the fuzz run (docs/reliability.md) sets
# DISTCAL_FUZZ_EXAMPLES=10000 and runs this file alone.
EXAMPLES = int(os.environ.get("DISTCAL_FUZZ_EXAMPLES", "40"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@st.composite
def logits_and_labels(draw):
    n_classes = draw(st.sampled_from([2, 3, 10, 10_000]))
    pattern = draw(
        st.sampled_from(["random", "constant", "duplicated", "one per class", "separable"])
    )
    n_samples = n_classes if pattern == "one per class" else draw(st.integers(2, 40))
    n_samples = min(n_samples, 40) if n_classes == 10_000 else n_samples
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0, 1e3, 1e4]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    logits = scale * rng.normal(size=(n_samples, n_classes))
    labels = rng.integers(0, n_classes, size=n_samples)
    if pattern == "constant":
        logits[:] = scale
    elif pattern == "duplicated":
        logits[:] = logits[0]
    elif pattern == "one per class":
        labels = np.arange(n_samples) % n_classes
    elif pattern == "separable":
        labels = logits.argmax(axis=1)
    if len(np.unique(labels)) < 2:
        labels[0] = (labels[0] + 1) % n_classes  # calibrators need two classes
    dtype = DTYPES[draw(st.sampled_from(sorted(DTYPES)))]
    return torch.tensor(logits).to(dtype), torch.tensor(labels), pattern


def _check_probabilities(proba, n_samples, n_classes):
    proba = torch.as_tensor(proba)
    # rows sum to 1 up to the rounding of n_classes terms in the output's dtype
    atol = 10 * torch.finfo(proba.dtype).eps * max(1.0, n_classes**0.5)
    proba = proba.to(torch.float64)
    assert proba.shape == (n_samples, n_classes)
    assert bool(torch.isfinite(proba).all()), "probabilities must never be NaN or infinite"
    assert bool(((proba >= 0) & (proba <= 1)).all())
    torch.testing.assert_close(
        proba.sum(dim=1), torch.ones(n_samples, dtype=torch.float64), atol=atol, rtol=0
    )


def _quietly(function):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # uncalibratable-data and probability-input warnings
        return function()


def _fit_or_refuse(function):
    """Return the function's result, or None when it raised a clear error (with a message)."""
    try:
        return _quietly(function)
    except CLEAR as exc:
        message = str(exc)
    assert message, "an error must say what is wrong"
    return None


@SETTINGS
@given(logits_and_labels())
def test_temperature_scaling_is_finite_or_refuses(data):
    logits, labels, _ = data
    ts = _fit_or_refuse(lambda: TemperatureScaling().fit(logits, labels))
    if ts is None:
        return
    assert 1e-6 * (1 - 1e-9) <= ts.temperature_ <= 1e6 * (1 + 1e-9)
    assert np.isfinite(ts.nll_)
    proba = ts.predict_proba(logits)
    _check_probabilities(proba, *logits.shape)
    # temperature scaling never changes the predicted class
    assert torch.equal(torch.as_tensor(ts.predict(logits)), logits.float().argmax(dim=1))


@SETTINGS
@given(logits_and_labels())
def test_streaming_fit_agrees_with_the_in_memory_fit(data):
    logits, labels, _ = data
    try:
        in_memory = _quietly(lambda: TemperatureScaling().fit(logits, labels))
    except CLEAR:
        with pytest.raises(CLEAR):
            _quietly(lambda: TemperatureScaling().fit_batches([(logits, labels)]))
        return
    half = len(labels) // 2
    batches = [(logits[:half], labels[:half]), (logits[half:], labels[half:])]
    streamed = _quietly(lambda: TemperatureScaling().fit_batches(batches))
    assert streamed.temperature_ == pytest.approx(in_memory.temperature_, rel=1e-6)


@SETTINGS
@given(logits_and_labels(), st.sampled_from([0.0, 0.3, 0.9]))
def test_masked_temperature_scaling_in_logit_space(data, mask_ratio):
    logits, labels, _ = data
    mts = _fit_or_refuse(
        lambda: MaskedTemperatureScaling(mask_ratio, n_masks=2, random_state=0).fit(logits, labels)
    )
    if mts is None:
        return
    assert np.isfinite(mts.temperature_)
    assert mts.temperature_ > 0
    _check_probabilities(mts.predict_proba(logits), *logits.shape)


@SETTINGS
@given(logits_and_labels())
def test_logit_transformer_output_is_finite(data):
    logits, labels, _ = data
    transformer = _fit_or_refuse(lambda: LogitTransformer().fit(logits, labels))
    if transformer is None:
        return
    out = torch.as_tensor(transformer.transform(logits))
    assert bool(torch.isfinite(out).all())


@SETTINGS
@given(logits_and_labels())
def test_metrics_of_the_softmax_are_in_range(data):
    logits, labels, _ = data
    proba = torch.softmax(logits.to(torch.float64), dim=1).to(logits.dtype)
    ece = _fit_or_refuse(lambda: expected_calibration_error(labels, proba))
    if ece is None:  # float16 rows may not sum to 1 within tolerance, and the error says so
        return
    for value in (
        ece,
        maximum_calibration_error(labels, proba),
        classwise_calibration_error(labels, proba),
        brier_score(labels, proba),
    ):
        assert np.isfinite(value)
        # 2 bounds the Brier score of exact distributions; rounded rows may sum to 1 + eps
        assert 0 <= value <= 2 * (1 + torch.finfo(logits.dtype).eps) ** 2
    nll = negative_log_likelihood(labels, proba)
    assert not np.isnan(nll)
    assert nll >= 0  # +inf when a label has probability exactly 0, which is the right answer
    streamed = CalibrationAccumulator().update(proba, labels).compute()
    assert streamed.ece == pytest.approx(ece, rel=1e-9, abs=1e-12)


@SETTINGS
@given(logits_and_labels(), st.sampled_from([0.0, 0.5, 0.95]))
def test_input_masker_zeroes_elements_and_nothing_else(data, mask_ratio):
    inputs, _, _ = data
    masked = torch.as_tensor(InputMasker(mask_ratio, random_state=0).fit(inputs).transform(inputs))
    assert masked.shape == inputs.shape
    assert masked.dtype == inputs.dtype
    kept = masked != 0
    assert torch.equal(masked[kept], inputs[kept])  # no rescaling by 1 / (1 - p)


@SETTINGS
@given(logits_and_labels())
def test_binned_metrics_with_adaptive_bins_and_curves(data):
    logits, labels, _ = data
    proba = torch.softmax(logits.to(torch.float64), dim=1)
    ace = adaptive_calibration_error(labels, proba, n_bins=5)
    assert 0 <= ace <= 1
    curve = calibration_curve(labels, proba, n_bins=5)
    counts = torch.as_tensor(curve.counts)
    assert float(counts.sum()) == pytest.approx(len(labels))
    occupied = counts > 0
    accuracy = torch.as_tensor(curve.accuracy)[occupied]
    assert bool(((accuracy >= 0) & (accuracy <= 1)).all())


# ---------------------------------------------------------------------------------------------
# The image estimators: StudentClassifier and MDTTrainer


@st.composite
def images_and_labels(draw):
    """Small image batches that break naive code: odd shapes and dtypes, NaN, inf, 0-255 values,
    one class, labels that are floats, negative or out of order."""
    n = draw(st.integers(1, 24))
    shape = draw(st.sampled_from([(1, 8, 8), (3, 8, 8), (1, 4, 4), (64,), (1, 8), (0, 8, 8)]))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.uint8, np.int64, np.float16]))
    values = draw(st.sampled_from(["unit", "0-255", "nan", "inf", "zeros", "huge"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x = rng.random((n, *shape))
    if values == "0-255":
        x = np.round(255 * x)
    elif values == "nan" and x.size:
        x.flat[0] = np.nan
    elif values == "inf" and x.size:
        x.flat[-1] = np.inf
    elif values == "zeros":
        x[:] = 0
    elif values == "huge":
        x = 1e30 * x
    with np.errstate(invalid="ignore", over="ignore"):
        x = x.astype(dtype)
    n_classes = draw(st.integers(1, 4))
    labels = draw(st.sampled_from(["ints", "floats", "negative", "one class", "too many"]))
    y = rng.integers(0, n_classes, size=n)
    if labels == "floats":
        y = y + 0.5
    elif labels == "negative":
        y = y - 1
    elif labels == "one class":
        y = np.zeros(n, dtype=int)
    elif labels == "too many":
        y = np.append(y, 0)
    return x, y


def _finite_or_clear(fit_and_predict):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fit_and_predict()
    except CLEAR as exc:
        assert str(exc), "an error without a message"  # noqa: PT017 - any of several errors
        return
    assert np.isfinite(result).all()


@SETTINGS
@given(images_and_labels())
def test_student_classifier_is_finite_or_refuses(data):
    from distcal.distill import StudentClassifier

    x, y = data
    student = StudentClassifier(
        width=4, depth=1, epochs=1, batch_size=8, augment="none", random_state=0
    )

    def run():
        student.fit(x, y)
        return student.predict_proba(x)

    _finite_or_clear(run)


@SETTINGS
@given(images_and_labels(), st.sampled_from(["dm", "dc"]), st.sampled_from([0.0, 0.5]))
def test_mdt_trainer_is_finite_or_refuses(data, method, mask_ratio):
    from distcal.distill import MDTTrainer

    x, y = data
    trainer = MDTTrainer(
        method,
        ipc=1,
        width=4,
        depth=1,
        iterations=1,
        augment="none",
        mask_ratio=mask_ratio,
        method_params={"batch_real": 4},
        random_state=0,
    )

    def run():
        return trainer.fit(x, y).images_.detach().numpy()

    _finite_or_clear(run)
