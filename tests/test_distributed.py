"""Streaming calibration under torchrun: 2 processes, gloo backend, on the CPU."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from distcal import TemperatureScaling
from distcal.metrics import (
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
)

torch_distributed = pytest.importorskip("torch.distributed")
if not torch_distributed.is_available():  # pragma: no cover
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)

WORKER = Path(__file__).with_name("_distributed_worker.py")


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ranks")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(WORKER),
        str(out),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**_env(), "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads((out / f"rank-{rank}.json").read_text()) for rank in (0, 1)]


def _env():
    import os

    return dict(os.environ)


def _worker_module():
    sys.path.insert(0, str(WORKER.parent))
    try:
        import _distributed_worker
    finally:
        sys.path.pop(0)
    return _distributed_worker


def _reference():
    logits, y = _worker_module().data()
    ts = TemperatureScaling().fit(logits, y)
    return logits, y, ts


def test_every_process_gets_the_temperature_of_all_the_data(ranks):
    _, _, ts = _reference()
    for result in ranks:
        assert result["temperature"] == pytest.approx(ts.temperature_, rel=1e-10)
    assert ranks[0]["local_n"] + ranks[1]["local_n"] == 3001


def test_metrics_are_summed_over_processes(ranks):
    logits, y, ts = _reference()
    proba = ts.predict_proba(logits)
    for result in ranks:
        metrics = result["metrics"]
        assert metrics["n_samples"] == 3001
        assert metrics["ece"] == pytest.approx(expected_calibration_error(y, proba), rel=1e-6)
        assert metrics["nll"] == pytest.approx(negative_log_likelihood(y, proba), rel=1e-9)
        assert metrics["brier"] == pytest.approx(brier_score(y, proba), rel=1e-9)
    assert ranks[0]["metrics"] == ranks[1]["metrics"]


def test_a_process_without_data_agrees(ranks):
    _, _, ts = _reference()
    for result in ranks:
        assert result["lopsided"][0] == pytest.approx(ts.temperature_, rel=1e-10)
        assert result["lopsided"][1] == 6
        assert result["lopsided_n"] == 4


def test_bad_data_on_one_process_fails_every_process(ranks):
    assert "batches[0][1] contains labels [9]" in ranks[1]["error"]
    assert ranks[0]["error"].startswith("RuntimeError: TemperatureScaling.fit_batches: another")


def test_distributed_without_a_process_group_says_how_to_start_one():
    logits, y, _ = _reference()
    with pytest.raises(RuntimeError, match="torchrun"):
        TemperatureScaling().fit_batches([(logits, y)], distributed=True)
    from distcal.metrics import CalibrationAccumulator

    accumulator = CalibrationAccumulator().update(np.full((2, 3), 1 / 3), [0, 1])
    with pytest.raises(RuntimeError, match="init_process_group"):
        accumulator.compute(distributed=True)
    assert np.isclose(accumulator.compute().accuracy, 0.5)


def test_distributed_dm_makes_the_synthetic_set_of_one_process(ranks):
    import torch

    from distcal.distill import MDTTrainer, load_digits

    digits = load_digits()
    params = _worker_module().DM_PARAMS
    single = MDTTrainer(**params, random_state=0).fit(digits.images, digits.labels)
    out = Path(ranks[0]["out"])
    for rank in (0, 1):
        images = torch.load(out / f"dm-rank-{rank}.pt")
        torch.testing.assert_close(images, single.images_, atol=1e-5, rtol=1e-5)
        assert ranks[rank]["dm_seed"] == single.seed_  # process 0's seed
    assert (out / "dm.ckpt").is_file()  # written by process 0


def test_methods_without_distribution_say_which_have_it(ranks):
    for result in ranks:
        assert "not supported by method 'dc'" in result["dc_error"]
        assert "['dm']" in result["dc_error"]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("ts_max_iter", "max_iter (process 0 has 100, process 1 has 3)"),
        ("mask_ratio", "mask_ratio (process 0 has 0.0, process 1 has 0.5)"),
        ("ipc", "ipc (process 0 has 2, process 1 has 3)"),
        ("iterations", "iterations (process 0 has 6, process 1 has 2)"),
        ("width", "width (process 0 has 8, process 1 has 16)"),
        ("n_bins", "n_bins (process 0 has 15, process 1 has 10)"),
    ],
)
def test_processes_given_different_settings_all_fail_naming_the_setting(ranks, name, expected):
    """A rank-dependent setting used to distil one set at two mask ratios, mix widths, abort a
    process or let one succeed while the other died; now all stop at the start, alike."""
    messages = [result["disagreements"][name] for result in ranks]
    assert messages[0] == messages[1]
    assert messages[0].startswith("ValueError: ")
    assert expected in messages[0]
