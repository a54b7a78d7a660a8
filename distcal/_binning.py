"""The one binning kernel behind every binned calibration metric, curve and plot.

Two functions, used by expected, maximum, adaptive and classwise calibration errors, by
:func:`~distcal.metrics.calibration_curve`, by the reliability diagram and by histogram-binning
calibrators:

* :func:`bin_edges` turns confidences into ``n_bins + 1`` edges covering [0, 1];
* :func:`bin_statistics` reduces (confidence, outcome, weight) triples to per-bin sums.

The per-bin sums are sufficient statistics: every binned metric is a function of them, and the
sums of two batches (or of two processes) are the statistics of their union, as long as the
edges are fixed in advance (``strategy="uniform"``, or quantile edges computed once on reference
data). Equal-mass edges computed on each batch separately do not add up.

Binning rule
------------
Bin ``i`` holds the confidences ``c`` with ``edges[i] <= c < edges[i + 1]``, except the last bin,
which is closed on both sides, so that exactly 0.0 lands in bin 0 and exactly 1.0 in bin
``n_bins - 1``; there is no hidden extra bin. Only the inner edges are searched, so a value
outside [0, 1] (which validated probabilities never are) would fall in the first or last bin.
Everything is compared and accumulated in float64, whatever the input dtype: the float64 value of
a float16 or float32 confidence is exact, so the bin a value lands in does not depend on its
dtype, only on its value.

Speed
-----
Uniform edges on the CPU are not searched. ``floor(c * n_bins)`` is the bin of ``c`` or a
neighbour of it, and comparing ``c`` with the exact edges beside it settles which, so the result
is the bucketized index, bit for bit, without a binary search. For float32 (and narrower)
confidences the product is exact in float64 and no float64 edge is a float32 value off its
fraction, so ``floor(c * n_bins)`` is the bin itself (:func:`_indices` has the proof). Samples
are reduced in row chunks, so the float64 temporaries stay small (in cache on a CPU) whatever
the number of samples.
"""

from __future__ import annotations

import torch

from ._device import row_chunks

# The largest number of bins any binned statistic accepts. Per-bin sums take 3 x groups x bins
# float64s (classwise: one group per class), so an unbounded count is an unbounded allocation;
# 1e5 bins is already far more than any calibration set can fill.
MAX_BINS = 100_000

__all__ = ["bin_edges", "bin_indices", "bin_statistics"]

