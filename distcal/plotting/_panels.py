"""The panels of a reliability diagram: their list, their Axes, and what each one draws.

:class:`~distcal.plotting.ReliabilityDisplay` computes the curves and decides the layout; the
functions here read its ``curves``, ``errors``, ``kind``, ``strategy`` and ``weighted`` and
draw: the Axes grid sized for a paper (or the Axes the user gave, checked), the bars with their
gaps or one curve per model, and the count histograms below.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..exceptions import DistcalWarning
from ._common import (
    BAR_COLOR,
    COLUMN_WIDTH,
    OVER_CONFIDENT,
    PAGE_WIDTH,
    UNDER_CONFIDENT,
    check_axes,
    model_color,
)

#: The name of the error written in the legend, by (kind, strategy).
ERROR_NAMES = {
    ("top-label", "uniform"): "ECE",
    ("top-label", "quantile"): "adaptive ECE",
    ("classwise", "uniform"): "classwise ECE",
    ("classwise", "quantile"): "classwise adaptive ECE",
}
#: Height (inches) above which a figure distcal lays out warns: about two printed pages.
TALLEST_FIGURE = 20.0


def list_panels(display, layout: str) -> list[tuple[str | None, list[tuple[str, int, dict]]]]:
    """List the panels to draw: (title, [(model, colour index, one curve), ...]) each."""
    models = list(display.curves)
    if display.kind == "classwise":
        n_classes = display.curves[models[0]]["accuracy"].shape[0]
        panels = []
        for k in range(n_classes):
            series = []
            for i, model in enumerate(models):
                curve = display.curves[model]
                edges = curve["bin_edges"]
                series.append(
                    (
                        model,
                        i,
                        {
                            "bin_edges": edges[k] if edges.ndim == 2 else edges,
                            "counts": curve["counts"][k],
                            "mean_confidence": curve["mean_confidence"][k],
                            "accuracy": curve["accuracy"][k],
                        },
                    )
                )
            panels.append((f"class {k}", series))
        return panels
    series = [(model, i, display.curves[model]) for i, model in enumerate(models)]
    if layout == "grid" and len(models) > 1:
        return [(model, [entry]) for model, entry in zip(models, series, strict=True)]
    return [(None, series)]


def panel_axes(display, ax, n_panels: int, show_histogram: bool, plt, caller: str):
    """Diagram and histogram Axes (lists of n_panels), the figure, and its column count.

    The column count is None on Axes the user gave (every panel is then labelled).
    """
    if ax is None:
        ncols = 1 if n_panels == 1 else min(n_panels, 5 if n_panels > 6 else 3)
        nrows = math.ceil(n_panels / ncols)
        width = COLUMN_WIDTH if ncols == 1 else PAGE_WIDTH
        panel = width / ncols
        ratios = [3, 1] * nrows if show_histogram else [1] * nrows
        height = nrows * panel * (4 / 3 if show_histogram else 1.0) + 0.5
        if height > TALLEST_FIGURE:
            what = "one per class" if display.kind == "classwise" else "one per model"
            warnings.warn(
                f"{caller}: {n_panels} panels ({what}) make a figure of {width:.1f} x "
                f"{height:.0f} inches, too tall to read or print. For many classes, draw "
                "the top-label diagram (kind='top-label'), read the classwise calibration "
                "error as a number (distcal.metrics.classwise_calibration_error), or pass "
                "Axes of your own (ax=).",
                DistcalWarning,
                stacklevel=4,
            )
        figure = plt.figure(figsize=(width, height), layout="constrained")
        grid = figure.add_gridspec(len(ratios), ncols, height_ratios=ratios)
        diagrams, histograms = [], []
        for p in range(n_panels):
            row, col = divmod(p, ncols)
            step = 2 if show_histogram else 1
            diagram = figure.add_subplot(grid[step * row, col])
            diagrams.append(diagram)
            if show_histogram:
                histograms.append(figure.add_subplot(grid[step * row + 1, col], sharex=diagram))
        return diagrams, histograms or None, figure, ncols
    if n_panels == 1:
        if show_histogram:
            diagram, histogram = check_axes(ax, pair=True, caller=caller)
            return [diagram], [histogram], diagram.figure, None
        diagram = check_axes(ax, pair=False, caller=caller)
        return [diagram], None, diagram.figure, None
    from matplotlib.axes import Axes

    array = np.asarray(ax, dtype=object)
    expected = (2, n_panels) if show_histogram else (n_panels,)
    if array.shape != expected or not all(isinstance(a, Axes) for a in array.flat):
        what = (
            f"an array of shape (2, {n_panels}): a row of diagram Axes above a row of "
            "histogram Axes"
            if show_histogram
            else f"a sequence of {n_panels} Axes"
        )
        raise TypeError(
            f"The 'ax' parameter of {caller} must be {what} for {n_panels} panels "
            f"({'one per class' if display.kind == 'classwise' else 'one per model'}); got "
            f"{ax!r}. Pass ax=None to let distcal lay the panels out."
        )
    if show_histogram:
        return list(array[0]), list(array[1]), array[0, 0].figure, None
    return list(array), None, array[0].figure, None


def error_text(display, model: str) -> str:
    return f"{ERROR_NAMES[display.kind, display.strategy]} = {100 * display.errors[model]:.2f}%"


def draw_diagram(
    display, ax, series, title, above_histogram, *, first_column, bottom, regions
) -> list:
    ax.plot(
        [0, 1], [0, 1], linestyle="--", color="0.5", linewidth=0.8, zorder=1,
        label="Perfect calibration",
    )  # fmt: skip
    # The two sides of the diagonal, named along it; bars and curves are drawn over them.
    sides = (((0.3, 0.4), "under-confident"), ((0.4, 0.3), "over-confident"))
    for (x, y), text in sides if regions else ():
        ax.text(
            x, y, text, rotation=45, rotation_mode="anchor", transform_rotates_text=True,
            ha="center", va="center", color="0.45", fontsize="small", style="italic",
            zorder=0.5,
        )  # fmt: skip
    proxies = []
    if len(series) == 1 and display.kind == "top-label":
        proxies = draw_bars(display, ax, series[0], in_grid=title is not None)
        if title is not None:  # one model per panel: its name and error head the panel
            title = f"{title}\n{error_text(display, series[0][0])}"
    else:
        for model, index, curve in series:
            occupied = curve["counts"] > 0
            ax.plot(
                curve["mean_confidence"][occupied],
                curve["accuracy"][occupied],
                marker="o",
                markersize=3,
                linewidth=1.2,
                color=model_color(index),
                label=f"{model} ({error_text(display, model)})",
                zorder=3,
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    if title is not None:
        ax.set_title(title)
    if first_column:
        ax.set_ylabel("Accuracy" if display.kind == "top-label" else "Observed frequency")
    if above_histogram:
        ax.tick_params(labelbottom=False)  # the histogram below carries the x axis
    elif bottom:
        ax.set_xlabel(x_label(display))
    return proxies


def draw_bars(display, ax, entry, *, in_grid: bool) -> list:
    from matplotlib.patches import Patch

    model, _, curve = entry
    occupied = curve["counts"] > 0
    edges = curve["bin_edges"]
    left, width = edges[:-1][occupied], np.diff(edges)[occupied]
    accuracy, confidence = curve["accuracy"][occupied], curve["mean_confidence"][occupied]
    ax.bar(
        left,
        accuracy,
        width=width,
        align="edge",
        color=BAR_COLOR,
        alpha=0.85,
        edgecolor="black",
        linewidth=0.4,
        label="Accuracy" if in_grid else f"{model} ({error_text(display, model)})",
        zorder=2,
    )
    # The gap runs from the accuracy to the mean confidence: above the bar where the model
    # is over-confident, into it where it is under-confident; its colour says which.
    over = confidence > accuracy
    colors = np.where(over, OVER_CONFIDENT, UNDER_CONFIDENT)
    ax.bar(
        left,
        confidence - accuracy,
        bottom=accuracy,
        width=width,
        align="edge",
        color=colors,
        alpha=0.35,
        edgecolor=colors,
        hatch="//",
        linewidth=0.4,
        label="_nolegend_",
        zorder=2.5,
    )
    # Legend entries for the gap's directions that occur (the bars carry no label).
    return [
        Patch(facecolor=color, edgecolor=color, alpha=0.35, hatch="//", label=text)
        for present, color, text in (
            (over.any(), OVER_CONFIDENT, "Gap: over-confident"),
            ((~over).any(), UNDER_CONFIDENT, "Gap: under-confident"),
        )
        if present
    ]


def draw_histogram(display, ax, series, *, first_column, bottom, regions) -> None:
    if len(series) == 1 and display.kind == "top-label":
        _, _, curve = series[0]
        edges = curve["bin_edges"]
        ax.bar(
            edges[:-1],
            curve["counts"],
            width=np.diff(edges),
            align="edge",
            color=BAR_COLOR,
            alpha=0.85,
            edgecolor="black",
            linewidth=0.4,
        )
    else:
        for _, index, curve in series:
            ax.stairs(curve["counts"], curve["bin_edges"], color=model_color(index))
    ax.set_xlim(0, 1)
    if bottom:
        ax.set_xlabel(x_label(display))
    if first_column:
        ax.set_ylabel("Weight" if display.weighted else "Count")


def x_label(display) -> str:
    return "Confidence" if display.kind == "top-label" else "Predicted probability"
