"""Data that arrives in batches: the one place that reads an iterable of batches.

Streaming fits (:meth:`distcal.TemperatureScaling.fit_batches`) and streaming metrics
(:class:`distcal.metrics.CalibrationAccumulator`) take their data as batches so that no more than
one batch is in memory at a time. A batch is a pair ``(X, y)`` or a triple
``(X, y, sample_weight)``, as a torch ``DataLoader`` over a ``TensorDataset`` yields them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.utils.data

__all__ = [
    "batch_inputs",
    "batch_passes",
    "count_samples",
    "is_batches",
    "one_shot_error",
    "unpack_batch",
]


def batch_passes(batches, *, name: str = "batches") -> Callable[[], Iterator]:
    """Return a function that starts a new pass over ``batches``.

    Parameters
    ----------
    batches : iterable or callable
        A re-iterable collection of batches (a ``DataLoader``, a list), or a function without
        arguments that returns a new iterator of batches each time it is called (how to stream
        from a generator). A generator or another iterator can be read only once, so it is
        refused with an error that says what to pass instead.
    name : str
        The argument's name, for error messages.
    """
    if isinstance(batches, str | bytes | np.ndarray | torch.Tensor):
        raise TypeError(
            f"{name} must be an iterable of (X, y) or (X, y, sample_weight) batches, such as a "
            f"DataLoader or a list of tuples; got a single {type(batches).__name__}. Use fit(X, "
            "y) for data that is in memory."
        )
    if isinstance(batches, Iterator):
        raise TypeError(
            f"{name} must be re-iterable: the fit reads the batches several times (once per "
            f"solver pass), and a {type(batches).__name__} can be read only once. Pass a "
            "DataLoader, a list, or a function that returns a new iterator of batches, such as "
            "`lambda: my_generator(...)`."
        )
    if isinstance(batches, Iterable):
        return lambda: iter(batches)
    if callable(batches):

        def start():
            iterator = batches()
            if not isinstance(iterator, Iterable):
                raise TypeError(
                    f"{name} is a function, so it must return an iterator of batches; it "
                    f"returned a {type(iterator).__name__}."
                )
            return iter(iterator)

        return start
    raise TypeError(
        f"{name} must be an iterable of (X, y) or (X, y, sample_weight) batches, or a function "
        f"returning a new iterator of them; got a {type(batches).__name__}."
    )


def one_shot_error(caller: str, n_samples: int, why: str) -> ValueError:
    """Return the error for a stream that yields nothing when read again.

    ``batch_passes`` refuses iterators; an iterable whose ``__iter__`` returns the same
    exhausted iterator (a streaming dataset may) shows itself only on its second pass.

    Parameters
    ----------
    caller : str
        Who read it (``"TemperatureScaling.fit_batches"``).
    n_samples : int
        What the first pass read.
    why : str
        Why the caller reads the stream again.

    Returns
    -------
    ValueError
        The error to raise.
    """
    return ValueError(
        f"{caller}: batches yielded no batch when read again, though the first pass read "
        f"{n_samples} samples: it can be read only once (an iterable whose __iter__ returns the "
        f"same exhausted iterator, as a streaming dataset may). {why} Pass a re-iterable loader "
        "(a DataLoader, a list of batches) or a function that returns a new iterator of them."
    )


def unpack_batch(batch, index: int, *, name: str = "batches"):
    """Return ``(X, y, sample_weight)`` of one batch (``sample_weight`` None when absent).

    The third element of a triple is read as sample weights only when it holds floating-point
    numbers: datasets that return ``(x, y, index)`` give an integer index there, which must not
    be taken for weights, so integers (and booleans) are refused with the remedy.
    """
    if not isinstance(batch, tuple | list) or len(batch) not in (2, 3):
        what = type(batch).__name__
        if isinstance(batch, tuple | list):
            what += f" of length {len(batch)}"
        raise TypeError(
            f"{name}[{index}] must be a pair (X, y) or a triple (X, y, sample_weight); got a "
            f"{what}."
        )
    weights = batch[2] if len(batch) == 3 else None
    if weights is not None:
        kind = _dtype_kind(weights)
        if kind != "f":
            what = {"i": "integers", "u": "integers", "b": "booleans"}.get(kind, "no numbers")
            dtype = getattr(weights, "dtype", type(weights).__name__)
            raise TypeError(
                f"{name}[{index}][2] holds {what} ({dtype}), but the third element of a batch is "
                "read as sample_weight, which must hold floating-point weights. A dataset that "
                "returns (x, y, index) gives an index there: drop it (a dataset or collate_fn "
                "that yields (x, y)), or pass weights as floats (weights.float())."
            )
    return (batch[0], batch[1], weights)


def _dtype_kind(values) -> str:
    """Return the numpy kind of the dtype of ``values`` ("f": floating, "i", "u", "b", ...)."""
    if isinstance(values, torch.Tensor):
        if values.is_floating_point():
            return "f"
        return "b" if values.dtype == torch.bool else ("i" if not values.is_complex() else "c")
    try:
        return np.asarray(values).dtype.kind
    except (TypeError, ValueError):
        return "O"


def is_batches(X) -> bool:
    """Whether ``X`` is a stream of batches rather than one array of data.

    A torch ``DataLoader``, any iterator (a generator, ``iter(loader)``), or a list or tuple
    whose first item is itself a pair or triple ``(X, y[, sample_weight])`` of arrays or
    tensors. Plain lists of numbers or of arrays stay array-likes, as scikit-learn reads them.
    """
    if isinstance(X, str | bytes | np.ndarray | torch.Tensor) or X is None:
        return False
    if isinstance(X, torch.utils.data.DataLoader | Iterator):
        return True
    if isinstance(X, list | tuple):
        if not X:
            return False
        first = X[0]
        return (
            isinstance(first, tuple | list)
            and len(first) in (2, 3)
            and isinstance(first[0], np.ndarray | torch.Tensor)
            and first[0].ndim >= 1
        )
    # any other iterable that is not array-like (a custom dataset of batches, for instance)
    return isinstance(X, Iterable) and not hasattr(X, "__array__") and not hasattr(X, "shape")


def count_samples(batches) -> int | None:
    """Return the number of samples a stream of batches will yield, when known beforehand.

    A ``DataLoader`` with automatic batching over a sized sampler knows it (``drop_last``
    included); a list or tuple of batches is counted from its batches' first arrays. Any other
    stream (an iterator, a custom iterable) returns None: it cannot be known without reading it.
    """
    if isinstance(batches, torch.utils.data.DataLoader):
        sampler = batches.batch_sampler
        if not isinstance(sampler, torch.utils.data.BatchSampler):
            return None
        try:
            n_samples = len(sampler.sampler)
        except TypeError:
            return None
        if sampler.drop_last:
            return n_samples // sampler.batch_size * sampler.batch_size
        return n_samples
    if isinstance(batches, list | tuple):
        total = 0
        for index, batch in enumerate(batches):
            inputs = batch[0] if isinstance(batch, tuple | list) else batch
            if not hasattr(inputs, "shape") or len(inputs.shape) == 0:
                raise TypeError(
                    f"batches[{index}] must hold an array or tensor of inputs first; got a "
                    f"{type(inputs).__name__}."
                )
            total += int(inputs.shape[0])
        return total
    return None


def batch_inputs(batch):
    """Return the inputs of a prediction batch: ``X`` of ``(X, y[, w])``, or the batch."""
    if isinstance(batch, tuple | list):
        if not batch:
            raise TypeError("a batch must hold inputs; got an empty one.")
        return batch[0]
    return batch
