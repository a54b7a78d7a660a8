"""The one schema of the experiment's scores and rows: Score, RowKey, the regime's one name."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from distcal.calibration import MaskedTemperatureScaling
from distcal.experiment import PROFILES
from distcal.experiment.schema import (
    HELD_OUT,
    PARAMETERS,
    SCORES,
    TRAINING,
    RowKey,
    accuracy,
    fixed_ratio_row,
    upgrade_label,
    upgrade_regime,
)
from distcal.experiment.scores import score_columns
from distcal.experiment.settings import COMPARISONS, MAIN_ROWS, METRICS, RECIPE_COMPARISONS
from distcal.metrics import expected_calibration_error


def _probabilities(n=300, n_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    logits = 3 * rng.standard_normal((n, n_classes))
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(n_classes, p=p) for p in proba])
    return labels, proba


def test_score_columns_are_the_schema_scores_in_order():
    y, proba = _probabilities()
    columns = score_columns(y, proba, classwise=True)
    assert list(columns) == ["accuracy", "ece10", "ece15", "cwece", "nll", "brier", "confidence"]
    assert all(columns[key] == SCORES[key](y, proba) for key in columns)
    # accuracy and confidence, computed in one place, are what they say
    assert columns["accuracy"] == np.mean(proba.argmax(axis=1) == y) == accuracy(y, proba)
    assert columns["confidence"] == proba.max(axis=1).mean()
    assert columns["ece15"] == expected_calibration_error(y, proba, n_bins=15)
    assert set(METRICS) <= set(SCORES)


def test_a_score_shows_its_values_as_its_tables_do():
    assert SCORES["accuracy"].show(0.9638888, 0.012) == "96.4±1.2"
    assert SCORES["nll"].show(0.19753557) == "0.198"
    assert SCORES["ece15"].lower_is_better
    assert SCORES["accuracy"].lower_is_better is False
    assert PARAMETERS["temperature"].show(None) == "-"
    with pytest.raises(TypeError, match="set by a fit"):
        PARAMETERS["temperature"]([0], [[1.0]])


def test_over_and_under_confidence_sum_to_ece15():
    y, proba = _probabilities(seed=1)
    over, under = SCORES["overconfidence"](y, proba), SCORES["underconfidence"](y, proba)
    assert over + under == pytest.approx(SCORES["ece15"](y, proba), rel=1e-12)


def test_a_row_key_is_a_tuple_with_a_label():
    key = fixed_ratio_row(0.1)
    assert key == ("MTS 0.1", "training")
    assert key.label == "MTS 0.1 training"
    assert RowKey.of({"calibrator": "TS", "regime": HELD_OUT, "ece15": 0.1}) == ("TS", "held-out")
    assert all(isinstance(row, RowKey) for row in MAIN_ROWS)
    assert all(isinstance(k, RowKey) for pair in (*COMPARISONS, *RECIPE_COMPARISONS) for k in pair)


def test_the_regime_of_the_training_images_has_the_calibrators_name():
    """One name for one concept: the experiment's regime is the calibrator's ``regime``."""
    y, proba = _probabilities()
    logits = torch.as_tensor(np.log(proba))
    fitted = MaskedTemperatureScaling(regime=TRAINING, random_state=0).fit(logits, y)
    assert fitted.regime_ == TRAINING
    assert {row.regime for row in MAIN_ROWS} <= {"-", HELD_OUT, TRAINING}


def test_files_written_before_the_rename_read_in_todays_names():
    assert upgrade_regime("strict") == "training"
    assert upgrade_regime("held-out") == "held-out"
    assert upgrade_label("MTS auto strict") == "MTS auto training"
    assert upgrade_label("recipe strict") == "recipe training"
    assert upgrade_label("none -") == "none -"
    assert upgrade_label("TS 1 real/class kept") == "TS 1 real/class kept"


@pytest.mark.parametrize("ratios", [(0.5,), (), (0.1, 0.5)])
def test_figures_follow_the_profile_without_a_ratio_of_0_1(tmp_path, ratios):
    """A profile without the ratio 0.1 draws its figures (it raised a KeyError)."""
    pytest.importorskip("matplotlib")
    from distcal.experiment.figures import draw_figures

    profile = replace(PROFILES["smoke"], training_ratios=ratios)
    y, proba = _probabilities(n=60)
    keys = [
        RowKey("none", "-"),
        RowKey("TS", TRAINING),
        RowKey("MTS auto", TRAINING),
        RowKey("TS", HELD_OUT),
        *(fixed_ratio_row(r) for r in ratios),
    ]
    probabilities = {key: proba for key in keys}
    generator = torch.Generator().manual_seed(0)
    spread = _Spread(
        torch.randn(40, 4, generator=generator), torch.randn(160, 4, generator=generator)
    )
    figures = {"DM": (probabilities, spread), "real": (probabilities, spread)}
    data = _Data(torch.as_tensor(y))
    draw_figures(tmp_path, figures, (None, None, torch.arange(len(y))), data, profile)
    assert (tmp_path / "reliability.png").stat().st_size > 0
    assert (tmp_path / "max_logits.png").stat().st_size > 0


class _Spread:
    def __init__(self, clean, masked):
        self.clean_logits, self.masked_logits = clean, masked


class _Data:
    def __init__(self, labels):
        self.labels = labels
