"""DatasetCondensation's result files (DC, DSA, DM).

- ``"dc"`` (VICO-UoE/DatasetCondensation ``main.py``, ``main_DM.py``): one
  ``res_{method}_{dataset}_{model}_{ipc}ipc.pt`` file, a dict ``{'data': [[images, labels],
  ...one per experiment], 'accs_all_exps': {model: [accuracies]}}``; images normalised with
  the dataset's own statistics (``utils.py::get_dataset``), hard labels.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .loaded import LoadedSet, _check_images, _check_labels, _torch_load
from .space import PixelSpace, _dataset_key, _pixel_space
from .writing import _hard_only


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
