"""What ``distcal calibrate`` reports: the debiased calibration error with an interval that
covers, the test of calibration, the plug-in ECE labelled as such, valid JSON, bounded
resamples and fits, progress bars (issue 22)."""

import json
import math

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from distcal.cli import main
from distcal.experiment import calibrate as C
from distcal.metrics import (
    calibration_test,
    debiased_calibration_error_ci,
    debiased_calibration_error_difference,
    expected_calibration_error,
)


def _call(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_info:
        code = exit_info.code
    out, err = capsys.readouterr()
    return code, out, err


def _strict_json(text):
    """JSON as other languages read it: Infinity and NaN are not JSON."""

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def over_confident():
    """2,000 samples of 10 classes, labels from softmax(z), logits 3 z (as in the README)."""
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2000, 10))
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    y = (p.cumsum(axis=1) > rng.uniform(size=(2000, 1))).argmax(axis=1)
    return (3 * z).astype(np.float32), y


def test_the_headline_is_the_debiased_error_with_its_interval_change_and_tests(
    over_confident, tmp_path, capsys
):
    logits, y = over_confident
    np.savez(tmp_path / "val.npz", logits=logits, labels=y)
    out = tmp_path / "out"
    argv = ["calibrate", str(tmp_path / "val.npz"), "--output", str(out), "--quiet"]
    code, printed, err = _call([*argv, "--n-resamples", "200"], capsys)
    assert code == 0, err
    assert err == ""  # --quiet: no progress bars
    lines = printed.splitlines()
    table = lines[lines.index("") + 1 :]
    assert table[1].startswith("RMS calibration error %")
    assert table[2].split()[:4] == ["calibrated?", "p", "=", "0.005"]  # 1 / 201: none reach it
    assert any(line.startswith("ECE-15 % (plug-in)") for line in table)
    assert "percentile bootstrap intervals of the statistic" in printed.replace("\n", " ")
    scores = _strict_json((out / "scores.json").read_text())
    headline = scores["scores"][0]
    assert headline["score"] == "calibration_error"
    assert headline["interval"] == "debiased"
    assert {entry["interval"] for entry in scores["scores"][1:]} == {"percentile"}
    # the same numbers, computed by the public functions on the scored half
    report = C.calibrate_files(
        tmp_path / "val.npz", output=tmp_path / "again", n_resamples=200, verbose=False
    )
    assert report["scores"] == scores["scores"]
    _, scored = train_test_split(np.arange(2000), test_size=1000, stratify=y, random_state=0)
    scored = np.sort(scored)
    after = np.asarray(report["calibrator"].predict_proba(logits[scored]), dtype=np.float64)
    ci = debiased_calibration_error_ci(y[scored], after, n_resamples=200, random_state=0)
    assert headline["after"]["estimate"] == ci.estimate
    assert (headline["after"]["low"], headline["after"]["high"]) == (ci.low, ci.high)
    test = calibration_test(y[scored], after, n_resamples=200, random_state=0)
    assert headline["after"]["pvalue"] == test.pvalue
    before = C._probabilities(logits[scored], "logits")
    diff = debiased_calibration_error_difference(
        y[scored], after, before, n_resamples=200, random_state=0
    )
    assert headline["change"] == {"estimate": diff.estimate, "low": diff.low, "high": diff.high}
    # calibrated after: the interval reaches 0 and the test does not reject; before, it does
    assert headline["after"]["low"] == 0
    assert headline["after"]["pvalue"] > 0.05
    assert headline["before"]["pvalue"] < 0.01
    assert headline["change"]["high"] < 0
    plug_in = {entry["score"]: entry for entry in scores["scores"]}["ece15"]
    assert plug_in["after"]["estimate"] == expected_calibration_error(y[scored], after)


def test_scores_json_is_valid_json_when_a_loss_is_infinite(tmp_path, capsys):
    """Histogram binning gives probability 0 to a class absent from a bin, so a scored sample
    of that class has an infinite NLL; json.dumps wrote it as Infinity, which is not JSON."""
    rng = np.random.default_rng(0)
    z = 4 * rng.standard_normal((80, 3))
    y = (z / 4 + rng.gumbel(size=z.shape)).argmax(axis=1)
    np.save(tmp_path / "z.npy", z)
    np.save(tmp_path / "y.npy", y)
    argv = ["calibrate", str(tmp_path / "z.npy"), str(tmp_path / "y.npy"), "--method"]
    out = tmp_path / "out"
    options = ["--output", str(out), "--quiet", "--n-resamples", "20"]
    code, printed, err = _call([*argv, "histogram", *options], capsys)
    assert code == 0, err
    scores = _strict_json((out / "scores.json").read_text())
    nll = {entry["score"]: entry for entry in scores["scores"]}["nll"]
    assert nll["after"] == {"estimate": "inf", "low": None, "high": None}
    assert math.isinf(float(nll["after"]["estimate"]))
    assert nll["change"] is None
    assert "NLL" in printed


@pytest.mark.parametrize("value", ["1", "19", "100001", "100000000", "many"])
def test_n_resamples_out_of_range_is_one_line_naming_the_option(value, tmp_path, capsys):
    """--n-resamples 1 printed intervals that excluded their estimates; 1e8 asked for 149 GiB."""
    np.save(tmp_path / "z.npy", np.zeros((10, 2)))
    code, out, err = _call(["calibrate", str(tmp_path / "z.npy"), "--n-resamples", value], capsys)
    assert code == 2
    assert out == ""
    last = err.strip().splitlines()[-1]
    assert last.startswith("distcal calibrate: error: argument --n-resamples: expected an integer")
    assert value in last
    with pytest.raises(ValueError, match="n_resamples: expected an integer in"):
        C.calibrate_files(tmp_path / "z.npy", n_resamples=10)


def test_an_affine_fit_too_large_for_the_command_is_refused_before_any_work(
    over_confident, tmp_path, capsys, monkeypatch
):
    """Matrix scaling of 1,000 classes on 50,000 samples did not finish; the limits scale to
    any data, so a lowered limit shows the refusal on small data."""
    logits, y = over_confident
    np.savez(tmp_path / "val.npz", logits=logits, labels=y)
    monkeypatch.setitem(C.FIT_WORK, "matrix", (lambda n, k: n * k * k, 1e4, "work", "hours"))
    argv = ["calibrate", str(tmp_path / "val.npz"), "--method", "matrix"]
    code, _, err = _call([*argv, "--output", str(tmp_path / "o")], capsys)
    assert code == 2
    assert not (tmp_path / "o").exists()
    last = err.strip().splitlines()[-1]
    assert "argument --method: MatrixScaling of 10 classes fits 110 parameters" in last
    assert "--method ts" in last
    # the real limits: a CPU-sized fit passes, 1e5 x 1,000 logits do not
    work, limit, _, _ = C.FIT_WORK["vector"]
    assert work(1000, 10) <= limit < work(50_000, 1000)
    for method in ("dirichlet",):
        work, limit, _, _ = C.FIT_WORK[method]
        assert work(1000, 100) <= limit < work(50_000, 1000)


def test_progress_bars_unless_quiet(over_confident, tmp_path, capsys):
    logits, y = over_confident
    np.savez(tmp_path / "val.npz", logits=logits[:300], labels=y[:300])
    argv = ["calibrate", str(tmp_path / "val.npz"), "--output", str(tmp_path / "o")]
    code, _, err = _call([*argv, "--n-resamples", "20"], capsys)
    assert code == 0
    assert "bootstrap calibration error" in err
    assert "calibration test" in err
