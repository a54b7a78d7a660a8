import numpy as np
import pytest
import torch

from distcal.distill import masking_spread, max_logit_statistics


def test_statistics_match_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 10)) * 3
    stats = max_logit_statistics(logits)
    m = logits.max(axis=1)
    assert stats.mean == pytest.approx(m.mean())
    assert stats.std == pytest.approx(m.std())
    assert stats.median == pytest.approx(np.median(m))
    assert stats.iqr == pytest.approx(np.subtract(*np.percentile(m, [75, 25])))
    assert stats.cv == pytest.approx(m.std() / abs(m.mean()))
    assert max_logit_statistics(torch.from_numpy(2 * logits)).cv == pytest.approx(stats.cv)


def test_masking_spreads_the_maximum_logits_of_an_overfitted_network(digits_student):
    d = digits_student
    result = masking_spread(d["net"], d["X_train"], mask_ratio=0.5, n_masks=5, random_state=0)
    assert result.masked.mean < result.clean.mean
    assert result.spread_ratio > 1
    assert result.masked_logits.shape == (5 * len(d["X_train"]), 10)
    with pytest.raises(ValueError, match="mask_ratio"):
        masking_spread(d["net"], d["X_train"], mask_ratio=1.0)
