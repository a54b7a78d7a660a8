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

__all__ = ["batch_passes", "unpack_batch"]


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
