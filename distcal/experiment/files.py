"""What a run writes: per-seed files to resume from, the CSV and JSON tables, the configuration.

Floats are written as ``repr`` (the shortest text that reads back as the same float), so that a
rerun can be compared with committed rows to the last bit.
"""

from __future__ import annotations

import csv
import io
import json
import platform
from pathlib import Path

import numpy as np
import torch

from .._files import atomic_write_text
from .report import _diagnostic_values, format_diagnostics, format_summary
from .settings import METRICS

__all__ = ["environment", "load_seed", "save_seed", "write_tables"]


def environment(threads: int) -> dict:
    """Return what, besides the code and the seed, fixes a run's floating-point results.

    Parameters
    ----------
    threads : int
        The torch threads of each seed.

    Returns
    -------
    dict
        ``torch_threads`` and the versions of Python, torch, numpy, scipy and scikit-learn,
        with the machine's architecture.
    """
    import scipy
    import sklearn

    return {
        "torch_threads": threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "machine": platform.machine(),
    }


def _seed_file(out: Path, seed: int) -> Path:
    return out / f"seed-{seed}.json"


def load_seed(out, config: dict, seed: int):
    """Return a finished seed's result saved in ``out`` under the same configuration.

    Parameters
    ----------
    out : Path or None
        The output folder (None: nothing is saved).
    config : dict
        The run's configuration; a seed saved under another one is not reused.
    seed : int
        The seed.

    Returns
    -------
    dict or None
        The seed's result, or None if it must be computed.
    """
    if out is None or not _seed_file(out, seed).exists():
        return None
    saved = json.loads(_seed_file(out, seed).read_text())
    # Compare as JSON would store it (tuples become lists).
    if saved.get("config") != json.loads(json.dumps({**config, "seeds": None})):
        return None  # another configuration: recompute rather than mix results
    return saved["result"]


def save_seed(out, config: dict, result: dict) -> None:
    """Save a finished seed in ``out`` (atomically), so that a rerun resumes after it.

    Parameters
    ----------
    out : Path or None
        The output folder (None: nothing is saved).
    config : dict
        The run's configuration.
    result : dict
        The seed's result (with its ``seed``).
    """
    if out is None:
        return
    payload = json.dumps({"config": {**config, "seeds": None}, "result": result})
    atomic_write_text(_seed_file(out, result["seed"]), payload)


def _diagnostic_rows(diagnostics: dict) -> list[dict]:
    """One row per seed and network: the maximum-logit statistics, flattened."""
    rows = []
    for seed, by_set in diagnostics.items():
        for network, d in by_set.items():
            row = {"seed": seed, "network": network, **_diagnostic_values(d)}
            for part in ("train_clean", "test"):
                for key in ("mean", "std"):
                    row[f"{part}_{key}"] = d[part][key]
            for key in METRICS:
                row[f"full_{key}"] = d.get("scores", {}).get(key)
            rows.append(row)
    return rows


def _csv(table: list[dict]) -> str:
    """Return the rows as CSV text, floats as ``repr``."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(table[0]))
    writer.writeheader()
    # repr: the shortest text that reads back as the same float, so a rerun can be compared
    # to the last bit.
    writer.writerows(
        {k: float.__repr__(v) if isinstance(v, float) else v for k, v in row.items()}
        for row in table
    )
    return text.getvalue()


def write_tables(out: Path, result: dict) -> None:
    """Write a run's tables: CSV files, the markdown summary and ``results.json``.

    Parameters
    ----------
    out : Path
        The output folder.
    result : dict
        What :func:`~distcal.experiment.run_experiment` returns.
    """
    for name, table in (
        ("results.csv", result["rows"]),
        ("comparisons.csv", result["comparisons"]),
        ("diagnostics.csv", _diagnostic_rows(result["diagnostics"])),
        ("summary.csv", result["summary"]),
        ("max_logits.csv", result["diagnostics_summary"]),
    ):
        atomic_write_text(out / name, _csv(table))
    atomic_write_text(
        out / "summary.md",
        format_summary(result["summary"], markdown=True, rows=None)
        + "\n\n"
        + format_diagnostics(result["diagnostics_summary"], markdown=True)
        + "\n",
    )
    atomic_write_text(out / "results.json", json.dumps(result, indent=1, default=str))
