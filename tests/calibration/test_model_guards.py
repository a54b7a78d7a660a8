"""Guards on the model path (issue 15, item 3).

A model whose last layer is a softmax, inputs of the wrong shape, unscaled images, and
``mask_ratio="auto"`` meeting evidence that does not fit the regime it chose.
"""

import warnings

import numpy as np
import pytest
import torch

from distcal import LogitTransformer, MaskedTemperatureScaling
from distcal.calibration import HistogramBinning, IsotonicCalibration, MaskedScaling, VectorScaling
from distcal.calibration._auto_ratio import MISSED_TARGET, choose_ratio, half_accuracy
from distcal.distill import load_digits
from distcal.exceptions import DistcalWarning, ProbabilityInputWarning


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    X, y = data.images[:500], data.labels[:500]
    templates = torch.stack([X[y == k].mean(dim=0).flatten() for k in range(10)])
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(templates)
    return net, X, y


def _with_last(net, layer):
    return torch.nn.Sequential(net, layer)


# ------------------------------------------------------------------ probabilities from a model
def test_a_softmax_model_warns_and_would_give_another_temperature(digits):
    net, X, y = digits
    softmax_net = _with_last(net, torch.nn.Softmax(dim=1))
    with pytest.warns(ProbabilityInputWarning, match="look like probabilities.*final softmax"):
        on_probabilities = MaskedTemperatureScaling(0.3, model=softmax_net, random_state=0).fit(
            X, y
        )
    on_logits = MaskedTemperatureScaling(0.3, model=net, random_state=0).fit(X, y)
    # what the warning is about: the temperature is fitted on the wrong scale
    assert on_probabilities.temperature_ < 0.5 * on_logits.temperature_


