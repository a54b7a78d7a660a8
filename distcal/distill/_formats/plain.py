"""distcal's own file and the plain dictionary of tensors any script can write.

- ``"distcal"``: distcal's own safetensors file (:func:`~distcal.distill.load_distilled`).
- ``"plain"``: a ``.pt`` or ``.npz`` file holding ``images`` ``(n, C, H, W)`` and ``labels``
  (class indices, or float soft labels ``(n, n_classes)``), optionally ``learning_rate``,
  ``mean`` and ``std``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..._device import to_numpy
from .._artifact import DistilledSet, load_distilled
from .loaded import LoadedSet, _check_images, _check_labels, _from_distilled, _npz, _torch_load
from .space import PixelSpace, _dataset_key, _pixel_space, _statistics_space
from .writing import _hard_only


def _read_distcal(path: Path, options: dict) -> LoadedSet:
    distilled = load_distilled(path)
    return _from_distilled(distilled, str(path))


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
