"""calibrated_module: a network and a fitted calibrator as one nn.Module (issue 15, item 2)."""

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from distcal import (
    MaskedTemperatureScaling,
    TemperatureScaling,
    calibrated_module,
    load_calibrated_module,
    save_calibrated_module,
    save_calibrator,
)
from distcal._files import read_tensors, write_tensors
from distcal.calibration import (
    CalibratedModule,
    DirichletCalibration,
    EnsembleTemperatureScaling,
    HistogramBinning,
    IsotonicCalibration,
    MaskedScaling,
    MatrixScaling,
    VectorScaling,
)
from distcal.exceptions import DistcalWarning, InvalidParameterError

ROOT = Path(__file__).resolve().parents[2]


def make_network():
    """The architecture; a fresh process builds the same one to load the weights into."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))


@pytest.fixture(scope="module")
def data():
    net = make_network()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=generator)
    with torch.no_grad():
        z = net(x)
    y = (z + 2 * torch.randn(z.shape, generator=generator)).argmax(dim=1)
    return net, x, z, y


CALIBRATORS = {
    "TS": lambda: TemperatureScaling(),
    "VS": lambda: VectorScaling(),
    "MS": lambda: MatrixScaling(),
    "Dirichlet": lambda: DirichletCalibration(),
    "ETS": lambda: EnsembleTemperatureScaling(),
    "MaskedScaling(MS)": lambda: MaskedScaling(MatrixScaling(), mask_ratio=0.2, random_state=0),
    "MTS(model)": lambda: MaskedTemperatureScaling(0.2, random_state=0),
}


def _fitted(name, net, x, z, y):
    calibrator = CALIBRATORS[name]()
    if name == "MTS(model)":
        calibrator.set_params(model=net).fit(x, y)
        return calibrator, x
    return calibrator.fit(z, y), z


@pytest.mark.parametrize("name", list(CALIBRATORS))
def test_the_module_computes_what_the_calibrator_does(data, name):
    net, x, z, y = data
    calibrator, given = _fitted(name, net, x, z, y)
    network = None if name == "MTS(model)" else net
    logits_module = calibrated_module(network, calibrator, output="logits")
    proba_module = calibrated_module(network, calibrator)
    with torch.no_grad():
        # the calibrated logits are the calibrator's, exactly
        assert torch.equal(logits_module(x), calibrator.decision_function(given))
        # the probabilities up to rounding (torch's fused softmax)
        torch.testing.assert_close(
            proba_module(x), calibrator.predict_proba(given), rtol=0, atol=1e-6
        )
    assert not proba_module.training


@pytest.mark.parametrize("name", ["TS", "Dirichlet", "ETS"])
def test_it_scripts_and_exports_with_torchs_own_tools(data, name):
    net, x, z, y = data
    module = calibrated_module(net, _fitted(name, net, x, z, y)[0])
    with torch.no_grad():
        expected = module(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # jit.script, deprecated in 2.x
            scripted = torch.jit.script(module)
        assert torch.equal(scripted(x), expected)
        exported = torch.export.export(module, (x[:10],))
        assert torch.equal(exported.module()(x[:10]), expected[:10])


def test_it_runs_on_the_networks_device(data):
    net, _, z, y = data
    module = calibrated_module(net, TemperatureScaling().fit(z, y))
    assert module.head.temperature.device == next(net.parameters()).device


_FRESH = textwrap.dedent(
    """
    import sys
    import torch
    from distcal import load_calibrated_module
    from distcal._files import read_tensors, write_tensors
    from tests.calibration.test_calibrated_module import make_network

    module = load_calibrated_module(sys.argv[1], make_network())
    inputs, _ = read_tensors(sys.argv[2], kind="test-io")
    with torch.no_grad():
        write_tensors(sys.argv[3], {"out": module(inputs["x"])}, {"kind": "test-io"})
    """
)


@pytest.mark.parametrize("name", ["TS", "MaskedScaling(MS)", "ETS", "MTS(model)"])
@pytest.mark.parametrize("output", ["probabilities", "logits"])
def test_saved_and_reloaded_in_a_fresh_process(data, name, output, tmp_path):
    net, x, z, y = data
    calibrator, _ = _fitted(name, net, x, z, y)
    module = calibrated_module(net, calibrator, output=output)
    path = save_calibrated_module(module, tmp_path / "calibrated.safetensors")
    write_tensors(tmp_path / "in.safetensors", {"x": x}, {"kind": "test-io"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-c", _FRESH, str(path), str(tmp_path / "in.safetensors"),
         str(tmp_path / "out.safetensors")],
        check=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    reloaded, _ = read_tensors(tmp_path / "out.safetensors", kind="test-io")
    with torch.no_grad():
        assert torch.equal(reloaded["out"], module(x))


# -------------------------------------------------------------------------------- bad input
def test_unsupported_calibrators_name_what_is_supported(data):
    net, _, z, y = data
    for calibrator in (HistogramBinning(n_bins=5), IsotonicCalibration()):
        name = type(calibrator).__name__
        with pytest.raises(TypeError, match=rf"support {name}: it declares no torch head") as e:
            calibrated_module(net, calibrator.fit(z, y))
        # the supported ones are read from the registry: distcal's heads and masked wrappers
        for supported in ("TemperatureScaling", "VectorScaling", "DirichletCalibration"):
            assert supported in str(e.value)
        assert "MaskedScaling, MaskedTemperatureScaling" in str(e.value)
    # a masked calibrator whose fitted calibrator has no head: both are named
    masked = MaskedScaling(HistogramBinning(n_bins=5), mask_ratio=0.2, random_state=0)
    with pytest.raises(
        TypeError, match=r"support HistogramBinning \(the fitted calibrator of MaskedScaling\)"
    ):
        calibrated_module(net, masked.fit(z, y))


def test_bad_arguments_are_named(data):
    net, _, z, y = data
    ts = TemperatureScaling().fit(z, y)
    with pytest.raises(InvalidParameterError, match="'output' parameter of calibrated_module"):
        calibrated_module(net, ts, output="proba")
    with pytest.raises(ValueError, match="network is None and the calibrator has no model"):
        calibrated_module(None, ts)
    with pytest.raises(TypeError, match="calibrator must be a fitted distcal calibrator"):
        calibrated_module(net, object())
    with pytest.raises(ValueError, match=r"ends in Linear\(out_features=4\), but .* on 3 logit"):
        calibrated_module(net, TemperatureScaling().fit(z[:, :3], z[:, :3].argmax(dim=1).flip(0)))
    binary = TemperatureScaling().fit(np.array([0.5, -1.0, 2.0, 0.1]), [1, 0, 1, 0])
    with pytest.raises(ValueError, match=r"out_features=4\), but .* 1 column \(binary decision"):
        calibrated_module(net, binary)


def test_loading_checks_the_file_and_the_network(data, tmp_path):
    net, _, z, y = data
    ts = TemperatureScaling().fit(z, y)
    path = save_calibrated_module(calibrated_module(net, ts), tmp_path / "m.safetensors")
    other = torch.nn.Sequential(torch.nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"layer '0' \(Linear\) of network has tensors of shapes"):
        load_calibrated_module(path, other)
    calibrator_file = save_calibrator(ts, tmp_path / "ts.safetensors")
    with pytest.raises(ValueError, match="holds a 'calibrator', not a 'calibrated_module'"):
        load_calibrated_module(calibrator_file, make_network())
    with pytest.raises(TypeError, match="module must be a CalibratedModule"):
        save_calibrated_module(net, tmp_path / "x.safetensors")
    assert isinstance(load_calibrated_module(path, make_network()), CalibratedModule)


# ------------------------------------------------------- what the network returns (issue 22)
def test_a_softmax_network_under_a_calibrator_fitted_on_logits_is_refused(data):
    """Before: near-uniform probabilities, without a word."""
    net, x, z, y = data
    ts = TemperatureScaling().fit(z, y)
    softmax_net = torch.nn.Sequential(net, torch.nn.Softmax(dim=1))
    with pytest.raises(ValueError, match=r"network returns probabilities .* fitted on logits"):
        calibrated_module(softmax_net, ts)
    # fitted on the probabilities themselves, the same network is right, and the module
    # computes what the calibrator does
    with torch.no_grad():
        p = softmax_net(x)
    ts_p = TemperatureScaling(input_type="probabilities").fit(p, y)
    module = calibrated_module(softmax_net, ts_p)
    with torch.no_grad():
        torch.testing.assert_close(module(x), ts_p.predict_proba(p), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"fitted on probabilities .* not probabilities"):
        calibrated_module(net, ts_p)


def test_log_probabilities_warn_under_a_map_a_constant_changes(data):
    """Before: a log-softmax network under vector scaling was off by 0.16, without a word."""
    net, _, z, y = data
    log_net = torch.nn.Sequential(net, torch.nn.LogSoftmax(dim=1))
    with pytest.warns(DistcalWarning, match=r"log-probabilities .* VectorScaling changes"):
        calibrated_module(log_net, VectorScaling().fit(z, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a temperature cancels a constant per row: no warning
        calibrated_module(log_net, TemperatureScaling().fit(z, y))


class _Widened(torch.nn.Module):
    """A network whose last layer is not a Linear: 7 outputs, seen only by running it."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Linear(8, 7)
        self.norm = torch.nn.LayerNorm(7)

    def forward(self, x):
        return self.norm(self.body(x))


