"""A distilled set as read from any format, and the checks and safe readers they share.

:class:`LoadedSet` is what every reader returns.

``.pt`` files are read with ``torch.load(weights_only=True)``: tensors, lists, dicts and
numbers only, nothing that can execute code. Whatever a file does not hold and the evaluation
needs (the pixel space, its statistics or ZCA, the learning rate) is an argument whose default
is the repository's, and :attr:`LoadedSet.assumed` lists what was assumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._artifact import DistilledSet
from .space import PixelSpace


@dataclass
class LoadedSet:
    """A distilled set read from a file of any supported format, with what the file lacked.

    Parameters
    ----------
    images : Tensor of shape (n, C, H, W)
        The images as stored (float32), in :attr:`space` unless :attr:`in_pixels`.
    labels : Tensor of shape (n,) or (n, n_classes)
        Class indices (int64), or soft labels (float32 class scores whose softmax is the
        target).
    space : PixelSpace
        The space the students train in, which real images are mapped into.
    format : str
        The format's name (a key of :data:`FORMATS`).
    path : str
        The file or folder read.
    learning_rate : float or None, default=None
        The learned learning rate stored with the set, or None.
    in_pixels : bool, default=False
        The images are stored as [0, 1] pixels and go through :attr:`space` like real images
        (image folders).
    assumed : list of dict, default=[]
        What the file did not say and was assumed: ``what``, ``value`` and ``why``.
    details : dict, default={}
        What else the file held (the experiment read and their count, recorded accuracies).
    distilled : DistilledSet or None, default=None
        distcal's own set (with its configuration), for the ``"distcal"`` format.
    """

    images: torch.Tensor
    labels: torch.Tensor
    space: PixelSpace
    format: str
    path: str
    learning_rate: float | None = None
    in_pixels: bool = False
    assumed: list = field(default_factory=list)
    details: dict = field(default_factory=dict)
    distilled: DistilledSet | None = None

    @property
    def soft(self) -> bool:
        """Whether the labels are soft (class scores) rather than class indices."""
        return self.labels.ndim == 2

    @property
    def n_classes(self) -> int:
        """The number of classes the labels span (the soft labels' width, else max + 1)."""
        return int(self.labels.shape[1]) if self.soft else int(self.labels.max()) + 1

    def hard_labels(self) -> torch.Tensor:
        """Return class indices: the labels, or the argmax of soft labels.

        Returns
        -------
        Tensor of shape (n,)
            The class indices, int64.
        """
        return self.labels.argmax(dim=1) if self.soft else self.labels

    def class_counts(self, n_classes: int) -> list[int]:
        """Return the number of images of each class (soft labels count by their argmax).

        Parameters
        ----------
        n_classes : int
            The number of classes of the dataset.

        Returns
        -------
        list of int
            ``n_classes`` counts.
        """
        return torch.bincount(self.hard_labels(), minlength=n_classes).tolist()

    @classmethod
    def from_distilled(cls, distilled: DistilledSet, path: str = "the set") -> LoadedSet:
        """Return distcal's own set as a loaded set (its statistics from the set itself).

        Parameters
        ----------
        distilled : DistilledSet
            The set.
        path : str, default="the set"
            What to call it in messages and reports.

        Returns
        -------
        LoadedSet
            The set, with nothing assumed.
        """
        return _from_distilled(distilled, path)

    def assume(self, what: str, value, why: str) -> None:
        """Record an assumption (what the file did not hold), for the report.

        Parameters
        ----------
        what : str
            The quantity, such as ``"learning rate"``.
        value : object
            The value used.
        why : str
            Why it had to be assumed, and how to supply it.
        """
        self.assumed.append({"what": what, "value": str(value), "why": why})


def _torch_load(path: Path):
    """``torch.load`` that cannot execute code (``weights_only=True``), on the CPU."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises many kinds (UnpicklingError, RuntimeError, ...)
        raise ValueError(
            f"{path} cannot be read as a tensor file without executing code "
            f"(torch.load(weights_only=True)): {str(exc).splitlines()[0]}"
        ) from exc


def _npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as content:
            return {key: content[key] for key in content.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npz file: {exc}") from exc


def _check_images(images, where: str) -> torch.Tensor:
    """Check stored images: a non-empty float tensor (n, C, H, W) of finite values."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{where} must hold a tensor of images; got {type(images).__name__}.")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(
            f"{where} must hold images of shape (n, channels, height, width); got a tensor of "
            f"shape {tuple(images.shape)}."
        )
    if not images.is_floating_point():
        raise ValueError(f"{where} must hold float images; got {images.dtype}.")
    finite = torch.isfinite(images)
    if not bool(finite.all()):
        raise ValueError(
            f"{where} has NaN or infinite values ({int((~finite).sum())} of {images.numel()})."
        )
    return images.detach().to(torch.float32).contiguous()


def _check_labels(labels, n_images: int, where: str, images_where: str) -> torch.Tensor:
    """Check stored labels: n class indices, or n rows of finite soft labels."""
    if not isinstance(labels, torch.Tensor):
        raise ValueError(f"{where} must hold a tensor of labels; got {type(labels).__name__}.")
    if labels.ndim not in (1, 2) or (labels.ndim == 2 and labels.shape[1] < 2):
        raise ValueError(
            f"{where} must hold class indices of shape (n,) or soft labels of shape "
            f"(n, n_classes); got a tensor of shape {tuple(labels.shape)}."
        )
    if labels.shape[0] != n_images:
        raise ValueError(
            f"{where} holds {labels.shape[0]} labels for the {n_images} images of {images_where}."
        )
    if labels.ndim == 2:
        if not labels.is_floating_point():
            raise ValueError(f"{where} holds 2-D labels of {labels.dtype}; soft labels are float.")
        if not bool(torch.isfinite(labels).all()):
            raise ValueError(f"{where} has NaN or infinite soft labels.")
        return labels.detach().to(torch.float32).contiguous()
    if labels.is_floating_point():
        if not bool(torch.isfinite(labels).all()) or bool((labels != labels.round()).any()):
            raise ValueError(f"{where} must hold integer class indices; got fractional values.")
    elif labels.dtype == torch.bool or labels.is_complex():
        raise ValueError(f"{where} must hold integer class indices; got {labels.dtype}.")
    labels = labels.detach().to(torch.int64).contiguous()
    if bool((labels < 0).any()):
        raise ValueError(f"{where} has negative class indices.")
    return labels


def _from_distilled(distilled: DistilledSet, path: str) -> LoadedSet:
    images = _check_images(distilled.images, f"{path} images")
    labels = _check_labels(distilled.labels, len(images), f"{path} labels", f"{path} images")
    space = PixelSpace(
        "normalized", mean=distilled.mean.tolist(), std=distilled.std.tolist(), statistics="file",
        origin=path,
    )  # fmt: skip
    return LoadedSet(
        images, labels, space, format="distcal", path=path,
        learning_rate=distilled.learning_rate, distilled=distilled,
        details={"method": distilled.config.get("method")},
    )  # fmt: skip
