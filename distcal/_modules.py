"""Running a torch module over inputs in batches to collect its logits.

The primitive that calibration (a ``model=`` parameter), distillation students and the
diagnostics share.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable

import torch

from ._batches import BatchSource
from ._device import module_device
from ._validation import check_inputs
from .exceptions import DistcalWarning, ProbabilityInputWarning

__all__ = [
    "CPU_PIECE_ROWS",
    "check_input_scale",
    "check_output_kind",
    "first_layer",
    "forward",
    "in_pieces",
    "input_dtype",
    "module_logits",
    "output_kind",
    "run_module",
    "shape_error",
    "stream_logits",
]

#: Rows of one forward pass without gradients on a CPU. A batch of 256 images of 28x28 puts
#: 33 MB in each of a ConvNet's first activations, which leaves the cache between layers; 64
#: at a time stay in it, and the pass over the whole batch takes half the time, with the same
#: result for every row (``python benchmarks/bench_layers.py``, docs/benchmarks.md).
CPU_PIECE_ROWS = 64

# torch's messages when a batch does not fit a layer (Linear, ConvNd, norms, reshapes)
_SHAPE_ERROR = re.compile(
    r"shapes cannot be multiplied|size mismatch|must match the size|expected input|"
    r"Expected .*(input|channels|dimension|size)|Given groups|channels|shape '\[",
    re.IGNORECASE,
)


def input_dtype(module: torch.nn.Module) -> torch.dtype:
    """Return the dtype ``module`` takes its inputs in: that of its first floating parameter."""
    for parameter in module.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32


def module_logits(
    module: torch.nn.Module,
    X,
    *,
    batch_size: int,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    n_repeats: int = 1,
    name: str = "model",
) -> torch.Tensor:
    """Return ``module``'s logits for ``X``, computed in batches on the module's own device.

    The module runs in eval mode and without gradients; its previous mode is restored afterwards.
    Only the logits of each batch are kept, never activations.

    Parameters
    ----------
    module : torch.nn.Module
        A network mapping a batch of shape (batch, ...) to logits of shape (batch, n_classes).
    X : array-like or Tensor of shape (n_samples, ...)
        Inputs; numpy arrays are converted batch by batch to the module's dtype and device.
    batch_size : int
        Samples moved to the device, transformed and run together (on a CPU the forward pass
        runs :data:`CPU_PIECE_ROWS` of them at a time, with the same result: see
        :func:`in_pieces`).
    transform : callable, default=None
        Applied to each batch on the module's device before the forward pass (masking, for
        instance).
    n_repeats : int, default=1
        Passes over ``X``; with a random ``transform`` each pass draws anew. Rows of the result
        are ordered pass after pass.
    name : str, default="model"
        The parameter's name, used in error messages.

    Returns
    -------
    Tensor of shape (n_repeats * n_samples, n_classes)
        Logits on the module's device.
    """
    return run_module(
        module,
        check_inputs(X),
        batch_size=batch_size,
        transform=transform,
        n_repeats=n_repeats,
        name=name,
    )


def run_module(
    module: torch.nn.Module,
    inputs: torch.Tensor,
    *,
    batch_size: int,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    n_repeats: int = 1,
    name: str = "model",
) -> torch.Tensor:
    """Return :func:`module_logits` of inputs the batch source checked (no second check)."""
    device = module_device(module)
    dtype = input_dtype(module)
    n_samples = inputs.shape[0]
    was_training = module.training
    module.eval()
    outputs = []
    try:
        with torch.no_grad():
            for _ in range(n_repeats):
                for start in range(0, n_samples, batch_size):
                    batch = inputs[start : start + batch_size].to(device=device, dtype=dtype)
                    if transform is not None:
                        batch = transform(batch)
                    first = not outputs
                    raw = in_pieces(
                        (lambda piece: forward(module, piece, name)) if first else module, batch
                    )
                    output = _check_output(raw, batch.shape[0], outputs, name)
                    _check_finite(output, start, name)
                    outputs.append(output)
    finally:
        module.train(was_training)
    return torch.cat(outputs)


def in_pieces(fn: Callable, batch: torch.Tensor):
    """Return ``fn(batch)``, computed :data:`CPU_PIECE_ROWS` rows at a time on a CPU.

    ``fn`` must treat rows independently (a network in eval mode, or one that normalises each
    image on its own), as every batched forward pass of distcal does: then the pieces,
    concatenated, are ``fn(batch)``. On other devices, and for small batches, ``fn`` runs once.
    If ``fn`` returns anything but one row per input row, it runs again on the whole batch so
    that the caller's checks see what it returns.
    """
    n_rows = batch.shape[0]
    if batch.device.type != "cpu" or n_rows <= CPU_PIECE_ROWS:
        return fn(batch)
    outputs = []
    for start in range(0, n_rows, CPU_PIECE_ROWS):
        piece = batch[start : start + CPU_PIECE_ROWS]
        output = fn(piece)
        if not isinstance(output, torch.Tensor) or output.ndim == 0 or len(output) != len(piece):
            return fn(batch)
        outputs.append(output)
    return torch.cat(outputs)


def stream_logits(
    module: torch.nn.Module, batches, *, check: Callable, batch_size: int
) -> tuple[torch.Tensor, object]:
    """Return the logits of a stream of input batches, concatenated, and the first inputs.

    Each batch is ``X`` or ``(X, y[, w])``, read by the batch source (labels ignored);
    ``check`` compares its checked inputs with what an estimator recorded (the input shape,
    say), and its error is re-raised naming the batch. The first batch's inputs come back too:
    results follow their container and device.
    """
    parts, reference = [], None
    source = BatchSource(batches, kind="inputs", with_labels=False, owner="predict")
    for index, chunk in enumerate(source.chunks()):
        reference = chunk.reference if reference is None else reference
        try:
            checked = check(chunk.values)
        except ValueError as exc:
            raise ValueError(f"batch {index} of X: {exc}") from exc
        parts.append(run_module(module, checked, batch_size=batch_size))
    return torch.cat(parts), reference


def _check_finite(output: torch.Tensor, start: int, name: str) -> None:
    finite = torch.isfinite(output).all(dim=1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().flatten()
        raise ValueError(
            f"{name} returned NaN or infinite logits for {bad.numel()} of {output.shape[0]} "
            f"inputs of a batch (the first at input {start + int(bad[0])}); no calibration or "
            "prediction can be made from them. Check the model on those inputs (or the inputs "
            "themselves)."
        )


def _check_output(output, n_rows: int, previous: list, name: str) -> torch.Tensor:
    if not isinstance(output, torch.Tensor):
        raise TypeError(
            f"{name} must return a Tensor of logits of shape (batch_size, n_classes); it returned "
            f"a {type(output).__name__}."
        )
    if output.ndim != 2 or output.shape[0] != n_rows:
        raise ValueError(
            f"{name} must return logits of shape (batch_size, n_classes) = ({n_rows}, n_classes); "
            f"it returned shape {tuple(output.shape)}."
        )
    if output.shape[1] < 2:
        raise ValueError(
            f"{name} must return at least 2 logit columns (one per class); it returned shape "
            f"{tuple(output.shape)}. For a binary model with one output z, wrap it to return "
            "torch.cat([torch.zeros_like(z), z], dim=1)."
        )
    if previous and output.shape[1] != previous[0].shape[1]:
        raise ValueError(
            f"{name} returned {output.shape[1]} logit columns for one batch and "
            f"{previous[0].shape[1]} for another."
        )
    return output.detach()


def first_layer(module: torch.nn.Module):
    """Return the first Linear or convolution of ``module`` (in module order), or None."""
    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear | torch.nn.modules.conv._ConvNd):
            return layer
    return None


def _what_it_takes(module: torch.nn.Module, name: str) -> str:
    layer = first_layer(module)
    if isinstance(layer, torch.nn.Linear):
        return (
            f"its first layer, Linear(in_features={layer.in_features}, "
            f"out_features={layer.out_features}), takes {layer.in_features} features per sample "
            "(after any flattening before it)"
        )
    if layer is not None:
        spatial = {1: "length", 2: "height, width", 3: "depth, height, width"}.get(
            len(layer.kernel_size), "..."
        )
        return (
            f"its first layer, {type(layer).__name__}(in_channels={layer.in_channels}, ...), "
            f"takes samples of shape ({layer.in_channels}, {spatial})"
        )
    return f"{name} takes samples of another shape"


def shape_error(module: torch.nn.Module, shape, exc: Exception, name: str = "model"):
    """Return a ValueError saying in plain words why ``module`` could not run on ``shape``.

    Parameters
    ----------
    module : torch.nn.Module
        The network that failed.
    shape : tuple of int
        The shape of the batch it was given.
    exc : Exception
        torch's error, quoted at the end of the message.
    name : str, default="model"
        The parameter's name.

    Returns
    -------
    ValueError
        The error to raise (``from exc``).
    """
    sample = tuple(shape[1:])
    message = (
        f"{name} could not run on X: X has samples of shape {sample}, but "
        f"{_what_it_takes(module, name)}. Pass inputs of the shape {name} takes."
    )
    if len(sample) == 1:
        message += (
            f" If X already holds the network's logits ({sample[0]} columns, one per class), "
            "calibrate them without a model: TemperatureScaling().fit(X, y), or model=None."
        )
    return ValueError(f"{message} (torch: {exc})")


def forward(module: torch.nn.Module, batch: torch.Tensor, name: str = "model"):
    """Run ``module`` on ``batch``; a shape mismatch is re-raised by :func:`shape_error`."""
    try:
        return module(batch)
    except RuntimeError as exc:
        if _SHAPE_ERROR.search(str(exc)):
            raise shape_error(module, tuple(batch.shape), exc, name) from exc
        raise


def check_input_scale(inputs: torch.Tensor, owner: str, name: str = "X") -> bool:
    """Warn when model inputs look unnormalised: whole numbers in [0, 255] reaching above 1.

    Images stored as ``uint8`` (or floats holding the same integers) are rarely what a network
    was trained on; it usually saw ``x / 255``, then normalised. Callers check batch by batch
    (each batch a loader yields, or each ``batch_size`` rows of an array) until one warns, so
    unscaled inputs after scaled ones are caught too; the cost is a pass over the inputs,
    small beside the network's.

    Parameters
    ----------
    inputs : Tensor
        Some of the inputs (already converted to a floating dtype).
    owner : str
        Who checks, for the message.
    name : str, default="X"
        The argument's name.

    Returns
    -------
    bool
        Whether it warned.
    """
    values = inputs.detach()
    if values.numel() == 0:
        return False
    low, high = (float(v) for v in torch.aminmax(values))
    if low < 0 or high <= 1 or high > 255:
        return False
    if not bool((values == values.round()).all()):
        return False
    warnings.warn(
        f"{owner}: {name} holds whole numbers from {low:g} to {high:g}, as unscaled images do "
        "(uint8 pixels). They are passed to the model as they are; a network is usually trained "
        "on scaled inputs (x / 255, then normalised). Pass the inputs as the network saw them in "
        "training.",
        DistcalWarning,
        stacklevel=3,
    )
    return True


def output_kind(outputs: torch.Tensor) -> str:
    """Say what a network's outputs look like: probabilities, log-probabilities or logits.

    Probabilities: every row lies in [0, 1] and sums to 1 (a softmax last layer).
    Log-probabilities: every value is at most 0 and ``exp`` of every row sums to 1 (a
    ``log_softmax`` last layer). Both within 1e-4. Anything else (one column included) is
    logits.

    Parameters
    ----------
    outputs : Tensor of shape (n_samples, n_classes)
        Outputs of the network.

    Returns
    -------
    str
        ``"probabilities"``, ``"log-probabilities"`` or ``"logits"``.
    """
    values = outputs.detach().to(torch.float64)
    if values.numel() == 0 or values.ndim != 2 or values.shape[1] < 2:
        return "logits"
    low, high = (float(v) for v in torch.aminmax(values))
    if low >= 0 and high <= 1 and float((values.sum(dim=1) - 1).abs().max()) <= 1e-4:
        return "probabilities"
    if high <= 0 and float(torch.logsumexp(values, dim=1).abs().max()) <= 1e-4:
        return "log-probabilities"
    return "logits"


def check_output_kind(
    logits: torch.Tensor, owner: str, *, shift_invariant: bool, name: str = "model"
) -> None:
    """Warn when a model's outputs look like probabilities or log-probabilities, not logits.

    Probabilities (a softmax last layer: every row in [0, 1], summing to 1) give a wrong
    calibration map without an error: the temperature is fitted on ``softmax(p / T)``.
    Log-probabilities (a ``log_softmax`` last layer: ``exp`` of every row sums to 1) differ from
    the logits by a constant per row, which temperature scaling and the other maps that go
    through a softmax first cancel (``shift_invariant``); other calibrators (vector and matrix
    scaling) see different inputs, so only they warn.

    Parameters
    ----------
    logits : Tensor of shape (n_samples, n_classes)
        The model's outputs on clean inputs.
    owner : str
        The calibrator's name, for the message.
    shift_invariant : bool
        Whether the calibration map is unchanged by adding a constant to each row.
    name : str, default="model"
        The parameter's name.
    """
    kind = output_kind(logits)
    if kind == "probabilities":
        warnings.warn(
            f"{owner}: the outputs of {name} look like probabilities (every row lies in [0, 1] "
            "and sums to 1), but they are used as logits, so the fitted calibration is wrong. "
            f"Remove the final softmax from {name} (calibrate the logits before it).",
            ProbabilityInputWarning,
            stacklevel=3,
        )
        return
    if kind == "log-probabilities" and not shift_invariant:
        warnings.warn(
            f"{owner}: the outputs of {name} look like log-probabilities (exp of every row sums "
            "to 1: a log_softmax last layer). Temperature scaling would not mind (a constant per "
            "row cancels in the softmax), but this calibrator's map is fitted on them as they "
            f"are. Remove the final log_softmax from {name} to calibrate its logits.",
            DistcalWarning,
            stacklevel=3,
        )
