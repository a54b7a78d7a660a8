"""The command line: ``distcal calibrate``/``apply`` on files other tools wrote, ``--version``,
``python -m distcal``, and one-line errors (never a traceback) for every user error."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from distcal.calibration import TemperatureScaling, load_calibrator, registered_calibrators
from distcal.cli import main
from distcal.experiment.calibrate import METHODS
from distcal.metrics import expected_calibration_error

N, K = 300, 3


@pytest.fixture(scope="module")
def data():
    """Over-confident logits of a 3-class problem (temperature about 4)."""
    rng = np.random.default_rng(0)
    true = 1.5 * rng.normal(size=(N, K))
    gumbel = rng.gumbel(size=(N, K))
    y = (true + gumbel).argmax(axis=1)
    return (4 * true).astype(np.float32), y


def _call(argv, capsys):
    """Run the command; return (exit code, stdout, stderr)."""
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err, *fragments):
    assert code == 2
    assert err.startswith("distcal: error: ") or "\ndistcal " in err, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    for fragment in fragments:
        assert fragment in last, last
    return last


# --------------------------------------------------------------------------------------------
# version and python -m


def test_version_and_python_dash_m(capsys):
    from distcal import __version__

    code, out, _ = _call(["--version"], capsys)
    assert code == 0
    assert out.strip() == f"distcal {__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "distcal", "--version"], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == f"distcal {__version__}"
    done = subprocess.run(
        [sys.executable, "-m", "distcal", "calibrate", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert "LOGITS [LABELS]" in done.stdout


# --------------------------------------------------------------------------------------------
# calibrate


def test_calibrate_fits_on_one_split_and_scores_on_the_other(data, tmp_path, capsys):
    from sklearn.model_selection import train_test_split

    logits, y = data
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", y)
    out = tmp_path / "out"
    argv = ["calibrate", str(tmp_path / "logits.npy"), str(tmp_path / "labels.npy")]
    code, printed, _ = _call([*argv, "--output", str(out), "--n-resamples", "50"], capsys)
    assert code == 0
    assert "fitted on 150 samples, scored on the other 150 (stratified split, seed 0)" in printed
    for title in ("accuracy %", "ECE-15 %", "NLL", "Brier"):
        assert title in printed
    # the same split and fit, done by hand
    fit, test = train_test_split(np.arange(N), test_size=150, stratify=y, random_state=0)
    fit, test = np.sort(fit), np.sort(test)
    expected = TemperatureScaling().fit(logits[fit], y[fit])
    saved = load_calibrator(out / "calibrator.safetensors")
    assert saved.temperature_ == expected.temperature_
    assert 3 < saved.temperature_ < 6
    scores = json.loads((out / "scores.json").read_text())
    ece = {entry["score"]: entry for entry in scores["scores"]}["ece15"]
    assert ece["after"]["estimate"] == expected_calibration_error(
        y[test], expected.predict_proba(logits[test]), n_bins=15
    )
    assert ece["before"]["low"] <= ece["before"]["estimate"] <= ece["before"]["high"]
    assert ece["change"]["high"] < 0  # calibration helps, beyond the bootstrap's doubt
    assert scores["n_fit"] == scores["n_scored"] == 150
    pytest.importorskip("matplotlib")
    assert (out / "reliability.png").stat().st_size > 1000


def _write_formats(tmp_path, logits, y):
    """The same data, written by numpy, safetensors and pandas: argv for each."""
    import pandas as pd
    from safetensors.numpy import save_file

    np.savez(tmp_path / "both.npz", logits=logits, labels=y)
    np.savez(tmp_path / "named.npz", z=logits, other=np.zeros(3))
    np.savez(tmp_path / "y.npz", target=y)
    save_file({"logits": logits, "labels": y.astype(np.int64)}, str(tmp_path / "both.safetensors"))
    frame = pd.DataFrame(logits, columns=[f"class {j}" for j in range(K)])
    frame.assign(label=y).to_csv(tmp_path / "both.csv", index=False)
    frame.to_csv(tmp_path / "logits.csv", index=False, header=False)
    pd.Series(y).to_csv(tmp_path / "labels.csv", index=False, header=False)
    pd.DataFrame({"id": np.arange(N), "y": y}).to_csv(tmp_path / "table.csv", index=False)
    return {
        "npz": [str(tmp_path / "both.npz")],
        "safetensors": [str(tmp_path / "both.safetensors")],
        "csv with a label column": [str(tmp_path / "both.csv")],
        "csv files": [str(tmp_path / "logits.csv"), str(tmp_path / "labels.csv")],
        "keys": [
            str(tmp_path / "named.npz"),
            str(tmp_path / "y.npz"),
            "--logits-key",
            "z",
        ],
        "csv column": [
            str(tmp_path / "logits.csv"),
            str(tmp_path / "table.csv"),
            "--labels-key",
            "y",
        ],
    }


def test_every_format_gives_the_same_calibrator(data, tmp_path, capsys):
    logits, y = data
    temperatures = {}
    for name, argv in _write_formats(tmp_path, logits, y).items():
        out = tmp_path / name
        options = ["--output", str(out), "--n-resamples", "20"]
        code, _, err = _call(["calibrate", *argv, *options], capsys)
        assert code == 0, (name, err)
        temperatures[name] = load_calibrator(out / "calibrator.safetensors").temperature_
    # CSV text is read as float64, the binary files keep float32: the same values, fitted in
    # another precision
    binary = {temperatures[name] for name in ("npz", "safetensors", "keys")}
    text = {temperatures[name] for name in ("csv with a label column", "csv files", "csv column")}
    assert len(binary) == len(text) == 1, temperatures
    assert text.pop() == pytest.approx(binary.pop(), rel=1e-7)


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_fits_and_saves_its_class(method, data, tmp_path, capsys):
    logits, y = data
    np.savez(tmp_path / "val.npz", logits=logits, labels=y)
    out = tmp_path / "out"
    argv = ["calibrate", str(tmp_path / "val.npz"), "--method", method, "--output", str(out)]
    code, printed, err = _call([*argv, "--n-resamples", "20"], capsys)
    assert code == 0, err
    assert printed.startswith(f"{METHODS[method]} ({method})")
    loaded = load_calibrator(out / "calibrator.safetensors")
    assert type(loaded) is registered_calibrators()[METHODS[method]]


def test_in_sample_and_binary_and_one_line_warnings(tmp_path, capsys):
    rng = np.random.default_rng(1)
    z = rng.normal(size=200) * 4
    y = (z + rng.logistic(size=200) > 0).astype(int)
    np.save(tmp_path / "z.npy", z[:, None])  # one column: binary decision values
    np.save(tmp_path / "y.npy", y)
    argv = ["calibrate", str(tmp_path / "z.npy"), str(tmp_path / "y.npy"), "--test-size", "0"]
    code, printed, _ = _call(
        [*argv, "--output", str(tmp_path / "o"), "--n-resamples", "20"], capsys
    )
    assert code == 0
    assert "fitted and scored on all 200 samples (in-sample)" in printed
    assert load_calibrator(tmp_path / "o" / "calibrator.safetensors").predict_proba(z).shape == (
        200,
        2,
    )
    # separable data: the solver's warning is one line, not a Python warning with a path
    y_sep = (z > 0).astype(int)
    np.save(tmp_path / "y_sep.npy", y_sep)
    argv[2] = str(tmp_path / "y_sep.npy")
    code, _, err = _call([*argv, "--output", str(tmp_path / "s"), "--n-resamples", "20"], capsys)
    assert code == 0, err
    assert err.startswith("distcal: warning: ")
    assert "separa" in err
    assert "Warning:" not in err  # not warnings' own format with file and line


def test_without_matplotlib_the_diagram_is_skipped_with_a_note(data, tmp_path, capsys, monkeypatch):
    logits, y = data
    np.savez(tmp_path / "val.npz", logits=logits, labels=y)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    argv = ["calibrate", str(tmp_path / "val.npz"), "--output", str(tmp_path / "o")]
    code, printed, _ = _call([*argv, "--n-resamples", "20"], capsys)
    assert code == 0
    assert 'reliability diagram: skipped (pip install "distcal[plot]"' in printed
    assert not (tmp_path / "o" / "reliability.png").exists()
    assert (tmp_path / "o" / "calibrator.safetensors").is_file()


def _bad_inputs(tmp_path, logits, y):
    from distcal.distill import MLP, save_network

    np.save(tmp_path / "cube.npy", np.zeros((5, 3, 2)))
    np.save(tmp_path / "logits.npy", logits)
    np.save(tmp_path / "labels.npy", y)
    np.save(tmp_path / "short.npy", y[:-1])
    np.save(tmp_path / "big.npy", y + 5)
    np.save(tmp_path / "halves.npy", y + 0.5)
    nan = logits.copy()
    nan[7, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.savez(tmp_path / "two.npz", a=logits, b=y)
    (tmp_path / "folder.npy").mkdir()
    (tmp_path / "text.csv").write_text("a,b\n1,x\n")
    (tmp_path / "logits.txt").write_text("1,2\n")
    save_network(tmp_path / "net.safetensors", MLP((4,), 3, width=4), spec={})
    p = str(tmp_path)
    return {
        "3-D logits": (["cube.npy", "labels.npy"], "argument LOGITS:", "shape (5, 3, 2)"),
        "labels out of range": (["logits.npy", "big.npy"], "argument LABELS:", "in [0, 2]"),
        "labels not whole": (["logits.npy", "halves.npy"], "argument LABELS:", "integer class"),
        "length mismatch": (["logits.npy", "short.npy"], "argument LABELS:", "299 labels"),
        "non-finite": (["nan.npy", "labels.npy"], "argument LOGITS:", "NaN or infinity"),
        "missing key": (
            ["two.npz", "labels.npy", "--logits-key", "z"],
            "argument --logits-key:",
            "no array 'z'",
        ),
        "ambiguous": (["two.npz", "labels.npy"], "argument LOGITS:", "--logits-key"),
        "no labels": (["logits.npy"], "argument LABELS:", "labels' file"),
        "a directory": (["folder.npy", "labels.npy"], "argument LOGITS:", "is a directory"),
        "missing file": (["none.npy", "labels.npy"], "argument LOGITS:", "does not exist"),
        "not numbers": (["text.csv"], "argument LOGITS:", "row 2"),
        "extension": (["logits.txt", "labels.npy"], "argument LOGITS:", "'.txt'"),
        "impossible split": (
            ["logits.npy", "labels.npy", "--test-size", "0.999"],
            "argument --test-size:",
            "at least 2",
        ),
        "calibrator of another kind": (
            ["apply", f"{p}/net.safetensors", "logits.npy", "--output", f"{p}/o/p.npy"],
            "argument CALIBRATOR:",
            "not a 'calibrator'",
        ),
    }


def test_bad_input_is_one_line_naming_the_argument_and_nothing_is_written(data, tmp_path, capsys):
    logits, y = data
    cases = _bad_inputs(tmp_path, logits, y)
    for name, (argv, argument, fragment) in cases.items():
        if argv[0] == "apply":
            argv = [argv[0], argv[1], str(tmp_path / argv[2]), *argv[3:]]
        else:
            argv = [
                "calibrate",
                *(a if a.startswith("-") or not a.endswith(("npy", "npz", "csv", "txt"))
                  else str(tmp_path / a) for a in argv),
                "--output", str(tmp_path / "o"),
            ]  # fmt: skip
        code, out, err = _call(argv, capsys)
        last = _one_line_error(code, err, argument, fragment)
        assert err.count("\n") == 1, (name, err)
        assert out == "", name
        assert not (tmp_path / "o").exists(), (name, last)


def test_apply_writes_what_the_calibrator_predicts(data, tmp_path, capsys):
    import pandas as pd

    logits, y = data
    np.savez(tmp_path / "val.npz", logits=logits[:200], labels=y[:200])
    out = tmp_path / "fit"
    assert _call(["calibrate", str(tmp_path / "val.npz"), "--output", str(out),
                  "--n-resamples", "20"], capsys)[0] == 0  # fmt: skip
    pd.DataFrame(logits[200:]).to_csv(tmp_path / "new.csv", index=False)  # header "0,1,2"
    calibrator = str(out / "calibrator.safetensors")
    # the values as pandas wrote them (shortest float32 text), read as float64
    new = pd.read_csv(tmp_path / "new.csv").to_numpy()
    assert new.shape == (100, 3)
    expected = load_calibrator(calibrator).predict_proba(new)
    for name in ("p.npy", "p.csv"):
        code, printed, _ = _call(
            ["apply", calibrator, str(tmp_path / "new.csv"), "--output", str(tmp_path / name)],
            capsys,
        )
        assert code == 0
        assert printed.strip() == f"probabilities of 100 samples: {tmp_path / name}"
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), expected)
    written = pd.read_csv(tmp_path / "p.csv")
    assert list(written.columns) == ["class_0", "class_1", "class_2"]
    np.testing.assert_array_equal(written.to_numpy(), expected)  # floats written exactly
    # logits of another width, an output of another kind: one line, nothing written
    np.save(tmp_path / "wide.npy", np.zeros((4, 5)))
    for argv, argument in (
        ([calibrator, str(tmp_path / "wide.npy"), "--output", str(tmp_path / "q.npy")], "LOGITS"),
        ([calibrator, str(tmp_path / "new.csv"), "--output", str(tmp_path / "q.txt")], "--output"),
        ([str(tmp_path), str(tmp_path / "new.csv"), "--output", str(tmp_path / "q.npy")],
         "CALIBRATOR"),
    ):  # fmt: skip
        code, _, err = _call(["apply", *argv], capsys)
        _one_line_error(code, err, f"argument {argument}:")
        assert not list(tmp_path.glob("q.*"))


# --------------------------------------------------------------------------------------------
# issue 16, item 7: no traceback for a user error


def test_bad_devices_are_one_line_errors(capsys):
    import torch

    cases = [("nonsense", "device must be a torch device"), ("cuda:99", "not available")]
    if not torch.cuda.is_available():
        cases.append(("cuda", "built without CUDA" if torch.version.cuda is None else "not avail"))
    for device, fragment in cases:
        code, _, err = _call(["run", "--profile", "smoke", "--device", device], capsys)
        _one_line_error(code, err, "argument --device:", fragment)
    from distcal.experiment import run_experiment

    with pytest.raises(ValueError, match="device must be a torch device"):
        run_experiment("digits", profile="smoke", seeds=[0], device="nonsense")


def test_demo_ipc_beyond_digits_names_the_option(capsys):
    code, _, err = _call(["demo", "--ipc", "1000"], capsys)
    _one_line_error(code, err, "argument --ipc:", "at most 128", "'1000'")
    from distcal.experiment.demo import calibration_demo

    with pytest.raises(ValueError, match=r"ipc must be between 1 and 128.*got 129"):
        calibration_demo(ipc=129, verbose=False)


def test_a_file_given_as_a_folder_says_so(tmp_path, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    for option in ("--output", "--root"):
        code, _, err = _call(["run", "--profile", "smoke", option, str(afile)], capsys)
        _one_line_error(code, err, f"argument {option}:", "is a file, not a folder")
    code, _, err = _call(["calibrate", str(tmp_path), "--output", str(tmp_path / "o")], capsys)
    _one_line_error(code, err, "argument LOGITS:", "is a directory, not a file")


def _saved_seed(tmp_path):
    """A seed file as a run writes it, with the configuration it was written under."""
    from distcal.experiment.files import save_seed

    config = {"dataset": "digits", "profile": {"ipc": 2}, "seeds": [0]}
    result = {
        "seed": 0,
        "rows": [{"seed": 0, "ece15": 0.1}],
        "comparisons": [],
        "diagnostics": {},
        "recipes": {},
        "stage_seconds": {},
    }
    save_seed(tmp_path, config, result)
    return config, result


@pytest.mark.parametrize(
    "damage",
    ["truncated", "empty list", "no result", "empty rows", "not utf-8", "empty", "wrong seed"],
)
def test_a_damaged_seed_file_is_recomputed_with_a_warning_naming_it(damage, tmp_path):
    from distcal.experiment.files import DamagedSeedFileWarning, load_seed

    config, result = _saved_seed(tmp_path)
    path = tmp_path / "seed-0.json"
    text = path.read_text()
    saved = json.loads(text)
    damaged = {
        "truncated": text[: len(text) // 2],
        "empty list": "[]",
        "no result": json.dumps({"config": saved["config"]}),
        "empty rows": json.dumps({**saved, "result": {**result, "rows": []}}),
        "not utf-8": b"\xff\xfe{",
        "empty": "",
        "wrong seed": json.dumps({**saved, "result": {**result, "seed": 3}}),
    }[damage]
    if isinstance(damaged, bytes):
        path.write_bytes(damaged)
    else:
        path.write_text(damaged)
    with pytest.warns(DamagedSeedFileWarning, match=r"seed-0\.json is damaged.*recomputed"):
        assert load_seed(tmp_path, config, 0) is None


def test_a_sound_seed_file_is_reused_and_another_configuration_is_not(tmp_path):
    from distcal.experiment.files import load_seed

    config, result = _saved_seed(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_seed(tmp_path, config, 0) == result
        assert load_seed(tmp_path, {**config, "dataset": "fashion-mnist"}, 0) is None
        assert load_seed(tmp_path, config, 1) is None  # never saved


def test_an_available_device_passes_the_check(monkeypatch):
    """The GPU path of the check, on any machine: a visible device passes, a missing index not."""
    import torch

    from distcal.experiment.runner import check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert check_device("cuda") == torch.device("cuda")
    assert check_device("cuda:1") == torch.device("cuda:1")
    assert check_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"it has 2 cuda device\(s\), numbered from 0"):
        check_device("cuda:2")


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".safetensors", ".csv"])
def test_any_file_content_is_read_or_refused_with_an_input_error(suffix, tmp_path):
    """Damaged or crafted files never end in another exception (a traceback on the CLI)."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    import io

    from safetensors.numpy import save as safetensors_bytes

    from distcal.experiment.logit_files import InputFileError, read_logits_and_labels

    csv_text = st.text(alphabet="0123456789.,-e \nabnIf", max_size=80).map(str.encode)
    contents = st.one_of(st.binary(max_size=200), csv_text)
    # real files of every format, to be cut anywhere and followed by anything
    logits, labels = np.eye(3), np.arange(3)
    npy, npz = io.BytesIO(), io.BytesIO()
    np.save(npy, logits)
    np.savez(npz, logits=logits, labels=labels)
    real = [
        npy.getvalue(),
        npz.getvalue(),
        safetensors_bytes({"logits": logits, "labels": labels}),
        b"a,b,label\n1,2,0\n3,4,1\n",
    ]

    examples = int(os.environ.get("DISTCAL_FUZZ_EXAMPLES", "80"))  # 10000 in the fuzz run

    @hypothesis.settings(max_examples=examples, deadline=None, database=None, derandomize=True)
    @hypothesis.given(content=contents, start=st.sampled_from(real), cut=st.integers(0, 400))
    def check(content, start, cut):
        path = tmp_path / f"file{suffix}"
        path.write_bytes(start[:cut] + content)
        for labels in (None, path):
            try:
                logits, y = read_logits_and_labels(path, labels)
            except InputFileError:
                continue
            assert np.isfinite(logits).all()
            assert len(logits) == len(y)
            n_classes = 2 if logits.ndim == 1 else logits.shape[1]
            assert ((y >= 0) & (y < n_classes)).all()

    check()


def test_an_npy_header_cut_inside_its_dict_is_an_input_error(tmp_path):
    """Found by the 10,000-example fuzz run: numpy parses a damaged .npy header with
    ast.literal_eval, which raised tokenize.TokenError, past the reader's error handling."""
    from distcal.experiment.logit_files import InputFileError, read_logits_and_labels

    header = (
        b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (3, 3), }"
        + b" " * 58
        + b"\n"
    )
    path = tmp_path / "file.npy"
    path.write_bytes(header[:111] + b"\x00" * 16 + b"(")
    with pytest.raises(InputFileError, match=r"is not a readable \.npy file"):
        read_logits_and_labels(path, path)
