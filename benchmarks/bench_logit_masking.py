"""Does masking logits behave like masking inputs?

MaskedTemperatureScaling masks model inputs when it has the model, and logits when it only has
logits (each logit replaced, with probability ``mask_ratio``, by its row's mean). This script
trains small ConvNets on 10 real digits per class and, for each mask ratio, fits both kinds of
masked temperature on the same images, in the training regime (on the training images) and on
held-out images, then reports the fitted temperatures and the test ECE (15 bins) of each.

Usage::

    python benchmarks/bench_logit_masking.py --seeds 3 --markdown docs/benchmarks/masking.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from _report import argument_parser, bullets, write_markdown
from scipy.stats import spearmanr

from distcal import MaskedTemperatureScaling
from distcal.distill import StudentClassifier, load_digits, stratified_split
from distcal.experiment.report import render_table
from distcal.metrics import expected_calibration_error

RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def run(seeds: int, n_masks: int, epochs: int):
    data = load_digits()
    X, y = data.images, data.labels.numpy()
    rows = []
    for seed in range(seeds):
        train, cal, test = stratified_split(data.labels, [100, 500, 1197], random_state=seed)
        student = StudentClassifier(width=32, depth=2, epochs=epochs, random_state=seed)
        student.fit(X[train], y[train])
        net = student.network_
        logits = {
            "train": student.decision_function(X[train]),
            "held-out": student.decision_function(X[cal]),
        }
        images = {"train": X[train], "held-out": X[cal]}
        labels = {"train": y[train.numpy()], "held-out": y[cal.numpy()]}
        test_logits = student.decision_function(X[test])
        y_test = y[test.numpy()]
        for regime in ("train", "held-out"):
            for ratio in RATIOS:
                by_input = MaskedTemperatureScaling(
                    ratio, n_masks=n_masks, model=net, random_state=seed
                ).fit(images[regime], labels[regime])
                by_logit = MaskedTemperatureScaling(ratio, n_masks=n_masks, random_state=seed).fit(
                    logits[regime], labels[regime]
                )
                rows.append(
                    {
                        "seed": seed,
                        "regime": regime,
                        "ratio": ratio,
                        "t_input": by_input.temperature_,
                        "t_logit": by_logit.temperature_,
                        "ece_input": expected_calibration_error(
                            y_test, by_input.predict_proba(X[test])
                        ),
                        "ece_logit": expected_calibration_error(
                            y_test, by_logit.predict_proba(test_logits)
                        ),
                    }
                )
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    return rows


def summarise(rows, seeds):
    lines = []
    header = ["regime", "ratio", "T input", "T logit", "ECE input %", "ECE logit %"]
    for regime in ("train", "held-out"):
        for ratio in RATIOS:
            sel = [r for r in rows if r["regime"] == regime and r["ratio"] == ratio]

            def stat(key, scale=1.0, sel=sel):
                values = scale * np.array([r[key] for r in sel])
                spread = values.std(ddof=1) if len(values) > 1 else 0.0  # sample SD
                return f"{values.mean():.3f} ± {spread:.3f}"

            lines.append(
                [
                    regime,
                    f"{ratio:.1f}",
                    stat("t_input"),
                    stat("t_logit"),
                    stat("ece_input", 100),
                    stat("ece_logit", 100),
                ]
            )
    verdicts = []
    for regime in ("train", "held-out"):
        sel = [r for r in rows if r["regime"] == regime]
        rho = spearmanr([r["t_input"] for r in sel], [r["t_logit"] for r in sel]).statistic
        best = {}
        for kind in ("input", "logit"):
            means = {
                ratio: np.mean([r[f"ece_{kind}"] for r in sel if r["ratio"] == ratio])
                for ratio in RATIOS
            }
            best[kind] = min(means, key=means.get), 100 * min(means.values())
        verdicts.append(
            f"{regime}: Spearman correlation of the two temperatures over ratios and seeds "
            f"{rho:.2f}; best mean test ECE {best['input'][1]:.2f}% at ratio "
            f"{best['input'][0]} (input masking) vs {best['logit'][1]:.2f}% at ratio "
            f"{best['logit'][0]} (logit masking)"
        )
    return header, lines, verdicts


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=3, help="students (seeds 0..n-1)")
    parser.add_argument("--n-masks", type=int, default=10, help="masked copies per image")
    parser.add_argument("--epochs", type=int, default=300, help="student epochs")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown here")
    args = parser.parse_args(argv)
    rows = run(args.seeds, args.n_masks, args.epochs)
    header, lines, verdicts = summarise(rows, args.seeds)
    print(render_table(header, lines, align="right"))
    print("\n".join(verdicts))
    if args.markdown:
        table = render_table(header, lines, markdown=True)
        write_markdown(args.markdown, __file__, argv, table, bullets(verdicts))


if __name__ == "__main__":
    main()
