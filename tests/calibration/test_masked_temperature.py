import pickle

import numpy as np
import pytest
import torch

from distcal import MaskedTemperatureScaling, TemperatureScaling
from distcal.calibration import mask_inputs, mask_logits, module_logits
from distcal.exceptions import DistcalWarning, InvalidParameterError, UncalibratableDataWarning
from distcal.metrics import expected_calibration_error

from ..conftest import CUDA, make_logits


# ------------------------------------------------------------------------------- masks
def test_mask_inputs_zeroes_elements_independently_without_rescaling():
    x = torch.ones(200, 3, 8, 8)
    masked = mask_inputs(x, 0.3, generator=torch.Generator().manual_seed(0))
    assert x.eq(1).all(), "the input must not be modified"
    assert set(masked.unique().tolist()) == {0.0, 1.0}  # kept elements are not rescaled
    assert masked.eq(0).float().mean().item() == pytest.approx(0.3, abs=0.01)
    # one draw per sample and per element: channels and samples get different masks
    assert not torch.equal(masked[0], masked[1])
    assert not torch.equal(masked[0, 0], masked[0, 1])


def test_mask_logits_uses_the_row_mean_and_commutes_with_shifts():
    z = torch.tensor([[1.0, 2.0, 6.0], [0.0, -3.0, 3.0]])
    masked = mask_logits(z, 0.5, n_masks=4, generator=torch.Generator().manual_seed(0))
    assert masked.shape == (8, 3)
    repeated = z.repeat(4, 1)
    row_mean = repeated.mean(dim=1, keepdim=True).expand_as(repeated)
    changed = masked != repeated
    assert changed.any()
    assert torch.equal(masked[changed], row_mean[changed])
    shifted = mask_logits(z + 10, 0.5, n_masks=4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(shifted, masked + 10)


# ------------------------------------------------------------------------------- logit mode
def test_mask_ratio_zero_is_temperature_scaling_exactly():
    X, y = make_logits(n_samples=300, random_state=0)
    ts = TemperatureScaling().fit(X, y)
    mts = MaskedTemperatureScaling(mask_ratio=0.0, n_masks=5, random_state=0).fit(X, y)
    assert mts.temperature_ == ts.temperature_
    np.testing.assert_array_equal(mts.predict_proba(X), ts.predict_proba(X))


def test_same_random_state_same_temperature():
    X, y = make_logits(n_samples=300, random_state=1)
    fits = [MaskedTemperatureScaling(0.3, random_state=s).fit(X, y).temperature_ for s in (0, 0, 1)]
    assert fits[0] == fits[1]
    assert fits[0] != fits[2]


def test_logit_masking_is_invariant_to_shifting_rows():
    X, y = make_logits(n_samples=300, random_state=2)
    a = MaskedTemperatureScaling(0.3, random_state=0).fit(X, y).temperature_
    b = MaskedTemperatureScaling(0.3, random_state=0).fit(X + 5.0, y).temperature_
    assert a == pytest.approx(b, rel=1e-10)


def test_n_masks_replicates_and_weights_every_copy():
    X, y = make_logits(n_samples=100, random_state=3)
    w = np.arange(1, 101, dtype=float)
    mts = MaskedTemperatureScaling(0.3, n_masks=3, random_state=0).fit(X, y, sample_weight=w)
    generator = torch.Generator().manual_seed(0)
    masked = mask_logits(torch.from_numpy(X), 0.3, n_masks=3, generator=generator)
    by_hand = TemperatureScaling().fit(masked, np.tile(y, 3), sample_weight=np.tile(w, 3))
    assert mts.temperature_ == by_hand.temperature_


def test_logit_masking_unlocks_separable_calibration_data():
    X, y = make_logits(n_samples=200, random_state=4)
    y = X.argmax(axis=1)  # separable, as on a distilled training set
    with pytest.warns(UncalibratableDataWarning):
        TemperatureScaling().fit(X, y)
    mts = MaskedTemperatureScaling(0.5, n_masks=4, random_state=0).fit(X, y)
    assert mts.converged_
    assert 1e-3 < mts.temperature_ < 1e3


# ------------------------------------------------------------------------------- model mode
def test_model_mode_masks_inputs_and_predicts_on_clean_inputs(digits_student):
    d = digits_student
    net = d["net"]
    mts = MaskedTemperatureScaling(0.3, n_masks=2, model=net, batch_size=37, random_state=0)
    mts.fit(d["X_cal"], d["y_cal"])
    # the fit equals temperature scaling of the logits of the same masked inputs
    generator = torch.Generator().manual_seed(0)
    masked_logits = module_logits(
        net,
        d["X_cal"],
        batch_size=37,
        transform=lambda b: mask_inputs(b, 0.3, generator=generator),
        n_repeats=2,
    )
    ts = TemperatureScaling().fit(masked_logits, np.tile(d["y_cal"], 2))
    assert mts.temperature_ == ts.temperature_
    clean = module_logits(net, d["X_test"], batch_size=512)
    expected = torch.softmax(clean / mts.temperature_, dim=1).numpy()
    np.testing.assert_allclose(mts.predict_proba(d["X_test"]), expected, rtol=1e-6)
    assert isinstance(mts.predict_proba(d["X_test"]), np.ndarray)
    assert isinstance(mts.predict_proba(torch.from_numpy(d["X_test"])), torch.Tensor)
    assert mts.input_shape_ == (1, 8, 8)


def test_model_mode_with_zero_ratio_is_temperature_scaling(digits_student):
    d = digits_student
    mts = MaskedTemperatureScaling(0.0, model=d["net"], random_state=0).fit(d["X_cal"], d["y_cal"])
    logits = module_logits(d["net"], d["X_cal"], batch_size=256)
    assert mts.temperature_ == TemperatureScaling().fit(logits, d["y_cal"]).temperature_


def test_model_mode_leaves_the_model_as_it_was(digits_student):
    d = digits_student
    net = d["net"]
    net.train()
    before = [p.detach().clone() for p in net.parameters()]
    MaskedTemperatureScaling(0.3, model=net, random_state=0).fit(d["X_cal"], d["y_cal"])
    assert net.training, "the model's mode must be restored"
    net.eval()
    for p, q in zip(net.parameters(), before, strict=True):
        assert torch.equal(p, q)
        assert p.grad is None, "no gradients may be computed"


def test_strict_regime_masking_calibrates_where_temperature_scaling_collapses(digits_student):
    """Calibrating on the training set: TS has no optimum; MTS on masked inputs does and lowers
    the test ECE below TS's collapsed temperature."""
    d = digits_student
    net = d["net"]
    train_logits = module_logits(net, d["X_train"], batch_size=256)
    with pytest.warns(UncalibratableDataWarning, match="held-out data"):
        ts = TemperatureScaling().fit(train_logits, d["y_train"])
    mts = MaskedTemperatureScaling(0.5, n_masks=10, model=net, random_state=0)
    mts.fit(d["X_train"], d["y_train"])
    assert mts.converged_
    test_logits = module_logits(net, d["X_test"], batch_size=512)
    ece_ts = expected_calibration_error(d["y_test"], ts.predict_proba(test_logits))
    ece_mts = expected_calibration_error(d["y_test"], mts.predict_proba(d["X_test"]))
    assert ece_mts < ece_ts / 3


def test_model_with_bad_outputs_is_named():
    X = np.zeros((10, 4), dtype=np.float32)
    y = np.arange(10) % 2

    class Tuple(torch.nn.Module):
        def forward(self, x):
            return x, x

    with pytest.raises(TypeError, match="model must return a Tensor of logits"):
        MaskedTemperatureScaling(0.1, model=Tuple()).fit(X, y)
    with pytest.raises(ValueError, match=r"model must return logits of shape .* returned shape"):
        MaskedTemperatureScaling(0.1, model=torch.nn.Flatten(0)).fit(X, y)
    with pytest.raises(ValueError, match="at least 2 logit columns"):
        MaskedTemperatureScaling(0.1, model=torch.nn.Linear(4, 1)).fit(X, y)


def test_model_mode_checks_inputs(digits_student):
    d = digits_student
    mts = MaskedTemperatureScaling(0.1, model=d["net"], random_state=0)
    with pytest.raises(ValueError, match="NaN"):
        mts.fit(np.full((3, 1, 8, 8), np.nan), [0, 1, 2])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        mts.fit(d["X_cal"], d["y_cal"][:-1])
    mts.fit(d["X_cal"], d["y_cal"])
    with pytest.raises(ValueError, match=r"fitted on samples of shape \(1, 8, 8\)"):
        mts.predict_proba(np.zeros((2, 64), dtype=np.float32))


@pytest.mark.parametrize(
    ("params", "match"),
    [
        (
            {"mask_ratio": 1.0},
            r"'mask_ratio' parameter of MaskedTemperatureScaling must be a float "
            r"in the range \[0.0, 1.0\) or one of \{'auto'\}\. Got 1.0 instead",
        ),
        ({"mask_ratio": -0.1}, r"Got -0.1 instead"),
        ({"mask_ratio": "half"}, r"Got 'half' instead"),
        ({"n_masks": 0}, r"'n_masks' parameter"),
        ({"model": "resnet"}, r"'model' parameter .* None or an instance of torch.nn.Module"),
        ({"random_state": "seed"}, r"'random_state' parameter"),
    ],
)
def test_bad_parameters_are_named(params, match):
    X, y = make_logits(n_samples=10, random_state=5)
    with pytest.raises(InvalidParameterError, match=match):
        MaskedTemperatureScaling(**params).fit(X, y)


def test_pickle_with_a_model(digits_student):
    d = digits_student
    mts = MaskedTemperatureScaling(0.3, model=d["net"], random_state=0).fit(d["X_cal"], d["y_cal"])
    restored = pickle.loads(pickle.dumps(mts))
    np.testing.assert_array_equal(
        restored.predict_proba(d["X_test"]), mts.predict_proba(d["X_test"])
    )


@pytest.mark.cuda
@CUDA
def test_cuda_model_fits_on_its_device_and_loads_on_a_cpu_only_machine(digits_student, tmp_path):
    import copy
    import subprocess
    import sys

    d = digits_student
    net = copy.deepcopy(d["net"]).cuda()
    mts = MaskedTemperatureScaling(0.3, model=net, random_state=0).fit(d["X_cal"], d["y_cal"])
    assert isinstance(mts.predict_proba(d["X_test"]), np.ndarray)
    Xc = torch.from_numpy(d["X_test"]).cuda()
    assert mts.predict_proba(Xc).device == Xc.device
    restored = pickle.loads(pickle.dumps(mts))
    np.testing.assert_allclose(restored.predict_proba(d["X_test"]), mts.predict_proba(d["X_test"]))
    # a machine without the GPU: hide it from a fresh process
    path = tmp_path / "mts.pkl"
    path.write_bytes(pickle.dumps(mts))
    np.save(tmp_path / "X.npy", d["X_test"])
    np.save(tmp_path / "expected.npy", mts.predict_proba(d["X_test"]))
    script = (
        "import pickle, sys, numpy as np, torch\n"
        "assert not torch.cuda.is_available()\n"
        "m = pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "p = m.predict_proba(np.load(sys.argv[2]))\n"
        "np.testing.assert_allclose(p, np.load(sys.argv[3]), rtol=1e-5)\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(path),
            str(tmp_path / "X.npy"),
            str(tmp_path / "expected.npy"),
        ],
        check=True,
        env={**__import__("os").environ, "CUDA_VISIBLE_DEVICES": ""},
    )


