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

__all__ = ["batch_inputs", "batch_passes", "count_samples", "is_batches", "unpack_batch"]


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


def unpack_batch(batch, index: int, *, name: str = "batches"):
    """Return ``(X, y, sample_weight)`` of one batch (``sample_weight`` None when absent)."""
    if not isinstance(batch, tuple | list) or len(batch) not in (2, 3):
        what = type(batch).__name__
        if isinstance(batch, tuple | list):
            what += f" of length {len(batch)}"
        raise TypeError(
            f"{name}[{index}] must be a pair (X, y) or a triple (X, y, sample_weight); got a "
            f"{what}."
        )
    return (batch[0], batch[1], batch[2] if len(batch) == 3 else None)


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
