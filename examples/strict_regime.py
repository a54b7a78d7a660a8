"""Calibrating a network on the images it was trained on: temperature scaling versus masking.

A network trained on a distilled set (here: 10 real digits per class, the same size) classifies
its training images perfectly, so temperature scaling fitted on them has no optimum: distcal
warns and returns the lower bound. Masked Temperature Scaling fits on masked copies of the same
images, which the network no longer separates, and gives a usable temperature: at fixed ratios,
and with its default, which reads from the images that they are training data and picks the
ratio by the half-accuracy rule. The script also plots the paper's diagnostic: the maximum
logits on training images, clean and masked.
"""

import sys
import warnings
from pathlib import Path

from distcal import MaskedTemperatureScaling, TemperatureScaling
from distcal.calibration import mask_inputs
from distcal.distill import StudentClassifier, load_digits, stratified_split
from distcal.exceptions import UncalibratableDataWarning
from distcal.metrics import expected_calibration_error


def main(output=Path("distcal-output")):
    data = load_digits()
    train, test = stratified_split(data.labels, [100, 1000], random_state=0)
    X, y = data.images, data.labels
    student = StudentClassifier(width=32, depth=2, epochs=300, random_state=0)
    student.fit(X[train], y[train])
    y_test = y[test].numpy()
    print(f"test accuracy {student.score(X[test].numpy(), y_test):.3f}")
    ece = expected_calibration_error(y_test, student.predict_proba(X[test]))
    print(f"uncalibrated ECE {100 * ece:.2f}%")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UncalibratableDataWarning)
        ts = TemperatureScaling().fit(student.decision_function(X[train]), y[train])
    for warning in caught:
        print("warning:", str(warning.message)[:120], "...")
    test_logits = student.decision_function(X[test])
    ece_ts = expected_calibration_error(y_test, ts.predict_proba(test_logits))
    print(f"TS on training images:  T = {ts.temperature_:.3g}, test ECE {100 * ece_ts:.2f}%")

    for ratio in (0.1, 0.3, 0.5):
        mts = MaskedTemperatureScaling(ratio, n_masks=10, model=student.network_, random_state=0)
        mts.fit(X[train], y[train])
        ece = expected_calibration_error(y_test, mts.predict_proba(X[test]))
        print(
            f"MTS on training images, ratio {ratio}: T = {mts.temperature_:.3f}, "
            f"test ECE {100 * ece:.2f}%"
        )
    # The default reads from the images that the network was trained on them and applies the
    # half-accuracy rule (no real data needed); regime_ and mask_ratio_ say what it did.
    default = MaskedTemperatureScaling(model=student.network_, random_state=0)
    default.fit(X[train], y[train])
    ece = expected_calibration_error(y_test, default.predict_proba(X[test]))
    print(
        f"MTS default: regime {default.regime_}, ratio {default.mask_ratio_:.3f}, "
        f"T = {default.temperature_:.3f}, test ECE {100 * ece:.2f}%"
    )

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import torch

        from distcal.plotting import max_logit_histogram
    except ImportError:
        print("matplotlib is not installed: no figure (pip install 'distcal[plot]')")
        return
    clean = student.decision_function(X[train])
    masked = student.decision_function(
        mask_inputs(X[train], 0.3, generator=torch.Generator().manual_seed(0))
    )
    fig, ax = plt.subplots(figsize=(6, 4))
    max_logit_histogram(clean, masked_logits=masked, ax=ax, labels=("clean", "masked (0.3)"))
    ax.set_title("Maximum logit on the training images")
    fig.tight_layout()
    output.mkdir(parents=True, exist_ok=True)
    fig.savefig(output / "strict_regime.png", dpi=100)
    print(f"saved {output / 'strict_regime.png'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("distcal-output"))
