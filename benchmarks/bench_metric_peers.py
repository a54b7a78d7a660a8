"""distcal's calibration metrics beyond the ECE against their reference implementations.

Each row computes one metric on the same probabilities with distcal and with the reference a
user would otherwise reach for, in this one process, timed in interleaved rounds after one
warm-up call each (median of ``--repeat`` rounds):

- classwise ECE and the debiased (root-mean-square) calibration error, top-label and
  classwise: Kumar, Liang and Ma's ``uncertainty-calibration`` package (imported as
  ``calibration``), on the same 15 equal-width bins;
- the smooth ECE: Blasiok and Nakkiran's ``relplot.smECE``;
- the Kolmogorov-Smirnov calibration error (Gupta et al., 2021), the maximum-logit
  concentration and the masking spread ratio: no package computes them, so the peer is a
  direct numpy version written here from the definitions;
- the bootstrap interval of the ECE: ``scipy.stats.bootstrap`` (percentile method, resampling
  the rows, so labels and probabilities stay paired), with the same number of resamples.

Data: logits ``3 * z`` with labels drawn from ``softmax(z)`` (over-confident), N samples and K
classes (default 1e5 x 10; the bootstrap rows use N / 10 samples and 1000 resamples). The
``|difference|`` column is the gap between the two values; where the definitions differ on
purpose, the notes below the table say how.

Usage::

    python benchmarks/bench_metric_peers.py --markdown docs/benchmarks/metric_peers.md
"""

from __future__ import annotations

import functools
import statistics
import sys
import time
from pathlib import Path

import _data
import numpy as np
from _report import argument_parser, quiet, write_markdown

NOTES = [
    "Debiased classwise: the package clamps each class's debiased square at 0 before averaging "
    "over classes, distcal clamps the average (less biased when some classes are calibrated); "
    "both agree whenever every class's estimate is positive, as here.",
    "Debiased: the package drops bins holding one sample, distcal keeps their plug-in term; "
    "at this N every bin holds many samples.",
    "Smooth ECE: relplot discretises the kernel on a coarser grid and searches the bandwidth "
    "to 1e-3; distcal matches a direct, unpooled evaluation of the definition to 2e-3 "
    "(tests/metrics/test_smooth.py).",
    "Bootstrap: the two draw different resamples (numpy's legacy RandomState in distcal, "
    "scipy's Generator), so their interval ends differ by Monte Carlo noise.",
]


def make_data(n_samples, n_classes, seed=0):
    """The shared logits and labels, with their softmax probabilities."""
    logits, y = _data.make_data(n_samples, n_classes, seed)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return logits, shifted / shifted.sum(axis=1, keepdims=True), y


def ks_numpy(y, p):
    """Top-label KS calibration error from its definition: sort, cumulate, take the max gap."""
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    order = np.argsort(confidence, kind="stable")
    gaps = np.cumsum(correct[order] - confidence[order]) / len(y)
    return float(np.abs(gaps).max())


def concentration_numpy(logits):
    top = logits.max(axis=1)
    # the spread of one network's maximum logits over its samples, not a spread over seeds:
    # the population SD, as distcal's max_logit_concentration defines it
    return float(top.std(ddof=0) / abs(top.mean()))


def iqr(values):
    low, high = np.quantile(values, [0.25, 0.75])
    return high - low


def spread_numpy(logits, masked):
    return float(iqr(masked.max(axis=1)) / iqr(logits.max(axis=1)))


def masked_copy(logits, seed=1):
    """Stand-in for the logits of masked inputs: the clean ones with per-sample noise."""
    rng = np.random.default_rng(seed)
    return logits * rng.uniform(0.5, 1.0, size=(len(logits), 1))


