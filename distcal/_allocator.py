"""How the C library's malloc serves torch's large CPU tensors, and a setting that makes it fast.

glibc serves an allocation above its mmap threshold (128 KiB at start, raised to at most
32 MiB as such blocks are freed) with fresh pages from the kernel, and gives them back when it
is freed. A training step of the experiment's ConvNet allocates activations of 13-34 MB
(100-256 Fashion-MNIST images) and frees them at the end of the step, so every step faults
all their pages in again. Keeping freed memory in the heap instead (no mmap for allocations,
and the heap's top given back only beyond 1 GiB) changes where the bytes live, not the
arithmetic: the same results, and on this project's 2-core machine the experiment's training
stages ran markedly faster (docs/benchmarks.md, "Where a seed of the experiment spends its
time").

The setting is process-wide, so distcal's library code never makes it on its own: ``distcal
run`` does, in its own process and (through the environment) in the worker processes it
starts, unless the user set either variable or passed ``--system-malloc``. Other programs can
call :func:`keep_freed_memory` at start-up, or set the two variables before Python starts.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["MALLOC_SETTINGS", "keep_freed_memory"]

#: The environment variables glibc reads at start-up, and the values this module sets.
MALLOC_SETTINGS = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def _glibc():
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "mallopt") else None


def keep_freed_memory() -> str:
    """Have glibc keep freed memory for the next allocation, here and in child processes.

    Sets ``M_MMAP_MAX`` to 0 and ``M_TRIM_THRESHOLD`` to 1 GiB in this process (``mallopt``)
    and :data:`MALLOC_SETTINGS` in ``os.environ`` for processes started later. Does nothing
    where the C library is not glibc, or where the environment already sets either variable
    (the user's choice stands).

    Returns
    -------
    str
        What was done, in words, for a log or a report.

    Raises
    ------
    RuntimeError
        If glibc refuses a setting.
    """
    chosen = sorted(name for name in MALLOC_SETTINGS if name in os.environ)
    if chosen:
        return f"malloc left as the environment sets it ({', '.join(chosen)})"
    libc = _glibc()
    if libc is None:
        return "malloc left as it is (the C library is not glibc)"
    for parameter, value in (
        (_M_MMAP_MAX, int(MALLOC_SETTINGS["MALLOC_MMAP_MAX_"])),
        (_M_TRIM_THRESHOLD, int(MALLOC_SETTINGS["MALLOC_TRIM_THRESHOLD_"])),
    ):
        if libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value)) != 1:
            raise RuntimeError(f"glibc's mallopt refused parameter {parameter} = {value}.")
    os.environ.update(MALLOC_SETTINGS)
    return (
        "glibc malloc keeps freed memory ("
        + ", ".join(f"{name}={value}" for name, value in MALLOC_SETTINGS.items())
        + ")"
    )
