"""Expert trajectories for trajectory matching: networks trained on real data, epoch by epoch.

An expert is a network trained with plain mini-batch SGD on the real images; its trajectory is
its flattened parameter vector at initialisation and after every epoch, a tensor of shape
``(epochs + 1, n_params)`` whose row ``e`` holds the parameters after ``e`` epochs. Trajectory
matching (:class:`~distcal.distill.MTT`) starts a student at row ``t`` of an expert and asks it
to reach row ``t + M`` after a few steps on the synthetic images.

Buffers live in memory as a list of tensors and are exchanged as a directory holding a
``safetensors`` file and a JSON sidecar, formats that cannot execute code.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from .._files import atomic_write_text, read_tensors, write_tensors
from .._progress import progress
from ..exceptions import DistcalWarning

__all__ = ["ExpertTrajectories", "flat_parameters", "train_expert_trajectories"]

_FORMAT = "distcal.expert_trajectories"
_VERSION = 1
_TENSORS = "trajectories.safetensors"
_SIDECAR = "trajectories.json"


def flat_parameters(module: nn.Module) -> torch.Tensor:
    """Concatenate a module's parameters (``named_parameters`` order) into a detached vector."""
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def parameter_layout(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of a module's parameters, in the order :func:`flat_parameters` uses."""
    return [(name, tuple(p.shape)) for name, p in module.named_parameters()]


def data_fingerprint(images: torch.Tensor, labels: torch.Tensor) -> dict:
    """Describe a training set cheaply, to tell whether a saved buffer was trained on it.

    Three float64 sums, each invariant to the order of the samples: of the pixels, of the
    pixels weighted by a fixed pattern over positions (so that flipped or shifted images
    differ), and of each image's pixel sum weighted by its label (so that relabelled images
    differ). They are compared with a relative tolerance, so that rounding differences between
    devices do not count.
    """
    flat = images.detach().reshape(images.shape[0], -1)
    positions = torch.arange(flat.shape[1], device=flat.device, dtype=torch.float64)
    pattern = torch.cos(0.7 * positions + 0.3)
    sums = torch.zeros(4, dtype=torch.float64, device=flat.device)
    for start in range(0, flat.shape[0], 1024):
        rows = flat[start : start + 1024].to(torch.float64)
        per_image = rows.sum(dim=1)
        sums[0] += per_image.sum()
        sums[1] += (rows @ pattern).sum()
        sums[2] += (per_image * labels[start : start + 1024].to(per_image)).sum()
        sums[3] += rows.abs().sum()
    pixel_sum, pattern_sum, label_sum, abs_sum = (float(v) for v in sums)
    return {
        "n_samples": int(images.shape[0]),
        "input_shape": list(images.shape[1:]),
        "max_label": int(labels.max()) if len(labels) else 0,
        "abs_sum": abs_sum,
        "pixel_sum": pixel_sum,
        "pattern_sum": pattern_sum,
        "label_weighted_sum": label_sum,
    }


def _same_fingerprint(a: dict, b: dict) -> bool:
    if any(a.get(k) != b.get(k) for k in ("n_samples", "input_shape", "max_label")):
        return False
    # Each sum is at most the pixel mass (times the largest label for the label-weighted
    # one) in absolute value; a tolerance of 1e-6 of that bound absorbs rounding.
    mass = max(a["abs_sum"], b["abs_sum"]) * 1e-6
    bounds = {"abs_sum": mass, "pixel_sum": mass, "pattern_sum": mass}
    bounds["label_weighted_sum"] = mass * max(1, a["max_label"])
    return all(abs(a[k] - b[k]) <= bound for k, bound in bounds.items())


def config_differences(saved: dict, wanted: dict) -> list[str]:
    """Describe each key of ``wanted`` whose value differs in ``saved`` (a buffer's ``config``).

    The ``data`` fingerprints compare with a relative tolerance of 1e-9 on the pixel sums.
    """
    differences = []
    for key, value in wanted.items():
        have = saved.get(key)
        same = _same_fingerprint(have or {}, value) if key == "data" else have == value
        if not same:
            if key == "data":
                differences.append("it was trained on other real images")
            elif key == "architecture":
                differences.append("its network has another architecture")
            else:
                differences.append(f"{key}={have!r} (wanted {value!r})")
    return differences


class ExpertTrajectories(Sequence):
    """A buffer of expert trajectories: one tensor of shape (epochs + 1, n_params) per expert.

    The buffer behaves as a sequence of tensors (``len(buffer)``, ``buffer[k]``); row ``e`` of
    ``buffer[k]`` holds expert ``k``'s parameters after ``e`` epochs (row 0: initialisation).

    Parameters
    ----------
    trajectories : list of Tensor of shape (epochs + 1, n_params)
        The trajectories, all of the same shape.
    layout : list of (str, tuple of int)
        Name and shape of each parameter in the flattened vector, in order.
    config : dict
        How the experts were trained: ``epochs``, ``lr``, ``batch_size``, ``momentum``,
        ``weight_decay``, ``augment`` (bool), ``mask`` (dict or None), ``architecture`` (the
        network's ``repr``) and ``data`` (see :func:`data_fingerprint`).

    Attributes
    ----------
    n_experts : int
    n_epochs : int
        Epochs each expert was trained for (rows minus one).
    n_params : int
        Length of the flattened parameter vector.
    """

    def __init__(
        self,
        trajectories: list[torch.Tensor],
        layout: list[tuple[str, tuple[int, ...]]],
        config: dict,
    ):
        if not trajectories:
            raise ValueError("An expert buffer needs at least one trajectory; got none.")
        shape = tuple(trajectories[0].shape)
        if len(shape) != 2 or shape[0] < 2:
            raise ValueError(
                "Each trajectory must have shape (epochs + 1, n_params) with at least one epoch; "
                f"got shape {shape}."
            )
        for k, trajectory in enumerate(trajectories):
            if tuple(trajectory.shape) != shape:
                raise ValueError(
                    f"All trajectories must have the same shape; trajectory 0 has shape {shape} "
                    f"and trajectory {k} has shape {tuple(trajectory.shape)}."
                )
        n_params = sum(math.prod(s) for _, s in layout)
        if n_params != shape[1]:
            raise ValueError(
                f"The parameter layout describes {n_params} parameters, but the trajectories "
                f"hold {shape[1]} per row."
            )
        self.trajectories = list(trajectories)
        self.layout = [(str(name), tuple(int(d) for d in s)) for name, s in layout]
        self.config = dict(config)

    @property
    def n_experts(self) -> int:
        """The number of experts."""
        return len(self.trajectories)

    @property
    def n_epochs(self) -> int:
        """The epochs each expert trained for (its trajectory holds one more point)."""
        return self.trajectories[0].shape[0] - 1

    @property
    def n_params(self) -> int:
        """The number of network parameters in one point of a trajectory."""
        return self.trajectories[0].shape[1]

    def __len__(self) -> int:
        return len(self.trajectories)

    def __getitem__(self, index):
        return self.trajectories[index]

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self.trajectories)

    def __repr__(self) -> str:
        return (
            f"ExpertTrajectories(n_experts={self.n_experts}, n_epochs={self.n_epochs}, "
            f"n_params={self.n_params})"
        )

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the buffer to ``directory`` (created if needed) as safetensors plus JSON.

        The directory receives ``trajectories.safetensors`` (tensors ``expert_0000``, ...,
        with a checksum) and ``trajectories.json`` (format, layout and training configuration),
        each through distcal's atomic writer: an interrupted save leaves no half file under the
        final names, and concurrent saves never share a temporary file.

        Parameters
        ----------
        directory : str or os.PathLike
            Where to write the buffer.

        Returns
        -------
        pathlib.Path
            The directory.
        """
        directory = Path(directory)
        tensors = {
            f"expert_{k:04d}": t.detach().contiguous().to("cpu")
            for k, t in enumerate(self.trajectories)
        }
        sidecar = {
            "format": _FORMAT,
            "version": _VERSION,
            "n_experts": self.n_experts,
            "n_epochs": self.n_epochs,
            "n_params": self.n_params,
            "dtype": str(self.trajectories[0].dtype).removeprefix("torch."),
            "layout": [[name, list(shape)] for name, shape in self.layout],
            "config": self.config,
        }
        write_tensors(directory / _TENSORS, tensors, {"kind": _FORMAT, "version": _VERSION})
        atomic_write_text(directory / _SIDECAR, json.dumps(sidecar, indent=2, sort_keys=True))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> ExpertTrajectories:
        """Read a buffer written by :meth:`save`; tensors are loaded on the CPU.

        Parameters
        ----------
        directory : str or os.PathLike
            The directory :meth:`save` wrote.

        Returns
        -------
        ExpertTrajectories
            The buffer.

        Raises
        ------
        FileNotFoundError
            If either file is missing.
        ValueError
            If a file is damaged, is not a distcal expert buffer, or the two do not match;
            the message names the file.
        """
        directory = Path(directory)
        sidecar_path, tensors_path = directory / _SIDECAR, directory / _TENSORS
        for path in (sidecar_path, tensors_path):
            if not path.is_file():
                raise FileNotFoundError(
                    f"No expert buffer at {str(directory)!r}: {path.name} is missing."
                )
        try:
            sidecar = json.loads(sidecar_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{str(sidecar_path)!r} is not readable JSON: {exc}") from None
        if not isinstance(sidecar, dict) or (
            sidecar.get("format") != _FORMAT or sidecar.get("version") != _VERSION
        ):
            found = sidecar if not isinstance(sidecar, dict) else sidecar.get("format")
            raise ValueError(
                f"{str(sidecar_path)!r} is not a distcal expert buffer of version {_VERSION} "
                f"(found {found!r})."
            )
        tensors = _read_buffer_tensors(tensors_path)
        try:
            n_experts, n_epochs = int(sidecar["n_experts"]), int(sidecar["n_epochs"])
            n_params = int(sidecar["n_params"])
            layout = [(str(n), tuple(int(d) for d in shape)) for n, shape in sidecar["layout"]]
            config = dict(sidecar["config"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{str(sidecar_path)!r} lacks a valid {exc} entry.") from None
        names = [f"expert_{k:04d}" for k in range(n_experts)]
        if n_experts < 1 or sorted(tensors) != names:
            raise ValueError(
                f"{str(tensors_path)!r} holds tensors {sorted(tensors)[:4]}..., but its sidecar "
                f"announces {n_experts} experts named expert_0000, ...."
            )
        for name in names:
            trajectory = tensors[name]
            if tuple(trajectory.shape) != (n_epochs + 1, n_params):
                raise ValueError(
                    f"{str(tensors_path)!r}: {name} has shape {tuple(trajectory.shape)}, but its "
                    f"sidecar announces ({n_epochs + 1}, {n_params})."
                )
            if not bool(torch.isfinite(trajectory).all()):
                raise ValueError(f"{str(tensors_path)!r}: {name} has NaN or infinite values.")
        if sum(math.prod(shape) for _, shape in layout) != n_params:
            raise ValueError(
                f"{str(sidecar_path)!r}: its layout does not add up to n_params={n_params}."
            )
        return cls([tensors[n] for n in names], layout, config)


def _read_buffer_tensors(path: Path) -> dict:
    """Read the trajectories of a buffer file: checksummed, or written before checksums."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{str(path)!r} is not a readable safetensors file: {exc}") from None
    if "distcal" in header:
        return read_tensors(path, kind=_FORMAT)[0]
    warnings.warn(
        f"{str(path)!r} carries no checksum (written by a distcal before checksums were added), "
        "so damage cannot be detected; save the buffer again to add one.",
        DistcalWarning,
        stacklevel=3,
    )
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{str(path)!r} is not a readable safetensors file: {exc}") from None


