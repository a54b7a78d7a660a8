"""Non-finite values stop a fit with an error that says where; no solver reports convergence on
a NaN objective, and a model's NaN outputs are never calibrated or predicted from silently."""

import numpy as np
import pytest
import torch

from distcal import MaskedTemperatureScaling, TemperatureScaling
from distcal.calibration import MatrixScaling, VectorScaling, fit_temperature

from ..conftest import make_logits


def test_fit_temperature_refuses_a_nan_logit_instead_of_reporting_an_optimum():
    X, y = make_logits(n_samples=200, random_state=0)
    logits = torch.as_tensor(X, dtype=torch.float64)
    logits[5, 1] = float("nan")
    with pytest.raises(ValueError, match=r"NLL at T = 1 is nan .* NaN or infinite values"):
        fit_temperature(logits, torch.as_tensor(y))
    weights = torch.ones(200, dtype=torch.float64)
    weights[3] = float("inf")
    with pytest.raises(ValueError, match="NaN or infinite values"):
        fit_temperature(torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(y), weights)


def test_a_streamed_statistic_that_overflows_later_is_named_with_its_temperature():
    X, y = make_logits(n_samples=200, random_state=1)
    logits, labels = torch.as_tensor(X, dtype=torch.float64), torch.as_tensor(y)
    from distcal.calibration._temperature import temperature_statistics

    def overflowing(beta, limits):
        values = temperature_statistics(logits, labels, None, beta, limits=limits)
        return values if limits else values * float("inf")

    with pytest.raises(ValueError, match=r"overflowed at T = .* \(pass 2\)"):
        fit_temperature(None, None, statistics=overflowing)


class _NaNForSomeInputs(torch.nn.Module):
    """A small network that returns NaN logits for the inputs whose first feature exceeds 2."""

    def __init__(self, generator):
        super().__init__()
        self.linear = torch.nn.Linear(4, 3)
        with torch.no_grad():  # weights from the test's generator, not the global one
            self.linear.weight.copy_(2 * torch.randn(3, 4, generator=generator))
            self.linear.bias.zero_()

    def forward(self, x):
        out = self.linear(x)
        return torch.where((x[:, :1] > 2.0), torch.full_like(out, float("nan")), out)


def test_a_model_returning_nan_for_3_of_400_inputs_stops_fit_and_predict():
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(400, 4, generator=generator)
    X[:, 0] = X[:, 0].clamp(max=1.0)
    X[[3, 50, 399], 0] = 3.0
    net = _NaNForSomeInputs(generator)
    with torch.no_grad():
        scores = net.linear(X) / 2  # the labels follow the network, less sharply
    gumbel = -torch.log(-torch.log(torch.rand(400, 3, generator=generator)))
    y = (scores + gumbel).argmax(dim=1)
    with pytest.raises(ValueError, match=r"model returned NaN or infinite logits .* at input 3\b"):
        MaskedTemperatureScaling(0.0, model=net).fit(X, y)
    clean = X[:, 0] <= 2.0
    mts = MaskedTemperatureScaling(0.0, model=net).fit(X[clean], y[clean])
    with pytest.raises(ValueError, match="model returned NaN or infinite logits"):
        mts.predict_proba(X)
    assert torch.isfinite(mts.predict_proba(X[clean])).all()


@pytest.mark.parametrize("calibrator", [VectorScaling(), MatrixScaling()])
def test_an_lbfgs_fit_that_overflows_raises_instead_of_returning_nan_parameters(calibrator):
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(100, 3)) * 1e306, rng.integers(0, 3, 100)
    name = type(calibrator).__name__
    with pytest.raises(ValueError, match=rf"{name}: the loss \(nan\) or its gradient became NaN"):
        calibrator.fit(z, y)


def test_finite_inputs_still_fit_as_before():
    X, y = make_logits(n_samples=300, random_state=2)
    ts = TemperatureScaling().fit(X, y)
    assert ts.converged_
    assert np.isfinite(ts.temperature_)


def _probabilities_with_a_zero_on_the_label(random_state=0):
    X, y = make_logits(n_samples=200, n_classes=4, random_state=random_state)
    proba = torch.softmax(torch.as_tensor(X), dim=1).numpy()
    for row in (17, 120):
        proba[row, y[row]] = 0.0  # what a float32 softmax gives a label 104 logits behind
        proba[row] /= proba[row].sum()
    return proba, y


@pytest.mark.parametrize(
    "make",
    [
        lambda: TemperatureScaling(input_type="probabilities"),
        lambda: VectorScaling(input_type="probabilities"),
        lambda: MatrixScaling(input_type="probabilities"),
        lambda: MaskedTemperatureScaling(0.1, input_type="probabilities", random_state=0),
    ],
    ids=["TS", "VS", "MS", "MTS"],
)
def test_an_exact_zero_probability_on_the_label_is_refused_naming_the_rows(make):
    """Before: the zero was clamped to log -708 and decided the fit alone (one such row in 200:
    T = 472.7 instead of 3.0, uniform output), without a word."""
    proba, y = _probabilities_with_a_zero_on_the_label()
    with pytest.raises(
        ValueError,
        match=r"2 of 200 samples a probability of exactly 0 \(in rows \[17, 120\]\).*Pass the",
    ):
        make().fit(proba, y)


def test_a_zero_probability_elsewhere_fits_and_streams_refuse_it_per_batch():
    from distcal.calibration import HistogramBinning

    proba, y = _probabilities_with_a_zero_on_the_label()
    keep = np.ones(200, dtype=bool)
    keep[[17, 120]] = False
    other = proba[keep].copy()
    wrong = (y[keep] + 1) % 4
    other[np.arange(len(other)), wrong] = 0.0  # zeros on classes that are not the label
    other /= other.sum(axis=1, keepdims=True)
    ts = TemperatureScaling(input_type="probabilities").fit(other, y[keep])
    assert 0.5 < ts.temperature_ < 20
    HistogramBinning(input_type="probabilities").fit(proba, y)  # binning takes no log
    batches = [(proba[:100], y[:100]), (proba[100:], y[100:])]
    with pytest.raises(
        ValueError, match=r"batches\[0\]\[0\] gives the label .* \(in rows \[17\]\)"
    ):
        TemperatureScaling(input_type="probabilities").fit_batches(batches)
