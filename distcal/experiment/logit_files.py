"""Logits and labels saved by other tools, read and checked; probabilities written back.

This is what ``distcal calibrate`` and ``distcal apply`` read and write. Four formats are
read, chosen by the file's extension:

- ``.npy``: one array;
- ``.npz`` and ``.safetensors``: named arrays. A key option chooses one; without it, the only
  array of the file, else the array called ``logits`` (or ``labels``). bfloat16 and float8
  arrays (which numpy has no type for) are read as float32, exactly;
- ``.csv``: a table of numbers, read by the rules below.

One file may hold both the logits and the labels: an ``.npz`` or ``.safetensors`` file with
arrays ``logits`` and ``labels`` (or those the keys name), or a CSV file whose header names a
label column, the other columns being the logits.

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

Logits are a 2-D array (samples x classes; column ``j`` is class ``j``) or 1-D binary decision
values; labels are integers in ``[0, n_classes)``, one per row of the logits. Everything is
checked before anything is computed, by the checks every fit uses (``distcal._batches``, the
one door for data: :func:`read_checked` returns what it let through), and every problem is an
:class:`InputFileError` naming the argument it concerns and what arrived.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import tokenize
import warnings
import zipfile
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._batches import Chunk, check_batch
from .._device import to_numpy
from .._files import atomic_write_bytes, atomic_write_text
from .._validation import check_targets
from ..exceptions import ProbabilityInputWarning

__all__ = [
    "InputFileError",
    "read_checked",
    "read_labels",
    "read_logits",
    "read_logits_and_labels",
    "write_probabilities",
]

_READABLE = (".npy", ".npz", ".safetensors", ".csv")
_WRITABLE = (".npy", ".csv")
#: Names of a CSV column of labels (compared in lower case); such a column is never logits.
LABEL_COLUMNS = ("label", "labels", "target", "targets", "y")
#: Names of a first CSV column that is an index (compared in lower case): pandas' unnamed
#: index is written with an empty name, read back as ``Unnamed: 0``, reset as ``index``.
INDEX_COLUMNS = ("", "unnamed: 0", "index")
_PYTHON_NAMES = {name: name for name in ("logits", "labels", "logits_key", "labels_key", "output")}


def _names(names) -> dict:
    return {**_PYTHON_NAMES, **(names or {})}


class InputFileError(ValueError):
    """A file given to a command is missing, unreadable or holds the wrong arrays.

    Parameters
    ----------
    argument : str
        The argument the file (or key) was given as: ``"logits"``, ``"labels"``,
        ``"logits_key"``, ``"labels_key"``, ``"calibrator"`` or ``"output"`` in Python, or
        the command line's name of it (``LOGITS``, ``--logits-key``, ...).
    message : str
        What is wrong, naming the file.
    """

    def __init__(self, argument: str, message: str):
        super().__init__(f"{argument}: {message}" if argument else message)
        self.argument = argument
        self.message = message


def _check_path(path, argument: str, suffixes=_READABLE) -> Path:
    path = Path(path)
    if path.is_dir():
        raise InputFileError(argument, f"{path} is a directory, not a file.")
    if not path.exists():
        raise InputFileError(argument, f"{path} does not exist.")
    if path.suffix.lower() not in suffixes:
        raise InputFileError(
            argument,
            f"{path} has the extension {path.suffix!r}; expected one of {', '.join(suffixes)}.",
        )
    return path


# --------------------------------------------------------------------------------------------
# CSV files (the rules are in the module's docstring and in the user guide)

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


# --------------------------------------------------------------------------------------------
# .npy, .npz and .safetensors files

# What numpy's readers raise on damaged files: a damaged .npy header is parsed with
# ast.literal_eval (SyntaxError, tokenize.TokenError), a crafted shape can ask for more memory
# than there is, and zip archives raise their own errors (encrypted members: RuntimeError;
# unknown compression: NotImplementedError).
_NUMPY_READ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    zipfile.BadZipFile,
    SyntaxError,
    tokenize.TokenError,
    MemoryError,
    OverflowError,
    RuntimeError,
    NotImplementedError,
)


def _safetensors_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Return the arrays of a safetensors file by name.

    Those numpy has no type for (bfloat16, float8) are read through torch as float32, which
    holds each of their values exactly.
    """
    from safetensors.numpy import load

    try:
        return load(data)
    except KeyError:  # a dtype numpy lacks: safetensors.numpy raises KeyError('BF16')
        pass
    import torch
    from safetensors.torch import load as load_torch

    arrays = {}
    for name, tensor in load_torch(data).items():
        if tensor.dtype == torch.bfloat16 or (
            tensor.is_floating_point() and tensor.element_size() == 1
        ):
            tensor = tensor.to(torch.float32)
        arrays[name] = tensor.numpy()
    return arrays


