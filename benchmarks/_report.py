"""What the benchmark scripts share: their markdown files, quiet peers, the peak memory.

Tables are rendered by :func:`distcal.experiment.report.render_table`, as the package's are;
synthetic logits come from ``_data``.

The scripts run as ``python benchmarks/bench_*.py``, so this folder is on their import path.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import warnings
from pathlib import Path


def argument_parser(doc: str) -> argparse.ArgumentParser:
    """The command line of a benchmark script, its docstring as the description."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_malloc_option(parser: argparse.ArgumentParser) -> None:
    """``--system-malloc``: leave malloc as it is instead of setting it as ``distcal run`` does."""
    parser.add_argument("--system-malloc", action="store_true", help="leave malloc as it is")


def set_malloc(args) -> str:
    """Have glibc keep freed memory as ``distcal run`` does, unless ``--system-malloc``; return
    what malloc does, for the table's header."""
    from distcal._allocator import keep_freed_memory

    return "malloc as the system sets it" if args.system_malloc else keep_freed_memory()


def frozen_logits(classes):
    """A fitted scikit-learn classifier whose decision function is its input, frozen.

    scikit-learn's calibrators wrap a classifier; given logits, this one is the trained network
    already applied, so that ``CalibratedClassifierCV`` calibrates the logits themselves.
    """
    import numpy as np
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.frozen import FrozenEstimator

    class Logits(ClassifierMixin, BaseEstimator):
        def fit(self, X, y):
            self.classes_ = np.unique(y)
            return self

        def decision_function(self, X):
            return X

        def predict(self, X):
            return self.classes_[np.argmax(X, axis=1)]

    return FrozenEstimator(Logits().fit(None, classes))


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


def bullets(items) -> str:
    """A markdown list, one item a line."""
    return "\n".join(f"- {item}" for item in items)


def write_markdown(path, script, argv, *blocks) -> None:
    """Write the command that made a table, then ``blocks`` (text), separated by blank lines.

    ``script`` is the benchmark's ``__file__``; ``argv`` its arguments (None: the process's).
    """
    given = sys.argv[1:] if argv is None else argv
    # quoted where needed, so that the command can be pasted as written ("TS fit")
    command = " ".join(["python", "benchmarks/" + Path(script).name, *map(shlex.quote, given)])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join([f"Command: `{command}`", *blocks]) + "\n")
