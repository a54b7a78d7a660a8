"""Calibrators on the same logits: distcal against netcal and scikit-learn.

Two students per seed share one architecture and one split: one trained on a DM-distilled set
(10 images per class), one trained on the whole training split. Every calibrator is fitted on
the same held-out calibration split (logits, or softmax probabilities for netcal, or images for
Masked Temperature Scaling, which runs the network itself) and scored on the same test split.
Nothing is chosen on the test split: MTS picks its mask ratio by 5-fold cross-validation on the
calibration split.

Calibrators: distcal's ``TemperatureScaling`` and ``MaskedTemperatureScaling`` (with the model),
and its calibrators beyond a temperature (``--distcal``): vector scaling, matrix scaling and
Dirichlet calibration with ODIR (``reg_lambda`` chosen among 1e-4..1e-1 by 5-fold
cross-validated NLL on the calibration split), ensemble temperature scaling, histogram binning
(10 bins, netcal's default), isotonic regression, and vector scaling fitted on masked images
(``MaskedScaling`` with the model, mask ratio by the half-accuracy rule); netcal's
``TemperatureScaling``, ``HistogramBinning``, ``IsotonicRegression``, ``BetaCalibration``,
``ENIR`` and ``BBQ`` (given float64 probabilities); scikit-learn's ``CalibratedClassifierCV``
with ``method`` "sigmoid", "isotonic" and "temperature" around a ``FrozenEstimator`` whose
decision function returns the logits. netcal's methods run in a worker process, one time limit
per method; a method that runs out of time or raises is reported as such instead of ending the
run. A one-vs-rest method's output rows are checked: rows that do not sum to 1 are renormalised
here, and the note column says so.

Usage::

    python benchmarks/bench_calibrators.py --quick                  # smoke run, digits
    python benchmarks/bench_calibrators.py --seeds 3 --markdown docs/benchmarks/calibrators.md
    python benchmarks/bench_calibrators.py --dataset fashion-mnist --seeds 3 \\
        --markdown docs/benchmarks/calibrators_fashion_mnist.md
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
from _report import argument_parser, frozen_logits, write_markdown

from distcal.experiment.report import render_table
from distcal.experiment.schema import PARAMETERS, SCORES
from distcal.experiment.settings import DATASETS

MASK_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
NETCAL_METHODS = ("temperature", "histogram", "isotonic", "beta", "enir", "bbq")
SKLEARN_METHODS = ("sigmoid", "isotonic", "temperature")
DISTCAL_METHODS = (
    "vector",
    "matrix",
    "dirichlet",
    "ensemble",
    "histogram",
    "isotonic",
    "masked-vector",
)
DISTCAL_LABELS = {
    "vector": "distcal vector",
    "matrix": "distcal matrix (ODIR)",
    "dirichlet": "distcal Dirichlet (ODIR)",
    "ensemble": "distcal ensemble TS",
    "histogram": "distcal histogram",
    "isotonic": "distcal isotonic",
    "masked-vector": "distcal masked vector",
}
ODIR_LAMBDAS = (1e-4, 1e-3, 1e-2, 1e-1)
# How each library turns one-vs-rest outputs into a distribution (checked again here).
OVR_NOTE = {
    "netcal histogram": "one-vs-rest, rows normalised by netcal",
    "netcal isotonic": "one-vs-rest, rows normalised by netcal",
    "netcal ENIR": "one-vs-rest, rows normalised by netcal",
    "netcal BBQ": "one-vs-rest, rows normalised by netcal",
    "sklearn sigmoid": "one-vs-rest, rows normalised by sklearn",
    "sklearn isotonic": "one-vs-rest, rows normalised by sklearn",
    "netcal beta": "multinomial on log p and log(1-p) features (netcal's multiclass extension)",
    "distcal histogram": "one-vs-rest, rows normalised by distcal",
    "distcal isotonic": "one-vs-rest, rows normalised by distcal",
}
NETCAL_LABELS = {
    "temperature": "netcal TS",
    "histogram": "netcal histogram",
    "isotonic": "netcal isotonic",
    "beta": "netcal beta",
    "enir": "netcal ENIR",
    "bbq": "netcal BBQ",
}


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def as_distribution(proba) -> tuple[np.ndarray, str]:
    """Return float64 rows summing to 1, and a note when rows had to be fixed."""
    proba = np.array(proba, dtype=np.float64)
    notes = []
    bad = ~np.isfinite(proba).all(axis=1)
    if bad.any():
        notes.append(f"{int(bad.sum())} rows non-finite, set uniform")
        proba[bad] = 1.0 / proba.shape[1]
    sums = proba.sum(axis=1)
    off = np.abs(sums - 1) > 1e-6
    if off.any():
        zero = sums <= 0
        proba[zero] = 1.0 / proba.shape[1]
        proba[~zero] /= sums[~zero, None]
        notes.append(f"{int(off.sum())} rows renormalised here")
    return proba, "; ".join(notes)


def evaluate(y_true: np.ndarray, proba: np.ndarray) -> dict:
    """The table's metrics on the test split; NLL is not clipped (a zero for a label is inf)."""
    from distcal.experiment.scores import score_columns

    return {
        **score_columns(y_true, proba, classwise=True),
        "zero_for_label": int((proba[np.arange(len(y_true)), y_true] == 0).sum()),
    }


