import json

import numpy as np
import pytest
import torch

import distcal.experiment as experiment
import distcal.experiment.runner as runner
from distcal.cli import main
from distcal.experiment import (
    format_diagnostics,
    format_summary,
    run_experiment,
    summarise_diagnostics,
)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return run_experiment("digits", profile="smoke", seeds=[0, 1], output=out, verbose=False), out


def test_every_set_student_and_calibrator_is_scored(smoke_run):
    result, _ = smoke_run
    rows = result["rows"]
    # none; TS, MTS auto, MTS auto logits held-out; TS, 2 fixed ratios, the two autos training
    base = 1 + 3 + 5
    # a distilled set's students also get the recipe (its default and three methods) and TS on
    # the kept real images (the smoke profile keeps 1 per class)
    with_set = base + 4 + 1
    # the transfer student (the smoke profile has one): none, TS held-out, TS and the two autos
    # training, the recipe's four and the kept images
    transfer = 1 + 1 + 3 + 4 + 1
    per_seed = 2 * (2 * with_set + transfer) + 2 * base  # DM and MDT, then the random real set
    assert len(rows) == 2 * per_seed  # two seeds
    keys = {(r["training_set"], r["student"], r["calibrator"], r["regime"]) for r in rows}
    assert ("DM", "plain", "TS", "training") in keys
    assert ("real", "mixup", "MTS auto", "held-out") in keys
    assert ("MDT", "plain", "MTS 0.5", "training") in keys
    assert ("DM", "mixup", "recipe", "training") in keys
    assert ("MDT", "lr x0.5", "recipe: ratio", "training") in keys
    assert ("DM", "lr x0.5", "TS 1 real/class", "kept") in keys
    assert ("DM", "lr x0.5", "MTS auto", "held-out") not in keys  # transfer: held-out TS only
    assert not [k for k in keys if k[0] == "real" and k[2].startswith(("recipe", "TS 1"))]
    auto = [r for r in rows if r["calibrator"].startswith("MTS auto")]
    assert {r["regime"] for r in auto} == {"training", "held-out"}
    assert all(r["detected"] in ("training", "held-out") for r in auto)
    recipe = [r for r in rows if r["calibrator"].startswith("recipe")]
    assert all(r["detected"] == "training" for r in recipe)
    others = [r for r in rows if not r["calibrator"].startswith(("MTS auto", "recipe"))]
    assert all(r["detected"] == "" for r in others)
    assert all(0 <= r["mask_ratio"] < 1 for r in auto)
    for row in rows:
        assert 0 <= row["accuracy"] <= 1
        assert 0 <= row["ece15"] <= 1
    training_ts = [r for r in rows if r["calibrator"] == "TS" and r["regime"] == "training"]
    assert all("separate" in r["note"] for r in training_ts if r["temperature"] == 1e-6)
    assert len(result["summary"]) == len(keys)
    assert all(e["n_seeds"] == 2 for e in result["summary"])
    table = format_summary(result["summary"])
    assert "training" in table
    assert "held-out" in table
    assert "recipe" in table
    assert "MTS 0.5" not in table  # the printed table shows the main rows; the files hold all
    assert "MTS 0.5" in format_summary(result["summary"], rows=None)


def test_every_distilled_set_is_saved_with_its_recipe(smoke_run):
    import csv

    from distcal.calibration import DistilledCalibration
    from distcal.distill import load_distilled

    result, out = smoke_run
    for seed in (0, 1):
        for name in ("DM", "MDT"):
            distilled = load_distilled(out / "sets" / f"seed-{seed}-{name}.safetensors")
            recipe = result["recipes"][seed][name]
            saved = {key: value for key, value in recipe.items() if key != "warnings"}
            assert distilled.recipe.to_dict() == saved
            assert len(distilled.recipe.proxies) == 8  # the smoke profile: one of each variation
            assert distilled.recipe.n_validation == 200
    with (out / "recipes.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert [(row["seed"], row["training_set"]) for row in table] == [
        ("0", "DM"), ("0", "MDT"), ("1", "DM"), ("1", "MDT")
    ]  # fmt: skip
    # the recipe row is DistilledCalibration's temperature on the saved set, as a user gets it
    assert isinstance(DistilledCalibration(distilled.recipe).recipe.method, str)
    row = next(r for r in result["rows"] if (r["seed"], r["training_set"], r["student"],
               r["calibrator"]) == (1, "MDT", "lr x0.5", "recipe: temperature"))  # fmt: skip
    assert row["temperature"] == pytest.approx(distilled.recipe.temperature, rel=1e-12)


