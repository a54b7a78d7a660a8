"""Sets stored as image files in class folders (SRe2L, RDED).

- ``"image-folder"`` (VILA-Lab/SRe2L ``recover``, LINs-lab/RDED ``synthesize/main.py``): JPEG or
  PNG files ``new{c:03d}/class{c:03d}_id{i:03d}.jpg`` (SRe2L) or
  ``{c:05d}/class{c:05d}_id{i:05d}.jpg`` (RDED) of [0, 1] pixels, the class in the folder's
  name; read with Pillow. Their soft labels come from a teacher at training time and are not
  in the folder: students train on the folders' classes.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch

from ..._device import to_numpy
from ...exceptions import DistcalWarning
from .loaded import LoadedSet
from .space import PixelSpace, _dataset_key, _statistics_space
from .writing import _hard_only

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