def rows(n_samples, n_classes, n_resamples):
    """(metric, peer name, distcal call, peer call) for each row."""
    with quiet():
        import calibration as kumar
        import relplot
    from scipy.stats import bootstrap

    from distcal.metrics import (
        bootstrap_ci,
        classwise_calibration_error,
        debiased_calibration_error,
        expected_calibration_error,
        ks_calibration_error,
        masking_spread_ratio,
        max_logit_concentration,
        smooth_calibration_error,
    )

    logits, p, y = make_data(n_samples, n_classes)
    masked = masked_copy(logits)
    small = n_samples // 10
    p_small, y_small = p[:small], y[:small]

    def kumar_ce(mode, power, debias):
        return lambda: kumar.lower_bound_scaling_ce(
            p,
            y,
            p=power,
            debias=debias,
            num_bins=15,
            binning_scheme=kumar.get_equal_prob_bins,
            mode=mode,
        )

    def scipy_bootstrap():
        # scipy resamples 1-D samples: resample the row indices, score the rows they pick
        result = bootstrap(
            (np.arange(small),),
            lambda rows: expected_calibration_error(y_small[rows], p_small[rows]),
            vectorized=False,
            n_resamples=n_resamples,
            confidence_level=0.95,
            method="percentile",
            random_state=np.random.default_rng(0),
        )
        return result.confidence_interval.low, result.confidence_interval.high

    def distcal_bootstrap():
        ci = bootstrap_ci(
            expected_calibration_error, y_small, p_small, n_resamples=n_resamples, random_state=0
        )
        return ci.low, ci.high

    return [
        (
            "classwise ECE",
            "uncertainty-calibration get_ece (marginal)",
            lambda: classwise_calibration_error(y, p, n_bins=15),
            kumar_ce("marginal", 1, False),
        ),
        (
            "debiased RMS CE, top-label",
            "uncertainty-calibration (debias=True)",
            lambda: debiased_calibration_error(y, p, n_bins=15),
            kumar_ce("top-label", 2, True),
        ),
        (
            "debiased RMS CE, classwise",
            "uncertainty-calibration (debias=True, marginal)",
            lambda: debiased_calibration_error(y, p, n_bins=15, kind="classwise"),
            kumar_ce("marginal", 2, True),
        ),
        (
            "smooth ECE",
            "relplot smECE",
            lambda: smooth_calibration_error(y, p),
            lambda: relplot.smECE(p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)),
        ),
        (
            "KS calibration error",
            "numpy, from the definition",
            lambda: ks_calibration_error(y, p),
            lambda: ks_numpy(y, p),
        ),
        (
            "max-logit concentration",
            "numpy, from the definition",
            lambda: max_logit_concentration(logits),
            lambda: concentration_numpy(logits),
        ),
        (
            "masking spread ratio",
            "numpy, from the definition",
            lambda: masking_spread_ratio(logits, masked),
            lambda: spread_numpy(logits, masked),
        ),
        (
            f"bootstrap 95% CI of ECE (N={small}, {n_resamples} resamples)",
            "scipy.stats.bootstrap (percentile)",
            distcal_bootstrap,
            scipy_bootstrap,
        ),
    ]


def _quiet(function):
    @functools.wraps(function)
    def run():
        with quiet():
            return function()

    return run


def run(n_samples, n_classes, repeat, n_resamples):
    table = []
    for metric, peer, ours, theirs in rows(n_samples, n_classes, n_resamples):
        ours, theirs = _quiet(ours), _quiet(theirs)
        values = {"distcal": ours(), "peer": theirs()}  # warm-up, and the values
        times = {"distcal": [], "peer": []}
        for _ in range(repeat):
            for key, function in (("distcal", ours), ("peer", theirs)):
                start = time.perf_counter()
                function()
                times[key].append(time.perf_counter() - start)
        ours_s, peer_s = statistics.median(times["distcal"]), statistics.median(times["peer"])
        a, b = np.atleast_1d(values["distcal"]), np.atleast_1d(values["peer"])
        table.append(
            {
                "metric": metric,
                "peer": peer,
                "distcal ms": 1e3 * ours_s,
                "peer ms": 1e3 * peer_s,
                "speed-up": peer_s / ours_s,
                "distcal value": ", ".join(f"{v:.6f}" for v in a),
                "peer value": ", ".join(f"{v:.6f}" for v in b),
                "|difference|": float(np.abs(a - b).max()),
            }
        )
        print(table[-1], file=sys.stderr, flush=True)
    return table


def format_table(table, markdown=False):
    from distcal.experiment.report import render_table

    header = list(table[0])
    lines = [
        [
            r["metric"],
            r["peer"],
            f"{r['distcal ms']:.1f}",
            f"{r['peer ms']:.1f}",
            f"{r['speed-up']:.1f}x",
            r["distcal value"],
            r["peer value"],
            f"{r['|difference|']:.1e}",
        ]
        for r in table
    ]
    return render_table(header, lines, markdown=markdown)


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument("--n-samples", type=int, default=100_000)
    parser.add_argument("--n-classes", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    import torch

    table = run(args.n_samples, args.n_classes, args.repeat, args.n_resamples)
    context = (
        f"N = {args.n_samples}, K = {args.n_classes}, median of {args.repeat} interleaved rounds "
        f"after a warm-up; {torch.get_num_threads()} torch threads"
    )
    notes = "\n".join(f"- {note}" for note in NOTES)
    print(context)
    print(format_table(table))
    print(notes)
    if args.markdown:
        write_markdown(
            args.markdown, __file__, argv, context, format_table(table, markdown=True), notes
        )


if __name__ == "__main__":
    main()
