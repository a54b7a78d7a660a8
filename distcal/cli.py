"""The ``distcal`` command line: argument parsing and wiring only."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

_RUN_HELP = (
    "distil the training split (plain DM and MDT), train plain and mixup students on the "
    "distilled sets and on random real images of the same size, calibrate each (none, TS, "
    "masked TS; on held-out data and on the training images only) and score them on the test "
    "split"
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(
            f"expected an integer from 0 to 2**32 - 1 (4294967295), got {text!r}"
        )
    return value


def _resamples(text: str) -> int:
    from .experiment.calibrate import InputFileError, check_resamples

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    try:
        return check_resamples(value, "")
    except InputFileError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _device(text: str) -> str:
    from .experiment.runner import check_device

    try:
        check_device(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _folder(text: str) -> Path:
    """Return a folder argument: one that may not exist yet, but is not a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a file, not a folder")
    return path


def _demo_ipc(text: str) -> int:
    from .experiment.demo import max_ipc
    from .experiment.settings import DEMO_HELD_OUT

    value = _positive_int(text)
    limit = max_ipc()
    if value > limit:
        raise argparse.ArgumentTypeError(
            f"at most {limit} images per class fit the demo's split of digits (ipc x 10 to "
            f"train on, {DEMO_HELD_OUT} held out, at least one per class to test on); got {text!r}"
        )
    return value


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1), got {text!r}")
    return value


