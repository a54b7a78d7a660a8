"""Reliability diagrams: one model or several, one panel or small multiples.

:class:`ReliabilityDisplay` follows scikit-learn's display convention (``from_predictions``,
``from_logits``, ``from_estimator``, ``plot``); :func:`reliability_diagram` is its one-call
form. The curves are :func:`distcal.metrics.calibration_curve`, so the bins drawn are exactly
those of the calibration errors written in the legend.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import numpy as np
import torch

from .._device import to_numpy
from .._softmax import softmax
from .._validation import check_logits
from ..metrics.functional import binned_reliability
from ._common import PAPER_STYLE, pyplot
from ._panels import draw_diagram, draw_histogram, list_panels, panel_axes

__all__ = ["ReliabilityDisplay", "reliability_diagram"]

_LAYOUTS = ("overlay", "grid")


def _wants_histogram(show_histogram, ax, n_panels: int, caller: str) -> bool:
    """Resolve ``show_histogram="auto"``: histograms unless ``ax`` is one Axes per panel.

    scikit-learn's displays draw on the one Axes they are given; so do these, leaving the
    histogram out, unless ``ax`` has room for it (a pair, or an array of shape (2, n_panels)).
    """
    if show_histogram == "auto":
        if ax is None:
            return True
        if n_panels == 1:
            from matplotlib.axes import Axes

            return not isinstance(ax, Axes)
        return np.asarray(ax, dtype=object).shape == (2, n_panels)
    if not isinstance(show_histogram, bool | np.bool_):
        raise TypeError(
            f"The 'show_histogram' parameter of {caller} must be True, False or 'auto'; got "
            f"{show_histogram!r} instead."
        )
    return bool(show_histogram)


def _as_mapping(values, name, default_name: str, argument: str) -> dict:
    """``{name: values}`` from one value (named ``name``) or a mapping of names to values."""
    if isinstance(values, Mapping):
        if name is not None:
            raise ValueError(
                f"name must be None when {argument} is a mapping of names to {argument} (the "
                f"keys are the names); got name={name!r}."
            )
        if not values:
            raise ValueError(f"{argument} is an empty mapping; give at least one model.")
        for key in values:
            if not isinstance(key, str):
                raise TypeError(
                    f"The keys of {argument} must be str (the names in the legend); got "
                    f"{type(key).__name__} {key!r}."
                )
        return dict(values)
    return {default_name if name is None else str(name): values}


class ReliabilityDisplay:
    """Reliability diagram of one or several models on the same labels.

    Accuracy is drawn against confidence, bin by bin, with the diagonal of perfect calibration;
    the side below the diagonal is labelled over-confident, the side above under-confident.
    One model is drawn as bars with the gap to each bin's mean confidence (coloured by its
    direction); several models are drawn as lines in distinct colours, one legend entry each
    with its calibration error. ``layout="grid"`` draws one panel per model instead, and
    classwise diagrams are small multiples (one panel per class, the models overlaid). A
    histogram of the bin counts can sit below each panel.

    Build it with :meth:`from_predictions`, :meth:`from_logits` or :meth:`from_estimator`
    (which also plot), or from curves you computed, then :meth:`plot`.

    Parameters
    ----------
    curves : dict of str to Bunch
        Per model name, its calibration curve as returned by
        :func:`distcal.metrics.calibration_curve` (``bin_edges``, ``counts``,
        ``mean_confidence``, ``accuracy``; one row per class when classwise).
    errors : dict of str to float
        Per model name, the calibration error of the same bins, written in the legend.
    kind : {"top-label", "classwise"}, default="top-label"
        Which confidences the curves bin.
    strategy : {"uniform", "quantile"}, default="uniform"
        The binning of the curves (names the error in the legend).
    weighted : bool, default=False
        Whether the counts are sample weights (the histogram's axis label says so).

    Attributes
    ----------
    ax_ : matplotlib Axes or ndarray of Axes
        The diagram's Axes; an array of them (one per panel) when there are several panels.
    histogram_ax_ : matplotlib Axes, ndarray of Axes or None
        The histograms' Axes, matched to ``ax_``; None without histograms.
    figure_ : matplotlib Figure
        The figure drawn on.
    legend_ : matplotlib Legend
        The legend: one entry per model, the diagonal, and the gap's two directions.

    See Also
    --------
    reliability_diagram : The one-call form for one model.
    distcal.metrics.calibration_curve : The values drawn.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from distcal.plotting import ReliabilityDisplay
    >>> rng = np.random.default_rng(0)
    >>> logits = 3 * rng.normal(size=(500, 4))
    >>> y = (logits / 3 + rng.gumbel(size=logits.shape)).argmax(axis=1)
    >>> display = ReliabilityDisplay.from_logits(
    ...     y, {"uncalibrated": logits, "T = 3": logits / 3}, n_bins=10
    ... )
    >>> [text.get_text().split(" (")[0] for text in display.legend_.get_texts()]
    ['Perfect calibration', 'uncalibrated', 'T = 3']
    >>> import matplotlib.pyplot as plt
    >>> plt.close("all")
    """

    def __init__(self, curves, errors, *, kind="top-label", strategy="uniform", weighted=False):
        self.curves = curves
        self.errors = errors
        self.kind = kind
        self.strategy = strategy
        self.weighted = weighted

    # ----------------------------------------------------------------------------------------
    # constructors

    @classmethod
    def from_predictions(
        cls,
        y_true,
        y_prob,
        *,
        name=None,
        n_bins=15,
        strategy="uniform",
        kind="top-label",
        sample_weight=None,
        ax=None,
        show_histogram="auto",
        layout="overlay",
    ):
        """Compute the curves of predicted probabilities and plot them.

        Parameters
        ----------
        y_true : array-like or Tensor of shape (n_samples,)
            Class labels, integers in ``[0, n_classes)``.
        y_prob : array-like or Tensor of shape (n_samples, n_classes), or dict of str to them
            Predicted probabilities of one model, or a mapping of model names to the
            probabilities of each (drawn together, in the mapping's order). 1-D input is the
            probability of class 1 of a binary problem.
        name : str, default=None
            Name of the model in the legend when ``y_prob`` is one array ("model" if None).
        n_bins : int, default=15
            Number of bins.
        strategy : {"uniform", "quantile"}, default="uniform"
            Equal-width or equal-mass bins.
        kind : {"top-label", "classwise"}, default="top-label"
            One diagram of the top-label confidence, or one panel per class.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative sample weights.
        ax : matplotlib Axes, array of Axes or None, default=None
            Where to draw (see :meth:`plot`); None creates a figure sized for a paper.
        show_histogram : bool or "auto", default="auto"
            Whether to draw the bin counts below each diagram. ``"auto"`` draws them, except on
            Axes you give one per panel (as scikit-learn's displays draw on one Axes).
        layout : {"overlay", "grid"}, default="overlay"
            Top-label only: all models on one panel, or one panel per model.

        Returns
        -------
        display : ReliabilityDisplay
            The display, plotted.
        """
        display = cls._compute(
            y_true, y_prob, name, n_bins, strategy, kind, sample_weight,
            caller="ReliabilityDisplay.from_predictions",
        )  # fmt: skip
        return display._plot(ax, show_histogram, layout, caller="ReliabilityDisplay.plot")

    @classmethod
    def _compute(cls, y_true, y_prob, name, n_bins, strategy, kind, sample_weight, *, caller):
        probabilities = _as_mapping(y_prob, name, "model", "y_prob")
        curves, errors = {}, {}
        options = {"n_bins": n_bins, "strategy": strategy, "kind": kind}
        for model, proba in probabilities.items():
            names = {"preds_name": f"y_prob[{model!r}]" if len(probabilities) > 1 else "y_prob"}
            names["target_name"] = "y_true"
            # One binning gives the curve drawn and the error in the legend.
            curve, error = binned_reliability(
                proba, y_true, **options, sample_weight=sample_weight, caller=caller, **names
            )
            curves[model] = {key: to_numpy(value) for key, value in curve.items()}
            errors[model] = float(error)
        return cls(curves, errors, kind=kind, strategy=strategy, weighted=sample_weight is not None)

    @classmethod
    def from_logits(cls, y_true, logits, *, name=None, **kwargs):
        """Plot the reliability of logits: their softmax, computed in float64.

        Parameters
        ----------
        y_true : array-like or Tensor of shape (n_samples,)
            Class labels, integers in ``[0, n_classes)``.
        logits : array-like or Tensor of shape (n_samples, n_classes), or dict of str to them
            Logits of one model, or a mapping of model names to the logits of each. 1-D
            binary decision values ``z`` count as ``[0, z]``.
        name : str, default=None
            Name of the model in the legend when ``logits`` is one array.
        **kwargs
            The options of :meth:`from_predictions` (``n_bins``, ``kind``, ``ax``, ...).

        Returns
        -------
        display : ReliabilityDisplay
            The display, plotted.
        """
        named = _as_mapping(logits, name, "model", "logits")
        probabilities = {}
        for model, values in named.items():
            label = "logits" if len(named) == 1 else f"logits[{model!r}]"
            checked = check_logits(values, name=label).values.to(torch.float64)
            probabilities[model] = to_numpy(softmax(checked))
        return cls.from_predictions(y_true, probabilities, **kwargs)

    @classmethod
    def from_estimator(cls, estimator, X, y, *, name=None, **kwargs):
        """Plot the reliability of a fitted estimator's ``predict_proba(X)``.

        Parameters
        ----------
        estimator : fitted estimator with ``predict_proba``, or dict of str to them
            A calibrator (or any classifier), or a mapping of names to several.
        X : array-like or Tensor
            What ``predict_proba`` takes: logits for distcal's calibrators, inputs for a
            calibrator with a ``model`` or a pipeline.
        y : array-like or Tensor of shape (n_samples,)
            Class labels of ``X``.
        name : str, default=None
            Name in the legend when ``estimator`` is one estimator (its class name if None).
        **kwargs
            The options of :meth:`from_predictions` (``n_bins``, ``kind``, ``ax``, ...).

        Returns
        -------
        display : ReliabilityDisplay
            The display, plotted.
        """
        if isinstance(estimator, Mapping):
            estimators = _as_mapping(estimator, name, "", "estimator")
        else:
            estimators = {type(estimator).__name__ if name is None else str(name): estimator}
        probabilities = {}
        for model, fitted in estimators.items():
            if not hasattr(fitted, "predict_proba"):
                raise TypeError(
                    f"estimator {model!r} has no predict_proba; give a fitted calibrator or "
                    f"classifier, or use from_predictions with its probabilities. Got a "
                    f"{type(fitted).__name__}."
                )
            probabilities[model] = fitted.predict_proba(X)
        return cls.from_predictions(y, probabilities, **kwargs)

    def plot(self, ax=None, *, show_histogram="auto", layout="overlay"):
        """Draw the diagram(s).

        Parameters
        ----------
        ax : matplotlib Axes, array of Axes or None, default=None
            None creates a figure sized for a paper (one column for one panel, the page width
            for several) with the legend below the panels, where it hides nothing; taller than
            20 inches (a classwise diagram of 55 classes or more), it warns. For
            one panel: one Axes (the diagram alone, as scikit-learn's displays draw on one
            Axes), or a pair ``(diagram_ax, histogram_ax)``. For several panels: a sequence of
            one Axes per panel, or an array of shape (2, n_panels) with histograms. On Axes
            you give, the legend goes where matplotlib finds the least overlap
            (``loc="best"``).
        show_histogram : bool or "auto", default="auto"
            Whether to draw the bin counts below each diagram. ``"auto"``: yes, unless ``ax``
            is one Axes per panel; True with one Axes per panel is an error (no room).
        layout : {"overlay", "grid"}, default="overlay"
            Top-label only: all models on one panel, or one panel per model. Classwise
            diagrams always have one panel per class.

        Returns
        -------
        self : ReliabilityDisplay
            The display, with ``ax_``, ``histogram_ax_``, ``figure_`` and ``legend_`` set.
        """
        return self._plot(ax, show_histogram, layout, caller="ReliabilityDisplay.plot")

    def _plot(self, ax, show_histogram, layout, *, caller):
        if layout not in _LAYOUTS:
            raise ValueError(
                f"The 'layout' parameter of {caller} must be one of "
                f"{list(_LAYOUTS)}; got {layout!r}."
            )
        plt = pyplot()
        panels = list_panels(self, layout)
        show_histogram = _wants_histogram(show_histogram, ax, len(panels), caller)
        with plt.rc_context(PAPER_STYLE) if ax is None else contextlib.nullcontext():
            diagrams, histograms, figure, ncols = panel_axes(
                self, ax, len(panels), show_histogram, plt, caller
            )
            ours = ncols is not None
            proxies = []
            for p, (title, series) in enumerate(panels):
                place = {
                    # axis labels on the outer panels only; the sides of the diagonal named
                    # on a single panel (small panels have the legend's gap entries)
                    "first_column": not ours or p % ncols == 0,
                    "bottom": not ours or p + ncols >= len(panels),
                    "regions": len(panels) == 1,
                }
                proxies += draw_diagram(
                    self, diagrams[p], series, title, histograms is not None, **place
                )
                if histograms is not None:
                    draw_histogram(self, histograms[p], series, **place)
            # One entry per label across the panels: the diagonal, each model, the gaps.
            handles = {}
            for diagram in diagrams:
                for handle, label in zip(*diagram.get_legend_handles_labels(), strict=True):
                    handles.setdefault(label, handle)
            for proxy in proxies:
                handles.setdefault(proxy.get_label(), proxy)
            labels = list(handles)
            entries = ([handles[label] for label in labels], labels)
            if ours:
                ncols = 1 if len(panels) == 1 and len(labels) <= 4 else 2
                self.legend_ = figure.legend(*entries, loc="outside lower center", ncols=ncols)
            else:
                self.legend_ = diagrams[0].legend(*entries, loc="best")
        self.figure_ = figure
        single = len(panels) == 1
        self.ax_ = diagrams[0] if single else np.array(diagrams, dtype=object)
        if histograms is None:
            self.histogram_ax_ = None
        else:
            self.histogram_ax_ = histograms[0] if single else np.array(histograms, dtype=object)
        return self


def reliability_diagram(
    y_true,
    y_prob,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    kind: str = "top-label",
    ax=None,
    show_histogram="auto",
    label: str | None = None,
    sample_weight=None,
):
    """Draw the reliability diagram of one model's probabilities.

    :meth:`ReliabilityDisplay.from_predictions` for one model, returning the Axes drawn on.
    Top-label diagrams draw one bar per non-empty bin at the height of its accuracy, the gap
    to the bin's mean confidence on top of it (coloured by its direction), and the diagonal of
    perfect calibration; classwise diagrams draw one small panel per class. The legend gives
    the calibration error of the same bins.

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
        One diagram of the top-label confidence, or one panel per class.
    ax : matplotlib Axes, pair or array of Axes, default=None
        Where to draw: one Axes (the diagram alone), or a pair ``(diagram_ax,
        histogram_ax)``; classwise, one per class (see :meth:`ReliabilityDisplay.plot`).
        None creates a new figure.
    show_histogram : bool or "auto", default="auto"
        Whether to draw the histogram of bin counts below the diagram; ``"auto"``: yes,
        unless ``ax`` is one Axes (per panel).
    label : str, default=None
        Name of the model in the legend ("Accuracy" if None).
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative sample weights; the histogram then shows weights.

    Returns
    -------
    ax : matplotlib Axes, tuple of two Axes, or tuple of two arrays of Axes
        The diagram's Axes, or ``(diagram_ax, histogram_ax)`` when a histogram is drawn;
        classwise, arrays of one Axes per class in their place.

    See Also
    --------
    ReliabilityDisplay : Several models on one diagram, logits and estimators.
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
    >>> diagram_ax.figure.legends[0].get_texts()[1].get_text()
    'Accuracy (ECE = 25.00%)'
    >>> import matplotlib.pyplot as plt
    >>> plt.close("all")
    """
    caller = "reliability_diagram"
    name = "Accuracy" if label is None else label
    display = ReliabilityDisplay._compute(
        y_true, y_prob, name, n_bins, strategy, kind, sample_weight, caller=caller
    )
    display._plot(ax, show_histogram, "overlay", caller=caller)
    if display.histogram_ax_ is None:
        return display.ax_
    return display.ax_, display.histogram_ax_
