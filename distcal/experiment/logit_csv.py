"""CSV files of logits and labels, read by rules that never guess from the values alone.

**How a CSV file is read.** Every row of numbers is one sample; nothing is skipped or guessed
from the values alone:

1. *Header.* The first row holds column names when one of its cells is text (neither a
   number nor empty: ``class_0``, ``label``), or when it is an empty cell followed by the
   column numbers pandas writes (``,0,1,...``: pandas' unnamed index). A first row of column
   numbers alone, ``0,1,...,k-1`` or ``1,...,k`` written as integers, may be names or data:
   when the file is read against a known number of rows (labels against their logits, or
   logits against labels given apart), one row more than that makes it names and as many
   makes it data; otherwise it is names when a number below it is not whole (logits), and
   data in a file of whole numbers.
2. *Index column.* With a header, a first column named ``""`` (how pandas writes an unnamed
   index: ``DataFrame.to_csv()``), ``Unnamed: 0`` or ``index``, or named before columns
   numbered as pandas numbers them (``id,0,1,2``), is an index, not data; it is not read.
   Without a header, a file of logits whose first column counts its rows (0, 1, ..., n-1, as
   ``to_csv(header=False)`` writes the index) is refused: nothing names it, and read as
   logits it would be one more class.
3. *Label column.* A column named ``label``, ``labels``, ``target``, ``targets`` or ``y``
   (any case) is never read as logits. Without a labels file it holds the labels; with one,
   it must agree with it (else an error names the first row where they differ).
4. *Rows.* Every row has as many cells as the first; an empty cell is a missing value and an
   error naming its row and column (pandas writes NaN as an empty cell). Blank lines are
   allowed at the end of the file only: a blank line between rows (pandas' NaN in a
   one-column file) is an error, never a row dropped.
5. *Counts.* The labels must number as many as the rows of logits; when they do not, the
   error says how each file's first row was read.

The numbers are parsed by numpy's C reader (``numpy.loadtxt``) into one float64 array: the
reader holds at most about twice the numbers' size in memory (``python
benchmarks/bench_csv_memory.py``).
"""

from __future__ import annotations

import csv
import itertools
import re
import warnings
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..exceptions import InputFileError

#: Names of a CSV column of labels (compared in lower case); such a column is never logits.
LABEL_COLUMNS = ("label", "labels", "target", "targets", "y")
#: Names of a first CSV column that is an index (compared in lower case): pandas' unnamed
#: index is written with an empty name, read back as ``Unnamed: 0``, reset as ``index``.
INDEX_COLUMNS = ("", "unnamed: 0", "index")


_WHOLE = re.compile(r"[0-9]+")


def _is_number(cell: str) -> bool:
    if "_" in cell:  # float() reads 1_000, numpy's reader does not
        return False
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _numbered(names: list[str]) -> bool:
    """Whether ``names`` are the column numbers pandas writes: 0..k-1, or 1..k."""
    if not names or not all(_WHOLE.fullmatch(name) for name in names):
        return False
    values = [int(name) for name in names]
    k = len(values)
    return values in (list(range(k)), list(range(1, k + 1)))


def _is_index(header: list[str]) -> bool:
    """Return whether the first column of a header is an index, not data.

    It is when named as pandas names an unnamed index, or named (not as labels) before
    columns numbered as pandas numbers them (``id,0,1,2``: a named index).
    """
    if len(header) < 2:
        return False
    first = header[0].lower()
    if first in INDEX_COLUMNS:
        return True
    return first not in LABEL_COLUMNS and not _WHOLE.fullmatch(first) and _numbered(header[1:])


class _RowError(Exception):
    """A data row that cannot be read, raised through numpy's reader (``line`` is 1-based)."""

    def __init__(self, line: int, message: str):
        super().__init__(line, message)
        self.line = line
        self.message = message


def _label_column(header: list[str] | None, key) -> int | None:
    """Position of the labels' column in ``header``: named ``key``, or a label column's name."""
    if header is None:
        return None
    if key is not None:
        return header.index(key) if key in header else None
    lowered = [name.lower() for name in header]
    return next((lowered.index(name) for name in LABEL_COLUMNS if name in lowered), None)


