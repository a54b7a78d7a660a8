"""One door for data (issue 23): every entry point checks its inputs once, by the same rules.

The same hostile inputs go through ``fit(X, y)``, ``fit`` on a stream of batches,
``fit_batches`` and ``distcal calibrate`` (``calibrate_files``, what the command runs), and
must end the same way: the same exception (for the command, an ``InputFileError`` of the
file's argument caused by that same exception), raised for the same argument, whose message
names it. A second group counts the checks along ``MaskedTemperatureScaling(model=net)
.fit(loader)`` and ``calibrate_files``: each input is checked once.
"""

from __future__ import annotations

import re
import sys
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from distcal import MaskedTemperatureScaling, TemperatureScaling
from distcal.exceptions import DistcalWarning
from distcal.experiment.calibrate import calibrate_files
from distcal.experiment.logit_files import InputFileError

N, K = 60, 3
#: The argument's role -> its position in a batch (``batches[i][j]``) and its file argument.
POSITION = {"X": 0, "y": 1, "sample_weight": 2}
FILE_ARGUMENT = {"X": "logits", "y": "labels"}


def _data():
    rng = np.random.default_rng(0)
    z = 2 * rng.normal(size=(N, K))
    y = (z / 2 + rng.gumbel(size=(N, K))).argmax(axis=1)
    return z, y


def _hostile():
    """Name -> (logits, labels, weights, expected exception or None, argument's role)."""
    z, y = _data()
    w = np.ones(N)
    nan, inf = z.copy(), z.copy()
    nan[5, 1], inf[5, 1] = np.nan, np.inf
    ragged = [list(row) for row in z]
    ragged[7] = ragged[7][:2]
    one_class = z.copy()
    one_class[:, 0] += 2  # informative about class 0, not separable
    negative, nan_weights = w.copy(), w.copy()
    negative[2], nan_weights[2] = -1.0, np.nan
    out_of_range = y.copy()
    out_of_range[3] = 7
    return {
        "NaN logits": (nan, y, None, ValueError, "X"),
        "infinite logits": (inf, y, None, ValueError, "X"),
        "string logits": (z.astype(str), y, None, TypeError, "X"),
        "string labels": (z, np.array(["cat", "dog", "eel"])[y], None, TypeError, "y"),
        "ragged logits": (ragged, y, None, ValueError, "X"),
        "empty": (z[:0], y[:0], None, ValueError, "X"),
        "one class": (one_class, np.zeros(N, dtype=int), None, None, None),
        "labels out of range": (z, out_of_range, None, ValueError, "y"),
        "fractional labels": (z, y + 0.5, None, ValueError, "y"),
        "negative weights": (z, y, negative, ValueError, "sample_weight"),
        "NaN weights": (z, y, nan_weights, ValueError, "sample_weight"),
        "mismatched lengths": (z, y[:-1], None, ValueError, "y"),
    }


def _batches(z, y, w):
    """The data as two batches (the second holds the rest: a shorter y stays shorter)."""
    half = len(z) // 2
    parts = [slice(0, half), slice(half, None)]
    if w is None:
        return [(z[part], y[part]) for part in parts]
    return [(z[part], y[part], w[part]) for part in parts]


def _outcome(call):
    """Run ``call``: ("ok", None) or (exception type, the exception)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except Exception as exc:
            return type(exc), exc
    return "ok", None


def _entry_points(z, y, w, tmp_path):
    def fit():
        TemperatureScaling().fit(z, y, sample_weight=w)

    def fit_stream():
        masked = MaskedTemperatureScaling(mask_ratio=0.2, n_masks=1, random_state=0)
        masked.fit(iter(_batches(z, y, w)))

    def fit_batches():
        TemperatureScaling().fit_batches(lambda: iter(_batches(z, y, w)))

    points = {"fit(X, y)": fit, "fit(stream)": fit_stream, "fit_batches": fit_batches}
    if w is None and not isinstance(z, list):  # files hold arrays, and no weights
        np.save(tmp_path / "z.npy", np.asarray(z))
        np.save(tmp_path / "y.npy", np.asarray(y))

        def calibrate():
            calibrate_files(
                tmp_path / "z.npy",
                tmp_path / "y.npy",
                output=tmp_path / "out",
                test_size=0,
                n_resamples=20,
                force=True,
            )

        points["calibrate"] = calibrate
    return points


@pytest.mark.parametrize("case", list(_hostile()))
def test_the_same_hostile_input_ends_the_same_way_on_every_entry_point(case, tmp_path):
    z, y, w, expected, role = _hostile()[case]
    for where, call in _entry_points(z, y, w, tmp_path).items():
        kind, exc = _outcome(call)
        if expected is None:
            assert kind == "ok", (case, where, exc)
            continue
        if where == "calibrate":
            # The file error of the file's argument, caused by the check's own error.
            assert kind is InputFileError, (case, where, exc)
            assert exc.argument == FILE_ARGUMENT[role], (case, where, exc)
            assert type(exc.__cause__) is expected, (case, where, exc.__cause__)
            assert str(tmp_path) in str(exc), (case, where, exc)
            continue
        assert kind is expected, (case, where, exc)
        assert exc.argument == role, (case, where, exc)
        if where == "fit(X, y)":
            assert role in str(exc), (case, where, exc)
        else:
            named = rf"batches\[\d\]\[{POSITION[role]}\]"
            assert any(part in str(exc) for part in ("batches", role)), (case, where, exc)
            if case not in ("negative weights", "NaN weights") or "over all" not in str(exc):
                assert re.search(named, str(exc)), (case, where, exc)


def test_one_class_fits_alike_in_memory_from_batches_and_from_files(tmp_path):
    """The one class rule: TemperatureScaling accepts one class, whichever door it comes by."""
    z, y, _, _, _ = _hostile()["one class"]
    in_memory = TemperatureScaling().fit(z, y).temperature_
    streamed = TemperatureScaling().fit_batches(_batches(z, y, None)).temperature_
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    report = calibrate_files(
        tmp_path / "z.npy", tmp_path / "y.npy", output=tmp_path / "o", test_size=0, n_resamples=20
    )
    assert report["calibrator"].temperature_ == in_memory
    assert streamed == pytest.approx(in_memory, rel=1e-9)


# --------------------------------------------------------------------------- model inputs
def _net():
    torch.manual_seed(0)  # the test's own fixed network
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))


class _Counting(torch.nn.Module):
    """A network that counts its forward passes."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.net(x)