# ----------------------------------------------------------------------------- calibrators
def fit_distcal(cal_logits, y_cal, test_logits, seed):
    from distcal import TemperatureScaling
    from distcal.exceptions import DistcalWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DistcalWarning)
        start = time.perf_counter()
        ts = TemperatureScaling().fit(cal_logits, y_cal)
        fit_time = time.perf_counter() - start
    note = "; ".join(sorted({type(w.message).__name__ for w in caught}))
    return ts.predict_proba(test_logits), fit_time, ts.temperature_, note


def fit_distcal_masked(network, cal_images, y_cal, test_images, seed, n_masks):
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from distcal import MaskedTemperatureScaling
    from distcal.metrics import neg_ece_scorer

    search = GridSearchCV(
        MaskedTemperatureScaling(model=network, n_masks=n_masks, random_state=seed),
        {"mask_ratio": list(MASK_RATIOS)},
        scoring=neg_ece_scorer,
        cv=StratifiedKFold(5, shuffle=True, random_state=seed),
    )
    start = time.perf_counter()
    search.fit(cal_images, y_cal)
    fit_time = time.perf_counter() - start
    best = search.best_estimator_
    proba = best.predict_proba(test_images).numpy()
    return proba, fit_time, best.temperature_, best.mask_ratio


def fit_distcal_beyond(method, network, cal, y_cal, test, seed, n_masks):
    """One of distcal's calibrators beyond a temperature; ``cal``/``test``: (logits, images)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    import distcal.calibration as dc
    from distcal.metrics import neg_nll_scorer

    (cal_logits, cal_images), (test_logits, test_images) = cal, test
    if method == "masked-vector":
        # regime="training": the half-accuracy ratio applied to held-out images, to show what
        # masking beyond a temperature does there (the default would cross-fit the ratio).
        estimator = dc.MaskedScaling(
            dc.VectorScaling(), regime="training", model=network, n_masks=n_masks, random_state=seed
        )
        start = time.perf_counter()
        estimator.fit(cal_images, y_cal)
        fit_time = time.perf_counter() - start
        proba = estimator.predict_proba(test_images).numpy()
        return proba, fit_time, f"ratio {estimator.mask_ratio_:.2f} (half-accuracy rule)"
    estimator = {
        "vector": dc.VectorScaling(),
        "matrix": dc.MatrixScaling(),
        "dirichlet": dc.DirichletCalibration(),
        "ensemble": dc.EnsembleTemperatureScaling(),
        "histogram": dc.HistogramBinning(n_bins=10),  # netcal's default, for a like comparison
        "isotonic": dc.IsotonicCalibration(),
    }[method]
    note = ""
    start = time.perf_counter()
    if method in ("matrix", "dirichlet"):
        search = GridSearchCV(
            estimator,
            {"reg_lambda": list(ODIR_LAMBDAS)},
            scoring=neg_nll_scorer,
            cv=StratifiedKFold(5, shuffle=True, random_state=seed),
        ).fit(cal_logits, y_cal)
        estimator = search.best_estimator_
        note = f"lambda {estimator.reg_lambda:g}"
    else:
        estimator.fit(cal_logits, y_cal)
    fit_time = time.perf_counter() - start
    return estimator.predict_proba(test_logits), fit_time, note


def fit_sklearn(cal_logits, y_cal, test_logits, method):
    from sklearn.calibration import CalibratedClassifierCV

    frozen = frozen_logits(np.unique(y_cal))
    start = time.perf_counter()
    calibrated = CalibratedClassifierCV(frozen, method=method).fit(cal_logits, y_cal)
    fit_time = time.perf_counter() - start
    temperature = None
    if method == "temperature":
        temperature = 1.0 / float(calibrated.calibrated_classifiers_[0].calibrators[0].beta_)
    return calibrated.predict_proba(test_logits), fit_time, temperature


def _netcal_model(name):
    from netcal.binning import BBQ, ENIR, HistogramBinning, IsotonicRegression
    from netcal.scaling import BetaCalibration, TemperatureScaling

    return {
        "temperature": TemperatureScaling,
        "histogram": HistogramBinning,
        "isotonic": IsotonicRegression,
        "beta": BetaCalibration,
        "enir": ENIR,
        "bbq": BBQ,
    }[name]()


def netcal_worker(path: str, methods: list[str]) -> None:
    """Fit netcal's methods one after the other; one JSON line per method on stdout."""
    out = sys.stdout
    warnings.simplefilter("ignore")
    with contextlib.redirect_stdout(sys.stderr):  # netcal prints progress to stdout
        import netcal.binning
        import netcal.scaling  # noqa: F401
    data = np.load(path + ".npz")
    print(json.dumps({"ready": True}), file=out, flush=True)
    for name in methods:
        result = {"method": name}
        try:
            with contextlib.redirect_stdout(sys.stderr):
                model = _netcal_model(name)
                start = time.perf_counter()
                if name in ("temperature", "beta"):
                    model.fit(data["cal"], data["y_cal"], tensorboard=False)
                else:
                    model.fit(data["cal"], data["y_cal"])
                result["fit_time"] = time.perf_counter() - start
                proba = model.transform(data["test"])
            np.save(f"{path}.{name}.npy", np.asarray(proba, dtype=np.float64))
            if name == "temperature":
                # netcal's `temperature` holds the inverse temperature.
                result["temperature"] = 1.0 / float(np.ravel(model.temperature)[0])
        except Exception as exc:
            traceback.print_exc()  # to the stderr file, for a closer look
            result["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:80]
        print(json.dumps(result), file=out, flush=True)


def run_netcal(cal_proba, y_cal, test_proba, methods, timeout, workdir):
    """Run netcal's methods in worker processes; a method past ``timeout`` seconds is killed."""
    path = os.path.join(workdir, "netcal")
    np.savez(path + ".npz", cal=cal_proba, y_cal=y_cal, test=test_proba)
    results = {}
    pending = list(methods)
    while pending:
        with open(path + ".stderr", "w") as stderr:
            process = subprocess.Popen(
                [sys.executable, __file__, "--netcal-worker", path, *pending],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
            )
        lines = queue.Queue()

        def read(stream=process.stdout, lines=lines):
            for line in stream:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=read, daemon=True).start()
        try:
            ready = lines.get(timeout=300)
        except queue.Empty:
            ready = None
        if ready is None:
            process.kill()
            process.wait()
            reason = _last_line(path + ".stderr") or "worker did not start"
            for name in pending:
                results[name] = {"error": reason}
            break
        for name in list(pending):
            pending.remove(name)
            try:
                line = lines.get(timeout=timeout)
            except queue.Empty:
                results[name] = {"error": f"timeout ({timeout:.0f} s)"}
                process.kill()
                break
            if line is None:
                results[name] = {"error": "worker died: " + _last_line(path + ".stderr")}
                break
            result = json.loads(line)
            if "error" not in result:
                result["proba"] = np.load(f"{path}.{name}.npy")
            results[name] = result
        process.wait()
    return results