# ------------------------------------------------------------------------------- auto ratio
def test_auto_ratio_is_the_first_whose_masked_accuracy_halves(digits_student):
    from distcal.calibration._masked_temperature import AUTO_RATIOS

    d = digits_student
    net = d["net"]
    mts = MaskedTemperatureScaling("auto", n_masks=3, model=net, random_state=0)
    mts.fit(d["X_train"], d["y_train"])
    target = (1 + 1 / 10) / 2
    assert mts.mask_ratio_ in AUTO_RATIOS
    assert mts.masked_accuracy_ <= target
    assert mts.converged_
    # replay the search with the same generator: every earlier ratio stayed above the target
    generator = torch.Generator().manual_seed(0)
    y = torch.from_numpy(d["y_train"]).repeat(3)
    for ratio in AUTO_RATIOS:
        logits = module_logits(
            net,
            d["X_train"],
            batch_size=256,
            transform=lambda b, r=ratio: mask_inputs(b, r, generator=generator),
            n_repeats=3,
        )
        accuracy = (logits.argmax(1) == y).double().mean().item()
        if ratio < mts.mask_ratio_:
            assert accuracy > target
        else:
            assert accuracy == pytest.approx(mts.masked_accuracy_)
            assert TemperatureScaling().fit(logits, y).temperature_ == mts.temperature_
            break