@dataclass
class _Csv:
    """What a CSV file holds, its first row possibly still undecided (see :meth:`settle`)."""

    path: Path
    header: list[str] | None  # column names (an index column's and a cut label column's left
    # out); None: no header
    values: np.ndarray  # float64 (rows, columns): the rows below the first row if it was read
    # as a header or is undecided, else every row
    first: np.ndarray | None  # the first row's numbers while it may be names or data
    first_text: str
    index: str | None  # the name of the index column left out, if one was
    labels: np.ndarray | None = None  # the label column cut out of the values, if one was
    label_name: str | None = None
    fraction: bool = False  # whether a number below the first row is not whole
    note: str = ""

    def settle(self, n_rows: int | None) -> None:
        """Decide an undecided first row (column numbers, or data?).

        The count decides when it is known (``n_rows``, the rows the file must have): one row
        more, names; as many, data. Otherwise a number below that is not whole (logits under
        column numbers) makes it names; else it is data.
        """
        if self.first is None:
            return
        by_count = None
        if n_rows is not None and n_rows in (len(self.values), len(self.values) + 1):
            by_count = n_rows == len(self.values)
        names = self.fraction if by_count is None else by_count
        if names:
            self.header = [cell.strip() for cell in next(csv.reader([self.first_text]))]
            why = (
                f"the file has one row more than the {n_rows} expected"
                if by_count is not None
                else "numbers below it are not whole"
            )
            self.note = f"its first row, {self.first_text!r}, was read as column names ({why})"
        else:
            self.values = np.concatenate([self.first[None, :], self.values])
            why = (
                f"the file has the {n_rows} rows expected"
                if by_count is not None
                else "it could be column names, but every number below it is whole"
            )
            self.note = f"its first row, {self.first_text!r}, was read as data ({why})"
        self.first = None

    def n_rows(self) -> int | None:
        """Return the rows of data, or None while the first row is undecided."""
        return None if self.first is not None else len(self.values)

    def described(self) -> str:
        """Say how the file's first row and columns were read, for a message about its rows."""
        parts = []
        if self.note:
            parts.append(self.note)
        elif self.header is not None:
            parts.append(f"its first row, {self.first_text!r}, was read as column names")
        else:
            parts.append("it has no header row")
        if self.index is not None:
            parts.append(f"its first column ({self.index!r}) is an index, not data")
        return "; ".join(parts)


def _first_row(handle, path: Path, argument: str) -> tuple[list[str], str]:
    """Return the first row's cells and its text."""
    for line in handle:
        if line.isspace() or not line:
            raise InputFileError(
                argument,
                f"{path}, row 1 is blank; a CSV file of logits or labels starts with its header "
                "or its first row (blank lines are allowed at the end only).",
            )
        return next(csv.reader([line])), line.rstrip("\r\n")
    raise InputFileError(argument, f"{path} is empty.")


class _Cut:
    """Cut the index cell and the label cell out of data lines (keeping the labels).

    ``width`` is the number of cells of a full row; ``label`` the position of the label cell in
    it (None: no label column). Lines without quotes are cut with string methods (numpy's reader
    parses the rest); a line with quotes goes through :mod:`csv`.
    """

    def __init__(self, width: int, index: bool, label: int | None):
        self.width, self.index, self.label = width, index, label
        self.labels = array("d")

    def __call__(self, line: str, number: int) -> str:
        if not self.index and self.label is None:
            return line
        text = line.rstrip("\r\n")
        if '"' in text:
            cells = next(csv.reader([text]))
            n_cells = len(cells)
        else:
            cells, n_cells = None, text.count(",") + 1
        if n_cells != self.width:
            raise _RowError(
                number, f"has {n_cells} cells where the first row has {self.width}: {text[:80]!r}."
            )
        if cells is None and self.label is None:
            return text.partition(",")[2] + "\n"  # the index cell only
        if cells is None and self.label == self.width - 1:
            rest, _, cell = text.rpartition(",")
            rest = rest.partition(",")[2] if self.index else rest
        else:
            cells = text.split(",") if cells is None else cells
            cell = cells[self.label] if self.label is not None else None
            rest = ",".join(
                c for j, c in enumerate(cells) if j != self.label and (j or not self.index)
            )
        if self.label is not None:
            try:
                self.labels.append(float(cell) if "_" not in cell else float("x"))
            except ValueError:
                what = "is empty (a missing value)" if not cell.strip() else f"is {cell[:40]!r}"
                raise _RowError(
                    number, f"column {self.label + 1} (the labels) {what}; expected a label."
                ) from None
        if not rest:
            raise _RowError(number, "holds no numbers besides its index and label cells.")
        return rest + "\n"


def _lines(handle, start: int, cut: _Cut):
    """Yield the data lines of ``handle`` for numpy's reader: blank lines checked, cells cut."""
    blank = None
    for number, line in enumerate(handle, start=start):
        if line.isspace() or not line:
            blank = number if blank is None else blank
            continue
        if blank is not None:
            raise _RowError(
                blank,
                "is blank: a missing value? Every row must hold its numbers (a blank line is "
                "never skipped as a row; blank lines are allowed at the end of the file only).",
            )
        yield cut(line, number)


