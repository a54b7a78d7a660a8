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
def _replay(net, X, ratio, n_masks, seed=0):
    """Masked logits as the fit draws them: a generator seeded afresh for every ratio."""
    generator = torch.Generator().manual_seed(seed)
    return module_logits(
        net,
        X,
        batch_size=256,
        transform=lambda b: mask_inputs(b, ratio, generator=generator),
        n_repeats=n_masks,
    )


def test_masks_drawn_from_the_same_seed_are_nested_across_ratios():
    """The half-accuracy bisection relies on it: what is masked at r is masked above r."""
    x = torch.ones(50, 3, 8, 8)
    masked = [
        mask_inputs(x, r, generator=torch.Generator().manual_seed(7)) == 0 for r in (0.1, 0.3, 0.6)
    ]
    assert masked[0].any()
    assert (masked[0] <= masked[1]).all()
    assert (masked[1] <= masked[2]).all()
    z = torch.randn(40, 5)
    low, high = (
        mask_logits(z, r, n_masks=3, generator=torch.Generator().manual_seed(7)) != z.repeat(3, 1)
        for r in (0.2, 0.5)
    )
    assert (low <= high).all()
    assert low.sum() < high.sum()


def test_auto_on_training_data_bisects_to_half_accuracy(digits_student):
    d = digits_student
    net = d["net"]
    mts = MaskedTemperatureScaling(model=net, random_state=0).fit(d["X_train"], d["y_train"])
    assert mts.get_params()["mask_ratio"] == "auto"
    assert mts.regime_ == "training"  # the network fits its 100 training images
    assert mts.n_masks_ == 20  # ceil(2000 / 100)
    assert mts.converged_
    assert mts.cv_nll_.numel() == 0
    # The fit is the fixed-ratio fit at the chosen ratio, from the same draws.
    replay = MaskedTemperatureScaling(mts.mask_ratio_, n_masks=20, model=net, random_state=0).fit(
        d["X_train"], d["y_train"]
    )
    assert replay.temperature_ == mts.temperature_
    assert replay.masked_accuracy_ == mts.masked_accuracy_
    # The ratio lies where the masked accuracy crosses (1 + 1/10) / 2; the last bracket of the
    # bisection is 0.95 / 2**7 < 0.0075 wide, so 0.05 on either side lies outside it.
    y = torch.from_numpy(d["y_train"]).repeat(20)
    accuracy = {
        r: (_replay(net, d["X_train"], r, 20).argmax(1) == y).double().mean().item()
        for r in (mts.mask_ratio_ - 0.05, mts.mask_ratio_ + 0.05)
    }
    assert accuracy[mts.mask_ratio_ - 0.05] > 0.55 >= accuracy[mts.mask_ratio_ + 0.05]
    assert abs(mts.masked_accuracy_ - 0.55) < 0.05
    # Plain TS on these images collapses to its bound; the default has a finite optimum and a
    # far lower test ECE. (Against the uncalibrated network the rule can win or lose: it knows
    # nothing of the test data, see docs/results.md.)
    train_logits = module_logits(net, d["X_train"], batch_size=256)
    with pytest.warns(UncalibratableDataWarning):
        collapsed = TemperatureScaling().fit(train_logits, d["y_train"])
    test_logits = module_logits(net, d["X_test"], batch_size=512)
    ece_ts = expected_calibration_error(d["y_test"], collapsed.predict_proba(test_logits))
    ece_auto = expected_calibration_error(d["y_test"], mts.predict_proba(d["X_test"]))
    assert ece_auto < ece_ts / 2