def test_the_recipe_report_generates_its_tables_and_verdicts(smoke_run, tmp_path, monkeypatch):
    """benchmarks/report_recipe.py on a run of the smoke profile (seeds 0-1 for 13-22)."""
    import importlib.util
    import shutil
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(
            "report_recipe", root / "benchmarks" / "report_recipe.py"
        )
        report = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(report)
    finally:
        sys.path.remove(str(root / "benchmarks"))
    _, out = smoke_run
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{report.BEGIN}\nold\n{report.END}\nrest\n")
    monkeypatch.setattr(report, "SEEDS", (0, 1))
    monkeypatch.setattr(report, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(report, "OUT", tmp_path)
    monkeypatch.setattr(report, "README", readme)
    run = tmp_path / "run"
    shutil.copytree(out, run)
    assert report.import_run(run, "abc1234") == "digits"
    assert report.main(["--check"]) == 1  # nothing generated yet
    assert report.main([]) == 0
    assert report.main(["--check"]) == 0
    verdicts = (tmp_path / "recipe_verdicts.md").read_text()
    for cell in ("| digits | DM | plain | yes |", "| digits | MDT | lr x0.5 | no |"):
        assert cell in verdicts
    assert "| 1.25 |" in verdicts
    assert "| 1.5 |" in verdicts
    assert not (tmp_path / "recipe_secondary.md").exists()  # R4 reads Fashion-MNIST only
    baselines = (tmp_path / "recipe_baselines_digits.md").read_text()
    assert "| TS 1 real/class |" in baselines.splitlines()[4]
    assert "TS 5 real/class" not in baselines  # the smoke profile keeps 1 per class
    text = readme.read_text()
    assert text.startswith("intro\n")
    assert text.endswith("rest\n")
    assert "students of the proxies' recipes" in text
    assert "TS on k real images per class kept beside the set instead: " in text
    assert "with k = 1" in text
    assert "with k = 5" not in text
    assert "old" not in text
    # R4, on the smoke run's digits rows standing in for Fashion-MNIST's
    monkeypatch.setattr(report, "SECONDARY_DATASET", "digits")
    assert report.main(["--check"]) == 1  # the secondary table is new
    assert report.main([]) == 0
    secondary = (tmp_path / "recipe_secondary.md").read_text()
    assert "| DM | plain | yes |" in secondary
    result = report.secondary(report.load("digits"))
    assert len(result["cells"]) == len(report.SETS) * len(report.students(report.load("digits")))
    assert result["holds"] == (result["Q"] >= result["P"] and result["m_ratio"] < result["m_rule"])
    assert ("holds" if result["holds"] else "not confirmed") in secondary


def _legacy_copy(source, target):
    """A run's folder as code before issue 23 wrote it: the regime of the training images
    called "strict" (rows, comparisons, the profile's ``strict_ratios``)."""
    import csv
    import io
    import shutil

    shutil.copytree(source, target)
    for name, columns in (("results.csv", ("regime",)), ("comparisons.csv", ("first", "second"))):
        with (target / name).open(newline="") as handle:
            rows = list(csv.reader(handle))
        header = rows[0]
        for row in rows[1:]:
            for column in columns:
                i = header.index(column)
                if row[i].endswith("training"):
                    row[i] = row[i][: -len("training")] + "strict"
        text = io.StringIO(newline="")
        csv.writer(text).writerows(rows)
        (target / name).write_text(text.getvalue(), newline="")
    result = json.loads((target / "results.json").read_text())
    profile = result["config"]["profile"]
    profile["strict_ratios"] = profile.pop("training_ratios")
    (target / "results.json").write_text(json.dumps(result))


def test_the_recipe_report_imports_a_run_that_says_strict(smoke_run, tmp_path, monkeypatch):
    """A deciding run of code before the regime had one name (issue 21's, started earlier)
    writes "strict" and "recipe strict": imported, its files are today's, cell for cell."""
    import importlib.util
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(
            "report_recipe", root / "benchmarks" / "report_recipe.py"
        )
        report = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(report)
    finally:
        sys.path.remove(str(root / "benchmarks"))
    _, out = smoke_run
    monkeypatch.setattr(report, "SEEDS", (0, 1))
    monkeypatch.setattr(report, "RUNS", tmp_path / "runs")
    legacy = tmp_path / "legacy"
    _legacy_copy(out, legacy)
    assert ",strict," in (legacy / "results.csv").read_text()
    assert "recipe strict" in (legacy / "comparisons.csv").read_text()
    assert report.import_run(legacy, "0ld0ld0") == "digits"
    imported = tmp_path / "runs" / "recipe-digits"
    for name in report.FILES:
        assert (imported / name).read_bytes() == (out / name).read_bytes(), name
    run = json.loads((imported / "run.json").read_text())
    config = json.loads((out / "results.json").read_text())["config"]
    assert run["config"]["profile"] == config["profile"]
    rows = report.load("digits")["rows"]
    assert {r["regime"] for r in rows} == {"-", "held-out", "training", "kept"}


def test_summary_reports_sample_sd_and_t_intervals(smoke_run):
    from scipy import stats

    result, _ = smoke_run
    entry = next(
        e
        for e in result["summary"]
        if (e["training_set"], e["student"], e["calibrator"]) == ("DM", "plain", "none")
    )
    values = np.array(
        [
            r["ece15"]
            for r in result["rows"]
            if (r["training_set"], r["student"], r["calibrator"]) == ("DM", "plain", "none")
        ]
    )
    assert entry["ece15"] == pytest.approx(values.mean())
    assert entry["ece15_std"] == pytest.approx(values.std(ddof=1))
    half = stats.t.ppf(0.975, 1) * values.std(ddof=1) / np.sqrt(2)
    assert entry["ece15_low"] == pytest.approx(values.mean() - half)
    assert entry["ece15_high"] == pytest.approx(values.mean() + half)


def test_paired_bootstrap_comparisons_per_seed_and_student(smoke_run):
    result, _ = smoke_run
    comparisons = result["comparisons"]
    pairs = {(c["first"], c["second"]) for c in comparisons}
    every = experiment.COMPARISONS + experiment.RECIPE_COMPARISONS
    assert pairs == {(" ".join(a), " ".join(b)) for a, b in every}
    assert {c["training_set"] for c in comparisons} == {"DM", "MDT"}
    # seeds x distilled sets x (plain and mixup with every pair, the transfer student with the
    # recipe's pairs only)
    per_set = 2 * len(every) + len(experiment.RECIPE_COMPARISONS)
    assert len(comparisons) == 2 * 2 * per_set
    rows = {
        (r["seed"], r["training_set"], r["student"], r["calibrator"], r["regime"]): r
        for r in result["rows"]
    }
    for c in comparisons:
        first = rows[(c["seed"], c["training_set"], c["student"], *c["first"].rsplit(" ", 1))]
        second = rows[(c["seed"], c["training_set"], c["student"], *c["second"].rsplit(" ", 1))]
        assert c["difference"] == pytest.approx(first["ece15"] - second["ece15"])
        assert c["low"] <= c["high"]


def test_max_logit_diagnostics_are_summarised_over_seeds(smoke_run):
    result, _ = smoke_run
    rows = {row["training_set"]: row for row in result["diagnostics_summary"]}
    assert set(rows) == {"DM", "MDT", "real", "full"}  # "full": the whole training split
    for set_name, row in rows.items():
        assert row["n_seeds"] == 2
        per_seed = [result["diagnostics"][seed][set_name]["spread_ratio"] for seed in (0, 1)]
        assert row["spread_ratio"] == pytest.approx(np.mean(per_seed))
        assert row["spread_ratio_std"] == pytest.approx(np.std(per_seed, ddof=1))
        assert row["cv_train"] > 0
    assert 0 <= result["diagnostics"][0]["full"]["scores"]["accuracy"] <= 1
    table = format_diagnostics(result["diagnostics_summary"])
    assert table.splitlines()[0].startswith("network")
    assert len(table.splitlines()) == 5


def test_diagnostics_summary_of_known_values():
    def entry(cv, spread):
        stats = {"cv": cv}
        return {"train_clean": stats, "train_masked": stats, "spread_ratio": spread, "test": stats}

    rows = summarise_diagnostics({0: {"DM": entry(0.1, 1.0)}, 1: {"DM": entry(0.3, 3.0)}})
    sd = np.std([0.1, 0.3], ddof=1)
    assert rows == [
        {
            "training_set": "DM",
            "n_seeds": 2,
            "cv_train": pytest.approx(0.2),
            "cv_train_std": pytest.approx(sd),
            "cv_train_masked": pytest.approx(0.2),
            "cv_train_masked_std": pytest.approx(sd),
            "spread_ratio": pytest.approx(2.0),
            "spread_ratio_std": pytest.approx(np.std([1.0, 3.0], ddof=1)),
            "cv_test": pytest.approx(0.2),
            "cv_test_std": pytest.approx(sd),
        }
    ]


def test_outputs_are_written(smoke_run):
    result, out = smoke_run
    names = (
        "results.csv",
        "comparisons.csv",
        "diagnostics.csv",
        "summary.csv",
        "max_logits.csv",
        "summary.md",
        "results.json",
    )
    for name in names:
        assert (out / name).is_file(), name
    markdown = (out / "summary.md").read_text().splitlines()
    assert markdown[0].startswith("| set | student | calibrator | regime | acc %")
    assert markdown[1] == "|" + "---|" * 12
    summarised = {
        (r["training_set"], r["student"], r["calibrator"], r["regime"]) for r in result["rows"]
    }
    # the summary (a line per set, student, calibrator and regime), a blank line, diagnostics
    assert len(markdown) == 2 + len(summarised) + 1 + 2 + 4
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["dataset"] == "digits"
    environment = saved["config"]["environment"]
    assert environment["torch_threads"] == 1
    assert environment["torch"] == torch.__version__
    assert environment["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(saved["stage_seconds"]["0"]) >= {"distillation", "students", "calibration"}
    pytest.importorskip("matplotlib")
    assert (out / "reliability.png").is_file()
    assert (out / "max_logits.png").is_file()
    assert not list(out.glob("*.tmp"))


def test_a_rerun_resumes_from_finished_seeds(smoke_run, monkeypatch):
    result, out = smoke_run

    def must_not_run(*args, **kwargs):
        raise AssertionError("finished seeds must not be recomputed")

    monkeypatch.setattr(runner, "run_seed", must_not_run)
    again = run_experiment("digits", profile="smoke", seeds=[0, 1], output=out, verbose=False)
    assert [r["ece15"] for r in again["rows"]] == [r["ece15"] for r in result["rows"]]


@pytest.mark.slow
def test_a_damaged_seed_file_is_recomputed_to_the_same_rows(smoke_run, tmp_path, capsys):
    """Issue 16, item 7: a truncated seed file is a warning naming it, not a traceback."""
    import shutil

    _, out = smoke_run
    copy = tmp_path / "run"
    shutil.copytree(out, copy)
    seed_file = copy / "seed-0.json"
    seed_file.write_text(seed_file.read_text()[:100])  # truncated by a crash
    argv = ["run", "--profile", "smoke", "--seeds", "2", "--output", str(copy), "--quiet"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"distcal: warning: {seed_file} is damaged")
    assert "seed 0 is recomputed" in err
    assert "Traceback" not in err
    assert (copy / "results.csv").read_text() == (out / "results.csv").read_text()
    assert json.loads(seed_file.read_text())["result"]["seed"] == 0  # replaced


def test_a_rerun_of_a_seed_reproduces_its_rows_exactly(smoke_run, tmp_path):
    """Same code, seed and thread count: the same bits, in this process and in a fresh one."""
    import subprocess
    import sys

    result, out = smoke_run
    again = run_experiment("digits", profile="smoke", seeds=[1], verbose=False)
    first = [r for r in result["rows"] if r["seed"] == 1]
    assert again["rows"] == first
    assert again["comparisons"] == [c for c in result["comparisons"] if c["seed"] == 1]
    # A fresh process with torch's default thread count: the run pins its own (threads=1).
    script = (
        "import sys; from distcal.experiment import run_experiment; "
        "run_experiment('digits', profile='smoke', seeds=[1], verbose=False, output=sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)
    lines = (out / "results.csv").read_text().splitlines()
    committed = [line for line in lines if line.startswith("1,")]
    rerun = (tmp_path / "results.csv").read_text().splitlines()[1:]
    assert rerun == committed


def test_seeds_from_the_command_line():
    from distcal.experiment import parse_seeds

    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("3-12") == list(range(3, 13))
    assert parse_seeds("4,0,4") == [4, 0]
    for bad in ("", "0", "5-3", "a", "-1", "1,-2", "2-x"):
        with pytest.raises(ValueError, match="seeds must be a count N"):
            parse_seeds(bad)


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
    assert "mean±SD over seeds" in out
    assert "IQR masked/clean" in out
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
    assert "seeds must be a count N" in capsys.readouterr().err


def test_demo_prints_both_regimes(capsys):
    assert main(["demo", "--epochs", "5", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:2] == ["method", "calibrated"]
    rows = {tuple(line.split()[:2]): line for line in lines[2:]}
    assert {("none", "-"), ("TS", "held-out"), ("MTS", "held-out"), ("MTS", "training")} <= set(
        rows
    )
    assert "ratio 'auto'" in rows["MTS", "training"]


def test_tiny_temperatures_do_not_print_as_zero():
    entry = {
        "training_set": "DM",
        "student": "plain",
        "calibrator": "TS",
        "regime": "training",
        **{key: 0.5 for key in experiment.METRICS},
        **{f"{key}_std": 1e-17 for key in experiment.METRICS},
        "temperature": 1e-6,
        "temperature_std": 0.0,
        "mask_ratio": 0.1,
        "mask_ratio_std": 1e-17,
    }
    row = format_summary([entry], rows=None).splitlines()[1].split()
    assert row[-2] == "1e-06±0e+00"
    assert row[-1] == "0.10±0.00"
    assert row[4] == "50.0±0.0"


@pytest.mark.slow
def test_seeds_in_parallel_give_the_same_results(smoke_run, tmp_path):
    result, _ = smoke_run
    parallel = run_experiment(
        "digits", profile="smoke", seeds=[0, 1], output=tmp_path, verbose=False, n_jobs=2
    )
    np.testing.assert_allclose(
        [r["ece15"] for r in parallel["rows"]], [r["ece15"] for r in result["rows"]]
    )
    assert (tmp_path / "seed-0.json").is_file()
    assert (tmp_path / "seed-1.json").is_file()
    pytest.importorskip("matplotlib")
    assert (tmp_path / "reliability.png").is_file()  # drawn by the worker of the first seed


@pytest.mark.slow
def test_command_line_takes_n_jobs(tmp_path, capsys):
    argv = ["run", "--profile", "smoke", "--seeds", "2", "--n-jobs", "2", "--quiet"]
    assert main([*argv, "--output", str(tmp_path)]) == 0
    assert "mean±SD over seeds" in capsys.readouterr().out


def test_a_full_disk_ends_with_one_message_and_no_half_written_file(tmp_path, capsys, monkeypatch):
    import errno

    import distcal._files as files

    real_replace = files.os.replace

    def full_disk(source, target):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(files.os, "replace", full_disk)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--profile", "smoke", "--seeds", "1", "--output", str(tmp_path), "--quiet"])
    monkeypatch.setattr(files.os, "replace", real_replace)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("distcal: error:")
    assert "No space left on device" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # neither results nor temporary files


def test_corrupt_data_files_end_with_one_message(tmp_path, capsys):
    for name in (
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ):
        (tmp_path / name).write_bytes(b"not gzip")
    argv = ["run", "--dataset", "fashion-mnist", "--root", str(tmp_path), "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("distcal: error:")
    assert "not a readable gzip" in err
    assert err.count("\n") == 1


def test_a_directory_in_place_of_a_data_file_is_named_as_one(tmp_path, capsys):
    (tmp_path / "train-images-idx3-ubyte.gz").mkdir()
    argv = ["run", "--dataset", "fashion-mnist", "--root", str(tmp_path), "--quiet"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--output", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz is a directory, not the IDX file" in err
    assert err.count("\n") == 1


@pytest.mark.slow
@pytest.mark.same_machine
def test_a_rerun_reproduces_the_committed_per_seed_rows(tmp_path):
    """Seed 3 of the committed digits run, recomputed: every committed row, to the last bit.

    Slow (about a minute), and true on a machine like the one that produced the rows: torch's
    CPU kernels take other code paths (and round differently) on other instruction sets.
    """
    from pathlib import Path

    committed_dir = Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "runs" / "digits"
    run_experiment("digits", seeds=[3], output=tmp_path, verbose=False)
    for name in ("results.csv", "comparisons.csv", "diagnostics.csv"):
        committed = (committed_dir / name).read_text().splitlines()
        rerun = (tmp_path / name).read_text().splitlines()
        assert rerun[0] == committed[0], name  # the same columns
        # The run has added rows since (issue 21: recipes, kept images, transfer students);
        # every row of the committed run is still computed, in the same order, to the bit.
        expected = [line for line in committed[1:] if line.startswith("3,")]
        assert [line for line in rerun[1:] if _key(line, name) in {
            _key(e, name) for e in expected}] == expected, name  # fmt: skip


@pytest.mark.slow
@pytest.mark.same_machine
def test_a_rerun_reproduces_the_committed_rows_of_the_recipe_run(tmp_path):
    """Seed 13 of the pre-registered recipe run of digits (issue 21), recomputed: every committed
    row, recipe and comparison to the last bit, on a machine like the one that produced them."""
    from pathlib import Path

    committed_dir = Path(__file__).resolve().parents[1] / "docs/benchmarks/runs/recipe-digits"
    if not (committed_dir / "results.csv").is_file():
        pytest.skip("the recipe run of digits is not committed")
    run_experiment("digits", seeds=[13], output=tmp_path, verbose=False)
    for name in ("results.csv", "comparisons.csv", "recipes.csv"):
        committed = _without_seconds((committed_dir / name).read_text().splitlines())
        rerun = _without_seconds((tmp_path / name).read_text().splitlines())
        assert rerun[0] == committed[0], name
        assert rerun[1:] == [line for line in committed[1:] if line.startswith("13,")], name


def _without_seconds(lines: list[str]) -> list[str]:
    """CSV lines without a "seconds" column (wall-clock time, which no rerun reproduces)."""
    header = lines[0].split(",")
    if "seconds" not in header:
        return lines
    column = header.index("seconds")
    return [",".join(c for i, c in enumerate(line.split(",")) if i != column) for line in lines]


def _key(line: str, name: str) -> tuple:
    """The identity of a CSV row: its leading cells up to the first number it reports."""
    width = {"results.csv": 5, "comparisons.csv": 5, "diagnostics.csv": 2}[name]
    return tuple(line.split(",")[:width])


def test_one_table_renderer_aligns_escapes_and_names_bad_input():
    from distcal.experiment.report import render_table

    text = render_table(["name", "n"], [["a", "10"], ["bc", "2"]], align=["left", "right"])
    assert text.splitlines() == ["name   n", "a     10", "bc     2"]
    assert render_table(["x"], [["1"]], align="right") == "x\n1"
    markdown = render_table(["max |dp|", "v"], [["a|b", 1]], markdown=True).splitlines()
    assert markdown == ["| max \\|dp\\| | v |", "|---|---|", "| a\\|b | 1 |"]
    with pytest.raises(ValueError, match="one cell per column"):
        render_table(["a", "b"], [["1"]])
    with pytest.raises(ValueError, match="align must be"):
        render_table(["a", "b"], [["1", "2"]], align=["left"])
    with pytest.raises(ValueError, match="align must be"):
        render_table(["a"], [["1"]], align="centre")


def test_score_columns_are_the_metrics_of_the_package():
    from distcal.experiment.scores import score_columns
    from distcal.metrics import (
        brier_score,
        classwise_calibration_error,
        expected_calibration_error,
        negative_log_likelihood,
    )

    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(4), size=300)
    y = rng.integers(0, 4, size=300)
    scores = score_columns(y, torch.as_tensor(proba, dtype=torch.float32), classwise=True)
    as64 = torch.as_tensor(proba, dtype=torch.float32).double().numpy()
    assert list(scores) == ["accuracy", "ece10", "ece15", "cwece", "nll", "brier", "confidence"]
    assert scores["ece15"] == expected_calibration_error(y, as64, n_bins=15)
    assert scores["ece10"] == expected_calibration_error(y, as64, n_bins=10)
    assert scores["cwece"] == classwise_calibration_error(y, as64, n_bins=15)
    assert scores["nll"] == negative_log_likelihood(y, as64)
    assert scores["brier"] == brier_score(y, as64)
    assert scores["accuracy"] == np.mean(as64.argmax(axis=1) == y)
    assert scores["confidence"] == as64.max(axis=1).mean()
    kept = score_columns(y, proba.astype(np.float32), dtype=None)
    assert kept["confidence"] == float(proba.astype(np.float32).max(axis=1).mean())
    # a probability of 0 on a true class: an infinite NLL, not an error
    assert score_columns([0], [[0.0, 1.0]])["nll"] == np.inf


def test_one_recipe_per_dataset_and_named_errors():
    from distcal.experiment.settings import DATASETS, dataset_recipe, profile_by_name

    assert dataset_recipe("digits") is DATASETS["digits"]
    assert {recipe.depth for recipe in DATASETS.values()} == {2, 3}
    with pytest.raises(ValueError, match=r"Unknown dataset 'cifar10'; valid names are"):
        dataset_recipe("cifar10")
    with pytest.raises(TypeError, match="profile must be a name of PROFILES or a Profile"):
        profile_by_name(3)
    custom = experiment.Profile(ipc=3)
    assert profile_by_name(custom) == custom
    assert profile_by_name(custom) is not custom


def test_demo_is_a_profile_of_the_experiment(monkeypatch):
    """The demo fits the experiment's calibrators through its calibrate step, less fixed ratios."""
    import distcal.experiment.demo as demo
    from distcal.experiment.settings import DEMO, PROFILES

    assert DEMO.training_ratios == ()
    assert (DEMO.ipc, DEMO.width, DEMO.student_epochs) == (
        PROFILES["small"].ipc,
        PROFILES["small"].width,
        PROFILES["small"].student_epochs,
    )
    seen = {}
    calibrate = demo.calibrate_student

    def spy(student, sets, y_test, **kwargs):
        seen.update(kwargs)
        return calibrate(student, sets, y_test, **kwargs)

    monkeypatch.setattr(demo, "calibrate_student", spy)
    rows = demo.calibration_demo(ipc=2, epochs=2, verbose=False)
    assert seen == {"training_ratios": (), "seed": 0}
    assert [(r["method"], r["calibrated_on"]) for r in rows] == list(demo.SHOWN.values())
    table = demo.format_rows(rows).splitlines()
    assert table[0].split()[:2] == ["method", "calibrated"]
    assert len(table) == 1 + len(demo.SHOWN)


def test_masked_rows_are_the_calibrators_predictions_on_the_test_images():
    # calibrate_student computes the network's test logits once and applies each masked
    # calibrator's temperature to them; that must be what predict_proba(X_test) gives.
    import warnings

    from distcal import MaskedTemperatureScaling
    from distcal.distill import load_digits
    from distcal.exceptions import DistcalWarning
    from distcal.experiment.pipeline import calibrate_student, student_classifier
    from distcal.experiment.settings import dataset_recipe

    digits = load_digits()
    images, labels = digits.images, digits.labels.numpy()
    train, cal, test = slice(0, 200), slice(200, 500), slice(500, 800)
    student = student_classifier(
        dataset_recipe("digits"), width=8, epochs=30, random_state=0, batch_size=64
    ).fit(images[train], labels[train])
    sets = {
        "train": (images[train], labels[train]),
        "cal": (images[cal], labels[cal]),
        "test": images[test],
    }
    rows, probabilities = calibrate_student(
        student, sets, labels[test], training_ratios=(0.3,), seed=5
    )
    refits = {
        ("MTS 0.3", "training"): (0.3, sets["train"]),
        ("MTS auto", "training"): ("auto", sets["train"]),
        ("MTS auto", "held-out"): ("auto", sets["cal"]),
    }
    for key, (ratio, (X, y)) in refits.items():
        with warnings.catch_warnings():  # a weak student's fits warn; the test is the numbers
            warnings.simplefilter("ignore", DistcalWarning)
            alone = MaskedTemperatureScaling(
                ratio, model=student.network_, batch_size=64, random_state=5
            ).fit(X, y)
        assert torch.equal(probabilities[key], alone.predict_proba(images[test])), key
    assert {row["calibrator"] for row in rows} >= {"MTS 0.3", "MTS auto", "MTS auto logits"}