def _last_line(path: str) -> str:
    with open(path) as handle:
        lines = [line.strip() for line in handle if line.strip()]
    return lines[-1][:80] if lines else ""


# ----------------------------------------------------------------------------- students
def train_students(data, train, seed, args, recipe):
    """The DM-distilled student and the full-data student, and the shared normalisation."""
    from distcal.distill import normalize, stratified_split
    from distcal.experiment.pipeline import dm_trainer, student_classifier

    X_train, y_train = data.images[train], data.labels[train]
    timings = {}
    start = time.perf_counter()
    trainer = dm_trainer(recipe, args, random_state=seed).fit(X_train, y_train)
    timings["distil"] = time.perf_counter() - start
    start = time.perf_counter()
    distilled = student_classifier(
        recipe, width=args.width, epochs=args.epochs, random_state=seed
    ).fit(trainer.images_, trainer.labels_)
    timings["distilled student"] = time.perf_counter() - start
    if args.quick and len(train) > 5000:  # smoke runs train the full-data student on 5,000
        keep = stratified_split(y_train, [5000], random_state=seed)[0]
        X_train, y_train = X_train[keep], y_train[keep]
    start = time.perf_counter()
    full = student_classifier(
        recipe,
        width=args.width,
        epochs=args.full_epochs,
        random_state=seed,
        batch_size=args.full_batch_size,
        augment=args.full_augment,
    ).fit(normalize(X_train, trainer.mean_, trainer.std_), y_train)
    timings["full student"] = time.perf_counter() - start
    students = {"DM-distilled": distilled, "full data": full}
    return students, (trainer.mean_, trainer.std_), timings


