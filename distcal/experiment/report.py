"""Summaries over seeds and the tables that show them.

:func:`render_table` is the one table renderer of the package and of the benchmarks: a header
and rows of strings as fixed-width text or as markdown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .schema import PARAMETERS, SCORES, RowKey
from .settings import MAIN_ROWS, METRICS

__all__ = [
    "SUMMARY_COLUMNS",
    "format_cell",
    "format_diagnostics",
    "format_summary",
    "render_table",
    "summarise",
    "summarise_diagnostics",
]


def render_table(header, rows, *, markdown: bool = False, align="left") -> str:
    """Render a table as markdown, or as text columns padded to a common width.

    Parameters
    ----------
    header : sequence of str
        The column titles.
    rows : iterable of sequence of str
        The cells, one sequence per row, as long as ``header``.
    markdown : bool, default=False
        A markdown table (a ``|`` inside a cell is escaped) instead of text columns.
    align : {"left", "right"} or sequence of {"left", "right"}, default="left"
        How text cells are padded: every column alike, or one entry per column.

    Returns
    -------
    str
        The table, one line per row after the header, without a final newline.

    Raises
    ------
    ValueError
        If ``align`` is not one of these, or a row is not as long as the header.

    Examples
    --------
    >>> print(render_table(["name", "n"], [["a", "10"], ["bc", "2"]], align=["left", "right"]))
    name   n
    a     10
    bc     2
    """
    header = [str(cell) for cell in header]
    rows = [[str(cell) for cell in row] for row in rows]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(
                f"rows must have one cell per column ({len(header)}); got a row of {len(row)}: "
                f"{row!r}."
            )
    if markdown:

        def line(cells):
            return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

        return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])
    sides = [align] * len(header) if isinstance(align, str) else list(align)
    if len(sides) != len(header) or not set(sides) <= {"left", "right"}:
        raise ValueError(
            f'align must be "left", "right" or one of them per column ({len(header)}); got '
            f"{align!r}."
        )
    pads = [str.ljust if side == "left" else str.rjust for side in sides]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(pad(cell, width) for pad, cell, width in zip(pads, row, widths, strict=True))
        for row in [header, *rows]
    )


def _sides(n_left: int, n_columns: int) -> Sequence[str]:
    """``n_left`` columns padded on the right (text), the others on the left (numbers)."""
    return ["left"] * n_left + ["right"] * (n_columns - n_left)


def _t_interval(values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean (nan with fewer than 2 values)."""
    from scipy import stats

    n = len(values)
    if n < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf((1 + confidence) / 2, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return float(values.mean() - half), float(values.mean() + half)


def summarise(rows: list[dict]) -> list[dict]:
    """Mean, sample SD (ddof=1) and 95% t-interval over seeds of every (set, student, row).

    The SD and the interval are nan for a single seed, and for columns with an infinite value
    (an infinite NLL, a probability of exactly 0 on a true class, stays visible as the mean).

    Parameters
    ----------
    rows : list of dict
        Per-seed rows as :func:`run_experiment` returns them (``training_set``, ``student``,
        ``calibrator``, ``regime``, the score columns, ``temperature``, ``mask_ratio``,
        ``masked_accuracy``, ``detected`` and ``note``).

    Returns
    -------
    list of dict
        One entry per (set, student, calibrator, regime), in order of first appearance:
        ``n_seeds``, and per column its mean, ``_std``, ``_low`` and ``_high`` (None where no
        seed has a value), with the distinct ``detected`` regimes and notes joined.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["training_set"], row["student"], RowKey.of(row))
        groups.setdefault(key, []).append(row)
    summary = []
    for (set_name, student, row_key), members in groups.items():
        entry = {
            "training_set": set_name,
            "student": student,
            "calibrator": row_key.calibrator,
            "regime": row_key.regime,
            "n_seeds": len(members),
        }
        for key in (*METRICS, "temperature", "mask_ratio", "masked_accuracy"):
            values = np.array([m[key] for m in members if m[key] is not None], dtype=float)
            if len(values) == 0:
                entry[key] = entry[f"{key}_std"] = None
                entry[f"{key}_low"] = entry[f"{key}_high"] = None
            elif not np.isfinite(values).all() or len(values) < 2:
                entry[key] = float(values.mean())
                entry[f"{key}_std"] = entry[f"{key}_low"] = entry[f"{key}_high"] = float("nan")
            else:
                entry[key], entry[f"{key}_std"] = float(values.mean()), float(values.std(ddof=1))
                entry[f"{key}_low"], entry[f"{key}_high"] = _t_interval(values)
        entry["detected"] = "; ".join(sorted({m["detected"] for m in members if m["detected"]}))
        entry["note"] = "; ".join(sorted({m["note"] for m in members if m["note"]}))
        summary.append(entry)
    return summary


#: The columns of the experiment's summary table: the scores of every row (accuracy, ECE and
#: confidence in percent, as the literature reports them), then the fitted temperature and
#: mask ratio (:class:`~distcal.experiment.schema.Score`).
SUMMARY_COLUMNS = (
    *(SCORES[key] for key in METRICS),
    PARAMETERS["temperature"],
    PARAMETERS["mask_ratio"],
)


def _prints_as_zero(value: float, digits: int) -> bool:
    """Whether a nonzero value would print as zero with ``digits`` decimals."""
    return value != 0 and abs(value) < 0.5 * 10.0**-digits


def format_cell(mean, std=math.nan, *, scale: float = 1.0, digits: int = 2) -> str:
    """Format one cell: a value, or a mean ± its SD.

    Parameters
    ----------
    mean : float or None
        The value (None: "-"; an infinite or nan value prints as such).
    std : float, default=nan
        Its SD; not shown unless finite.
    scale : float, default=1.0
        Both are multiplied by it (100: percent).
    digits : int, default=2
        Decimals. A nonzero value that would print as zero prints in scientific notation
        instead (a temperature of 1e-06 stays visible).

    Returns
    -------
    str
        The cell.

    Examples
    --------
    >>> format_cell(0.1234, 0.01, scale=100), format_cell(1e-6, digits=3), format_cell(None)
    ('12.34±1.00', '1e-06', '-')
    """
    if mean is None:
        return "-"
    if not math.isfinite(mean):
        return str(mean)
    if _prints_as_zero(scale * mean, digits):
        if not math.isfinite(std):
            return f"{scale * mean:.0e}"
        return f"{scale * mean:.0e}±{scale * std:.0e}"
    if not math.isfinite(std):
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f}±{scale * std:.{digits}f}"


def format_summary(summary: list[dict], *, markdown: bool = False, rows=MAIN_ROWS) -> str:
    """Render the summary as a table: mean ± sample SD over seeds.

    Parameters
    ----------
    summary : list of dict
        Entries of :func:`summarise`.
    markdown : bool, default=False
        A markdown table instead of fixed-width text.
    rows : sequence of RowKey or None, default=MAIN_ROWS
        The (calibrator, regime) rows shown, in that order within each set and student (None:
        every row, in the summary's order).

    Returns
    -------
    str
        The table; accuracy, ECE and confidence in percent.
    """
    columns = SUMMARY_COLUMNS
    header = ["set", "student", "calibrator", "regime", *(column.short for column in columns)]
    if rows is not None:
        order = {RowKey(*row): i for i, row in enumerate(rows)}
        summary = [e for e in summary if RowKey.of(e) in order]
        groups = list(dict.fromkeys((e["training_set"], e["student"]) for e in summary))
        summary = sorted(
            summary,
            key=lambda e: (
                groups.index((e["training_set"], e["student"])),
                order[RowKey.of(e)],
            ),
        )
    lines = [
        [
            *(e[key] for key in ("training_set", "student", "calibrator", "regime")),
            *(column.show(e[column.key], e[f"{column.key}_std"]) for column in columns),
        ]
        for e in summary
    ]
    return render_table(header, lines, markdown=markdown, align=_sides(4, len(header)))


_DIAGNOSTIC_KEYS = ("cv_train", "cv_train_masked", "spread_ratio", "cv_test")


def _diagnostic_values(d: dict) -> dict:
    """Return the summarised statistics of one network's maximum-logit diagnostics."""
    return {
        "cv_train": d["train_clean"]["cv"],
        "cv_train_masked": d["train_masked"]["cv"],
        "spread_ratio": d["spread_ratio"],
        "cv_test": d["test"]["cv"],
    }


def summarise_diagnostics(diagnostics: dict) -> list[dict]:
    """Mean and sample SD over seeds of the maximum-logit diagnostics, per network.

    ``diagnostics`` maps each seed to ``{network: {"train_clean", "train_masked",
    "spread_ratio", "test"}}`` as :func:`run_experiment` returns it (the plain students of each
    training set, and ``"full"``, the network trained on the whole training split). The rows
    hold the coefficient of variation (``std / |mean|``, scale-free: the smaller, the more
    concentrated) of the maximum logits on the network's clean and masked training images and
    on the test split, and the interquartile-range ratio masked / clean (above 1: masking
    spreads them). The SD is nan for one seed.

    Parameters
    ----------
    diagnostics : dict
        Per seed, the diagnostics of each network.

    Returns
    -------
    list of dict
        One row per network: ``training_set``, ``n_seeds``, and the mean and ``_std`` of
        ``cv_train``, ``cv_train_masked``, ``spread_ratio`` and ``cv_test``.
    """
    per_set: dict[str, dict[str, list[float]]] = {}
    for by_set in diagnostics.values():
        for set_name, d in by_set.items():
            values = per_set.setdefault(set_name, {})
            for key, value in _diagnostic_values(d).items():
                values.setdefault(key, []).append(float(value))
    rows = []
    for set_name, values in per_set.items():
        row = {"training_set": set_name, "n_seeds": len(values["cv_train"])}
        for key, series in values.items():
            series = np.asarray(series)
            row[key] = float(series.mean())
            row[f"{key}_std"] = float(series.std(ddof=1)) if len(series) > 1 else float("nan")
        rows.append(row)
    return rows


def format_diagnostics(rows: list[dict], *, markdown: bool = False) -> str:
    """Render :func:`summarise_diagnostics` as a table (fixed-width text or markdown).

    Parameters
    ----------
    rows : list of dict
        Rows of :func:`summarise_diagnostics`, one per network.
    markdown : bool, default=False
        Markdown, as in ``summary.md``, rather than text columns.

    Returns
    -------
    str
        The table: mean ± sample SD over seeds (the mean alone for one seed).
    """
    header = [
        "network",
        "max-logit CV, train",
        "CV, masked train (0.3)",
        "IQR masked/clean",
        "CV, test",
    ]
    lines = []
    for row in rows:
        lines.append(
            [
                row["training_set"],
                *(
                    f"{row[key]:.3f}±{row[f'{key}_std']:.3f}"
                    if math.isfinite(row[f"{key}_std"])
                    else f"{row[key]:.3f}"
                    for key in _DIAGNOSTIC_KEYS
                ),
            ]
        )
    return render_table(header, lines, markdown=markdown, align=_sides(1, len(header)))
