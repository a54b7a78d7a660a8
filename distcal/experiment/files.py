"""What a run writes: per-seed files to resume from, the CSV and JSON tables, the configuration.

Floats are written as ``repr`` (the shortest text that reads back as the same float), so that a
rerun can be compared with committed rows to the last bit.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import warnings
from pathlib import Path

import numpy as np
import torch

from .._files import atomic_write_text
from ..exceptions import DistcalWarning
from .report import _diagnostic_values, format_diagnostics, format_summary
from .settings import METRICS

__all__ = ["DamagedSeedFileWarning", "environment", "load_seed", "save_seed", "write_tables"]


class DamagedSeedFileWarning(DistcalWarning):
    """A saved seed file of an interrupted run cannot be read; the seed is recomputed."""


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
        with the machine's architecture and the instruction set torch's CPU kernels dispatch
        to (``cpu_capability``: ``"AVX2"``, ``"AVX512"``...; kernels of different instruction
        sets round differently, so a rerun reproduces a run's rows to the bit only where this
        matches).
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
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def _seed_file(out: Path, seed: int) -> Path:
    return out / f"seed-{seed}.json"


def load_seed(out, config: dict, seed: int, *, required=None):
    """Return a finished seed's result saved in ``out`` under the same configuration.

    Parameters
    ----------
    out : Path or None
        The output folder (None: nothing is saved).
    config : dict
        The run's configuration; a seed saved under another one is not reused.
    seed : int
        The seed.
    required : dict of str to type, default=None
        Entries the result must hold beyond those every seed file has (``seed``, ``rows``,
        ``comparisons``, ``diagnostics``, ``stage_seconds``), with their types: ``distcal run``
        asks for its ``recipes``, ``distcal evaluate`` for nothing more.

    Returns
    -------
    dict or None
        The seed's result, or None if it must be computed: none was saved, it was saved
        under another configuration, or its file is damaged (truncated, not JSON, without a
        result or rows), which :class:`DamagedSeedFileWarning` reports with the file's name.
    """
    if out is None or not _seed_file(out, seed).exists():
        return None
    path = _seed_file(out, seed)
    try:
        saved = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _damaged(path, seed, f"it is not valid JSON ({exc})")
    if not isinstance(saved, dict) or "config" not in saved:
        return _damaged(path, seed, "it is not a seed file (no 'config')")
    # Compare as JSON would store it (tuples become lists).
    if saved["config"] != json.loads(json.dumps({**config, "seeds": None})):
        return None  # another configuration: recompute rather than mix results
    problem = _result_problem(saved.get("result"), seed, {**_RESULT_KEYS, **(required or {})})
    if problem:
        return _damaged(path, seed, problem)
    return saved["result"]


#: What a seed's result holds, and the type of each entry.
_RESULT_KEYS = {
    "seed": int,
    "rows": list,
    "comparisons": list,
    "diagnostics": dict,
    "stage_seconds": dict,
}


def _result_problem(result, seed: int, keys: dict) -> str:
    """Return what is wrong with a saved seed's result ("" if nothing)."""
    if not isinstance(result, dict):
        return "it holds no result"
    for key, kind in keys.items():
        if not isinstance(result.get(key), kind):
            return f"its result has no {key!r} {kind.__name__}"
    if result["seed"] != seed:
        return f"its result is of seed {result['seed']}"
    if not result["rows"] or not all(isinstance(row, dict) for row in result["rows"]):
        return "its result has no rows"
    return ""


def _damaged(path: Path, seed: int, problem: str) -> None:
    """Warn that a seed file cannot be reused, and return None: the seed is recomputed."""
    warnings.warn(
        f"{path} is damaged: {problem}; seed {seed} is recomputed and the file replaced.",
        DamagedSeedFileWarning,
        stacklevel=3,
    )
    return None


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


def _recipe_rows(recipes: dict) -> list[dict]:
    """One row per seed and distilled set: what its calibration recipe holds, in numbers."""
    rows = []
    for seed, by_set in recipes.items():
        for training_set, recipe in by_set.items():
            temperatures = np.log([p["temperature"] for p in recipe["proxies"]])
            rows.append(
                {
                    "seed": seed,
                    "training_set": training_set,
                    **{
                        key: recipe[key]
                        for key in (
                            "method",
                            "temperature",
                            "mask_ratio",
                            "feature_ratio",
                            "intercept",
                            "scale_slope",
                            "masked_slope",
                            "n_masks",
                            "n_validation",
                            "seconds",
                        )
                    },
                    "n_proxies": len(recipe["proxies"]),
                    "temperature_spread": float(np.std(temperatures, ddof=1))
                    if len(temperatures) > 1
                    else 0.0,
                }
            )
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
        ("recipes.csv", _recipe_rows(result.get("recipes", {}))),
    ):
        if table:
            atomic_write_text(out / name, _csv(table))
    atomic_write_text(
        out / "summary.md",
        format_summary(result["summary"], markdown=True, rows=None)
        + "\n\n"
        + format_diagnostics(result["diagnostics_summary"], markdown=True)
        + "\n",
    )
    atomic_write_text(out / "results.json", json.dumps(result, indent=1, default=str))
