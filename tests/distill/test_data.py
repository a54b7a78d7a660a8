import gzip
import struct

import numpy as np
import pytest
import torch

from distcal.distill import (
    channel_statistics,
    check_images,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    normalize,
    stratified_split,
)
from distcal.distill._data import FASHION_MNIST_ROOTS


def write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("t10k", 10)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def test_digits_are_embedded():
    data = load_digits()
    assert data.images.shape == (1797, 1, 8, 8)
    assert data.images.dtype == torch.float32
    assert data.images.min() >= 0
    assert data.images.max() <= 1
    assert data.labels.dtype == torch.long
    assert set(data.labels.tolist()) == set(range(10))


def test_fashion_mnist_from_any_folder(fake_fashion):
    train = load_fashion_mnist(fake_fashion)
    test = load_fashion_mnist(fake_fashion, split="test")
    assert train.images.shape == (30, 1, 28, 28)
    assert test.images.shape == (10, 1, 28, 28)
    assert train.images.max() <= 1
    both = load_dataset("fashion-mnist", root=fake_fashion)
    assert both.test_start == 30
    assert len(both.labels) == 40


def test_missing_and_corrupt_files_are_named(tmp_path, fake_fashion):
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte\.gz"):
        load_fashion_mnist(tmp_path / "nowhere")
    path = fake_fashion / "train-images-idx3-ubyte.gz"
    with gzip.open(path) as handle:
        payload = handle.read()
    with gzip.open(path, "wb") as handle:
        handle.write(payload[:-100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_fashion_mnist(fake_fashion)
    path.write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="not a readable gzip"):
        load_fashion_mnist(fake_fashion)
    with pytest.raises(ValueError, match="split must be"):
        load_fashion_mnist(fake_fashion, split="val")
    with pytest.raises(ValueError, match="valid names are"):
        load_dataset("cifar")


@pytest.mark.skipif(
    not any(__import__("os").path.isdir(r) for r in FASHION_MNIST_ROOTS),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_when_installed():
    data = load_fashion_mnist(split="test")
    assert data.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(data.labels).tolist() == [1000] * 10


def test_stratified_split_is_disjoint_stratified_and_seeded():
    labels = torch.arange(1000) % 10
    a, b, c = stratified_split(labels, [100, 0.2, 300], random_state=0)
    assert [len(a), len(b), len(c)] == [100, 200, 300]
    assert not set(a.tolist()) & set(b.tolist())
    assert not set(b.tolist()) & set(c.tolist())
    assert torch.bincount(labels[a]).tolist() == [10] * 10
    again = stratified_split(labels, [100, 0.2, 300], random_state=0)
    assert torch.equal(a, again[0])
    with pytest.raises(ValueError, match="sum to at most"):
        stratified_split(labels, [900, 200])


def test_normalisation_round_trip():
    images = torch.rand(50, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    mean, std = channel_statistics(images)
    z = normalize(images, mean, std)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(z.transpose(0, 1).reshape(3, -1).std(dim=1), torch.ones(3), atol=1e-4)
    with pytest.raises(ValueError, match="std must be positive"):
        normalize(images, mean, torch.zeros(3))


def test_user_images_are_checked():
    images, labels = check_images(np.zeros((4, 1, 8, 8)), [0, 1, 2, 3])
    assert images.shape == (4, 1, 8, 8)
    assert labels.dtype == torch.long
    with pytest.raises(ValueError, match=r"channels, height, width"):
        check_images(np.zeros((4, 8, 8)))
    with pytest.raises(ValueError, match="inconsistent numbers of samples: X has 4 and y has 2"):
        check_images(np.zeros((4, 1, 8, 8)), [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        check_images(np.full((2, 1, 2, 2), np.nan))
