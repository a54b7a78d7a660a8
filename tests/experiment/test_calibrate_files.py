"""distcal calibrate and apply write all their files or none, and never over what they read
(issue 22): --force, the staged folder, apply's own input, the seed's range."""

import os
import sys

import numpy as np
import pytest

from distcal.calibration import load_calibrator
from distcal.cli import main
from distcal.experiment.calibrate import calibrate_files
from distcal.experiment.logit_files import InputFileError

RESULT_FILES = ("calibrator.safetensors", "reliability.png", "scores.json")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    z = 4 * rng.normal(size=(200, 3))
    y = (z / 4 + rng.gumbel(size=z.shape)).argmax(axis=1)
    return z, y


def _call(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(code, err, *fragments):
    """One line naming the argument (after argparse's usage, for an option it parses)."""
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    # the last line: an error found while writing follows the progress bars of the scores
    assert last.startswith(("distcal: error: ", "distcal calibrate: error:")), err
    for fragment in fragments:
        assert fragment in last, err


def _calibrate(tmp_path, capsys, *extra, output="out"):
    argv = ["calibrate", str(tmp_path / "val.npz"), "--output", str(tmp_path / output)]
    return _call([*argv, "--n-resamples", "20", *extra], capsys)


def _contents(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def test_calibrate_refuses_to_replace_results_without_force(data, tmp_path, capsys):
    z, y = data
    np.savez(tmp_path / "val.npz", logits=z, labels=y)
    code, _, err = _calibrate(tmp_path, capsys)
    assert code == 0, err
    before = _contents(tmp_path / "out")
    np.savez(tmp_path / "val.npz", logits=2 * z, labels=y)  # other data, another calibrator
    code, out, err = _calibrate(tmp_path, capsys)
    _one_line(code, err, "argument --output:", "already holds the results", "--force")
    assert out == ""
    assert _contents(tmp_path / "out") == before
    code, _, err = _calibrate(tmp_path, capsys, "--force")
    assert code == 0, err
    assert _contents(tmp_path / "out")["calibrator.safetensors"] != before["calibrator.safetensors"]
    with pytest.raises(InputFileError, match=r"already holds the results.*force=True"):
        calibrate_files(tmp_path / "val.npz", output=tmp_path / "out", n_resamples=20)


def test_a_write_that_fails_after_the_first_file_leaves_the_old_results_whole(
    data, tmp_path, capsys, monkeypatch
):
    """Before: a new calibrator was left beside the old scores when writing the scores failed."""
    import distcal.experiment.calibrate as calibrate

    z, y = data
    np.savez(tmp_path / "val.npz", logits=z, labels=y)
    assert _calibrate(tmp_path, capsys)[0] == 0
    before = _contents(tmp_path / "out")
    np.savez(tmp_path / "val.npz", logits=2 * z, labels=y)

    def disk_full(path, text):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(calibrate, "atomic_write_text", disk_full)
    code, _, err = _calibrate(tmp_path, capsys, "--force")
    _one_line(code, err, "No space left on device")
    assert _contents(tmp_path / "out") == before  # the old set, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "val.npz"]  # nothing staged left


def test_results_in_a_folder_with_other_files_replace_only_their_own(
    data, tmp_path, capsys, monkeypatch
):
    z, y = data
    np.savez(tmp_path / "val.npz", logits=z, labels=y)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "notes.txt").write_text("mine")
    assert _calibrate(tmp_path, capsys, output="shared")[0] == 0
    assert {p.name for p in (tmp_path / "shared").iterdir()} == {"notes.txt", *RESULT_FILES}
    # a rerun without matplotlib draws no figure: the old one must not stay beside new scores
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert _calibrate(tmp_path, capsys, "--force", output="shared")[0] == 0
    names = {p.name for p in (tmp_path / "shared").iterdir()}
    assert names == {"notes.txt", "calibrator.safetensors", "scores.json"}
    assert (tmp_path / "shared" / "notes.txt").read_text() == "mine"


def test_a_new_output_folder_appears_whole_with_the_umasks_permissions(data, tmp_path, capsys):
    z, y = data
    np.savez(tmp_path / "val.npz", logits=z, labels=y)
    previous = os.umask(0o022)
    try:
        assert _calibrate(tmp_path, capsys, output="deep/new")[0] == 0
    finally:
        os.umask(previous)
    assert (tmp_path / "deep" / "new").stat().st_mode & 0o777 == 0o755
    assert load_calibrator(tmp_path / "deep" / "new" / "calibrator.safetensors").temperature_ > 0


def test_apply_refuses_to_write_over_its_own_input(data, tmp_path, capsys):
    z, y = data
    np.savez(tmp_path / "val.npz", logits=z, labels=y)
    assert _calibrate(tmp_path, capsys)[0] == 0
    np.save(tmp_path / "z.npy", z)
    before = (tmp_path / "z.npy").read_bytes()
    calibrator = str(tmp_path / "out" / "calibrator.safetensors")
    code, _, err = _call(["apply", calibrator, str(tmp_path / "z.npy"), "--output",
                          str(tmp_path / "." / "z.npy")], capsys)  # fmt: skip
    _one_line(code, err, "argument --output:", "is the file given as LOGITS")
    assert (tmp_path / "z.npy").read_bytes() == before
    code, _, err = _call(["apply", calibrator, str(tmp_path / "z.npy"), "--output",
                          calibrator], capsys)  # fmt: skip
    _one_line(code, err, "argument --output:")  # a .safetensors output: refused either way


def test_an_overwritten_output_keeps_its_mode(data, tmp_path, capsys):
    z, y = data
    np.savez(tmp_path / "val.npz", logits=z, labels=y)
    assert _calibrate(tmp_path, capsys)[0] == 0
    np.save(tmp_path / "z.npy", z)
    target = tmp_path / "p.csv"
    target.write_text("old")
    os.chmod(target, 0o664)
    calibrator = str(tmp_path / "out" / "calibrator.safetensors")
    argv = ["apply", calibrator, str(tmp_path / "z.npy"), "--output", str(target)]
    assert _call(argv, capsys)[0] == 0
    assert target.stat().st_mode & 0o777 == 0o664
    os.chmod(tmp_path / "out" / "scores.json", 0o640)
    assert _calibrate(tmp_path, capsys, "--force")[0] == 0
    assert (tmp_path / "out" / "scores.json").stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize("seed", ["-1", "4294967296", "1.5"])
def test_a_seed_out_of_range_names_the_option(data, tmp_path, capsys, seed):
    z, y = data
    np.savez(tmp_path / "val.npz", logits=z, labels=y)
    code, _, err = _calibrate(tmp_path, capsys, "--seed", seed)
    _one_line(code, err, "argument --seed:", "0 to 2**32 - 1", repr(seed))
    assert "train_test_split" not in err
    with pytest.raises(InputFileError, match=r"seed: expected an integer from 0 to 2\*\*32 - 1"):
        calibrate_files(tmp_path / "val.npz", output=tmp_path / "o", seed=-1, n_resamples=20)
    assert not (tmp_path / "o").exists()


def test_input_type_probabilities_with_a_zero_on_a_label_names_the_files_rows(
    data, tmp_path, capsys
):
    """Before: the zero became log -708 and decided the temperature alone, with exit 0."""
    import torch

    z, y = data
    proba = torch.softmax(torch.as_tensor(z), dim=1).numpy()
    proba[17, y[17]] = 0.0
    proba[17] /= proba[17].sum()
    np.savez(tmp_path / "val.npz", logits=proba, labels=y)
    code, _, err = _calibrate(tmp_path, capsys, "--input-type", "probabilities")
    _one_line(code, err, "argument LOGITS:", "probability of exactly 0 (in rows [17])")
    assert not (tmp_path / "out").exists()
    # binning takes no log: the same file calibrates
    code, _, err = _calibrate(tmp_path, capsys, "--input-type", "probabilities", "--method",
                              "histogram")  # fmt: skip
    assert code == 0, err


def test_the_current_folder_as_output_takes_the_results_beside_its_files(
    data, tmp_path, capsys, monkeypatch
):
    z, y = data
    np.savez(tmp_path / "val.npz", logits=z, labels=y)
    monkeypatch.chdir(tmp_path)
    code, _, err = _call(["calibrate", "val.npz", "--output", ".", "--n-resamples", "20"], capsys)
    assert code == 0, err
    assert {p.name for p in tmp_path.iterdir()} == {"val.npz", *RESULT_FILES}