def calibrate_student(student, cal_images, y_cal, test_images, y_test, seed, args, workdir):
    """Every calibrator on one student's logits; one row per calibrator."""
    cal_logits = student.decision_function(cal_images).numpy().astype(np.float64)
    test_logits = student.decision_function(test_images).numpy().astype(np.float64)
    rows = []

    def add(name, proba=None, fit_time=None, temperature=None, note="", error=None):
        row = {"calibrator": name, "note": note, "fit_time": fit_time, "temperature": temperature}
        if error is not None:
            row["error"] = error
        else:
            proba, fixed = as_distribution(proba)
            row.update(evaluate(y_test, proba))
            row["fixed"] = fixed
        rows.append(row)

    add("none", softmax(test_logits))
    proba, fit_time, temperature, note = fit_distcal(cal_logits, y_cal, test_logits, seed)
    add("distcal TS", proba, fit_time, temperature, note)
    proba, fit_time, temperature, ratio = fit_distcal_masked(
        student.network_, cal_images, y_cal, test_images, seed, args.n_masks
    )
    add("distcal MTS", proba, fit_time, temperature, note=f"ratio {ratio:.1f}")
    for method in args.distcal:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence notes of the CV folds
            proba, fit_time, note = fit_distcal_beyond(
                method,
                student.network_,
                (cal_logits, cal_images),
                y_cal,
                (test_logits, test_images),
                seed,
                args.n_masks,
            )
        temperature = None
        add(DISTCAL_LABELS[method], proba, fit_time, temperature, note)
    netcal = run_netcal(
        softmax(cal_logits), y_cal, softmax(test_logits), args.netcal, args.timeout, workdir
    )
    for name in args.netcal:
        result = netcal[name]
        add(
            NETCAL_LABELS[name],
            result.get("proba"),
            result.get("fit_time"),
            result.get("temperature"),
            error=result.get("error"),
        )
    for method in args.sklearn:
        try:
            proba, fit_time, temperature = fit_sklearn(cal_logits, y_cal, test_logits, method)
            add(f"sklearn {method}", proba, fit_time, temperature)
        except Exception as exc:
            add(f"sklearn {method}", error=f"{type(exc).__name__}: {exc}"[:80])
    return rows


