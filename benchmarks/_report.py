"""What the benchmark scripts share: their tables, and the peak memory of a process.

The scripts run as ``python benchmarks/bench_*.py``, so this folder is on their import path.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path


def render(header, lines, *, markdown=False, align="left") -> str:
    """Render a table as markdown, or as text columns aligned ``"left"`` or ``"right"``."""
    if markdown:
        # a "|" inside a cell would end it: escape it (headers such as "max |dp|")
        def cells(values):
            return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"

        out = [cells(header), "|" + "---|" * len(header)]
        return "\n".join(out + [cells(line) for line in lines])
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def row(cells):
        pad = str.ljust if align == "left" else str.rjust
        return "  ".join(pad(c, w) for c, w in zip(cells, widths, strict=True))

    return "\n".join([row(header), *(row(line) for line in lines)])


@contextlib.contextmanager
def quiet():
    """Silence a peer library: its progress prints go to stderr, its warnings are ignored."""
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def status_kib(field: str) -> int:
    """A memory field of this process from /proc/self/status (Linux), in KiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not found in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset the peak resident set size to the current one (Linux); return it in KiB."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")
    return status_kib("VmRSS")


def write_markdown(path, script, argv, *blocks) -> None:
    """Write the command that made a table, then ``blocks`` (text), separated by blank lines.

    ``script`` is the benchmark's ``__file__``; ``argv`` its arguments (None: the process's).
    """
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python benchmarks/" + Path(script).name, *given])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join([f"Command: `{command}`", *blocks]) + "\n")
