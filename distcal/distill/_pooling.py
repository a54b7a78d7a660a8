"""2x2 average pooling that gives torch's bits in less time on a CPU.

torch's CPU kernel for ``avg_pool2d`` on a contiguous (NCHW) tensor visits one output element
at a time and adds its four inputs in a scalar loop; its backward first zeroes the whole input
gradient, then adds a quarter of each output gradient into it, one element at a time. In the
ConvNet these two took about 30% of a training step and 40% of a forward pass without
gradients (``python benchmarks/bench_layers.py``, docs/benchmarks.md).

:class:`AvgPool2x2` computes the same sums as four strided, vectorised tensor additions in
torch's order, ``(((0 + a) + b) + c) + d``, divided by 4, and its gradient as one broadcast
copy of ``0 + g / 4``: every element is the value torch's kernel computes, bit for bit,
signed zeros included (``tests/distill/test_pooling.py`` checks both directions and the
second derivative against ``nn.AvgPool2d``). Elsewhere (a GPU, half precision, odd sizes,
another memory layout) it is ``nn.AvgPool2d(2)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AvgPool2x2"]


#: Inputs above this many bytes are pooled a block of rows at a time, _CHUNK_BYTES each, so
#: that the four strided reads of a block find it in the cache (a 640-image Fashion-MNIST
#: batch's first activations are 84 MB). Smaller ones, as a 64-row piece of a pass without
#: gradients (8 MiB), are pooled in one go, which costs fewer calls.
_UNCHUNKED_BYTES = 8 << 20
_CHUNK_BYTES = 1 << 20


def _pool(x: torch.Tensor) -> torch.Tensor:
    n, c, h, w = x.shape
    blocks = x.view(n, c, h // 2, 2, w // 2, 2)
    row_bytes = c * h * w * x.element_size()
    if n * row_bytes <= _UNCHUNKED_BYTES:
        out = blocks[:, :, :, 0, :, 0] + blocks[:, :, :, 0, :, 1]
        out += blocks[:, :, :, 1, :, 0]
        out += blocks[:, :, :, 1, :, 1]
    else:
        out = x.new_empty(n, c, h // 2, w // 2)
        rows = max(1, _CHUNK_BYTES // row_bytes)
        for start in range(0, n, rows):
            block, total = blocks[start : start + rows], out[start : start + rows]
            # copy_ then +=, not add(out=), which torch.vmap (fit_students) cannot batch
            total.copy_(block[:, :, :, 0, :, 0])
            total += block[:, :, :, 0, :, 1]
            total += block[:, :, :, 1, :, 0]
            total += block[:, :, :, 1, :, 1]
    out /= 4
    # torch's kernel starts each sum and each stored output at +0.0: the sum of four -0.0 is
    # +0.0 there, and adding 0.0 gives the same here; every other value is unchanged by it.
    out += 0.0
    return out


def _spread(g: torch.Tensor) -> torch.Tensor:
    # Each output gradient, a quarter of it, to its four inputs: widen the rows, then repeat
    # them (two copies with unit-stride inner loops; one 2x2 broadcast copy is twice as slow).
    n, c, h, w = g.shape
    quarter = g / 4
    quarter += 0.0
    rows = quarter.unsqueeze(-1).expand(n, c, h, w, 2).reshape(n, c, h, 1, 2 * w)
    return rows.expand(n, c, h, 2, 2 * w).reshape(n, c, 2 * h, 2 * w)


class _Pool(torch.autograd.Function):
    """Pooling whose gradient is :class:`_Spread` (and whose second derivative is pooling)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x):
        return _pool(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return _Spread.apply(grad.contiguous())


class _Spread(torch.autograd.Function):
    """The gradient of :class:`_Pool`; its own gradient is pooling, as torch defines it."""

    generate_vmap_rule = True

    @staticmethod
    def forward(g):
        return _spread(g)

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def backward(ctx, grad):
        return _Pool.apply(grad.contiguous())


def _fast_path(x: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype in (torch.float32, torch.float64)
        and x.ndim == 4
        and x.shape[-1] % 2 == 0
        and x.shape[-2] % 2 == 0
        and x.is_contiguous()
    )


class AvgPool2x2(nn.AvgPool2d):
    """``nn.AvgPool2d(2)``, with a faster CPU path that gives the same bits.

    A subclass named like its parent, so that a network's structure, state dict and ``repr``
    (which expert buffers record, to refuse another architecture) are those of
    ``nn.AvgPool2d(2)``.
    """

    def __init__(self):
        super().__init__(2)

    def _get_name(self) -> str:
        return "AvgPool2d"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the 2x2 averages of ``x``.

        Parameters
        ----------
        x : Tensor of shape (n, C, H, W)
            Feature maps.

        Returns
        -------
        Tensor of shape (n, C, H // 2, W // 2)
            Their 2x2 averages.
        """
        if _fast_path(x):
            return _Pool.apply(x)
        return super().forward(x)
