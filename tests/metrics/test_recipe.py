"""The recipe for a metric (docs/design.md, "Adding a metric"), demonstrated on a new one.

``overconfidence`` below (mean top-label confidence minus accuracy: positive when a model is
over-confident) is defined here and nowhere else, the way the recipe defines a metric in its
kind module ``distcal/metrics/_<kind>.py``: validated by the metrics' input check, reduced
row by row, with its scikit-learn style function declaring a resampler. That alone gives it
the bootstrap's fast path (rows reduced once, the same numbers as calling it), option fixing
through ``with_options``, and scikit-learn scorers; in the package, an export from
``distcal/metrics/__init__.py`` and a line in ``docs/api.rst`` make it public (three files).
"""

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import make_scorer
from sklearn.model_selection import GridSearchCV

import distcal.metrics._bootstrap as B
from distcal.metrics import (
    bootstrap_ci,
    bootstrap_difference,
    declare_resampler,
    with_options,
)
from distcal.metrics._inputs import _NAMES, _check_inputs, _top_label

# ---- what the kind module holds: the statistic, its resampler, the public function ---------


def _gaps(probs, labels):
    """Each row's confidence minus its outcome (1 if the top class is the label), float64."""
    confidence, correct = _top_label(probs, labels)
    return confidence.to(torch.float64) - correct.to(torch.float64)


def _overconfidence_resampler(y_true, y_prob, *, sample_weight=None):
    if sample_weight is not None:  # fixed weights are not rows: decline
        return None
    probs, labels, _ = _check_inputs(y_prob, y_true, None, **_NAMES)
    gaps = _gaps(probs, labels).numpy()  # reduced once

    def score(rows):
        return np.array([gaps[r].mean() for r in rows])

    return score


@declare_resampler(_overconfidence_resampler)
def overconfidence(y_true, y_prob, *, sample_weight=None):
    """Mean top-label confidence minus accuracy (the signed calibration gap)."""
    probs, labels, weights = _check_inputs(y_prob, y_true, sample_weight, **_NAMES)
    gaps = _gaps(probs, labels).numpy()
    return float(np.average(gaps, weights=None if weights is None else weights.numpy()))


# ---- what it gets ---------------------------------------------------------------------------


def _simulated(n=2000, scale=1.0, seed=0):
    """Labels drawn from softmax(z); the model reports softmax(scale * z), so scale > 1 is
    over-confident and scale = 1 calibrated: the truth is known."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, 4))
    truth = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    y = np.array([rng.choice(4, p=p) for p in truth])
    reported = torch.softmax(torch.from_numpy(scale * logits), dim=1).numpy()
    return y, reported


def test_the_new_metric_measures_what_it_says():
    y_prob = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    # confidences 0.9, 0.6, 0.7, 0.8 (mean 0.75); correct: yes, no, yes, no (accuracy 0.5)
    assert overconfidence([0, 1, 1, 0], y_prob) == pytest.approx(0.25, abs=1e-15)
    y, calibrated = _simulated(scale=1.0)
    _, over = _simulated(scale=3.0)
    _, under = _simulated(scale=0.3)
    sd = 1 / np.sqrt(len(y))  # each gap lies in [-1, 1]: the mean's SD is at most 1 / sqrt(n)
    assert abs(overconfidence(y, calibrated)) < 4 * sd
    assert overconfidence(y, over) > 4 * sd
    assert overconfidence(y, under) < -4 * sd


def test_the_input_check_names_its_arguments():
    with pytest.raises(ValueError, match="y_prob must hold probabilities"):
        overconfidence([0, 1], np.array([[2.0, -1.0], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="y_true"):
        overconfidence([0, 5], np.array([[0.5, 0.5], [0.5, 0.5]]))


def _spy(monkeypatch):
    calls = []
    original = B.resampled_scorer

    def spy(metric, *args):
        score = original(metric, *args)
        calls.append(score.__module__ != "distcal.metrics._resampling")
        return score

    monkeypatch.setattr(B, "resampled_scorer", spy)
    return calls


def test_the_declaration_gives_the_bootstrap_fast_path_with_the_same_numbers(monkeypatch):
    y, p = _simulated(n=500, scale=2.0)
    calls = _spy(monkeypatch)
    fast = bootstrap_ci(overconfidence, y, p, n_resamples=100, random_state=0)
    slow = bootstrap_ci(lambda *a: overconfidence(*a), y, p, n_resamples=100, random_state=0)
    assert calls == [True, False]
    np.testing.assert_array_equal(fast.resamples, slow.resamples)
    assert fast.low > 0  # over-confident, and the interval says so
    _, q = _simulated(n=500, scale=1.0)
    fast = bootstrap_difference(overconfidence, y, p, q, n_resamples=100, random_state=0)
    slow = bootstrap_difference(lambda *a: overconfidence(*a), y, p, q, n_resamples=100,
                                random_state=0)  # fmt: skip
    np.testing.assert_array_equal(fast.resamples, slow.resamples)
    assert fast.excludes_zero


def test_options_are_fixed_with_with_options_and_weights_decline_the_fast_path(monkeypatch):
    y, p = _simulated(n=300, scale=2.0)
    weights = np.linspace(0.5, 1.5, len(y))
    calls = _spy(monkeypatch)
    weighted = with_options(overconfidence, sample_weight=weights)
    result = bootstrap_ci(weighted, y, p, n_resamples=20, random_state=0)
    assert calls == [False]  # declined: the metric is called on each resample
    assert result.estimate == overconfidence(y, p, sample_weight=weights)
    rows = np.random.RandomState(0).randint(0, len(y), size=(20, len(y)))
    expected = [overconfidence(y[r], p[r], sample_weight=weights) for r in rows]
    np.testing.assert_array_equal(result.resamples, expected)


def test_it_is_a_scikit_learn_scorer():
    """make_scorer, as distcal's own scorers are declared; binary problems pass 1-D p(1)."""
    y, p = _simulated(n=400, scale=1.0)
    X = np.log(p)
    scorer = make_scorer(overconfidence, greater_is_better=False, response_method="predict_proba")
    model = LogisticRegression(max_iter=500).fit(X, y)
    assert scorer(model, X, y) == -overconfidence(y, model.predict_proba(X))
    binary = y % 2
    search = GridSearchCV(LogisticRegression(), {"C": [0.01, 1.0]}, scoring=scorer, cv=2)
    search.fit(X, binary)
    assert np.isfinite(search.best_score_)
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