def run(args):
    import torch

    from distcal.distill import load_dataset, normalize
    from distcal.experiment.pipeline import split_indices

    data = load_dataset(args.dataset)
    recipe = DATASETS[args.dataset]
    rows, timings = [], []
    with tempfile.TemporaryDirectory() as workdir:
        for seed in range(args.seeds):
            began = time.perf_counter()
            train, cal, test = split_indices(
                data, seed, sizes=(0.5, 0.25, 0.25), n_held_out=args.n_cal
            )
            students, (mean, std), timing = train_students(data, train, seed, args, recipe)
            cal_images = normalize(data.images[cal], mean, std)
            test_images = normalize(data.images[test], mean, std)
            y_cal, y_test = data.labels[cal].numpy(), data.labels[test].numpy()
            for kind, student in students.items():
                start = time.perf_counter()
                for row in calibrate_student(
                    student, cal_images, y_cal, test_images, y_test, seed, args, workdir
                ):
                    rows.append({"seed": seed, "student": kind, **row})
                timing[f"calibrators ({kind})"] = time.perf_counter() - start
            timing["seed"] = time.perf_counter() - began
            timings.append(timing)
            print(
                f"seed {seed}: "
                + ", ".join(f"{key} {value:.0f} s" for key, value in timing.items()),
                file=sys.stderr,
                flush=True,
            )
    sizes = {"train": len(train), "calibration": len(cal), "test": len(test)}
    context = (
        f"{args.dataset}; splits per seed (stratified): {sizes['train']} train, "
        f"{sizes['calibration']} calibration, {sizes['test']} test. DM-distilled student: DM "
        f"{args.iterations} iterations, ipc {args.ipc}, {args.batch_real} real images per class, "
        f"then {args.epochs} epochs on the {args.ipc * data.n_classes} images. Full-data "
        f"student: {args.full_epochs} epochs, batch {args.full_batch_size}, augment "
        f"{args.full_augment!r}"
        + (" on 5,000 training images (--quick)" if args.quick and sizes["train"] > 5000 else "")
        + f". Both ConvNet width {args.width} depth {recipe.depth}; student augment "
        f"{recipe.augment!r}. MTS: ratio in {MASK_RATIOS[0]}..{MASK_RATIOS[-1]} by 5-fold "
        f"CV (neg_ece_scorer) on the calibration split, {args.n_masks} mask(s) per image, fit "
        f"time includes the search. netcal: float64 probabilities, {args.timeout:.0f} s per "
        f"method. Mean ± std over {args.seeds} seed(s); {torch.get_num_threads()} torch threads; "
        + _versions()
    )
    return rows, timings, context


def _versions() -> str:
    import importlib.metadata

    names = ("distcal", "netcal", "scikit-learn", "torch")
    installed = []
    for name in names:
        try:
            installed.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            installed.append(f"{name} not installed")
    return ", ".join(installed)


# ----------------------------------------------------------------------------- report
# The package's titles and scales of the score columns, and this table's own: (title, scale).
TITLES = {key: (column.short, column.scale) for key, column in {**SCORES, **PARAMETERS}.items()}
TITLES.update(fit_time=("fit s", 1))
ORDER = ("accuracy", "ece15", "ece10", "cwece", "nll", "brier", "confidence", "temperature")
#: (key, title, scale, decimals): two decimals in percent, three otherwise.
COLUMNS = [(key, *TITLES[key], 2 if TITLES[key][1] == 100 else 3) for key in (*ORDER, "fit_time")]


def _cell(values, scale, digits):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    values = scale * np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).all():
        return "inf" if np.isposinf(values).any() else "nan"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"  # sample SD


def summarise(rows, n_seeds):
    header = ["student", "calibrator", *(title for _, title, _, _ in COLUMNS), "note"]
    lines = []
    for student in dict.fromkeys(r["student"] for r in rows):
        for name in dict.fromkeys(r["calibrator"] for r in rows if r["student"] == student):
            group = [r for r in rows if r["student"] == student and r["calibrator"] == name]
            ok = [r for r in group if "error" not in r]
            notes = []
            if name in OVR_NOTE:
                notes.append(OVR_NOTE[name])
            errors = sorted({r["error"] for r in group if "error" in r})
            if errors:
                failed = len(group) - len(ok)
                prefix = "" if not ok else f"{failed}/{len(group)} seeds: "
                notes.append(prefix + " | ".join(errors))
            if name == "distcal MTS":
                notes.append("ratio by CV: " + ", ".join(r["note"][6:] for r in ok))
            else:
                notes += sorted({r["note"] for r in ok if r["note"]})
            notes += sorted({r["fixed"] for r in ok if r["fixed"]})
            zeros = [r["zero_for_label"] for r in ok]
            if any(zeros):
                spread = (
                    f"{min(zeros)}" if min(zeros) == max(zeros) else f"{min(zeros)}-{max(zeros)}"
                )
                notes.append(
                    f"p = 0 for the label on {spread} test samples "
                    f"(NLL inf in {sum(z > 0 for z in zeros)}/{len(ok)} seeds)"
                )
            if not ok:
                cells = ["-"] * len(COLUMNS)
                cells[-1] = _cell([r["fit_time"] for r in group], 1, 3)
            else:
                cells = [
                    _cell([r[key] for r in ok], scale, digits) for key, _, scale, digits in COLUMNS
                ]
            lines.append([student, name, *cells, "; ".join(notes)])
    return header, lines


