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
from ..calibration import CalibrationRecipe

__all__ = [
    "DISTILLED_SET_VERSION",
    "DistilledSet",
    "load_distilled",
    "load_network",
    "read_tensors",
    "save_network",
    "write_tensors",
]


#: Format of distilled-set files: 2 adds the calibration recipe (``calibration_recipe`` in the
#: header, null without one); files of format 1 load with ``recipe=None``.
DISTILLED_SET_VERSION = 2


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
    recipe : CalibrationRecipe or None, default=None
        What its maker measured so that students trained on it can be calibrated without real
        data (:func:`~distcal.distill.fit_calibration_recipe`); use it with
        :class:`~distcal.calibration.DistilledCalibration`. None for sets saved without one
        (and for files written before recipes existed).
    """

    images: torch.Tensor
    labels: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    learning_rate: float | None = None
    config: dict = field(default_factory=dict)
    history: list = field(default_factory=list)
    recipe: CalibrationRecipe | None = None

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
        if self.recipe is not None and not isinstance(self.recipe, CalibrationRecipe):
            raise TypeError(
                f"recipe must be a CalibrationRecipe or None; got {type(self.recipe).__name__}."
            )
        metadata = {
            "kind": "distilled-set",
            "format_version": DISTILLED_SET_VERSION,
            "learning_rate": self.learning_rate,
            "config": self.config,
            "history": self.history,
            "calibration_recipe": None if self.recipe is None else self.recipe.to_dict(),
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
        The images, labels, normalisation, learned learning rate, configuration, history and
        calibration recipe (None in files without one, such as those of format 1).
    """
    tensors, metadata = read_tensors(path, kind="distilled-set", version=DISTILLED_SET_VERSION)
    missing = {"images", "labels", "mean", "std"} - set(tensors)
    if missing:
        raise ValueError(f"{path} lacks the tensors {sorted(missing)}.")
    _check_distilled(path, tensors, metadata)
    recipe = metadata.get("calibration_recipe")
    if recipe is not None:
        try:
            recipe = CalibrationRecipe.from_dict(recipe)
        except ValueError as exc:
            raise ValueError(f"{path} holds an invalid calibration recipe: {exc}") from None
    return DistilledSet(
        images=tensors["images"],
        labels=tensors["labels"],
        mean=tensors["mean"],
        std=tensors["std"],
        learning_rate=metadata.get("learning_rate"),
        config=metadata.get("config", {}),
        history=metadata.get("history", []),
        recipe=recipe,
    )


def _check_distilled(path, tensors: dict, metadata: dict) -> None:
    """Check a distilled set's content before anything is built from it."""
    images, labels, mean, std = (tensors[k] for k in ("images", "labels", "mean", "std"))

    def invalid(what):
        return ValueError(f"{path} holds an invalid distilled set: {what}.")

    if not images.is_floating_point() or images.ndim < 2 or images.shape[0] == 0:
        raise invalid(f"images must be a non-empty float tensor of shape (n, ...); got "
                      f"{images.dtype} of shape {tuple(images.shape)}")  # fmt: skip
    if not bool(torch.isfinite(images).all()):
        raise invalid("images has NaN or infinite values")
    if labels.dtype != torch.int64 or labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise invalid(f"labels must be {images.shape[0]} int64 class indices, one per image; "
                      f"got {labels.dtype} of shape {tuple(labels.shape)}")  # fmt: skip
    if bool((labels < 0).any()):
        raise invalid("labels has negative class indices")
    channels = images.shape[1] if images.ndim > 2 else 1
    for name, value in (("mean", mean), ("std", std)):
        if value.shape != (channels,) or not bool(torch.isfinite(value).all()):
            raise invalid(f"{name} must hold {channels} finite per-channel values; got "
                          f"shape {tuple(value.shape)}")  # fmt: skip
    if bool((std <= 0).any()):
        raise invalid("std has values <= 0")
    rate = metadata.get("learning_rate")
    if rate is not None and not (isinstance(rate, int | float) and 0 < rate < float("inf")):
        raise invalid(f"learning_rate must be a positive number or null; got {rate!r}")


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
    from ._networks import NETWORKS, build_network

    tensors, metadata = read_tensors(path, kind="network")
    name, spec = _network_spec(path, metadata)
    # Build the architecture on the meta device first (no memory), and compare it with the
    # file's tensors: a crafted spec (a width of 1e6) cannot make distcal allocate it.
    try:
        with torch.device("meta"):
            skeleton = NETWORKS[name](spec["input_shape"], spec["n_classes"], **spec["options"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{path} describes a network that cannot be built: {exc}") from exc
    expected = {key: tuple(value.shape) for key, value in skeleton.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in tensors.items()}
    if expected != found:
        differing = sorted(k for k in set(expected) | set(found) if expected.get(k) != found.get(k))
        raise ValueError(
            f"{path} does not match the network it describes: the tensors "
            f"{differing[:5]} differ in name or shape from {name}'s."
        )
    for key, value in tensors.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"{path} has NaN or infinite values in the weights {key!r}.")
    network = build_network(
        name,
        input_shape=spec["input_shape"],
        n_classes=spec["n_classes"],
        random_state=0,
        device=device,
        **spec["options"],
    )
    network.load_state_dict(tensors)
    return network.eval()


def _network_spec(path, metadata: dict) -> tuple[str, dict]:
    """Read and check a network file's spec: a known name, a sane shape and class count."""
    from ._networks import NETWORKS

    spec = metadata.get("spec")
    if not isinstance(spec, dict):
        raise ValueError(f"{path} is not a network file of distcal: it has no spec.")
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in NETWORKS:
        raise ValueError(f"{path} names the network {name!r}; distcal knows {sorted(NETWORKS)}.")
    shape, n_classes = spec.pop("input_shape", None), spec.pop("n_classes", None)
    if not (
        isinstance(shape, list)
        and 1 <= len(shape) <= 3
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
    ):
        raise ValueError(
            f"{path} has an invalid input_shape {shape!r}: 1 to 3 positive ints expected."
        )
    if not (isinstance(n_classes, int) and not isinstance(n_classes, bool) and n_classes >= 2):
        raise ValueError(f"{path} has an invalid n_classes {n_classes!r}: an int >= 2 expected.")
    return name, {"input_shape": tuple(shape), "n_classes": n_classes, "options": spec}
