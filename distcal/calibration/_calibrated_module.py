"""A network and a fitted calibrator as one ``nn.Module``: inputs in, calibrated outputs out.

The calibration map becomes a small *head* module holding the fitted parameters as buffers on
the network's device; :class:`CalibratedModule` runs the network, then the head. Heads exist
for the maps that are a few tensor operations, and each calibrator declares its own
(``_torch_head()``; a masked calibrator deploys its fitted inner calibrator, ``_fitted_map()``):
in distcal, a temperature (:class:`TemperatureScaling`, :class:`MaskedTemperatureScaling`,
:class:`DistilledCalibration`), the ensemble of temperatures
(:class:`EnsembleTemperatureScaling`) and the affine maps (:class:`VectorScaling`,
:class:`MatrixScaling`, :class:`DirichletCalibration`), also as the fitted inner calibrator of
a :class:`MaskedScaling`. The module scripts (``torch.jit.script``) and exports
(``torch.export.export``) with torch's own tools. :func:`save_calibrated_module` writes the
network's ``state_dict`` and the calibrator (in :func:`save_calibrator`'s format) to one
safetensors file; :func:`load_calibrated_module` reads it back into a network of the same
architecture, which the caller builds (a file holds no code).

**Guards.** A calibrator is only right on the outputs it was fitted on, so
:func:`calibrated_module` runs the network once on a probe batch (``example_inputs``, or inputs
of the shape it takes when that is known) and refuses outputs that cannot be those: a tuple
instead of one tensor, another number of columns, probabilities (rows in [0, 1] summing to 1)
under a calibrator fitted on logits, or logits under one fitted on probabilities; it warns
about log-probabilities under a map that a constant per row changes (one that does not declare
``_shift_invariant``: vector and matrix scaling). ``forward`` checks the type and width of the
network's output on every call (shapes only: it stays scriptable and exportable). The file
records the network's class and the signature of its layers (each module's type and its
parameters' and buffers' shapes), and :func:`load_calibrated_module` refuses a network that
differs. Binary networks with one output (decision values, or probabilities of class 1 with
``input_type="probabilities"``) have a path too: the calibrator fitted on 1-D values maps them
as ``[0, z]``.
"""

from __future__ import annotations

import warnings

import torch
from sklearn.utils.validation import check_is_fitted

from .._device import module_device
from .._files import read_tensors, write_tensors
from .._modules import first_layer, output_kind
from .._params import Options, check_param
from ..exceptions import DistcalWarning
from ._base import BaseLogitCalibrator, registered_calibrators
from ._persistence import _check_predictions, _describe, _rebuild

__all__ = [
    "CalibratedModule",
    "calibrated_module",
    "load_calibrated_module",
    "save_calibrated_module",
]

_KIND = "calibrated_module"


def _supported() -> str:
    """Name the registered calibrators that declare a head, and those that deploy an inner one."""
    base = BaseLogitCalibrator
    known = registered_calibrators().items()
    heads = [name for name, cls in known if cls._torch_head is not base._torch_head]
    inner = [name for name, cls in known if cls._fitted_map is not base._fitted_map]
    return f"{', '.join(heads)}; and {', '.join(inner)} when their fitted calibrator is one of them"


class _InputMap(torch.nn.Module):
    """Make the network's outputs into the logits the calibrator was fitted on, then map them.

    ``binary``: one output per sample (shape (batch,) or (batch, 1)) is the decision value
    ``z`` of class 1, taken as the logits ``[0, z]``, and calibrated logits come back as one
    decision value (their difference), as ``decision_function`` returns them.
    ``probabilities``: the outputs are probabilities (of class 1 when ``binary``) and become
    their log, an exact 0 the log of the smallest positive float64, as ``check_logits`` does.
    """

    def __init__(self, head: torch.nn.Module, binary: bool, probabilities: bool):
        super().__init__()
        self.head = head
        self.binary = binary
        self.probabilities = probabilities
        self.tiny = torch.finfo(torch.float64).tiny

    def prepare(self, z: torch.Tensor) -> torch.Tensor:
        if self.binary:
            z = z.reshape(z.shape[0])
            first = 1 - z if self.probabilities else torch.zeros_like(z)
            z = torch.stack([first, z], dim=1)
        if self.probabilities:
            z = torch.log(z.to(torch.float64).clamp_min(self.tiny)).to(z.dtype)
        return z

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = self.head(self.prepare(z))
        if self.binary:
            return out[:, 1] - out[:, 0]
        return out

    @torch.jit.export
    def proba(self, z: torch.Tensor) -> torch.Tensor:
        return self.head.proba(self.prepare(z))


