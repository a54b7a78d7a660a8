"""Compare every calibrator of distcal on the same student logits, with bootstrap intervals.

A small ConvNet is trained on 10 real digits per class (the size of a distilled set); its
logits on held-out images calibrate temperature scaling, vector and matrix scaling, Dirichlet
calibration, ensemble temperature scaling, histogram binning, isotonic regression and vector
scaling fitted on masked logits (the paper's masking beyond a single temperature), and all are
scored on the same test images: ECE (15 bins) with a 95% bootstrap interval, the classwise
ECE, the debiased, smooth and Kolmogorov-Smirnov calibration errors, NLL, and the paired
bootstrap interval of each calibrator's ECE minus that of temperature scaling, to tell real
differences from noise. Reliability diagrams are drawn side by side.
"""

import sys
from pathlib import Path

import numpy as np

from distcal import TemperatureScaling
from distcal.calibration import (
    DirichletCalibration,
    EnsembleTemperatureScaling,
    HistogramBinning,
    IsotonicCalibration,
    MaskedScaling,
    MatrixScaling,
    VectorScaling,
)
from distcal.distill import StudentClassifier, load_digits, stratified_split
from distcal.experiment.settings import DATASETS
from distcal.metrics import (
    bootstrap_ci,
    bootstrap_difference,
    classwise_calibration_error,
    debiased_calibration_error,
    expected_calibration_error,
    ks_calibration_error,
    negative_log_likelihood,
    smooth_calibration_error,
)


def main(output=Path("distcal-output")):
    data = load_digits()
    train, cal, test = stratified_split(data.labels, [100, 800, 897], random_state=0)
    X, y = data.images, data.labels.numpy()
    digits = DATASETS["digits"]  # depth 2; DSA's augmentation without flips
    student = StudentClassifier(
        width=32, depth=digits.depth, epochs=150, augment=digits.augment, random_state=0
    ).fit(X[train], y[train.numpy()])
    logits_cal = student.decision_function(X[cal]).numpy()
    logits_test = student.decision_function(X[test]).numpy()
    y_cal, y_test = y[cal.numpy()], y[test.numpy()]

    calibrators = {
        "none": None,
        "temperature": TemperatureScaling(),
        "vector": VectorScaling(),
        "matrix (ODIR)": MatrixScaling(reg_lambda=1e-2),
        "Dirichlet (ODIR)": DirichletCalibration(reg_lambda=1e-2),
        "ensemble TS": EnsembleTemperatureScaling(),
        "histogram": HistogramBinning(n_bins=10),
        "isotonic": IsotonicCalibration(),
        "masked vector": MaskedScaling(VectorScaling(), random_state=0),
    }
    probabilities = {}
    for name, calibrator in calibrators.items():
        if calibrator is None:
            e = np.exp(logits_test - logits_test.max(axis=1, keepdims=True))
            probabilities[name] = e / e.sum(axis=1, keepdims=True)
        else:
            probabilities[name] = calibrator.fit(logits_cal, y_cal).predict_proba(logits_test)

    reference = probabilities["temperature"]
    others = {  # in percent, as the ECE
        "cw-ECE": classwise_calibration_error,
        "debiased": debiased_calibration_error,
        "smooth": smooth_calibration_error,
        "KS": ks_calibration_error,
    }
    print(
        f"{'calibrator':>17}  {'ECE %':>6}  {'95% interval':>14}  "
        + "  ".join(f"{name:>8}" for name in others)
        + f"  {'NLL':>7}  ECE - TS (95%)"
    )
    for name, proba in probabilities.items():
        ci = bootstrap_ci(
            expected_calibration_error, y_test, proba, n_resamples=200, random_state=0
        )
        diff = bootstrap_difference(
            expected_calibration_error, y_test, proba, reference, n_resamples=200, random_state=0
        )
        # "differs": the 95% interval of the difference excludes 0, by more than the 0.01
        # points printed (ensemble TS may put all its weight on TS and differ by 1e-6)
        differs = diff.excludes_zero and min(abs(diff.low), abs(diff.high)) > 1e-4
        verdict = "differs" if differs else "same"
        with np.errstate(divide="ignore"):
            nll = negative_log_likelihood(y_test, proba)
        scores = "  ".join(f"{100 * metric(y_test, proba):8.2f}" for metric in others.values())
        print(
            f"{name:>17}  {100 * ci.estimate:6.2f}  [{100 * ci.low:5.2f}, {100 * ci.high:5.2f}]"
            f"  {scores}  {nll:7.3f}  [{100 * diff.low:+5.2f}, {100 * diff.high:+5.2f}] {verdict}"
        )

    try:
        import matplotlib

        matplotlib.use("Agg")
        from distcal.plotting import ReliabilityDisplay
    except ImportError:
        print("matplotlib is not installed: no figure (pip install 'distcal[plot]')")
        return
    # One panel per calibrator, laid out as a grid at a paper's page width.
    display = ReliabilityDisplay.from_predictions(y_test, probabilities, n_bins=10, layout="grid")
    output.mkdir(parents=True, exist_ok=True)
    display.figure_.savefig(output / "compare_calibrators.png", dpi=150)
    print(f"saved {output / 'compare_calibrators.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("distcal-output"))