def test_the_default_ratio_is_the_half_accuracy_rule(digits_student):
    d = digits_student
    default = MaskedTemperatureScaling(n_masks=3, model=d["net"], random_state=0)
    assert default.get_params()["mask_ratio"] == "auto"
    default.fit(d["X_train"], d["y_train"])
    auto = MaskedTemperatureScaling("auto", n_masks=3, model=d["net"], random_state=0)
    auto.fit(d["X_train"], d["y_train"])
    assert default.mask_ratio_ == auto.mask_ratio_
    assert default.temperature_ == auto.temperature_
    # the strict regime: plain TS on the training images has no optimum, the default has one
    assert default.converged_
    assert default.temperature_ > 1e-3


def test_auto_ratio_in_logit_space_and_in_a_grid_search():
    from sklearn.model_selection import GridSearchCV

    X, y = make_logits(n_samples=300, random_state=6)
    mts = MaskedTemperatureScaling("auto", random_state=0).fit(X, y)
    assert 0 < mts.mask_ratio_ < 1
    search = GridSearchCV(
        MaskedTemperatureScaling(random_state=0), {"mask_ratio": ["auto", 0.2]}, cv=3
    ).fit(X, y)
    assert search.best_params_["mask_ratio"] in ("auto", 0.2)


def test_auto_ratio_warns_when_masking_never_halves_the_accuracy():
    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.tensor([[2.0, 0.0]]).expand(len(x), 2)

    X = np.ones((6, 3), dtype=np.float32)
    y = np.array([0, 0, 0, 0, 0, 1])
    with pytest.warns(DistcalWarning, match="stayed at 0.833"):
        mts = MaskedTemperatureScaling("auto", model=Constant(), random_state=0).fit(X, y)
    assert mts.mask_ratio_ == 0.95
