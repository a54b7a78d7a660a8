"""Ensemble temperature scaling against a naive fit of its mixture weights."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import softmax

from distcal import TemperatureScaling
from distcal.calibration import EnsembleTemperatureScaling


def _data(n=2000, k=5, seed=0, scale=3.0, noise=0.0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k))
    y = (z + rng.gumbel(size=(n, k))).argmax(axis=1)
    flip = rng.uniform(size=n) < noise  # label noise: the uniform component earns weight
    y[flip] = rng.integers(0, k, size=int(flip.sum()))
    return scale * z, y


def test_weights_match_a_naive_simplex_fit():
    z, y = _data(noise=0.3)
    ets = EnsembleTemperatureScaling().fit(z, y)
    T = TemperatureScaling().fit(z, y).temperature_
    assert ets.temperature_ == pytest.approx(T)
    rows = np.arange(len(y))
    parts = np.stack(
        [softmax(z / T, axis=1)[rows, y], softmax(z, axis=1)[rows, y], np.full(len(y), 1 / 5)],
        axis=1,
    )
    result = minimize(
        lambda w: -np.log(parts @ w).mean(),
        np.full(3, 1 / 3),
        method="SLSQP",
        bounds=[(0, 1)] * 3,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1}],
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    np.testing.assert_allclose(ets.weights_, result.x, atol=2e-4)
    assert ets.weights_.sum() == pytest.approx(1.0)
    assert ets.nll_ == pytest.approx(result.fun, rel=1e-6)


def test_predictions_are_the_mixture_and_keep_the_class():
    z, y = _data(noise=0.2, seed=1)
    ets = EnsembleTemperatureScaling().fit(z, y)
    w, T = ets.weights_.numpy(), ets.temperature_
    expected = w[0] * softmax(z / T, axis=1) + w[1] * softmax(z, axis=1) + w[2] / 5
    np.testing.assert_allclose(ets.predict_proba(z), expected, atol=1e-10)
    np.testing.assert_array_equal(ets.predict(z), z.argmax(axis=1))
    assert ets.predict_proba(z).min() > 0 or w[2] == 0


def test_weighted_fit_equals_repeated_rows():
    z, y = _data(n=500, noise=0.3, seed=2)
    counts = np.random.default_rng(3).integers(0, 3, size=len(y))
    weighted = EnsembleTemperatureScaling().fit(z, y, sample_weight=counts)
    repeated = EnsembleTemperatureScaling().fit(np.repeat(z, counts, axis=0), np.repeat(y, counts))
    np.testing.assert_allclose(weighted.weights_, repeated.weights_, atol=1e-5)


def test_every_lbfgs_fit_stops_by_the_same_rule(monkeypatch):
    """Vector/matrix scaling and the ETS weights build L-BFGS the same way (``_lbfgs.py``)."""
    from distcal.calibration import MatrixScaling, VectorScaling

    built = []
    original = torch.optim.LBFGS

    def recording(params, **options):
        built.append(options)
        return original(params, **options)

    monkeypatch.setattr(torch.optim, "LBFGS", recording)
    z, y = _data(noise=0.5, seed=3)
    for calibrator in (
        VectorScaling(tol=1e-7, max_iter=400),
        MatrixScaling(tol=1e-7, max_iter=400),
        EnsembleTemperatureScaling(tol=1e-7, max_iter=400),
    ):
        calibrator.fit(z, y)
        assert calibrator.converged_ is True
    assert len(built) == 3
    assert built[0] == built[1] == built[2]
    assert built[0]["tolerance_grad"] == 1e-7
    assert built[0]["tolerance_change"] == pytest.approx(1e-10)
    assert built[0]["max_eval"] == 500


def test_ensemble_reports_a_fit_that_did_not_converge():
    from distcal.exceptions import ConvergenceWarning

    z, y = _data(noise=0.5, seed=4)
    with (
        pytest.warns(ConvergenceWarning, match="temperature fit did not converge"),
        pytest.warns(ConvergenceWarning, match="before the mixture weights converged"),
    ):
        ets = EnsembleTemperatureScaling(max_iter=2).fit(z, y)
    assert ets.converged_ is False
    assert EnsembleTemperatureScaling().fit(z, y).converged_ is True