_STRATEGIES = ("uniform", "quantile")
_NARROW_FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def bin_edges(
    confidences: torch.Tensor,
    n_bins: int,
    strategy: str = "uniform",
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return the edges of ``n_bins`` bins covering [0, 1].

    Parameters
    ----------
    confidences : Tensor of shape (n_samples,) or (n_samples, n_groups)
        Values in [0, 1], any floating dtype. With two dimensions, each column is binned on its
        own (``strategy="quantile"`` then gives one set of edges per column).
    n_bins : int
        Number of bins, at least 1.
    strategy : {"uniform", "quantile"}, default="uniform"
        ``"uniform"``: equal-width bins, ``edges[i] = i / n_bins`` (each edge the float64 nearest
        to the exact fraction, so a confidence of exactly 0.1 lies on the edge 0.1 of 10 bins).
        ``"quantile"``: equal-mass bins (weighted quantiles of ``confidences``).
    weights : Tensor of shape (n_samples,), default=None
        Non-negative sample weights for ``strategy="quantile"``; None weighs every sample 1.
        Ignored by ``strategy="uniform"``.

    Returns
    -------
    edges : Tensor of shape (n_bins + 1,) or (n_groups, n_bins + 1)
        Non-decreasing float64 edges on the device of ``confidences``, with ``edges[0] = 0`` and
        ``edges[-1] = 1``. Uniform edges are always 1-D (shared by every column).

    Notes
    -----
    Quantile edges are defined by the weighted distribution of the confidences alone, so they
    do not depend on the order of the samples, duplicating every sample leaves them unchanged,
    an integer weight acts as that many copies and a zero weight as a removed sample. With
    ``W`` the total weight and ``F(c)`` the weight of the confidences ``<= c``, inner edge ``i``
    is the smallest confidence ``c`` with ``F(c) > W * i / n_bins``. Hence the bins below edge
    ``i`` hold at most ``i / n_bins`` of the weight, and the bins up to and including its value
    more than that. Equal confidences never straddle an edge: when one value carries more than
    ``1 / n_bins`` of the weight, several edges coincide and the bins between them are empty
    (empty bins contribute nothing to any metric). An edge can also equal 0.0 or 1.0, leaving an
    empty first bin ``[0, 0)``; a confidence of exactly 1.0 always lands in the closed last bin.

    Examples
    --------
    >>> import torch
    >>> from distcal._binning import bin_edges
    >>> bin_edges(torch.tensor([0.1, 0.5, 0.9]), 4)
    tensor([0.0000, 0.2500, 0.5000, 0.7500, 1.0000], dtype=torch.float64)
    >>> bin_edges(torch.tensor([0.1, 0.2, 0.6, 0.9]), 2, "quantile")
    tensor([0.0000, 0.6000, 1.0000], dtype=torch.float64)
    """
    if strategy not in _STRATEGIES:
        raise ValueError(f"strategy must be one of {_STRATEGIES}; got {strategy!r} instead.")
    device = confidences.device
    if strategy == "uniform" or n_bins == 1:
        # i / n_bins is correctly rounded; linspace's start + i * step is not always, and an edge
        # one ulp off the fraction would move confidences that lie exactly on it. The division
        # runs on the CPU: CUDA divides by a Python number as a multiplication by its reciprocal,
        # which is not correctly rounded (3 * (1 / 10) is 0.30000000000000004, not 0.3).
        edges = (torch.arange(n_bins + 1, dtype=torch.float64) / n_bins).to(device)
        if strategy == "uniform" or confidences.ndim == 1:
            return edges
        return edges.expand(confidences.shape[1], n_bins + 1).clone()

    columns = confidences.reshape(-1, 1) if confidences.ndim == 1 else confidences
    n_samples, n_groups = columns.shape
    # Sorting in the input dtype gives the same order as in float64 (the conversion is exact);
    # a stable sort makes the cumulative weights, hence the edges, reproducible.
    sorted_values, order = torch.sort(columns, dim=0, stable=True)
    steps = torch.arange(1, n_bins, dtype=torch.float64, device=device)
    if weights is None:
        # F at sorted index k is k + 1, so the first index with k + 1 > n * i / n_bins is
        # floor(n * i / n_bins), exact in integer arithmetic (ties: see the weighted branch).
        index = torch.arange(1, n_bins, device=device) * n_samples // n_bins
        index = index.expand(n_groups, n_bins - 1)
    else:
        sorted_weights = weights.to(torch.float64)[order].T  # (n_groups, n_samples)
        cumulative = torch.cumsum(sorted_weights, dim=1)
        total = cumulative[:, -1:]
        # Among equal values, the cumulative weight reaches F(value) only at the last copy, but
        # the first index exceeding the target already lies among them: all copies share the
        # value that becomes the edge, so ties stay together.
        targets = (steps * total / n_bins).contiguous()
        index = torch.searchsorted(cumulative.contiguous(), targets, right=True)
        index = index.clamp_(max=n_samples - 1)
    inner = torch.gather(sorted_values.T, 1, index).to(torch.float64)
    zero = torch.zeros((n_groups, 1), dtype=torch.float64, device=device)
    edges = torch.cat([zero, inner, torch.ones_like(zero)], dim=1)
    return edges[0] if confidences.ndim == 1 else edges


def _uniform_n_bins(edges: torch.Tensor) -> int | None:
    """Return ``n_bins`` if ``edges`` are the uniform edges of :func:`bin_edges`, else None.

    Only CPU edges are inspected: on an accelerator the comparison would synchronise with the
    host, and a binary search there is cheap anyway.
    """
    if edges.ndim != 1 or edges.dtype != torch.float64 or edges.device.type != "cpu":
        return None
    n_bins = edges.shape[0] - 1
    if n_bins < 1:
        return None
    uniform = torch.arange(n_bins + 1, dtype=torch.float64) / n_bins
    return n_bins if torch.equal(edges, uniform) else None


def _exact_product(confidences: torch.Tensor, n_bins: int) -> bool:
    """Whether ``confidences`` have at most 24 significant bits and ``n_bins < 2**29``.

    Then ``c * n_bins`` fits in the 53 bits of float64 (float16, bfloat16 and float32 values;
    an integer below 2**29), and :func:`_indices` needs no comparison with the edges.
    """
    return confidences.dtype in _NARROW_FLOATS and n_bins < 2**29


def _indices(
    values: torch.Tensor, edges: torch.Tensor, uniform_n_bins: int | None, exact_product: bool
) -> torch.Tensor:
    """Bin indices of float64 ``values``.

    ``uniform_n_bins`` comes from :func:`_uniform_n_bins` and ``exact_product`` from
    :func:`_exact_product`; without uniform edges this is a binary search.
    """
    if uniform_n_bins is not None:
        # With e_k = fl(k / n), the edges, the answer is the number b of edges e_1 .. e_n that c
        # reaches, clamped to [0, n - 1] (which closes the last bin). No float64 lies strictly
        # between k / n and e_k, so for float64 c: c >= k / n implies c >= e_k, and c < k / n
        # implies c <= e_k < e_{k+1}. Hence b is floor(c * n) or its upper neighbour; rounding
        # the product can add its lower neighbour. The comparisons below are exact: g / n is the
        # same correctly rounded division as the edges (which _uniform_n_bins checked).
        n = uniform_n_bins
        product = torch.mul(values, n)
        guess = product.floor().clamp_(0, n - 1)
        if exact_product:
            # b = g + 1 would need c = e_k < k / n for k = g + 1: an edge rounded down that is
            # also a float32 value J * 2**(E-23), E <= 0 being the binade of e_k. Then
            # |k / n - e_k| <= 2**(E-53) gives |k * 2**(23-E) - J * n| <= n * 2**-30 < 1/2, a
            # difference of integers, so k / n = e_k was not rounded. Hence b = g.
            # (The second clamp keeps NaN, which validated confidences never are, in range.)
            return guess.to(torch.long).clamp_(0, n - 1)
        # fl(c * n) is within one part in 2**53 of c * n: b is g - 1, g or g + 1. It is g
        # itself unless P = fl(c * n) lies within n * 2**-50 of an integer m: (i) an integer
        # strictly between c * n and P would be a float64 nearer c * n than P, so floor(P) =
        # floor(c * n), the number of fractions k / n <= c, unless P is an integer; (ii) that
        # number differs from b only for c = e_k < k / n, where |P - k| <= 1.5 n 2**-52. The few
        # values near an integer (none, mostly) are settled by comparing with the edges.
        # P - g is near 0 or 1 (or outside [0, 1): a value outside [0, 1], clamped into a bin)
        near = product.sub_(guess).sub_(0.5).abs_() >= 0.5 - n * 2.0**-50
        index = guess.to(torch.long).clamp_(0, n - 1)
        if bool(near.any()):
            rows = near.nonzero(as_tuple=True)
            index[rows] = _beside_edges(values[rows], guess[rows], n)
        return index
    if edges.ndim == 1:
        # The number of inner edges <= c: bins are closed on the left, and 1.0 (never below an
        # inner edge) falls in the last bin instead of an extra one.
        return torch.bucketize(values, edges[1:-1].contiguous(), right=True)
    if values.ndim != 2 or values.shape[1] != edges.shape[0]:
        raise ValueError(
            f"2-D edges of shape {tuple(edges.shape)} need confidences of shape "
            f"(n_samples, {edges.shape[0]}); got {tuple(values.shape)}."
        )
    index = torch.searchsorted(edges[:, 1:-1].contiguous(), values.T.contiguous(), right=True)
    return index.T


def _beside_edges(values: torch.Tensor, guess: torch.Tensor, n: int) -> torch.Tensor:
    """Exact bins of float64 ``values`` near an edge, from ``guess = clamp(floor(c * n))``.

    The bin is g - 1 plus the number of the edges e_g, e_{g+1} that c reaches; ``g / n`` is the
    same correctly rounded division as the edges (which :func:`_uniform_n_bins` checked).
    """
    index = guess - 1
    index += values >= guess / n
    index += values >= (guess + 1) / n
    return index.to(torch.long).clamp_(0, n - 1)


def bin_indices(confidences: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Return the bin of each confidence under the rule of this module.

    Parameters
    ----------
    confidences : Tensor of shape (n_samples,) or (n_samples, n_groups)
        Values in [0, 1], any floating dtype.
    edges : Tensor of shape (n_bins + 1,) or (n_groups, n_bins + 1)
        Edges from :func:`bin_edges`; 2-D edges give each column of ``confidences`` its own.

    Returns
    -------
    indices : Tensor of shape of ``confidences``
        Bin indices in ``[0, n_bins)`` (``torch.long``).
    """
    n_bins = edges.shape[-1] - 1
    exact_product = _exact_product(confidences, n_bins)
    return _indices(confidences.to(torch.float64), edges, _uniform_n_bins(edges), exact_product)


def bin_statistics(
    confidences: torch.Tensor,
    outcomes: torch.Tensor,
    edges: torch.Tensor,
    weights: torch.Tensor | None = None,
    groups: torch.Tensor | None = None,
    n_groups: int = 1,
) -> torch.Tensor:
    """Return per-bin weight, confidence and outcome sums: the sufficient statistics.

    Parameters
    ----------
    confidences : Tensor of shape (n_samples,) or (n_samples, n_groups)
        Values in [0, 1], any floating dtype. A 2-D tensor is the classwise layout: column ``k``
        is group ``k``, so every group is binned in the same single scatter.
    outcomes : Tensor of the shape of ``confidences``
        What the confidence predicts: 1 where the prediction was correct (top-label) or the
        sample belongs to the class (classwise), else 0. Any dtype; bool is fine.
    edges : Tensor of shape (n_bins + 1,) or (n_groups, n_bins + 1)
        Bin edges from :func:`bin_edges`; 2-D edges give each group its own.
    weights : Tensor of shape (n_samples,), default=None
        Non-negative sample weights; None weighs every sample 1.
    groups : Tensor of shape (n_samples,), default=None
        Group index in ``[0, n_groups)`` of each sample of a 1-D ``confidences``; None puts
        every sample in group 0. Must be None for 2-D ``confidences``.
    n_groups : int, default=1
        Number of groups (ignored for 2-D ``confidences``, whose columns are the groups).

    Returns
    -------
    statistics : Tensor of shape (3, n_groups, n_bins)
        float64 on the device of ``confidences``: ``statistics[0]`` the weight in each bin (the
        count without weights), ``statistics[1]`` the weighted sum of confidences and
        ``statistics[2]`` the weighted sum of outcomes. Statistics of disjoint batches binned
        with the same edges add up to the statistics of their union.

    Examples
    --------
    >>> import torch
    >>> from distcal._binning import bin_edges, bin_statistics
    >>> confidences = torch.tensor([0.0, 0.25, 0.5, 1.0])
    >>> correct = torch.tensor([False, True, True, True])
    >>> bin_statistics(confidences, correct, bin_edges(confidences, 2))
    tensor([[[2.0000, 2.0000]],
    <BLANKLINE>
            [[0.2500, 1.5000]],
    <BLANKLINE>
            [[1.0000, 2.0000]]], dtype=torch.float64)
    """
    n_bins = edges.shape[-1] - 1
    device = confidences.device
    uniform_n_bins = _uniform_n_bins(edges)
    exact_product = _exact_product(confidences, n_bins)
    if confidences.ndim == 2:
        if groups is not None:
            raise ValueError("groups must be None when confidences is 2-D (columns are groups).")
        n_groups = confidences.shape[1]
        offsets = torch.arange(n_groups, device=device) * n_bins
    elif groups is not None:
        groups = groups.to(device=device, dtype=torch.long)
    if weights is not None:
        weights = weights.to(device=device, dtype=torch.float64)
    n_samples = confidences.shape[0]
    n_columns = 1 if confidences.ndim == 1 else confidences.shape[1]
    # Three 1-D scatters into one flat (n_groups * n_bins) buffer per statistic: no loop over
    # groups, and no (n, 3) stacked copy of the inputs (1-D scatters are the fastest form).
    statistics = torch.zeros((3, n_groups * n_bins), dtype=torch.float64, device=device)
    for rows in row_chunks(n_samples, n_columns, device):
        values = confidences[rows].to(torch.float64)
        index = _indices(values, edges, uniform_n_bins, exact_product)
        if confidences.ndim == 2:
            index = index + offsets
        elif groups is not None:
            index = index + groups[rows] * n_bins
        index = index.reshape(-1)
        values = values.reshape(-1)
        hits = outcomes[rows].reshape(-1).to(torch.float64)
        if weights is None:
            # A stride-0 view of a single 1.0: counting allocates nothing per sample.
            mass = values.new_ones(()).expand(values.shape[0])
        else:
            mass = weights[rows]
            if confidences.ndim == 2:
                mass = mass[:, None].expand(-1, n_columns).reshape(-1)
            values = values * mass
            hits = hits * mass
        for row, source in enumerate((mass, values, hits)):
            statistics[row].scatter_add_(0, index, source)
    return statistics.reshape(3, n_groups, n_bins)
