"""Logits and labels saved by other tools, read and checked; probabilities written back.

This is what ``distcal calibrate`` and ``distcal apply`` read and write. Four formats are
read, chosen by the file's extension:

- ``.npy``: one array;
- ``.npz`` and ``.safetensors``: named arrays. A key option chooses one; without it, the only
  array of the file, else the array called ``logits`` (or ``labels``);
- ``.csv``: a table of numbers, with or without a header row (a first row that is not all
  numbers, or that is ``0,1,...`` as pandas names unnamed columns). The logits are all its
  columns; the labels are its only column, or the column the key names.

One file may hold both the logits and the labels: an ``.npz`` or ``.safetensors`` file with
arrays ``logits`` and ``labels`` (or those the keys name), or a CSV file whose header names a
``label`` (or ``labels``) column, the other columns being the logits.

Logits are a 2-D array (samples x classes; column ``j`` is class ``j``) or 1-D binary decision
values; labels are integers in ``[0, n_classes)``, one per row of the logits. Everything is
checked before anything is computed, and every problem is an :class:`InputFileError` naming
the argument it concerns and what arrived.
"""

from __future__ import annotations

import csv
import io
import tokenize
import zipfile
from pathlib import Path

import numpy as np

from .._files import atomic_write_bytes, atomic_write_text

__all__ = [
    "InputFileError",
    "read_labels",
    "read_logits",
    "read_logits_and_labels",
    "write_probabilities",
]

_READABLE = (".npy", ".npz", ".safetensors", ".csv")
_WRITABLE = (".npy", ".csv")
_LABEL_COLUMNS = ("label", "labels")
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


def _parse_csv(path: Path, argument: str) -> tuple[list[str] | None, np.ndarray]:
    """Return the header (None if the first row is numbers) and the numbers of a CSV file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (UnicodeDecodeError, OSError) as exc:
        raise InputFileError(argument, f"{path} is not a readable CSV text file: {exc}") from None
    rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    if not rows:
        raise InputFileError(argument, f"{path} is empty.")

    def numbers(row):
        try:
            return [float(cell) for cell in row]
        except ValueError:
            return None

    first = [cell.strip() for cell in rows[0]]
    header = None
    # pandas names unnamed columns 0, 1, ...: such a first row is a header too
    if numbers(first) is None or (len(first) > 1 and first == [str(j) for j in range(len(first))]):
        header, rows = first, rows[1:]
    if not rows:
        raise InputFileError(argument, f"{path} has a header but no rows.")
    width = len(header) if header is not None else len(rows[0])
    values = []
    for line, row in enumerate(rows, start=2 if header is not None else 1):
        parsed = numbers(row)
        if parsed is None or len(parsed) != width:
            raise InputFileError(
                argument, f"{path}, row {line}: expected {width} numbers, got {','.join(row)!r}."
            )
        values.append(parsed)
    return header, np.array(values, dtype=np.float64)


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


def _named_arrays(path: Path, argument: str) -> dict[str, np.ndarray]:
    """Return the arrays of an ``.npz`` or ``.safetensors`` file by name (never unpickling)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        if path.suffix.lower() == ".npz":
            archive = np.load(path, allow_pickle=False)
            if isinstance(archive, np.ndarray):  # np.load reads an .npy whatever its name
                raise InputFileError(argument, f"{path} is an .npy array, not an .npz archive.")
            with archive:
                return {name: archive[name] for name in archive.files}
        return load(path.read_bytes())
    except (*_NUMPY_READ_ERRORS, SafetensorError) as exc:
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


def _read(path, role: str, key, names: dict) -> np.ndarray:
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
        header, values = _parse_csv(path, argument)
        if key is None:
            return values
        if role == "logits":
            raise InputFileError(
                key_argument, f"the logits of a CSV file ({path}) are all its columns."
            )
        if header is None or key not in header:
            columns = "no header" if header is None else f"the columns {header}"
            raise InputFileError(key_argument, f"{path} has no column {key!r}; it has {columns}.")
        return values[:, header.index(key)]
    return _choose(_named_arrays(path, argument), path, role, key, names)


def _check_logits(logits: np.ndarray, path, argument: str) -> np.ndarray:
    if logits.dtype.kind not in "biuf":
        raise InputFileError(
            argument, f"{path} holds an array of dtype {logits.dtype}; expected numbers."
        )
    if logits.ndim == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.ndim not in (1, 2) or len(logits) == 0 or 0 in logits.shape:
        raise InputFileError(
            argument,
            f"{path} holds an array of shape {logits.shape}; expected logits of shape "
            "(n_samples, n_classes), or 1-D binary decision values.",
        )
    if logits.dtype.kind != "f":
        logits = logits.astype(np.float64)
    bad = ~np.isfinite(logits)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise InputFileError(
            argument, f"{path} holds {int(bad.sum())} non-finite logits (the first in row {row})."
        )
    return logits


