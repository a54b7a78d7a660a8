"""Calibratability diagnostics of the paper's analysis, on logits.

Zhu et al. (ICCV 2023) explain why temperature scaling fails on networks trained on distilled
data by the distribution of their maximum logits: concentrated on the data they saw, so one
temperature cannot spread them; masking the inputs spreads them again. These functions measure
both from logits (numpy or torch, any device): the statistics of the maximum logits, their
concentration (coefficient of variation), and how much masking spreads them (the ratio of the
interquartile ranges of masked and clean maximum logits). Getting masked logits needs a
model: :func:`distcal.distill.masking_spread` runs one, or use
:func:`distcal.calibration.mask_logits` for logit-space masking.
"""

from __future__ import annotations

import torch
from sklearn.utils import Bunch

from .._validation import check_logits

__all__ = ["masking_spread_ratio", "max_logit_concentration", "max_logit_statistics"]


def max_logit_statistics(logits) -> Bunch:
    """Summarise the distribution of the per-sample maximum logit.

    Parameters
    ----------
    logits : array-like or Tensor of shape (n_samples, n_classes)
        Logits (numpy or torch, any device).

    Returns
    -------
    Bunch
        Floats ``mean``, ``std``, ``median``, ``iqr`` (interquartile range) of the maximum
        logits, and ``cv``, their coefficient of variation ``std / |mean|``: the smaller, the
        more concentrated. ``cv`` is scale-free, so it compares networks whose logits differ in
        scale; it is NaN when the mean is 0 (undefined, see :func:`max_logit_concentration`).

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import max_logit_statistics
    >>> stats = max_logit_statistics(np.array([[1.0, 5.0], [6.0, 0.0], [0.0, 7.0]]))
    >>> float(stats.mean), float(stats.median)
    (6.0, 6.0)
    """
    values = check_logits(logits).values.to(torch.float64).amax(dim=1)
    levels = torch.tensor([0.25, 0.5, 0.75], dtype=values.dtype, device=values.device)
    q1, median, q3 = torch.quantile(values, levels).tolist()
    mean = float(values.mean())
    std = float(values.std(unbiased=False))
    return Bunch(
        mean=mean,
        std=std,
        median=median,
        iqr=q3 - q1,
        cv=std / abs(mean) if mean != 0 else float("nan"),
        n_samples=int(values.numel()),
    )


def _max_logits(logits, name: str) -> torch.Tensor:
    return check_logits(logits, name=name).values.to(torch.float64).amax(dim=1)


def _iqr(values: torch.Tensor) -> torch.Tensor:
    levels = torch.tensor([0.25, 0.75], dtype=values.dtype, device=values.device)
    q1, q3 = torch.quantile(values, levels)
    return q3 - q1


def _concentration(logits) -> torch.Tensor:
    values = _max_logits(logits, "logits")
    mean = values.mean()
    if mean == 0:
        raise ValueError(
            "The concentration std / |mean| of the maximum logits is undefined: their mean is "
            f"0 (std {float(values.std(unbiased=False)):.6g}). Logits that are constant or "
            "centred at 0 have no scale to compare the spread with; report "
            "max_logit_statistics(logits).std instead."
        )
    return values.std(unbiased=False) / mean.abs()


def _spread_ratio(logits, masked_logits) -> torch.Tensor:
    clean = _iqr(_max_logits(logits, "logits"))
    masked = _iqr(_max_logits(masked_logits, "masked_logits"))
    if clean == 0:
        raise ValueError(
            "The masking spread ratio is undefined: the maximum logits of the clean inputs "
            "(logits) have an interquartile range of 0, so no spread can be compared with "
            f"theirs (masked_logits' is {float(masked):.6g}). Compare the two "
            "max_logit_statistics instead."
        )
    return masked / clean


def max_logit_concentration(logits) -> float:
    """Coefficient of variation ``std / |mean|`` of the maximum logits: small is concentrated.

    Scale-free, so it compares networks whose logits differ in scale; undefined (a
    ``ValueError``) when the mean is 0.
    :func:`distcal.metrics.functional.max_logit_concentration` returns it as a tensor.

    Parameters
    ----------
    logits : array-like or Tensor of shape (n_samples, n_classes)
        Logits.

    Returns
    -------
    float
        Standard deviation over mean of the row maxima (lower: more concentrated).

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import max_logit_concentration
    >>> max_logit_concentration(np.array([[1.0, 4.0], [6.0, 0.0]]))
    0.2
    """
    return float(_concentration(logits))


def masking_spread_ratio(logits, masked_logits) -> float:
    """How much masking spreads the maximum logits: the ratio of their interquartile ranges.

    Above 1 when the maximum logits of the masked inputs are more spread than those of the
    clean inputs; undefined (a ``ValueError``) when the clean ones have no spread. The two sets
    may differ in size (several masked copies per input).

    Parameters
    ----------
    logits : array-like or Tensor of shape (n_samples, n_classes)
        Logits of the clean inputs.
    masked_logits : array-like or Tensor of shape (n_masked, n_classes)
        Logits of the masked inputs.

    Returns
    -------
    float
        IQR of the masked row maxima over the IQR of the clean ones (above 1: masking spreads).

    Examples
    --------
    >>> import numpy as np
    >>> from distcal.metrics import masking_spread_ratio
    >>> clean = np.array([[5.0, 0.0], [6.0, 0.0], [7.0, 0.0], [8.0, 0.0], [9.0, 0.0]])
    >>> masked = clean * [[0.0, 1.0]] + np.array([[1.0], [3.0], [5.0], [7.0], [9.0]]) * [[1, 0]]
    >>> masking_spread_ratio(clean, masked)
    2.0
    """
    return float(_spread_ratio(logits, masked_logits))
