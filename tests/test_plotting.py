"""Reliability diagrams and maximum-logit histograms, drawn with the Agg backend."""

import sys
import warnings

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from distcal.exceptions import DistcalWarning  # noqa: E402
from distcal.metrics import calibration_curve, calibration_error  # noqa: E402
from distcal.plotting import (  # noqa: E402
    ReliabilityDisplay,
    max_logit_histogram,
    reliability_diagram,
)


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
    legend = [text.get_text() for text in diagram_ax.figure.legends[0].get_texts()]
    assert any(f"{100 * ece:.2f}%" in text and "ECE" in text for text in legend)
    # Each gap is coloured by its direction, and the legend names the directions present.
    over = curve.mean_confidence[occupied] > curve.accuracy[occupied]
    colours = {tuple(patch.get_facecolor()[:3]) for patch in gap_bars.patches}
    assert len(colours) == (2 if over.any() and (~over).any() else 1)
    assert ("Gap: over-confident" in legend) == over.any()
    assert ("Gap: under-confident" in legend) == (~over).any()


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


def test_one_axes_is_taken_as_scikit_learns_displays_take_it():
    """Before: one Axes was refused unless show_histogram=False (issue 22)."""
    y, probs = make_data(seed=3)
    _, ax = plt.subplots()
    assert reliability_diagram(y, probs, ax=ax) is ax  # the diagram alone, no histogram
    display = ReliabilityDisplay.from_predictions(y, probs, ax=ax)
    assert display.ax_ is ax
    assert display.histogram_ax_ is None
    _, axes = plt.subplots(1, 3)  # one Axes per class
    classwise = ReliabilityDisplay.from_predictions(y, probs, kind="classwise", ax=axes)
    assert list(classwise.ax_) == list(axes)
    assert classwise.histogram_ax_ is None
    # asked for explicitly, a histogram needs room: a pair
    with pytest.raises(TypeError, match="'ax' parameter of reliability_diagram must be a pair"):
        reliability_diagram(y, probs, ax=ax, show_histogram=True)
    with pytest.raises(TypeError, match="'ax' parameter of reliability_diagram must be a"):
        reliability_diagram(y, probs, ax=[ax, ax], show_histogram=False)
    with pytest.raises(TypeError, match="'show_histogram' parameter of reliability_diagram"):
        reliability_diagram(y, probs, show_histogram="yes")