def _head(calibrator) -> torch.nn.Module:
    """Return the head module of a fitted calibrator (a TypeError names what is supported)."""
    check_is_fitted(calibrator)
    head = _map(calibrator)
    binary = bool(getattr(calibrator, "_binary_1d", False))
    probabilities = getattr(calibrator, "input_type", "logits") == "probabilities"
    if binary or probabilities:
        return _InputMap(head, binary, probabilities)
    return head


def _map(calibrator) -> torch.nn.Module:
    """Return the head that the calibrator's fitted map declares (``_torch_head``)."""
    inner = calibrator._fitted_map()
    head = inner._torch_head()
    if head is None:
        which = type(inner).__name__
        if inner is not calibrator:
            which = f"{which} (the fitted calibrator of {type(calibrator).__name__})"
        raise TypeError(
            f"calibrated_module does not support {which}: it declares no torch head "
            f"(its _torch_head() returns None). Calibrators with a head: {_supported()}. For "
            "the others, call calibrator.predict_proba(network_logits)."
        )
    if not isinstance(head, torch.nn.Module):
        raise TypeError(
            f"{type(inner).__name__}._torch_head() must return a torch.nn.Module (or None); "
            f"it returned a {type(head).__name__}."
        )
    return head


def _columns(calibrator) -> int:
    """Return the output columns the calibrator was fitted on (1: binary decision values)."""
    if getattr(calibrator, "model", None) is not None:  # n_features_in_: the model's inputs
        return len(calibrator.classes_)
    return int(getattr(calibrator, "n_features_in_", len(calibrator.classes_)))


def _describe_columns(calibrator) -> str:
    if getattr(calibrator, "_binary_1d", False):
        return "1 column (binary decision values)"
    return f"{_columns(calibrator)} logit columns"


def _check_classes(network, calibrator) -> None:
    """Refuse a network whose last layer is a Linear with another number of outputs."""
    layers = [m for m in network.modules() if not list(m.children())]
    last = next((m for m in reversed(layers) if any(True for _ in m.parameters())), None)
    if isinstance(last, torch.nn.Linear) and last.out_features != _columns(calibrator):
        raise ValueError(
            f"network ends in Linear(out_features={last.out_features}), but "
            f"{type(calibrator).__name__} was fitted on {_describe_columns(calibrator)}; pass "
            "the network whose outputs the calibrator was fitted on."
        )


def _probe_inputs(network, calibrator, example_inputs):
    """Return a batch to run the network on, and whether the caller gave it (else None)."""
    if example_inputs is not None:
        if not isinstance(example_inputs, torch.Tensor):
            raise TypeError(
                "example_inputs must be a Tensor of the network's inputs (a few samples); got "
                f"a {type(example_inputs).__name__}."
            )
        return example_inputs, True
    shape = getattr(calibrator, "input_shape_", None) or getattr(network, "input_shape", None)
    if shape is None:
        layer = first_layer(network)
        if isinstance(layer, torch.nn.Linear):
            shape = (layer.in_features,)
    if shape is None:
        return None, False
    dtype = next((p.dtype for p in network.parameters() if p.is_floating_point()), torch.float32)
    generator = torch.Generator().manual_seed(0)
    batch = torch.randn((8, *tuple(shape)), generator=generator, dtype=torch.float64)
    return batch.to(device=module_device(network), dtype=dtype), False


def _what(outputs) -> str:
    if isinstance(outputs, torch.Tensor):
        return f"Tensor of shape {tuple(outputs.shape)}"
    if isinstance(outputs, tuple | list):
        inner = ", ".join(_what(o) for o in outputs[:4])
        return f"{type(outputs).__name__} of {len(outputs)} ({inner})"
    return type(outputs).__name__


