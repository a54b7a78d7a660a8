"""Calibrating saved logits: what ``distcal calibrate`` and ``distcal apply`` do.

:func:`calibrate_files` reads logits and labels written by any tool
(:mod:`~distcal.experiment.logit_files`), splits them into a calibration part and a held-out
part (stratified, seeded), fits one calibrator on the first, scores the probabilities before
and after calibration on the second with bootstrap intervals and a paired interval of the
change, and writes the calibrator file, a reliability diagram (before and after on one axes)
and the scores. :func:`apply_calibrator` applies a saved calibrator to new logits and writes
the probabilities. Everything is checked before anything is written: the files, the options,
and the output folder (results of an earlier run in it are replaced only with ``force``). The
three files are written together or not at all (:func:`distcal._files.staged_folder`): into a
new folder beside the output folder, moved in once all are written.
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .._batches import Chunk, check_batch
from .._device import to_numpy
from .._files import atomic_write, atomic_write_text, staged_folder
from .._softmax import softmax
from .._validation import check_label_probabilities
from ..calibration import load_calibrator, registered_calibrators, save_calibrator
from ..metrics import (
    bootstrap_ci,
    bootstrap_difference,
    calibration_test,
    debiased_calibration_error_ci,
    debiased_calibration_error_difference,
)
from .logit_files import (
    InputFileError,
    _check_path,
    _names,
    read_checked,
    write_probabilities,
)
from .report import format_cell, render_table
from .schema import SCORES

__all__ = ["METHODS", "apply_calibrator", "calibrate_files", "format_report"]


class _Methods(Mapping):
    """Short name -> registered class name, read from the registry at every look-up.

    A calibrator reaches the command line by declaring ``_cli_name`` in its own file (the base
    class checks that the name is a word and unique); this table lists every registered
    calibrator that declares one, in the order they were defined, so a calibrator defined
    after distcal was imported is offered too, and no list of names is kept here.
    """

    def _table(self) -> dict:
        known = registered_calibrators().items()
        return {cls._cli_name: name for name, cls in known if cls._cli_name is not None}

    def __getitem__(self, key):
        return self._table()[key]

    def __iter__(self):
        return iter(self._table())

    def __len__(self):
        return len(self._table())

    def __repr__(self):
        return repr(self._table())


#: The calibrators the command fits on logits alone: short name -> registered class name, a
#: read-only view of the registered calibrators' ``_cli_name`` declarations.
METHODS = _Methods()


def _takes_log(method: str) -> bool:
    """Whether the method fits on the log of probabilities (binning calibrators do not)."""
    return registered_calibrators()[METHODS[method]]._fits_log_probabilities


#: The resamples the 95% intervals accept (those of distcal.metrics.bootstrap_ci): at least
#: 1 / (1 - 0.95) = 20, so that some lie beyond an interval (one resample printed an
#: "interval" that excluded its estimate), and at most 100,000 (1e8 asked for 149 GiB).
RESAMPLES = (20, 100_000)


def check_resamples(n_resamples, argument: str = "n_resamples") -> int:
    """Return ``n_resamples`` if :data:`RESAMPLES` allows it; raise an InputFileError if not.

    Parameters
    ----------
    n_resamples : int
        The number of resamples asked for.
    argument : str, default="n_resamples"
        What the argument is called in the error.

    Returns
    -------
    int
        ``n_resamples``.
    """
    low, high = RESAMPLES
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int | np.integer):
        valid = False
    else:
        valid = low <= n_resamples <= high
    if not valid:
        raise InputFileError(
            argument,
            f"expected an integer in [{low}, {high}] (a 95% interval needs {low} resamples to "
            f"leave some beyond it; more than {high:,} add nothing but memory); got "
            f"{n_resamples!r}.",
        )
    return int(n_resamples)


#: File names written in the output folder.
CALIBRATOR_FILE = "calibrator.safetensors"
FIGURE_FILE = "reliability.png"
SCORES_FILE = "scores.json"
RESULT_FILES = (CALIBRATOR_FILE, FIGURE_FILE, SCORES_FILE)


#: The headline: the debiased RMS calibration error over 15 bins, with the interval whose
#: coverage of the true error was measured (benchmarks/bench_ece_coverage.py), and the p-value
#: of the consistency-resampling test of calibration.
HEADLINE = ("calibration_error", "RMS calibration error %", 100, 2)

#: The other scores (:data:`~distcal.experiment.schema.SCORES`), each with the percentile
#: bootstrap interval of the statistic itself. The plug-in ECE-15 is biased upwards, most where
#: the error is small, and so is its interval, which is labelled as the plug-in's.
BOOTSTRAP_SCORES = (
    SCORES["accuracy"],
    replace(SCORES["ece15"], title=SCORES["ece15"].title + " (plug-in)"),
    SCORES["nll"],
    SCORES["brier"],
)


#: The affine calibrators' work per L-BFGS iteration, in values touched or multiply-adds, as
#: a function of the samples fitted on and the classes; and the most the command accepts. They
#: take a few hundred iterations (vector scaling: 374 on 5,000 x 1,000 logits), where
#: temperature scaling takes a few passes; past these limits a fit on a CPU runs for tens of
#: minutes (vector) or hours (matrix, Dirichlet: a 1,000 x 1,000 matrix times the logits at
#: every step), which looked like a hang (issue 22). docs/benchmarks/calibrate_command.md has
#: the measurements.
FIT_WORK = {
    "vector": (lambda n, k: n * k, 2e7, "a pass over the {n} x {k} logits", "tens of minutes"),
    "matrix": (
        lambda n, k: n * k * k,
        2e9,
        "the {n} x {k} logits times a {k} x {k} matrix",
        "hours",
    ),
    "dirichlet": (
        lambda n, k: n * k * k,
        2e9,
        "the {n} x {k} log-probabilities times a {k} x {k} matrix",
        "hours",
    ),
}


def _check_fit_size(method: str, n_fit: int, n_classes: int, names: dict) -> None:
    """Refuse an affine fit too large for the command, naming its size and what to do."""
    if method not in FIT_WORK:
        return
    work, limit, what, duration = FIT_WORK[method]
    if work(n_fit, n_classes) <= limit:
        return
    name = METHODS[method]
    n_params = 2 * n_classes if method == "vector" else n_classes * (n_classes + 1)
    raise InputFileError(
        names["method"],
        f"{name} of {n_classes} classes fits {n_params:,} parameters by L-BFGS on {n_fit} "
        f"samples; each of its few hundred iterations is {what.format(n=n_fit, k=n_classes)} "
        f"({work(n_fit, n_classes):.1e} operations; the command's limit is {limit:.0e}), "
        f"{duration} on a CPU. Use temperature scaling ({names['method']} ts: one parameter, "
        f"a few passes), fit on fewer samples (a larger {names['test_size']}), or fit {name} "
        "in Python, on a GPU.",
    )


def _make_calibrator(method: str, seed: int):
    cls = registered_calibrators()[METHODS[method]]
    params = {"random_state": seed} if "random_state" in cls().get_params() else {}
    return cls(**params)


def _split(y: np.ndarray, test_size: float, stratify: bool, seed: int, names: dict):
    """Return the indices to fit on and those to score on, and how they were chosen."""
    n = len(y)
    everything = np.arange(n)
    if test_size == 0:
        return everything, everything, f"fitted and scored on all {n} samples (in-sample)"
    from sklearn.model_selection import train_test_split

    option = names["test_size"]
    n_test = int(np.ceil(test_size * n))
    if n_test < 2 or n - n_test < 2:
        raise InputFileError(
            option,
            f"{test_size} of {n} samples leaves {n - n_test} to fit on and {n_test} to score on;"
            " each part needs at least 2.",
        )
    if stratify:
        classes, counts = np.unique(y, return_counts=True)
        if counts.min() < 2 or n_test < len(classes) or n - n_test < len(classes):
            raise InputFileError(
                option,
                f"a stratified split of {n} samples of {len(classes)} classes (the rarest, "
                f"class {classes[counts.argmin()]}, has {counts.min()}) into {n - n_test} and "
                f"{n_test} is impossible; use {names['split']}, or {option} 0 to fit "
                "and score on all the samples.",
            )
    fit, test = train_test_split(
        everything, test_size=n_test, stratify=y if stratify else None, random_state=seed
    )
    kind = "stratified" if stratify else "random"
    return (
        np.sort(fit),
        np.sort(test),
        f"fitted on {len(fit)} samples, scored on the other {len(test)} ({kind} split, seed "
        f"{seed})",
    )


def _probabilities(data, input_type: str = "logits") -> np.ndarray:
    """Return the softmax of logits (the probabilities before calibration), in float64.

    ``data`` is checked data (what :func:`read_checked` returned, or a part of it), or an
    array of logits, which is checked first.
    """
    if not isinstance(data, Chunk):
        names = ("logits", "labels", "sample_weight")
        data = check_batch(data, input_type=input_type, with_labels=False, names=names)
    return to_numpy(softmax(data.values.to(torch.float64)))


def _score(y, before, after, n_resamples: int, seed: int, verbose: bool = False) -> list[dict]:
    """Score before and after with 95% intervals, and their paired change.

    The resamples run on one torch thread: thousands of small metric evaluations are
    dominated by the cost of starting threads, and one thread makes the intervals the same
    on every machine.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        headline = _headline(y, before, after, n_resamples, seed, verbose)
        return [headline, *_bootstrap_scores(y, before, after, n_resamples, seed, verbose)]
    finally:
        torch.set_num_threads(previous)


