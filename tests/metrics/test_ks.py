"""Kolmogorov-Smirnov calibration error against a naive version."""

import numpy as np
import pytest
import torch

from distcal.metrics import ks_calibration_error
from distcal.metrics.functional import ks_calibration_error as ks_functional


def _naive(y, proba, w=None, kind="top-label"):
    w = np.ones(len(y)) if w is None else np.asarray(w, dtype=float)
    w = w / w.sum()
    if kind == "top-label":
        pairs = [(proba.max(axis=1), (proba.argmax(axis=1) == y).astype(float))]
    else:
        pairs = [(proba[:, k], (y == k).astype(float)) for k in range(proba.shape[1])]
    errors = []
    for confidence, outcome in pairs:
        order = np.argsort(confidence, kind="stable")
        errors.append(np.abs(np.cumsum((w * (outcome - confidence))[order])).max())
    return float(np.mean(errors))


@pytest.mark.parametrize("kind", ["top-label", "classwise"])
def test_matches_a_naive_version_with_weights(kind):
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(5), size=700)
    y = rng.integers(0, 5, size=700)
    w = rng.uniform(0, 2, size=700)
    assert ks_calibration_error(y, proba, kind=kind, sample_weight=w) == pytest.approx(
        _naive(y, proba, w, kind), rel=1e-12
    )
    value = ks_functional(torch.tensor(proba), torch.tensor(y), kind=kind)
    assert float(value) == pytest.approx(_naive(y, proba, kind=kind), rel=1e-12)


def test_calibrated_data_score_near_zero_and_overconfident_data_do_not():
    rng = np.random.default_rng(1)
    p = rng.uniform(size=20000)
    y = (rng.uniform(size=20000) < p).astype(int)
    assert ks_calibration_error(y, p) < 0.01
    assert ks_calibration_error(y, np.clip(1.5 * p - 0.25, 0, 1)) > 0.03


def test_bad_kind_is_named():
    with pytest.raises(Exception, match="'kind' parameter of ks_calibration_error"):
        ks_calibration_error([0, 1], [[0.5, 0.5], [0.2, 0.8]], kind="marginal")