def test_auto_on_held_out_data_cross_fits_with_plain_ts_among_the_candidates(digits_student):
    from sklearn.model_selection import StratifiedKFold

    from distcal.calibration._auto_ratio import HELD_OUT_RATIOS

    d = digits_student
    net = d["net"]
    X, y = d["X_cal"], d["y_cal"]
    mts = MaskedTemperatureScaling(model=net, random_state=0).fit(X, y)
    assert mts.regime_ == "held-out"
    assert mts.n_masks_ == 4  # ceil(2000 / 500)
    np.testing.assert_array_equal(mts.cv_ratios_, HELD_OUT_RATIOS)
    assert mts.mask_ratio_ == mts.cv_ratios_[mts.cv_nll_.argmin()]  # ties: the smaller ratio
    # Candidate 0 is plain temperature scaling, cross-fitted: replay it by hand.
    clean = module_logits(net, X, batch_size=256).double()
    labels = torch.from_numpy(y)
    total = 0.0
    folds = StratifiedKFold(5, shuffle=True, random_state=0).split(np.zeros(len(y)), y)
    for train, test in folds:
        ts = TemperatureScaling().fit(clean[train], y[train])
        log_p = torch.log_softmax(clean[test] / ts.temperature_, dim=1)
        total -= log_p[torch.arange(len(test)), labels[test]].sum().item()
    assert mts.cv_nll_[0] == pytest.approx(total / len(y), rel=1e-9)
    if mts.mask_ratio_ == 0:
        assert mts.temperature_ == TemperatureScaling().fit(clean, y).temperature_


def test_auto_regime_can_be_declared(digits_student):
    d = digits_student
    net = d["net"]
    declared = MaskedTemperatureScaling(regime="training", model=net, random_state=0)
    declared.fit(d["X_cal"], d["y_cal"])
    assert declared.regime_ == "training"
    assert declared.cv_nll_.numel() == 0
    # Training data declared held-out: every fold is classified perfectly, so the cross-fitted
    # NLL is lowest for plain TS, which collapses; the warning names the remedy. This is the
    # mistake the regime detection exists to avoid.
    held = MaskedTemperatureScaling(regime="held-out", model=net, random_state=0)
    with pytest.warns(UncalibratableDataWarning, match="held-out data"):
        held.fit(d["X_train"], d["y_train"])
    assert held.regime_ == "held-out"
    assert held.mask_ratio_ == 0
    # a numeric ratio keeps its meaning; regime_ records a declared regime, or None
    fixed = MaskedTemperatureScaling(0.2, model=net, random_state=0).fit(d["X_cal"], d["y_cal"])
    assert fixed.regime_ is None
    assert fixed.mask_ratio_ == 0.2


def _one_error_in(n, rng):
    X = 3 * rng.normal(size=(n, 4))
    y = X.argmax(axis=1)
    y[0] = (y[0] + 1) % 4  # one sample the model gets wrong
    return X, y


def test_few_errors_are_ambiguous_and_named_in_a_warning():
    rng = np.random.default_rng(0)
    X, y = _one_error_in(200, rng)  # 0.5% errors: training data, or a very accurate model
    with pytest.warns(DistcalWarning, match=r"only 1 of 200 .*regime_='training'.*regime="):
        mts = MaskedTemperatureScaling(random_state=0).fit(X, y)
    assert mts.regime_ == "training"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # declared: nothing to warn about
        MaskedTemperatureScaling(regime="training", random_state=0).fit(X, y)
    X, y = _one_error_in(50, rng)  # 2% errors: held-out data, silently
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert MaskedTemperatureScaling(random_state=0).fit(X, y).regime_ == "held-out"


def test_auto_in_logit_space_reads_the_regime_too():
    from sklearn.model_selection import GridSearchCV

    X, y = make_logits(n_samples=300, random_state=6)  # labels drawn from the softmax: errors
    held = MaskedTemperatureScaling(random_state=0).fit(X, y)
    assert held.regime_ == "held-out"
    separable = MaskedTemperatureScaling(random_state=0).fit(X, X.argmax(axis=1))
    assert separable.regime_ == "training"
    assert 0 < separable.mask_ratio_ < 0.95
    assert separable.converged_
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
    mts = MaskedTemperatureScaling(regime="training", model=Constant(), random_state=0)
    with pytest.warns(DistcalWarning, match="stayed at 0.833"):
        mts.fit(X, y)
    assert mts.mask_ratio_ == 0.95