def _check_output_type(outputs, columns: int, binary: bool, name: str) -> None:
    """Refuse what no calibrator maps: not one tensor, or another number of columns."""
    if not isinstance(outputs, torch.Tensor):
        raise TypeError(
            f"network must return one Tensor of logits; it returned a {_what(outputs)}. "
            "Wrap it in a module whose forward returns the logits alone (for instance "
            "network(x)[0]), and calibrate that."
        )
    width = 1 if outputs.ndim == 1 else (outputs.shape[1] if outputs.ndim == 2 else None)
    if width is None or (outputs.ndim == 1 and not binary) or width != columns:
        fitted = "1 column (binary decision values)" if binary else f"{columns} logit columns"
        raise ValueError(
            f"network returns outputs of shape {tuple(outputs.shape)}, but {name} was fitted "
            f"on {fitted}; pass the network whose outputs the calibrator was fitted on."
        )


def _check_outputs(network, calibrator, example_inputs) -> None:
    """Run the network on a probe batch and refuse outputs the calibrator was not fitted on."""
    inputs, given = _probe_inputs(network, calibrator, example_inputs)
    if inputs is None:
        return
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            outputs = network(inputs)
    except Exception as exc:
        if given:
            raise ValueError(
                f"network could not run on example_inputs of shape {tuple(inputs.shape)} "
                f"({type(exc).__name__}: {exc})."
            ) from exc
        return  # the probe's shape was a guess; forward's own checks remain
    finally:
        network.train(was_training)
    name = type(calibrator).__name__
    binary = bool(getattr(calibrator, "_binary_1d", False))
    _check_output_type(outputs, _columns(calibrator), binary, name)
    fitted_on = getattr(calibrator, "input_type", "logits")
    kind = output_kind(outputs.reshape(len(outputs), -1))
    if fitted_on == "logits" and kind == "probabilities":
        raise ValueError(
            f"network returns probabilities (every row of its outputs on the probe batch lies "
            f"in [0, 1] and sums to 1: a softmax last layer?), but {name} was fitted on logits, "
            "so the module would give wrong probabilities. Pass the network without its final "
            "softmax (the logits the calibrator was fitted on), or a calibrator fitted with "
            "input_type='probabilities'."
        )
    if fitted_on == "probabilities" and (
        bool((outputs < 0).any())
        or bool((outputs > 1).any())
        or (not binary and kind != "probabilities")
    ):
        raise ValueError(
            f"{name} was fitted on probabilities (input_type='probabilities'), but network "
            "returns values that are not probabilities on the probe batch (outside [0, 1], or "
            "rows that do not sum to 1). Pass the network with its final softmax, or a "
            "calibrator fitted on the logits."
        )
    inner = calibrator._fitted_map()
    if fitted_on == "logits" and kind == "log-probabilities" and not inner._shift_invariant:
        warnings.warn(
            f"calibrated_module: network returns log-probabilities (exp of every row sums to 1 "
            f"on the probe batch: a log_softmax last layer?). {type(inner).__name__} changes "
            "with a constant added to a row, so unless it was fitted on these log-probabilities "
            "the module is off; fit it on the network's outputs as they are, or remove the "
            "final log_softmax.",
            DistcalWarning,
            stacklevel=3,
        )


