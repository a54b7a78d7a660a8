"""Calibrate the logits of any classifier with temperature scaling.

The logits here are synthetic: ``3 * z`` with labels drawn from ``softmax(z)``, an over-confident
network whose optimal temperature is 3. Replace them with your own model's outputs (numpy arrays
or torch tensors on any device). The script prints the metrics before and after calibration and
saves a reliability diagram when matplotlib is installed.
"""

import sys
from pathlib import Path

import numpy as np

from distcal import TemperatureScaling
from distcal.metrics import (
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main(output=Path("distcal-output")):
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20_000, 10))
    y = (softmax(z).cumsum(axis=1) > rng.random((len(z), 1))).argmax(axis=1)
    logits = 3 * z
    cal, test = slice(0, 10_000), slice(10_000, None)

    ts = TemperatureScaling().fit(logits[cal], y[cal])
    print(f"fitted temperature {ts.temperature_:.4f} in {ts.n_iter_} passes")
    for name, proba in (
        ("uncalibrated", softmax(logits[test])),
        ("temperature scaled", ts.predict_proba(logits[test])),
    ):
        print(
            f"{name:>20}: ECE {100 * expected_calibration_error(y[test], proba):5.2f}%  "
            f"NLL {negative_log_likelihood(y[test], proba):.4f}  "
            f"Brier {brier_score(y[test], proba):.4f}"
        )
    try:
        import matplotlib

        matplotlib.use("Agg")
        from distcal.plotting import ReliabilityDisplay
    except ImportError:
        print("matplotlib is not installed: no figure (pip install 'distcal[plot]')")
        return
    # Both on one diagram, in distinct colours, one legend entry each (one paper column wide).
    display = ReliabilityDisplay.from_predictions(
        y[test], {"uncalibrated": softmax(logits[test]), "TS": ts.predict_proba(logits[test])}
    )
    output.mkdir(parents=True, exist_ok=True)
    display.figure_.savefig(output / "calibrate_logits.png", dpi=150)
    print(f"saved {output / 'calibrate_logits.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("distcal-output"))
