"""A network and a fitted calibrator as one ``nn.Module``: inputs in, calibrated outputs out.

The calibration map becomes a small *head* module holding the fitted parameters as buffers on
the network's device; :class:`CalibratedModule` runs the network, then the head. Heads exist
for the maps that are a few tensor operations: a temperature (:class:`TemperatureScaling`,
:class:`MaskedTemperatureScaling`), the ensemble of temperatures
(:class:`EnsembleTemperatureScaling`) and the affine maps (:class:`VectorScaling`,
:class:`MatrixScaling`, :class:`DirichletCalibration`), also as the fitted inner calibrator of
a :class:`MaskedScaling`. The module scripts (``torch.jit.script``) and exports
(``torch.export.export``) with torch's own tools. :func:`save_calibrated_module` writes the
network's ``state_dict`` and the calibrator (in :func:`save_calibrator`'s format) to one
safetensors file; :func:`load_calibrated_module` reads it back into a network of the same
architecture, which the caller builds (a file holds no code).
"""

from __future__ import annotations

import torch
from sklearn.utils.validation import check_is_fitted

from .._device import module_device
from .._files import read_tensors, write_tensors
from .._validation import Options, check_param
from ._base import BaseLogitCalibrator
from ._ensemble import EnsembleTemperatureScaling
from ._linear import DirichletCalibration, MatrixScaling, VectorScaling
from ._masked_scaling import MaskedScaling
from ._persistence import _check_predictions, _describe, _rebuild
from ._temperature import TemperatureScaling

__all__ = [
    "CalibratedModule",
    "calibrated_module",
    "load_calibrated_module",
    "save_calibrated_module",
]

_KIND = "calibrated_module"
_SUPPORTED = (
    "TemperatureScaling, MaskedTemperatureScaling, EnsembleTemperatureScaling, VectorScaling, "
    "MatrixScaling, DirichletCalibration, and MaskedScaling of any of them"
)