def _named_arrays(path: Path, argument: str) -> dict[str, np.ndarray]:
    """Return the arrays of an ``.npz`` or ``.safetensors`` file by name (never unpickling)."""
    from safetensors import SafetensorError

    try:
        if path.suffix.lower() == ".npz":
            archive = np.load(path, allow_pickle=False)
            if isinstance(archive, np.ndarray):  # np.load reads an .npy whatever its name
                raise InputFileError(argument, f"{path} is an .npy array, not an .npz archive.")
            with archive:
                return {name: archive[name] for name in archive.files}
        return _safetensors_arrays(path.read_bytes())
    except (*_NUMPY_READ_ERRORS, SafetensorError, TypeError) as exc:
        kind = path.suffix.lower()
        raise InputFileError(argument, f"{path} is not a readable {kind} file: {exc}") from None


def _choose(arrays: dict, path: Path, role: str, key, names: dict):
    """Return the array ``key`` names; else the only one; else the one called ``role``."""
    listed = ", ".join(repr(name) for name in arrays) or "none"
    if key is not None:
        if key not in arrays:
            raise InputFileError(
                names[f"{role}_key"], f"{path} holds no array {key!r}; its arrays are {listed}."
            )
        return arrays[key]
    if len(arrays) == 1:
        return next(iter(arrays.values()))
    if role in arrays:
        return arrays[role]
    raise InputFileError(
        names[role],
        f"{path} holds the arrays {listed} and none is called {role!r}; choose one with "
        f"{names[f'{role}_key']}.",
    )


def _source(path, role: str, key, names: dict):
    """Return the file of ``role``: an array, or a :class:`_Csv` table still to be settled."""
    argument, key_argument = names[role], names[f"{role}_key"]
    path = _check_path(path, argument)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if key is not None:
            raise InputFileError(key_argument, f"{path} holds one unnamed array (.npy).")
        try:
            array = np.load(path, allow_pickle=False)
        except _NUMPY_READ_ERRORS as exc:
            raise InputFileError(argument, f"{path} is not a readable .npy file: {exc}") from None
        if not isinstance(array, np.ndarray):  # np.load opens a zip archive whatever its name
            array.close()
            raise InputFileError(argument, f"{path} is an .npz archive, not an .npy array.")
        return array
    if suffix == ".csv":
        if key is not None and role == "logits":
            raise InputFileError(
                key_argument,
                f"the logits of a CSV file ({path}) are all its columns but an index and a "
                "label column.",
            )
        table = _read_csv(path, argument, cut_labels=role == "logits")
        if key is not None and table.first is not None:
            named = key in (cell.strip() for cell in table.first_text.split(","))
            table.settle(len(table.values) if named else None)
        return table
    return _choose(_named_arrays(path, argument), path, role, key, names)


def _logits_of(source, argument: str) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """Return the logits of a source (settled), and a label column the CSV file held."""
    if isinstance(source, _Csv):
        source.settle(None)
        _refuse_unnamed_index(source, argument)
        return source.values, source.labels, source.label_name
    return source, None, None


def _refuse_unnamed_index(table: _Csv, argument: str) -> None:
    """Refuse a header-less file whose first column counts its rows, as an index does.

    ``DataFrame.to_csv(header=False)`` keeps the index: without a header nothing names it, and
    read as logits it would be one more class. Logits that count 0, 1, ..., n-1 down a column
    are not plausible, so such a file is refused with the ways to write it, rather than read.
    """
    values = table.values
    if table.header is not None or values.ndim != 2 or values.shape[1] < 2 or len(values) < 3:
        return
    rows = np.arange(len(values), dtype=np.float64)
    first = values[:, 0]
    if np.array_equal(first, rows) or np.array_equal(first, rows + 1):
        raise InputFileError(
            argument,
            f"{table.path} has no header, and its first column counts its rows ({first[0]:g}, "
            f"{first[1]:g}, ..., {first[-1]:g}) as an index does (DataFrame.to_csv(header=False) "
            "keeps the index). Read as logits it would be one more class; write the file with "
            "index=False, or with its header (an index is then recognised).",
        )


