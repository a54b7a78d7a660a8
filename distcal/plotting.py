"""Reliability diagrams and maximum-logit histograms.

matplotlib is an optional dependency (``pip install "distcal[plot]"``); it is imported inside
each function. The reliability diagram draws :func:`distcal.metrics.calibration_curve`, so its
bins are exactly those of the calibration errors.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
import torch

from ._device import to_numpy
from ._validation import check_logits
from .metrics import functional as F

__all__ = ["max_logit_histogram", "reliability_diagram"]

_ERROR_NAMES = {
    ("top-label", "uniform"): "ECE",
    ("top-label", "quantile"): "adaptive ECE",
    ("classwise", "uniform"): "classwise ECE",
    ("classwise", "quantile"): "classwise adaptive ECE",
}


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            'distcal.plotting requires matplotlib. Install it with: pip install "distcal[plot]"'
        ) from exc
    return plt


def _check_axes(ax, *, pair: bool, caller: str):
    from matplotlib.axes import Axes

    if pair:
        if (
            isinstance(ax, Axes)
            or not isinstance(ax, Sequence | np.ndarray)
            or len(ax) != 2
            or not all(isinstance(a, Axes) for a in ax)
        ):
            raise TypeError(
                f"The 'ax' parameter of {caller} must be a pair (diagram_ax, histogram_ax) of "
                f"matplotlib Axes when show_histogram=True; got {ax!r}. Pass "
                "show_histogram=False to draw the diagram alone on one Axes."
            )
        return tuple(ax)
    if not isinstance(ax, Axes):
        raise TypeError(
            f"The 'ax' parameter of {caller} must be a matplotlib Axes or None; got {ax!r}."
        )
    return ax


def reliability_diagram(
    y_true,
    y_prob,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    kind: str = "top-label",
    ax=None,
    show_histogram: bool = True,
    label: str | None = None,
    sample_weight=None,
):
    """Draw a reliability diagram: accuracy against confidence per bin.

    Top-label diagrams draw one bar per non-empty bin at the height of its accuracy, the gap to
    the bin's mean confidence on top of it, and the diagonal of perfect calibration; the
    legend gives the calibration error of the same bins. Classwise diagrams draw one line per
    class through the points (mean confidence, frequency of the class). Below, an optional
    histogram shows the weight (sample count) of every bin.

    Parameters
    ----------
    y_true : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    y_prob : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    n_bins : int, default=15
        Number of bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    kind : {"top-label", "classwise"}, default="top-label"
        One diagram of the top-label confidence, or one curve per class.
    ax : matplotlib Axes or pair of Axes, default=None
        Where to draw: one Axes when ``show_histogram=False``, else a pair
        ``(diagram_ax, histogram_ax)``. None creates a new figure.
    show_histogram : bool, default=True
        Whether to draw the histogram of bin counts below the diagram.
    label : str, default=None
        Name of the model in the legend (for instance when several diagrams are compared).
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights; the histogram then shows weights.

    Returns
    -------
    ax : matplotlib Axes or tuple of two Axes
        The diagram's Axes, or ``(diagram_ax, histogram_ax)`` when ``show_histogram=True``.

    See Also
    --------
    distcal.metrics.calibration_curve : The values drawn.
    distcal.metrics.calibration_error : The error written in the legend.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from distcal.plotting import reliability_diagram
    >>> y_prob = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> diagram_ax, histogram_ax = reliability_diagram([0, 1, 1, 0], y_prob, n_bins=4)
    >>> diagram_ax.get_legend_handles_labels()[1]
    ['Perfect calibration', 'Accuracy (ECE = 25.00%)', 'Gap']
    >>> import matplotlib.pyplot as plt
    >>> plt.close("all")
    """
    plt = _pyplot()
    caller = "reliability_diagram"
    names = {"preds_name": "y_prob", "target_name": "y_true"}
    options = {"n_bins": n_bins, "strategy": strategy, "kind": kind}
    curve = F._calibration_curve(
        y_prob, y_true, **options, sample_weight=sample_weight, caller=caller, **names
    )
    error = float(
        F._calibration_error(
            y_prob,
            y_true,
            **options,
            norm="l1",
            sample_weight=sample_weight,
            caller=caller,
            **names,
        )
    )
    edges, counts = to_numpy(curve.bin_edges), to_numpy(curve.counts)
    accuracy, confidence = to_numpy(curve.accuracy), to_numpy(curve.mean_confidence)

    if ax is None:
        if show_histogram:
            _, axes = plt.subplots(
                2, 1, sharex=True, figsize=(5, 6.5), gridspec_kw={"height_ratios": [3, 1]}
            )
            diagram_ax, histogram_ax = axes
        else:
            _, diagram_ax = plt.subplots(figsize=(5, 5))
    elif show_histogram:
        diagram_ax, histogram_ax = _check_axes(ax, pair=True, caller=caller)
    else:
        diagram_ax = _check_axes(ax, pair=False, caller=caller)

    error_text = f"{_ERROR_NAMES[kind, strategy]} = {100 * error:.2f}%"
    diagram_ax.plot(
        [0, 1], [0, 1], linestyle="--", color="0.5", linewidth=1, label="Perfect calibration"
    )
    if kind == "top-label":
        occupied = counts > 0
        left, width = edges[:-1][occupied], np.diff(edges)[occupied]
        diagram_ax.bar(
            left,
            accuracy[occupied],
            width=width,
            align="edge",
            color="C0",
            edgecolor="black",
            linewidth=0.5,
            label=f"{label or 'Accuracy'} ({error_text})",
        )
        # The gap runs from the accuracy to the mean confidence: above the bar when the model is
        # over-confident, into it when under-confident.
        diagram_ax.bar(
            left,
            confidence[occupied] - accuracy[occupied],
            bottom=accuracy[occupied],
            width=width,
            align="edge",
            color="C3",
            alpha=0.3,
            edgecolor="C3",
            hatch="//",
            linewidth=0.5,
            label="Gap",
        )
        diagram_ax.set_xlabel("Confidence")
        diagram_ax.set_ylabel("Accuracy")
    else:
        class_edges = np.broadcast_to(edges, (accuracy.shape[0], edges.shape[-1]))
        for k in range(accuracy.shape[0]):
            occupied = counts[k] > 0
            diagram_ax.plot(
                confidence[k][occupied],
                accuracy[k][occupied],
                marker="o",
                markersize=3,
                label=f"class {k}",
            )
        # A legend entry without a line carries the error.
        diagram_ax.plot([], [], " ", label=f"{label + ': ' if label else ''}{error_text}")
        diagram_ax.set_xlabel("Predicted probability of the class")
        diagram_ax.set_ylabel("Observed frequency of the class")
    diagram_ax.set_xlim(0, 1)
    diagram_ax.set_ylim(0, 1)
    diagram_ax.legend(loc="upper left")

    if not show_histogram:
        return diagram_ax
    if kind == "top-label":
        histogram_ax.bar(
            edges[:-1],
            counts,
            width=np.diff(edges),
            align="edge",
            color="C0",
            edgecolor="black",
            linewidth=0.5,
        )
    else:
        for k in range(counts.shape[0]):
            histogram_ax.stairs(counts[k], class_edges[k], label=f"class {k}")
    histogram_ax.set_xlim(0, 1)
    histogram_ax.set_xlabel("Confidence" if kind == "top-label" else "Predicted probability")
    histogram_ax.set_ylabel("Count" if sample_weight is None else "Weight")
    return diagram_ax, histogram_ax


def _max_logits(logits, name: str) -> np.ndarray:
    values = check_logits(logits, name=name).values
    return to_numpy(values.max(dim=1).values.to(torch.float64))


def max_logit_histogram(
    logits,
    *,
    masked_logits=None,
    bins=30,
    ax=None,
    labels: Sequence[str] = ("clean", "masked"),
    density: bool = False,
):
    """Draw histograms of each sample's maximum logit, optionally before and after masking.

    Networks trained on distilled data produce maximum logits concentrated in a narrow, high
    range, which makes them over-confident and leaves temperature scaling little to fit;
    masking the inputs spreads the maximum logits out. Comparing the two histograms on the same
    bins shows it.

    Parameters
    ----------
    logits : array-like or Tensor of shape (n_samples, n_classes)
        Logits of the clean inputs (1-D binary decision values ``z`` count as ``[0, z]``).
    masked_logits : array-like or Tensor of shape (n_masked_samples, n_classes), default=None
        Logits of masked inputs, drawn as a second histogram on the same bins.
    bins : int or sequence of float, default=30
        Number of equal-width bins spanning all the maximum logits, or explicit bin edges.
    ax : matplotlib Axes, default=None
        Where to draw; None creates a new figure.
    labels : pair of str, default=("clean", "masked")
        Legend labels of ``logits`` and ``masked_logits``.
    density : bool, default=False
        Draw densities instead of counts, so that histograms of different sizes (several masked
        copies per clean sample) compare by shape.

    Returns
    -------
    ax : matplotlib Axes
        The Axes drawn on.

    See Also
    --------
    distcal.MaskedTemperatureScaling : Temperature scaling fitted on masked inputs.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from distcal.plotting import max_logit_histogram
    >>> rng = np.random.default_rng(0)
    >>> ax = max_logit_histogram(rng.normal(size=(100, 10)), bins=5)
    >>> int(sum(patch.get_height() for patch in ax.patches))
    100
    >>> import matplotlib.pyplot as plt
    >>> plt.close("all")
    """
    plt = _pyplot()
    caller = "max_logit_histogram"
    if isinstance(bins, numbers.Integral) and not isinstance(bins, bool):
        if bins < 1:
            raise ValueError(
                f"The 'bins' parameter of {caller} must be an int in the range [1, inf) or a "
                f"sequence of bin edges. Got {bins!r} instead."
            )
    elif isinstance(bins, str | bool) or np.ndim(bins) != 1 or len(bins) < 2:
        raise TypeError(
            f"The 'bins' parameter of {caller} must be an int in the range [1, inf) or a "
            f"sequence of at least 2 bin edges. Got {bins!r} instead."
        )
    if isinstance(labels, str) or len(labels) != 2:
        raise ValueError(
            f"The 'labels' parameter of {caller} must be a pair of str (clean, masked). "
            f"Got {labels!r} instead."
        )
    series = [(_max_logits(logits, "logits"), labels[0])]
    if masked_logits is not None:
        series.append((_max_logits(masked_logits, "masked_logits"), labels[1]))
    # One set of edges for both histograms, so their bars are comparable.
    edges = np.histogram_bin_edges(np.concatenate([values for values, _ in series]), bins=bins)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    else:
        ax = _check_axes(ax, pair=False, caller=caller)
    alpha = 0.8 if len(series) == 1 else 0.55
    for i, (values, name) in enumerate(series):
        ax.hist(
            values,
            bins=edges,
            alpha=alpha,
            color=f"C{i}",
            edgecolor="black",
            linewidth=0.5,
            label=name,
            density=bool(density),
        )
    ax.set_xlabel("Maximum logit")
    ax.set_ylabel("Density" if density else "Count")
    ax.legend()
    return ax
