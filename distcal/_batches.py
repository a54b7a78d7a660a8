"""The one door for data: arrays, tensors, loaders and iterables become checked chunks.

Every fit and prediction of distcal, and the command line's file readers, take their data
through :class:`BatchSource`. It reads what the user gave (arrays ``X, y, sample_weight``, a
stream of batches ``(X, y)`` or ``(X, y, sample_weight)``, or a :class:`Chunk` that already
came through it) and yields :class:`Chunk` objects, each checked once by :func:`check_batch`:
values (logits, or a model's inputs), labels, weights. Every rule is here or in the checks it
calls (:mod:`distcal._validation`):

- *values*: logits by :func:`~distcal._validation.check_logits` (finite, 1-D or 2-D, the
  probability warning, ``input_type``), model inputs by
  :func:`~distcal._validation.check_inputs` (finite, at least 2-D) and, with ``scale_rows``,
  the warning for unscaled images (:func:`distcal._modules.check_input_scale`);
- *labels*: integers in ``[0, n_classes)`` (:func:`~distcal._validation.check_targets`),
  checked before any forward pass; labels of a model's inputs are checked against ``[0, inf)``
  then, and against the model's columns once they are known (:meth:`BatchSource.check_classes`);
- *classes*: at least ``min_classes`` distinct labels over all the data, however it arrives
  (one class is allowed where the calibrator says so: ``_min_classes``);
- *weights*: finite and non-negative; positive in total over all the data (a batch alone may
  weigh nothing); in every batch of a stream or in none;
- *streams*: every batch of one shape (logit columns, or input shape); a stream that yields
  nothing is refused.

Chunks are concatenated in one place (:func:`concatenate`). A batch is a pair ``(X, y)`` or a
triple ``(X, y, sample_weight)``, as a torch ``DataLoader`` over a ``TensorDataset`` yields
them; for prediction, ``X`` alone or a pair whose labels are ignored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.utils.data

from ._device import as_tensor
from ._validation import (
    Logits,
    check_inputs,
    check_label_range,
    check_logits,
    check_sample_weight,
    check_targets,
    check_weight_total,
)

__all__ = [
    "BatchSource",
    "Chunk",
    "RestartableBatches",
    "batch_inputs",
    "batch_passes",
    "check_batch",
    "concatenate",
    "count_samples",
    "is_batches",
    "one_shot_error",
    "unpack_batch",
]


@dataclass(frozen=True)
class Chunk:
    """Checked data: what :class:`BatchSource` yields, and what it passes through unchecked.

    Attributes
    ----------
    values : Tensor
        Logits of shape (n, n_classes) (binary decision values expanded to ``[0, z]``;
        probabilities turned into their log with ``input_type="probabilities"``), or model
        inputs of shape (n, ...) in a floating dtype.
    labels : Tensor of shape (n,) or None
        ``torch.long`` labels on the device of ``values``; None for prediction.
    weights : Tensor of shape (n,) or None
        float64 weights on the device of ``values``.
    kind : {"logits", "inputs"}
        What ``values`` hold.
    input_type : str
        How logits were given ("logits" or "probabilities"); "inputs" for model inputs.
    binary_1d : bool
        Whether logits came as 1-D or single-column binary decision values.
    n_features : int
        Columns of the logits as given (1 for binary decision values); for inputs, the
        features of 2-D inputs (0 otherwise).
    reference : object
        What results computed from the chunk follow (container and device): the ``X`` given,
        or the first batch's.
    """

    values: torch.Tensor
    labels: torch.Tensor | None
    weights: torch.Tensor | None
    kind: str
    input_type: str
    binary_1d: bool
    n_features: int
    reference: object

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def logits(self) -> Logits:
        """The values as validated :class:`~distcal._validation.Logits`."""
        return Logits(self.values, self.binary_1d, self.n_features)

    def take(self, rows) -> Chunk:
        """Return the chunk of the samples ``rows`` (indices or a mask), still checked."""
        index = torch.as_tensor(rows, device=self.values.device)
        return replace(
            self,
            values=self.values[index],
            labels=None if self.labels is None else self.labels[index],
            weights=None if self.weights is None else self.weights[index],
        )

    def with_values(self, values: torch.Tensor, *, kind: str = "logits") -> Chunk:
        """Return the same samples with other values (a model's logits of these inputs, say)."""
        return replace(
            self, values=values, kind=kind, input_type="logits", n_features=values.shape[1]
        )


@contextlib.contextmanager
def _argument(role: str):
    """Tag an error raised inside with the argument it concerns (``exc.argument``)."""
    try:
        yield
    except (TypeError, ValueError) as exc:
        if getattr(exc, "argument", None) is None:
            exc.argument = role
        raise


def check_batch(
    X,
    y=None,
    sample_weight=None,
    *,
    kind: str = "logits",
    input_type: str = "logits",
    with_labels: bool = True,
    names=("X", "y", "sample_weight"),
    columns: tuple | None = None,
    estimator=None,
    allow_zero_sum: bool = False,
    reference=None,
) -> Chunk:
    """Check one batch (or one whole data set) and return it as a :class:`Chunk`.

    The only function through which data enter distcal's fits and predictions. Errors are
    those of the checks of :mod:`distcal._validation`, naming the argument as ``names`` give
    it, and carry ``argument``: ``"X"``, ``"y"`` or ``"sample_weight"``, the role of what
    failed (how the file readers know which file to blame).

    Parameters
    ----------
    X, y, sample_weight
        The data; ``sample_weight`` may be None.
    kind : {"logits", "inputs"}
        Whether ``X`` holds logits or a model's inputs.
    input_type : {"logits", "probabilities"}
        What logits hold.
    with_labels : bool
        False for prediction: ``y`` and ``sample_weight`` are not read.
    names : tuple of str
        How the three arguments are called in messages.
    columns : tuple or None
        ``(n_classes, binary_1d, n_features)`` that logits must have (those of a stream's
        first batch).
    estimator : object
        The estimator whose ``fit`` needs ``y`` (for scikit-learn's wording when it is None).
    allow_zero_sum : bool
        Accept weights that are all zero (a batch of a stream).
    reference : object
        What results follow (default: ``X``).
    """
    x_name, y_name, w_name = names
    with _argument("X"):
        if kind == "logits":
            logits = check_logits(X, input_type=input_type, name=x_name)
            values, binary, n_features = logits
            shape = (values.shape[1], binary, n_features)
            if columns is not None and shape != tuple(columns):
                raise ValueError(
                    f"{x_name} has {n_features} logit column(s), but the first batch had "
                    f"{columns[2]}; every batch must have the same columns."
                )
        else:
            values = check_inputs(X, name=x_name)
            binary, n_features = False, (values.shape[1] if values.ndim == 2 else 0)
            input_type = "inputs"
    labels = weights = None
    if with_labels:
        with _argument("y"):
            labels = check_targets(
                y,
                n_samples=values.shape[0],
                n_classes=values.shape[1] if kind == "logits" else None,
                device=values.device,
                name=y_name,
                x_name=x_name,
                estimator=estimator,
                binary=binary,
                min_classes=1,
            )
        with _argument("sample_weight"):
            weights = check_sample_weight(
                sample_weight,
                n_samples=values.shape[0],
                device=values.device,
                allow_zero_sum=allow_zero_sum,
                name=w_name,
            )
    reference = X if reference is None else reference
    return Chunk(values, labels, weights, kind, input_type, binary, n_features, reference)


def concatenate(chunks: list[Chunk]) -> Chunk:
    """Join chunks of one stream into one, on the device of the first: the one concatenation."""
    first = chunks[0]
    if len(chunks) == 1:
        return first
    device = first.values.device

    def join(parts):
        return torch.cat([as_tensor(part, device=device) for part in parts])

    return replace(
        first,
        values=join([c.values for c in chunks]),
        labels=None if first.labels is None else join([c.labels for c in chunks]),
        weights=None if first.weights is None else join([c.weights for c in chunks]),
    )


class RestartableBatches:
    """An iterable whose every ``iter`` calls a function for a new iterator of batches."""

    def __init__(self, start):
        self._start = start

    def __iter__(self):
        return self._start()


class BatchSource:
    """Arrays or a stream of batches, read as checked :class:`Chunk` objects.

    Parameters
    ----------
    X : array-like, Tensor, Chunk, or a stream of batches
        The data (see the module docstring). A :class:`Chunk` has been through a source
        already and is passed on as it is (its kind and input type must match).
    y, sample_weight : array-like or Tensor, default=None
        With arrays; omitted with a stream (its batches carry them) or a chunk.
    kind : {"logits", "inputs"}, default="logits"
        What ``X`` holds.
    input_type : {"logits", "probabilities"}, default="logits"
        What logits hold.
    owner : str, default=""
        Who reads, for messages (``"TemperatureScaling.fit"``).
    estimator : object, default=None
        The estimator being fitted (for scikit-learn's wording of a missing ``y``).
    with_labels : bool, default=True
        False for prediction.
    min_classes : int, default=1
        Fewest distinct labels over all the data.
    scale_rows : int or None, default=None
        With model inputs: warn of unscaled images, checking ``scale_rows`` rows at a time
        until one warns (the model's batch size).
    reiterable : bool, default=False
        Whether ``X`` must be a stream read several times (refuses iterators and arrays,
        accepts a function that returns a new iterator).
    """

    def __init__(
        self,
        X,
        y=None,
        sample_weight=None,
        *,
        kind: str = "logits",
        input_type: str = "logits",
        owner: str = "",
        estimator=None,
        with_labels: bool = True,
        min_classes: int = 1,
        scale_rows: int | None = None,
        reiterable: bool = False,
    ):
        self.kind, self.input_type, self.owner = kind, input_type, owner
        self.estimator, self.with_labels, self.min_classes = estimator, with_labels, min_classes
        self.scale_rows = scale_rows
        self.X, self.y, self.sample_weight = X, y, sample_weight
        # A re-iterable stream is what the caller asked for: anything else is refused by
        # batch_passes with the remedy.
        self.is_stream = not isinstance(X, Chunk) and (
            reiterable or is_batches(X) or isinstance(X, RestartableBatches)
        )
        self.labels_name = "the labels of batches" if self.is_stream else "y"
        if isinstance(X, Chunk):
            expected = "inputs" if kind == "inputs" else input_type
            if X.input_type != expected or (with_labels and X.labels is None):
                raise TypeError(
                    f"{owner}: X is data checked as {X.input_type}"
                    f"{'' if X.labels is not None else ' without labels'}; expected "
                    f"{expected}{' with labels' if with_labels else ''}."
                )
        given_apart = y is not None or sample_weight is not None
        if (self.is_stream or isinstance(X, Chunk)) and given_apart:
            given = "y" if y is not None else "sample_weight"
            what = "a stream of batches" if self.is_stream else "checked data"
            raise ValueError(
                f"{owner}: X is {what} (a {type(X).__name__}), so {given} must be omitted: "
                "the labels and weights come with the batches, as (inputs, labels) or "
                "(inputs, labels, sample_weight)."
            )
        if self.is_stream:
            self._start = batch_passes(X) if reiterable else (lambda: iter(X))

    # -------------------------------------------------------------------------- reading
    def chunks(self, *, allow_empty: bool = False) -> Iterator[Chunk]:
        """Read the data once (one pass over a stream), yielding checked chunks.

        With ``allow_empty``, a stream without batches yields nothing, and the rules on the
        data as a whole (the total weight, the classes) are left to the caller: one process
        of several may hold no batch, and a second pass reads the samples of the first.
        """
        if isinstance(self.X, Chunk):
            yield self.X
            return
        if not self.is_stream:
            chunk = check_batch(
                self.X,
                self.y,
                self.sample_weight,
                kind=self.kind,
                input_type=self.input_type,
                with_labels=self.with_labels,
                estimator=self.estimator,
            )
            self._check_scale(chunk, "X")
            if chunk.labels is not None and self.min_classes > 1:
                self._check_classes(chunk.labels, chunk.labels, "y")
            yield chunk
            return
        yield from self._stream_chunks(allow_empty)

    def _stream_chunks(self, allow_empty: bool) -> Iterator[Chunk]:
        first = None  # what the first batch was: its sample shape, and whether it had weights
        low = high = None
        total_weight = 0.0
        scale_warned = False
        for index, batch in enumerate(self._start()):
            if self.with_labels:
                X, y, w = unpack_batch(batch, index)
            else:
                X, y, w = batch_inputs(batch), None, None
            names = (f"batches[{index}][0]", f"batches[{index}][1]", f"batches[{index}][2]")
            if first is not None and self.with_labels and (w is None) != first[1]:
                error = ValueError(
                    f"batches[{index}] {'has no' if w is None else 'has'} sample_weight, unlike "
                    "batches[0]; give weights in every batch or in none."
                )
                error.argument = "sample_weight"
                raise error
            chunk = check_batch(
                X,
                y,
                w,
                kind=self.kind,
                input_type=self.input_type,
                with_labels=self.with_labels,
                names=names,
                columns=None if first is None or self.kind != "logits" else self.columns,
                estimator=self.estimator,
                allow_zero_sum=True,
            )
            if first is None:  # kept as a shape, not a batch: memory stays one batch
                first = (tuple(chunk.values.shape[1:]), chunk.weights is None)
                self.columns = (chunk.values.shape[1], chunk.binary_1d, chunk.n_features)
            elif self.kind == "inputs" and tuple(chunk.values.shape[1:]) != first[0]:
                error = ValueError(
                    f"batches[{index}] has samples of shape {tuple(chunk.values.shape[1:])}, "
                    f"but batches[0] had {first[0]}; every batch must hold inputs of one shape."
                )
                error.argument = "X"
                raise error
            if not scale_warned:
                scale_warned = self._check_scale(chunk, names[0])
            if chunk.labels is not None and self.min_classes > 1:
                batch_low, batch_high = (int(v) for v in torch.aminmax(chunk.labels))
                low = batch_low if low is None else min(low, batch_low)
                high = batch_high if high is None else max(high, batch_high)
            if chunk.weights is not None:
                total_weight += float(chunk.weights.sum())
            yield chunk
        if first is None:
            if allow_empty:
                return
            error = ValueError(
                f"{self.owner}: batches is empty: it yielded no batch; there is nothing to "
                f"{'fit' if self.with_labels else 'predict'}."
            )
            error.argument = "X"
            raise error
        if allow_empty:
            return
        if not first[1]:
            with _argument("sample_weight"):
                check_weight_total(total_weight, "sample_weight (over all batches)")
        if low is not None:
            self._check_classes(low, high, self.labels_name)

    def read(self) -> Chunk:
        """Read all the data as one checked chunk (a stream's batches concatenated)."""
        return concatenate(list(self.chunks()))

    # -------------------------------------------------------------------------- rules
    def _check_scale(self, chunk: Chunk, name: str) -> bool:
        """Warn if model inputs look unscaled (:func:`distcal._modules.check_input_scale`)."""
        if self.kind != "inputs" or self.scale_rows is None:
            return False
        from ._modules import check_input_scale  # _modules reads batches: import on use

        inputs = chunk.values
        for start in range(0, inputs.shape[0], self.scale_rows):
            if check_input_scale(inputs[start : start + self.scale_rows], self.owner, name):
                return True
        return False

    def _check_classes(self, low, high, name: str) -> None:
        """Apply the class rule: at least ``min_classes`` distinct labels over all the data."""
        if isinstance(low, torch.Tensor):
            low, high = (int(v) for v in torch.aminmax(low))
        if self.min_classes > 1 and low == high:
            error = ValueError(
                f"{name} contains only one class ({low}); at least {self.min_classes} classes "
                f"are needed to fit {self.owner.split('.')[0]}."
            )
            error.argument = "y"
            raise error

    def check_classes(self, labels: torch.Tensor, n_classes: int, x_name: str = "model") -> None:
        """Check labels of model inputs against the model's columns, once they are known."""
        with _argument("y"):
            check_label_range(
                labels, n_classes, name=self.labels_name, x_name=f"the logits of {x_name}"
            )


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