def timing_summary(timings) -> str:
    keys = list(timings[0])
    return "Run time per seed (mean, s): " + ", ".join(
        f"{key} {np.mean([t[key] for t in timings]):.0f}" for key in keys
    )


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument("--dataset", default="digits", choices=list(DATASETS))
    parser.add_argument("--seeds", type=int, default=3, help="repeats with seeds 0..n-1")
    parser.add_argument("--quick", action="store_true", help="a smoke run (about a minute)")
    parser.add_argument("--ipc", type=int, default=10, help="distilled images per class")
    parser.add_argument("--iterations", type=int, default=1000, help="DM iterations")
    parser.add_argument("--batch-real", type=int, default=64, help="DM real images per class")
    parser.add_argument("--width", type=int, default=32, help="ConvNet width")
    parser.add_argument("--epochs", type=int, default=300, help="distilled-student epochs")
    parser.add_argument("--full-epochs", type=int, help="full-data student epochs")
    parser.add_argument("--full-batch-size", type=int, help="full-data student batch size")
    parser.add_argument("--full-augment", help="full-data student augmentation")
    parser.add_argument("--n-masks", type=int, help="MTS masked copies per image")
    parser.add_argument(
        "--n-cal", type=int, default=5000, help="calibration images (Fashion-MNIST)"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds per netcal method")
    parser.add_argument(
        "--distcal", nargs="*", default=list(DISTCAL_METHODS), choices=DISTCAL_METHODS
    )
    parser.add_argument("--netcal", nargs="*", default=list(NETCAL_METHODS))
    parser.add_argument("--sklearn", nargs="*", default=list(SKLEARN_METHODS))
    parser.add_argument("--json", type=Path, help="write every seed's rows here")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown here")
    parser.add_argument("--netcal-worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.netcal_worker:
        netcal_worker(args.netcal_worker[0], args.netcal_worker[1:])
        return
    if args.netcal and importlib.util.find_spec("netcal") is None:
        parser.error(
            "--netcal: netcal is not installed; pip install 'distcal[netcal]', or pass "
            "--netcal with no method names to leave it out"
        )
    for name in args.netcal:
        if name not in NETCAL_METHODS:
            parser.error(f"--netcal: unknown method {name!r}; valid: {list(NETCAL_METHODS)}")
    for name in args.sklearn:
        if name not in SKLEARN_METHODS:
            parser.error(f"--sklearn: unknown method {name!r}; valid: {list(SKLEARN_METHODS)}")
    recipe = DATASETS[args.dataset]
    args.full_epochs = args.full_epochs or recipe.full_data_epochs
    args.full_batch_size = args.full_batch_size or recipe.full_data_batch_size
    args.full_augment = args.full_augment or recipe.full_data_augment
    args.n_masks = args.n_masks or recipe.n_masks
    if args.quick:
        args.iterations = min(args.iterations, 50)
        args.epochs = min(args.epochs, 50)
        args.full_epochs = min(args.full_epochs, 5 if args.dataset == "digits" else 1)
        args.seeds = min(args.seeds, 1)
        args.timeout = min(args.timeout, 60)
    began = time.perf_counter()
    rows, timings, context = run(args)
    total = time.perf_counter() - began
    header, lines = summarise(rows, args.seeds)
    times = f"{timing_summary(timings)}; total {total / 60:.1f} min"
    print(context)
    print(render_table(header, lines))
    print(times)
    if args.json:
        args.json.write_text(json.dumps({"context": context, "rows": rows}, indent=1))
    if args.markdown:
        table = render_table(header, lines, markdown=True)
        write_markdown(args.markdown, __file__, argv, context, table, times)


if __name__ == "__main__":
    main()