def _labels_of(source, key, names: dict) -> np.ndarray:
    if isinstance(source, _Csv):
        source.settle(None)
        return _csv_labels(source, key, names)
    return source


# --------------------------------------------------------------------------------------------
# checks


def _squeezed(values) -> np.ndarray:
    """Return a single column of logits or labels (as pandas and numpy write it) as 1-D."""
    values = np.asarray(values)
    return values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values


def _check(
    z, y, paths, names: dict, *, input_type: str, with_labels: bool = True, warn: bool = True
) -> Chunk:
    """Check logits (and labels) through the one door; its errors become file errors.

    ``paths`` are the files of the logits and of the labels, named in the messages; an error
    is an :class:`InputFileError` of the argument whose file it concerns, caused by the
    check's own error (the same error ``fit`` raises on the same arrays). Without ``warn``
    (the public readers), logits that look like probabilities do not warn.
    """
    z_path, y_path = paths
    try:
        with warnings.catch_warnings():
            if not warn:  # a reader does not judge what the numbers are; calibrate does
                warnings.simplefilter("ignore", ProbabilityInputWarning)
            return check_batch(
                _squeezed(z),
                None if y is None else _squeezed(y),
                kind="logits",
                input_type=input_type,
                with_labels=with_labels,
                names=(str(z_path), str(y_path), "sample_weight"),
            )
    except (TypeError, ValueError) as exc:
        argument = names["labels"] if getattr(exc, "argument", "X") == "y" else names["logits"]
        raise InputFileError(argument, str(exc)) from exc


# --------------------------------------------------------------------------------------------
# the readers


def read_logits(path, *, key=None, names=None) -> np.ndarray:
    """Read logits from a ``.npy``, ``.npz``, ``.safetensors`` or ``.csv`` file and check them.

    Parameters
    ----------
    path : str or path
        The file. A CSV file is read by the rules of
        :mod:`~distcal.experiment.logit_files` (a header, an index column and a label column
        are recognised and are not logits).
    key : str, default=None
        The array of an ``.npz`` or ``.safetensors`` file (None: the only one, or ``logits``).
    names : dict of str to str, default=None
        How the arguments are called in error messages (the command line passes its own).

    Returns
    -------
    ndarray of shape (n_samples, n_classes) or (n_samples,)
        The logits, finite, in their float dtype (integers become float64). A single column
        becomes 1-D binary decision values.

    Raises
    ------
    InputFileError
        If the file is missing, a directory, unreadable, lacks the key, or holds no logits.
    """
    chunk = read_checked(path, logits_key=key, names=names, with_labels=False, warn=False)
    return _logit_array(chunk)


def read_labels(path, n_classes: int, *, key=None, n_samples=None, names=None) -> np.ndarray:
    """Read class labels from a file and check them against the number of classes.

    Parameters
    ----------
    path : str or path
        The file (``.npy``, ``.npz``, ``.safetensors`` or ``.csv``).
    n_classes : int
        The classes of the logits they label.
    key : str, default=None
        The array of an ``.npz`` or ``.safetensors`` file, or the column of a CSV file with a
        header (None: the only one, or ``labels``; of a CSV file, its only column or its label
        column).
    n_samples : int, default=None
        The rows of the logits they label, when known: a CSV file whose first row may be a
        header (``0``, as ``pandas.Series(y).to_csv(index=False)`` writes it) or a label is
        read as having a header when it holds ``n_samples + 1`` rows. The count is not
        checked here.
    names : dict of str to str, default=None
        How the arguments are called in error messages (the command line passes its own).

    Returns
    -------
    ndarray of shape (n_samples,), int64
        The labels.

    Raises
    ------
    InputFileError
        If the file is missing or unreadable, or the labels are not integers in
        ``[0, n_classes)``.
    """
    names = _names(names)
    source = _source(path, "labels", key, names)
    if isinstance(source, _Csv):
        source.settle(n_samples)
    labels = _squeezed(_labels_of(source, key, names))
    try:  # the labels' rule of every fit (the one door for data checks with it)
        checked = check_targets(
            labels,
            n_samples=len(labels) if labels.ndim else 1,
            n_classes=n_classes,
            name=str(path),
            x_name=f"the logits of {n_classes} classes",
            min_classes=1,
        )
    except (TypeError, ValueError) as exc:
        raise InputFileError(names["labels"], str(exc)) from exc
    return to_numpy(checked)


