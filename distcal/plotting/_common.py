"""What every figure of distcal shares.

The optional matplotlib import, axes checks, the paper style (sizes for a journal column) and
the colours of several models.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# One column of a two-column paper is about 3.3 inches wide, a full page width about 6.9;
# figures made by distcal default to these widths and to fonts that stay readable there.
COLUMN_WIDTH = 3.3
PAGE_WIDTH = 6.9
PAPER_STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
# Colours of several models on one axes: the colour-blind-safe Okabe-Ito palette, in an
# order whose neighbours differ in lightness as well as hue.
MODEL_COLORS = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow
)
# A single model's bars, and the two directions of their gaps to the diagonal.
BAR_COLOR = "#0072B2"  # blue
OVER_CONFIDENT = "#D55E00"  # vermillion
UNDER_CONFIDENT = "#009E73"  # bluish green


def pyplot():
    """Import matplotlib.pyplot, naming the extra that provides it when it is missing."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            'distcal.plotting requires matplotlib. Install it with: pip install "distcal[plot]"'
        ) from exc
    return plt


def model_color(index: int) -> str:
    """Colour of the ``index``-th model (the palette repeats after eight)."""
    return MODEL_COLORS[index % len(MODEL_COLORS)]


def check_axes(ax, *, pair: bool, caller: str):
    """Check that ``ax`` is one matplotlib Axes, or a pair of them when ``pair``."""
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
                f"matplotlib Axes when show_histogram=True; got {ax!r}. Leave show_histogram "
                "at 'auto' (or False) to draw the diagram alone on one Axes."
            )
        return tuple(ax)
    if not isinstance(ax, Axes):
        raise TypeError(
            f"The 'ax' parameter of {caller} must be a matplotlib Axes or None; got {ax!r}."
        )
    return ax