def _check_labels(labels, n_classes: int, path, argument: str, binary_1d=False) -> np.ndarray:
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise InputFileError(
            argument, f"{path} holds an array of shape {labels.shape}; expected 1-D labels."
        )
    if labels.dtype.kind not in "biuf":
        raise InputFileError(
            argument,
            f"{path} holds labels of dtype {labels.dtype}; expected integers 0..{n_classes - 1}, "
            "label j being the class of column j of the logits.",
        )
    if labels.dtype.kind == "f" and not np.array_equal(labels, np.round(labels)):
        raise InputFileError(argument, f"{path} holds labels that are not whole numbers.")
    outside = (labels < 0) | (labels >= n_classes)
    if outside.any():
        binary = ", one column of binary decision values" if binary_1d else ""
        raise InputFileError(
            argument,
            f"{path} holds labels outside 0..{n_classes - 1} (the logits have {n_classes} "
            f"classes{binary}): {sorted({int(v) for v in labels[outside]})[:5]}.",
        )
    return labels.astype(np.int64)


def _n_classes(logits: np.ndarray) -> int:
    return 2 if logits.ndim == 1 else logits.shape[1]


def read_logits(path, *, key=None, names=None) -> np.ndarray:
    """Read logits from a ``.npy``, ``.npz``, ``.safetensors`` or ``.csv`` file and check them.

    Parameters
    ----------
    path : str or path
        The file.
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
    names = _names(names)
    return _check_logits(_read(path, "logits", key, names), path, names["logits"])


def read_labels(path, n_classes: int, *, key=None, names=None) -> np.ndarray:
    """Read class labels from a file and check them against the number of classes.

    Parameters
    ----------
    path : str or path
        The file (``.npy``, ``.npz``, ``.safetensors`` or ``.csv``).
    n_classes : int
        The classes of the logits they label.
    key : str, default=None
        The array of an ``.npz`` or ``.safetensors`` file, or the column of a CSV file with a
        header (None: the only one, or ``labels``).
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
    return _check_labels(_read(path, "labels", key, names), n_classes, path, names["labels"])


def _read_both(path, logits_key, labels_key, names):
    """Return the logits and the labels of one file."""
    path = _check_path(path, names["logits"])
    suffix = path.suffix.lower()
    if suffix == ".npy":
        raise InputFileError(
            names["labels"], f"{path} holds one array (.npy); give the labels' file too."
        )
    if suffix == ".csv":
        header, table = _parse_csv(path, names["logits"])
        wanted = [labels_key] if labels_key is not None else list(_LABEL_COLUMNS)
        found = [name for name in wanted if header is not None and name in header]
        if not found:
            columns = "no header" if header is None else f"the columns {header}"
            raise InputFileError(
                names["labels_key"] if labels_key is not None else names["labels"],
                f"{path} has no labels column {' or '.join(map(repr, wanted))} ({columns}); "
                f"give the labels' file too, or name the column with {names['labels_key']}.",
            )
        if logits_key is not None:
            raise InputFileError(
                names["logits_key"], f"the logits of a CSV file ({path}) are its other columns."
            )
        column = header.index(found[0])
        values = _check_logits(np.delete(table, column, axis=1), path, names["logits"])
        y = table[:, column]
        return values, _check_labels(y, _n_classes(values), path, names["labels"], values.ndim == 1)
    arrays = _named_arrays(path, names["logits"])
    if len(arrays) < 2:
        raise InputFileError(
            names["labels"],
            f"{path} holds one array; give the labels' file too, or save the logits and the "
            "labels in it as 'logits' and 'labels'.",
        )
    values = _choose(arrays, path, "logits", logits_key, names)
    values = _check_logits(values, path, names["logits"])
    labels = _choose(arrays, path, "labels", labels_key, names)
    return values, _check_labels(
        labels, _n_classes(values), path, names["labels"], values.ndim == 1
    )


def read_logits_and_labels(logits, labels=None, *, logits_key=None, labels_key=None, names=None):
    """Read logits and their labels, from two files or from one that holds both.

    Parameters
    ----------
    logits : str or path
        The logits' file.
    labels : str or path, default=None
        The labels' file; None reads them from ``logits``: the array ``labels`` (or
        ``labels_key``) of an ``.npz`` or ``.safetensors`` file, or the column ``label`` or
        ``labels`` (or ``labels_key``) of a CSV file with a header, whose other columns are
        then the logits.
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
        outside the classes of the logits, or the two have different lengths.
    """
    names = _names(names)
    if labels is None:
        values, y = _read_both(logits, logits_key, labels_key, names)
    else:
        values = read_logits(logits, key=logits_key, names=names)
        y = _read(labels, "labels", labels_key, names)
        y = _check_labels(y, _n_classes(values), labels, names["labels"], values.ndim == 1)
    if len(y) != len(values):
        source = logits if labels is None else labels
        raise InputFileError(
            names["labels"],
            f"{source} holds {len(y)} labels but {logits} holds {len(values)} rows of logits.",
        )
    return values, y


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