def _read_both(path, logits_key, labels_key, names):
    """Return the logits and the labels of one file (as read, not yet checked)."""
    path = _check_path(path, names["logits"])
    suffix = path.suffix.lower()
    if suffix == ".npy":
        raise InputFileError(
            names["labels"], f"{path} holds one array (.npy); give the labels' file too."
        )
    if suffix == ".csv":
        if logits_key is not None:
            raise InputFileError(
                names["logits_key"], f"the logits of a CSV file ({path}) are its other columns."
            )
        table = _read_csv(path, names["logits"], cut_labels=True, key=labels_key)
        table.settle(None)
        if table.labels is None:
            wanted = [labels_key] if labels_key is not None else list(LABEL_COLUMNS)
            columns = "no header" if table.header is None else f"the columns {table.header}"
            raise InputFileError(
                names["labels_key"] if labels_key is not None else names["labels"],
                f"{path} has no labels column {' or '.join(map(repr, wanted))} ({columns}); "
                f"give the labels' file too, or name the column with {names['labels_key']}.",
            )
        return table.values, table.labels
    arrays = _named_arrays(path, names["logits"])
    if len(arrays) < 2:
        raise InputFileError(
            names["labels"],
            f"{path} holds one array; give the labels' file too, or save the logits and the "
            "labels in it as 'logits' and 'labels'.",
        )
    values = _choose(arrays, path, "logits", logits_key, names)
    return values, _choose(arrays, path, "labels", labels_key, names)


def _rows(source) -> int | None:
    if isinstance(source, _Csv):
        return source.n_rows()
    return len(source) if getattr(source, "ndim", 0) else None


def _how_read(source, path) -> str:
    if isinstance(source, _Csv):
        return f" ({path}: {source.described()})"
    return ""


def read_logits_and_labels(logits, labels=None, *, logits_key=None, labels_key=None, names=None):
    """Read logits and their labels, from two files or from one that holds both.

    Parameters
    ----------
    logits : str or path
        The logits' file.
    labels : str or path, default=None
        The labels' file; None reads them from ``logits``: the array ``labels`` (or
        ``labels_key``) of an ``.npz`` or ``.safetensors`` file, or the label column
        (``label``, ``labels``, ``target``, ``targets``, ``y``, or ``labels_key``) of a CSV
        file with a header, whose other columns are then the logits.
    logits_key, labels_key : str, default=None
        Names of the arrays (or of the labels' CSV column).
    names : dict of str to str, default=None
        How the arguments are called in error messages (the command line passes its own).

    Returns
    -------
    logits : ndarray of shape (n_samples, n_classes) or (n_samples,)
        The logits.
    labels : ndarray of shape (n_samples,), int64
        The labels.

    Raises
    ------
    InputFileError
        If a file cannot be read, an array is missing or of the wrong shape, a label lies
        outside the classes of the logits, the two have different lengths, or a CSV file of
        logits has a label column that disagrees with the labels' file.
    """
    chunk = read_checked(
        logits, labels, logits_key=logits_key, labels_key=labels_key, names=names, warn=False
    )
    return _logit_array(chunk), to_numpy(chunk.labels)


def _logit_array(chunk: Chunk) -> np.ndarray:
    """Return the logits of a checked chunk as a file holds them (binary ones 1-D)."""
    return to_numpy(chunk.values[:, 1] if chunk.binary_1d else chunk.values)


