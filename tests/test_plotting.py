"""Reliability diagrams and maximum-logit histograms, drawn with the Agg backend."""

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from distcal.metrics import calibration_curve, calibration_error  # noqa: E402
from distcal.plotting import max_logit_histogram, reliability_diagram  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def make_data(n_samples=400, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(n_classes, 0.5), size=n_samples)
    y = np.where(
        rng.random(n_samples) < 0.6, probs.argmax(axis=1), rng.integers(0, n_classes, n_samples)
    )
    return y, probs


def bar_heights(container):
    return np.array([patch.get_height() for patch in container.patches])


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
def test_reliability_diagram_draws_the_curve(strategy):
    y, probs = make_data()
    diagram_ax, histogram_ax = reliability_diagram(y, probs, n_bins=10, strategy=strategy)
    assert isinstance(diagram_ax, Axes)
    assert isinstance(histogram_ax, Axes)
    curve = calibration_curve(y, probs, n_bins=10, strategy=strategy)
    occupied = curve.counts > 0
    accuracy_bars, gap_bars = diagram_ax.containers
    np.testing.assert_allclose(bar_heights(accuracy_bars), curve.accuracy[occupied])
    np.testing.assert_allclose(
        [patch.get_x() for patch in accuracy_bars.patches], curve.bin_edges[:-1][occupied]
    )
    np.testing.assert_allclose(
        [patch.get_width() for patch in accuracy_bars.patches],
        np.diff(curve.bin_edges)[occupied],
    )
    # The gap runs from the accuracy to the mean confidence.
    np.testing.assert_allclose(
        [patch.get_y() + patch.get_height() for patch in gap_bars.patches],
        curve.mean_confidence[occupied],
    )
    (diagonal,) = diagram_ax.get_lines()
    np.testing.assert_array_equal(diagonal.get_xydata(), [[0, 0], [1, 1]])
    (histogram,) = histogram_ax.containers
    np.testing.assert_allclose(bar_heights(histogram), curve.counts)
    ece = calibration_error(y, probs, n_bins=10, strategy=strategy)
    legend = [text.get_text() for text in diagram_ax.get_legend().get_texts()]
    assert any(f"{100 * ece:.2f}%" in text and "ECE" in text for text in legend)


def test_reliability_diagram_on_given_axes_without_histogram():
    y, probs = make_data(seed=1)
    _, ax = plt.subplots()
    returned = reliability_diagram(y, probs, ax=ax, show_histogram=False, label="student")
    assert returned is ax
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert any(text.startswith("student (ECE = ") for text in legend)


def test_reliability_diagram_on_a_given_pair_of_axes():
    y, probs = make_data(seed=2)
    _, axes = plt.subplots(2, 1)
    returned = reliability_diagram(y, probs, ax=axes)
    assert returned == tuple(axes)


def test_reliability_diagram_rejects_a_single_axes_with_histogram():
    y, probs = make_data(seed=3)
    _, ax = plt.subplots()
    with pytest.raises(TypeError, match="'ax' parameter of reliability_diagram must be a pair"):
        reliability_diagram(y, probs, ax=ax)
    with pytest.raises(TypeError, match="'ax' parameter of reliability_diagram must be a"):
        reliability_diagram(y, probs, ax=[ax, ax], show_histogram=False)


def test_classwise_reliability_diagram_draws_one_line_per_class():
    y, probs = make_data(seed=4)
    diagram_ax, histogram_ax = reliability_diagram(y, probs, n_bins=8, kind="classwise")
    curve = calibration_curve(y, probs, n_bins=8, kind="classwise")
    lines = [line for line in diagram_ax.get_lines() if line.get_label().startswith("class ")]
    assert len(lines) == 3
    for k, line in enumerate(lines):
        occupied = curve.counts[k] > 0
        np.testing.assert_allclose(line.get_ydata(), curve.accuracy[k][occupied])
        np.testing.assert_allclose(line.get_xdata(), curve.mean_confidence[k][occupied])
    assert len(histogram_ax.patches) == 3  # one stairs outline per class
    ece = calibration_error(y, probs, n_bins=8, kind="classwise")
    legend = [text.get_text() for text in diagram_ax.get_legend().get_texts()]
    assert f"classwise ECE = {100 * ece:.2f}%" in legend


