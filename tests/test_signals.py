"""Signals: Ctrl-C keeps finished work, a closed pipe ends quietly, SIGKILL loses nothing written.

(SIGKILL during distillation and during a file write: tests/distill/test_trainer.py and
tests/test_files.py.)
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest


def _distcal(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "distcal", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        **kwargs,
    )


def _as_a_shell_starts_it():
    # A shell starts a foreground command with Ctrl-C's SIGINT delivered and handled by default.
    # The test process may carry another state (a library that spawned helper processes can
    # leave SIGINT blocked or ignored), which a child inherits; start from the shell's.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _sigint_state(pid: int) -> str:
    try:
        lines = open(f"/proc/{pid}/status").read().splitlines()  # noqa: SIM115
    except OSError:
        return "(process gone)"
    return "; ".join(line for line in lines if line.startswith(("SigBlk", "SigIgn", "SigCgt")))


@pytest.mark.slow
def test_ctrl_c_during_a_run_keeps_the_finished_seeds_and_a_rerun_resumes(tmp_path):
    out = tmp_path / "run"
    # five seeds: after the first has finished, four more keep the run busy for the signal
    argv = ["run", "--profile", "smoke", "--seeds", "5", "--quiet", "--output", str(out)]
    process = _distcal(*argv, preexec_fn=_as_a_shell_starts_it)
    deadline = time.monotonic() + 300
    while not (out / "seed-0.json").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (out / "seed-0.json").exists(), "the first seed never finished"
    state = _sigint_state(process.pid)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, (state, err.decode()[-2000:])
    assert err.decode().strip().splitlines() == [
        "distcal: interrupted; finished seeds are kept and a rerun resumes"
    ]
    kept = json.loads((out / "seed-0.json").read_text())  # whole, not half-written
    assert not list(out.glob(".*.tmp"))
    rerun = _distcal(*argv)
    rerun.communicate(timeout=600)
    assert rerun.returncode == 0
    assert json.loads((out / "seed-0.json").read_text()) == kept  # reused, not recomputed
    assert (out / "seed-4.json").exists()


# A new user's shell: no PYTHONUNBUFFERED (which would hide a failed flush at exit), no thread
# counts, nothing else of the development shell. sys.executable finds the installed package.
CLEAN_ENVIRONMENT = {
    "HOME": os.environ.get("HOME", "/"),
    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
    "LANG": "C.UTF-8",
}


@pytest.fixture(scope="module")
def logit_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pipe")
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 4))
    np.savez(folder / "val.npz", logits=3 * z, labels=(z + rng.gumbel(size=z.shape)).argmax(1))
    np.save(folder / "new.npy", 3 * rng.normal(size=(50, 4)))
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "distcal",
            "calibrate",
            str(folder / "val.npz"),
            "--output",
            str(folder / "fitted"),
        ],
        capture_output=True,
        env=CLEAN_ENVIRONMENT,
        check=False,
    )
    assert made.returncode == 0, made.stderr.decode()
    return folder


# every subcommand that writes to standard output, with arguments that make it print
PRINTING_COMMANDS = {
    "help": lambda f: ["--help"],
    "version": lambda f: ["--version"],
    "run": lambda f: ["run", "--profile", "smoke", "--seeds", "1", "--output", str(f / "run")],
    "demo": lambda f: ["demo", "--epochs", "2", "--quiet"],
    "calibrate": lambda f: ["calibrate", str(f / "val.npz"), "--output", str(f / "again")],
    "apply": lambda f: [
        "apply",
        str(f / "fitted" / "calibrator.safetensors"),
        str(f / "new.npy"),
        "--output",
        str(f / "p.csv"),
    ],
    "calibrate --help": lambda f: ["calibrate", "--help"],
}


@pytest.mark.parametrize(
    "command",
    # run and demo train networks first (tens of seconds): slow; the others run by default
    [
        pytest.param(c, marks=pytest.mark.slow) if c in ("run", "demo") else c
        for c in PRINTING_COMMANDS
    ],
)
def test_a_closed_pipe_ends_quietly_in_a_clean_shell(command, logit_files):
    """``distcal ... | head``: the reader goes away; exit 141 (128 + SIGPIPE), nothing on stderr
    about it, whatever the buffering (issue 25: block-buffered stdout failed at exit with 120)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "distcal", *PRINTING_COMMANDS[command](logit_files)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=CLEAN_ENVIRONMENT,
    )
    process.stdout.close()  # the reader (``| head``) has gone before distcal writes
    _, err = process.communicate(timeout=300)
    assert process.returncode == 141, err.decode()[-2000:]
    for complaint in (b"Traceback", b"BrokenPipe", b"Exception ignored"):
        assert complaint not in err, err.decode()[-2000:]


def test_an_error_keeps_its_status_when_the_reader_has_gone(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "distcal", "calibrate", str(tmp_path / "absent.npz")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=CLEAN_ENVIRONMENT,
    )
    process.stdout.close()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2
    assert err.decode().strip().splitlines()[-1].startswith("distcal: error: argument LOGITS")