def test_a_classwise_diagram_of_many_classes_warns_of_its_size():
    """Before: 1,000 classes built a figure 368 inches tall without a word (issue 22)."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 1000))
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = rng.integers(0, 1000, size=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DistcalWarning)  # stop at the warning: draw nothing
        with pytest.raises(DistcalWarning, match=r"1000 panels \(one per class\) make a figure "
                           r"of 6\.9 x 36\d inches.*kind='top-label'"):  # fmt: skip
            ReliabilityDisplay.from_predictions(y, probs, kind="classwise", n_bins=5)
    y10, z10 = make_logits(n_classes=10, seed=1)
    small = ReliabilityDisplay.from_logits(y10, z10, kind="classwise", n_bins=5)
    assert small.figure_.get_size_inches()[1] < 20  # ten classes: no warning (it would fail)


def test_classwise_reliability_diagram_is_small_multiples_one_panel_per_class():
    y, probs = make_data(seed=4)
    diagram_axes, histogram_axes = reliability_diagram(y, probs, n_bins=8, kind="classwise")
    assert diagram_axes.shape == histogram_axes.shape == (3,)
    curve = calibration_curve(y, probs, n_bins=8, kind="classwise")
    for k, ax in enumerate(diagram_axes):
        assert ax.get_title() == f"class {k}"
        _, line = ax.get_lines()
        occupied = curve.counts[k] > 0
        np.testing.assert_allclose(line.get_ydata(), curve.accuracy[k][occupied])
        np.testing.assert_allclose(line.get_xdata(), curve.mean_confidence[k][occupied])
        assert len(histogram_axes[k].patches) == 1  # the class's own counts
    ece = calibration_error(y, probs, n_bins=8, kind="classwise")
    legend = [text.get_text() for text in diagram_axes[0].figure.legends[0].get_texts()]
    assert legend == ["Perfect calibration", f"Accuracy (classwise ECE = {100 * ece:.2f}%)"]


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


def make_logits(n_samples=600, n_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n_samples, n_classes))
    y = (z + rng.gumbel(size=z.shape)).argmax(axis=1)
    return y, 3 * z  # over-confident by a factor 3


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_several_models_overlay_in_distinct_colours_with_one_legend_entry_each():
    y, z = make_logits()
    models = {"uncalibrated": softmax(z), "T = 3": softmax(z / 3), "T = 6": softmax(z / 6)}
    display = ReliabilityDisplay.from_predictions(y, models, n_bins=10)
    ax = display.ax_
    curves = [line for line in ax.get_lines() if line.get_label() != "Perfect calibration"]
    assert [line.get_label().split(" (")[0] for line in curves] == list(models)
    assert len({line.get_color() for line in curves}) == 3
    for line, proba in zip(curves, models.values(), strict=True):
        curve = calibration_curve(y, proba, n_bins=10)
        occupied = curve.counts > 0
        np.testing.assert_allclose(line.get_ydata(), curve.accuracy[occupied])
        error = calibration_error(y, proba, n_bins=10)
        assert line.get_label().endswith(f"(ECE = {100 * error:.2f}%)")
    legend = [text.get_text() for text in display.legend_.get_texts()]
    assert legend.count("Perfect calibration") == 1
    assert len(legend) == 4
    # the histogram draws each model's counts as an outline in its colour
    assert [patch.get_edgecolor() for patch in display.histogram_ax_.patches] == [
        matplotlib.colors.to_rgba(line.get_color()) for line in curves
    ]


def test_the_sides_of_the_diagonal_are_labelled():
    y, z = make_logits(seed=1)
    display = ReliabilityDisplay.from_logits(y, z, show_histogram=False)
    texts = {text.get_text() for text in display.ax_.texts}
    assert {"over-confident", "under-confident"} <= texts


def test_from_logits_and_from_estimator_draw_what_from_predictions_draws():
    from distcal import TemperatureScaling

    y, z = make_logits(seed=2)
    ts = TemperatureScaling().fit(z[:300], y[:300])
    by_estimator = ReliabilityDisplay.from_estimator(ts, z[300:], y[300:], n_bins=8)
    by_predictions = ReliabilityDisplay.from_predictions(
        y[300:], ts.predict_proba(z[300:]), name="TemperatureScaling", n_bins=8
    )
    by_logits = ReliabilityDisplay.from_logits(y[300:], z[300:] / ts.temperature_, n_bins=8)
    for display in (by_estimator, by_logits):
        np.testing.assert_allclose(
            display.curves[next(iter(display.curves))]["accuracy"],
            by_predictions.curves["TemperatureScaling"]["accuracy"],
            equal_nan=True,
        )
    assert next(iter(by_estimator.curves)) == "TemperatureScaling"
    both = ReliabilityDisplay.from_estimator(
        {"TS": ts, "again": ts}, z[300:], y[300:], show_histogram=False
    )
    assert list(both.curves) == ["TS", "again"]


def test_a_figure_distcal_makes_keeps_its_legend_off_the_data():
    """The legend sits below the panels (it hides no bar, line or count)."""
    y, z = make_logits(seed=3)
    display = ReliabilityDisplay.from_logits(y, {"a": z, "b": z / 3})
    display.figure_.canvas.draw()
    renderer = display.figure_.canvas.get_renderer()
    legend_box = display.legend_.get_window_extent(renderer)
    for ax in (display.ax_, display.histogram_ax_):
        assert not legend_box.overlaps(ax.get_window_extent(renderer))
    single = ReliabilityDisplay.from_logits(y, z)
    assert single.figure_.get_size_inches()[0] == pytest.approx(3.3)  # one paper column


def test_grid_layout_and_classwise_small_multiples_are_readable_panels():
    y, z = make_logits(n_classes=10, n_samples=2000, seed=4)
    models = {f"T = {t}": z / t for t in (1, 2, 3, 4)}
    grid = ReliabilityDisplay.from_logits(y, models, layout="grid")
    assert grid.ax_.shape == (4,)
    assert [ax.get_title().split("\n")[0] for ax in grid.ax_] == list(models)
    assert grid.figure_.get_size_inches()[0] == pytest.approx(6.9)  # the page width
    for ax in grid.ax_:
        assert ax.title.get_fontsize() >= 7
    classwise = ReliabilityDisplay.from_logits(y, models, kind="classwise", show_histogram=False)
    assert classwise.ax_.shape == (10,)
    rows = {ax.get_subplotspec().rowspan.start for ax in classwise.ax_}
    assert len(rows) == 2  # ten classes in two rows of five, not one strip
    # every class panel overlays the four models in the same four colours
    colours = [tuple(line.get_color() for line in ax.get_lines()[1:]) for ax in classwise.ax_]
    assert len(set(colours)) == 1
    assert len(set(colours[0])) == 4


def test_display_errors_name_the_argument():
    y, z = make_logits(seed=5)
    with pytest.raises(ValueError, match="name must be None when logits is a mapping"):
        ReliabilityDisplay.from_logits(y, {"a": z}, name="b")
    with pytest.raises(ValueError, match=r"'layout' parameter of ReliabilityDisplay\.plot"):
        ReliabilityDisplay.from_logits(y, z, layout="strip")
    _, ax = plt.subplots()
    with pytest.raises(TypeError, match=r"sequence of 2 Axes for 2 panels \(one per model\)"):
        ReliabilityDisplay.from_logits(
            y, {"a": z, "b": z}, layout="grid", ax=ax, show_histogram=False
        )
    with pytest.raises(TypeError, match="estimator 'x' has no predict_proba"):
        ReliabilityDisplay.from_estimator({"x": object()}, z, y)
    with pytest.raises(ValueError, match=r"y_prob\['b'\] must hold probabilities"):
        ReliabilityDisplay.from_predictions(y, {"a": softmax(z), "b": z})
