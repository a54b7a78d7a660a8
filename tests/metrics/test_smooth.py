"""Smooth ECE against a direct (unpooled) computation of its definition."""

import numpy as np
import pytest
from scipy.stats import norm

from distcal.metrics import smooth_calibration_error


def _direct(y, p, grid=2000):
    """smECE by definition: reflected-Gaussian smoothing of each residual, no pooling."""
    confidence = np.maximum(p, 1 - p)
    residual = ((p > 0.5).astype(int) == y) - confidence
    t = (np.arange(grid) + 0.5) / grid

    def sm_ece(sigma):
        total = np.zeros(grid)
        for c, r in zip(confidence, residual, strict=True):
            k = sum(
                norm.pdf(t, loc, sigma) for shift in (-2, 0, 2) for loc in (c + shift, -c + shift)
            )
            total += k * r / len(y)
        return np.abs(total).mean()

    low, high = 1e-4, 1.0
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (middle, high) if sm_ece(middle) > middle else (low, middle)
    return (low + high) / 2


def test_matches_the_definition():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=300)
    y = (rng.uniform(size=300) < np.clip(1.3 * p - 0.15, 0, 1)).astype(int)
    assert smooth_calibration_error(y, p) == pytest.approx(_direct(y, p), abs=2e-3)


def test_orders_calibrated_and_miscalibrated_models():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=5000)
    y = (rng.uniform(size=5000) < p).astype(int)
    calibrated = smooth_calibration_error(y, p)
    assert calibrated < 0.03
    assert smooth_calibration_error(y, np.clip(1.5 * p - 0.25, 0, 1)) > calibrated + 0.03
    weights = np.full(5000, 2.0)
    assert smooth_calibration_error(y, p, sample_weight=weights) == pytest.approx(calibrated)


def test_agrees_with_relplot_the_authors_package():
    """relplot (Blasiok and Nakkiran's code) discretises more coarsely: agreement within 2%."""
    relplot = pytest.importorskip("relplot")
    rng = np.random.default_rng(3)
    for scale in (1.0, 3.0):
        z = rng.normal(size=(4000, 5))
        y = (z + rng.gumbel(size=z.shape)).argmax(axis=1)
        p = np.exp(scale * z) / np.exp(scale * z).sum(axis=1, keepdims=True)
        correct = (p.argmax(axis=1) == y).astype(float)
        theirs = relplot.smECE(p.max(axis=1), correct)
        assert smooth_calibration_error(y, p) == pytest.approx(theirs, rel=0.02)