class CalibratedModule(torch.nn.Module):
    """A network followed by a fitted calibration map: inputs in, calibrated outputs out.

    Build it with :func:`calibrated_module`. ``forward(x)`` runs ``network(x)`` and maps its
    logits with the calibrator's fitted parameters (buffers on the network's device): to
    calibrated probabilities (``output="probabilities"``) or calibrated logits
    (``output="logits"``). The calibrated logits equal the calibrator's
    ``decision_function`` on the network's logits; the probabilities its ``predict_proba`` up to
    rounding (a fused softmax). It scripts with ``torch.jit.script`` when the network does, and
    exports with ``torch.export.export``.

    Parameters
    ----------
    network : torch.nn.Module
        The network mapping inputs to logits (batch, n_classes).
    head : torch.nn.Module
        The calibration map (built by :func:`calibrated_module` from a fitted calibrator).
    output : {"probabilities", "logits"}
        What ``forward`` returns.
    calibrator : BaseLogitCalibrator or None, default=None
        The fitted calibrator the head was built from, kept for :func:`save_calibrated_module`
        (ignored by scripting and export).

    Attributes
    ----------
    network : torch.nn.Module
        The network (shared with the caller, not copied).
    head : torch.nn.Module
        The calibration map.
    output : str
        What ``forward`` returns.
    calibrator : BaseLogitCalibrator or None
        The fitted logit calibrator of the head.
    """

    __jit_ignored_attributes__ = ["calibrator"]

    def __init__(self, network, head, output: str, calibrator=None):
        super().__init__()
        self.network = network
        self.head = head
        self.output = output
        self.probabilities = output == "probabilities"
        self.calibrator = calibrator
        # what forward checks the network's outputs against (calibrated_module sets them from
        # the calibrator it was given, which a masked calibrator's inner one may not match)
        self.n_columns = -1 if calibrator is None else _columns(calibrator)
        self.binary = bool(getattr(calibrator, "_binary_1d", False))
        self.calibrator_name = type(calibrator).__name__

    @torch.jit.unused
    def _check(self, logits) -> None:
        """Refuse a tuple, or another number of columns, before the head sees it."""
        if self.n_columns > 0:
            _check_output_type(logits, self.n_columns, self.binary, self.calibrator_name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the calibrated probabilities (or logits) of inputs ``x``.

        Parameters
        ----------
        x : Tensor of shape (batch, ...)
            Inputs of the network, on its device.

        Returns
        -------
        Tensor of shape (batch, n_classes)
            Calibrated probabilities or logits, in the dtype of the network's logits.
        """
        logits = self.network(x)
        if not torch.jit.is_scripting():
            self._check(logits)
        if self.probabilities:
            return self.head.proba(logits)
        return self.head(logits)


def calibrated_module(
    network, calibrator, *, output="probabilities", example_inputs=None
) -> CalibratedModule:
    """Wrap a network and a fitted calibrator into one ``nn.Module`` ready to deploy.

    Parameters
    ----------
    network : torch.nn.Module or None
        The network whose logits the calibrator was fitted on. None takes the ``model`` of a
        masked calibrator fitted with one.
    calibrator : BaseLogitCalibrator
        A fitted calibrator whose map has a torch head: of distcal's, TemperatureScaling,
        MaskedTemperatureScaling, DistilledCalibration, EnsembleTemperatureScaling,
        VectorScaling, MatrixScaling, DirichletCalibration, or a MaskedScaling of one of them
        (a calibrator of your own declares its head, see the design notes, "Extending
        distcal"). Others raise a TypeError that names the calibrator and those supported.
    output : {"probabilities", "logits"}, default="probabilities"
        What the module returns: calibrated probabilities, or calibrated logits (their
        softmax is the probabilities; for EnsembleTemperatureScaling, their logarithm; for
        a calibrator fitted on binary decision values, one calibrated decision value per
        sample, as its ``decision_function`` gives).
    example_inputs : Tensor, default=None
        A few inputs of the network, run once to check what it returns (see Raises). None
        runs it on random inputs of the shape it takes when that is known: the calibrator's
        ``input_shape_`` (masked calibrators fitted with a model), the network's
        ``input_shape`` attribute (distcal's networks), or the width of a first ``Linear``
        layer; otherwise only ``forward`` checks the output's type and width, on every call.

    Returns
    -------
    CalibratedModule
        In eval mode, on the network's device. The network is shared, not copied, and is put
        in eval mode.

    Raises
    ------
    TypeError
        If the network returns a tuple (or anything but one tensor), or the calibrator is not
        one of those supported.
    ValueError
        If the network returns another number of columns than the calibrator was fitted on,
        probabilities (rows in [0, 1] summing to 1: a softmax last layer) for a calibrator
        fitted on logits, or logits for one fitted with ``input_type="probabilities"``.
        Log-probabilities (a ``log_softmax`` last layer) under a map that a constant per row
        changes (vector or matrix scaling; any map not declared shift invariant) give a
        ``DistcalWarning``.

    See Also
    --------
    save_calibrated_module, load_calibrated_module : Write and read it (safetensors).

    Examples
    --------
    >>> import torch
    >>> from distcal import TemperatureScaling, calibrated_module
    >>> generator = torch.Generator().manual_seed(0)
    >>> net = torch.nn.Linear(4, 3)
    >>> with torch.no_grad():
    ...     _ = net.weight.copy_(torch.randn(3, 4, generator=generator))
    ...     x = torch.randn(200, 4, generator=generator)
    ...     y = (net(x) + 2 * torch.randn(200, 3, generator=generator)).argmax(dim=1)
    ...     ts = TemperatureScaling().fit(net(x), y)
    >>> module = calibrated_module(net, ts)
    >>> with torch.no_grad():
    ...     torch.allclose(module(x), ts.predict_proba(net(x)))
    True
    """
    check_param(output, Options("probabilities", "logits"), "output", "calibrated_module")
    if not isinstance(calibrator, BaseLogitCalibrator):
        raise TypeError(
            f"calibrator must be a fitted distcal calibrator; got a {type(calibrator).__name__}."
        )
    if network is None:
        network = getattr(calibrator, "model", None)
        if network is None:
            raise ValueError(
                "network is None and the calibrator has no model: pass the network whose "
                "logits the calibrator was fitted on."
            )
    if not isinstance(network, torch.nn.Module):
        raise TypeError(f"network must be a torch.nn.Module; got a {type(network).__name__}.")
    head = _head(calibrator).to(module_device(network))
    _check_classes(network, calibrator)
    _check_outputs(network, calibrator, example_inputs)
    inner = calibrator._fitted_map()
    module = CalibratedModule(network, head, output, calibrator=inner)
    module.n_columns = _columns(calibrator)
    module.binary = bool(getattr(calibrator, "_binary_1d", False))
    module.calibrator_name = type(calibrator).__name__
    return module.eval()


def _signature(network) -> list:
    """Each module of ``network``: its name, class, and its own parameters' and buffers' shapes.

    What a file of weights can check of an architecture without code: a ReLU where a Tanh was
    is another class at the same name, a wider layer another shape. Activations called as
    functions inside ``forward`` are not modules and are not seen.
    """
    layers = []
    for name, module in network.named_modules():
        own = dict(module.named_parameters(recurse=False))
        own.update(module.named_buffers(recurse=False))
        shapes = {key: list(value.shape) for key, value in own.items() if value is not None}
        layers.append([name, type(module).__qualname__, shapes])
    return layers


def _check_signature(saved, network, metadata, path) -> None:
    """Refuse a network of another class or with other layers than the saved one."""
    saved_class = metadata.get("network_class")
    given = type(network).__qualname__
    if isinstance(saved_class, str) and saved_class != given:
        raise ValueError(
            f"{path} holds a calibrated {saved_class} (saved from "
            f"{metadata.get('network', saved_class)}); network is a {given}. Pass a "
            f"{saved_class}, the architecture whose weights the file holds."
        )
    if saved is None:
        warnings.warn(
            f"{path} records no signature of its network's layers (written by an older "
            "distcal), so the architecture of network cannot be checked; save it again to add "
            "one.",
            DistcalWarning,
            stacklevel=3,
        )
        return
    ours = {name: (kind, shapes) for name, kind, shapes in _signature(network)}
    try:
        theirs = {str(name): (kind, shapes) for name, kind, shapes in saved}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable calibrated module: {exc!r}.") from exc
    for name in list(theirs) + [n for n in ours if n not in theirs]:
        label = repr(name) if name else "the network itself"
        if name not in ours:
            raise ValueError(
                f"{path} was saved from a network with a layer {label} "
                f"({theirs[name][0]}) that network does not have; pass the saved architecture."
            )
        if name not in theirs:
            raise ValueError(
                f"network has a layer {label} ({ours[name][0]}) that the saved network did not "
                f"have ({path}); pass the saved architecture."
            )
        if ours[name][0] != theirs[name][0]:
            raise ValueError(
                f"layer {label} of network is a {ours[name][0]}, but the network saved in "
                f"{path} had a {theirs[name][0]} there; pass the saved architecture."
            )
        if ours[name][1] != theirs[name][1]:
            raise ValueError(
                f"layer {label} ({ours[name][0]}) of network has tensors of shapes "
                f"{ours[name][1]}, but the saved network had {theirs[name][1]} ({path}); pass "
                "the saved architecture."
            )


def _untied(state: dict) -> tuple[dict, dict]:
    """Store each tensor once: names that share another's memory (tied weights) become aliases.

    Returns the tensors to write and ``{alias: name}``. A tensor that overlaps another without
    being the same view is copied (safetensors refuses shared memory).
    """
    tensors, tied, seen, storages = {}, {}, {}, {}
    for name, tensor in state.items():
        key = (tensor.device, tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        if tensor.numel() and key in seen:
            tied[name] = seen[key]
            continue
        storage = (tensor.device, tensor.untyped_storage().data_ptr())
        if tensor.numel() and storage in storages:
            tensor = tensor.clone()
        seen[key] = name
        storages[storage] = name
        tensors[name] = tensor
    return tensors, tied


def save_calibrated_module(module, path):
    """Save a calibrated module: the network's weights and the calibrator, in one safetensors file.

    The network is stored as its ``state_dict`` (no code, no pickle; tied weights once), with
    its class and the signature of its layers, and the calibrator in the format of
    :func:`save_calibrator`; :func:`load_calibrated_module` needs a network of the same
    architecture to load the weights into, and checks that it is one.

    Parameters
    ----------
    module : CalibratedModule
        Made by :func:`calibrated_module`.
    path : str or path
        Where to write (atomically).

    Returns
    -------
    Path
        ``path``.
    """
    if not isinstance(module, CalibratedModule) or module.calibrator is None:
        raise TypeError(
            "module must be a CalibratedModule made by calibrated_module; got a "
            f"{type(module).__name__}."
        )
    weights, tied = _untied(module.network.state_dict())
    tensors = {f"network.{k}": v for k, v in weights.items()}
    entry = _describe(module.calibrator, "calibrator.", tensors)
    metadata = {
        "kind": _KIND,
        "format_version": 1,
        "output": module.output,
        "calibrator": entry,
        "network": f"{type(module.network).__module__}.{type(module.network).__qualname__}",
        "network_class": type(module.network).__qualname__,
        "layers": _signature(module.network),
        "tied": tied,
    }
    return write_tensors(path, tensors, metadata)


def load_calibrated_module(path, network) -> CalibratedModule:
    """Load a calibrated module written by :func:`save_calibrated_module`.

    Parameters
    ----------
    path : str or path
        The file.
    network : torch.nn.Module
        A network of the saved architecture (its weights are replaced by the saved ones), on
        the device to run on: of the saved class, with the same layers (module types, and
        parameter and buffer shapes, at the same names).

    Returns
    -------
    CalibratedModule
        The calibrated module, in eval mode on the network's device.

    Raises
    ------
    ValueError
        The file is damaged or not a calibrated module, or ``network`` is of another class,
        has other layers (a Tanh where a ReLU was) or weights that do not fit.
    """
    tensors, metadata = read_tensors(path, kind=_KIND)
    try:
        output, entry = metadata["output"], metadata["calibrator"]
    except KeyError as exc:
        raise ValueError(f"{path} is not a readable calibrated module: {exc!r} missing.") from exc
    check_param(output, Options("probabilities", "logits"), "output", "load_calibrated_module")
    if not isinstance(network, torch.nn.Module):
        raise TypeError(f"network must be a torch.nn.Module; got a {type(network).__name__}.")
    _check_signature(metadata.get("layers"), network, metadata, path)
    calibrator = _rebuild(entry, tensors, "calibrator.", path, None)
    _check_predictions(calibrator, path)
    state = {k[len("network.") :]: v for k, v in tensors.items() if k.startswith("network.")}
    tied = metadata.get("tied") or {}
    if not isinstance(tied, dict) or not all(
        isinstance(alias, str) and isinstance(target, str) and target in state
        for alias, target in tied.items()
    ):
        raise ValueError(
            f"{path} is not a readable calibrated module: its tied weights name tensors it "
            "does not hold."
        )
    state.update({alias: state[target] for alias, target in tied.items()})
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        saved = metadata.get("network", "another network")
        raise ValueError(
            f"{path} holds the weights of a {saved} that do not fit the network given "
            f"({type(network).__name__}): {exc}"
        ) from exc
    return calibrated_module(network, calibrator, output=output)
