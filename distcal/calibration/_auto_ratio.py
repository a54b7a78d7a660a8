"""How ``mask_ratio="auto"`` chooses a mask ratio: the regime, then the rule of that regime.

Masked temperature scaling is used on two kinds of calibration data, and they call for
different ratios:

- **held-out data** the network was not trained on: plain temperature scaling works there, so
  the ratio is chosen on the data by cross-fitting, with 0 (plain temperature scaling) among the
  candidates: each candidate's temperature is fitted on the masked logits of all folds but one
  and scored by the NLL of the clean logits of the remaining fold;
- **training data** (a distilled set, the images a student was trained on): the network
  classifies them (almost) perfectly, so the NLL of clean logits has no useful minimum and
  nothing on the data can score a ratio. The *half-accuracy rule* masks until the accuracy on
  the masked data falls halfway between perfect and chance, ``(1 + 1 / K) / 2``, and fits the
  temperature there.

The regime is read from the clean calibration data: a model that misclassifies at most
:data:`FEW_ERRORS` of them is treated as having been trained on them.

Evidence against the regime warns (:class:`DistcalWarning`, naming ``regime=``): in the
training regime (read or declared), a masked accuracy at the chosen ratio more than
:data:`MISSED_TARGET` from the target (it jumped across the target, so the ratio is poorly
determined); in the held-out regime read from data with at most :data:`NEAR_TRAINING_ERRORS` errors,
the largest candidate ratio winning the cross-fitting (masking helps the more the more is
masked, as on training data); a declared held-out regime is not second-guessed.

Every evaluation of the masked logits at a ratio reuses the same uniform draws (the generator is
reset to the same seed), so the masks are *nested*: an element masked at ratio ``r`` is masked
at every ratio above ``r``. The masked accuracy is then a smooth function of the ratio, which a
bisection can follow to the target without the noise of fresh masks at every step.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.model_selection import KFold, StratifiedKFold

from ..exceptions import DistcalWarning

__all__ = [
    "FEW_ERRORS",
    "HELD_OUT_RATIOS",
    "MASKED_SAMPLES",
    "MISSED_TARGET",
    "NEAR_TRAINING_ERRORS",
    "AutoRatio",
    "choose_ratio",
    "decide_regime",
    "half_accuracy",
    "masked_accuracy",
    "resolve_n_masks",
]

#: Candidate ratios of the held-out rule (0 is plain temperature scaling).
HELD_OUT_RATIOS = (0.0, 0.1, 0.2, 0.3, 0.5)
#: Largest error rate, on the clean calibration data, read as "the model was trained on them".
FEW_ERRORS = 0.01
#: ``n_masks="auto"`` draws enough masked copies for at least this many masked samples.
MASKED_SAMPLES = 2000
#: The largest ratio the half-accuracy rule tries.
MAX_RATIO = 0.95
#: Bisection steps of the half-accuracy rule (the bracket shrinks to 0.95 / 2**7 < 0.008).
BISECTION_STEPS = 7
#: Largest error rate at which held-out data still look like training data that were read
#: as held-out: with so few errors, a win of the largest masking ratio is evidence for it.
NEAR_TRAINING_ERRORS = 0.05
#: Largest distance between the masked accuracy at the chosen ratio and the half-accuracy
#: target that fits the training regime; farther, the masked accuracy jumped across the target.
MISSED_TARGET = 0.1


def half_accuracy(n_classes: int) -> float:
    """Halfway between perfect accuracy and chance: the target of the training-data rule."""
    return (1 + 1 / n_classes) / 2


def resolve_n_masks(n_masks, n_samples: int | None, *, owner: str = "", stream=None) -> int:
    """Return ``n_masks`` as an int: ``"auto"`` gives ``ceil(MASKED_SAMPLES / n_samples)``.

    The one place ``n_masks`` is resolved, for arrays and streams. A stream whose number of
    samples cannot be known before reading it (``n_samples`` None) allows one copy only: the
    masks of copy ``d`` start ``d * n_samples`` inputs into the seeded stream.
    """
    if n_samples is None:
        if n_masks == "auto" or int(n_masks) > 1:
            raise ValueError(
                f"{owner}: X is a stream whose number of samples cannot be known before "
                f"reading it (a {type(stream).__name__}), and n_masks={n_masks!r} needs it to "
                "draw the masks of fit(X, y). Pass a DataLoader over a sized dataset or a list "
                "of batches, or set n_masks=1."
            )
        return 1
    if n_masks == "auto":
        return max(1, math.ceil(MASKED_SAMPLES / n_samples))
    return int(n_masks)


def masked_accuracy(
    values: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None
) -> float:
    """Return the (weighted) accuracy of logits whose rows are copies of the samples.

    ``values`` holds ``k * n`` rows, copy after copy, for ``n`` labels: the labels (and
    weights) are repeated ``k`` times. The one definition of the masked accuracy, read by both
    rules and reported as ``masked_accuracy_``.
    """
    copies = values.shape[0] // labels.shape[0]
    repeated = labels.repeat(copies)
    repeated_weights = None if weights is None else weights.repeat(copies)
    return _weighted_mean(values.argmax(dim=1) == repeated, repeated_weights)


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> float:
    values = values.to(torch.float64)
    if weights is None:
        return float(values.mean())
    return float((values * weights).sum() / weights.sum())


def decide_regime(
    logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None, owner: str
) -> str:
    """Read the regime from clean calibration logits: ``"training"`` or ``"held-out"``.

    No error at all: the data are separable and temperature scaling has no optimum on them, so
    they are treated as training data (whatever their origin, masking is then the only way to a
    temperature). An error rate up to :data:`FEW_ERRORS`: most likely training data, but
    held-out data of a very accurate model look the same; they are treated as training data
    (calibrating a student on its own training data as if it were held out collapses the
    temperature, the costlier mistake) and a warning says so. Above: held-out data.
    """
    wrong = logits.argmax(dim=1) != labels
    rate = _weighted_mean(wrong, weights)
    n_wrong = int(wrong.sum())
    if n_wrong == 0 or rate == 0:
        return "training"
    if rate <= FEW_ERRORS:
        warnings.warn(
            f"{owner}(mask_ratio='auto'): the model misclassifies only {n_wrong} of "
            f"{len(labels)} calibration samples ({rate:.2%}, at most {FEW_ERRORS:.0%}), as it "
            "does on data it was trained on; they are treated as training data "
            "(regime_='training', the half-accuracy rule). If they are held-out data, pass "
            "regime='held-out'; if they are training data, pass regime='training' to silence "
            "this warning.",
            DistcalWarning,
            stacklevel=4,
        )
        return "training"
    return "held-out"


@dataclass
class AutoRatio:
    """What ``mask_ratio="auto"`` chose, and the masked logits at that ratio."""

    regime: str
    ratio: float
    values: torch.Tensor
    accuracy: float
    cv_nll: dict = field(default_factory=dict)


def _folds(labels: np.ndarray, n_splits: int, seed: int):
    """Cross-fitting folds: stratified where every class has ``n_splits`` samples."""
    n_splits = min(n_splits, len(labels))
    counts = np.bincount(labels)
    if counts[counts > 0].min() >= n_splits:
        splitter = StratifiedKFold(n_splits, shuffle=True, random_state=seed % 2**32)
        return list(splitter.split(np.zeros(len(labels)), labels))
    splitter = KFold(n_splits, shuffle=True, random_state=seed % 2**32)
    return list(splitter.split(np.zeros(len(labels))))


def _rows(indices: np.ndarray, n_samples: int, n_masks: int, device) -> torch.Tensor:
    """Rows of all masked copies of the samples ``indices`` (draw ``d`` of ``i`` is ``d*n+i``)."""
    index = torch.as_tensor(indices, dtype=torch.long, device=device)
    return torch.cat([index + d * n_samples for d in range(n_masks)])


def _held_out_ratio(
    draw: Callable[[float], torch.Tensor],
    clean: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    n_masks: int,
    cv: int,
    seed: int,
    fold_nll: Callable,
    owner: str,
    read_error_rate: float | None = None,
) -> AutoRatio:
    """Cross-fitted choice among :data:`HELD_OUT_RATIOS` by the NLL of clean held-out folds."""
    n_samples = len(labels)
    if n_samples < 2:
        raise ValueError(
            f"{owner}(mask_ratio='auto'): the held-out rule cross-fits the ratio, which needs at "
            f"least 2 calibration samples; got n_samples={n_samples}. Pass a numeric mask_ratio."
        )
    device = clean.device
    folds = _folds(labels.cpu().numpy(), cv, seed)
    total_weight = float(weights.sum()) if weights is not None else float(n_samples)
    scores, drawn = {}, {}
    for ratio in HELD_OUT_RATIOS:
        values = clean if ratio == 0 else draw(ratio)
        copies = 1 if ratio == 0 else n_masks
        drawn[ratio] = values
        score = 0.0
        for train, test in folds:
            rows = _rows(train, n_samples, copies, device)
            test_index = torch.as_tensor(test, dtype=torch.long, device=device)
            fit_weights = None if weights is None else weights[rows % n_samples]
            test_weights = None if weights is None else weights[test_index]
            nll = fold_nll(
                values[rows],
                labels[rows % n_samples],
                fit_weights,
                clean[test_index],
                labels[test_index],
                test_weights,
            )
            fold_weight = len(test) if weights is None else float(test_weights.sum())
            score += nll * fold_weight / total_weight
        scores[ratio] = score
    best = min(HELD_OUT_RATIOS, key=lambda r: (scores[r], r))
    near_training = read_error_rate is not None and read_error_rate <= NEAR_TRAINING_ERRORS
    if best == HELD_OUT_RATIOS[-1] and near_training:
        warnings.warn(
            f"{owner}(mask_ratio='auto'): the data were read as held-out (the model "
            f"misclassifies {read_error_rate:.2%} of them), but the cross-fitted NLL is lowest "
            f"at the largest candidate ratio, {best}: masking helps more the more is masked, as "
            "it does on data the model was trained on, and the best ratio may lie beyond the "
            "candidates. If the model was trained on these data (or on near copies of them), "
            "pass regime='training'; if they are held-out, pass regime='held-out' or a numeric "
            "mask_ratio.",
            DistcalWarning,
            stacklevel=5,
        )
    values = drawn[best]
    return AutoRatio("held-out", best, values, masked_accuracy(values, labels, weights), scores)


def _half_accuracy_ratio(
    draw: Callable[[float], torch.Tensor],
    clean: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    n_classes: int,
    owner: str,
) -> AutoRatio:
    """Bisect the (nested-mask) masked accuracy to the half-accuracy target; fit there."""
    target = half_accuracy(n_classes)

    def accuracy_at(ratio):
        values = draw(ratio)
        return values, masked_accuracy(values, labels, weights)

    high_values, high_accuracy = accuracy_at(MAX_RATIO)
    if high_accuracy > target:
        warnings.warn(
            f"{owner}(mask_ratio='auto'): the accuracy on masked calibration data stayed at "
            f"{high_accuracy:.3f}, above the target {target:.3f}, up to the largest ratio "
            f"{MAX_RATIO}; that ratio is used. The model is unusually robust to masking.",
            DistcalWarning,
            stacklevel=4,
        )
        return AutoRatio("training", MAX_RATIO, high_values, high_accuracy)
    low, low_accuracy = 0.0, _weighted_mean(clean.argmax(dim=1) == labels, weights)
    high = MAX_RATIO
    for _ in range(BISECTION_STEPS):
        middle = (low + high) / 2
        values, accuracy = accuracy_at(middle)
        if accuracy > target:
            low, low_accuracy = middle, accuracy
        else:
            high, high_values, high_accuracy = middle, values, accuracy
    # The masked accuracy is close to linear across the final bracket: interpolate to the target.
    if low_accuracy > high_accuracy:
        ratio = low + (high - low) * (low_accuracy - target) / (low_accuracy - high_accuracy)
    else:
        ratio = high
    if ratio == high:
        values, accuracy = high_values, high_accuracy
    else:
        values, accuracy = accuracy_at(ratio)
    if abs(accuracy - target) > MISSED_TARGET:
        warnings.warn(
            f"{owner}(mask_ratio='auto'): the data were read as training data, but the masked "
            f"accuracy at the chosen ratio {ratio:.3f} is {accuracy:.3f}, far from the target "
            f"{target:.3f}: it jumps across the target between nearby ratios instead of "
            "falling gradually, so the ratio is poorly determined (too few samples or copies, "
            "or data unlike a training set). Pass more masked copies (n_masks), regime="
            "'held-out' if the model was not trained on these data, or a numeric mask_ratio.",
            DistcalWarning,
            stacklevel=5,
        )
    return AutoRatio("training", float(ratio), values, accuracy)


def choose_ratio(
    draw: Callable[[float], torch.Tensor],
    clean: torch.Tensor,
    labels: torch.Tensor,
    weights: torch.Tensor | None,
    *,
    regime: str,
    n_masks: int,
    cv: int,
    seed: int,
    fold_nll: Callable,
    owner: str,
) -> AutoRatio:
    """Run ``mask_ratio="auto"``: decide the regime (unless given), then apply its rule.

    Parameters
    ----------
    draw : callable
        ``draw(ratio)`` returns the logits of ``n_masks`` masked copies of every calibration
        sample (rows draw after draw), from the same uniform draws at every call.
    clean : Tensor of shape (n_samples, n_classes)
        Logits of the clean calibration samples.
    labels : Tensor of shape (n_samples,)
        Labels.
    weights : Tensor of shape (n_samples,) or None
        Sample weights.
    regime : {"auto", "held-out", "training"}
        The regime, or "auto" to read it from ``clean``.
    n_masks : int
        Masked copies per sample.
    cv : int
        Folds of the held-out rule.
    seed : int
        Seeds the folds.
    fold_nll : callable
        ``fold_nll(fit_logits, fit_labels, fit_weights, test_logits, test_labels,
        test_weights) -> float``: fit the calibrator on the first three, return the weighted
        mean NLL of the last three.
    owner : str
        The estimator's name, for warnings.

    Returns
    -------
    AutoRatio
    """
    read_error_rate = None
    if regime == "auto":
        regime = decide_regime(clean, labels, weights, owner)
        read_error_rate = _weighted_mean(clean.argmax(dim=1) != labels, weights)
    if regime == "held-out":
        return _held_out_ratio(
            draw,
            clean,
            labels,
            weights,
            n_masks=n_masks,
            cv=cv,
            seed=seed,
            fold_nll=fold_nll,
            owner=owner,
            read_error_rate=read_error_rate,
        )
    return _half_accuracy_ratio(draw, clean, labels, weights, n_classes=clean.shape[1], owner=owner)
