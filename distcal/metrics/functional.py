"""Calibration metrics on tensors: probabilities in, a 0-d float64 tensor out.

Every function takes ``preds`` (probabilities, never logits) and ``target`` (integer labels that
index the columns of ``preds``) and returns its result on the device of ``preds``. Each metric is
written as ``_check`` (validation) -> ``_update`` (sufficient statistics) -> ``_compute`` (the
value from the statistics), so that statistics of several batches or processes can be summed
before one final ``_compute``. Binned metrics use the single kernel of
:mod:`distcal.metrics._binning`.

The scikit-learn style functions of :mod:`distcal.metrics` (``y_true, y_prob`` order, Python
floats) call the private functions of this module; there is one implementation.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from scipy.optimize import brentq
from sklearn.utils import Bunch

from .._binning import MAX_BINS, bin_edges, bin_statistics
from .._device import as_tensor, row_chunks, to_numpy
from .._validation import (
    Interval,
    Options,
    check_param,
    check_probabilities,
    check_sample_weight,
    check_targets,
)

__all__ = [
    "adaptive_calibration_error",
    "brier_score",
    "calibration_curve",
    "calibration_error",
    "classwise_calibration_error",
    "debiased_calibration_error",
    "expected_calibration_error",
    "ks_calibration_error",
    "masking_spread_ratio",
    "max_logit_concentration",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "smooth_calibration_error",
]

_NORMS = ("l1", "l2", "max")
_STRATEGIES = ("uniform", "quantile")
_KINDS = ("top-label", "classwise")
_INT_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


# --------------------------------------------------------------------------------------------
# _check
# --------------------------------------------------------------------------------------------


def _check_binning_params(n_bins, strategy, kind, caller: str, norm="l1") -> int:
    check_param(n_bins, Interval(numbers.Integral, 1, MAX_BINS, closed="both"), "n_bins", caller)
    check_param(norm, Options(*_NORMS), "norm", caller)
    check_param(strategy, Options(*_STRATEGIES), "strategy", caller)
    check_param(kind, Options(*_KINDS), "kind", caller)
    return int(n_bins)


def _is_binary_column(preds) -> bool:
    shape = np.shape(preds)
    return len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)


def _check_preds(preds, name: str) -> torch.Tensor:
    probs = check_probabilities(preds, name=name)
    if _is_binary_column(preds) and probs.dtype != torch.float64:
        # 1 - p rounded to float32 or float16 would move p(class 0) off the value the user gave
        # for p(class 1); in float64 the complement of a float16/float32 value is (nearly) exact.
        positive = probs[:, 1].to(torch.float64)
        probs = torch.stack([1 - positive, positive], dim=1)
    return probs


def _check_inputs(preds, target, sample_weight, *, preds_name="preds", target_name="target"):
    """Return validated ``(probs, labels, weights)`` on the device of ``preds``."""
    probs = _check_preds(preds, preds_name)
    n_samples, n_classes = probs.shape
    # Unlike a calibrator, a metric accepts labels of a single class.
    labels = check_targets(
        target,
        n_samples=n_samples,
        n_classes=n_classes,
        device=probs.device,
        name=target_name,
        x_name=preds_name,
        min_classes=1,
    )
    weights = check_sample_weight(sample_weight, n_samples=n_samples, device=probs.device)
    return probs, labels, weights


# --------------------------------------------------------------------------------------------
# _update and _compute
# --------------------------------------------------------------------------------------------


def _top_label(probs: torch.Tensor, labels: torch.Tensor):
    """Return each row's largest probability and whether its class is the label.

    The predicted class is the first one of largest probability, as ``argmax`` and
    ``predict()`` have it. ``max(dim=1)`` finds it, but on a CPU its index-tracking loop is
    several times slower than a plain ``amax``. For float32 (or narrower) probabilities this
    reduces keys instead: ``p_j * (1 + (K - 1 - j) * 2**-51)`` in float64. The factor is below
    ``1 + 2**-25``, too little to reorder distinct float32 values (which differ by at least one
    part in 2**24), and it separates equal values by more than a float64 ulp, favouring the
    first column; so the largest key is unique and lies on the predicted class. The label's key
    equals it exactly when the prediction is correct, and the largest key rounded back to the
    input dtype is the largest probability. Keys exist for one chunk of rows at a time (a
    cache-sized share per thread), never for the whole input. Other devices and dtypes, and
    more than 2**26 classes (where the factor could reorder values), use ``max(dim=1)``.
    """
    n_samples, n_classes = probs.shape
    if (
        probs.device.type != "cpu"
        or probs.dtype not in (torch.float16, torch.bfloat16, torch.float32)
        or n_classes > 2**26
    ):
        # max returns the index of the first maximum, so ties resolve as argmax and predict().
        confidence, prediction = probs.max(dim=1)
        return confidence, prediction == labels
    scale = torch.arange(n_classes - 1, -1, -1, dtype=torch.float64).mul_(2.0**-51).add_(1)
    confidence = torch.empty(n_samples, dtype=probs.dtype)
    correct = torch.empty(n_samples, dtype=torch.bool)
    buffer = None
    # row_chunks sizes a chunk for one thread's cache; here each thread gets such a share, so
    # that more threads mean fewer (not smaller) parallel steps.
    share = -(-n_classes // torch.get_num_threads())
    for rows in row_chunks(n_samples, share, probs.device):
        block, y = probs[rows], labels[rows]
        if buffer is None:
            buffer = torch.empty(block.shape, dtype=torch.float64)
        keys = buffer[: block.shape[0]].copy_(block).mul_(scale)
        top = keys.amax(dim=1)
        confidence[rows] = top
        torch.eq(keys.gather(1, y[:, None]).squeeze(1), top, out=correct[rows])
        if bool((top <= 0).any()):
            # A row without a positive value (never a row of probabilities) has no tie-break.
            bad = (top <= 0).nonzero().squeeze(1)
            correct[rows][bad] = block[bad].max(dim=1).indices == y[bad]
    return confidence, correct


def _confidences_and_outcomes(probs: torch.Tensor, labels: torch.Tensor, kind: str):
    if kind == "top-label":
        return _top_label(probs, labels)
    classes = torch.arange(probs.shape[1], device=probs.device)
    return probs, labels[:, None] == classes


def _calibration_update(
    probs: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    n_bins: int,
    strategy: str,
    kind: str,
    edges: torch.Tensor | None = None,
):
    """Return ``(statistics, edges)``: per-bin sums of shape (3, n_groups, n_bins) and edges.

    Passing the ``edges`` of an earlier batch makes the statistics of the batches summable.
    """
    confidences, outcomes = _confidences_and_outcomes(probs, labels, kind)
    return _binned(confidences, outcomes, weights, n_bins=n_bins, strategy=strategy, edges=edges)


def _binned(confidences, outcomes, weights, *, n_bins: int, strategy: str, edges=None):
    """``(statistics, edges)`` of reduced rows: :func:`_calibration_update` after the reduction."""
    if edges is None:
        edges = bin_edges(confidences, n_bins, strategy, weights)
    return bin_statistics(confidences, outcomes, edges, weights), edges


def _calibration_compute(statistics: torch.Tensor, norm: str) -> torch.Tensor:
    """Reduce per-bin sums of shape (3, n_groups, n_bins) to one calibration error.

    Groups (classes, with ``kind="classwise"``) are aggregated as the reference package of
    Kumar et al. (``uncertainty-calibration``, marginal mode) does: by the power mean of the
    norm, ``(mean_k CE_k^p)^(1/p)``, so "l1" averages the per-class errors and "l2" takes the
    root of the mean squared error over classes (the per-class squares are what is estimated,
    and what the debiased estimator corrects). "max" averages the per-class maxima.
    """
    weight, confidence_sum, outcome_sum = statistics
    total = weight.sum(dim=-1)
    # |sum of outcomes - sum of confidences| is w_b * |acc_b - conf_b|; empty bins give 0 here.
    gap_mass = (outcome_sum - confidence_sum).abs()
    occupied = weight > 0
    safe_weight = torch.where(occupied, weight, torch.ones_like(weight))
    if norm == "l1":
        per_group = gap_mass.sum(dim=-1) / total
    elif norm == "l2":
        squared = torch.where(occupied, gap_mass.square() / safe_weight, 0.0)
        return torch.sqrt((squared.sum(dim=-1) / total).mean())
    else:
        per_group = torch.where(occupied, gap_mass / safe_weight, 0.0).amax(dim=-1)
    return per_group.mean()


def _calibration_compute_batched(statistics: torch.Tensor, norm: str) -> torch.Tensor:
    """Reduce the per-bin sums of m resamples, shape (3, m, n_groups, n_bins), to m errors.

    Each is the bits :func:`_calibration_compute` gives that resample's statistics: the same
    element-wise steps, and reductions over the same contiguous last axis.
    """
    weight, confidence_sum, outcome_sum = statistics
    total = weight.sum(dim=-1)
    gap_mass = (outcome_sum - confidence_sum).abs()
    occupied = weight > 0
    safe_weight = torch.where(occupied, weight, torch.ones_like(weight))
    if norm == "l1":
        per_group = gap_mass.sum(dim=-1) / total
    elif norm == "l2":
        squared = torch.where(occupied, gap_mass.square() / safe_weight, 0.0)
        return torch.sqrt((squared.sum(dim=-1) / total).mean(dim=-1))
    else:
        per_group = torch.where(occupied, gap_mass / safe_weight, 0.0).amax(dim=-1)
    return per_group.mean(dim=-1)


def _binned_batch(confidences, outcomes, rows: torch.Tensor, *, n_bins: int, strategy: str):
    """Per-bin sums of a batch of resamples: (3, m, n_groups, n_bins) for ``rows`` (m, n).

    The resamples become the columns of one 2-D input of the binning kernel (the layout of
    classwise groups; classwise resamples give m * n_classes columns), so one scatter bins
    them all. Each column's sums accumulate in row order, as when the resample is binned
    alone, so every resample's statistics are the bits of binning it alone.
    """
    m, n = rows.shape
    chosen_confidences, chosen_outcomes = confidences[rows], outcomes[rows]
    if chosen_confidences.ndim == 2:  # top-label: (m, n) -> n rows of m columns
        columns, hits = chosen_confidences.T, chosen_outcomes.T
    else:  # classwise: (m, n, K) -> n rows of m * K columns
        columns = chosen_confidences.permute(1, 0, 2).reshape(n, -1)
        hits = chosen_outcomes.permute(1, 0, 2).reshape(n, -1)
    edges = bin_edges(columns, n_bins, strategy)
    return bin_statistics(columns, hits, edges).reshape(3, m, -1, n_bins)


def _calibration_batch_resampler(
    preds,
    target,
    *,
    n_bins,
    norm,
    strategy,
    kind,
    caller: str,
    preds_name: str = "preds",
    target_name: str = "target",
):
    """Validate and reduce the rows once; return ``score(rows)``, the errors of resamples.

    ``rows`` is an int64 array of shape (m, n_samples); ``score(rows)`` is a float64 numpy
    array of the m errors, each the number :func:`_calibration_error` gives on
    ``preds[r], target[r]``, bit for bit (see :func:`_binned_batch`). Without weights: a
    weighted bootstrap resamples the weights with the rows, which only
    :func:`_calibration_resampler` does.
    """
    n_bins = _check_binning_params(n_bins, strategy, kind, caller, norm)
    probs, labels, _ = _check_inputs(
        preds, target, None, preds_name=preds_name, target_name=target_name
    )
    confidences, outcomes = _confidences_and_outcomes(probs, labels, kind)

    def score(rows) -> np.ndarray:
        index = as_tensor(rows, device=probs.device)
        statistics = _binned_batch(confidences, outcomes, index, n_bins=n_bins, strategy=strategy)
        return to_numpy(_calibration_compute_batched(statistics, norm).to(torch.float64))

    score.width = probs.shape[1] if kind == "classwise" else 1
    return score


def _calibration_error(
    preds,
    target,
    *,
    n_bins,
    norm,
    strategy,
    kind,
    sample_weight,
    caller: str,
    preds_name: str = "preds",
    target_name: str = "target",
) -> torch.Tensor:
    return _calibration_resampler(
        preds,
        target,
        n_bins=n_bins,
        norm=norm,
        strategy=strategy,
        kind=kind,
        sample_weight=sample_weight,
        caller=caller,
        preds_name=preds_name,
        target_name=target_name,
    )(None)


def _calibration_resampler(
    preds,
    target,
    *,
    n_bins,
    norm,
    strategy,
    kind,
    caller: str,
    sample_weight=None,
    preds_name: str = "preds",
    target_name: str = "target",
):
    """Validate and reduce the rows once; return ``score(rows)``, the error of a resample.

    ``score(None)`` is the error of all the rows (:func:`_calibration_error`). ``score(rows)``
    (``rows`` a LongTensor of row indices, repeats allowed) is the number ``score(None)`` gives
    on ``preds[rows], target[rows]`` (and ``sample_weight[rows]``), bit for bit: the
    reduction of a row to its confidence and outcome reads that row alone, so reducing every
    row once and indexing the results feeds the binning kernel the same tensors as reducing
    the resample. One resample at a time, with weights resampled along; the bootstrap scores
    batches of resamples without weights through :func:`_calibration_batch_resampler`.
    """
    n_bins = _check_binning_params(n_bins, strategy, kind, caller, norm)
    probs, labels, weights = _check_inputs(
        preds, target, sample_weight, preds_name=preds_name, target_name=target_name
    )
    confidences, outcomes = _confidences_and_outcomes(probs, labels, kind)

    def score(rows: torch.Tensor | None) -> torch.Tensor:
        chosen = (confidences, outcomes, weights)
        if rows is not None:
            chosen = tuple(None if t is None else t[rows] for t in chosen)
        statistics, _ = _binned(*chosen, n_bins=n_bins, strategy=strategy)
        return _calibration_compute(statistics, norm)

    return score


def _ks_calibration_error(
    preds, target, *, kind, sample_weight, caller, preds_name="preds", target_name="target"
) -> torch.Tensor:
    check_param(kind, Options(*_KINDS), "kind", caller)
    probs, labels, weights = _check_inputs(
        preds, target, sample_weight, preds_name=preds_name, target_name=target_name
    )
    confidences, outcomes = _confidences_and_outcomes(probs, labels, kind)
    if confidences.ndim == 1:
        confidences, outcomes = confidences[:, None], outcomes[:, None]
    confidences = confidences.to(torch.float64)
    outcomes = outcomes.to(torch.float64)
    w = (
        torch.ones(confidences.shape[0], dtype=torch.float64, device=confidences.device)
        if weights is None
        else weights
    )
    w = (w / w.sum())[:, None]
    order = torch.argsort(confidences, dim=0, stable=True)
    gaps = torch.cumsum(
        (w * (outcomes - confidences)).gather(0, order), dim=0
    )  # running difference of the cumulative frequency and the cumulative confidence
    return gaps.abs().amax(dim=0).mean()


def _debiased_calibration_error(
    preds,
    target,
    *,
    n_bins,
    strategy,
    kind,
    sample_weight,
    caller,
    preds_name="preds",
    target_name="target",
) -> torch.Tensor:
    n_bins = _check_binning_params(n_bins, strategy, kind, caller, "l2")
    probs, labels, weights = _check_inputs(
        preds, target, sample_weight, preds_name=preds_name, target_name=target_name
    )
    statistics, _ = _calibration_update(
        probs, labels, weights, n_bins=n_bins, strategy=strategy, kind=kind
    )
    return _debiased_squared(statistics).clamp_min(0).sqrt()


def _debiased_squared(statistics: torch.Tensor) -> torch.Tensor:
    """Return the debiased mean squared calibration error of per-bin sums, before its clamp.

    ``statistics`` has shape (3, ..., n_groups, n_bins); the result has the leading shape
    ``...`` (a 0-d tensor for one set of statistics). It can be negative: the estimate of a
    square that is 0 or nearly so is as often below 0 as above it, which is what makes it
    unbiased, and what an interval of the squared error needs.
    """
    weight, confidence_sum, outcome_sum = statistics
    occupied = weight > 0
    safe = torch.where(occupied, weight, torch.ones_like(weight))
    accuracy, confidence = outcome_sum / safe, confidence_sum / safe
    squared = (accuracy - confidence).square()
    # The plug-in squared gap overestimates by the variance of the bin's mean outcome,
    # acc (1 - acc) / (n - 1) unbiased; a bin of one sample has no estimate of it.
    several = weight > 1
    variance = accuracy * (1 - accuracy) / torch.where(several, weight - 1, torch.ones_like(weight))
    terms = torch.where(several, squared - variance, squared)
    terms = torch.where(occupied, terms, torch.zeros_like(terms))
    per_group = (weight * terms).sum(dim=-1) / weight.sum(dim=-1)
    return per_group.mean(dim=-1)


_SMOOTH_GRID = 500  # points of [0, 1] at which the smoothed residual is evaluated


def _smooth_ece_at(sigma: float, mass: torch.Tensor, difference, total) -> float:
    """smECE_sigma of residual masses at the centres ``(j + 1/2) / G`` of a uniform grid.

    The reflected Gaussian kernel between grid point ``i`` and centre ``j`` depends only on
    the offsets ``i - j`` and ``i + j + 1`` (the centre's image in 0), in grid steps, each
    also shifted by the images in -2 and +2 (2G steps), so that every column integrates to 1
    over [0, 1]: the mass a Gaussian puts outside the interval is folded back in. One table
    of the density at every offset, indexed by ``difference`` (``i - j + G - 1``) and
    ``total`` (``i + j + G``), gives the G x G kernel.
    """
    grid = mass.shape[0]
    offsets = torch.arange(-(grid - 1), 2 * grid, dtype=torch.float64)
    density = sum(
        torch.exp(-0.5 * ((offsets - 2 * grid * shift) / (grid * sigma)) ** 2)
        for shift in (-1, 0, 1)
    ) / (sigma * (2 * torch.pi) ** 0.5)
    smoothed = (density[difference] + density[total]) @ mass  # smoothed residual density
    return float(smoothed.abs().mean())  # the integral over [0, 1] on a uniform grid


def _smooth_calibration_error(
    preds, target, *, sample_weight, caller, preds_name="preds", target_name="target"
) -> torch.Tensor:
    probs, labels, weights = _check_inputs(
        preds, target, sample_weight, preds_name=preds_name, target_name=target_name
    )
    confidence, correct = _top_label(probs, labels)
    confidence = confidence.to(torch.float64).cpu()
    residual = correct.to(torch.float64).cpu() - confidence
    w = torch.ones_like(confidence) if weights is None else weights.to(torch.float64).cpu()
    w = w / w.sum()
    # Residual mass at the centres (j + 1/2) / G of a fine grid (the data enter only through
    # these sums), so the cost is O(n + G^2) whatever the number of samples.
    index = torch.clamp((confidence * _SMOOTH_GRID).long(), 0, _SMOOTH_GRID - 1)
    mass = torch.zeros(_SMOOTH_GRID, dtype=torch.float64).index_add_(0, index, w * residual)
    rows = torch.arange(_SMOOTH_GRID)[:, None]
    columns = torch.arange(_SMOOTH_GRID)[None, :]
    difference, total = rows - columns + _SMOOTH_GRID - 1, rows + columns + _SMOOTH_GRID

    def excess(sigma):
        return _smooth_ece_at(sigma, mass, difference, total) - sigma

    # smECE_sigma decreases with sigma and never exceeds 1 (the total residual mass), so
    # smECE_sigma - sigma has one root in (0, 1]: the smooth ECE, its fixed point.
    low = 1e-4
    at_low = _smooth_ece_at(low, mass, difference, total)
    value = at_low if at_low <= low else brentq(excess, low, 1.0, xtol=1e-10)
    return torch.tensor(value, dtype=torch.float64, device=probs.device)


def _nll_update(probs, labels, weights):
    """Return the sums (weighted -log p_y, weight) as a float64 tensor of shape (2,)."""
    p_true = probs.gather(1, labels[:, None]).squeeze(1).to(torch.float64)
    losses = -torch.log(p_true)
    if weights is None:
        return torch.stack([losses.sum(), losses.new_tensor(float(losses.numel()))])
    # A zero weight removes its sample, even one with p_y = 0 (0 * inf would be NaN).
    weighted = torch.where(weights > 0, weights * losses, 0.0)
    return torch.stack([weighted.sum(), weights.sum()])


def _brier_update(probs, labels, weights):
    """Return the sums (weighted squared error, weight) as a float64 tensor of shape (2,)."""
    sums = torch.zeros(2, dtype=torch.float64, device=probs.device)
    # Row chunks keep the float64 copy of the probabilities small on large inputs.
    for rows in row_chunks(probs.shape[0], probs.shape[1], probs.device):
        chunk = probs[rows].to(torch.float64, copy=True)
        y = labels[rows]
        chunk[torch.arange(chunk.shape[0], device=chunk.device), y] -= 1.0
        errors = chunk.square().sum(dim=1)
        if weights is None:
            sums[0] += errors.sum()
            sums[1] += errors.shape[0]
        else:
            w = weights[rows]
            sums[0] += (w * errors).sum()
            sums[1] += w.sum()
    return sums


def _mean_compute(sums: torch.Tensor) -> torch.Tensor:
    return sums[0] / sums[1]


def _negative_log_likelihood(preds, target, sample_weight, **names) -> torch.Tensor:
    probs, labels, weights = _check_inputs(preds, target, sample_weight, **names)
    return _mean_compute(_nll_update(probs, labels, weights))


def _brier_score(preds, target, sample_weight, **names) -> torch.Tensor:
    probs, labels, weights = _check_inputs(preds, target, sample_weight, **names)
    return _mean_compute(_brier_update(probs, labels, weights))


def _brier_errors(probs, labels) -> torch.Tensor:
    """Each row's squared error, float64: the terms :func:`_brier_update` sums."""
    errors = torch.empty(probs.shape[0], dtype=torch.float64, device=probs.device)
    for rows in row_chunks(probs.shape[0], probs.shape[1], probs.device):
        chunk = probs[rows].to(torch.float64, copy=True)
        chunk[torch.arange(chunk.shape[0], device=chunk.device), labels[rows]] -= 1.0
        errors[rows] = chunk.square().sum(dim=1)
    return errors


def _mean_resampler(preds, target, *, kind: str, **names):
    """Validate and reduce each row to its loss once; return ``score(rows)`` of resamples.

    ``kind`` is "nll" or "brier". ``score(rows)`` gives, for each resample (a row of
    ``rows``), the bits :func:`_negative_log_likelihood` or :func:`_brier_score` give on the
    resampled rows: a row's loss reads that row alone, and the resample's losses are summed
    as the metric sums them (one sum for the NLL; the Brier score's sums over the same row
    chunks, in the same order), then divided by the count.
    """
    probs, labels, _ = _check_inputs(preds, target, None, **names)
    n_samples, n_classes = probs.shape
    device = probs.device
    if kind == "nll":
        losses = -torch.log(probs.gather(1, labels[:, None]).squeeze(1).to(torch.float64))
        count = losses.new_tensor(float(n_samples))

        def one(index):
            return losses[index].sum() / count

    else:
        losses = _brier_errors(probs, labels)
        chunks = list(row_chunks(n_samples, n_classes, device))

        def one(index):
            sums = torch.zeros(2, dtype=torch.float64, device=device)
            chosen = losses[index]
            for rows in chunks:
                sums[0] += chosen[rows].sum()
                sums[1] += rows.stop - rows.start
            return _mean_compute(sums)

    def score(rows) -> np.ndarray:
        index = as_tensor(rows, device=device)
        return to_numpy(torch.stack([one(r) for r in index]).to(torch.float64))

    return score


def _calibration_curve(
    preds,
    target,
    *,
    n_bins,
    strategy,
    kind,
    sample_weight,
    caller: str,
    preds_name: str = "preds",
    target_name: str = "target",
) -> Bunch:
    n_bins = _check_binning_params(n_bins, strategy, kind, caller)
    probs, labels, weights = _check_inputs(
        preds, target, sample_weight, preds_name=preds_name, target_name=target_name
    )
    statistics, edges = _calibration_update(
        probs, labels, weights, n_bins=n_bins, strategy=strategy, kind=kind
    )
    weight, confidence_sum, outcome_sum = statistics
    occupied = weight > 0
    nan = torch.full_like(weight, float("nan"))
    mean_confidence = torch.where(occupied, confidence_sum / weight, nan)
    accuracy = torch.where(occupied, outcome_sum / weight, nan)
    if kind == "top-label":
        weight, mean_confidence, accuracy = weight[0], mean_confidence[0], accuracy[0]
    return Bunch(bin_edges=edges, counts=weight, mean_confidence=mean_confidence, accuracy=accuracy)


# --------------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------------


def calibration_error(
    preds,
    target,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    strategy: str = "uniform",
    kind: str = "top-label",
    sample_weight=None,
) -> torch.Tensor:
    r"""Binned calibration error of predicted probabilities (ECE, MCE, RMS-CE, classwise).

    The confidences are split into ``n_bins`` bins; in each bin ``b`` the weighted mean
    confidence ``conf_b`` is compared with the weighted frequency ``acc_b`` of the event the
    confidence predicts, and the gaps are combined according to ``norm``.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities (not logits): values in [0, 1], rows summing to 1. 1-D input
        (or a single column) is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels: integers in ``[0, n_classes)``, the column index of each sample's class.
    n_bins : int, default=15
        Number of bins.
    norm : {"l1", "l2", "max"}, default="l1"
        ``"l1"``: the expected calibration error ``sum_b (w_b / W) |acc_b - conf_b|``.
        ``"l2"``: the root-mean-square error ``sqrt(sum_b (w_b / W) (acc_b - conf_b)^2)``.
        ``"max"``: the maximum calibration error ``max_b |acc_b - conf_b|`` over non-empty bins.
        Here ``w_b`` is the weight in bin ``b`` and ``W`` the total weight.
    strategy : {"uniform", "quantile"}, default="uniform"
        ``"uniform"``: equal-width bins over [0, 1]. ``"quantile"``: equal-mass bins whose edges
        are weighted quantiles of the confidences (adaptive calibration error); with
        ``kind="classwise"`` each class gets its own edges.
    kind : {"top-label", "classwise"}, default="top-label"
        ``"top-label"``: the confidence is the largest probability of each row and the event is
        that its class (the first one, on ties, as ``argmax``) is the label. ``"classwise"``:
        for every class ``k`` the confidence is ``p_k`` and the event ``target == k``; the
        calibration error of each class is computed and the errors are aggregated as their
        power mean (Kull et al., 2019; Kumar et al., 2019): the mean for ``"l1"`` and
        ``"max"``, the root of the mean square for ``"l2"``, the definition that
        :func:`debiased_calibration_error` and the authors' package use.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights. An integer weight counts as that many copies of the sample
        and a zero weight removes it.

    Returns
    -------
    error : Tensor of shape ()
        The calibration error, in [0, 1], as float64 on the device of ``preds``.

    See Also
    --------
    expected_calibration_error : This function with ``kind="top-label"``.
    maximum_calibration_error : This function with ``norm="max"``.
    adaptive_calibration_error : This function with ``strategy="quantile"``.
    classwise_calibration_error : This function with ``kind="classwise"``.
    distcal.metrics.calibration_error : The scikit-learn style version returning a float.
    calibration_curve : The per-bin accuracies and confidences behind the error.

    Notes
    -----
    Bin ``i`` holds the confidences in ``[edges[i], edges[i + 1])``, the last bin also 1.0, so a
    confidence of exactly 0 or 1 falls in the first or last bin. Empty bins contribute nothing.
    A bin holding a single sample of confidence ``c`` and weight ``w`` contributes
    ``(w / W) * (1 - c)`` to the L1 error if the event happened and ``(w / W) * c`` if not; its
    gap alone sets the maximum error when it is the largest. Bins with few samples therefore
    inflate the estimate: a perfectly calibrated model has a positive expected error on finite
    data, the more so the more bins there are per sample.

    All statistics are accumulated in float64 whatever the dtype of ``preds``, so float16,
    bfloat16 and float32 inputs give the float64 result for their values.

    References
    ----------
    .. [1] M. P. Naeini, G. Cooper and M. Hauskrecht, "Obtaining well calibrated probabilities
       using Bayesian binning", AAAI 2015.
    .. [2] C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On calibration of modern neural
       networks", ICML 2017.
    .. [3] M. Kull, M. Perello-Nieto, M. Kängsepp, T. Silva Filho, H. Song and P. Flach,
       "Beyond temperature scaling: obtaining well-calibrated multi-class probabilities with
       Dirichlet calibration", NeurIPS 2019.
    .. [4] J. Nixon, M. Dusenberry, L. Zhang, G. Jerfel and D. Tran, "Measuring calibration in
       deep learning", CVPR Workshops 2019.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import calibration_error
    >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> target = torch.tensor([0, 1, 1, 0])
    >>> calibration_error(preds, target, n_bins=4)
    tensor(0.2500, dtype=torch.float64)
    >>> calibration_error(preds, target, n_bins=4, norm="max")
    tensor(0.3500, dtype=torch.float64)
    """
    return _calibration_error(
        preds,
        target,
        n_bins=n_bins,
        norm=norm,
        strategy=strategy,
        kind=kind,
        sample_weight=sample_weight,
        caller="calibration_error",
    )


def expected_calibration_error(
    preds,
    target,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    strategy: str = "uniform",
    sample_weight=None,
) -> torch.Tensor:
    """Top-label expected calibration error (ECE) of predicted probabilities.

    :func:`calibration_error` with ``kind="top-label"``; see it for the parameters and the
    binning rule.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    n_bins : int, default=15
        Number of bins.
    norm : {"l1", "l2", "max"}, default="l1"
        How the per-bin gaps are combined.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : Tensor of shape ()
        The expected calibration error as float64 on the device of ``preds``.

    See Also
    --------
    calibration_error : The general binned calibration error.

    Notes
    -----
    A bin with a single sample of confidence ``c`` contributes ``(1 - c) / n`` (correct
    prediction) or ``c / n`` (wrong prediction) without weights.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import expected_calibration_error
    >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> expected_calibration_error(preds, torch.tensor([0, 1, 1, 0]), n_bins=4)
    tensor(0.2500, dtype=torch.float64)
    """
    return _calibration_error(
        preds,
        target,
        n_bins=n_bins,
        norm=norm,
        strategy=strategy,
        kind="top-label",
        sample_weight=sample_weight,
        caller="expected_calibration_error",
    )


def maximum_calibration_error(
    preds,
    target,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    kind: str = "top-label",
    sample_weight=None,
) -> torch.Tensor:
    """Maximum calibration error (MCE): the largest gap between accuracy and confidence.

    :func:`calibration_error` with ``norm="max"``; see it for the parameters.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    n_bins : int, default=15
        Number of bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    kind : {"top-label", "classwise"}, default="top-label"
        Which confidences are binned; classwise returns the mean over classes of their MCE.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : Tensor of shape ()
        The maximum calibration error as float64 on the device of ``preds``.

    See Also
    --------
    calibration_error : The general binned calibration error.

    Notes
    -----
    Only non-empty bins count, whatever their weight, so a bin with a single sample of
    confidence ``c`` can set the MCE to ``1 - c`` or ``c`` on its own.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import maximum_calibration_error
    >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> maximum_calibration_error(preds, torch.tensor([0, 1, 1, 0]), n_bins=4)
    tensor(0.3500, dtype=torch.float64)
    """
    return _calibration_error(
        preds,
        target,
        n_bins=n_bins,
        norm="max",
        strategy=strategy,
        kind=kind,
        sample_weight=sample_weight,
        caller="maximum_calibration_error",
    )


def adaptive_calibration_error(
    preds,
    target,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    kind: str = "top-label",
    sample_weight=None,
) -> torch.Tensor:
    """Adaptive calibration error: the calibration error over equal-mass bins.

    :func:`calibration_error` with ``strategy="quantile"``. The default top-label version is
    the adaptive ECE of Mukhoti et al. (2020); ``kind="classwise"`` gives the ACE of Nixon et
    al. (2019), with equal-mass bins per class.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    n_bins : int, default=15
        Number of bins.
    norm : {"l1", "l2", "max"}, default="l1"
        How the per-bin gaps are combined.
    kind : {"top-label", "classwise"}, default="top-label"
        Which confidences are binned.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights; the bins hold equal weight.

    Returns
    -------
    error : Tensor of shape ()
        The adaptive calibration error as float64 on the device of ``preds``.

    See Also
    --------
    calibration_error : The general binned calibration error.

    Notes
    -----
    Equal confidences stay in one bin, so bins are only roughly equal in mass when many
    confidences coincide (several edges may then coincide, leaving empty bins). A bin with a
    single sample contributes as described in :func:`calibration_error`.

    References
    ----------
    .. [1] J. Mukhoti, V. Kulharia, A. Sanyal, S. Golodetz, P. Torr and P. Dokania,
       "Calibrating deep neural networks using focal loss", NeurIPS 2020.
    .. [2] J. Nixon, M. Dusenberry, L. Zhang, G. Jerfel and D. Tran, "Measuring calibration in
       deep learning", CVPR Workshops 2019.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import adaptive_calibration_error
    >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> adaptive_calibration_error(preds, torch.tensor([0, 1, 1, 0]), n_bins=2)
    tensor(0.2500, dtype=torch.float64)
    """
    return _calibration_error(
        preds,
        target,
        n_bins=n_bins,
        norm=norm,
        strategy="quantile",
        kind=kind,
        sample_weight=sample_weight,
        caller="adaptive_calibration_error",
    )


def classwise_calibration_error(
    preds,
    target,
    *,
    n_bins: int = 15,
    norm: str = "l1",
    strategy: str = "uniform",
    sample_weight=None,
) -> torch.Tensor:
    """Classwise expected calibration error: the mean over classes of each class's ECE.

    :func:`calibration_error` with ``kind="classwise"`` (Kull et al., 2019): for every class
    ``k`` the probabilities ``p_k`` of all samples are binned and compared with the frequency
    of ``target == k``.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    n_bins : int, default=15
        Number of bins.
    norm : {"l1", "l2", "max"}, default="l1"
        How the per-bin gaps of each class are combined.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width bins, or equal-mass bins computed per class.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : Tensor of shape ()
        The classwise calibration error as float64 on the device of ``preds``.

    See Also
    --------
    calibration_error : The general binned calibration error.

    References
    ----------
    .. [1] M. Kull, M. Perello-Nieto, M. Kängsepp, T. Silva Filho, H. Song and P. Flach,
       "Beyond temperature scaling: obtaining well-calibrated multi-class probabilities with
       Dirichlet calibration", NeurIPS 2019.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import classwise_calibration_error
    >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> classwise_calibration_error(preds, torch.tensor([0, 1, 1, 0]), n_bins=4)
    tensor(0.4500, dtype=torch.float64)
    """
    return _calibration_error(
        preds,
        target,
        n_bins=n_bins,
        norm=norm,
        strategy=strategy,
        kind="classwise",
        sample_weight=sample_weight,
        caller="classwise_calibration_error",
    )


def debiased_calibration_error(
    preds,
    target,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    kind: str = "top-label",
    sample_weight=None,
) -> torch.Tensor:
    r"""Debiased root-mean-square calibration error (Kumar, Liang and Ma, 2019).

    The plug-in binned L2 error is biased upwards: even a calibrated model's bins show gaps,
    of the size of the noise of each bin's mean outcome. This estimator subtracts that noise,
    ``acc_b (1 - acc_b) / (n_b - 1)``, from each bin's squared gap before averaging, and returns
    the square root of the (non-negative part of the) result. ``n_b`` is the bin's weight
    (sample count without weights); a bin of a single sample keeps its plug-in term.

    The authors' package (``uncertainty-calibration``) gives the same value when every bin holds
    two samples or more and, classwise, every class's debiased square is positive (tested); it
    drops single-sample bins and clamps each class at 0 before averaging, where distcal clamps
    the average, which is less biased when some classes are calibrated.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities.
    target : array-like or Tensor of shape (n_samples,)
        Class labels indexing the columns of ``preds``.
    n_bins : int, default=15
        Number of bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    kind : {"top-label", "classwise"}, default="top-label"
        Top-label, or classwise: the root of the mean over classes of the squared one-vs-rest
        error, as :func:`calibration_error` with ``norm="l2"`` aggregates.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative weights; integer weights count as copies.

    Returns
    -------
    error : Tensor of shape ()
        The debiased RMS calibration error, float64 on the device of ``preds``.

    References
    ----------
    .. [1] A. Kumar, P. Liang and T. Ma, "Verified Uncertainty Calibration", NeurIPS 2019.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import calibration_error, debiased_calibration_error
    >>> generator = torch.Generator().manual_seed(0)
    >>> p = torch.rand(2000, generator=generator, dtype=torch.float64)
    >>> y = (torch.rand(2000, generator=generator, dtype=torch.float64) < p).long()
    >>> plug_in = calibration_error(p, y, norm="l2")
    >>> bool(debiased_calibration_error(p, y) < plug_in)  # calibrated data: less bias
    True
    """
    return _debiased_calibration_error(
        preds,
        target,
        n_bins=n_bins,
        strategy=strategy,
        kind=kind,
        sample_weight=sample_weight,
        caller="debiased_calibration_error",
    )


def smooth_calibration_error(preds, target, *, sample_weight=None) -> torch.Tensor:
    r"""Smooth ECE (Blasiok and Nakkiran, 2023): top-label calibration error without bins.

    The residuals ``correct - confidence`` are smoothed over the confidence axis with a
    Gaussian kernel reflected at 0 and 1; ``smECE_sigma`` is the integral of the absolute
    smoothed residual. It decreases with the bandwidth ``sigma``, and the smooth ECE is its
    fixed point ``smECE_sigma = sigma`` (found by bisection), which makes the choice of
    bandwidth part of the definition rather than a user's setting. Computed on a grid of 500
    points of [0, 1] (the confidences are pooled on that grid), so the cost is linear in the
    number of samples.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities.
    target : array-like or Tensor of shape (n_samples,)
        Class labels indexing the columns of ``preds``.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : Tensor of shape ()
        The smooth ECE, in [0, 1], float64.

    References
    ----------
    .. [1] J. Blasiok and P. Nakkiran, "Smooth ECE: Principled Reliability Diagrams via Kernel
       Smoothing", ICLR 2024.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import smooth_calibration_error
    >>> generator = torch.Generator().manual_seed(0)
    >>> p = torch.rand(4000, generator=generator, dtype=torch.float64)
    >>> y = (torch.rand(4000, generator=generator, dtype=torch.float64) < p).long()
    >>> bool(smooth_calibration_error(p, y) < 0.03)  # calibrated
    True
    >>> bool(smooth_calibration_error(p.clamp(0.25, 0.75), y) > 0.05)  # under-confident
    True
    """
    return _smooth_calibration_error(
        preds, target, sample_weight=sample_weight, caller="smooth_calibration_error"
    )


def ks_calibration_error(
    preds, target, *, kind: str = "top-label", sample_weight=None
) -> torch.Tensor:
    r"""Kolmogorov-Smirnov calibration error: a calibration error without bins.

    The samples are sorted by confidence; the error is the largest distance between the
    cumulative (weighted) frequency of the predicted event and the cumulative confidence,
    ``max_i |sum_{j <= i} w_j (o_j - c_j)| / W`` (Gupta et al., 2021). It is 0 for a perfectly
    calibrated model on infinite data and, unlike binned errors, depends on no bin choice.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities (1-D: the probability of class 1 of a binary problem).
    target : array-like or Tensor of shape (n_samples,)
        Class labels indexing the columns of ``preds``.
    kind : {"top-label", "classwise"}, default="top-label"
        Top-label confidence and correctness, or the mean over classes ``k`` of the error of
        ``p_k`` as a prediction of ``target == k``.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    error : Tensor of shape ()
        The error, in [0, 1], float64 on the device of ``preds``.

    References
    ----------
    .. [1] K. Gupta, A. Rahimi, T. Ajanthan, T. Mensink, C. Sminchisescu and R. Hartley,
       "Calibration of neural networks using splines", ICLR 2021.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import ks_calibration_error
    >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> ks_calibration_error(preds, torch.tensor([0, 1, 1, 0]))
    tensor(0.2750, dtype=torch.float64)
    """
    return _ks_calibration_error(
        preds, target, kind=kind, sample_weight=sample_weight, caller="ks_calibration_error"
    )


def max_logit_concentration(logits) -> torch.Tensor:
    """Coefficient of variation of the maximum logits, as a 0-d float64 tensor.

    See :func:`distcal.metrics.max_logit_concentration`.

    Parameters
    ----------
    logits : array-like or Tensor of shape (n_samples, n_classes)
        Logits of a network.

    Returns
    -------
    Tensor of shape ()
        Standard deviation over mean of the row maxima (lower: more concentrated).

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import max_logit_concentration
    >>> max_logit_concentration(torch.tensor([[1.0, 4.0], [6.0, 0.0]]))
    tensor(0.2000, dtype=torch.float64)
    """
    from ._diagnostics import _concentration

    return _concentration(logits)


def masking_spread_ratio(logits, masked_logits) -> torch.Tensor:
    """Ratio of the interquartile ranges of masked and clean maximum logits (0-d tensor).

    See :func:`distcal.metrics.masking_spread_ratio`.

    Parameters
    ----------
    logits : array-like or Tensor of shape (n_samples, n_classes)
        Logits of clean inputs.
    masked_logits : array-like or Tensor of shape (n_masked, n_classes)
        Logits of masked inputs.

    Returns
    -------
    Tensor of shape ()
        IQR of the masked row maxima over the IQR of the clean ones (above 1: masking spreads).

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import masking_spread_ratio
    >>> clean = torch.tensor([[5.0], [6.0], [7.0], [8.0], [9.0]]) * torch.tensor([[1.0, 0.0]])
    >>> masked = torch.tensor([[1.0], [3.0], [5.0], [7.0], [9.0]]) * torch.tensor([[1.0, 0.0]])
    >>> masking_spread_ratio(clean, masked)
    tensor(2., dtype=torch.float64)
    """
    from ._diagnostics import _spread_ratio

    return _spread_ratio(logits, masked_logits)


def negative_log_likelihood(preds, target, *, sample_weight=None) -> torch.Tensor:
    """Mean negative log-likelihood (cross-entropy) of the labels under ``preds``.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights; the result is the weighted mean.

    Returns
    -------
    nll : Tensor of shape ()
        ``mean(-log p_y)`` as float64 on the device of ``preds``, in [0, inf].

    See Also
    --------
    brier_score : A bounded proper scoring rule.

    Notes
    -----
    Probabilities are not clipped: a sample whose label has probability exactly 0 (and a
    positive weight) makes the result ``inf``, which is the true value of the loss. Compute it
    from logits (``torch.nn.functional.cross_entropy``) if the probabilities underflow.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import negative_log_likelihood
    >>> preds = torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64)
    >>> negative_log_likelihood(preds, torch.tensor([0, 1]))
    tensor(0.4904, dtype=torch.float64)
    """
    return _negative_log_likelihood(preds, target, sample_weight)


def brier_score(preds, target, *, sample_weight=None) -> torch.Tensor:
    """Multiclass Brier score: mean squared distance between ``preds`` and the one-hot labels.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights; the result is the weighted mean.

    Returns
    -------
    score : Tensor of shape ()
        ``mean_i sum_k (p_ik - 1[y_i = k])^2`` as float64 on the device of ``preds``, in
        [0, 2]: 0 for certain correct predictions, 2 for certain wrong ones.

    See Also
    --------
    negative_log_likelihood : The logarithmic proper scoring rule.

    Notes
    -----
    The sum runs over all classes, as in Brier (1950). For a binary problem this is twice
    :func:`sklearn.metrics.brier_score_loss`, which counts only the positive class.

    References
    ----------
    .. [1] G. W. Brier, "Verification of forecasts expressed in terms of probability",
       Monthly Weather Review 78(1), 1950.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import brier_score
    >>> preds = torch.tensor([[0.5, 0.5], [0.25, 0.75]], dtype=torch.float64)
    >>> brier_score(preds, torch.tensor([0, 1]))
    tensor(0.3125, dtype=torch.float64)
    """
    return _brier_score(preds, target, sample_weight)


def calibration_curve(
    preds,
    target,
    *,
    n_bins: int = 15,
    strategy: str = "uniform",
    kind: str = "top-label",
    sample_weight=None,
) -> Bunch:
    """Per-bin accuracy and mean confidence: the data of a reliability diagram.

    The bins are those of :func:`calibration_error` with the same options, so the curve and the
    error always agree.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities; 1-D input is the probability of class 1 of a binary problem.
    target : array-like or Tensor of shape (n_samples,)
        Class labels, integers in ``[0, n_classes)``.
    n_bins : int, default=15
        Number of bins.
    strategy : {"uniform", "quantile"}, default="uniform"
        Equal-width or equal-mass bins.
    kind : {"top-label", "classwise"}, default="top-label"
        Top-label gives one curve; classwise gives one curve per class (one row each).
    sample_weight : array-like or Tensor of shape (n_samples,), default=None
        Non-negative sample weights.

    Returns
    -------
    curve : :class:`~sklearn.utils.Bunch`
        Float64 tensors on the device of ``preds``:

        bin_edges : Tensor of shape (n_bins + 1,)
            The bin edges. Classwise quantile bins have one row of edges per class, shape
            (n_classes, n_bins + 1).
        counts : Tensor of shape (n_bins,)
            The weight in each bin (the number of samples without weights).
        mean_confidence : Tensor of shape (n_bins,)
            The weighted mean confidence in each bin.
        accuracy : Tensor of shape (n_bins,)
            The weighted frequency of correct predictions (classwise: of the class) in each bin.

        Classwise curves have shape (n_classes, n_bins). ``mean_confidence`` and ``accuracy``
        are NaN in empty bins (zero weight): they have no value there.

    See Also
    --------
    calibration_error : The error summarising the curve.
    distcal.plotting.reliability_diagram : Draws the curve.

    Examples
    --------
    >>> import torch
    >>> from distcal.metrics.functional import calibration_curve
    >>> preds = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]])
    >>> curve = calibration_curve(preds, torch.tensor([0, 1, 1, 0]), n_bins=4)
    >>> curve.counts
    tensor([0., 0., 2., 2.], dtype=torch.float64)
    >>> curve.accuracy
    tensor([   nan,    nan, 0.5000, 0.5000], dtype=torch.float64)
    """
    return _calibration_curve(
        preds,
        target,
        n_bins=n_bins,
        strategy=strategy,
        kind=kind,
        sample_weight=sample_weight,
        caller="calibration_curve",
    )
