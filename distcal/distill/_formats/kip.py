"""KIP's sets.

- ``"kip"`` (KIP's sets as justincui03/dc_benchmark ``data_loader/kip_data_loader.py`` reads
  them): an ``.npz`` with ``images`` ``(n, H, W, C)`` and one-hot ``labels`` ``(n, C)`` (learned
  labels are read as their argmax, as dc_benchmark does), in KIP's ZCA space.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..._device import to_numpy
from .loaded import LoadedSet, _check_images, _check_labels, _npz
from .space import PixelSpace, _pixel_space
from .writing import _hard_only


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


def _write_kip(loaded: LoadedSet, path: Path, options: dict) -> Path:
    _hard_only(loaded, "kip")
    path.parent.mkdir(parents=True, exist_ok=True)
    images = to_numpy(loaded.images.permute(0, 2, 3, 1).contiguous())
    labels = np.eye(loaded.n_classes, dtype=np.float32)[to_numpy(loaded.labels)]
    np.savez(path, images=images, labels=labels)
    return path
