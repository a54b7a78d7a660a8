"""Reading distilled sets in the reference repositories' formats, and writing them back.

The files are written by tests/distill/repository_files.py, which mirrors each repository's
saving code, on CIFAR-shaped synthetic data (3 x 32 x 32; no CIFAR exists on these machines).
"""

import pickle

import numpy as np
import pytest
import torch

from distcal.distill import (
    FORMATS,
    DistilledSet,
    PixelSpace,
    detect_format,
    export_distilled,
    read_distilled,
)

from . import repository_files as repo


def _cifar_like(n=120, n_classes=10, seed=0, size=32):
    """[0, 1] images of shape (3, size, size) on the 8-bit grid, with class-dependent means."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % n_classes
    base = rng.random((n_classes, 3, 1, 1)) * 0.5
    noise = rng.random((n, 3, size, size)) * 0.5
    pixels = np.round((base[labels] + noise) * 255) / 255
    return torch.from_numpy(pixels.astype(np.float32)), torch.from_numpy(labels.astype(np.int64))


def _normalised(images):
    mean = torch.tensor(repo.CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(repo.CIFAR10_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def _kornia_zca(train: np.ndarray, eps=0.1):
    """kornia.enhance.zca_mean as MTT calls it (ZCAWhitening(eps=0.1)): an independent oracle."""
    flat = train.reshape(len(train), -1).astype(np.float64)
    mean = flat.mean(0)
    cov = (flat - mean).T @ (flat - mean) / (len(flat) - 1)
    u, s, _ = np.linalg.svd(cov)
    matrix = u @ np.diag((s + eps) ** -0.5) @ u.T

    def transform(x):
        return ((x.reshape(len(x), -1) - mean) @ matrix).reshape(x.shape)

    return transform


def _kip_zca(train: np.ndarray, reg=0.1):
    """dc_benchmark kip_data_loader.py::load_dataset's whitening, as an independent oracle."""
    flat = train.reshape(len(train), -1).astype(np.float64)

    def layer_norm(x):
        x = x - x.mean(1, keepdims=True)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    flat = layer_norm(flat)
    cov = flat.T @ flat / len(flat)
    u, s, _ = np.linalg.svd(cov + reg * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0]))
    matrix = np.einsum("ij,j,kj->ik", u, s**-0.5, u)

    def transform(x):
        return (layer_norm(x.reshape(len(x), -1)) @ matrix).reshape(x.shape)

    return transform


# ------------------------------------------------------------------------------------------
# Each format, from files in the repository's layout
# ------------------------------------------------------------------------------------------


def test_mtt_folder_and_iteration_file(tmp_path):
    images, _ = _cifar_like(20)
    labels = repo.grouped_labels(10, 2)
    folder = repo.write_mtt(tmp_path / "mtt", _normalised(images), labels)
    assert detect_format(folder) == "mtt"
    loaded = read_distilled(folder, dataset="CIFAR10")
    assert loaded.format == "mtt"
    assert loaded.learning_rate is None
    assert not loaded.soft
    assert torch.equal(loaded.images, _normalised(images))
    assert torch.equal(loaded.labels, labels)
    assert loaded.space.kind == "normalized"
    assert loaded.space.statistics == "cifar10"
    assert [a["what"] for a in loaded.assumed] == ["pixel statistics"]
    # MTT uses CIFAR-10's statistics for CIFAR-100 as well (utils.py::get_dataset)
    assert read_distilled(folder, dataset="cifar100").space.mean == tuple(repo.CIFAR10_MEAN)
    by_file = read_distilled(folder / "images_1000.pt", dataset="cifar10")
    assert torch.equal(by_file.images, loaded.images)
    real = torch.rand(5, 3, 32, 32)
    assert torch.allclose(loaded.space.transform(real), _normalised(real))


#: ZCA on CIFAR's 3 x 32 x 32 takes a minute on 2 cores (an eigen-decomposition of 3072 x 3072,
#: twice with the oracle); the default run whitens 3 x 12 x 12 images the same way.
_ZCA_SIZES = [12, pytest.param(32, marks=pytest.mark.slow)]


