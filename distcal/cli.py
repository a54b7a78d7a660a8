"""The ``distcal`` command line: argument parsing and wiring only."""

from __future__ import annotations

import argparse
import sys


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distcal",
        description="Calibration for networks trained on distilled data.",
    )
    commands = parser.add_subparsers(dest="command")
    demo = commands.add_parser(
        "demo",
        help="train a small network on digits and compare calibrators on its test logits",
        description="Train a ConvNet on a small real subset of scikit-learn's digits and print "
        "test accuracy, ECE, NLL and Brier score before and after temperature scaling and "
        "masked temperature scaling, calibrated on held-out or on training images.",
    )
    demo.add_argument("--ipc", type=int, default=10, help="training images per class (default 10)")
    demo.add_argument("--epochs", type=int, default=300, help="student epochs (default 300)")
    demo.add_argument("--seed", type=int, default=0, help="random_state of everything (default 0)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None) -> int:
    """Entry point of the ``distcal`` console script."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["demo", *(argv or [])])
    if args.ipc < 1 or args.epochs < 1:
        parser.error("--ipc and --epochs must be positive integers")
    from ._demo import calibration_demo, format_rows

    rows = calibration_demo(
        ipc=args.ipc, epochs=args.epochs, random_state=args.seed, verbose=not args.quiet
    )
    print(
        f"digits, ConvNet trained on {args.ipc} images per class; test-set metrics "
        f"(seed {args.seed})"
    )
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
