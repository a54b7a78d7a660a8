"""ZCA whitening as kornia (MTT, DATM, DD-Ranking) and KIP define it, against numpy oracles."""

import numpy as np
import pytest
import torch

from distcal.distill import ZCAWhitening


def _images(n=300, shape=(3, 4, 4), seed=0):
    rng = np.random.default_rng(seed)
    # correlated pixels, as in images: a shared per-image offset plus noise
    return (rng.random((n, 1, 1, 1)) * 0.5 + rng.random((n, *shape)) * 0.5).astype(np.float32)


def _kornia_oracle(train, x, eps=0.1):
    """kornia.enhance.zca_mean + linear_transform (unbiased covariance, SVD, eps on S)."""
    flat = train.reshape(len(train), -1).astype(np.float64)
    mean = flat.mean(0)
    u, s, _ = np.linalg.svd((flat - mean).T @ (flat - mean) / (len(flat) - 1))
    return ((x.reshape(len(x), -1) - mean) @ (u @ np.diag((s + eps) ** -0.5) @ u.T)).reshape(
        x.shape
    )


def _kip_oracle(train, x, reg=0.1):
    """neural-tangents KIP _get_whitening_transform(layer_norm=True, zca_reg=0.1)."""

    def layer_norm(a):
        a = a.reshape(len(a), -1).astype(np.float64)
        a = a - a.mean(1, keepdims=True)
        return a / np.linalg.norm(a, axis=1, keepdims=True)

    flat = layer_norm(train)
    n, d = flat.shape
    cov = flat.T @ flat / n
    u, s, _ = np.linalg.svd(cov + reg * np.trace(cov) / d * np.eye(d))
    scale = s**-0.5
    if n < d:
        scale[n:] = 1.0  # rank control
    return (layer_norm(x) @ np.einsum("ij,j,kj->ik", u, scale, u)).reshape(x.shape)


@pytest.mark.parametrize(("method", "oracle"), [("kornia", _kornia_oracle), ("kip", _kip_oracle)])
@pytest.mark.parametrize("n", [300, 20])  # more images than features, and fewer (rank control)
def test_matches_the_repositories_definition(method, oracle, n):
    train, test = _images(n), _images(7, seed=1)
    zca = ZCAWhitening(method).fit(train)
    expected = oracle(train, test)
    # float64 computation, float32 result: agreement to float32 rounding of the output
    assert np.allclose(zca.transform(test), expected, rtol=0, atol=4e-7 * np.abs(expected).max())


@pytest.mark.parametrize("method", ["kornia", "kip"])
def test_a_refit_on_the_same_data_reproduces_the_transform(method):
    train = _images()
    first = ZCAWhitening(method).fit(train)
    again = ZCAWhitening(method).fit(train)
    assert torch.equal(first.whitening_, again.whitening_)
    assert np.array_equal(first.transform(train), again.transform(train))
    # the same images in another order: the covariance sums in another order, nothing else
    shuffled = ZCAWhitening(method).fit(train[np.random.default_rng(0).permutation(len(train))])
    white = first.transform(train)
    assert np.allclose(shuffled.transform(train), white, rtol=0, atol=1e-6 * np.abs(white).max())


def test_inverse_and_whiteness():
    train = _images(2000, shape=(2, 3, 3))
    zca = ZCAWhitening(eps=1e-6).fit(train)
    white = zca.transform(train).reshape(len(train), -1).astype(np.float64)
    # with a tiny eps, whitened training data have an identity covariance
    assert np.allclose(np.cov(white.T), np.eye(white.shape[1]), atol=1e-3)
    back = ZCAWhitening().fit(train)
    assert np.allclose(back.inverse_transform(back.transform(train)), train, atol=2e-6)


def test_kip_inverse_gives_the_layer_normed_image():
    train = _images(100)
    zca = ZCAWhitening("kip").fit(train)
    back = zca.inverse_transform(zca.transform(train[:3])).reshape(3, -1)
    centred = train[:3].reshape(3, -1) - train[:3].reshape(3, -1).mean(1, keepdims=True)
    assert np.allclose(back, centred / np.linalg.norm(centred, axis=1, keepdims=True), atol=1e-6)


def test_tensors_in_tensors_out_and_errors():
    train = torch.from_numpy(_images(50))
    zca = ZCAWhitening().fit(train)
    out = zca.transform(train[:2])
    assert isinstance(out, torch.Tensor)
    assert out.dtype == torch.float32
    assert zca.mean_.dtype == torch.float64
    with pytest.raises(ValueError, match=r"fitted on images of shape \(3, 4, 4\)"):
        zca.transform(torch.rand(2, 3, 5, 5))
    with pytest.raises(ValueError, match="at least 2 images"):
        ZCAWhitening().fit(train[:1])
    with pytest.raises(ValueError, match="'eps' parameter of ZCAWhitening"):
        ZCAWhitening(eps=0).fit(train)
    with pytest.raises(ValueError, match="an image is constant"):
        ZCAWhitening("kip").fit(torch.ones(3, 1, 2, 2))