def read_checked(
    logits,
    labels=None,
    *,
    logits_key=None,
    labels_key=None,
    names=None,
    input_type: str = "logits",
    with_labels: bool = True,
    warn: bool = True,
) -> Chunk:
    """Read logits and their labels and check them once, as every fit checks its data.

    What :func:`read_logits_and_labels` reads, returned as the checked chunk of the one door
    for data (``distcal._batches``): a calibrator fits on it, and predicts on it, without
    checking it again (``calibrator.fit(chunk)``, ``calibrator.predict_proba(chunk)``; a
    part of it is ``chunk.take(rows)``).

    Parameters
    ----------
    logits, labels, logits_key, labels_key, names
        As for :func:`read_logits_and_labels`.
    input_type : {"logits", "probabilities"}, default="logits"
        What the file of logits holds (probabilities are checked as such, and turned into
        their log).
    with_labels : bool, default=True
        False reads the logits alone (``labels`` must be None).
    warn : bool, default=True
        Warn (``ProbabilityInputWarning``) when logits look like probabilities, as ``fit``
        does.

    Returns
    -------
    Chunk
        The checked logits, labels (None without them) and no weights.

    Raises
    ------
    InputFileError
        As :func:`read_logits_and_labels`; its cause is the check's own error.
    """
    names = _names(names)
    if not with_labels:
        values, _, _ = _logits_of(_source(logits, "logits", logits_key, names), names["logits"])
        return _check(
            values, None, (logits, None), names, input_type=input_type, with_labels=False, warn=warn
        )
    if labels is None:
        values, y = _read_both(logits, logits_key, labels_key, names)
        return _check(values, y, (logits, logits), names, input_type=input_type, warn=warn)
    z_source = _source(logits, "logits", logits_key, names)
    y_source = _source(labels, "labels", labels_key, names)
    # A first row that may be names or data is decided by the other file's count of rows
    # (when both are undecided, the logits by their own rule first).
    if isinstance(z_source, _Csv) and z_source.first is not None:
        z_source.settle(_rows(y_source))
    if isinstance(y_source, _Csv) and y_source.first is not None:
        y_source.settle(_rows(z_source))
    values, column, column_name = _logits_of(z_source, names["logits"])
    y = _labels_of(y_source, labels_key, names)
    try:
        chunk = _check(values, y, (logits, labels), names, input_type=input_type, warn=warn)
    except InputFileError as exc:
        n_values, n_labels = len(np.atleast_1d(values)), len(np.atleast_1d(y))
        if exc.argument != names["labels"] or n_labels == n_values:
            raise
        # The counts differ: say how each file's first row was read (a header or data).
        raise InputFileError(
            names["labels"],
            f"{labels} holds {n_labels} labels but {logits} holds {n_values} rows of logits"
            f"{_how_read(y_source, labels)}{_how_read(z_source, logits)}.",
        ) from exc.__cause__
    y = to_numpy(chunk.labels)
    if column is not None and not np.array_equal(column, y):
        row = int(np.argmax(column != y))
        raise InputFileError(
            names["labels"],
            f"{logits} has a label column {column_name!r} that disagrees with {labels} (first "
            f"at sample {row}: {column[row]:g} against {y[row]}); give the labels once: drop "
            f"{names['labels']} to use the column, or remove the column.",
        )
    return chunk


def write_probabilities(path, probabilities, *, names=None) -> Path:
    """Write probabilities to a ``.npy`` or ``.csv`` file (atomically), chosen by extension.

    Parameters
    ----------
    path : str or path
        The file; a CSV file has a header ``class_0, class_1, ...`` and every float written
        as the shortest text that reads back as the same value.
    probabilities : ndarray of shape (n_samples, n_classes)
        The probabilities.
    names : dict of str to str, default=None
        How the arguments are called in error messages (the command line passes its own).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputFileError
        If ``path`` is a directory or has another extension (argument ``output``).
    """
    argument = _names(names)["output"]
    path = Path(path)
    if path.is_dir():
        raise InputFileError(argument, f"{path} is a directory, not a file.")
    if path.suffix.lower() not in _WRITABLE:
        raise InputFileError(
            argument,
            f"{path} has the extension {path.suffix!r}; probabilities are written as .npy or .csv.",
        )
    probabilities = np.asarray(probabilities)
    if path.suffix.lower() == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, probabilities, allow_pickle=False)
        return atomic_write_bytes(path, buffer.getvalue())
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow([f"class_{j}" for j in range(probabilities.shape[1])])
    writer.writerows([float.__repr__(float(v)) for v in row] for row in probabilities)
    return atomic_write_text(path, text.getvalue())