def train_expert_trajectories(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    build_network: Callable[[int], nn.Module],
    n_experts: int,
    epochs: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
    momentum: float = 0.0,
    weight_decay: float = 0.0,
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    mask: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    storage_device: str | torch.device = "cpu",
    verbose: bool = False,
) -> ExpertTrajectories:
    """Train expert networks on real images with SGD and record their parameters every epoch.

    Each expert is a fresh network from ``build_network`` (seeded from ``generator``) trained
    with :class:`torch.optim.SGD` on shuffled mini-batches for ``epochs`` passes over the data,
    in training mode, with cross-entropy. Its flattened parameters are recorded before the first
    step and after each epoch (buffers such as batch-norm running statistics are not recorded).

    Parameters
    ----------
    images : Tensor of shape (n, C, H, W)
        Normalised real training images, on the device the experts train on.
    labels : Tensor of shape (n,)
        Class indices.
    build_network : callable
        ``build_network(seed: int) -> torch.nn.Module``: a freshly initialised network on the
        device of ``images``.
    n_experts : int
        Number of experts (independent initialisations and batch orders).
    epochs : int
        Passes over the real images per expert; each trajectory has ``epochs + 1`` rows.
    lr : float
        SGD learning rate (step size per mini-batch), constant over training.
    batch_size : int
        Real images per SGD step; the last batch of an epoch may be smaller.
    generator : torch.Generator
        Source of every random draw (network seeds, batch orders, augmentation, masks), on the
        device of ``images``.
    momentum : float, default=0.0
        SGD momentum (MTT trains its experts without).
    weight_decay : float, default=0.0
        SGD L2 penalty.
    augment : callable or None, default=None
        ``augment(x, generator) -> x``: augmentation of each real batch, drawing its random
        parameters from ``generator``.
    mask : callable or None, default=None
        ``mask(x, generator) -> x``: the MDT mask applied to each real batch after augmentation.
    storage_device : str or torch.device, default="cpu"
        Where the recorded trajectories are kept (the CPU by default: a buffer can be larger
        than accelerator memory; only two rows are moved per distillation iteration).
    verbose : bool, default=False
        Show a progress bar over experts.

    Returns
    -------
    ExpertTrajectories
        ``n_experts`` tensors of shape ``(epochs + 1, n_params)`` in the dtype of the network's
        parameters.

    References
    ----------
    .. [1] G. Cazenavette, T. Wang, A. Torralba, A. A. Efros and J.-Y. Zhu, "Dataset
       Distillation by Matching Training Trajectories", CVPR 2022.

    Examples
    --------
    >>> import torch
    >>> from distcal.distill import build_network, load_digits
    >>> from distcal.distill import train_expert_trajectories
    >>> data = load_digits()
    >>> net = lambda seed: build_network("mlp", input_shape=(1, 8, 8), n_classes=10, width=8,
    ...                                  depth=1, random_state=seed)
    >>> buffer = train_expert_trajectories(
    ...     data.images[:100], data.labels[:100], build_network=net, n_experts=2, epochs=2,
    ...     lr=0.05, batch_size=50, generator=torch.Generator().manual_seed(0))
    >>> len(buffer), tuple(buffer[0].shape)
    (2, (3, 610))
    """
    for name, value in (("n_experts", n_experts), ("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int; got {value!r}.")
    if not lr > 0:
        raise ValueError(f"lr must be a positive float; got {lr!r}.")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"images and labels must have the same length; got {images.shape[0]} images and "
            f"{labels.shape[0]} labels."
        )
    n = images.shape[0]
    device = generator.device
    trajectories = []
    layout = None
    architecture = None
    loss_fn = nn.CrossEntropyLoss()
    for _ in progress(range(n_experts), enabled=verbose, desc="experts"):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=device).item())
        network = build_network(seed)
        network.train()
        if layout is None:
            layout = parameter_layout(network)
            architecture = repr(network)
        optimizer = torch.optim.SGD(
            network.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )
        rows = [flat_parameters(network).to(storage_device)]
        for _epoch in range(epochs):
            order = torch.randperm(n, generator=generator, device=device).to(images.device)
            for start in range(0, n, batch_size):
                batch = order[start : start + batch_size]
                x, y = images[batch], labels[batch]
                if augment is not None:
                    x = augment(x, generator)
                if mask is not None:
                    x = mask(x, generator)
                loss = loss_fn(network(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            rows.append(flat_parameters(network).to(storage_device))
        trajectories.append(torch.stack(rows))
    config = {
        "epochs": epochs,
        "lr": float(lr),
        "batch_size": batch_size,
        "momentum": float(momentum),
        "weight_decay": float(weight_decay),
        "augment": augment is not None,
        "architecture": architecture,
        "data": data_fingerprint(images, labels),
    }
    return ExpertTrajectories(trajectories, layout, config)
