"""Masked calibration as composition: the masked-fit base, MaskedScaling, and MTS as its
temperature case.

The pinned values below were computed with the code before the hierarchy was turned right side
up (MTS subclassing TemperatureScaling, MaskedScaling subclassing MTS). The committed experiment
rows depend on MTS's temperatures, ratios and masks, so they must stay bit-identical: every
number is compared exactly.
"""

import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from distcal import MaskedTemperatureScaling, TemperatureScaling


@pytest.fixture(scope="module")
def template_problem():
    """Digits and a network scoring them by overlap with each class's mean image (no training,
    so nothing but the masks is random)."""
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    templates = torch.stack([torch.from_numpy(X[y == k].mean(axis=0)) for k in range(10)])
    net = torch.nn.Linear(64, 10, bias=False)
    with torch.no_grad():
        net.weight.copy_(templates)
        logits = net(torch.from_numpy(X)).double().numpy()
    held = np.arange(300)  # about 10% errors: the held-out regime
    train = np.flatnonzero(logits.argmax(axis=1) == y)[:100]  # no error: the training regime
    return {"X": X, "y": y, "net": net, "logits": logits, "held": held, "train": train}


# name: (constructor arguments, which rows, whether X are logits, sample weights) and
# (temperature_, mask_ratio_, regime_, n_masks_, masked_accuracy_, nll_, n_iter_, cv_nll_)
PINNED = {
    "model-held-out": (
        ({}, "held", False, False),
        (
            0.2646347138342002,
            0.5,
            "held-out",
            7,
            0.6595238095238095,
            0.9948957531162606,
            5,
            [
                0.3522217885225718,
                0.3515962459768217,
                0.35120782844814113,
                0.35065506895038645,
                0.34954690097738716,
            ],
        ),
    ),
    "model-training": (
        ({}, "train", False, False),
        (
            0.24041180682137347,
            0.6733289930555555,
            "training",
            20,
            0.5515,
            1.2302329890484576,
            4,
            [],
        ),
    ),
    "logits-held-out": (
        ({}, "held", True, False),
        (
            0.258188768153886,
            0.0,
            "held-out",
            7,
            0.89,
            0.3479926252863067,
            5,
            [
                0.3522217885225718,
                0.3921914739349048,
                0.43246935291890964,
                0.47889422714594976,
                0.542638106125566,
            ],
        ),
    ),
    "logits-training": (
        ({}, "train", True, False),
        (0.53126182612537, 0.4513206845238095, "training", 20, 0.549, 1.322755226162873, 4, []),
    ),
    "logits-fixed-weighted": (
        ({"mask_ratio": 0.3, "n_masks": 3}, "held", True, True),
        (0.4850767856632355, 0.3, None, 3, 0.6505596432552955, 1.0801100070493117, 4, []),
    ),
    "model-fixed": (
        ({"mask_ratio": 0.2, "n_masks": 2}, "held", False, False),
        (0.2489211663711286, 0.2, None, 2, 0.8416666666666667, 0.5009486113480347, 5, []),
    ),
}

# (sum of predict_proba over the first five rows in float64, its entry [0, 0])
PROBA = {
    "model-held-out": (5.000000191054714, 0.9995651841163635),
    "model-training": (4.999999929149059, 0.9998227953910828),
    "logits-held-out": (5.000000000000001, 0.9996520706503925),
    "logits-training": (5.000000000000001, 0.9560956908677505),
    "logits-fixed-weighted": (5.000000000000001, 0.9718096136765627),
    "model-fixed": (4.99999981172329, 0.9997522234916687),
}


@pytest.mark.parametrize("name", PINNED)
def test_masked_temperature_scaling_is_bit_identical_to_before(template_problem, name):
    (params, rows, logits_only, weighted), expected = PINNED[name]
    d = template_problem
    index = d[rows]
    X = d["logits"][index] if logits_only else d["X"][index]
    model = None if logits_only else d["net"]
    w = np.linspace(0.5, 2, len(index)) if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mts = MaskedTemperatureScaling(model=model, random_state=0, **params)
        mts.fit(X, d["y"][index], sample_weight=w)
    temperature, ratio, regime, n_masks, accuracy, nll, n_iter, cv_nll = expected
    assert mts.temperature_ == temperature
    assert mts.mask_ratio_ == ratio
    assert mts.regime_ == regime
    assert mts.n_masks_ == n_masks
    assert mts.masked_accuracy_ == accuracy
    assert mts.nll_ == nll
    assert mts.n_iter_ == n_iter
    assert mts.converged_
    assert [float(v) for v in mts.cv_nll_] == cv_nll
    # predictions on clean inputs: the sum of five rows and one entry, as the old code gave
    proba = np.asarray(mts.predict_proba(X[:5]))
    assert (float(proba.astype(np.float64).sum()), float(proba[0, 0])) == PROBA[name]


def test_masked_temperature_scaling_with_zero_ratio_is_temperature_scaling(template_problem):
    d = template_problem
    X, y = d["logits"][d["held"]], d["y"][d["held"]]
    mts = MaskedTemperatureScaling(0.0, random_state=0).fit(X, y)
    assert mts.temperature_ == TemperatureScaling().fit(X, y).temperature_


def test_the_hierarchy_is_composition_right_side_up():
    from distcal.calibration import MaskedScaling, VectorScaling
    from distcal.calibration._masked_fit import _MaskedFit

    assert not isinstance(MaskedScaling(VectorScaling()), TemperatureScaling)
    assert not isinstance(MaskedTemperatureScaling(), TemperatureScaling)
    assert isinstance(MaskedTemperatureScaling(), MaskedScaling)
    assert isinstance(MaskedScaling(), _MaskedFit)
    assert "calibrator" not in MaskedTemperatureScaling().get_params()


def test_the_temperature_case_exposes_its_fit_as_a_calibrator(template_problem):
    from distcal.calibration import MaskedScaling

    d = template_problem
    X, y = d["X"][d["held"]], d["y"][d["held"]]
    mts = MaskedTemperatureScaling(0.2, n_masks=2, model=d["net"], random_state=0).fit(X, y)
    general = MaskedScaling(TemperatureScaling(), 0.2, n_masks=2, model=d["net"], random_state=0)
    general.fit(X, y)
    assert mts.temperature_ == general.temperature_ == general.calibrator_.temperature_
    inner = mts.calibrator_
    assert type(inner) is TemperatureScaling
    assert inner.temperature_ == mts.temperature_
    with torch.no_grad():
        clean = d["net"](torch.from_numpy(X))
    np.testing.assert_array_equal(
        inner.predict_proba(clean), mts.predict_proba(torch.from_numpy(X))
    )
    assert not hasattr(MaskedTemperatureScaling(), "calibrator_")  # not fitted: no attribute