def test_log_probabilities_are_harmless_for_a_temperature_and_say_so_elsewhere(digits):
    # log_softmax shifts each row by a constant, which a temperature (and any map through a
    # softmax first) cancels: no warning, the same temperature up to rounding.
    net, X, y = digits
    log_net = _with_last(net, torch.nn.LogSoftmax(dim=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        on_log = MaskedTemperatureScaling(0.3, model=log_net, random_state=0).fit(X, y)
    on_logits = MaskedTemperatureScaling(0.3, model=net, random_state=0).fit(X, y)
    assert on_log.temperature_ == pytest.approx(on_logits.temperature_, rel=1e-5)
    with pytest.warns(DistcalWarning, match="look like log-probabilities"):
        MaskedScaling(VectorScaling(), 0.3, model=log_net, random_state=0).fit(X, y)


@pytest.mark.parametrize("inner", [HistogramBinning(n_bins=5), IsotonicCalibration()])
def test_binning_through_a_softmax_is_shift_invariant_and_does_not_warn(digits, inner):
    """Issue 23: the binning calibrators bin softmax(z), which a constant per row leaves alone,
    but a hand-kept list of shift-invariant maps missed them, so MaskedScaling over them warned
    about log-probabilities that change nothing. Each calibrator now declares it."""
    net, X, y = digits
    log_net = _with_last(net, torch.nn.LogSoftmax(dim=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        on_log = MaskedScaling(inner, 0.3, model=log_net, random_state=0).fit(X, y)
    # the declaration is true: the same masks give the same fit, up to the float32 rounding of
    # log_softmax (a few ulps of the largest logit)
    on_logits = MaskedScaling(inner, 0.3, model=net, random_state=0).fit(X, y)
    with torch.no_grad():
        largest = float(net(X).abs().max())
    np.testing.assert_allclose(
        on_log.predict_proba(X),
        on_logits.predict_proba(X),
        atol=64 * torch.finfo(torch.float32).eps * largest,
    )
    assert type(inner)._shift_invariant


# -------------------------------------------------------------------------- shape mismatch
def test_logits_given_to_a_model_are_explained(digits):
    net, X, y = digits
    with torch.no_grad():
        logits = net(X)
    with pytest.raises(ValueError, match=r"X has samples of shape \(10,\)") as info:
        MaskedTemperatureScaling(0.3, model=net).fit(logits, y)
    message = str(info.value)
    assert "Linear(in_features=64, out_features=10), takes 64 features" in message
    assert "If X already holds the network's logits" in message
    assert "mat1 and mat2 shapes cannot be multiplied" in message  # torch's own words, quoted


def test_a_convolution_says_what_it_takes():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    X = torch.zeros(8, 1, 8, 8)
    with pytest.raises(ValueError, match=r"Conv2d\(in_channels=3, ...\), takes samples of shape"):
        LogitTransformer(net).fit_transform(X)


# ---------------------------------------------------------------------- unnormalised inputs
@pytest.mark.parametrize("scale", ["uint8", "float255"])
def test_unscaled_images_get_a_hint(digits, scale):
    net, X, y = digits
    pixels = (X * 255).round()
    pixels = pixels.to(torch.uint8).numpy() if scale == "uint8" else pixels
    with pytest.warns(DistcalWarning, match=r"whole numbers from 0 to 255.*x / 255"):
        MaskedTemperatureScaling(0.3, model=net, random_state=0).fit(pixels, y)


def test_scaled_inputs_get_no_hint(digits):
    net, X, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MaskedTemperatureScaling(0.3, model=net, random_state=0).fit(X, y)
        MaskedTemperatureScaling(0.3, model=net, random_state=0).fit((X > 0.5).float(), y)


# ------------------------------------------------------- auto ratio: evidence against a regime
def _labels_and_logits(n=200, k=10):
    rng = np.random.default_rng(0)
    labels = torch.as_tensor(rng.integers(0, k, n))
    clean = 5 * torch.nn.functional.one_hot(labels, k).to(torch.float64)
    return clean, labels


def test_training_regime_warns_when_the_masked_accuracy_jumps_over_the_target():
    # Masked logits that are all right below ratio 0.5 and all wrong above it: the bisection
    # cannot land near the half-accuracy target.
    clean, labels = _labels_and_logits()

    def draw(ratio):
        return clean if ratio < 0.5 else clean.roll(1, dims=1)

    with pytest.warns(DistcalWarning, match=r"far from the target 0\.550"):
        chosen = choose_ratio(
            draw, clean, labels, None, regime="training", n_masks=1, cv=5, seed=0,
            fold_nll=None, owner="MTS",
        )  # fmt: skip
    assert abs(chosen.accuracy - half_accuracy(10)) > MISSED_TARGET


def test_held_out_regime_warns_when_the_largest_ratio_wins_on_near_training_data():
    # 3% errors: read as held-out, yet masking helps the more the more is masked
    clean, labels = _labels_and_logits()
    clean[:6] = clean[:6].roll(1, dims=1)

    def draw(ratio):
        return clean * (1 - ratio)

    def fold_nll(fit_logits, *_):
        return float(fit_logits.abs().mean())  # lower the more is masked

    with pytest.warns(DistcalWarning, match="lowest at the largest candidate ratio, 0.5"):
        chosen = choose_ratio(
            draw, clean, labels, None, regime="auto", n_masks=1, cv=5, seed=0,
            fold_nll=fold_nll, owner="MTS",
        )  # fmt: skip
    assert (chosen.regime, chosen.ratio) == ("held-out", 0.5)
    # declared held-out, or many errors: no evidence against the regime, no warning
    clean[:40] = clean[:40].roll(1, dims=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for regime in ("held-out", "auto"):
            choose_ratio(
                draw, clean, labels, None, regime=regime, n_masks=1, cv=5, seed=0,
                fold_nll=fold_nll, owner="MTS",
            )  # fmt: skip


def test_ordinary_held_out_data_get_no_regime_warning(digits):
    net, X, y = digits
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto = MaskedTemperatureScaling(model=net, random_state=0).fit(X, y)
    assert auto.regime_ == "held-out"
