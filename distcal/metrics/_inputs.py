"""What every metric does first: validate probabilities, labels and weights, and reduce rows.

``_check_inputs`` turns ``preds, target, sample_weight`` into validated tensors on the device
of ``preds`` (a binary column becomes two columns in float64); ``_confidences_and_outcomes``
reduces each row to the confidence and the outcome that the binned, KS and smooth errors read.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch

from .._binning import MAX_BINS
from .._device import row_chunks
from .._params import Interval, Options, check_param
from .._validation import check_probabilities, check_sample_weight, check_targets

_NORMS = ("l1", "l2", "max")
_STRATEGIES = ("uniform", "quantile")
_KINDS = ("top-label", "classwise")
_INT_DTYPES = (torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)

#: The argument names of the scikit-learn style layer, for the error messages.
_NAMES = {"preds_name": "y_prob", "target_name": "y_true"}


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
