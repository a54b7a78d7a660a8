"""The ``distcal`` command line: argument parsing and wiring only."""

from __future__ import annotations

import argparse
import sys
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
    run.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    run.add_argument(
        "--output",
        type=Path,
        default=Path("distcal-output"),
        help="folder for results.csv, summary.csv, results.json and the figures; a run "
        "interrupted there resumes from its finished seeds (default: distcal-output)",
    )
    run.add_argument("--root", type=Path, default=None, help="folder of Fashion-MNIST's files")
    run.add_argument("--quiet", action="store_true", help="no progress bars")

    demo = commands.add_parser(
        "demo",
        help="train a small network on digits and compare calibrators on its test logits",
        description="Train a ConvNet on a small real subset of scikit-learn's digits and print "
        "test accuracy, ECE, NLL and Brier score before and after temperature scaling and "
        "masked temperature scaling, calibrated on held-out or on training images.",
    )
    demo.add_argument(
        "--ipc", type=_positive_int, default=DEMO.ipc, help=f"images per class ({DEMO.ipc})"
    )
    demo.add_argument(
        "--epochs",
        type=_positive_int,
        default=DEMO.student_epochs,
        help=f"student epochs ({DEMO.student_epochs})",
    )
    demo.add_argument("--seed", type=int, default=0, help="random_state of everything (0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _run(args) -> None:
    from .experiment import format_diagnostics, format_summary, run_experiment

    result = run_experiment(
        args.dataset,
        profile=args.profile,
        seeds=args.seeds,
        device=args.device,
        output=args.output,
        root=args.root,
        verbose=not args.quiet,
        n_jobs=args.n_jobs,
        threads=args.threads,
    )
    config = result["config"]
    print(
        f"{config['dataset']}, profile {args.profile}, seeds {config['seeds']}: test-set metrics "
        "(mean±SD over seeds, sample SD); 'strict' calibrates on the student's training images "
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


def main(argv=None) -> int:
    """Entry point of the ``distcal`` console script."""
    parser = _build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    try:
        (_demo if args.command == "demo" else _run)(args)
    except (FileNotFoundError, ValueError, OSError) as exc:
        parser.exit(2, f"distcal: error: {exc}\n")
    except KeyboardInterrupt:
        parser.exit(130, "distcal: interrupted; finished seeds are kept and a rerun resumes\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