class _Pair(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return self.net(x), x


def test_another_number_of_outputs_and_tuples_are_refused_in_words(data):
    """Before: 7 outputs were accepted for a 5-class calibrator; a tuple gave a TypeError
    from deep inside the head."""
    net, _, z, y = data
    ts = TemperatureScaling().fit(z, y)
    with pytest.raises(ValueError, match=r"returns outputs of shape \(8, 7\), but .* 4 logit"):
        calibrated_module(_Widened(), ts)
    with pytest.raises(TypeError, match=r"returned a tuple of 2 \(Tensor of shape \(8, 4\), "):
        calibrated_module(_Pair(net), ts)
    # where no probe can be built (a convolution first), forward checks every call
    conv = torch.nn.Sequential(torch.nn.Conv2d(1, 7, 3), torch.nn.AdaptiveAvgPool2d(1),
                               torch.nn.Flatten())  # fmt: skip
    module = calibrated_module(conv, ts)
    with pytest.raises(ValueError, match=r"returns outputs of shape \(2, 7\)"):
        module(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"returns outputs of shape \(2, 7\)"):
        calibrated_module(conv, ts, example_inputs=torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match=r"could not run on example_inputs of shape \(2, 3\)"):
        calibrated_module(net, ts, example_inputs=torch.zeros(2, 3))


def test_a_binary_network_with_one_output_logit_has_a_path(data):
    """Before: refused, "fitted on 1-D binary decision values"."""
    _, x, _, _ = data
    torch.manual_seed(1)
    net = torch.nn.Linear(8, 1)
    with torch.no_grad():
        decision = net(x)[:, 0]
    y = (decision + torch.randn(len(x), generator=torch.Generator().manual_seed(0)) > 0).long()
    ts = TemperatureScaling().fit(decision, y)
    with torch.no_grad():
        torch.testing.assert_close(
            calibrated_module(net, ts)(x), ts.predict_proba(decision), rtol=0, atol=1e-6
        )
        assert torch.equal(calibrated_module(net, ts, output="logits")(x),
                           ts.decision_function(decision))  # fmt: skip
        exported = torch.export.export(calibrated_module(net, ts), (x[:10],))
        torch.testing.assert_close(exported.module()(x[:10]), ts.predict_proba(decision[:10]))
    sigmoid_net = torch.nn.Sequential(net, torch.nn.Sigmoid())  # probabilities of class 1
    with torch.no_grad():
        p = sigmoid_net(x)[:, 0]
    ts_p = TemperatureScaling(input_type="probabilities").fit(p, y)
    with torch.no_grad():
        torch.testing.assert_close(
            calibrated_module(sigmoid_net, ts_p)(x), ts_p.predict_proba(p), rtol=0, atol=1e-6
        )


class MyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)
        )

    def forward(self, x):
        return self.body(x)