def test_reliability_diagram_validates_like_the_metrics():
    y, probs = make_data(seed=5)
    with pytest.raises(ValueError, match="'n_bins' parameter of reliability_diagram"):
        reliability_diagram(y, probs, n_bins=0)
    with pytest.raises(ValueError, match="y_prob must hold probabilities"):
        reliability_diagram(y, probs * 2)


def test_max_logit_histogram_clean_and_masked():
    rng = np.random.default_rng(0)
    clean = rng.normal(size=(300, 10)) + 8 * np.eye(10)[rng.integers(0, 10, 300)]
    masked = rng.normal(size=(200, 10)) * 2
    ax = max_logit_histogram(clean, masked_logits=masked, bins=12)
    assert isinstance(ax, Axes)
    clean_bars, masked_bars = ax.containers
    assert len(clean_bars.patches) == len(masked_bars.patches) == 12
    assert bar_heights(clean_bars).sum() == 300
    assert bar_heights(masked_bars).sum() == 200
    # Both histograms share one set of bins spanning all maximum logits.
    clean_x = [patch.get_x() for patch in clean_bars.patches]
    assert clean_x == [patch.get_x() for patch in masked_bars.patches]
    all_max = np.concatenate([clean.max(axis=1), masked.max(axis=1)])
    assert clean_x[0] == pytest.approx(all_max.min())
    expected, _ = np.histogram(clean.max(axis=1), bins=np.histogram_bin_edges(all_max, bins=12))
    np.testing.assert_array_equal(bar_heights(clean_bars), expected)
    assert [text.get_text() for text in ax.get_legend().get_texts()] == ["clean", "masked"]


def test_max_logit_histogram_options():
    rng = np.random.default_rng(1)
    _, ax = plt.subplots()
    returned = max_logit_histogram(
        rng.normal(size=(50, 4)), bins=[-3.0, 0.0, 3.0, 6.0], ax=ax, labels=("a", "b")
    )
    assert returned is ax
    assert len(ax.containers[0].patches) == 3
    with pytest.raises(ValueError, match="'bins' parameter of max_logit_histogram"):
        max_logit_histogram(rng.normal(size=(5, 3)), bins=0)
    with pytest.raises(TypeError, match="'bins' parameter of max_logit_histogram"):
        max_logit_histogram(rng.normal(size=(5, 3)), bins="auto")
    with pytest.raises(ValueError, match="'labels' parameter"):
        max_logit_histogram(rng.normal(size=(5, 3)), labels="clean")
    with pytest.raises(ValueError, match="masked_logits contains NaN"):
        max_logit_histogram(rng.normal(size=(5, 3)), masked_logits=np.full((5, 3), np.nan))


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    y, probs = make_data(n_samples=20)
    with pytest.raises(ImportError, match=r'pip install "distcal\[plot\]"'):
        reliability_diagram(y, probs)
    with pytest.raises(ImportError, match=r'pip install "distcal\[plot\]"'):
        max_logit_histogram(np.log(probs))


def test_max_logit_histogram_densities_integrate_to_one():
    rng = np.random.default_rng(3)
    clean, masked = rng.normal(size=(50, 4)), rng.normal(size=(200, 4))
    ax = max_logit_histogram(clean, masked_logits=masked, bins=8, density=True)
    assert ax.get_ylabel() == "Density"
    for container in ax.containers:
        areas = [patch.get_height() * patch.get_width() for patch in container]
        assert sum(areas) == pytest.approx(1.0)
    plt.close("all")