def _images(n=48):
    generator = torch.Generator().manual_seed(0)
    images = torch.rand((n, 1, 4, 4), generator=generator)
    with torch.no_grad():
        labels = (_net()(images) + torch.randn((n, 4), generator=generator)).argmax(dim=1)
    return images, labels


def test_unscaled_images_warn_alike_from_arrays_and_from_a_loader():
    images, labels = _images()
    pixels = (images * 255).round().to(torch.uint8)
    loader = DataLoader(TensorDataset(pixels, labels), batch_size=16)
    for data in ((pixels, labels), (loader,)):
        masked = MaskedTemperatureScaling(0.3, model=_net(), n_masks=1, random_state=0)
        with pytest.warns(DistcalWarning, match="holds whole numbers from 0 to 25"):
            masked.fit(*data)


@pytest.mark.parametrize("bad", [-1, 9])
def test_model_labels_are_refused_alike_and_before_any_forward_pass_when_they_can_be(bad):
    """A negative label is refused before the model runs on it; one beyond its columns after
    the clean pass, before any masked one (the columns are the model's to say)."""
    images, labels = _images()
    labels = labels.clone()
    labels[20] = bad
    loader = DataLoader(TensorDataset(images, labels), batch_size=16)
    for data in ((images, labels), (loader,)):
        net = _Counting(_net())
        masked = MaskedTemperatureScaling(0.3, model=net, n_masks=2, random_state=0)
        with pytest.raises(ValueError, match=rf"contains labels \[{bad}\]") as caught:
            masked.fit(*data)
        assert caught.value.argument == "y"
        if bad < 0:
            # arrays: before any pass; a loader: before its batch's (only batch 0, clean and
            # two masked copies, ran: the bad label is in batch 1)
            assert net.calls == (0 if len(data) == 2 else 3)
        elif len(data) == 2:
            assert net.calls == 1  # the clean pass over 48 inputs (one piece on a CPU)


# --------------------------------------------------------------------------- counting checks
CHECKS = ("check_logits", "check_targets", "check_inputs", "check_sample_weight")


@pytest.fixture
def counted(monkeypatch):
    """Count every call of the input checks, wherever distcal calls them from."""
    import distcal._validation as validation

    counts = dict.fromkeys(CHECKS, 0)

    def counting(name):
        original = getattr(validation, name)

        def check(*args, **kwargs):
            counts[name] += 1
            return original(*args, **kwargs)

        return check

    originals = {name: getattr(validation, name) for name in CHECKS}
    wrappers = {name: counting(name) for name in CHECKS}
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("distcal") or module is None:
            continue
        for name in CHECKS:
            if getattr(module, name, None) is originals[name]:
                monkeypatch.setattr(module, name, wrappers[name])
    return counts


def test_masked_fit_from_a_loader_checks_each_batch_once(counted):
    images, labels = _images(64)
    weights = torch.linspace(0.5, 1.5, 64, dtype=torch.float64)
    loader = DataLoader(TensorDataset(images, labels, weights), batch_size=16)  # 4 batches
    MaskedTemperatureScaling(0.3, model=_net(), n_masks=2, random_state=0).fit(loader)
    assert counted == {
        "check_logits": 0,
        "check_targets": 4,
        "check_inputs": 4,
        "check_sample_weight": 4,
    }


def test_masked_fit_from_arrays_checks_each_input_once(counted):
    images, labels = _images(64)
    MaskedTemperatureScaling(0.3, model=_net(), n_masks=2, random_state=0).fit(images, labels)
    assert counted == {
        "check_logits": 0,
        "check_targets": 1,
        "check_inputs": 1,
        "check_sample_weight": 1,
    }


def test_calibrate_checks_the_logits_and_the_labels_once(counted, monkeypatch, tmp_path):
    """From the files to the probabilities after calibration. (The scores' metrics check
    the probabilities they are given, which are not the command's inputs: left out here.)"""
    import distcal.experiment.calibrate as command

    monkeypatch.setattr(command, "_score", lambda *args, **kwargs: [])
    monkeypatch.setattr(command, "_draw", lambda *args, **kwargs: None)
    z, y = _data()
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    report = calibrate_files(tmp_path / "z.npy", tmp_path / "y.npy", output=tmp_path / "o")
    assert report["n_fit"] + report["n_scored"] == N
    assert counted == {
        "check_logits": 1,
        "check_targets": 1,
        "check_inputs": 0,
        "check_sample_weight": 1,
    }