class OtherNet(MyNet):
    def forward(self, x):
        return self.body(x) * 2


def test_loading_into_another_architecture_is_refused(data, tmp_path):
    """Before: any network with the same weight names loaded (Tanh for ReLU: off by 0.136; a
    file from MyNet into OtherNet, though the file records MyNet)."""
    _, x, _, y = data
    torch.manual_seed(0)
    mine = MyNet()
    with torch.no_grad():
        ts = TemperatureScaling().fit(mine(x), y)
    path = save_calibrated_module(calibrated_module(mine, ts), tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=r"holds a calibrated MyNet .*network is a OtherNet"):
        load_calibrated_module(path, OtherNet())
    tanh = MyNet()
    tanh.body[1] = torch.nn.Tanh()
    with pytest.raises(ValueError, match=r"layer 'body.1' of network is a Tanh, .* had a ReLU"):
        load_calibrated_module(path, tanh)
    deeper = MyNet()
    deeper.body.append(torch.nn.ReLU())
    with pytest.raises(ValueError, match=r"network has a layer 'body.3' \(ReLU\) that the saved"):
        load_calibrated_module(path, deeper)
    with torch.no_grad():
        assert torch.equal(load_calibrated_module(path, MyNet())(x), calibrated_module(mine, ts)(x))


class _Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encode = torch.nn.Linear(8, 8)
        self.decode = torch.nn.Linear(8, 8)
        self.decode.weight = self.encode.weight  # tied
        self.head = torch.nn.Linear(8, 4)

    def forward(self, x):
        return self.head(torch.relu(self.decode(torch.relu(self.encode(x)))))


def test_tied_weights_save_once_and_load_tied(data, tmp_path):
    """Before: safetensors' "Some tensors share memory" error."""
    _, x, _, y = data
    torch.manual_seed(0)
    tied = _Tied()
    with torch.no_grad():
        ts = TemperatureScaling().fit(tied(x), y)
    path = save_calibrated_module(calibrated_module(tied, ts), tmp_path / "t.safetensors")
    tensors, metadata = read_tensors(path, kind="calibrated_module")
    assert metadata["tied"] == {"decode.weight": "encode.weight"}
    assert "network.decode.weight" not in tensors
    torch.manual_seed(5)
    fresh = _Tied()
    loaded = load_calibrated_module(path, fresh)
    assert fresh.decode.weight is fresh.encode.weight
    with torch.no_grad():
        assert torch.equal(loaded(x), calibrated_module(tied, ts)(x))