class _TemperatureHead(torch.nn.Module):
    """``z / T``."""

    def __init__(self, temperature: float):
        super().__init__()
        self.register_buffer("temperature", torch.tensor(temperature, dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z / self.temperature

    @torch.jit.export
    def proba(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.forward(z), dim=1)


class _AffineHead(torch.nn.Module):
    """``W f(z) + b`` in float64, ``f`` the identity or ``log_softmax``; ``W`` diagonal or full."""

    def __init__(self, weight, bias, diagonal: bool, log_softmax: bool):
        super().__init__()
        self.register_buffer("weight", weight.detach().to(torch.float64).clone())
        self.register_buffer("bias", bias.detach().to(torch.float64).clone())
        self.diagonal = diagonal
        self.log_softmax = log_softmax

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        features = z.to(torch.float64)
        if self.log_softmax:
            features = torch.log_softmax(features, dim=1)
        if self.diagonal:
            out = features * self.weight + self.bias
        else:
            out = features @ self.weight.t() + self.bias
        return out.to(z.dtype)

    @torch.jit.export
    def proba(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.forward(z), dim=1)


class _EnsembleHead(torch.nn.Module):
    """``w0 softmax(z / T) + w1 softmax(z) + w2 / K``, and its logarithm as logits."""

    def __init__(self, temperature: float, weights):
        super().__init__()
        self.register_buffer("temperature", torch.tensor(temperature, dtype=torch.float64))
        self.register_buffer("weights", weights.detach().to(torch.float64).clone())

    def proba_float64(self, z: torch.Tensor) -> torch.Tensor:
        z = z.to(torch.float64)
        mixture = torch.softmax(z / self.temperature, dim=1) * self.weights[0]
        mixture = mixture + torch.softmax(z, dim=1) * self.weights[1]
        return mixture + self.weights[2] / z.shape[1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.log(self.proba_float64(z).clamp_min(1e-300)).to(z.dtype)

    @torch.jit.export
    def proba(self, z: torch.Tensor) -> torch.Tensor:
        return self.proba_float64(z).to(z.dtype)


def _head(calibrator) -> torch.nn.Module:
    """Return the head module of a fitted calibrator (a TypeError names what is supported)."""
    check_is_fitted(calibrator)
    if getattr(calibrator, "_binary_1d", False):
        raise ValueError(
            f"calibrated_module needs a calibrator fitted on 2-D logits (one column per class, as "
            f"the network returns them); this {type(calibrator).__name__} was fitted on 1-D "
            "binary decision values."
        )
    inner = calibrator
    if isinstance(calibrator, MaskedScaling):
        inner = calibrator.calibrator_  # MaskedTemperatureScaling: a TemperatureScaling
    if isinstance(inner, TemperatureScaling):
        return _TemperatureHead(float(inner.temperature_))
    if isinstance(inner, EnsembleTemperatureScaling):
        return _EnsembleHead(float(inner.temperature_), inner.weights_)
    if isinstance(inner, DirichletCalibration):
        return _AffineHead(inner.coef_, inner.intercept_, diagonal=False, log_softmax=True)
    if isinstance(inner, MatrixScaling):
        return _AffineHead(inner.coef_, inner.intercept_, diagonal=False, log_softmax=False)
    if isinstance(inner, VectorScaling):
        return _AffineHead(inner.coef_, inner.intercept_, diagonal=True, log_softmax=False)
    raise TypeError(
        f"calibrated_module does not support {type(inner).__name__}; it supports {_SUPPORTED}. "
        "For the others, call calibrator.predict_proba(network_logits)."
    )


def _check_classes(network, calibrator) -> None:
    """Refuse a network whose last layer is a Linear with another number of outputs."""
    layers = [m for m in network.modules() if not list(m.children())]
    last = next((m for m in reversed(layers) if any(True for _ in m.parameters())), None)
    n_classes = len(calibrator.classes_)
    if isinstance(last, torch.nn.Linear) and last.out_features != n_classes:
        raise ValueError(
            f"network ends in Linear(out_features={last.out_features}), but "
            f"{type(calibrator).__name__} was fitted on {n_classes} logit columns; pass the "
            "network whose logits the calibrator was fitted on."
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
        if self.probabilities:
            return self.head.proba(logits)
        return self.head(logits)


def calibrated_module(network, calibrator, *, output="probabilities") -> CalibratedModule:
    """Wrap a network and a fitted calibrator into one ``nn.Module`` ready to deploy.

    Parameters
    ----------
    network : torch.nn.Module or None
        The network whose logits the calibrator was fitted on. None takes the ``model`` of a
        masked calibrator fitted with one.
    calibrator : BaseLogitCalibrator
        A fitted calibrator: TemperatureScaling, MaskedTemperatureScaling,
        EnsembleTemperatureScaling, VectorScaling, MatrixScaling, DirichletCalibration, or a
        MaskedScaling of one of them. Others raise a TypeError that names these.
    output : {"probabilities", "logits"}, default="probabilities"
        What the module returns: calibrated probabilities, or calibrated logits (their
        softmax is the probabilities; for EnsembleTemperatureScaling, their logarithm).

    Returns
    -------
    CalibratedModule
        In eval mode, on the network's device. The network is shared, not copied, and is put
        in eval mode.

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
    inner = calibrator.calibrator_ if isinstance(calibrator, MaskedScaling) else calibrator
    module = CalibratedModule(network, head, output, calibrator=inner)
    return module.eval()


def save_calibrated_module(module, path):
    """Save a calibrated module: the network's weights and the calibrator, in one safetensors file.

    The network is stored as its ``state_dict`` (no code, no pickle) and the calibrator in the
    format of :func:`save_calibrator`; :func:`load_calibrated_module` needs a network of the same
    architecture to load the weights into.

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
    tensors = {f"network.{k}": v for k, v in module.network.state_dict().items()}
    entry = _describe(module.calibrator, "calibrator.", tensors)
    metadata = {
        "kind": _KIND,
        "format_version": 1,
        "output": module.output,
        "calibrator": entry,
        "network": f"{type(module.network).__module__}.{type(module.network).__qualname__}",
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
        the device to run on.

    Returns
    -------
    CalibratedModule
        The calibrated module, in eval mode on the network's device.

    Raises
    ------
    ValueError
        The file is damaged, not a calibrated module, or its weights do not fit ``network``.
    """
    tensors, metadata = read_tensors(path, kind=_KIND)
    try:
        output, entry = metadata["output"], metadata["calibrator"]
    except KeyError as exc:
        raise ValueError(f"{path} is not a readable calibrated module: {exc!r} missing.") from exc
    check_param(output, Options("probabilities", "logits"), "output", "load_calibrated_module")
    if not isinstance(network, torch.nn.Module):
        raise TypeError(f"network must be a torch.nn.Module; got a {type(network).__name__}.")
    calibrator = _rebuild(entry, tensors, "calibrator.", path, None)
    _check_predictions(calibrator, path)
    state = {k[len("network.") :]: v for k, v in tensors.items() if k.startswith("network.")}
    try:
        network.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        saved = metadata.get("network", "another network")
        raise ValueError(
            f"{path} holds the weights of a {saved} that do not fit the network given "
            f"({type(network).__name__}): {exc}"
        ) from exc
    return calibrated_module(network, calibrator, output=output)
