"""keep_freed_memory: glibc serves large tensors from the heap, here and in child processes."""

import json
import os
import subprocess
import sys

import pytest

from distcal._allocator import MALLOC_SETTINGS, _glibc

GLIBC = pytest.mark.skipif(_glibc() is None, reason="the C library is not glibc")

# A child that reports the bytes glibc holds in mmap'd blocks while a 40 MB tensor is alive
# (mallinfo2's hblkhd), before and after calling keep_freed_memory, and its environment.
_CHILD = r"""
import ctypes, json, os, sys
import torch
from distcal._allocator import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2

def mapped_while_alive():
    before = libc.mallinfo2().hblkhd
    tensor = torch.ones(10_000_000)  # 40 MB, above glibc's largest mmap threshold (32 MiB)
    during = libc.mallinfo2().hblkhd
    del tensor
    return during - before

default = mapped_while_alive()
said = keep_freed_memory() if sys.argv[1] == "keep" else ""
tuned = mapped_while_alive()
names = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
print(json.dumps({"default": default, "tuned": tuned, "said": said,
                  "environ": {n: os.environ.get(n) for n in names}}))
"""


def _child(mode, **environ):
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_SETTINGS}
    env.update(environ)
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(done.stdout)


@GLIBC
def test_large_tensors_come_from_the_heap_once_set():
    if not hasattr(_glibc(), "mallinfo2"):
        pytest.skip("glibc older than 2.33 has no mallinfo2")
    report = _child("keep")
    assert report["default"] >= 40_000_000  # mmap'd: fresh pages, faulted in at every step
    assert report["tuned"] == 0
    assert "keeps freed memory" in report["said"]
    # Processes started from here (joblib's workers) inherit the setting.
    assert report["environ"] == MALLOC_SETTINGS


@GLIBC
def test_a_setting_in_the_environment_is_left_alone():
    report = _child("keep", MALLOC_TRIM_THRESHOLD_="65536")
    assert report["said"] == "malloc left as the environment sets it (MALLOC_TRIM_THRESHOLD_)"
    assert report["environ"] == {"MALLOC_MMAP_MAX_": None, "MALLOC_TRIM_THRESHOLD_": "65536"}


@pytest.mark.slow
def test_the_cli_applies_it_unless_told_not_to(tmp_path):
    """`distcal run` says what it did (without --quiet); --system-malloc leaves malloc alone."""
    env = {k: v for k, v in os.environ.items() if k not in MALLOC_SETTINGS}
    command = [sys.executable, "-m", "distcal", "run", "--profile", "smoke", "--seeds", "1"]
    runs = {}
    for flag in ([], ["--system-malloc"]):
        out = tmp_path / ("system" if flag else "kept")
        done = subprocess.run(
            [*command, "--output", str(out), *flag],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        runs[bool(flag)] = (done.stderr, (out / "results.csv").read_text())
    expected = "keeps freed memory" if _glibc() is not None else "not glibc"
    assert expected in runs[False][0]
    assert "malloc" not in runs[True][0]
    # Where the bytes live changes nothing in the results.
    assert runs[False][1] == runs[True][1]
