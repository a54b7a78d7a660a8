import json

import numpy as np
import pytest

import distcal.experiment as experiment
from distcal.cli import main
from distcal.experiment import format_summary, run_experiment


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return run_experiment("digits", profile="smoke", seeds=[0, 1], output=out, verbose=False), out


def test_every_set_student_and_calibrator_is_scored(smoke_run):
    result, _ = smoke_run
    rows = result["rows"]
    assert len(rows) == 2 * 3 * 2 * 5  # seeds x sets x students x calibrators
    keys = {(r["training_set"], r["student"], r["calibrator"], r["regime"]) for r in rows}
    assert ("DM", "plain", "TS", "strict") in keys
    assert ("real", "mixup", "MTS", "held-out") in keys
    for row in rows:
        assert 0 <= row["accuracy"] <= 1
        assert 0 <= row["ece15"] <= 1
    strict_ts = [r for r in rows if r["calibrator"] == "TS" and r["regime"] == "strict"]
    assert all("separate" in r["note"] for r in strict_ts if r["temperature"] == 1e-6)
    assert len(result["summary"]) == 30
    assert all(e["n_seeds"] == 2 for e in result["summary"])
    table = format_summary(result["summary"])
    assert "strict" in table
    assert "held-out" in table


def test_outputs_are_written(smoke_run):
    _, out = smoke_run
    for name in ("results.csv", "summary.csv", "results.json", "seed-0.json", "seed-1.json"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["dataset"] == "digits"
    pytest.importorskip("matplotlib")
    assert (out / "reliability.png").is_file()
    assert (out / "max_logits.png").is_file()
    assert not list(out.glob("*.tmp"))


def test_a_rerun_resumes_from_finished_seeds(smoke_run, monkeypatch):
    result, out = smoke_run

    def must_not_run(*args, **kwargs):
        raise AssertionError("finished seeds must not be recomputed")

    monkeypatch.setattr(experiment, "_run_seed", must_not_run)
    again = run_experiment("digits", profile="smoke", seeds=[0, 1], output=out, verbose=False)
    assert [r["ece15"] for r in again["rows"]] == [r["ece15"] for r in result["rows"]]


def test_seeds_are_reproducible(smoke_run):
    result, _ = smoke_run
    again = run_experiment("digits", profile="smoke", seeds=[1], verbose=False)
    first = [r for r in result["rows"] if r["seed"] == 1]
    np.testing.assert_allclose([r["nll"] for r in again["rows"]], [r["nll"] for r in first])


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"valid names are \['digits', 'fashion-mnist'\]"):
        run_experiment("cifar10", profile="smoke", seeds=[0])
    with pytest.raises(ValueError, match="valid names are"):
        run_experiment("digits", profile="huge", seeds=[0])
    with pytest.raises(ValueError, match="at least one seed"):
        run_experiment("digits", profile="smoke", seeds=[])


def test_command_line_runs_and_reports(tmp_path, capsys):
    assert main(["--profile", "smoke", "--seeds", "1", "--output", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "mean±std over seeds" in out
    assert (tmp_path / "summary.csv").is_file()


def test_command_line_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--dataset", "fashion-mnist", "--root", str(tmp_path / "none"), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("distcal: error:")
    assert "Traceback" not in err
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--seeds", "zero"])
    assert exit_info.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err
