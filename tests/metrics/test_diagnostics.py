"""Calibratability diagnostics on logits, against numpy."""

import numpy as np
import pytest
import torch

from distcal.distill import max_logit_statistics as from_distill
from distcal.metrics import functional as F
from distcal.metrics import masking_spread_ratio, max_logit_concentration, max_logit_statistics


def test_concentration_and_spread_against_numpy():
    rng = np.random.default_rng(0)
    clean = 5 + rng.normal(size=(400, 6))
    masked = rng.normal(scale=2.0, size=(1200, 6))
    top, top_masked = clean.max(axis=1), masked.max(axis=1)
    assert max_logit_concentration(clean) == pytest.approx(top.std() / abs(top.mean()))
    iqr = lambda v: np.subtract(*np.percentile(v, [75, 25]))  # noqa: E731
    assert masking_spread_ratio(clean, masked) == pytest.approx(iqr(top_masked) / iqr(top))
    assert float(F.max_logit_concentration(torch.tensor(clean))) == pytest.approx(
        max_logit_concentration(clean)
    )
    assert float(F.masking_spread_ratio(torch.tensor(clean), torch.tensor(masked))) == (
        pytest.approx(masking_spread_ratio(clean, masked))
    )
    assert max_logit_statistics(clean).cv == pytest.approx(max_logit_concentration(clean))
    assert from_distill is max_logit_statistics  # one implementation, two homes


def test_undefined_diagnostics_raise_instead_of_returning_inf():
    """std/|mean| at mean 0 and an IQR ratio over a zero IQR are undefined; an inf would pass
    silently into a table. Each says what is undefined and what to report instead."""
    with pytest.raises(ValueError, match="mean is 0"):
        max_logit_concentration(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="mean is 0"):
        F.max_logit_concentration(torch.zeros(3, 2))
    same = np.ones((4, 3))
    with pytest.raises(ValueError, match="interquartile range of 0"):
        masking_spread_ratio(same, np.random.default_rng(0).normal(size=(4, 3)))
    with pytest.raises(ValueError, match="interquartile range of 0"):
        masking_spread_ratio(np.zeros((5, 3)), np.zeros((5, 3)))
    assert np.isnan(max_logit_statistics(np.zeros((3, 2))).cv)
    with pytest.raises(ValueError, match="NaN"):
        max_logit_concentration(np.array([[np.nan, 1.0]]))