def _headline(y, before, after, n_resamples: int, seed: int, verbose: bool) -> dict:
    """Score the debiased calibration error before and after, its change, and the tests."""
    key, title, scale, digits = HEADLINE
    entry = {
        "score": key,
        "title": title,
        "scale": scale,
        "digits": digits,
        "interval": "debiased",
    }
    options = {"n_bins": 15, "n_resamples": n_resamples, "random_state": seed, "verbose": verbose}
    for name, proba in (("before", before), ("after", after)):
        ci = debiased_calibration_error_ci(y, proba, **options)
        test = calibration_test(y, proba, **options)
        entry[name] = {
            "estimate": ci.estimate,
            "low": ci.low,
            "high": ci.high,
            "pvalue": test.pvalue,
        }
    diff = debiased_calibration_error_difference(y, after, before, **options)
    entry["change"] = {"estimate": diff.estimate, "low": diff.low, "high": diff.high}
    return entry


def _bootstrap_scores(y, before, after, n_resamples: int, seed: int, verbose: bool) -> list[dict]:
    rows = []
    options = {"n_resamples": n_resamples, "random_state": seed, "verbose": verbose}
    for score in BOOTSTRAP_SCORES:
        metric = score.function
        entry = {
            "score": score.key,
            "title": score.title,
            "scale": score.scale,
            "digits": score.digits,
            "interval": "percentile",
        }
        for name, proba in (("before", before), ("after", after)):
            estimate = float(metric(y, proba))
            if np.isfinite(estimate):
                ci = bootstrap_ci(metric, y, proba, **options)
                entry[name] = {"estimate": estimate, "low": ci.low, "high": ci.high}
            else:  # an NLL of a zero probability on a true class: no interval
                entry[name] = {"estimate": estimate, "low": None, "high": None}
        if np.isfinite(entry["before"]["estimate"]) and np.isfinite(entry["after"]["estimate"]):
            diff = bootstrap_difference(metric, y, after, before, **options)
            entry["change"] = {"estimate": diff.estimate, "low": diff.low, "high": diff.high}
        else:
            entry["change"] = None
        rows.append(entry)
    return rows


