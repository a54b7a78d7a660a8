"""Files that users exchange: distilled sets, trained networks and checkpoints.

Every file is a safetensors file: tensors plus a JSON header, nothing that can execute code when
loaded. Writes are atomic (a temporary file in the same folder, then a rename), so a crash while
saving leaves the previous file intact. A truncated or tampered file gives a ``ValueError``
naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._files import FORMAT_VERSION, read_tensors, write_tensors

__all__ = [
    "DistilledSet",
    "load_distilled",
    "load_network",
    "read_tensors",
    "save_network",
    "write_tensors",
]


@dataclass
class DistilledSet:
    """A distilled set and everything needed to use it, loaded from one file.

    Parameters
    ----------
    images : Tensor of shape (n, C, H, W)
        Synthetic images in the normalised space they were distilled in.
    labels : Tensor of shape (n,)
        Their class indices.
    mean : Tensor of shape (C,)
        The per-channel mean of the real data (apply the normalisation to real test images).
    std : Tensor of shape (C,)
        The per-channel standard deviation of the real data.
    learning_rate : float or None, default=None
        The learned student learning rate (MTT), or None.
    config : dict, default={}
        The trainer's full configuration.
    history : list of dict, default=[]
        Per-iteration records of the distillation.
    """

    images: torch.Tensor
    labels: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    learning_rate: float | None = None
    config: dict = field(default_factory=dict)
    history: list = field(default_factory=list)

    @property
    def n_classes(self) -> int:
        """The number of classes (from the configuration, else from the labels)."""
        return int(self.config.get("n_classes", int(self.labels.max()) + 1))

    def normalize(self, images) -> torch.Tensor:
        """Apply the distilled set's normalisation to real images in [0, 1].

        Parameters
        ----------
        images : array-like or Tensor of shape (n, C, H, W)
            Real images with values in [0, 1].

        Returns
        -------
        Tensor of shape (n, C, H, W)
            The images in the space of :attr:`images` (float32).
        """
        from ._data import check_images, normalize

        images, _ = check_images(images)
        return normalize(images.float(), self.mean, self.std)

    def save(self, path) -> Path:
        """Write the set to a safetensors file (atomic).

        Parameters
        ----------
        path : str or os.PathLike
            The file to write; its folder is created if needed.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        tensors = {"images": self.images, "labels": self.labels, "mean": self.mean, "std": self.std}
        metadata = {
            "kind": "distilled-set",
            "format_version": FORMAT_VERSION,
            "learning_rate": self.learning_rate,
            "config": self.config,
            "history": self.history,
        }
        return write_tensors(path, tensors, metadata)

    def evaluate(self, X_test, y_test, *, student=None, n_students: int = 1, random_state=0):
        """Train students on the set and score them on real test images: one call.

        Parameters
        ----------
        X_test : array-like or Tensor of shape (n, C, H, W)
            Real test images with values in [0, 1] (they are normalised here).
        y_test : array-like or Tensor of shape (n,)
            Their labels.
        student : StudentClassifier, default=None
            The student to clone and train; None uses the distillation's network and the
            standard recipe (with the learned learning rate for MTT sets).
        n_students : int, default=1
            Students trained with seeds ``random_state + i``.
        random_state : int, default=0
            Seed of the first student.

        Returns
        -------
        dict
            ``accuracy`` and ``ece`` (15 bins) as lists over students, and their means.
        """
        import numpy as np
        from sklearn.base import clone

        from ..metrics import expected_calibration_error
        from ._student import StudentClassifier

        if student is None:
            kwargs = {
                k: self.config[k] for k in ("network", "width", "depth", "norm") if k in self.config
            }
            if self.learning_rate is not None:
                kwargs["lr"] = self.learning_rate
            student = StudentClassifier(**kwargs)
        X = self.normalize(X_test)
        y = np.asarray(y_test.cpu() if isinstance(y_test, torch.Tensor) else y_test)
        accuracies, eces = [], []
        for i in range(n_students):
            model = clone(student).set_params(random_state=random_state + i)
            model.set_params(n_classes=self.n_classes)
            model.fit(self.images, self.labels)
            proba = model.predict_proba(X).numpy()
            accuracies.append(float((proba.argmax(axis=1) == y).mean()))
            eces.append(expected_calibration_error(y, proba))
        return {
            "accuracy": accuracies,
            "ece": eces,
            "accuracy_mean": float(np.mean(accuracies)),
            "ece_mean": float(np.mean(eces)),
        }


def load_distilled(path) -> DistilledSet:
    """Load a distilled set written by :meth:`MDTTrainer.save` or :meth:`DistilledSet.save`.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    DistilledSet
        The images, labels, normalisation, learned learning rate, configuration and history.
    """
    tensors, metadata = read_tensors(path, kind="distilled-set")
    missing = {"images", "labels", "mean", "std"} - set(tensors)
    if missing:
        raise ValueError(f"{path} lacks the tensors {sorted(missing)}.")
    return DistilledSet(
        images=tensors["images"],
        labels=tensors["labels"],
        mean=tensors["mean"],
        std=tensors["std"],
        learning_rate=metadata.get("learning_rate"),
        config=metadata.get("config", {}),
        history=metadata.get("history", []),
    )


def save_network(path, network: torch.nn.Module, *, spec: dict) -> Path:
    """Save a registry network's weights and the ``spec`` that rebuilds it (no pickle).

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (atomically).
    network : torch.nn.Module
        A network built by :func:`build_network`.
    spec : dict
        ``build_network``'s arguments: ``name``, ``input_shape``, ``n_classes`` and
        architecture options.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    metadata = {"kind": "network", "format_version": FORMAT_VERSION, "spec": spec}
    return write_tensors(path, dict(network.state_dict()), metadata)


def load_network(path, *, device=None) -> torch.nn.Module:
    """Rebuild a network saved by :func:`save_network`, in eval mode.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    device : str, torch.device or None, default=None
        Where to put the network (the CPU when None).

    Returns
    -------
    torch.nn.Module
        The network with the saved weights, in eval mode.
    """
    from ._networks import build_network

    tensors, metadata = read_tensors(path, kind="network")
    spec = dict(metadata["spec"])
    name = spec.pop("name")
    spec["input_shape"] = tuple(spec["input_shape"])
    network = build_network(name, random_state=0, device=device, **spec)
    try:
        network.load_state_dict(tensors)
    except RuntimeError as exc:
        raise ValueError(f"{path} does not match the network it describes: {exc}") from exc
    return network.eval()
