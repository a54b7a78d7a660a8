"""``distcal evaluate``: the report card of a distilled set in any format, end to end.

Students are tiny (a few epochs of a narrow ConvNet) so that every test runs in seconds; the
numbers mean nothing, the bits and the files do.
"""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from distcal.cli import main
from distcal.distill import (
    DistilledSet,
    StudentClassifier,
    export_distilled,
    load_digits,
    read_distilled,
)
from distcal.experiment import CALIBRATORS, evaluate_distilled, summarise_students
from distcal.experiment.files import DamagedSeedFileWarning

from .distill import repository_files as repo

QUICK = {"epochs": 2, "width": 8}


@pytest.fixture(scope="module")
def digits_set():
    """A stand-in for a distilled digits set: 3 real images per class, normalised."""
    data = load_digits()
    picked = torch.cat([torch.nonzero(data.labels == c)[:3, 0] for c in range(10)])
    mean, std = torch.tensor([0.3125]), torch.tensor([0.4375])
    images = (data.images[picked] - mean) / std + 0.05 * torch.randn(
        30, 1, 8, 8, generator=torch.Generator().manual_seed(0)
    )  # off the pixel grid, as distilled images are
    return DistilledSet(images, data.labels[picked], mean, std, learning_rate=0.0137)


def _evaluate(distilled, **options):
    defaults = {"n_students": 2, "student_options": QUICK, "verbose": False}
    return evaluate_distilled(distilled, "digits", **{**defaults, **options})


@pytest.fixture(scope="module")
def evaluated(digits_set, tmp_path_factory):
    """Three students of the set and their baselines, with the report written."""
    return _evaluate(digits_set, n_students=3, output=tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def reference(digits_set):
    """Two students of the set in memory, at its learned rate."""
    return _evaluate(digits_set, learning_rate=0.0137)


def test_rows_cover_every_calibrator_of_both_training_sets(evaluated):
    result = evaluated
    keys = [(row["seed"], row["training_set"], row["calibrator"]) for row in result["rows"]]
    expected = [
        (seed, training_set, row.name)
        for seed in (0, 1, 2)
        for training_set in ("distilled", "random real")
        for row in CALIBRATORS
        if row.name != "recipe"  # the set carries none
    ]
    assert keys == expected
    for row in result["rows"]:
        # the two halves of ECE-15 add up to it
        assert row["overconfidence"] + row["underconfidence"] == pytest.approx(row["ece15"])
    by_name = {(r["training_set"], r["calibrator"]): r for r in result["summary"]}
    first = [r for r in result["rows"] if r["training_set"] == "distilled"]
    accuracies = np.array([r["accuracy"] for r in first if r["calibrator"] == "none"])
    entry = by_name["distilled", "none"]
    assert entry["accuracy"] == pytest.approx(accuracies.mean())
    assert entry["accuracy_std"] == pytest.approx(accuracies.std(ddof=1))
    assert entry["n_students"] == 3
    # the set's learned rate trains its students, the protocol's the random real ones
    assert result["config"]["protocol"]["lr"] == 0.0137
    assert result["config"]["protocol"]["baseline_lr"] == 0.01
    assert result["assumed"] == []


def test_a_set_with_a_calibration_recipe_gets_its_row(digits_set):
    """The recipe calibrates the set's students (issue 21); the random real ones have none."""
    from dataclasses import replace

    from .conftest import make_recipe

    recipe = make_recipe(method="temperature", temperature=2.5)
    result = _evaluate(replace(digits_set, recipe=recipe), n_students=1)
    rows = {(r["training_set"], r["calibrator"]): r for r in result["rows"]}
    assert ("random real", "recipe") not in rows
    assert rows["distilled", "recipe"]["temperature"] == 2.5
    assert rows["distilled", "recipe"]["ece15"] != rows["distilled", "none"]["ece15"]


def test_the_random_real_baseline_has_the_sets_class_counts(evaluated):
    result = evaluated
    data = load_digits()
    chosen = [tuple(indices) for indices in result["baseline_indices"].values()]
    assert len(set(chosen)) == 3  # another random draw per student
    for indices in chosen:
        counts = torch.bincount(data.labels[list(indices)], minlength=10)
        assert counts.tolist() == [3] * 10
    assert result["config"]["counts_per_class"] == [3] * 10


def test_summary_intervals_over_students():
    rows = [
        {"training_set": "distilled", "calibrator": "none", "data": "-", "note": "",
         "temperature": None, **{k: v for k in ("accuracy", "ece15", "nll", "brier",
         "confidence", "overconfidence", "underconfidence")}}
        for v in (0.1, 0.2, 0.6)
    ]  # fmt: skip
    (entry,) = summarise_students(rows)
    from scipy import stats

    half = stats.t.ppf(0.975, 2) * np.std([0.1, 0.2, 0.6], ddof=1) / np.sqrt(3)
    assert entry["accuracy_low"] == pytest.approx(0.3 - half)
    assert entry["accuracy_high"] == pytest.approx(0.3 + half)
    assert entry["temperature"] is None


# ------------------------------------------------------------------------------------------
# The same set in every format gives the same students, bit for bit
# ------------------------------------------------------------------------------------------

_EXPORTS = {
    "mtt": ("mtt", {"statistics": "set"}),
    "datm": ("datm", {"zca": "none", "statistics": "set"}),
    "dc": ("res_DM_digits_ConvNet_3ipc.pt", {"statistics": "set"}),
    "kip": ("kip.npz", {"zca": "none", "statistics": "set"}),
    "plain": ("plain.pt", {}),
    "distcal": ("set.safetensors", {}),
}


def _comparable(result):
    return [{k: v for k, v in row.items()} for row in result["rows"]]


_SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "format",
    ["mtt", "dc", "plain", pytest.param("datm", marks=_SLOW), pytest.param("kip", marks=_SLOW)],
)
def test_an_exported_set_evaluates_to_the_same_students(tmp_path, digits_set, reference, format):
    name, options = _EXPORTS[format]
    if options.get("statistics") == "set":
        options = {**options, "statistics": (digits_set.mean, digits_set.std)}
    path = export_distilled(digits_set, tmp_path / name, format=format)
    result = _evaluate(str(path), format=format, learning_rate=0.0137, **options)
    assert _comparable(result) == _comparable(reference)
    assert result["baseline_indices"] == reference["baseline_indices"]