@pytest.mark.parametrize("size", _ZCA_SIZES)
def test_mtt_zca_set_is_whitened_again_by_a_refit(tmp_path, size):
    train, _ = _cifar_like(400, seed=1, size=size)
    whiten = _kornia_zca(train.numpy())
    distilled = torch.from_numpy(whiten(train[:20].numpy()).astype(np.float32))
    folder = repo.write_mtt(tmp_path / "mtt-zca", distilled, repo.grouped_labels(10, 2))
    loaded = read_distilled(folder, zca="kornia")
    assert loaded.space.kind == "zca"
    assert loaded.space.needs_fit
    with pytest.raises(ValueError, match=r"mtt-zca is in ZCA space .* must be refitted"):
        loaded.space.transform(train[:2])
    loaded.space.fit(train)
    again = loaded.space.transform(train[:20])
    # float32 images whitened in float64: the refit reproduces the file to float32 rounding
    scale = float(distilled.abs().max())
    assert torch.allclose(again, distilled, rtol=0, atol=1e-5 * scale)


def test_datm_soft_labels_and_learned_rate(tmp_path):
    images = torch.randn(30, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    soft = torch.randn(30, 10, generator=torch.Generator().manual_seed(0))
    folder = repo.write_datm(tmp_path / "datm", images, soft, 0.0123)
    assert detect_format(folder) == "datm"
    loaded = read_distilled(folder)
    assert loaded.soft
    assert loaded.n_classes == 10
    assert torch.equal(loaded.labels, soft)
    assert loaded.learning_rate == pytest.approx(0.0123, rel=1e-7)  # a float32 0-d tensor
    assert loaded.space.kind == "zca"
    assert loaded.space.zca == "kornia"
    assert [a["what"] for a in loaded.assumed] == ["pixel space"]
    assert torch.equal(loaded.hard_labels(), soft.argmax(1))
    # without lr_best.pt, soft labels alone still say DATM
    (folder / "Normal" / "lr_best.pt").unlink()
    assert detect_format(folder) == "datm"


def test_dc_result_file_and_experiment_index(tmp_path):
    experiments = []
    for seed in range(3):
        images, _ = _cifar_like(20, seed=seed)
        experiments.append((images, repo.grouped_labels(10, 2)))
    path = repo.write_dc(tmp_path / "res_DM_CIFAR100_ConvNet_2ipc.pt", experiments)
    assert detect_format(path) == "dc"
    loaded = read_distilled(path, dataset="CIFAR100", experiment=1)
    assert torch.equal(loaded.images, experiments[1][0])
    assert loaded.details["experiments"] == 3
    assert loaded.details["experiment"] == 1
    assert loaded.details["recorded accuracies"]["ConvNet"] == pytest.approx([0.5, 0.51, 0.52])
    # DatasetCondensation normalises CIFAR-100 with its own statistics
    assert loaded.space.statistics == "cifar100"
    assert {a["what"] for a in loaded.assumed} == {"experiment", "pixel statistics"}
    assert torch.equal(read_distilled(path).images, experiments[0][0])
    with pytest.raises(ValueError, match=r"experiment=3, but .* holds 3 experiment"):
        read_distilled(path, experiment=3)


@pytest.mark.parametrize("size", _ZCA_SIZES)
def test_kip_npz_with_its_own_zca(tmp_path, size):
    train, labels = _cifar_like(400, seed=3, size=size)
    whiten = _kip_zca(train.numpy())
    images = whiten(train[:20].numpy()).astype(np.float32)
    nhwc = np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    one_hot = np.eye(10, dtype=np.float32)[labels[:20].numpy()]
    path = repo.write_kip(
        tmp_path / "kip_cifar10_ConvNet3_ssize20_zca_nol_noaug.npz", nhwc, one_hot
    )
    assert detect_format(path) == "kip"
    loaded = read_distilled(path)
    assert torch.equal(loaded.images, torch.from_numpy(images))
    assert torch.equal(loaded.labels, labels[:20])
    assert loaded.space.zca == "kip"
    loaded.space.fit(train)
    again = loaded.space.transform(train[:20])
    assert torch.allclose(
        again, loaded.images, rtol=0, atol=1e-5 * float(loaded.images.abs().max())
    )
    # learned labels are read as their argmax, and the report says so
    learned = one_hot + np.random.default_rng(0).normal(0, 0.05, one_hot.shape).astype(np.float32)
    repo.write_kip(tmp_path / "learned.npz", nhwc, learned)
    relabelled = read_distilled(tmp_path / "learned.npz", format="kip")
    assert torch.equal(relabelled.labels, torch.from_numpy(learned.argmax(1)))
    assert [a["what"] for a in relabelled.assumed] == ["labels", "pixel space"]


@pytest.mark.parametrize("writer", [repo.write_sre2l, repo.write_rded])
def test_image_folders_in_both_naming_schemes(tmp_path, writer):
    from PIL import Image

    pixels, labels = _cifar_like(30, seed=4)
    folder = writer(tmp_path / "set", pixels.permute(0, 2, 3, 1).numpy(), labels.numpy())
    assert detect_format(folder) == "image-folder"
    loaded = read_distilled(folder, dataset="cifar10")
    assert loaded.in_pixels
    assert loaded.space.statistics == "cifar10"
    assert torch.equal(loaded.labels, labels.sort(stable=True).values)
    # each image is the file Pillow decodes, divided by 255, in the order class, id
    files = sorted(folder.rglob("*.jpg"))
    expected = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
    assert torch.equal(loaded.images, torch.from_numpy(expected).permute(0, 3, 1, 2) / 255)
    assert "labels" in [a["what"] for a in loaded.assumed]


def test_grey_image_folder_has_one_channel(tmp_path):
    pixels = np.random.default_rng(0).random((6, 8, 8, 1))
    folder = repo.write_sre2l(tmp_path / "grey", pixels, np.array([0, 0, 1, 1, 2, 2]))
    loaded = read_distilled(folder)
    assert tuple(loaded.images.shape) == (6, 1, 8, 8)
    assert loaded.space.statistics == "data"  # no dataset named: the real data's statistics


def test_distcal_and_plain_files(tmp_path):
    images, labels = _cifar_like(20)
    distilled = DistilledSet(
        images=images, labels=labels, mean=torch.full((3,), 0.4), std=torch.full((3,), 0.2),
        learning_rate=0.02, config={"method": "dm"},
    )  # fmt: skip
    path = distilled.save(tmp_path / "set.safetensors")
    assert detect_format(path) == "distcal"
    loaded = read_distilled(path)
    assert loaded.space.statistics == "file"
    assert loaded.learning_rate == 0.02
    assert loaded.assumed == []
    assert loaded.distilled.config == {"method": "dm"}
    torch.save({"images": images, "labels": labels}, tmp_path / "plain.pt")
    np.savez(tmp_path / "plain.npz", images=images.numpy(), labels=labels.numpy())
    for name in ("plain.pt", "plain.npz"):
        assert detect_format(tmp_path / name) == "plain"
        plain = read_distilled(tmp_path / name)
        assert torch.equal(plain.images, images)
        assert torch.equal(plain.labels, labels)
        assert plain.space.statistics == "data"


# ------------------------------------------------------------------------------------------
# Bad files: clear errors naming the file and what is wrong
# ------------------------------------------------------------------------------------------


def test_wrong_image_shape(tmp_path):
    repo.write_mtt(tmp_path / "s", torch.rand(20, 32, 32), repo.grouped_labels(10, 2))
    with pytest.raises(
        ValueError, match=r"images_best.pt must hold images of shape .*\(20, 32, 32\)"
    ):
        read_distilled(tmp_path / "s")


def test_labels_that_do_not_match_the_image_count(tmp_path):
    repo.write_mtt(tmp_path / "s", torch.rand(20, 3, 8, 8), repo.grouped_labels(10, 1))
    with pytest.raises(ValueError, match=r"labels_best.pt holds 10 labels for the 20 images"):
        read_distilled(tmp_path / "s")


def test_nan_images(tmp_path):
    images = torch.rand(4, 3, 8, 8)
    images[1, 0, 2, 2] = float("nan")
    repo.write_dc(tmp_path / "res.pt", [(images, torch.tensor([0, 0, 1, 1]))])
    with pytest.raises(
        ValueError, match=r"res.pt data\[0\]\[0\] has NaN or infinite values \(1 of"
    ):
        read_distilled(tmp_path / "res.pt")


def test_a_zca_set_without_real_data(tmp_path):
    repo.write_kip(
        tmp_path / "k.npz", np.zeros((2, 4, 4, 3), np.float32), np.eye(2, dtype=np.float32)
    )
    loaded = read_distilled(tmp_path / "k.npz")
    with pytest.raises(ValueError, match=r"k.npz is in ZCA space \(kip.*Pass the real training"):
        loaded.space.transform(torch.rand(2, 3, 4, 4))


def test_pickled_code_is_never_run(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (marker.write_text, ("pwned",))

    path = tmp_path / "res_DM_x.pt"
    path.write_bytes(pickle.dumps({"data": Payload()}, protocol=2))
    with pytest.raises(
        ValueError, match=r"without executing code \(torch.load\(weights_only=True\)\)"
    ):
        read_distilled(path, format="dc")
    assert not marker.exists()


def test_undetectable_files_list_the_formats(tmp_path):
    np.savez(tmp_path / "x.npz", images=np.zeros((2, 3, 8, 3), np.float32), labels=np.zeros(2))
    with pytest.raises(
        ValueError, match=r"Cannot tell the format .*--format\) one of .*'kip' \(KIP"
    ):
        read_distilled(tmp_path / "x.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="Cannot tell the format"):
        detect_format(tmp_path / "empty")
    with pytest.raises(ValueError, match="Unknown format 'nope'"):
        read_distilled(tmp_path / "x.npz", format="nope")


def test_conflicting_space_arguments(tmp_path):
    folder = repo.write_mtt(tmp_path / "s", torch.rand(4, 3, 8, 8), torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="exclude each other"):
        read_distilled(folder, zca="kornia", statistics="cifar10")
    with pytest.raises(ValueError, match="statistics must give 3 means"):
        read_distilled(folder, statistics=([0.5], [0.2]))


def test_pixel_space_arguments():
    with pytest.raises(ValueError, match="kind must be"):
        PixelSpace("zscore")
    assert "ZCA space" in PixelSpace("zca", zca="kip").describe()


# ------------------------------------------------------------------------------------------
# Writing: every format reads back to the same tensors
# ------------------------------------------------------------------------------------------

_TARGETS = {
    "mtt": ("mtt", {"statistics": "file"}),
    "datm": ("datm", {"zca": "none"}),
    "dc": ("res_DM_x_ConvNet_2ipc.pt", {}),
    "kip": ("kip.npz", {"zca": "none"}),
    "plain": ("plain.npz", {}),
    "distcal": ("set.safetensors", {}),
}


@pytest.mark.parametrize("format", sorted(_TARGETS))
def test_export_reads_back_the_same_set(tmp_path, format):
    images, labels = _cifar_like(20)
    mean, std = torch.tensor([0.41, 0.42, 0.43]), torch.tensor([0.21, 0.22, 0.23])
    distilled = DistilledSet(
        images=(images - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1), labels=labels, mean=mean,
        std=std, learning_rate=0.0173,
    )  # fmt: skip
    name, options = _TARGETS[format]
    if options.get("statistics") == "file":
        options = {"statistics": (mean, std)}
    elif format in ("datm", "dc", "kip"):
        options = {**options, "statistics": (mean, std)}
    path = export_distilled(distilled, tmp_path / name, format=format)
    assert detect_format(path) == format
    loaded = read_distilled(path, format=format, **options)
    assert torch.equal(loaded.images, distilled.images)
    assert torch.equal(loaded.labels, labels)
    real = torch.rand(3, 3, 32, 32)
    assert torch.equal(loaded.space.transform(real), distilled.normalize(real))
    if format in ("datm", "plain", "distcal"):
        assert loaded.learning_rate == 0.0173


def test_export_to_an_image_folder_is_exact_on_the_8_bit_grid(tmp_path):
    pixels, labels = _cifar_like(20)
    mean, std = torch.tensor([0.5, 0.5, 0.5]), torch.tensor([0.25, 0.25, 0.25])
    distilled = DistilledSet(images=(pixels - 0.5) / 0.25, labels=labels, mean=mean, std=std)
    for scheme in ("sre2l", "rded"):
        folder = export_distilled(
            distilled, tmp_path / scheme, format="image-folder", scheme=scheme
        )
        loaded = read_distilled(folder, statistics=(mean, std))
        order = torch.argsort(labels, stable=True)
        assert torch.equal(loaded.images, pixels[order])
        assert torch.equal(loaded.space.transform(loaded.images), distilled.images[order])


def test_export_warns_of_what_8_bit_pixels_lose(tmp_path):
    from distcal.exceptions import DistcalWarning

    distilled = DistilledSet(
        images=torch.randn(4, 1, 8, 8) * 3, labels=torch.tensor([0, 0, 1, 1]),
        mean=torch.tensor([0.5]), std=torch.tensor([0.25]),
    )  # fmt: skip
    with pytest.warns(DistcalWarning, match=r"clipped, \d+ are not multiples of 1/255"):
        export_distilled(distilled, tmp_path / "f", format="image-folder")


def test_export_refuses_what_a_format_cannot_hold(tmp_path):
    images, _ = _cifar_like(4)
    soft = read_distilled(
        repo.write_datm(tmp_path / "d", images, torch.randn(4, 10), 0.01), zca="none",
        statistics="cifar10",
    )  # fmt: skip
    for format in ("mtt", "dc", "kip", "image-folder", "distcal"):
        with pytest.raises(ValueError, match="soft labels"):
            export_distilled(soft, tmp_path / "x", format=format)
    assert set(FORMATS) == {"mtt", "datm", "dc", "kip", "image-folder", "distcal", "plain"}