def _seeds(text: str) -> list[int]:
    from .experiment import parse_seeds

    try:
        return parse_seeds(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _build_parser() -> argparse.ArgumentParser:
    from .experiment.settings import DATASETS, DEMO, PROFILES

    parser = argparse.ArgumentParser(
        prog="distcal",
        description="Calibration for networks trained on distilled data. Without a command, "
        "runs the experiment ('distcal run') on scikit-learn's digits.",
    )
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help=_RUN_HELP, description=_RUN_HELP + ".")
    run.add_argument(
        "--dataset",
        default="digits",
        choices=list(DATASETS),
        help="digits ship with scikit-learn; Fashion-MNIST is read from Debian's "
        "dataset-fashion-mnist files or --root (default: digits)",
    )
    run.add_argument(
        "--profile",
        default="small",
        choices=list(PROFILES),
        help="small fits a 2-core CPU (minutes for digits); paper uses the published settings "
        "(ConvNet-128, 1000 student epochs) and is meant for a GPU; smoke only checks that the "
        "pipeline runs (default: small)",
    )
    run.add_argument(
        "--seeds",
        type=_seeds,
        default=[0, 1, 2],
        help="a count N (seeds 0..N-1), a range A-B (inclusive) or a list A,B,C (default 3)",
    )
    run.add_argument(
        "--threads",
        type=_positive_int,
        default=1,
        help="torch threads per seed; results depend on it, and it is recorded (default 1)",
    )
    run.add_argument(
        "--n-jobs",
        type=int,
        default=None,
        help="seeds in parallel, one process each (-1: one per core; default: one at a time)",
    )
    run.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run the seeds on a Dask cluster: the scheduler's address, e.g. "
        "tcp://10.0.0.5:8786 (needs pip install 'distcal[dask]'; --n-jobs defaults to the "
        "number of seeds)",
    )
    run.add_argument(
        "--device", type=_device, default=None, help="torch device, e.g. cuda (default: cpu)"
    )
    run.add_argument(
        "--output",
        type=_folder,
        default=Path("distcal-output"),
        help="folder for results.csv, summary.csv, results.json and the figures; a run "
        "interrupted there resumes from its finished seeds (default: distcal-output)",
    )
    run.add_argument("--root", type=_folder, default=None, help="folder of Fashion-MNIST's files")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument(
        "--system-malloc",
        action="store_true",
        help="leave the C library's malloc as it is; by default glibc keeps freed memory for "
        "the next training step (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=1 GiB, here and "
        "in the seeds' worker processes): the same results, faster (docs/benchmarks.md)",
    )

    demo = commands.add_parser(
        "demo",
        help="train a small network on digits and compare calibrators on its test logits",
        description="Train a ConvNet on a small real subset of scikit-learn's digits and print "
        "test accuracy, ECE, NLL and Brier score before and after temperature scaling and "
        "masked temperature scaling, calibrated on held-out or on training images.",
    )
    demo.add_argument(
        "--ipc",
        type=_demo_ipc,
        default=DEMO.ipc,
        help=f"images per class, 1 to 128 ({DEMO.ipc})",
    )
    demo.add_argument(
        "--epochs",
        type=_positive_int,
        default=DEMO.student_epochs,
        help=f"student epochs ({DEMO.student_epochs})",
    )
    demo.add_argument("--seed", type=_seed, default=0, help="random_state of everything (0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_calibrate(commands)
    _add_apply(commands)
    _add_evaluate(commands)
    return parser


_CALIBRATE_HELP = (
    "fit a calibrator on saved logits and labels, print the scores before and after with "
    "bootstrap intervals, and write the calibrator file and a reliability diagram"
)
_FILES_HELP = (
    "Files are .npy, .npz, .safetensors or .csv. An .npz or .safetensors file may hold both "
    "arrays, as 'logits' and 'labels' (or as --logits-key and --labels-key name them); a CSV "
    "file with a header may hold the labels in a column 'label' (or 'labels', 'target', "
    "'targets', 'y', or --labels-key), its other columns being the logits, and a pandas index "
    "column is recognised and not read (the user guide has the rules). Logits are n_samples x "
    "n_classes (column j is class j), or one column of binary decision values; labels are "
    "integers 0..n_classes-1."
)


def _add_calibrate(commands) -> None:
    from .experiment.calibrate import METHODS

    calibrate = commands.add_parser(
        "calibrate",
        help=_CALIBRATE_HELP,
        description=_CALIBRATE_HELP
        + ". By default half the samples (stratified) fit the calibrator and the other half "
        "score it. " + _FILES_HELP,
    )
    calibrate.add_argument("logits", metavar="LOGITS", help="the logits' file")
    calibrate.add_argument(
        "labels", metavar="LABELS", nargs="?", default=None,
        help="the labels' file (default: read them from LOGITS)",
    )  # fmt: skip
    calibrate.add_argument(
        "--method",
        metavar="METHOD",
        default="ts",
        choices=list(METHODS),
        help="the calibrator: "
        + ", ".join(f"{key} ({name})" for key, name in METHODS.items())
        + "; mts masks the logits (default: ts)",
    )
    calibrate.add_argument(
        "--output",
        metavar="DIR",
        type=_folder,
        default=Path("distcal-calibration"),
        help="folder for calibrator.safetensors, reliability.png and scores.json, written "
        "together or not at all (default: distcal-calibration)",
    )
    calibrate.add_argument(
        "--force",
        action="store_true",
        help="replace the results of an earlier run in the --output folder (without it, "
        "such a folder is refused before anything is read)",
    )
    calibrate.add_argument(
        "--test-size",
        metavar="SHARE",
        type=_share,
        default=0.5,
        help="share of the samples held out to score on; the rest fit the calibrator; 0 fits "
        "and scores on all of them, which flatters it (default: 0.5)",
    )
    calibrate.add_argument(
        "--split",
        choices=["stratified", "random"],
        default="stratified",
        help="how the samples are split (default: stratified)",
    )
    calibrate.add_argument(
        "--seed",
        type=_seed,
        default=0,
        help="seeds the split, the bootstrap and the masks, 0 to 2**32 - 1 (0)",
    )
    calibrate.add_argument(
        "--n-resamples",
        metavar="N",
        type=_resamples,
        default=1000,
        help="bootstrap resamples of the 95%% intervals and label draws of the calibration "
        "tests, 20 to 100000 (1000)",
    )
    calibrate.add_argument(
        "--input-type",
        choices=["logits", "probabilities"],
        default="logits",
        help="what LOGITS holds (default: logits)",
    )
    calibrate.add_argument(
        "--logits-key", metavar="KEY", default=None, help="the logits' array in LOGITS"
    )
    calibrate.add_argument(
        "--labels-key", metavar="KEY", default=None, help="the labels' array (or CSV column)"
    )
    calibrate.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_apply(commands) -> None:
    text = "apply a calibrator saved by 'distcal calibrate' to logits and write the probabilities"
    apply = commands.add_parser(
        "apply", help=text, description=text + ". " + _FILES_HELP.split(" An .npz")[0]
    )
    apply.add_argument("calibrator", metavar="CALIBRATOR", help="the calibrator's file")
    apply.add_argument("logits", metavar="LOGITS", help="the logits' file")
    apply.add_argument(
        "--output",
        metavar="FILE",
        type=Path,
        required=True,
        help="where to write the probabilities: a .npy or .csv file (one column per class), "
        "not LOGITS or CALIBRATOR themselves",
    )
    apply.add_argument(
        "--logits-key", metavar="KEY", default=None, help="the logits' array in LOGITS"
    )


_EVALUATE_HELP = (
    "train students on a distilled set made by any tool (MTT, DATM, DC/DSA/DM, KIP, SRe2L/RDED "
    "image folders, distcal), calibrate them on held-out real images (TS) and on the set alone "
    "(MTS), compare with students of random real images of the same size, and write a "
    "self-contained HTML report with its CSV files"
)


def _statistics(text: str):
    from .distill import STATISTICS

    if text == "data" or text in STATISTICS:
        return text
    try:
        mean, std = (tuple(float(v) for v in part.split(",")) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'data', one of {', '.join(STATISTICS)}, or MEAN/STD as comma-separated "
            f"numbers per channel (0.5,0.5,0.5/0.25,0.25,0.25); got {text!r}"
        ) from None
    return mean, std


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _add_evaluate(commands) -> None:
    from .distill import FORMATS, PROTOCOLS
    from .experiment.settings import DATASETS

    evaluate = commands.add_parser(
        "evaluate",
        help=_EVALUATE_HELP,
        description=_EVALUATE_HELP + ". A rerun with the same settings resumes from the students "
        "already finished. What the file does not hold (its pixel statistics or ZCA, the learned "
        "learning rate) takes the repository's default, and the report says so.",
    )
    evaluate.add_argument(
        "set", metavar="SET", help="the set's file or folder (MTT/DATM: the folder of "
        "images_best.pt; image folders: the folder of class folders)",
    )  # fmt: skip
    evaluate.add_argument(
        "--dataset",
        required=True,
        choices=list(DATASETS),
        help="the real data the set was distilled from (its test split scores the students)",
    )
    evaluate.add_argument(
        "--format",
        choices=list(FORMATS),
        default=None,
        help="the set's format (default: told from the file, where unambiguous)",
    )
    evaluate.add_argument(
        "--protocol",
        choices=list(PROTOCOLS),
        default="small",
        help="how students are trained: the DC repository's, MTT's, DATM's or DD-Ranking's "
        "settings (ConvNet-128, 1000 epochs: meant for a GPU), or small (width 32, 300 epochs; "
        "default)",
    )
    evaluate.add_argument(
        "--students", metavar="N", type=_positive_int, default=5, help="students per set (5)"
    )
    evaluate.add_argument(
        "--experiment", metavar="K", type=int, default=0,
        help="the experiment of a DC/DSA/DM res_*.pt file, which holds one per experiment (0)",
    )  # fmt: skip
    evaluate.add_argument(
        "--zca", choices=["none", "kornia", "kip"], default=None,
        help="the set is in ZCA space (refitted on the real training images): kornia's "
        "(MTT --zca, DATM) or KIP's (default: the format's: DATM kornia, KIP kip, else none)",
    )  # fmt: skip
    evaluate.add_argument(
        "--statistics", type=_statistics, default=None, metavar="STATS",
        help="the pixel statistics of a normalised set: 'data' (the real training images'), a "
        "dataset's (cifar10, fashion-mnist, ...) or MEAN/STD per channel (default: the "
        "repository's for the dataset)",
    )  # fmt: skip
    evaluate.add_argument(
        "--lr", type=_positive_float, default=None,
        help="the students' learning rate (default: the set's learned one where the protocol "
        "uses it, else the protocol's; MTT does not save its learned rate)",
    )  # fmt: skip
    evaluate.add_argument(
        "--soft-loss", choices=["cross-entropy", "kl"], default=None,
        help="the loss of soft labels (default: the protocol's, cross-entropy)",
    )  # fmt: skip
    evaluate.add_argument(
        "--soft-temperature", type=_positive_float, default=None,
        help="the temperature of the soft-label loss (default 1)",
    )  # fmt: skip
    evaluate.add_argument(
        "--epochs", type=_positive_int, default=None,
        help="student epochs, replacing the protocol's (for a quick look)",
    )  # fmt: skip
    evaluate.add_argument(
        "--held-out", metavar="N", type=_positive_int, default=None,
        help="held-out real images of TS (default: 5000 for Fashion-MNIST; digits: 20%%)",
    )  # fmt: skip
    evaluate.add_argument(
        "--seed", type=int, default=0, help="seeds the split and the first student (0)"
    )
    evaluate.add_argument(
        "--device", type=_device, default=None, help="torch device, e.g. cuda (default: cpu)"
    )
    evaluate.add_argument("--root", type=_folder, default=None, help="folder of Fashion-MNIST")
    evaluate.add_argument(
        "--output", type=_folder, default=Path("distcal-evaluation"),
        help="folder of report.html, students.csv, summary.csv, diagnostics.csv and the "
        "per-student files a rerun resumes from (default: distcal-evaluation)",
    )  # fmt: skip
    evaluate.add_argument("--quiet", action="store_true", help="no progress bar")


#: How the command line calls the arguments of distcal.experiment.calibrate.
_ARGUMENTS = {
    "logits": "LOGITS",
    "labels": "LABELS",
    "calibrator": "CALIBRATOR",
    "logits_key": "--logits-key",
    "labels_key": "--labels-key",
    "output": "--output",
    "test_size": "--test-size",
    "split": "--split random",
    "method": "--method",
    "seed": "--seed",
    "force": "--force",
    "input_type": "--input-type probabilities",
    "n_resamples": "--n-resamples",
}


def _on_cluster(address: str, dataset: str, options: dict) -> dict:
    """Run the experiment's seeds on the Dask cluster whose scheduler is at ``address``."""
    try:
        from distributed import Client
    except ImportError:
        raise ValueError(
            "argument --scheduler: Dask is not installed; pip install 'distcal[dask]'"
        ) from None
    from joblib import parallel_config

    from .experiment import run_experiment

    try:
        client = Client(address, timeout=10)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ValueError(
            f"argument --scheduler: cannot reach a Dask scheduler at {address!r} ({exc})"
        ) from None
    with client, parallel_config(backend="dask"):
        n_jobs = options["n_jobs"] or max(len(options["seeds"]), 2)
        return run_experiment(dataset, **{**options, "n_jobs": n_jobs})


def _run(args) -> None:
    from ._allocator import keep_freed_memory
    from .experiment import format_diagnostics, format_summary, run_experiment

    if not args.system_malloc:
        done = keep_freed_memory()
        if not args.quiet:
            print(f"distcal: {done}", file=sys.stderr)

    options = {
        "profile": args.profile,
        "seeds": args.seeds,
        "device": args.device,
        "output": args.output,
        "root": args.root,
        "verbose": not args.quiet,
        "n_jobs": args.n_jobs,
        "threads": args.threads,
    }
    if args.scheduler is None:
        result = run_experiment(args.dataset, **options)
    else:
        result = _on_cluster(args.scheduler, args.dataset, options)
    config = result["config"]
    print(
        f"{config['dataset']}, profile {args.profile}, seeds {config['seeds']}: test-set metrics "
        "(mean±SD over seeds, sample SD); 'training' calibrates on the student's training images "
        "only; every row, paired intervals and per-seed values are in the output folder"
    )
    print(format_summary(result["summary"]))
    print(
        "\nmaximum logits of the plain students and of the full-data network (coefficient of "
        "variation: the smaller, the more concentrated; IQR masked/clean above 1: masking "
        "spreads them)"
    )
    print(format_diagnostics(result["diagnostics_summary"]))
    print(f"\nresults, summary, figures: {args.output}/")


def _demo(args) -> None:
    from .experiment.demo import calibration_demo, format_rows

    rows = calibration_demo(
        ipc=args.ipc, epochs=args.epochs, random_state=args.seed, verbose=not args.quiet
    )
    print(
        f"digits, ConvNet trained on {args.ipc} images per class; test-set metrics (seed "
        f"{args.seed})"
    )
    print(format_rows(rows))


def _calibrate(args) -> None:
    from .experiment.calibrate import calibrate_files, format_report

    report = calibrate_files(
        args.logits,
        args.labels,
        method=args.method,
        output=args.output,
        test_size=args.test_size,
        stratify=args.split == "stratified",
        seed=args.seed,
        n_resamples=args.n_resamples,
        input_type=args.input_type,
        logits_key=args.logits_key,
        labels_key=args.labels_key,
        force=args.force,
        names=_ARGUMENTS,
        verbose=not args.quiet,
    )
    print(format_report(report))


def _apply(args) -> None:
    from .experiment.calibrate import apply_calibrator

    probabilities = apply_calibrator(
        args.calibrator, args.logits, args.output, logits_key=args.logits_key, names=_ARGUMENTS
    )
    print(f"probabilities of {len(probabilities)} samples: {args.output}")


def _evaluate(args) -> None:
    from .experiment.evaluate import evaluate_distilled, format_evaluation

    result = evaluate_distilled(
        args.set,
        args.dataset,
        format=args.format,
        protocol=args.protocol,
        n_students=args.students,
        random_state=args.seed,
        experiment=args.experiment,
        zca=args.zca,
        statistics=args.statistics,
        learning_rate=args.lr,
        soft_label_loss=args.soft_loss,
        soft_label_temperature=args.soft_temperature,
        student_options=None if args.epochs is None else {"epochs": args.epochs},
        n_held_out=args.held_out,
        device=args.device,
        root=args.root,
        output=args.output,
        verbose=not args.quiet,
    )
    print(format_evaluation(result))
    print(f"report: {result['report']} (CSV files beside it)")


_COMMANDS = {
    "run": _run,
    "demo": _demo,
    "calibrate": _calibrate,
    "apply": _apply,
    "evaluate": _evaluate,
}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a warning as one line, as the command's errors are."""
    print(f"distcal: warning: {message}", file=sys.stderr if file is None else file)


def main(argv=None) -> int:
    """Entry point of the ``distcal`` console script (and of ``python -m distcal``).

    Parameters
    ----------
    argv : list of str, default=None
        The arguments (default: ``sys.argv[1:]``). Without a command, ``run`` is meant.

    Returns
    -------
    int
        0, or 141 (128 + SIGPIPE, as a shell reports a command killed by a closed pipe) when
        the reader of standard output has gone; a user error exits with status 2 after one
        line on standard error.
    """
    try:
        status = _main(argv)
    except BrokenPipeError:
        return _reader_gone()
    except SystemExit as exit_:
        # argparse's own exits (--help, --version, usage errors) and the commands' errors: an
        # error keeps its status; output that could not be delivered makes a success 141
        if not _flushed() and not exit_.code:
            return 141
        raise
    return status if _flushed() else 141


def _flushed() -> bool:
    """Flush standard output; False (and stdout silenced) when its reader has gone.

    Standard output is block-buffered when it is a pipe (unless ``PYTHONUNBUFFERED`` is set),
    so a reader that has gone is often noticed only at the last flush. Flushing here, instead
    of leaving it to the interpreter's exit, keeps Python from printing "Exception ignored ...
    BrokenPipeError" and exiting with status 120.
    """
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _reader_gone()
        return False
    return True


def _reader_gone() -> int:
    # Python's documented recipe: point stdout at devnull, so that the flush at exit writes
    # (and complains about) nothing. 141 is 128 + SIGPIPE, what a shell reports for a command
    # that a closed pipe stopped.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


def _main(argv) -> int:
    from ._version import __version__

    parser = _build_parser()
    parser.add_argument("--version", action="version", version=f"distcal {__version__}")
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    from .experiment.logit_files import InputFileError

    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        if not sys.warnoptions:
            warnings.simplefilter("default")
        try:
            _COMMANDS[args.command](args)
        except InputFileError as exc:
            parser.exit(2, f"distcal: error: argument {exc}\n")
        except BrokenPipeError:
            raise  # handled by main, before the OSError below would take it for a user error
        except (FileNotFoundError, ValueError, OSError) as exc:
            parser.exit(2, f"distcal: error: {exc}\n")
        except KeyboardInterrupt:
            done = {
                "run": "; finished seeds are kept and a rerun resumes",
                "evaluate": "; finished students are kept and a rerun resumes",
            }.get(args.command, "")
            parser.exit(130, f"distcal: interrupted{done}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
