"""AvgPool2x2 gives nn.AvgPool2d(2)'s bits in every direction torch differentiates it."""

import pytest
import torch
from torch import nn

from distcal.distill import build_network
from distcal.distill._pooling import AvgPool2x2, _fast_path


def _bits(t):
    """The tensor's bit patterns: unlike torch.equal, they tell -0.0 from +0.0."""
    t = t.detach().contiguous()
    return t.view(torch.int64 if t.dtype == torch.float64 else torch.int32)


def _awkward(shape, generator, dtype=torch.float32):
    """Random values with many +0.0 and -0.0, the case where a sum's order shows in its sign."""
    x = torch.randn(shape, generator=generator, dtype=dtype) * 10 ** torch.randint(
        -3, 4, shape, generator=generator
    ).to(dtype)
    x[torch.rand(shape, generator=generator) < 0.2] = 0.0
    x[torch.rand(shape, generator=generator) < 0.2] = -0.0
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(5, 3, 8, 8), (2, 4, 32, 32), (1, 1, 2, 2), (3, 2, 6, 10)])
def test_forward_and_gradients_have_torchs_bits(shape, dtype):
    generator = torch.Generator().manual_seed(sum(shape))
    ours, reference = AvgPool2x2(), nn.AvgPool2d(2)
    for _ in range(3):
        x = _awkward(shape, generator, dtype)
        assert _fast_path(x)
        a = x.clone().requires_grad_()
        b = x.clone().requires_grad_()
        out_a, out_b = ours(a), reference(b)
        assert torch.equal(_bits(out_a), _bits(out_b))
        grad_out = _awkward(tuple(out_b.shape), generator, dtype)
        (grad_a,) = torch.autograd.grad(out_a, a, grad_out, create_graph=True)
        (grad_b,) = torch.autograd.grad(out_b, b, grad_out, create_graph=True)
        assert torch.equal(_bits(grad_a), _bits(grad_b))
        # Gradient matching (DC, DSA) differentiates through a gradient: the second derivative
        # with respect to the output gradient is pooling again.
        probe = _awkward(shape, generator, dtype)
        gg_out = grad_out.clone().requires_grad_()
        gg_ref = grad_out.clone().requires_grad_()
        (second_a,) = torch.autograd.grad(
            torch.autograd.grad(ours(a), a, gg_out, create_graph=True)[0], gg_out, probe
        )
        (second_b,) = torch.autograd.grad(
            torch.autograd.grad(reference(b), b, gg_ref, create_graph=True)[0], gg_ref, probe
        )
        assert torch.equal(_bits(second_a), _bits(second_b))


def test_other_inputs_take_torchs_own_kernel():
    x = torch.randn(2, 3, 8, 8)
    assert not _fast_path(x[..., :7, :7])
    assert not _fast_path(x.to(memory_format=torch.channels_last))
    assert not _fast_path(x.half())
    assert not _fast_path(x[0])
    odd = torch.randn(2, 3, 7, 7)
    assert torch.equal(AvgPool2x2()(odd), nn.AvgPool2d(2)(odd))
    channels_last = x.to(memory_format=torch.channels_last)
    assert torch.equal(AvgPool2x2()(channels_last), nn.AvgPool2d(2)(channels_last))


def test_vmapped_pooling_matches_per_item_pooling():
    """fit_students runs the ConvNet under torch.vmap; the pooling follows it there."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 2, 8, 8, generator=generator, requires_grad=True)
    pooled = torch.vmap(AvgPool2x2())(x)
    assert torch.equal(pooled, torch.stack([nn.AvgPool2d(2)(item) for item in x]))
    (grad,) = torch.autograd.grad(pooled.sum(), x)
    assert torch.equal(grad, torch.full_like(x, 0.25))


def test_the_convnet_keeps_its_structure_and_state_dict_keys():
    net = build_network("convnet", input_shape=(1, 8, 8), n_classes=3, depth=2, random_state=0)
    pools = [layer for layer in net.features if isinstance(layer, nn.AvgPool2d)]
    assert len(pools) == 2
    assert all(isinstance(p, AvgPool2x2) for p in pools)
    assert "AvgPool2d(kernel_size=2, stride=2, padding=0)" in repr(net)
    assert list(net.state_dict()) == [
        "features.0.weight",
        "features.0.bias",
        "features.1.weight",
        "features.1.bias",
        "features.4.weight",
        "features.4.bias",
        "features.5.weight",
        "features.5.bias",
        "classifier.weight",
        "classifier.bias",
    ]


def test_a_training_step_has_the_same_bits_as_with_torchs_pooling():
    """The ConvNet's loss gradient, weights and images, with either pooling layer."""
    generator = torch.Generator().manual_seed(1)
    images = _awkward((6, 1, 28, 28), generator).requires_grad_()
    labels = torch.randint(0, 10, (6,), generator=generator)
    grads = []
    for swap in (False, True):
        net = build_network(
            "convnet", input_shape=(1, 28, 28), n_classes=10, width=8, random_state=0
        )
        if swap:
            for index, layer in enumerate(net.features):
                if isinstance(layer, AvgPool2x2):
                    net.features[index] = nn.AvgPool2d(2)
        loss = nn.functional.cross_entropy(net(images), labels)
        grads.append(torch.autograd.grad(loss, [images, *net.parameters()]))
    for ours, reference in zip(*grads, strict=True):
        assert torch.equal(_bits(ours), _bits(reference))


def test_large_inputs_pooled_by_blocks_of_rows_give_the_same_bits(monkeypatch):
    """Above _UNCHUNKED_BYTES the rows are pooled a block at a time; the last block is short."""
    from distcal.distill import _pooling

    x = _awkward((5, 3, 8, 8), torch.Generator().manual_seed(3))
    whole = AvgPool2x2()(x)
    monkeypatch.setattr(_pooling, "_UNCHUNKED_BYTES", 0)
    monkeypatch.setattr(_pooling, "_CHUNK_BYTES", 2 * 3 * 8 * 8 * 4)  # two rows a block
    assert torch.equal(_bits(AvgPool2x2()(x)), _bits(whole))
    assert torch.equal(_bits(whole), _bits(nn.AvgPool2d(2)(x)))
    # ... and under torch.vmap, as fit_students runs the ConvNet
    stacked = torch.stack([x, -x])
    assert torch.equal(
        torch.vmap(AvgPool2x2())(stacked),
        nn.AvgPool2d(2)(stacked.flatten(0, 1)).unflatten(0, (2, 5)),
    )