@pytest.mark.parametrize("size", [16, pytest.param(32, marks=_SLOW)])
def test_the_python_api_takes_cifar_shaped_arrays_and_an_image_folder(tmp_path, size):
    """CIFAR-like real data as arrays (3 x 32 x 32 in the slow run, 3 x 16 x 16 by default);
    a set on the 8-bit grid survives PNG exactly."""
    rng = np.random.default_rng(0)
    n_train, n_test = 300, 100
    labels = torch.from_numpy(np.arange(n_train + n_test) % 5)
    means = torch.from_numpy(rng.random((5, 3, 1, 1)) * 0.5)
    noise = torch.rand(n_train + n_test, 3, size, size, generator=torch.Generator().manual_seed(0))
    pixels = torch.round((means[labels] + noise * 0.5) * 255)
    pixels = (pixels / 255).float()
    dataset = (pixels[:n_train], labels[:n_train], pixels[n_train:], labels[n_train:])
    picked = torch.cat([torch.nonzero(labels[:n_train] == c)[:2, 0] for c in range(5)])
    mean, std = torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25])
    distilled = DistilledSet((pixels[picked] - 0.5) / 0.25, labels[picked], mean, std)
    folder = export_distilled(distilled, tmp_path / "rded", format="image-folder", scheme="rded")
    options = {"n_students": 1, "student_options": QUICK, "verbose": False}
    reference = evaluate_distilled(distilled, dataset, learning_rate=0.01, **options)
    loaded = read_distilled(folder, statistics=(mean, std))
    result = evaluate_distilled(loaded, dataset, learning_rate=0.01, **options)
    # the folder is sorted by class; the set above is too (picked class by class)
    assert _comparable(result) == _comparable(reference)
    assert result["config"]["dataset"]["train"] == 240  # a fifth of X_train is held out
    assert result["config"]["protocol"]["depth"] == 3
    assert [a["what"] for a in result["assumed"]] == ["labels", "depth and augmentation"]