def _json_ready(value):
    """``value`` with every non-finite float written as a string ("inf", "-inf", "nan").

    JSON has no infinity: ``json.dumps`` writes ``Infinity``, which strict readers (and other
    languages) refuse. The strings keep the value; ``float("inf")`` reads it back.
    """
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def _fitted(calibrator) -> dict:
    """Return the scalar fitted attributes worth printing (temperature, mask ratio, ...)."""
    keys = ("temperature_", "mask_ratio_", "regime_", "converged_")
    return {key: getattr(calibrator, key) for key in keys if hasattr(calibrator, key)}


def _draw(path: Path, y, before, after, name: str) -> Path | None:
    """Draw before and after on one reliability diagram; None without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..plotting import ReliabilityDisplay

    display = ReliabilityDisplay.from_predictions(
        y, {"uncalibrated": before, f"calibrated ({name})": after}, n_bins=15
    )
    try:
        atomic_write(path, partial(display.figure_.savefig, dpi=150, format="png"))
    finally:
        plt.close(display.figure_)
    return path


def calibrate_files(
    logits,
    labels=None,
    *,
    method: str = "ts",
    output="distcal-calibration",
    test_size: float = 0.5,
    stratify: bool = True,
    seed: int = 0,
    n_resamples: int = 1000,
    input_type: str = "logits",
    logits_key=None,
    labels_key=None,
    force: bool = False,
    names=None,
    verbose: bool = False,
) -> dict:
    """Fit a calibrator on saved logits and labels, score it, and write it with its diagram.

    Parameters
    ----------
    logits : str or path
        The logits' file (see :mod:`~distcal.experiment.logit_files` for the formats).
    labels : str or path, default=None
        The labels' file; None reads them from ``logits``.
    method : str, default="ts"
        A key of :data:`METHODS` (``"ts"``: temperature scaling).
    output : str or path, default="distcal-calibration"
        The folder of ``calibrator.safetensors``, ``reliability.png`` (with matplotlib) and
        ``scores.json``; created if needed. The three are written together or not at all.
    test_size : float, default=0.5
        The share of samples held out to score on, in ``[0, 1)``; the calibrator is fitted on
        the rest. 0 fits and scores on all samples (in-sample scores flatter a calibrator).
    stratify : bool, default=True
        Split with the same class proportions in both parts (else at random).
    seed : int, default=0
        Seeds the split, the bootstrap and the calibrator's own randomness (masks); an
        integer in ``[0, 2**32 - 1]``.
    n_resamples : int, default=1000
        Bootstrap resamples of the 95% intervals (and label sets of the calibration tests), in
        [20, 100000].
    input_type : {"logits", "probabilities"}, default="logits"
        What the file holds.
    logits_key, labels_key : str, default=None
        Names of the arrays in ``.npz``/``.safetensors`` files, or of the labels' CSV column.
    force : bool, default=False
        Replace the results of an earlier run in ``output``; without it, an ``output`` that
        holds one of the three files is refused before anything is read.
    names : dict of str to str, default=None
        How the arguments are called in error messages (the command line passes its own).
    verbose : bool, default=False
        Show progress bars of the resamples.

    Returns
    -------
    dict
        ``method``, ``calibrator`` (the fitted calibrator), ``fitted`` (its temperature and
        such), ``split`` (what was fitted on what), ``n_fit``, ``n_scored``, ``scores``
        and ``files`` (what was written; ``figure`` None without matplotlib). ``scores`` is a
        list of rows, each with ``before``, ``after`` and ``change`` (an estimate with a 95%
        interval); the first is the debiased calibration error (``interval`` "debiased": the
        interval whose coverage of the true error was measured, and a ``pvalue`` of the test
        of calibration before and after), the others (accuracy, the plug-in ECE-15, NLL,
        Brier) have percentile bootstrap intervals of the statistic itself (``interval``
        "percentile").

    Raises
    ------
    InputFileError
        If a file or an option (``method``, ``test_size``, ``seed``) does not fit, or
        ``output`` holds earlier results and ``force`` is False; nothing is written then.
    ValueError
        If the calibrator cannot be fitted on the data.
    """
    names = {
        "test_size": "test_size",
        "split": "stratify=False",
        "method": "method",
        "seed": "seed",
        "force": "force=True",
        "input_type": "input_type='probabilities'",
        "n_resamples": "n_resamples",
        **_names(names),
    }
    if method not in METHODS:
        raise InputFileError(names["method"], f"expected one of {list(METHODS)}; got {method!r}.")
    if not 0 <= test_size < 1:
        raise InputFileError(names["test_size"], f"expected a share in [0, 1); got {test_size}.")
    _check_seed(seed, names)
    check_resamples(n_resamples, names["n_resamples"])
    output = _check_output(output, force, names)
    # Read and checked once (the one door for data); the fit and the predictions take the
    # checked chunk, so nothing is checked again.
    data = read_checked(
        logits,
        labels,
        logits_key=logits_key,
        labels_key=labels_key,
        names=names,
        input_type=input_type,
    )
    if input_type == "probabilities" and _takes_log(method):
        _check_label_probabilities(data, logits, names)
    y = to_numpy(data.labels)
    fit, scored, split = _split(y, test_size, stratify, seed, names)
    _check_fit_size(method, len(fit), data.values.shape[1], names)
    calibrator = _make_calibrator(method, seed)
    if input_type != "logits":
        calibrator.set_params(input_type=input_type)
    calibrator.fit(data.take(fit), None)  # checked data carry their labels
    before = _probabilities(data.take(scored))
    after = np.asarray(calibrator.predict_proba(data.take(scored)), dtype=np.float64)
    scores = _score(y[scored], before, after, n_resamples, seed, verbose)
    report = {
        "method": method,
        "calibrator": calibrator,
        "fitted": _fitted(calibrator),
        "split": split,
        "n_fit": len(fit),
        "n_scored": len(scored),
        "n_resamples": n_resamples,
        "scores": scores,
    }
    with staged_folder(output, RESULT_FILES) as folder:
        files = {"calibrator": save_calibrator(calibrator, folder / CALIBRATOR_FILE)}
        files["figure"] = _draw(
            folder / FIGURE_FILE, y[scored], before, after, type(calibrator).__name__
        )
        saved = {key: value for key, value in report.items() if key != "calibrator"}
        saved["calibrator_class"] = type(calibrator).__name__
        text = json.dumps(_json_ready(saved), indent=1, allow_nan=False)
        files["scores"] = atomic_write_text(folder / SCORES_FILE, text + "\n")
    report["files"] = {key: None if p is None else output / p.name for key, p in files.items()}
    return report


def _check_label_probabilities(data, path, names: dict) -> None:
    """Refuse probabilities that give a label exactly 0, naming the file's rows.

    No fit on their log is defined (see ``distcal._validation.check_label_probabilities``).
    ``data`` are the checked probabilities (as their log) and labels.
    """
    try:
        check_label_probabilities(
            data.logits, data.labels, owner=names["input_type"], name=str(path)
        )
    except ValueError as exc:
        raise InputFileError(names["logits"], str(exc)) from None


def _check_seed(seed, names: dict) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise InputFileError(
            names["seed"], f"expected an integer from 0 to 2**32 - 1; got {seed!r}."
        )


def _check_output(output, force: bool, names: dict) -> Path:
    """Refuse, before anything is read, an output that cannot take the results.

    A file, a folder with the results of an earlier run (unless ``force``), or a folder that
    cannot be written in.
    """
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InputFileError(names["output"], f"{output} is a file, not a folder.")
    found = [name for name in RESULT_FILES if (output / name).exists()]
    if found and not force:
        raise InputFileError(
            names["output"],
            f"{output} already holds the results of a run ({', '.join(found)}); pass "
            f"{names['force']} to replace them, or choose another folder.",
        )
    # The files are staged beside the folder, then moved in: both places must be writable.
    existing = output
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    folders = {existing, output.parent} if output.exists() else {existing}
    for folder in folders:
        if folder.exists() and not os.access(folder, os.W_OK | os.X_OK):
            raise InputFileError(names["output"], f"cannot write in {folder}: permission denied.")
    return output


def _interval(entry, scale: int, digits: int) -> str:
    if entry is None:
        return "-"
    text = format_cell(entry["estimate"], scale=scale, digits=digits)
    if entry["low"] is None:
        return text
    low = format_cell(entry["low"], scale=scale, digits=digits)
    high = format_cell(entry["high"], scale=scale, digits=digits)
    return f"{text} [{low}, {high}]"


def _pvalue(entry) -> str:
    value = entry["pvalue"]
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


#: What the command prints below its table: how to read the two calibration errors.
LEGEND = (
    "RMS calibration error: the root-mean-square gap between accuracy and confidence over 15 "
    "bins, debiased, with a 95% interval whose coverage of the true error was measured "
    "(docs/ece_intervals.md); calibrated?: the p-value of the test that the model is calibrated "
    "(labels drawn from its probabilities). The other rows have percentile bootstrap intervals "
    "of the statistic itself: ECE-15 (plug-in) is biased upwards where the error is small, and "
    "so is its interval."
)


def format_report(report: dict) -> str:
    """Render what :func:`calibrate_files` returns as the command prints it.

    Parameters
    ----------
    report : dict
        What :func:`calibrate_files` returns.

    Returns
    -------
    str
        The split, the table of scores (before, after, change, with 95% intervals; the
        calibration error's test of calibration below it), how to read them, the fitted values
        and the files written.
    """
    name = type(report["calibrator"]).__name__
    lines = [
        f"{name} ({report['method']}): {report['split']}.",
        f"95% intervals over the {report['n_scored']} scored samples "
        f"({report['n_resamples']} resamples); change = after - before, paired.",
        "",
    ]
    header = ["score", "before", "after", "change"]
    rows = []
    for entry in report["scores"]:
        rows.append(
            [
                entry["title"],
                *(
                    _interval(entry[part], entry["scale"], entry["digits"])
                    for part in ("before", "after", "change")
                ),
            ]
        )
        if entry.get("interval") == "debiased":
            rows.append(["  calibrated?", _pvalue(entry["before"]), _pvalue(entry["after"]), ""])
    table = render_table(header, rows, align=["left", "right", "right", "right"])
    lines += [line.rstrip() for line in table.splitlines()]
    lines += ["", textwrap.fill(LEGEND, width=100)]
    if report["fitted"]:
        fitted = ", ".join(
            f"{key.rstrip('_')} {value:.4g}"
            if isinstance(value, float)
            else f"{key.rstrip('_')} {value}"
            for key, value in report["fitted"].items()
        )
        lines += ["", f"fitted: {fitted}"]
    files = report.get("files", {})
    if files:
        lines.append("")
        lines.append(f"calibrator: {files['calibrator']}")
        if files["figure"] is None:
            lines.append('reliability diagram: skipped (pip install "distcal[plot]" to draw it)')
        else:
            lines.append(f"reliability diagram: {files['figure']}")
        lines.append(f"scores: {files['scores']}")
    return "\n".join(lines)


def apply_calibrator(calibrator, logits, output, *, logits_key=None, names=None) -> np.ndarray:
    """Apply a saved calibrator to saved logits and write the probabilities.

    Parameters
    ----------
    calibrator : str or path
        A file of :func:`~distcal.calibration.save_calibrator` (of a calibrator without a
        model).
    logits : str or path
        The logits' file, with as many columns as the calibrator was fitted on.
    output : str or path
        Where to write the probabilities: ``.npy`` or ``.csv`` (one column per class).
    logits_key : str, default=None
        The array of an ``.npz`` or ``.safetensors`` file.
    names : dict of str to str, default=None
        How the arguments are called in error messages (the command line passes its own).

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        The probabilities written.

    Raises
    ------
    InputFileError
        If a file does not fit: not a calibrator, logits of another width, an output of
        another extension (nothing is written then).
    """
    names = {"calibrator": "calibrator", **_names(names)}
    output = Path(output)
    if output.is_dir():
        raise InputFileError(names["output"], f"{output} is a directory, not a file.")
    for source, argument in ((logits, "logits"), (calibrator, "calibrator")):
        if output.exists() and Path(source).exists() and os.path.samefile(output, source):
            raise InputFileError(
                names["output"],
                f"{output} is the file given as {names[argument]}; writing the probabilities "
                "there would destroy it. Choose another output file.",
            )
    if output.suffix.lower() not in (".npy", ".csv"):
        raise InputFileError(
            names["output"],
            f"{output} has the extension {output.suffix!r}; probabilities are written as .npy "
            "or .csv.",
        )
    path = _check_path(calibrator, names["calibrator"], suffixes=(Path(calibrator).suffix,))
    try:
        fitted = load_calibrator(path)
    except ValueError as exc:
        raise InputFileError(names["calibrator"], str(exc)) from None
    z = read_checked(
        logits,
        logits_key=logits_key,
        names=names,
        input_type=getattr(fitted, "input_type", "logits"),
        with_labels=False,
    )
    if z.n_features != fitted.n_features_in_:
        raise InputFileError(
            names["logits"],
            f"{logits} holds logits of {z.n_features} column(s); the calibrator {path} was "
            f"fitted on {fitted.n_features_in_}.",
        )
    probabilities = np.asarray(fitted.predict_proba(z))
    write_probabilities(output, probabilities, names=names)
    return probabilities
