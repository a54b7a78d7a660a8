"""Image datasets: scikit-learn's digits, Fashion-MNIST from IDX files, and user arrays.

Nothing is downloaded. Images are float32 tensors of shape (n, channels, height, width) with
values in [0, 1]; labels are ``torch.long`` class indices.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch
from sklearn.utils import Bunch

from .._validation import check_inputs, check_targets

__all__ = [
    "FASHION_MNIST_ROOTS",
    "channel_statistics",
    "check_images",
    "check_samples",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "normalize",
    "stratified_split",
]

# Where Debian's dataset-fashion-mnist package puts the IDX files, then an environment variable.
FASHION_MNIST_ROOTS = ("/usr/share/datasets/fashion-mnist",)
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def check_samples(X, y=None, *, name: str = "X"):
    """Validate samples of shape (n, ...) and, if given, their integer class labels.

    Returns
    -------
    samples : Tensor of shape (n, ...), float
    labels : Tensor of shape (n,), long, or None
    """
    samples = check_inputs(X, name=name)
    if y is None:
        return samples, None
    labels = check_targets(y, n_samples=samples.shape[0], name="y", x_name=name, min_classes=1)
    return samples, labels


def check_images(X, y=None, *, name: str = "X"):
    """Validate images of shape (n, channels, height, width) and, if given, their labels.

    Parameters
    ----------
    X : array-like or Tensor of shape (n, C, H, W)
        Images; finite numbers.
    y : array-like or Tensor of shape (n,) or None, default=None
        Integer class labels.
    name : str, default="X"
        The argument's name, used in error messages.

    Returns
    -------
    images : Tensor of shape (n, C, H, W), float
        The images as a floating-point tensor (sharing memory with ``X`` where possible).
    labels : Tensor of shape (n,), long, or None
        The labels, or None when ``y`` is None.
    """
    images, labels = check_samples(X, y, name=name)
    if images.ndim != 4:
        raise ValueError(
            f"{name} must hold images of shape (n_samples, channels, height, width); got shape "
            f"{tuple(images.shape)}. Add a channel axis with X[:, None] for grey images."
        )
    return images, labels


def load_digits() -> Bunch:
    """Load scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes), shipped with it.

    Returns
    -------
    Bunch
        ``images`` (1797, 1, 8, 8) float32 in [0, 1], ``labels`` (1797,) long,
        ``n_classes`` 10, ``class_names`` and ``name``.

    Examples
    --------
    >>> from distcal.distill import load_digits
    >>> data = load_digits()
    >>> tuple(data.images.shape), data.n_classes
    ((1797, 1, 8, 8), 10)
    """
    from sklearn.datasets import load_digits as sklearn_digits

    raw = sklearn_digits()
    images = torch.from_numpy((raw.images / 16.0).astype(np.float32)[:, None])
    labels = torch.from_numpy(raw.target.astype(np.int64))
    return Bunch(
        images=images,
        labels=labels,
        n_classes=10,
        class_names=tuple(str(k) for k in range(10)),
        name="digits",
    )


def _read_idx(path: Path, *, expected_ndim: int) -> np.ndarray:
    """Read a gzip-compressed IDX file (the MNIST format), checking its header."""
    try:
        with gzip.open(path, "rb") as handle:
            payload = handle.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable gzip-compressed IDX file: {exc}") from exc
    if len(payload) < 4 or payload[0] != 0 or payload[1] != 0 or payload[2] != 0x08:
        raise ValueError(
            f"{path} is not an IDX file of unsigned bytes (bad magic number {payload[:4]!r})."
        )
    ndim = payload[3]
    if ndim != expected_ndim:
        raise ValueError(f"{path} holds a {ndim}-D array; expected {expected_ndim}-D.")
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(payload[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(payload) != header + size:
        raise ValueError(
            f"{path} is truncated or corrupt: its header announces {size} values of shape "
            f"{shape}, but it holds {len(payload) - header}."
        )
    return np.frombuffer(payload, dtype=np.uint8, offset=header).reshape(shape)


def _fashion_root(root) -> Path:
    if root is not None:
        return Path(root)
    candidates = [os.environ.get("DISTCAL_FASHION_MNIST", ""), *FASHION_MNIST_ROOTS]
    for candidate in candidates:
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    raise FileNotFoundError(
        "Fashion-MNIST was not found in "
        + ", ".join(repr(c) for c in FASHION_MNIST_ROOTS)
        + " (nor in $DISTCAL_FASHION_MNIST). Install it with `apt-get install "
        "dataset-fashion-mnist` (Debian), or pass root= a folder holding "
        + ", ".join(_IDX_FILES["train"] + _IDX_FILES["test"])
        + ". distcal never downloads data."
    )


def load_fashion_mnist(root=None, *, split: str = "train") -> Bunch:
    """Fashion-MNIST (28x28 grey images, 10 classes) from its standard IDX ``.gz`` files.

    Parameters
    ----------
    root : str or path, default=None
        Folder holding ``train-images-idx3-ubyte.gz`` and the three other files. By default
        ``$DISTCAL_FASHION_MNIST``, then ``/usr/share/datasets/fashion-mnist`` (where Debian's
        ``dataset-fashion-mnist`` package installs them).
    split : {"train", "test"}, default="train"
        The 60,000 training or the 10,000 test images.

    Returns
    -------
    Bunch
        ``images`` (n, 1, 28, 28) float32 in [0, 1], ``labels`` (n,) long, ``n_classes``,
        ``class_names`` and ``name``.
    """
    if split not in _IDX_FILES:
        raise ValueError(f"split must be 'train' or 'test'; got {split!r}.")
    folder = _fashion_root(root)
    image_file, label_file = (folder / name for name in _IDX_FILES[split])
    for path in (image_file, label_file):
        if path.is_dir():
            raise IsADirectoryError(
                f"{path} is a directory, not the IDX file of that name: the Fashion-MNIST "
                f"folder {folder} must hold the files {', '.join(_IDX_FILES[split])}."
            )
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} does not exist: the Fashion-MNIST folder {folder} must hold "
                f"{', '.join(_IDX_FILES[split])}."
            )
    images = _read_idx(image_file, expected_ndim=3)
    labels = _read_idx(label_file, expected_ndim=1)
    if len(images) != len(labels):
        raise ValueError(
            f"{image_file} holds {len(images)} images but {label_file} holds {len(labels)} labels."
        )
    if int(labels.max()) >= 10:
        raise ValueError(f"{label_file} holds labels above 9; it is not Fashion-MNIST.")
    return Bunch(
        images=torch.from_numpy((images.astype(np.float32) / 255.0)[:, None]),
        labels=torch.from_numpy(labels.astype(np.int64)),
        n_classes=10,
        class_names=FASHION_MNIST_CLASSES,
        name="fashion-mnist",
    )


def stratified_split(labels, sizes, *, random_state=None) -> list[torch.Tensor]:
    """Split sample indices into parts with the same class proportions.

    Parameters
    ----------
    labels : array-like or Tensor of shape (n_samples,)
        Class labels.
    sizes : sequence of float or int
        The size of each part: fractions (rounded down) summing to at most 1, or counts
        summing to at most ``n_samples``. Samples left over are dropped; fractions summing to
        1 leave none over.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffle.

    Returns
    -------
    list of Tensor
        Index tensors, one per part, disjoint.
    """
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state

    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    n = len(y)
    counts = [int(s * n) if isinstance(s, float) else int(s) for s in sizes]
    if all(isinstance(s, float) for s in sizes) and abs(sum(sizes) - 1) < 1e-9:
        counts[-1] = n - sum(counts[:-1])  # fractions summing to 1 leave no sample out
    if any(c <= 0 for c in counts) or sum(counts) > n:
        raise ValueError(
            f"sizes must be positive and sum to at most the {n} samples; got {list(sizes)} "
            f"(= {counts} samples)."
        )
    rng = check_random_state(random_state)
    remaining = np.arange(n)
    parts = []
    for count in counts[:-1]:
        part, remaining = train_test_split(
            remaining, train_size=count, stratify=y[remaining], random_state=rng
        )
        parts.append(part)
    last = counts[-1]
    leftover = len(remaining) - last
    if leftover >= len(np.unique(y[remaining])):
        remaining, _ = train_test_split(
            remaining, train_size=last, stratify=y[remaining], random_state=rng
        )
    elif leftover > 0:
        # Too few samples are left out to leave out one of every class: drop them at random.
        remaining = rng.permutation(remaining)[:last]
    parts.append(remaining)
    return [torch.from_numpy(np.sort(p)) for p in parts]


def channel_statistics(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of samples (n, C, ...), in float64.

    Axis 1 is the channel axis: for images (n, C, H, W) the statistics are per colour channel,
    for feature vectors (n, F) per feature.

    Parameters
    ----------
    images : Tensor of shape (n, C, ...)
        The samples.

    Returns
    -------
    mean : Tensor of shape (C,), float64
        The mean of every channel.
    std : Tensor of shape (C,), float64
        Its standard deviation (unbiased).
    """
    flat = images.transpose(0, 1).reshape(images.shape[1], -1).to(torch.float64)
    return flat.mean(dim=1), flat.std(dim=1)


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """Standardise each channel (axis 1): ``(images - mean) / std``.

    Parameters
    ----------
    images : Tensor of shape (n, C, ...)
        The samples.
    mean : array-like or Tensor of shape (C,)
        The mean of every channel.
    std : array-like or Tensor of shape (C,)
        The standard deviation of every channel; all positive.

    Returns
    -------
    Tensor of shape (n, C, ...)
        The standardised samples, in the dtype of ``images``.
    """
    shape = (1, -1) + (1,) * (images.ndim - 2)
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(shape)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(shape)
    if bool((std <= 0).any()):
        raise ValueError(
            "std must be positive for every channel; a constant channel cannot be standardised "
            "(pass normalize=False, or drop the channel)."
        )
    return (images - mean) / std


def load_dataset(name: str, *, root=None) -> Bunch:
    """Load a named dataset.

    ``"digits"`` gives all 1,797 images; ``"fashion-mnist"`` the training and test images
    concatenated, with ``test_start`` marking where the official test split begins.

    Parameters
    ----------
    name : {"digits", "fashion-mnist"}
        The dataset.
    root : str, os.PathLike or None, default=None
        Where Fashion-MNIST's files are (see :func:`load_fashion_mnist`); unused for digits.

    Returns
    -------
    Bunch
        As :func:`load_digits`, plus ``test_start`` (None for digits).
    """
    if name == "digits":
        data = load_digits()
        data.test_start = None
        return data
    if name == "fashion-mnist":
        train = load_fashion_mnist(root, split="train")
        test = load_fashion_mnist(root, split="test")
        train.images = torch.cat([train.images, test.images])
        train.labels = torch.cat([train.labels, test.labels])
        train.test_start = len(train.labels) - len(test.labels)
        return train
    raise ValueError(f"Unknown dataset {name!r}; valid names are ['digits', 'fashion-mnist'].")