def test_a_soft_labelled_datm_set(tmp_path, digits_set):
    soft = torch.randn(30, 10, generator=torch.Generator().manual_seed(1))
    soft[torch.arange(30), digits_set.labels] += 10
    folder = repo.write_datm(tmp_path / "datm", digits_set.images, soft, 0.02)
    result = _evaluate(
        str(folder), zca="none", statistics=(digits_set.mean, digits_set.std),
        soft_label_loss="kl", soft_label_temperature=2.0, n_students=1,
    )  # fmt: skip
    assert result["config"]["set"]["labels"] == "soft"
    assert result["config"]["protocol"]["soft_label_loss"] == "kl"
    assert result["config"]["protocol"]["lr"] == pytest.approx(0.02)
    # the set's classes are the soft labels' argmax: 3 per class
    assert result["config"]["counts_per_class"] == [3] * 10
    assert {r["calibrator"] for r in result["rows"]} == {"none", "TS", "MTS"}


def test_the_dc_protocol_ignores_a_learned_rate_and_says_so(digits_set):
    options = {"student_options": {**QUICK, "batch_size": 64}, "n_students": 1}
    result = _evaluate(digits_set, protocol="dc", **options)
    assert result["config"]["protocol"]["lr"] == 0.01
    (assumption,) = result["assumed"]
    assert "learned rate 0.0137 is not used" in assumption["why"]


def test_a_set_that_does_not_fit_the_data(tmp_path, digits_set):
    wide = torch.randn(30, 7)
    folder = repo.write_datm(tmp_path / "d", digits_set.images, wide, 0.01)
    with pytest.raises(ValueError, match=r"soft labels of width 7, but digits has 10 classes"):
        _evaluate(str(folder), zca="none")
    repo.write_mtt(tmp_path / "m", torch.rand(4, 3, 8, 8), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match=r"images of shape \(3, 8, 8\), but the real images of"):
        _evaluate(str(tmp_path / "m"))
    with pytest.raises(ValueError, match="zca say how to read a file, and distilled is a"):
        _evaluate(digits_set, zca="kornia")
    zca = read_distilled(tmp_path / "m", zca="kornia")
    with pytest.raises(TypeError, match="X_train must be an array-like"):
        evaluate_distilled(zca, (None, None, torch.rand(4, 3, 8, 8), torch.zeros(4)))


# ------------------------------------------------------------------------------------------
# Resuming, the files and the report
# ------------------------------------------------------------------------------------------


def test_a_rerun_resumes_from_finished_students(tmp_path, digits_set, monkeypatch):
    first = _evaluate(digits_set, output=tmp_path, n_students=2)
    assert (tmp_path / "seed-0.json").exists()
    assert (tmp_path / "seed-1.json").exists()

    def no_training(self, X, y):
        raise AssertionError("a finished student was trained again")

    with monkeypatch.context() as patch:
        patch.setattr(StudentClassifier, "fit", no_training)
        again = _evaluate(digits_set, output=tmp_path)
        # one student more: the first two are reused, only the third is trained
        with pytest.raises(AssertionError, match="trained again"):
            _evaluate(digits_set, output=tmp_path, n_students=3)
    assert again["rows"] == first["rows"]
    # another configuration is recomputed, not mixed in
    quicker = {"n_students": 1, "student_options": {**QUICK, "epochs": 1}}
    other = _evaluate(digits_set, output=tmp_path, **quicker)
    assert other["rows"] != first["rows"][: len(other["rows"])]
    # a damaged file is recomputed, with a warning naming it
    (tmp_path / "seed-0.json").write_text("{not json")
    with pytest.warns(DamagedSeedFileWarning, match="seed-0.json is damaged"):
        repaired = _evaluate(digits_set, output=tmp_path, **quicker)
    assert repaired["rows"] == other["rows"]


def test_the_report_is_self_contained(evaluated):
    result = evaluated
    tmp_path = Path(result["report"]).parent
    page = Path(result["report"]).read_text()
    assert page.count("<table>") >= 5
    assert page.count('src="data:image/png;base64,') == 2
    assert "http://" not in page
    assert "https://" not in page
    assert "<script" not in page
    for name in ("students.csv", "summary.csv", "diagnostics.csv", "evaluation.json"):
        assert (tmp_path / name).exists()
    written = json.loads((tmp_path / "evaluation.json").read_text())
    assert len(written["rows"]) == len(result["rows"])
    header = (tmp_path / "students.csv").read_text().splitlines()[0]
    assert header.startswith("seed,training_set,calibrator,data,accuracy,ece15")