def _problem(path: Path, skip: int, width: int, text_columns) -> str | None:
    """Find the first row numpy's reader refused and say what is wrong with it."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        for row in reader:
            if reader.line_num <= skip or not row:
                continue  # the header; blank lines are checked elsewhere
            if len(row) != width:
                return (
                    f"row {reader.line_num}: expected {width} cells, got {len(row)}: "
                    f"{','.join(row)[:80]!r}."
                )
            for column, cell in enumerate(row):
                if column in text_columns:
                    continue
                if not cell.strip():
                    return (
                        f"row {reader.line_num}, column {column + 1} is empty (a missing value); "
                        "every cell must hold a number."
                    )
                if not _is_number(cell.strip()):
                    return (
                        f"row {reader.line_num}, column {column + 1}: expected a number, got "
                        f"{cell[:40]!r}."
                    )
    return None


def _read_csv(path: Path, argument: str, *, cut_labels: bool = False, key=None) -> _Csv:
    """Read a CSV file by the rules of the module's docstring.

    With ``cut_labels``, a label column (the one ``key`` names, else one named as labels are)
    is cut out of the rows as they are read, so that the logits are never copied to drop it.
    """
    try:
        return _read_csv_numbers(path, argument, cut_labels, key)
    except (UnicodeDecodeError, OSError, csv.Error) as exc:
        raise InputFileError(argument, f"{path} is not a readable CSV text file: {exc}") from None


def _read_csv_numbers(path: Path, argument: str, cut_labels: bool, key) -> _Csv:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        cells, first_text = _first_row(handle, path, argument)
        stripped = [cell.strip() for cell in cells]
        has_text = any(cell and not _is_number(cell) for cell in stripped)
        leading_empty = len(stripped) > 1 and stripped[0] == ""
        numbered = _numbered(stripped[1:] if leading_empty else stripped)
        if has_text or (numbered and leading_empty):
            kind = "header"
        elif numbered:
            kind = "undecided"
        else:
            kind = "data"
        header = stripped if kind == "header" else None
        index = cells[0] if header is not None and _is_index(header) else None
        label = _label_column(header, key) if cut_labels else None
        if label == 0 and index is not None:
            index = None  # a label column first is not an index
        cut = _Cut(len(stripped), index is not None, label)
        lines = _lines(handle, 2, cut)
        if kind == "data":
            lines = itertools.chain([cut(first_text + "\n", 1)], lines)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "input contained no data"
                values = np.loadtxt(
                    lines, delimiter=",", comments=None, quotechar='"', dtype=np.float64, ndmin=2
                )
        except _RowError as error:
            raise InputFileError(argument, f"{path}, row {error.line} {error.message}") from None
        except ValueError as exc:
            if isinstance(exc, UnicodeDecodeError):
                raise
            text_columns = {0} if index is not None else set()
            found = _problem(path, 0 if kind == "data" else 1, len(stripped), text_columns)
            raise InputFileError(argument, f"{path}, {found or exc}") from None
    width = len(stripped) - (index is not None) - (label is not None)
    if not len(values):
        values = np.empty((0, width))
    if values.shape[1] != width:
        raise InputFileError(
            argument,
            f"{path}: its first row has {len(stripped)} cells but the rows below have "
            f"{values.shape[1] + (index is not None) + (label is not None)}; every row must "
            "have as many.",
        )
    first, fraction = None, False
    if kind == "undecided":
        first = np.array([float(cell) for cell in stripped], dtype=np.float64)
        fraction = _has_fraction(values)  # settle() weighs it against a count, if one comes
    labels = label_name = None
    if label is not None:
        labels, label_name = np.frombuffer(cut.labels, dtype=np.float64), header[label]
        header = [name for j, name in enumerate(header) if j != label]
    if index is not None:
        header = header[1:]
    if first is None and not len(values):
        raise InputFileError(argument, f"{path} has a header but no rows.")
    table = _Csv(path, header, values, first, first_text, index, labels, label_name)
    table.fraction = fraction
    return table


def _has_fraction(values: np.ndarray) -> bool:
    """Return whether a number of ``values`` is not whole (checked in slices: no full copy)."""
    step = max(1, (1 << 20) // max(1, values.shape[1]))
    for start in range(0, len(values), step):
        part = values[start : start + step]
        if bool((part != np.trunc(part)).any()):
            return True
    return False


def _csv_labels(table: _Csv, key, names: dict) -> np.ndarray:
    """Return the labels of a CSV file: the column ``key`` names, the only one, or a label one."""
    column = _label_column(table.header, key)
    if key is not None and column is None:
        columns = "no header" if table.header is None else f"the columns {table.header}"
        raise InputFileError(
            names["labels_key"], f"{table.path} has no column {key!r}; it has {columns}."
        )
    if column is None and table.values.shape[1] == 1:
        column = 0
    if column is None:
        columns = "no header" if table.header is None else f"the columns {table.header}"
        raise InputFileError(
            names["labels"],
            f"{table.path} has {table.values.shape[1]} columns ({columns}) and none is named "
            f"{' or '.join(map(repr, LABEL_COLUMNS))}; name the labels' column with "
            f"{names['labels_key']}.",
        )
    return table.values[:, column]
