"""Coverage of the true calibration error by distcal's intervals, on simulated models.

Issue 22 found that the percentile bootstrap interval of the plug-in ECE-15 misses the true
binned ECE where it is small (a calibrated model: coverage 0% at every n). This script measures,
on models whose true error is known, the coverage of the truth by

- the old interval: ``bootstrap_ci`` of ``expected_calibration_error`` (ECE-15, plug-in,
  percentile), against the true binned ECE (L1);
- the new headline: ``debiased_calibration_error_ci`` (debiased RMS error, 15 bins, normal
  interval of the squared error from its bootstrap standard error), against the true binned
  RMS error; its coverage of the true ECE is shown too;
- ``calibration_test``: how often it rejects calibration at 5% (its size for the calibrated
  model, its power for the others);
- ``debiased_calibration_error_difference``: the paired change between two models scored on
  the same samples (as ``distcal calibrate`` prints before and after), against the true change.

Models (10 classes): true logits ``z = 2 g``, ``g`` standard normal, labels drawn from
``softmax(z)``, predicted probabilities ``softmax(tau z)``: calibrated (tau = 1), mildly
(1.06), moderately (1.25) and strongly (2) over-confident, the true ECEs of issue 22's table
(0, 1.94, 7.30, 20.6%). The truth of a model is computed from ``--truth-samples`` draws of
``z`` (default 4 million) with the probability that the prediction is right, ``softmax(z)`` at
the predicted class, in place of a drawn label: per bin ``P(b)`` and ``E[P(right) - conf | b]``.
Its Monte-Carlo standard error is the spread of the truths of 8 equal parts, over sqrt(8).

Each cell (model, n) draws ``--datasets`` data sets from seeds ``(seed base, model, n, d)``;
each interval uses ``--n-resamples`` resamples (1000, as ``distcal calibrate``). The Monte-Carlo
standard error of a coverage ``c`` over D data sets is ``sqrt(c (1 - c) / D)`` (2.2 points at
95% over 100). ``--candidates`` runs, on the development seeds, the interval methods that were
tried and rejected (docs/ece_intervals.md says which and why).

Usage::

    python benchmarks/bench_ece_coverage.py --markdown docs/benchmarks/ece_coverage.md \\
        --csv docs/benchmarks/ece_coverage.csv
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _report import argument_parser, bullets, write_markdown
from scipy.stats import norm

from distcal.experiment.report import render_table
from distcal.metrics import (
    bootstrap_ci,
    calibration_error,
    calibration_test,
    debiased_calibration_error_ci,
    debiased_calibration_error_difference,
    expected_calibration_error,
    with_options,
)

N_CLASSES = 10
SCALE = 2.0
N_BINS = 15
#: name -> temperature factor of the predicted logits (tau z).
MODELS = {"calibrated": 1.0, "mildly off": 1.06, "moderately off": 1.25, "strongly off": 2.0}
#: Paired changes (before, after): after - before on the same samples.
PAIRS = [
    ("strongly off", "calibrated"),
    ("moderately off", "calibrated"),
    ("mildly off", "calibrated"),
    ("moderately off", "mildly off"),
]
SIZES = (500, 1000, 2000, 5000)
PAIR_SIZES = (1000, 2000)
#: The seed base of the deciding run (docs/ece_intervals.md); development used DEVELOPMENT.
DECIDING, DEVELOPMENT = 2022, 1
ece15 = with_options(expected_calibration_error, n_bins=N_BINS)


def table(header, body, align):
    """A table to render later, as text (printed) and as markdown (the file)."""
    return lambda markdown: render_table(header, body, align=align, markdown=markdown)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def draw(rng, n, taus):
    """Labels drawn from softmax(2 g), and softmax(tau 2 g) for each tau; plus P(right)."""
    z = SCALE * rng.standard_normal((n, N_CLASSES))
    q = softmax(z)
    y = np.minimum((q.cumsum(axis=1) <= rng.random((n, 1))).sum(axis=1), N_CLASSES - 1)
    probabilities = [softmax(tau * z) for tau in taus]
    # argmax(softmax(tau z)) = argmax(z) for tau > 0: every model predicts the same class
    right = q[np.arange(n), z.argmax(axis=1)]
    return y, probabilities, right


def truth(tau, n_draws, seed=12345, parts=8):
    """True binned ECE and RMS error of a model, and their Monte-Carlo standard errors."""
    rng = np.random.default_rng(seed)
    per_part = []
    for _ in range(parts):
        mass, gap = np.zeros(N_BINS), np.zeros(N_BINS)
        for _ in range(max(1, n_draws // parts // 250_000)):
            _, (p,), right = draw(rng, 250_000, [tau])
            confidence = p.max(axis=1)
            bins = np.minimum((confidence * N_BINS).astype(int), N_BINS - 1)
            mass += np.bincount(bins, minlength=N_BINS)
            gap += np.bincount(bins, right - confidence, minlength=N_BINS)
        per_part.append((mass, gap))
    mass = sum(m for m, _ in per_part)
    gap = sum(g for _, g in per_part)

    def errors(m, g):
        share, mean = m / m.sum(), g / np.maximum(m, 1)
        return (share * np.abs(mean)).sum(), np.sqrt((share * mean**2).sum())

    ece, rms = errors(mass, gap)
    spread = np.array([errors(m, g) for m, g in per_part]).std(axis=0, ddof=1) / np.sqrt(parts)
    return {"ece": ece, "rms": rms, "ece_se": spread[0], "rms_se": spread[1]}


def _seed(rng):
    return int(rng.integers(2**31 - 1))


def cell(model, n, datasets, n_resamples, seed_base, truths):
    """Coverage counts of one (model, n) cell."""
    tau, index = MODELS[model], list(MODELS).index(model)
    counts = dict.fromkeys(
        (
            "plug_in_covers",
            "plug_in_outside",
            "covers_rms",
            "covers_ece",
            "outside",
            "low_zero",
            "rejects",
        ),
        0,
    )
    sums = dict.fromkeys(("plug_in", "plug_in_width", "estimate", "width"), 0.0)
    for d in range(datasets):
        rng = np.random.default_rng([seed_base, index, n, d])
        y, (p,), _ = draw(rng, n, [tau])
        seed = _seed(rng)
        old = bootstrap_ci(ece15, y, p, n_resamples=n_resamples, random_state=seed)
        new = debiased_calibration_error_ci(
            y, p, n_bins=N_BINS, n_resamples=n_resamples, random_state=seed
        )
        test = calibration_test(y, p, n_bins=N_BINS, n_resamples=n_resamples, random_state=seed)
        t = truths[model]
        counts["plug_in_covers"] += old.low <= t["ece"] <= old.high
        counts["plug_in_outside"] += not old.low <= old.estimate <= old.high
        counts["covers_rms"] += new.low <= t["rms"] <= new.high
        counts["covers_ece"] += new.low <= t["ece"] <= new.high
        counts["outside"] += not new.low <= new.estimate <= new.high
        counts["low_zero"] += new.low == 0
        counts["rejects"] += test.pvalue <= 0.05
        sums["plug_in"] += old.estimate
        sums["plug_in_width"] += old.high - old.low
        sums["estimate"] += new.estimate
        sums["width"] += new.high - new.low
    return {
        "model": model,
        "tau": tau,
        "n": n,
        "datasets": datasets,
        "resamples": n_resamples,
        "true_ece": t["ece"],
        "true_rms": t["rms"],
        **counts,
        **{key: value / datasets for key, value in sums.items()},
    }


def pair_cell(before, after, n, datasets, n_resamples, seed_base, truths):
    """Coverage of the true change (after - before) by the paired interval."""
    index = 100 + PAIRS.index((before, after))
    true = truths[after]["rms"] - truths[before]["rms"]
    covers = excludes = 0
    widths = 0.0
    for d in range(datasets):
        rng = np.random.default_rng([seed_base, index, n, d])
        y, (p_before, p_after), _ = draw(rng, n, [MODELS[before], MODELS[after]])
        diff = debiased_calibration_error_difference(
            y, p_after, p_before, n_bins=N_BINS, n_resamples=n_resamples, random_state=_seed(rng)
        )
        covers += diff.low <= true <= diff.high
        excludes += diff.excludes_zero
        widths += diff.high - diff.low
    return {
        "before": before,
        "after": after,
        "n": n,
        "datasets": datasets,
        "true_change": true,
        "covers": covers,
        "excludes_zero": excludes,
        "width": widths / datasets,
    }


def candidate_cell(model, n, datasets, n_resamples, seed_base, truths):
    """Coverage of the interval methods tried in development, on the same data sets."""
    tau, index = MODELS[model], list(MODELS).index(model)
    t = truths[model]
    z = norm.ppf(0.975)
    covers = dict.fromkeys(CANDIDATES, 0)
    for d in range(datasets):
        rng = np.random.default_rng([seed_base, index, n, d])
        y, (p,), _ = draw(rng, n, [tau])
        seed = _seed(rng)
        old = bootstrap_ci(ece15, y, p, n_resamples=n_resamples, random_state=seed)
        new = debiased_calibration_error_ci(
            y, p, n_bins=N_BINS, n_resamples=n_resamples, random_state=seed
        )
        test = calibration_test(y, p, n_bins=N_BINS, n_resamples=n_resamples, random_state=seed)
        plug_in_squared = calibration_error(y, p, n_bins=N_BINS, norm="l2") ** 2
        bias = old.resamples.mean() - old.estimate
        bc_low = max(old.low - 2 * bias, 0.0)
        bc_high = max(old.high - 2 * bias, 0.0)
        low, high = np.quantile(new.resamples, [0.025, 0.975])
        shift = new.squared - plug_in_squared
        root = lambda s: np.sqrt(max(s, 0.0))  # noqa: E731
        ends = {
            "plug-in ECE, percentile": (old.low, old.high, t["ece"]),
            "ECE, bias-corrected percentile": (bc_low, bc_high, t["ece"]),
            "ECE, bias-corrected, from 0 unless the test rejects": (
                0.0 if test.pvalue > 0.05 else bc_low,
                bc_high,
                t["ece"],
            ),
            "debiased RMS, percentile": (root(low), root(high), t["rms"]),
            "debiased RMS, percentile shifted by the debiasing": (
                root(low + shift),
                root(high + shift),
                t["rms"],
            ),
            "debiased RMS, normal (chosen)": (
                root(new.squared - z * new.squared_std),
                root(new.squared + z * new.squared_std),
                t["rms"],
            ),
        }
        for name, (lo, hi, target) in ends.items():
            covers[name] += lo <= target <= hi
    return {"model": model, "n": n, "datasets": datasets, **covers}


CANDIDATES = [
    "plug-in ECE, percentile",
    "ECE, bias-corrected percentile",
    "ECE, bias-corrected, from 0 unless the test rejects",
    "debiased RMS, percentile",
    "debiased RMS, percentile shifted by the debiasing",
    "debiased RMS, normal (chosen)",
]


def candidate_pair_cell(before, after, n, datasets, n_resamples, seed_base, truths):
    """The paired change: a normal interval of the RMS difference against the ellipse."""
    index = 100 + PAIRS.index((before, after))
    true = truths[after]["rms"] - truths[before]["rms"]
    z = norm.ppf(0.975)
    normal = ellipse = 0
    for d in range(datasets):
        rng = np.random.default_rng([seed_base, index, n, d])
        y, (p_before, p_after), _ = draw(rng, n, [MODELS[before], MODELS[after]])
        diff = debiased_calibration_error_difference(
            y, p_after, p_before, n_bins=N_BINS, n_resamples=n_resamples, random_state=_seed(rng)
        )
        roots = np.sqrt(np.maximum(diff.resamples, 0))
        spread = (roots[:, 0] - roots[:, 1]).std(ddof=1)
        normal += diff.estimate - z * spread <= true <= diff.estimate + z * spread
        ellipse += diff.low <= true <= diff.high
    return {"before": before, "after": after, "n": n, "normal": normal, "ellipse": ellipse}


def percent(count, total):
    return f"{100 * count / total:.0f}"


def se(share, total):
    return f"{100 * np.sqrt(share * (1 - share) / total):.1f}"


def coverage_table(rows, truths):
    header = [
        "model",
        "true ECE %",
        "true RMS %",
        "n",
        "plug-in ECE",
        "covers ECE %",
        "est. outside",
        "debiased RMS",
        "covers RMS %",
        "(SE)",
        "covers ECE %",
        "est. outside",
        "reaches 0 %",
        "test rejects %",
    ]
    body = []
    for row in rows:
        d = row["datasets"]
        t = truths[row["model"]]
        body.append(
            [
                row["model"],
                f"{100 * t['ece']:.2f} ± {100 * t['ece_se']:.3f}",
                f"{100 * t['rms']:.2f} ± {100 * t['rms_se']:.3f}",
                str(row["n"]),
                f"{100 * row['plug_in']:.2f} (w {100 * row['plug_in_width']:.2f})",
                percent(row["plug_in_covers"], d),
                f"{row['plug_in_outside']}/{d}",
                f"{100 * row['estimate']:.2f} (w {100 * row['width']:.2f})",
                percent(row["covers_rms"], d),
                se(row["covers_rms"] / d, d),
                percent(row["covers_ece"], d),
                f"{row['outside']}/{d}",
                percent(row["low_zero"], d),
                percent(row["rejects"], d),
            ]
        )
    return table(header, body, align=["left"] + ["right"] * (len(header) - 1))


def pair_table(rows):
    header = ["before", "after", "n", "true change %", "covers %", "(SE)", "excludes 0 %", "width"]
    body = [
        [
            row["before"],
            row["after"],
            str(row["n"]),
            f"{100 * row['true_change']:+.2f}",
            percent(row["covers"], row["datasets"]),
            se(row["covers"] / row["datasets"], row["datasets"]),
            percent(row["excludes_zero"], row["datasets"]),
            f"{100 * row['width']:.2f}",
        ]
        for row in rows
    ]
    return table(header, body, align=["left", "left"] + ["right"] * 6)


def verdict(rows, pair_rows):
    """The pre-registered criterion (docs/ece_intervals.md), checked."""
    failures = []
    for row in rows:
        coverage = row["covers_rms"] / row["datasets"]
        if row["n"] >= 1000 and coverage < 0.90:
            failures.append(f"{row['model']} n={row['n']}: coverage {100 * coverage:.0f}%")
        if row["outside"]:
            failures.append(f"{row['model']} n={row['n']}: {row['outside']} estimates outside")
    for row in pair_rows:
        coverage = row["covers"] / row["datasets"]
        if coverage < 0.90:
            failures.append(f"change {row['before']} -> {row['after']} n={row['n']}")
    if failures:
        return "Criterion NOT met: " + "; ".join(failures) + "."
    return (
        "Criterion met: the headline interval covers the true RMS error in at least 90% of the "
        "data sets of every cell with n >= 1,000, the change's interval in every pair cell, and "
        "no estimate lies outside its interval."
    )


def elapsed(start):
    """Wall-clock and CPU seconds since ``start`` (a pair of both)."""
    return time.perf_counter() - start[0], time.process_time() - start[1]


def run(args):
    torch.set_num_threads(1)
    start = (time.perf_counter(), time.process_time())
    truths = {model: truth(tau, args.truth_samples) for model, tau in MODELS.items()}
    sizes = [n for n in args.sizes]
    if args.candidates:
        rows = [
            candidate_cell(model, n, args.datasets, args.n_resamples, args.seed_base, truths)
            for model in MODELS
            for n in sizes
        ]
        pair_rows = [
            candidate_pair_cell(*pair, n, args.datasets, args.n_resamples, args.seed_base, truths)
            for pair in PAIRS
            for n in args.pair_sizes
        ]
        header = ["model", "n", *CANDIDATES]
        body = [
            [row["model"], str(row["n"]), *(percent(row[c], row["datasets"]) for c in CANDIDATES)]
            for row in rows
        ]
        candidates = table(header, body, align=["left"] + ["right"] * (len(header) - 1))
        pairs = table(
            ["before", "after", "n", "normal, RMS difference %", "ellipse (chosen) %"],
            [
                [
                    r["before"],
                    r["after"],
                    str(r["n"]),
                    percent(r["normal"], args.datasets),
                    percent(r["ellipse"], args.datasets),
                ]
                for r in pair_rows
            ],
            align=["left", "left", "right", "right", "right"],
        )
        return [candidates, pairs], rows + pair_rows, elapsed(start)
    rows = [
        cell(model, n, args.datasets, args.n_resamples, args.seed_base, truths)
        for model in MODELS
        for n in sizes
    ]
    pair_rows = [
        pair_cell(*pair, n, args.datasets, args.n_resamples, args.seed_base, truths)
        for pair in PAIRS
        for n in args.pair_sizes
    ]
    result = verdict(rows, pair_rows)
    tables = [coverage_table(rows, truths), pair_table(pair_rows), lambda markdown: result]
    return tables, rows + pair_rows, elapsed(start)


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument("--datasets", type=int, default=100, help="data sets per cell (100)")
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--pair-sizes", type=int, nargs="+", default=list(PAIR_SIZES))
    parser.add_argument("--truth-samples", type=int, default=4_000_000)
    parser.add_argument("--seed-base", type=int, default=None, help="(deciding: 2022)")
    parser.add_argument("--candidates", action="store_true", help="the rejected methods")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args(argv)
    if args.seed_base is None:
        args.seed_base = DEVELOPMENT if args.candidates else DECIDING
    tables, rows, seconds = run(args)
    notes = [
        f"{args.datasets} data sets per cell, {args.n_resamples} resamples per interval, seed "
        f"base {args.seed_base}; truths from {args.truth_samples:,} draws (± their Monte-Carlo "
        f"SE); one torch thread; {seconds[1] / 60:.1f} min of CPU time ({seconds[0] / 60:.1f} "
        "min of wall-clock time on a shared machine).",
        "plug-in ECE: bootstrap_ci of expected_calibration_error (ECE-15), percentile "
        "interval; its mean estimate and width (w), its coverage of the true ECE, and how "
        "often the estimate lies outside its own interval.",
        "debiased RMS: debiased_calibration_error_ci (15 bins); coverage of the true RMS error "
        "(its target; SE: the Monte-Carlo standard error of that coverage) and of the true ECE; "
        "'reaches 0': how often its lower end is 0; 'test rejects': calibration_test's p-value "
        "at most 0.05.",
        "Changes: debiased_calibration_error_difference(y, after, before) on the same samples; "
        "coverage of the true change of the RMS error, and how often its interval excludes 0.",
    ]
    if args.candidates:
        notes[1:] = [
            "Each column: the share of data sets whose interval covers the truth of its "
            "estimator (the true ECE for the ECE intervals, the true RMS error for the RMS "
            "ones); bias-corrected: the percentile interval shifted down by twice the "
            "bootstrap's bias (resample mean minus estimate), clipped at 0; 'from 0 unless the "
            "test rejects': its lower end set to 0 when calibration_test's p-value exceeds "
            "0.05; shifted: the percentile interval of the resampled debiased squared errors "
            "moved by the debiasing (debiased minus plug-in squared error).",
            "Changes: a normal interval of the difference of the two RMS errors, from the "
            "paired resamples' standard deviation, against the ellipse of "
            "debiased_calibration_error_difference.",
        ]
    print("\n\n".join(render(False) for render in tables))
    print()
    print("\n".join(notes))
    if args.markdown:
        blocks = [render(True) for render in tables]
        write_markdown(args.markdown, __file__, argv, *blocks, bullets(notes))
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted({key for row in rows for key in row}, key=lambda k: (k not in rows[0], k))
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