def _browser():
    """Debian's chromium driven by playwright, or the reason why not."""
    if shutil.which("chromium") is None and not Path("/usr/bin/chromium").exists():
        return None, "no chromium installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return None, "playwright is not installed (pip install playwright; the [test] extra)"
    return "/usr/bin/chromium", ""


def test_the_report_renders_in_a_real_browser(tmp_path, evaluated):
    executable, reason = _browser()
    if executable is None:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    result = evaluated
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tempfile.mkdtemp(dir=tmp_path),  # a fresh profile
            executable_path=executable,
            headless=True,
            args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--no-first-run",
            ],
        )  # fmt: skip
        try:
            page = context.new_page()
            errors = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            failed = []
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(Path(result["report"]).as_uri())
            page.wait_for_load_state("load")
            images = page.evaluate(
                "Array.from(document.images).map(i => [i.complete, i.naturalWidth, "
                "i.naturalHeight])"
            )
            tables = page.evaluate(
                "Array.from(document.querySelectorAll('table')).map(t => [t.rows.length, "
                "t.getBoundingClientRect().height])"
            )
            first_cell = page.inner_text("table >> nth=1 >> tbody tr >> nth=0 >> td >> nth=0")
        finally:
            context.close()
    assert len(images) == 2
    assert all(complete and width > 0 and height > 0 for complete, width, height in images)
    assert all(rows > 1 and height > 0 for rows, height in tables)
    assert first_cell == "distilled"
    assert errors == []
    assert failed == []


def test_the_command_line(tmp_path, digits_set, capsys):
    path = export_distilled(digits_set, tmp_path / "mtt", format="mtt")
    argv = ["evaluate", str(path), "--dataset", "digits", "--students", "1", "--epochs", "1"]
    argv += ["--output", str(tmp_path / "out"), "--quiet", "--statistics", "0.3125/0.4375"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"mtt set {path}: 30 images, hard labels, mean/std-normalised")
    assert "distilled     TS" in out
    assert "assumed learning rate: 0.01 (MTT does not save its learned learning rate" in out
    assert f"report: {tmp_path / 'out' / 'report.html'}" in out
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(path), "--dataset", "digits", "--statistics", "0.3/x"])
    assert exit_.value.code == 2
    assert "--statistics: expected 'data'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", str(tmp_path / "missing"), "--dataset", "digits"])
    assert "missing does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_the_command_runs_in_a_fresh_process(tmp_path, digits_set):
    path = export_distilled(digits_set, tmp_path / "res_DM_digits_ConvNet_3ipc.pt", format="dc")
    done = subprocess.run(
        [sys.executable, "-m", "distcal", "evaluate", str(path), "--dataset", "digits",
         "--students", "1", "--epochs", "1", "--output", str(tmp_path / "out")],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "students" in done.stderr  # the progress bar
    assert (tmp_path / "out" / "report.html").exists()


@pytest.mark.slow
def test_the_readme_sets_and_commands(tmp_path, monkeypatch, capsys):
    """The README's set in every format, evaluated by its commands (one quick student each)."""
    import shlex

    text = (Path(__file__).parents[1] / "README.md").read_text()
    section = text.split("## Any distilled set, one command", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    after_code = section.split("```python\n", 1)[1].split("```\n", 1)[1]
    commands = after_code.split("```\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    from distcal.exceptions import DistcalWarning

    with pytest.warns(DistcalWarning, match="8-bit PNG images loses information"):
        exec(code, {})  # the image folder holds distilled pixels rounded to 8 bits
    lines = [line.split("  #")[0] for line in commands.splitlines() if line.strip()]
    assert len(lines) == 7
    for line in lines:
        argv = shlex.split(line)
        assert argv[:2] == ["distcal", "evaluate"]
        assert main([*argv[1:], "--students", "1", "--epochs", "1", "--quiet"]) == 0
        output = argv[argv.index("--output") + 1]
        assert (tmp_path / output / "report.html").exists()
    out = capsys.readouterr().out
    assert out.count("report: ") == 7, out[-2000:]
