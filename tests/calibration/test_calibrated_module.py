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
from distcal.exceptions import InvalidParameterError

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
        with pytest.raises(TypeError, match="it supports TemperatureScaling, Masked"):
            calibrated_module(net, calibrator.fit(z, y))


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
    with pytest.raises(ValueError, match="fitted on 1-D binary decision values"):
        calibrated_module(net, binary)


def test_loading_checks_the_file_and_the_network(data, tmp_path):
    net, _, z, y = data
    ts = TemperatureScaling().fit(z, y)
    path = save_calibrated_module(calibrated_module(net, ts), tmp_path / "m.safetensors")
    other = torch.nn.Sequential(torch.nn.Linear(8, 4))
    with pytest.raises(ValueError, match="do not fit the network given"):
        load_calibrated_module(path, other)
    calibrator_file = save_calibrator(ts, tmp_path / "ts.safetensors")
    with pytest.raises(ValueError, match="holds a 'calibrator', not a 'calibrated_module'"):
        load_calibrated_module(calibrator_file, make_network())
    with pytest.raises(TypeError, match="module must be a CalibratedModule"):
        save_calibrated_module(net, tmp_path / "x.safetensors")
    assert isinstance(load_calibrated_module(path, make_network()), CalibratedModule)
