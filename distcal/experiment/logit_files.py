"""Logits and labels saved by other tools, read and checked; probabilities written back.

This is what ``distcal calibrate`` and ``distcal apply`` read and write. Four formats are
read, chosen by the file's extension:

- ``.npy``: one array;
- ``.npz`` and ``.safetensors``: named arrays. A key option chooses one; without it, the only
  array of the file, else the array called ``logits`` (or ``labels``). bfloat16 and float8
  arrays (which numpy has no type for) are read as float32, exactly;
- ``.csv``: a table of numbers, read by the rules of :mod:`distcal.experiment.logit_csv`.

One file may hold both the logits and the labels: an ``.npz`` or ``.safetensors`` file with
arrays ``logits`` and ``labels`` (or those the keys name), or a CSV file whose header names a
label column, the other columns being the logits.

How a CSV file is read is :mod:`distcal.experiment.logit_csv`'s docstring (and the user
guide's).

Logits are a 2-D array (samples x classes; column ``j`` is class ``j``) or 1-D binary decision
values; labels are integers in ``[0, n_classes)``, one per row of the logits. Everything is
checked before anything is computed, by the checks every fit uses (``distcal._batches``, the
one door for data: :func:`read_checked` returns what it let through), and every problem is an
:class:`InputFileError` naming the argument it concerns and what arrived.
"""

from __future__ import annotations

import csv
import io
import tokenize
import warnings
import zipfile
from pathlib import Path

import numpy as np

from .._batches import Chunk, check_batch
from .._device import to_numpy
from .._files import atomic_write_bytes, atomic_write_text
from .._validation import check_targets
from ..exceptions import InputFileError, ProbabilityInputWarning
from .logit_csv import (
    LABEL_COLUMNS,
    _Csv,
    _csv_labels,
    _read_csv,
)

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
_PYTHON_NAMES = {name: name for name in ("logits", "labels", "logits_key", "labels_key", "output")}


def _names(names) -> dict:
    return {**_PYTHON_NAMES, **(names or {})}


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
