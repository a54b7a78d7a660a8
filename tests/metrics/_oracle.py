"""An independent float64 numpy implementation of the binned metrics, used as the test oracle.

It shares no code with distcal: bins are found by explicit comparisons in a loop over bins,
quantile edges by scanning the cumulative weight of the sorted confidences, and every sum is
taken in float64 numpy.
"""

import numpy as np


def as_float64(x):
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        x = x.numpy()
    return np.asarray(x, dtype=np.float64)


def expand_binary(probs):
    probs = as_float64(probs)
    if probs.ndim == 1 or probs.shape[1] == 1:
        p = probs.reshape(-1)
        return np.stack([1.0 - p, p], axis=1)
    return probs


def edges(conf, n_bins, strategy, weights):
    if strategy == "uniform":
        return np.array([i / n_bins for i in range(n_bins + 1)])
    order = np.argsort(conf, kind="stable")
    values = conf[order]
    cumulative = np.cumsum(weights[order])
    total = cumulative[-1]
    result = [0.0]
    for i in range(1, n_bins):
        # Inner edge i: the smallest confidence whose cumulative weight exceeds i / n_bins.
        above = np.nonzero(cumulative > i * total / n_bins)[0]
        result.append(values[above[0]] if above.size else values[-1])
    result.append(1.0)
    return np.array(result)


def in_bin(conf, bin_edges, b):
    # [e_b, e_{b+1}), except the last bin, which takes everything from its lower edge up.
    inside = conf >= bin_edges[b]
    if b < len(bin_edges) - 2:
        inside &= conf < bin_edges[b + 1]
    return inside


def group_gaps(conf, outcome, weights, n_bins, strategy):
    """Return (bin weights, |acc - conf| per bin) over non-empty bins of one group."""
    bin_edges = edges(conf, n_bins, strategy, weights)
    masses, gaps = [], []
    for b in range(n_bins):
        mask = in_bin(conf, bin_edges, b)
        mass = weights[mask].sum()
        if mass <= 0:
            continue
        accuracy = (weights[mask] * outcome[mask]).sum() / mass
        confidence = (weights[mask] * conf[mask]).sum() / mass
        masses.append(mass)
        gaps.append(abs(accuracy - confidence))
    return np.array(masses), np.array(gaps)


def groups(probs, y, kind):
    if kind == "top-label":
        prediction = np.argmax(probs, axis=1)
        return [(probs.max(axis=1), (prediction == y).astype(np.float64))]
    return [(probs[:, k], (y == k).astype(np.float64)) for k in range(probs.shape[1])]


def calibration_error(probs, y, *, n_bins, norm, strategy, kind, weights=None):
    probs = expand_binary(probs)
    y = np.asarray(y).astype(np.int64)
    weights = np.ones(len(y)) if weights is None else as_float64(weights)
    errors = []
    for conf, outcome in groups(probs, y, kind):
        masses, gaps = group_gaps(conf, outcome, weights, n_bins, strategy)
        total = weights.sum()
        if norm == "l1":
            errors.append(np.sum(masses / total * gaps))
        elif norm == "l2":
            errors.append(np.sum(masses / total * gaps**2))
        else:
            errors.append(gaps.max())
    # classes combine by the power mean of the norm: root of the mean square for l2
    return float(np.sqrt(np.mean(errors)) if norm == "l2" else np.mean(errors))


def calibration_curve(probs, y, *, n_bins, strategy, kind, weights=None):
    """Return (edges, counts, mean_confidence, accuracy), NaN in empty bins; 2-D if classwise."""
    probs = expand_binary(probs)
    y = np.asarray(y).astype(np.int64)
    weights = np.ones(len(y)) if weights is None else as_float64(weights)
    rows = []
    for conf, outcome in groups(probs, y, kind):
        bin_edges = edges(conf, n_bins, strategy, weights)
        counts, confidence, accuracy = [], [], []
        for b in range(n_bins):
            mask = in_bin(conf, bin_edges, b)
            mass = weights[mask].sum()
            counts.append(mass)
            if mass > 0:
                confidence.append((weights[mask] * conf[mask]).sum() / mass)
                accuracy.append((weights[mask] * outcome[mask]).sum() / mass)
            else:
                confidence.append(np.nan)
                accuracy.append(np.nan)
        rows.append((bin_edges, counts, confidence, accuracy))
    if kind == "top-label":
        return tuple(np.array(part) for part in rows[0])
    return tuple(np.array([row[i] for row in rows]) for i in range(4))


def negative_log_likelihood(probs, y, weights=None):
    probs = expand_binary(probs)
    y = np.asarray(y).astype(np.int64)
    weights = np.ones(len(y)) if weights is None else as_float64(weights)
    losses = np.array([-np.log(probs[i, y[i]]) for i in range(len(y))])
    return float(np.sum(weights * losses) / np.sum(weights))


def brier_score(probs, y, weights=None):
    probs = expand_binary(probs)
    y = np.asarray(y).astype(np.int64)
    weights = np.ones(len(y)) if weights is None else as_float64(weights)
    onehot = np.eye(probs.shape[1])[y]
    return float(np.sum(weights * ((probs - onehot) ** 2).sum(axis=1)) / np.sum(weights))
