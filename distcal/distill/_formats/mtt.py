"""The trajectory-matching repositories' sets.

- ``"mtt"`` (GeorgeCazenavette/mtt-distillation ``distill.py``): a folder with
  ``images_best.pt`` and ``labels_best.pt`` (``torch.save`` of bare tensors: images
  ``(n, C, H, W)`` float, labels int64 grouped by class). Pixels are mean/std-normalised with
  CIFAR-10's statistics (``utils.py::get_dataset``, for CIFAR-100 too), or in ZCA space with
  ``--zca`` (kornia's ``ZCAWhitening(eps=0.1)`` fitted on the real training set, not saved).
  The learned learning rate is not saved.
- ``"datm"`` (NUS-HPC-AI-Lab/DATM ``distill/DATM.py``): the same files (in ``Normal/``) plus
  ``lr_best.pt`` (the learned learning rate, a 0-d tensor); ``labels_best.pt`` holds soft
  labels, float ``(n, n_classes)`` logits. Its configurations whiten with ZCA.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from .loaded import LoadedSet, _check_images, _check_labels, _torch_load
from .space import PixelSpace, _dataset_key, _pixel_space
from .writing import _hard_only


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


def _mtt_or_datm(path: Path) -> str:
    """DATM if the set has a learning-rate file or soft labels, else MTT."""
    _, labels, lr = _mtt_files(path)
    if lr is not None:
        return "datm"
    stored = _torch_load(labels)
    return "datm" if isinstance(stored, torch.Tensor) and stored.ndim == 2 else "mtt"


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
