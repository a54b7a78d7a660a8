"""Histograms of the maximum logits, before and after masking."""

from __future__ import annotations

import contextlib
import numbers
from collections.abc import Sequence

import numpy as np
import torch

from .._device import to_numpy
from .._validation import check_logits
from ._common import COLUMN_WIDTH, PAPER_STYLE, check_axes, model_color, pyplot

__all__ = ["max_logit_histogram"]


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
    plt = pyplot()
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
    if ax is not None:
        ax = check_axes(ax, pair=False, caller=caller)
    # A figure distcal makes gets the paper style; a user's axes keep the user's style.
    with plt.rc_context(PAPER_STYLE) if ax is None else contextlib.nullcontext():
        if ax is None:
            _, ax = plt.subplots(figsize=(COLUMN_WIDTH, 2.4), layout="constrained")
        alpha = 0.8 if len(series) == 1 else 0.55
        for i, (values, name) in enumerate(series):
            ax.hist(
                values,
                bins=edges,
                alpha=alpha,
                color=model_color(i),
                edgecolor="black",
                linewidth=0.5,
                label=name,
                density=bool(density),
            )
        ax.set_xlabel("Maximum logit")
        ax.set_ylabel("Density" if density else "Count")
        ax.legend(loc="best")
    return ax
