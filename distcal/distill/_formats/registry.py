"""The formats by name, telling a file's format, and the two doors: read and export."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .condensation import _read_dc, _write_dc
from .image_folder import _folder_scheme, _read_image_folder, _write_image_folder
from .kip import _read_kip, _write_kip
from .loaded import LoadedSet, _npz, _torch_load
from .mtt import _mtt_or_datm, _read_datm, _read_mtt, _write_datm, _write_mtt
from .plain import _read_distcal, _read_plain, _write_distcal, _write_plain
from .writing import _as_loaded


@dataclass(frozen=True)
class _Format:
    description: str
    read: object
    write: object


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
