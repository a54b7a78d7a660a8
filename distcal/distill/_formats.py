"""Distilled sets made by other tools: read them, say what they hold, write them back.

Each format is named by where its files come from, and was read from the code that writes it:

- ``"mtt"`` (GeorgeCazenavette/mtt-distillation ``distill.py``): a folder with
  ``images_best.pt`` and ``labels_best.pt`` (``torch.save`` of bare tensors: images
  ``(n, C, H, W)`` float, labels int64 grouped by class). Pixels are mean/std-normalised with
  CIFAR-10's statistics (``utils.py::get_dataset``, for CIFAR-100 too), or in ZCA space with
  ``--zca`` (kornia's ``ZCAWhitening(eps=0.1)`` fitted on the real training set, not saved).
  The learned learning rate is not saved.
- ``"datm"`` (NUS-HPC-AI-Lab/DATM ``distill/DATM.py``): the same files (in ``Normal/``) plus
  ``lr_best.pt`` (the learned learning rate, a 0-d tensor); ``labels_best.pt`` holds soft
  labels, float ``(n, n_classes)`` logits. Its configurations whiten with ZCA.
- ``"dc"`` (VICO-UoE/DatasetCondensation ``main.py``, ``main_DM.py``): one
  ``res_{method}_{dataset}_{model}_{ipc}ipc.pt`` file, a dict ``{'data': [[images, labels],
  ...one per experiment], 'accs_all_exps': {model: [accuracies]}}``; images normalised with
  the dataset's own statistics (``utils.py::get_dataset``), hard labels.
- ``"kip"`` (KIP's sets as justincui03/dc_benchmark ``data_loader/kip_data_loader.py`` reads
  them): an ``.npz`` with ``images`` ``(n, H, W, C)`` and one-hot ``labels`` ``(n, C)`` (learned
  labels are read as their argmax, as dc_benchmark does), in KIP's ZCA space.
- ``"image-folder"`` (VILA-Lab/SRe2L ``recover``, LINs-lab/RDED ``synthesize/main.py``): JPEG or
  PNG files ``new{c:03d}/class{c:03d}_id{i:03d}.jpg`` (SRe2L) or
  ``{c:05d}/class{c:05d}_id{i:05d}.jpg`` (RDED) of [0, 1] pixels, the class in the folder's
  name; read with Pillow. Their soft labels come from a teacher at training time and are not
  in the folder: students train on the folders' classes.
- ``"distcal"``: distcal's own safetensors file (:func:`~distcal.distill.load_distilled`).
- ``"plain"``: a ``.pt`` or ``.npz`` file holding ``images`` ``(n, C, H, W)`` and ``labels``
  (class indices, or float soft labels ``(n, n_classes)``), optionally ``learning_rate``,
  ``mean`` and ``std``.

``.pt`` files are read with ``torch.load(weights_only=True)``: tensors, lists, dicts and
numbers only, nothing that can execute code. Whatever a file does not hold and the evaluation
needs (the pixel space, its statistics or ZCA, the learning rate) is an argument whose default
is the repository's, and :attr:`LoadedSet.assumed` lists what was assumed.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .._device import as_tensor, to_numpy
from ..exceptions import DistcalWarning
from ._artifact import DistilledSet, load_distilled
from ._data import channel_statistics, normalize
from ._zca import ZCAWhitening

__all__ = [
    "FORMATS",
    "STATISTICS",
    "LoadedSet",
    "PixelSpace",
    "detect_format",
    "export_distilled",
    "read_distilled",
]

#: Per-channel (mean, std) of the datasets the repositories normalise with, and where from.
STATISTICS = {
    "mnist": ((0.1307,), (0.3081,), "DatasetCondensation utils.py::get_dataset"),
    "fashion-mnist": ((0.2861,), (0.3530,), "DatasetCondensation utils.py::get_dataset"),
    "svhn": (
        (0.4377, 0.4438, 0.4728),
        (0.1980, 0.2010, 0.1970),
        "DatasetCondensation utils.py::get_dataset",
    ),
    "cifar10": (
        (0.4914, 0.4822, 0.4465),
        (0.2023, 0.1994, 0.2010),
        "DatasetCondensation, mtt-distillation, DATM and DD-Ranking get_dataset",
    ),
    "cifar100": (
        (0.5071, 0.4866, 0.4409),
        (0.2673, 0.2564, 0.2762),
        "DatasetCondensation utils.py::get_dataset (MTT, DATM, DD-Ranking use CIFAR-10's)",
    ),
    "imagenet": (
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        "torchvision's ImageNet statistics (SRe2L, RDED; MTT and DATM for Tiny ImageNet)",
    ),
}

#: Dataset names as the repositories write them, to the keys of STATISTICS.
_DATASET_NAMES = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "svhn": "svhn",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar100": "cifar100",
    "cifar-100": "cifar100",
    "tiny": "imagenet",
    "tinyimagenet": "imagenet",
    "imagenet": "imagenet",
}


class PixelSpace:
    """How a set's pixels relate to [0, 1] images, and the map of real images into that space.

    Parameters
    ----------
    kind : {"raw", "normalized", "zca"}
        ``"raw"``: [0, 1] pixels; ``"normalized"``: ``(x - mean) / std`` per channel;
        ``"zca"``: whitened by :class:`~distcal.distill.ZCAWhitening` fitted on the real
        training images in [0, 1].
    mean, std : tuple of float or None, default=None
        The statistics of ``"normalized"``; None computes them from the real training images
        in :meth:`fit` (per channel, as distcal's experiment does).
    statistics : str, default="given"
        Where ``mean`` and ``std`` come from, for reports: a key of :data:`STATISTICS`,
        ``"file"``, ``"given"`` or ``"data"``.
    zca : {"kornia", "kip"} or None, default=None
        The ZCA definition of ``"zca"``.
    eps : float, default=0.1
        The ZCA regularisation.
    origin : str, default="the set"
        What the space belongs to (a file name), for error messages.

    Attributes
    ----------
    zca_ : ZCAWhitening
        The whitening fitted by :meth:`fit` (``"zca"`` only).
    mean_, std_ : Tensor of shape (C,)
        The statistics used by :meth:`transform` (``"normalized"`` only), float32.
    """

    def __init__(
        self, kind, *, mean=None, std=None, statistics="given", zca=None, eps=0.1, origin="the set"
    ):
        if kind not in ("raw", "normalized", "zca"):
            raise ValueError(f"kind must be 'raw', 'normalized' or 'zca'; got {kind!r}.")
        if kind == "zca" and zca not in ("kornia", "kip"):
            raise ValueError(f"A ZCA space needs zca='kornia' or 'kip'; got {zca!r}.")
        if (mean is None) != (std is None):
            raise ValueError("mean and std must be given together.")
        self.kind = kind
        self.mean = None if mean is None else tuple(float(v) for v in mean)
        self.std = None if std is None else tuple(float(v) for v in std)
        self.statistics = statistics if mean is not None or kind != "normalized" else "data"
        self.zca = zca if kind == "zca" else None
        self.eps = float(eps)
        self.origin = origin
        if kind == "normalized" and self.mean is not None:
            self.mean_ = torch.tensor(self.mean, dtype=torch.float32)
            self.std_ = torch.tensor(self.std, dtype=torch.float32)

    @property
    def needs_fit(self) -> bool:
        """Whether :meth:`fit` must see the real training images first (ZCA, computed stats)."""
        return self.kind == "zca" or (self.kind == "normalized" and self.mean is None)

    def describe(self) -> str:
        """Return the space in words, for reports.

        Returns
        -------
        str
            For example ``"mean/std-normalised (cifar10: mean 0.4914, ...)"``.
        """
        if self.kind == "raw":
            return "raw pixels in [0, 1]"
        if self.kind == "zca":
            how = "kornia ZCAWhitening" if self.zca == "kornia" else "KIP's ZCA (layer norm)"
            return f"ZCA space ({how}, eps={self.eps:g}), refitted on the real training images"
        if self.mean is None:
            return "mean/std-normalised with the real training images' per-channel statistics"
        numbers = ", ".join(f"{m:.4g}/{s:.4g}" for m, s in zip(self.mean, self.std, strict=True))
        return f"mean/std-normalised ({self.statistics}: mean/std {numbers})"

    def fit(self, X_train):
        """Fit what the space needs from the real training images in [0, 1].

        Parameters
        ----------
        X_train : array-like or Tensor of shape (n, C, H, W)
            The real training images the set was distilled from, in [0, 1].

        Returns
        -------
        self : PixelSpace
            The fitted space.
        """
        if self.kind == "zca":
            self.zca_ = ZCAWhitening(self.zca, eps=self.eps).fit(as_tensor(X_train))
        elif self.kind == "normalized" and self.mean is None:
            mean, std = channel_statistics(as_tensor(X_train))
            self.mean_, self.std_ = mean.float(), std.float()
        return self

    def transform(self, X) -> torch.Tensor:
        """Map [0, 1] images into the space.

        Parameters
        ----------
        X : array-like or Tensor of shape (n, C, H, W)
            Images with values in [0, 1].

        Returns
        -------
        Tensor of shape (n, C, H, W)
            The images in the set's space, float32.
        """
        images = as_tensor(X).float()
        if self.kind == "raw":
            return images
        if self.kind == "zca":
            if not hasattr(self, "zca_"):
                raise ValueError(
                    f"{self.origin} is in ZCA space ({self.zca}, eps={self.eps:g}) and the file "
                    "does not hold the whitening: it must be refitted on the real training "
                    "images the set was distilled from. Pass the real training data (fit(X_train)"
                    " in Python; --dataset on the command line)."
                )
            return self.zca_.transform(images)
        if not hasattr(self, "mean_"):
            raise ValueError(
                f"{self.origin} is normalised with the real training images' statistics, "
                "which must be computed first: call fit(X_train) with the real training images."
            )
        return normalize(images, self.mean_, self.std_)

    def __repr__(self) -> str:
        return f"PixelSpace({self.describe()!r})"


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


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------


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


def _dataset_key(dataset) -> str | None:
    if not isinstance(dataset, str):
        return None
    return _DATASET_NAMES.get(dataset.lower().replace("_", "-"))


def _statistics_space(
    loaded: LoadedSet, statistics, *, default: str | None, why: str
) -> PixelSpace:
    """Return a normalised space with the given statistics, or the format's default."""
    origin = loaded.path
    if statistics is None:
        if default is None:
            loaded.assume(
                "pixel statistics",
                "the real training images' per-channel mean and std",
                why + " No repository statistics are known for this dataset: pass statistics="
                " (--statistics).",
            )
            return PixelSpace("normalized", statistics="data", origin=origin)
        mean, std, source = STATISTICS[default]
        loaded.assume("pixel statistics", f"{default}: mean {mean}, std {std}", f"{why} ({source})")
        return PixelSpace("normalized", mean=mean, std=std, statistics=default, origin=origin)
    if isinstance(statistics, str):
        if statistics == "data":
            return PixelSpace("normalized", statistics="data", origin=origin)
        if statistics not in STATISTICS:
            raise ValueError(
                f"statistics must be a key of STATISTICS {sorted(STATISTICS)}, 'data' or a "
                f"(mean, std) pair; got {statistics!r}."
            )
        mean, std, _ = STATISTICS[statistics]
        return PixelSpace("normalized", mean=mean, std=std, statistics=statistics, origin=origin)
    try:
        mean, std = statistics
        mean = [float(v) for v in as_tensor(mean).reshape(-1).tolist()]
        std = [float(v) for v in as_tensor(std).reshape(-1).tolist()]
    except (TypeError, ValueError):
        raise ValueError(
            f"statistics must be a key of STATISTICS, 'data' or a (mean, std) pair of per-channel "
            f"sequences; got {statistics!r}."
        ) from None
    channels = loaded.images.shape[1]
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise ValueError(
            f"statistics must give {channels} means and {channels} positive stds (one per channel "
            f"of the images in {origin}); got mean {mean}, std {std}."
        )
    return PixelSpace("normalized", mean=mean, std=std, statistics="given", origin=origin)


def _pixel_space(
    loaded: LoadedSet, *, zca, statistics, default_zca, default_statistics, why: str
) -> PixelSpace:
    """Return the set's pixel space: ZCA if asked (or the format's default), else stats."""
    if zca is None:
        zca = default_zca
        if zca != "none":
            loaded.assume(
                "pixel space",
                f"ZCA ({zca}, eps=0.1)",
                why + " Pass zca='none' (--zca none) if it was not.",
            )
    if zca not in ("none", "kornia", "kip"):
        raise ValueError(f"zca must be 'none', 'kornia' or 'kip'; got {zca!r}.")
    if zca != "none":
        if statistics is not None:
            raise ValueError(
                f"statistics={statistics!r} and zca={zca!r} exclude each other: a ZCA set is "
                "whitened from [0, 1] pixels, without mean/std normalisation."
            )
        return PixelSpace("zca", zca=zca, origin=loaded.path)
    return _statistics_space(loaded, statistics, default=default_statistics, why=why)


def _mtt_files(path: Path) -> tuple[Path, Path, Path | None]:
    """Return the images, labels and (DATM) learning-rate files of an MTT/DATM set."""
    if path.is_dir():
        folder = path / "Normal" if (path / "Normal" / "images_best.pt").is_file() else path
        images = folder / "images_best.pt"
        if not images.is_file():
            found = sorted(p.name for p in folder.glob("images_*.pt"))
            raise FileNotFoundError(
                f"{folder} has no images_best.pt (MTT and DATM save the best set there)"
                + (f"; it has {found[:5]}: pass one of them" if found else "")
                + "."
            )
    else:
        images = path
    match = re.fullmatch(r"images_(.+)\.pt", images.name)
    if match is None:
        raise ValueError(f"{images} is not an MTT/DATM images file (images_<iteration>.pt).")
    suffix = match.group(1)
    labels = images.with_name(f"labels_{suffix}.pt")
    if not labels.is_file():
        raise FileNotFoundError(
            f"{labels} does not exist: MTT and DATM save the labels beside the images "
            f"({images.name} and {labels.name})."
        )
    lr = images.with_name(f"lr_{suffix}.pt")
    return images, labels, lr if lr.is_file() else None


def _read_mtt_like(path: Path, name: str, options: dict) -> LoadedSet:
    images_file, labels_file, lr_file = _mtt_files(path)
    images = _check_images(_torch_load(images_file), str(images_file))
    stored = _torch_load(labels_file)
    labels = _check_labels(stored, len(images), str(labels_file), str(images_file))
    learning_rate = None
    if lr_file is not None:
        value = _torch_load(lr_file)
        if not (isinstance(value, torch.Tensor) and value.numel() == 1) and not isinstance(
            value, float | int
        ):
            raise ValueError(f"{lr_file} must hold the learned learning rate, one number.")
        learning_rate = float(value)
        if not (0 < learning_rate < float("inf")):
            raise ValueError(f"{lr_file} holds the learning rate {learning_rate!r}; not > 0.")
    loaded = LoadedSet(
        images,
        labels,
        PixelSpace("raw"),
        format=name,
        path=str(path),
        learning_rate=learning_rate,
        details={"images": images_file.name, "labels": labels_file.name},
    )
    if name == "mtt":
        why = (
            "MTT's default (mtt-distillation utils.py::get_dataset: mean/std normalisation "
            "unless --zca, with CIFAR-10's statistics for CIFAR-10 and CIFAR-100)."
        )
        default_zca = "none"
    else:
        why = "DATM's configurations distil CIFAR and Tiny ImageNet with zca: True."
        default_zca = "kornia"
    key = _dataset_key(options.get("dataset"))
    default_statistics = "cifar10" if key in ("cifar10", "cifar100") else key
    loaded.space = _pixel_space(
        loaded,
        zca=options.get("zca"),
        statistics=options.get("statistics"),
        default_zca=default_zca,
        default_statistics=default_statistics,
        why=why,
    )
    return loaded


def _read_mtt(path: Path, options: dict) -> LoadedSet:
    return _read_mtt_like(path, "mtt", options)


def _read_datm(path: Path, options: dict) -> LoadedSet:
    return _read_mtt_like(path, "datm", options)


def _read_dc(path: Path, options: dict) -> LoadedSet:
    content = _torch_load(path)
    if not isinstance(content, dict) or "data" not in content:
        raise ValueError(
            f"{path} is not a DatasetCondensation result file: expected a dict with 'data' (a "
            f"list of [images, labels] per experiment); got {type(content).__name__}"
            + (f" with keys {sorted(content)[:6]}" if isinstance(content, dict) else "")
            + "."
        )
    experiments = content["data"]
    if not isinstance(experiments, list | tuple) or not experiments:
        raise ValueError(f"{path}: 'data' must be a non-empty list of [images, labels] pairs.")
    index = options.get("experiment", 0)
    if not isinstance(index, int) or isinstance(index, bool):
        raise TypeError(f"experiment must be an int; got {type(index).__name__}.")
    if not -len(experiments) <= index < len(experiments):
        raise ValueError(
            f"experiment={index}, but {path} holds {len(experiments)} experiment(s), numbered "
            f"from 0."
        )
    pair = experiments[index]
    where = f"{path} data[{index}]"
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise ValueError(f"{where} must be an [images, labels] pair.")
    images = _check_images(pair[0], f"{where}[0]")
    labels = _check_labels(pair[1], len(images), f"{where}[1]", f"{where}[0]")
    loaded = LoadedSet(
        images, labels, PixelSpace("raw"), format="dc", path=str(path),
        details={"experiment": index % len(experiments), "experiments": len(experiments)},
    )  # fmt: skip
    if len(experiments) > 1:
        loaded.assume(
            "experiment",
            f"{index % len(experiments)} of {len(experiments)}",
            "the file holds one set per experiment; pass experiment= (--experiment) for another.",
        )
    accuracies = content.get("accs_all_exps")
    if isinstance(accuracies, dict):
        loaded.details["recorded accuracies"] = {
            str(k): [float(a) for a in v] for k, v in accuracies.items() if isinstance(v, list)
        }
    loaded.space = _pixel_space(
        loaded,
        zca=options.get("zca"),
        statistics=options.get("statistics"),
        default_zca="none",
        default_statistics=_dataset_key(options.get("dataset")),
        why="DatasetCondensation normalises each dataset with its own statistics (utils.py).",
    )
    return loaded


def _npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as content:
            return {key: content[key] for key in content.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npz file: {exc}") from exc


def _read_kip(path: Path, options: dict) -> LoadedSet:
    content = _npz(path)
    missing = {"images", "labels"} - set(content)
    if missing:
        raise ValueError(
            f"{path} lacks the arrays {sorted(missing)}; a KIP file holds 'images' (n, H, W, C) "
            f"and 'labels' (n, n_classes). It has {sorted(content)}."
        )
    raw_images, raw_labels = content["images"], content["labels"]
    if raw_images.ndim != 4:
        raise ValueError(
            f"{path} 'images' must have shape (n, height, width, channels) (KIP stores NHWC); got "
            f"{raw_images.shape}."
        )
    if raw_images.dtype.kind != "f":
        raise ValueError(f"{path} 'images' must be float; got {raw_images.dtype}.")
    images = _check_images(
        torch.from_numpy(np.ascontiguousarray(raw_images)).permute(0, 3, 1, 2), f"{path} 'images'"
    )
    if raw_labels.ndim != 2 or raw_labels.dtype.kind != "f":
        raise ValueError(
            f"{path} 'labels' must be float labels of shape (n, n_classes) (one-hot, or learned); "
            f"got {raw_labels.dtype} of shape {raw_labels.shape}."
        )
    scores = _check_labels(
        torch.from_numpy(np.ascontiguousarray(raw_labels)), len(images), f"{path} 'labels'",
        f"{path} 'images'",
    )  # fmt: skip
    labels = scores.argmax(dim=1)
    loaded = LoadedSet(images, labels, PixelSpace("raw"), format="kip", path=str(path))
    centred = scores - scores.max(dim=1, keepdim=True).values
    one_hot = bool(((centred == 0).sum(dim=1) == 1).all()) and bool(centred.unique().numel() <= 2)
    if not one_hot:
        loaded.assume(
            "labels",
            "the argmax of each row",
            "the labels are learned (not one-hot); dc_benchmark's KIP loader takes their argmax.",
        )
    loaded.space = _pixel_space(
        loaded,
        zca=options.get("zca"),
        statistics=options.get("statistics"),
        default_zca="kip",
        default_statistics=None,
        why="KIP's sets are in its own ZCA space (dc_benchmark data_loader/kip_data_loader.py).",
    )
    return loaded


_FOLDER_SCHEMES = {
    "sre2l": (re.compile(r"new(\d{3})"), re.compile(r"class(\d{3})_id(\d{3})\.(jpe?g|png)", re.I)),
    "rded": (re.compile(r"(\d{5})"), re.compile(r"class(\d{5})_id(\d{5})\.(jpe?g|png)", re.I)),
}


def _folder_scheme(path: Path) -> str | None:
    names = [p.name for p in path.iterdir() if p.is_dir()] if path.is_dir() else []
    for scheme, (folder, _) in _FOLDER_SCHEMES.items():
        if names and all(folder.fullmatch(name) for name in names):
            return scheme
    return None


def _read_image_folder(path: Path, options: dict) -> LoadedSet:
    from PIL import Image

    if not path.is_dir():
        raise ValueError(f"{path} is not a folder; an image-folder set is a folder of folders.")
    scheme = _folder_scheme(path)
    if scheme is None:
        raise ValueError(
            f"{path} does not hold class folders named as SRe2L (new000, new001, ...) or RDED "
            "(00000, 00001, ...) name them, and nothing else."
        )
    folder_pattern, file_pattern = _FOLDER_SCHEMES[scheme]
    entries = []
    for folder in sorted(p for p in path.iterdir() if p.is_dir()):
        label = int(folder_pattern.fullmatch(folder.name).group(1))
        for file in sorted(folder.iterdir()):
            match = file_pattern.fullmatch(file.name)
            if match is None:
                raise ValueError(
                    f"{file} is not named as the {scheme} scheme names images "
                    f"({file_pattern.pattern})."
                )
            if int(match.group(1)) != label:
                raise ValueError(
                    f"{file} names class {int(match.group(1))} in the folder of class {label}."
                )
            entries.append((label, int(match.group(2)), file))
    if not entries:
        raise ValueError(f"{path} holds no images.")
    arrays, modes = [], set()
    for _, _, file in entries:
        try:
            with Image.open(file) as image:
                image.load()
                modes.add(image.mode)
                arrays.append(image.copy())
        except OSError as exc:
            raise ValueError(f"{file} is not a readable image: {exc}") from exc
    mode = "L" if modes <= {"L", "1"} else "RGB"
    pixels = []
    for (_, _, file), image in zip(entries, arrays, strict=True):
        array = np.asarray(image.convert(mode), dtype=np.uint8)
        array = array[:, :, None] if array.ndim == 2 else array
        if pixels and array.shape != pixels[0].shape:
            raise ValueError(
                f"{file} has shape {array.shape}, but {entries[0][2]} has {pixels[0].shape}: the "
                "images of a set must have one size."
            )
        pixels.append(array)
    stacked = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()
    images = stacked.to(torch.float32) / 255
    labels = torch.tensor([label for label, _, _ in entries], dtype=torch.int64)
    loaded = LoadedSet(
        images, labels, PixelSpace("raw"), format="image-folder", path=str(path), in_pixels=True,
        details={"scheme": scheme, "modes": sorted(modes)},
    )  # fmt: skip
    loaded.assume(
        "labels",
        "the class of each image's folder",
        "SRe2L and RDED train with soft labels from a teacher network, which the folder does "
        "not hold; the students here train on hard labels.",
    )
    loaded.space = _statistics_space(
        loaded,
        options.get("statistics"),
        default=_dataset_key(options.get("dataset")),
        why="SRe2L and RDED normalise the folder's pixels with the dataset's statistics.",
    )
    if options.get("zca") not in (None, "none"):
        raise ValueError("An image folder holds pixels; it is never in ZCA space (zca='none').")
    return loaded


def _read_distcal(path: Path, options: dict) -> LoadedSet:
    distilled = load_distilled(path)
    return _from_distilled(distilled, str(path))


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


def _read_plain(path: Path, options: dict) -> LoadedSet:
    if path.suffix == ".npz":
        content = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _npz(path).items()}
    else:
        content = _torch_load(path)
    if not isinstance(content, dict) or not {"images", "labels"} <= set(content):
        raise ValueError(
            f"{path} is not a plain set file: expected a dict with 'images' and 'labels'; got "
            + (sorted(content)[:6] if isinstance(content, dict) else type(content).__name__)
            + "."
        )
    images = _check_images(content["images"], f"{path} 'images'")
    labels = _check_labels(content["labels"], len(images), f"{path} 'labels'", f"{path} 'images'")
    learning_rate = content.get("learning_rate")
    if learning_rate is not None:
        learning_rate = float(learning_rate)
        if not (0 < learning_rate < float("inf")):
            raise ValueError(f"{path} 'learning_rate' is {learning_rate!r}; it must be > 0.")
    loaded = LoadedSet(
        images, labels, PixelSpace("raw"), format="plain", path=str(path),
        learning_rate=learning_rate,
    )  # fmt: skip
    statistics = options.get("statistics")
    if "mean" in content and "std" in content:
        if statistics is not None or options.get("zca") not in (None, "none"):
            raise ValueError(f"{path} holds its mean and std; do not pass statistics= or zca=.")
        loaded.space = _statistics_space(
            loaded, (content["mean"], content["std"]), default=None, why=""
        )
        loaded.space.statistics = "file"
        return loaded
    loaded.space = _pixel_space(
        loaded,
        zca=options.get("zca"),
        statistics=statistics,
        default_zca="none",
        default_statistics=_dataset_key(options.get("dataset")),
        why="A plain file does not say how its pixels were normalised.",
    )
    return loaded


@dataclass(frozen=True)
class _Format:
    description: str
    read: object
    write: object


def detect_format(path) -> str:
    """Tell a set file's format from its name and content, where that is unambiguous.

    Parameters
    ----------
    path : str or os.PathLike
        The file or folder.

    Returns
    -------
    str
        A key of :data:`FORMATS`.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the format cannot be told; the message lists the formats (pass ``format=``).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")

    def unknown(why: str) -> ValueError:
        listed = ", ".join(f"{name!r} ({fmt.description})" for name, fmt in FORMATS.items())
        return ValueError(
            f"Cannot tell the format of {path}: {why}. Pass format= (--format) one of {listed}."
        )

    if path.is_dir():
        if _folder_scheme(path) is not None:
            return "image-folder"
        if any(path.glob("images_*.pt")) or any(path.glob("Normal/images_*.pt")):
            return _mtt_or_datm(path)
        raise unknown("a folder with neither images_*.pt files (MTT, DATM) nor class folders")
    if path.suffix == ".safetensors":
        return "distcal"
    if path.suffix == ".npz":
        content = _npz(path)
        images, labels = content.get("images"), content.get("labels")
        if images is None or labels is None or images.ndim != 4:
            raise unknown("an .npz file without 4-D 'images' and 'labels'")
        nhwc = images.shape[3] in (1, 3) and images.shape[1] not in (1, 3)
        nchw = images.shape[1] in (1, 3) and images.shape[3] not in (1, 3)
        if nhwc and labels.ndim == 2:
            return "kip"
        if nchw:
            return "plain"
        raise unknown(f"images of shape {images.shape} with labels of shape {labels.shape}")
    if path.suffix == ".pt":
        if re.fullmatch(r"images_.+\.pt", path.name):
            return _mtt_or_datm(path)
        content = _torch_load(path)
        if isinstance(content, dict) and "data" in content:
            return "dc"
        if isinstance(content, dict) and "images" in content:
            return "plain"
        raise unknown(f"a .pt file holding {type(content).__name__}, not a set of a known layout")
    raise unknown(f"an unknown file type {path.suffix!r}")


def _mtt_or_datm(path: Path) -> str:
    """DATM if the set has a learning-rate file or soft labels, else MTT."""
    _, labels, lr = _mtt_files(path)
    if lr is not None:
        return "datm"
    stored = _torch_load(labels)
    return "datm" if isinstance(stored, torch.Tensor) and stored.ndim == 2 else "mtt"


def read_distilled(
    path, *, format=None, dataset=None, experiment=0, zca=None, statistics=None
) -> LoadedSet:
    """Read a distilled set written by distcal or by another tool (see :data:`FORMATS`).

    Parameters
    ----------
    path : str or os.PathLike
        The file or folder (MTT/DATM: the folder or its ``images_*.pt``; image folders: the
        folder of class folders).
    format : str or None, default=None
        A key of :data:`FORMATS`; None tells it from the file (:func:`detect_format`).
    dataset : str or None, default=None
        The dataset the set was distilled from (``"cifar10"``, ``"fashion-mnist"``, ...),
        which decides the default statistics of a normalised set.
    experiment : int, default=0
        The experiment of a DatasetCondensation file (which holds one set per experiment).
    zca : {"none", "kornia", "kip"} or None, default=None
        Whether the images are in ZCA space, and which; None takes the format's default (MTT:
        none, DATM: kornia, KIP: kip, the others: none), recorded as assumed.
    statistics : str, pair of sequences or None, default=None
        The per-channel (mean, std) of a normalised set: a key of :data:`STATISTICS`,
        ``"data"`` (the real training images' statistics), or ``(mean, std)``. None takes the
        format's default for ``dataset``, recorded as assumed.

    Returns
    -------
    LoadedSet
        The images, labels, pixel space, learned learning rate and what was assumed.

    Raises
    ------
    ValueError
        If the file does not hold a valid set of its format (the message names the file and
        what is wrong), or its format cannot be told.

    Examples
    --------
    >>> import tempfile, torch
    >>> from distcal.distill import read_distilled
    >>> folder = tempfile.mkdtemp()
    >>> torch.save(torch.rand(20, 3, 8, 8), f"{folder}/images_best.pt")
    >>> torch.save(torch.arange(10).repeat_interleave(2), f"{folder}/labels_best.pt")
    >>> loaded = read_distilled(folder, dataset="cifar10")
    >>> loaded.format, tuple(loaded.images.shape), loaded.space.statistics
    ('mtt', (20, 3, 8, 8), 'cifar10')
    """
    path = Path(path)
    if format is None:
        format = detect_format(path)
    elif format not in FORMATS:
        raise ValueError(f"Unknown format {format!r}; valid formats are {sorted(FORMATS)}.")
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist.")
    options = {"dataset": dataset, "experiment": experiment, "zca": zca, "statistics": statistics}
    return FORMATS[format].read(path, options)


# --------------------------------------------------------------------------------------------
# Writing files
# --------------------------------------------------------------------------------------------


def _as_loaded(distilled) -> LoadedSet:
    if isinstance(distilled, LoadedSet):
        return distilled
    if isinstance(distilled, DistilledSet):
        return _from_distilled(distilled, "the set")
    raise TypeError(
        f"distilled must be a DistilledSet or a LoadedSet; got {type(distilled).__name__}."
    )


def _hard_only(loaded: LoadedSet, format: str) -> None:
    if loaded.soft:
        raise ValueError(
            f"The {format!r} format stores class indices and the set has soft labels; export "
            "it as 'datm' or 'plain'."
        )


def _write_mtt(loaded: LoadedSet, path: Path, options: dict) -> Path:
    _hard_only(loaded, "mtt")
    path.mkdir(parents=True, exist_ok=True)
    torch.save(loaded.images.clone(), path / "images_best.pt")
    torch.save(loaded.labels.clone(), path / "labels_best.pt")
    return path


def _write_datm(loaded: LoadedSet, path: Path, options: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    torch.save(loaded.images.clone(), path / "images_best.pt")
    torch.save(loaded.labels.clone(), path / "labels_best.pt")
    if loaded.learning_rate is not None:
        # DATM saves syn_lr as a 0-d tensor; float64 keeps distcal's rate exactly.
        torch.save(torch.tensor(loaded.learning_rate, dtype=torch.float64), path / "lr_best.pt")
    return path


def _write_dc(loaded: LoadedSet, path: Path, options: dict) -> Path:
    _hard_only(loaded, "dc")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "data": [[loaded.images.clone(), loaded.labels.clone()]],
            "accs_all_exps": {"ConvNet": []},
        },
        path,
    )
    return path


def _write_kip(loaded: LoadedSet, path: Path, options: dict) -> Path:
    _hard_only(loaded, "kip")
    path.parent.mkdir(parents=True, exist_ok=True)
    images = to_numpy(loaded.images.permute(0, 2, 3, 1).contiguous())
    labels = np.eye(loaded.n_classes, dtype=np.float32)[to_numpy(loaded.labels)]
    np.savez(path, images=images, labels=labels)
    return path


def _write_plain(loaded: LoadedSet, path: Path, options: dict) -> Path:
    content = {"images": loaded.images.clone(), "labels": loaded.labels.clone()}
    if loaded.learning_rate is not None:
        content["learning_rate"] = torch.tensor(loaded.learning_rate, dtype=torch.float64)
    if loaded.space.kind == "normalized" and loaded.space.mean is not None:
        content["mean"] = torch.tensor(loaded.space.mean, dtype=torch.float32)
        content["std"] = torch.tensor(loaded.space.std, dtype=torch.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        np.savez(path, **{k: to_numpy(v) for k, v in content.items()})
    else:
        torch.save(content, path)
    return path


def _write_distcal(loaded: LoadedSet, path: Path, options: dict) -> Path:
    _hard_only(loaded, "distcal")
    if loaded.space.kind != "normalized" or loaded.space.mean is None:
        raise ValueError(
            "distcal's file stores mean/std-normalised sets with their statistics; this set is "
            f"{loaded.space.describe()}."
        )
    distilled = loaded.distilled or DistilledSet(
        images=loaded.images,
        labels=loaded.labels,
        mean=torch.tensor(loaded.space.mean, dtype=torch.float32),
        std=torch.tensor(loaded.space.std, dtype=torch.float32),
        learning_rate=loaded.learning_rate,
    )
    return distilled.save(path)


def _write_image_folder(loaded: LoadedSet, path: Path, options: dict) -> Path:
    from PIL import Image

    _hard_only(loaded, "image-folder")
    scheme = options.get("scheme", "sre2l")
    extension = options.get("extension", "png")
    if scheme not in _FOLDER_SCHEMES:
        raise ValueError(f"scheme must be 'sre2l' or 'rded'; got {scheme!r}.")
    if extension not in ("png", "jpg"):
        raise ValueError(f"extension must be 'png' or 'jpg'; got {extension!r}.")
    space = loaded.space
    if loaded.in_pixels or space.kind == "raw":
        pixels = loaded.images
    elif space.kind == "normalized" and space.mean is not None:
        shape = (1, -1, 1, 1)
        mean = torch.tensor(space.mean, dtype=torch.float32).view(shape)
        std = torch.tensor(space.std, dtype=torch.float32).view(shape)
        pixels = loaded.images * std + mean
    else:
        raise ValueError(
            f"An image folder holds [0, 1] pixels, and this set is {space.describe()}: it cannot "
            "be written as pixels without its statistics or its ZCA."
        )
    scaled = pixels * 255
    levels = scaled.round().clamp(0, 255)
    clipped = int(((scaled < -0.5) | (scaled > 255.5)).sum())
    off_grid = int(((scaled - scaled.round()).abs() > 1e-3).sum())
    if clipped or off_grid or extension == "jpg":
        warnings.warn(
            f"Writing the set as 8-bit {extension.upper()} images loses information: "
            f"{clipped} pixel values lie outside [0, 1] and are clipped, {off_grid} are not "
            "multiples of 1/255 and are rounded"
            + (", and JPEG compression is lossy" if extension == "jpg" else "")
            + ".",
            DistcalWarning,
            stacklevel=3,
        )
    array = to_numpy(levels.to(torch.uint8).permute(0, 2, 3, 1).contiguous())
    counts: dict[int, int] = {}
    for image, label in zip(array, loaded.labels.tolist(), strict=True):
        index = counts.get(label, 0)
        counts[label] = index + 1
        if scheme == "sre2l":
            folder, name = path / f"new{label:03d}", f"class{label:03d}_id{index:03d}"
        else:
            folder, name = path / f"{label:05d}", f"class{label:05d}_id{index:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(
            folder / f"{name}.{extension}"
        )
    return path


#: The formats by name: a description, the reader and the writer.
FORMATS = {
    "mtt": _Format("MTT: images_best.pt and labels_best.pt in a folder", _read_mtt, _write_mtt),
    "datm": _Format("DATM: MTT's files with soft labels and lr_best.pt", _read_datm, _write_datm),
    "dc": _Format(
        "DatasetCondensation (DC, DSA, DM): res_*.pt with one set per experiment",
        _read_dc,
        _write_dc,
    ),
    "kip": _Format("KIP: .npz with NHWC images and one-hot labels", _read_kip, _write_kip),
    "image-folder": _Format(
        "SRe2L/RDED: JPEG or PNG files in class folders", _read_image_folder, _write_image_folder
    ),
    "distcal": _Format("distcal's .safetensors file", _read_distcal, _write_distcal),
    "plain": _Format("a .pt or .npz file with 'images' and 'labels'", _read_plain, _write_plain),
}


def export_distilled(distilled, path, *, format: str, scheme="sre2l", extension="png") -> Path:
    """Write a distilled set in another tool's format, exactly as that tool lays it out.

    Parameters
    ----------
    distilled : DistilledSet or LoadedSet
        The set.
    path : str or os.PathLike
        Where to write: a folder for ``"mtt"``, ``"datm"`` and ``"image-folder"``, a file for
        the others (``res_<method>_<dataset>_ConvNet_<ipc>ipc.pt`` for ``"dc"``, ``.npz`` for
        ``"kip"``, ``.pt`` or ``.npz`` for ``"plain"``, ``.safetensors`` for ``"distcal"``).
    format : str
        A key of :data:`FORMATS`.
    scheme : {"sre2l", "rded"}, default="sre2l"
        The file names of ``"image-folder"``.
    extension : {"png", "jpg"}, default="png"
        The image type of ``"image-folder"``; PNG is lossless for pixels on the 8-bit grid.

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If the format cannot hold the set (soft labels in a hard-label format; a ZCA-space or
        unnormalised set as image files).

    Notes
    -----
    Images are written as stored, in the set's space, so that reading the file back gives
    the same tensors; an image folder holds 8-bit pixels, written from the set's statistics
    (a :class:`~distcal.exceptions.DistcalWarning` says what rounding and clipping lose).
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown format {format!r}; valid formats are {sorted(FORMATS)}.")
    loaded = _as_loaded(distilled)
    options = {"scheme": scheme, "extension": extension}
    return FORMATS[format].write(loaded, Path(path), options)
