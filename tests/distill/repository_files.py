"""Distilled-set files written as the reference repositories write them.

Each function mirrors the saving code of one repository (named in its docstring, read at the
commit the docs cite): the same file names, container types, dtypes, layouts and pixel spaces.
Nothing here imports distcal's writers, so the loaders are tested against the repositories'
layout, not against distcal's idea of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

#: CIFAR-10's statistics as mtt-distillation utils.py::get_dataset writes them.
CIFAR10_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR10_STD = [0.2023, 0.1994, 0.2010]


def grouped_labels(n_classes: int, ipc: int) -> torch.Tensor:
    """``[0, 0, ..., 1, 1, ...]``: distill.py's ``label_syn`` (``torch.long``, grouped)."""
    return torch.tensor(
        np.array([np.ones(ipc, dtype=np.int_) * i for i in range(n_classes)]), dtype=torch.long
    ).view(-1)


def write_mtt(folder, images: torch.Tensor, labels: torch.Tensor) -> Path:
    """GeorgeCazenavette/mtt-distillation distill.py: ``torch.save(image_save.cpu(),
    os.path.join(save_dir, "images_best.pt"))`` and the same for ``label_syn`` as
    ``labels_best.pt`` (bare tensors); an ``images_<it>.pt``/``labels_<it>.pt`` pair is saved
    too every 1000 iterations. No learning rate is saved."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(images.cpu(), folder / "images_best.pt")
    torch.save(labels.cpu(), folder / "labels_best.pt")
    torch.save(images.cpu(), folder / "images_1000.pt")
    torch.save(labels.cpu(), folder / "labels_1000.pt")
    return folder


def write_datm(folder, images: torch.Tensor, soft_labels: torch.Tensor, lr: float) -> Path:
    """NUS-HPC-AI-Lab/DATM distill/DATM.py: under ``save_dir/Normal/``, ``images_best.pt``,
    ``labels_best.pt`` (``label_syn``: float logits of shape (n, n_classes), learned) and
    ``lr_best.pt`` (``syn_lr.detach().cpu()``, a 0-d float32 tensor)."""
    normal = Path(folder) / "Normal"
    normal.mkdir(parents=True, exist_ok=True)
    torch.save(images.cpu(), normal / "images_best.pt")
    torch.save(soft_labels.detach().cpu(), normal / "labels_best.pt")
    torch.save(torch.tensor(lr).detach().cpu(), normal / "lr_best.pt")
    return Path(folder)


def write_dc(path, experiments: list, model: str = "ConvNet") -> Path:
    """VICO-UoE/DatasetCondensation main.py and main_DM.py: ``torch.save({'data': data_save,
    'accs_all_exps': accs_all_exps}, 'res_%s_%s_%s_%dipc.pt' % (method, dataset, model,
    ipc))``, ``data_save`` a list of ``[images, labels]`` (deep copies on the CPU), one per
    experiment, ``accs_all_exps`` a dict of accuracy lists per evaluation model."""
    data_save = [
        [images.detach().cpu().clone(), labels.cpu().clone()] for images, labels in experiments
    ]
    accs_all_exps = {model: [0.5 + 0.01 * i for i in range(len(experiments))]}
    torch.save({"data": data_save, "accs_all_exps": accs_all_exps}, path)
    return Path(path)


def write_kip(path, images_nhwc: np.ndarray, labels: np.ndarray) -> Path:
    """KIP's released sets as justincui03/dc_benchmark data_loader/kip_data_loader.py reads
    them: ``np.load(path)`` with ``data['images']`` (n, H, W, C) float and ``data['labels']``
    one-hot (n, n_classes), in KIP's ZCA space."""
    np.savez(path, images=images_nhwc, labels=labels)
    return Path(path)


def write_sre2l(folder, pixels: np.ndarray, labels: np.ndarray, ipc_ids=None) -> Path:
    """VILA-Lab/SRe2L recover (``SRe2L/*small_dataset/recover_cifar.py::save_images``):
    ``"{}/new{:03d}".format(syn_data_path, class_id)`` and
    ``"/class{:03d}_id{:03d}.jpg".format(class_id, ipc_id)``, the image
    ``Image.fromarray((image_np * 255).astype(np.uint8))`` of [0, 1] pixels (HWC)."""
    from PIL import Image

    folder = Path(folder)
    counts: dict[int, int] = {}
    for image, label in zip(pixels, labels, strict=True):
        ipc_id = counts.get(int(label), 0)
        counts[int(label)] = ipc_id + 1
        place = folder / f"new{int(label):03d}"
        place.mkdir(parents=True, exist_ok=True)
        array = (image * 255).astype(np.uint8)
        Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(
            place / f"class{int(label):03d}_id{ipc_id:03d}.jpg"
        )
    return folder


def write_rded(folder, pixels: np.ndarray, labels: np.ndarray) -> Path:
    """LINs-lab/RDED synthesize/main.py::save_images: ``"{}/{:05d}".format(syn_data_path,
    class_id)`` and ``"/class{:05d}_id{:05d}.jpg".format(class_id, id)``, ``id`` counting the
    class's images, the same ``Image.fromarray((image_np * 255).astype(np.uint8))``."""
    from PIL import Image

    folder = Path(folder)
    for label in sorted({int(v) for v in labels}):
        place = folder / f"{label:05d}"
        place.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(pixels[labels == label]):
            array = (image * 255).astype(np.uint8)
            Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(
                place / f"class{label:05d}_id{index:05d}.jpg"
            )
    return folder
