"""Synthetic logits and labels, the one recipe of every benchmark that does not train a network.

Logits are ``3 z`` with ``z`` standard normal, N samples by K classes, and each label is drawn
from ``softmax(z)``: a network three times too confident, with a known calibration map (the
temperature 3). The scripts run as ``python benchmarks/bench_*.py``, so this folder is on their
import path.
"""

from __future__ import annotations

import numpy as np

#: How far the logits are from calibrated: the labels follow softmax(z), the logits are SCALE z.
SCALE = 3


def _draw(rng, rows: int, n_classes: int, labels: str, dtype):
    """``z`` standard normal of ``dtype`` and labels drawn from ``softmax(z)``, from ``rng``."""
    z = rng.standard_normal((rows, n_classes), dtype=dtype)
    if labels == "gumbel":
        # Gumbel-max: argmax(z + G) is a draw from softmax(z).
        y = (z + rng.gumbel(size=z.shape).astype(dtype)).argmax(axis=1)
    else:
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        u = rng.random((rows, 1))
        y = np.minimum((p.cumsum(axis=1) <= u).sum(axis=1), n_classes - 1)
    return z, y.astype(np.int64)


def logit_chunks(n_samples: int, n_classes: int, seed: int = 0, *, labels="gumbel", chunk=None):
    """Yield ``(z, y)`` in row chunks: ``z`` standard normal, ``y`` drawn from ``softmax(z)``.

    Parameters
    ----------
    n_samples : int
        Rows in all.
    n_classes : int
        Columns.
    seed : int, default=0
        Seeds numpy's generator; the draws follow each other in the generator's stream.
    labels : {"gumbel", "inverse"}, default="gumbel"
        How labels are drawn: the Gumbel-max trick (a Gumbel draw per cell, after all of a
        chunk's ``z``), or by inverting the cumulative probabilities with one uniform per row
        (the last class where rounding leaves the total just below the uniform).
    chunk : int or None, default=None
        Rows per chunk (None: one chunk), so that large inputs need small float64 temporaries.

    Yields
    ------
    z : ndarray of shape (n_rows, n_classes)
        float64 standard normal draws.
    y : ndarray of shape (n_rows,)
        int64 labels.
    """
    if labels not in ("gumbel", "inverse"):
        raise ValueError(f'labels must be "gumbel" or "inverse"; got {labels!r}.')
    rng = np.random.default_rng(seed)
    chunk = n_samples if chunk is None else chunk
    for start in range(0, n_samples, chunk):
        yield _draw(rng, min(start + chunk, n_samples) - start, n_classes, labels, np.float64)


def make_data(n_samples: int, n_classes: int, seed: int = 0, *, labels="gumbel"):
    """Logits ``3 z`` and labels drawn from ``softmax(z)``, in one piece.

    Parameters
    ----------
    n_samples : int
        Rows.
    n_classes : int
        Columns.
    seed : int, default=0
        Seeds numpy's generator.
    labels : {"gumbel", "inverse"}, default="gumbel"
        How labels are drawn (see :func:`logit_chunks`).

    Returns
    -------
    logits : ndarray of shape (n_samples, n_classes)
        float64 logits.
    y : ndarray of shape (n_samples,)
        int64 labels.
    """
    z, y = next(logit_chunks(n_samples, n_classes, seed, labels=labels))
    return SCALE * z, y


def logit_batch(index: int, batch: int, n_samples: int, n_classes: int, seed: int = 0):
    """Batch ``index`` of a stream whose batches are drawn independently of each other.

    Each batch has a generator of its own, seeded by ``(seed, index)``, so that a stream of any
    length can be regenerated batch by batch, in any order, without holding it.

    Parameters
    ----------
    index : int
        The batch's position in the stream.
    batch : int
        Rows per batch (the last batch holds the rest).
    n_samples : int
        Rows of the whole stream.
    n_classes : int
        Columns.
    seed : int, default=0
        Seeds the stream.

    Returns
    -------
    logits : ndarray of shape (n_rows, n_classes)
        float32 logits ``3 z``.
    y : ndarray of shape (n_rows,)
        int64 labels drawn from ``softmax(z)`` (Gumbel-max).
    """
    rng = np.random.default_rng([seed, index])
    rows = min(batch, n_samples - index * batch)
    z, y = _draw(rng, rows, n_classes, "gumbel", np.float32)
    return SCALE * z, y
