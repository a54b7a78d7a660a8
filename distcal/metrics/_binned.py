"""Binned calibration statistics: per-bin sums, the errors and curves computed from them.

One binning kernel (:mod:`distcal._binning`) turns confidences and outcomes into per-bin sums
of shape (3, n_groups, n_bins): weight, confidence and outcome. ``_calibration_update`` makes
them (summable across batches when the edges are shared), ``_calibration_compute`` reduces them
to the L1, L2 or max error, and the resamplers score bootstrap resamples from rows reduced once.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.utils import Bunch

from .._binning import bin_edges, bin_statistics
from .._device import as_tensor, to_numpy
from ._inputs import _check_binning_params, _check_inputs, _confidences_and_outcomes

__all__ = ["binned_reliability"]


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
    return _curve(statistics, edges, kind)


def _curve(statistics: torch.Tensor, edges: torch.Tensor, kind: str) -> Bunch:
    weight, confidence_sum, outcome_sum = statistics
    occupied = weight > 0
    nan = torch.full_like(weight, float("nan"))
    mean_confidence = torch.where(occupied, confidence_sum / weight, nan)
    accuracy = torch.where(occupied, outcome_sum / weight, nan)
    if kind == "top-label":
        weight, mean_confidence, accuracy = weight[0], mean_confidence[0], accuracy[0]
    return Bunch(bin_edges=edges, counts=weight, mean_confidence=mean_confidence, accuracy=accuracy)


def binned_reliability(
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
) -> tuple[Bunch, torch.Tensor]:
    """Return the calibration curve and the L1 calibration error, from one binning.

    For distcal's own packages (a reliability diagram draws the curve and writes the error in
    its legend), not for users: errors name ``caller`` and the arguments ``preds_name`` and
    ``target_name``, as the caller calls them. The curve is that of
    :func:`distcal.metrics.functional.calibration_curve` and the error that of
    :func:`distcal.metrics.functional.calibration_error` (``norm="l1"``) with the same options,
    bit for bit: both come from the same per-bin sums.

    Parameters
    ----------
    preds : array-like or Tensor of shape (n_samples, n_classes) or (n_samples,)
        Predicted probabilities.
    target : array-like or Tensor of shape (n_samples,)
        Class labels.
    n_bins : int
        Number of bins.
    strategy : {"uniform", "quantile"}
        Equal-width or equal-mass bins.
    kind : {"top-label", "classwise"}
        Which confidences are binned.
    sample_weight : array-like or Tensor of shape (n_samples,) or None
        Non-negative sample weights.
    caller : str
        The function named in error messages.
    preds_name : str, default="preds"
        The name of ``preds`` in error messages.
    target_name : str, default="target"
        The name of ``target`` in error messages.

    Returns
    -------
    curve : :class:`~sklearn.utils.Bunch`
        As :func:`distcal.metrics.functional.calibration_curve` returns it.
    error : Tensor of shape ()
        The L1 calibration error, float64 on the device of ``preds``.
    """
    n_bins = _check_binning_params(n_bins, strategy, kind, caller)
    probs, labels, weights = _check_inputs(
        preds, target, sample_weight, preds_name=preds_name, target_name=target_name
    )
    statistics, edges = _calibration_update(
        probs, labels, weights, n_bins=n_bins, strategy=strategy, kind=kind
    )
    return _curve(statistics, edges, kind), _calibration_compute(statistics, "l1")
