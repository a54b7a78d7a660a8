"""Every benchmark script runs from a clean checkout, at its smallest size, and writes markdown.

The numbers of these runs mean nothing (a few iterations, one seed); what is checked is that each
script runs end to end with the installed package, prints its table and writes the markdown that
docs/ includes, starting with the command that produced it. The full runs are in docs/benchmarks.md.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAS_NETCAL = importlib.util.find_spec("netcal") is not None

SMALLEST = {
    "bench_temperature.py": ["--quick", "--methods", "distcal", "sklearn", "torch-lbfgs"]
    + (["netcal"] if HAS_NETCAL else []),
    "bench_metrics.py": ["--quick"],
    "bench_calibrator_speed.py": ["--n-samples", "2000", "--repeat", "1"]
    + ([] if HAS_NETCAL else ["--methods", "matrix scaling"]),
    "bench_metric_peers.py": ["--n-samples", "2000", "--repeat", "1", "--n-resamples", "20"],
    # this tree alone (no --against): the workloads run, the ratios need a second tree
    "bench_data_path.py": [
        "--n-samples",
        "2000",
        "--n-classes",
        "10",
        "--inputs",
        "64",
        "--n-resamples",
        "20",
        "--repeat",
        "1",
        "--inner",
        "1",
    ],
    "bench_ece_coverage.py": [
        "--datasets",
        "2",
        "--n-resamples",
        "20",
        "--truth-samples",
        "250000",
        "--sizes",
        "500",
        "--pair-sizes",
        "500",
    ],
    "bench_calibrate_command.py": [
        "--n-samples",
        "2000",
        "--n-classes",
        "20",
        "--n-resamples",
        "20",
        "--iteration-rows",
        "300",
    ],
    "bench_logit_masking.py": ["--seeds", "1", "--n-masks", "1", "--epochs", "5"],
    "bench_distill_throughput.py": ["--ipc", "1", "--width", "8", "--repeat", "1"],
    "bench_distill.py": [
        "--dataset",
        "digits",
        "--iterations",
        "5",
        "--epochs",
        "5",
        "--students",
        "1",
        "--width",
        "8",
        "--validation",
        "300",
        "--quiet",
    ],
    "bench_students.py": [
        "--profile",
        "smoke",
        "--students",
        "2",
        "--epochs",
        "2",
        "--repeat",
        "1",
    ],
    "bench_streaming.py": ["--sizes", "20000x10", "--batch-elements", "50000"],
    "bench_csv_memory.py": ["--sizes", "2000x50"],
    "bench_recipe.py": ["--dataset", "digits", "--profile", "smoke", "--threads", "1"],
    "bench_evaluate.py": [
        "--dataset",
        "digits",
        "--profile",
        "smoke",
        "--students",
        "2",
        "--epochs",
        "2",
        "--peer-seeds",
        "1",
    ],
    "bench_layers.py": ["--dataset", "digits", "--profile", "smoke", "--repeat", "1"],
    "bench_calibrators.py": [
        "--quick",
        "--iterations",
        "5",
        "--epochs",
        "5",
        "--full-epochs",
        "1",
        # netcal's binning methods, as the full run does; ENIR and BBQ take minutes.
        "--netcal",
        *(["temperature", "histogram", "isotonic"] if HAS_NETCAL else []),
    ],
}


def test_every_benchmark_script_is_covered():
    scripts = {path.name for path in (ROOT / "benchmarks").glob("bench_*.py")}
    assert scripts == set(SMALLEST)


#: The scripts whose smallest run takes more than about ten seconds on 2 cores (a
#: ``--durations`` run of the suite): they run with ``pytest -m slow`` (and in CI), so that the
#: default command stays near ten minutes.
SLOW_BENCHMARKS = {
    "bench_calibrators.py",
    "bench_calibrator_speed.py",
    "bench_temperature.py",
    "bench_data_path.py",
    "bench_evaluate.py",
    "bench_distill_throughput.py",
    "bench_ece_coverage.py",
    "bench_streaming.py",
    "bench_distill.py",
}


def test_the_slow_benchmarks_are_benchmarks():
    assert set(SMALLEST) > SLOW_BENCHMARKS


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(s, marks=pytest.mark.slow) if s in SLOW_BENCHMARKS else s
        for s in sorted(SMALLEST)
    ],
)
def test_benchmark_runs_and_writes_markdown(script, tmp_path):
    markdown = tmp_path / "table.md"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / script),
            *SMALLEST[script],
            "--markdown",
            str(markdown),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert result.stdout.strip(), "the script printed no table"
    text = markdown.read_text()
    assert text.startswith("Command: `python benchmarks/" + script)
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) >= 3, text  # a header, the separator and at least one row


def test_generated_results_match_the_committed_per_seed_files():
    """Tables, claims and the README's numbers are generated from docs/benchmarks/runs/; a
    hand edit of either side makes them disagree, and this fails."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "report_results.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr


def test_shared_synthetic_logits_draw_labels_from_softmax_of_z():
    """benchmarks/_data.py, the one recipe of synthetic logits: 3 z, labels ~ softmax(z)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import _data
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    import numpy as np

    for labels in ("gumbel", "inverse"):
        logits, y = _data.make_data(50_000, 5, seed=1, labels=labels)
        z = logits / 3
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        # the labels' frequency per class matches the mean probability of the class
        frequency = np.bincount(y, minlength=5) / len(y)
        np.testing.assert_allclose(frequency, p.mean(axis=0), atol=0.01)
        assert y.dtype == np.int64
    # chunks continue one stream: the first chunk is the head of the whole draw
    (head, y_head), _ = _data.logit_chunks(10, 3, seed=2, labels="inverse", chunk=5)
    whole, y_whole = next(_data.logit_chunks(5, 3, seed=2, labels="inverse"))
    np.testing.assert_array_equal(head, whole)
    np.testing.assert_array_equal(y_head, y_whole)
    # batches of a stream are independent of the order they are drawn in
    second = _data.logit_batch(1, 4, 10, 3)
    _data.logit_batch(0, 4, 10, 3)
    np.testing.assert_array_equal(_data.logit_batch(1, 4, 10, 3)[0], second[0])
    assert second[0].dtype == np.float32
    assert len(_data.logit_batch(2, 4, 10, 3)[1]) == 2
    with pytest.raises(ValueError, match='labels must be "gumbel" or "inverse"'):
        next(_data.logit_chunks(3, 2, labels="uniform"))


def _report_results():
    spec = importlib.util.spec_from_file_location(
        "report_results", ROOT / "benchmarks" / "report_results.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return module


def test_a_profile_run_is_recorded_only_if_it_reproduces_the_committed_rows(tmp_path, monkeypatch):
    """The stage profile's "after" column comes from a later run of committed seeds; its rows
    must be the committed ones, or the speed-up changed the experiment."""
    import json
    import shutil

    report = _report_results()
    runs = tmp_path / "runs"
    shutil.copytree(ROOT / "docs" / "benchmarks" / "runs" / "digits", runs / "digits")
    monkeypatch.setattr(report, "RUNS", runs)
    committed = json.loads((runs / "digits" / "run.json").read_text())
    later = tmp_path / "later"
    later.mkdir()
    for name in report.FILES:  # seeds 1 and 2 of the committed files, as a run writes them
        lines = (runs / "digits" / name).read_text().splitlines(keepends=True)
        kept = [lines[0]] + [line for line in lines[1:] if line.split(",")[0] in ("1", "2")]
        (later / name).write_text("".join(kept))
    seconds = {str(s): committed["stage_seconds"][str(s)] for s in (1, 2)}
    config = {**committed["config"], "seeds": [1, 2]}
    (later / "results.json").write_text(json.dumps({"config": config, "stage_seconds": seconds}))

    assert report.import_profile(later, "abc1234") == "digits"
    profile = json.loads((runs / "digits" / "profile.json").read_text())
    assert profile["commit"] == "abc1234"
    assert set(profile["stage_seconds"]) == {"1", "2"}
    assert "--seeds 1-2" in profile["command"]
    table = report.stage_profile({"digits": report.load("digits")})
    assert "| stage | seconds | SD | share | after | SD | speed-up |" in table
    total = sum(sum(seconds[stage] for stage in report.STAGES) for seconds in seconds.values())
    total_row = next(line for line in table.splitlines() if line.startswith("| total"))
    assert total_row.split("|")[5].strip() == f"{total / 2:.0f}"  # the mean of seeds 1 and 2

    # the committed code rerun on the later run's machine, seed 2 only, twice as slow: the
    # speed-up compares the two runs on seed 2, and the rerun gets its own column
    slower = {"2": {stage: 2 * value for stage, value in seconds["2"].items()}}
    config = {**committed["config"], "seeds": [2]}
    (later / "results.json").write_text(json.dumps({"config": config, "stage_seconds": slower}))
    with pytest.raises(SystemExit, match="--baseline-commit"):
        report.import_profile(later, None, kind="baseline")
    assert report.import_profile(later, "0ld0ld0", kind="baseline") == "digits"
    table = report.stage_profile({"digits": report.load("digits")})
    assert "| stage | seconds | SD | share | before, rerun | after | SD | speed-up |" in table
    assert "commit 0ld0ld0" in table
    total_row = next(line for line in table.splitlines() if line.startswith("| total"))
    cells = [cell.strip() for cell in total_row.split("|")]
    assert cells[5] == f"{2 * sum(seconds['2'].values()):.0f}"
    assert cells[8] == "2.00x"
    n_rows = sum(len(report._raw_rows(later / name, [2])) for name in report.FILES)
    assert f"{n_rows} of its {n_rows} rows identical to the committed ones" in table
    (runs / "digits" / "baseline.json").unlink()

    # Another CPU: the rerun of the committed code and the later run agree with each other
    # but not with the committed rows; the later run is checked against the rerun, on the
    # seeds the rerun has (2), and only their seconds are recorded.
    other = tmp_path / "other-cpu"
    shutil.copytree(later, other)
    text = (other / "results.csv").read_text().rstrip("\n")
    (other / "results.csv").write_text(text[:-1] + ("1" if text[-1] != "1" else "2") + "\n")
    assert report.import_profile(other, "0ld0ld0", kind="baseline") == "digits"
    assert json.loads((runs / "digits" / "baseline.json").read_text())[
        "rows_identical_to_committed"
    ] == [n_rows - 1, n_rows]
    config = {**committed["config"], "seeds": [1, 2]}
    (other / "results.json").write_text(json.dumps({"config": config, "stage_seconds": seconds}))
    with pytest.raises(SystemExit, match="differ from the committed"):
        report.import_profile(other, "abc1234")
    baseline_dir = tmp_path / "baseline"
    shutil.copytree(other, baseline_dir)
    (baseline_dir / "results.json").write_text(
        json.dumps({"config": {**config, "seeds": [2]}, "stage_seconds": slower})
    )
    assert report.import_profile(other, "abc1234", against=baseline_dir) == "digits"
    recorded = json.loads((runs / "digits" / "profile.json").read_text())
    assert set(recorded["stage_seconds"]) == {"2"}
    assert "another CPU rounds differently" in report.stage_profile(
        {"digits": report.load("digits")}
    )
    (runs / "digits" / "baseline.json").unlink()
    (later / "results.json").write_text(
        json.dumps({"config": {**config, "seeds": [1, 2]}, "stage_seconds": seconds})
    )

    (runs / "digits" / "profile.json").unlink()
    text = (later / "results.csv").read_text().rstrip("\n")  # one character of the last row
    (later / "results.csv").write_text(text[:-1] + ("1" if text[-1] != "1" else "2") + "\n")
    with pytest.raises(SystemExit, match="differ from the committed"):
        report.import_profile(later, "abc1234")
    assert not (runs / "digits" / "profile.json").exists()


def test_committed_runs_in_the_regimes_earlier_name_are_converted_cell_for_cell(tmp_path):
    """Files of runs before issue 23 say "strict" (rows, "MTS auto strict" comparisons,
    ``strict_ratios``); the report script reads them as today's and converts them once, every
    other character unchanged."""
    import csv
    import io
    import json
    import shutil

    report = _report_results()
    committed = ROOT / "docs" / "benchmarks" / "runs" / "digits"
    legacy = tmp_path / "digits"
    shutil.copytree(committed, legacy)
    for name, columns in (("results.csv", ("regime",)), ("comparisons.csv", ("first", "second"))):
        with (legacy / name).open(newline="") as handle:
            rows = list(csv.reader(handle))
        for row in rows[1:]:
            for i in (rows[0].index(column) for column in columns):
                row[i] = row[i].replace("training", "strict")
        text = io.StringIO(newline="")
        csv.writer(text).writerows(rows)
        (legacy / name).write_text(text.getvalue(), newline="")
    run = json.loads((legacy / "run.json").read_text())
    profile = run["config"]["profile"]
    profile["strict_ratios"] = profile.pop("training_ratios")
    (legacy / "run.json").write_text(json.dumps(run, indent=1, sort_keys=True) + "\n")
    assert "MTS auto strict" in (legacy / "comparisons.csv").read_text()

    # read as today's rows, before any conversion
    for name in ("results.csv", "comparisons.csv"):
        assert report.read_csv(legacy / name) == report.read_csv(committed / name)
        assert report._raw_rows(legacy / name, range(13)) == report._raw_rows(
            committed / name, range(13)
        )
    changed = report.upgrade_committed([legacy], report.FILES, check=True)
    assert sorted(p.name for p in changed) == ["comparisons.csv", "results.csv", "run.json"]
    assert "strict" in (legacy / "results.csv").read_text()  # --check writes nothing
    report.upgrade_committed([legacy], report.FILES, check=False)
    for name in (*report.FILES, "run.json"):
        assert (legacy / name).read_bytes() == (committed / name).read_bytes(), name
    assert report.upgrade_committed([legacy], report.FILES, check=True) == []
