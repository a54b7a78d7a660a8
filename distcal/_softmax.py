"""The row-wise softmax used on every prediction path.

``torch.softmax(x, dim=1)`` on a CPU vectorises along the rows' length; with few classes (the
common case of calibration: K = 2..100) the rows are too short for that, and the fused kernel
is slower than its four elementwise steps (docs/benchmarks.md has the measurement).
:func:`softmax` takes those steps on a CPU for rows shorter than
``_FUSED_FROM_CLASSES``, and the fused kernel otherwise (long rows, and every accelerator, where
one kernel launch beats four). The two differ by rounding only (a few ulps).
"""

from __future__ import annotations

import torch

__all__ = ["softmax"]

# Row length from which torch's fused CPU kernel is at least as fast: the elementwise steps win
# at K = 2 and 10, the fused kernel at K = 100 and 1000 (1e3..1e5 rows, float32 and float64).
_FUSED_FROM_CLASSES = 64


def softmax(values: torch.Tensor) -> torch.Tensor:
    """Return ``softmax(values, dim=1)`` for a 2-D tensor, in its dtype and on its device.

    Entries of ``-inf`` get probability 0, as with ``torch.softmax``; each row needs at least
    one finite entry.
    """
    if values.device.type != "cpu" or values.shape[1] >= _FUSED_FROM_CLASSES:
        return torch.softmax(values, dim=1)
    shifted = values - values.amax(dim=1, keepdim=True)
    probabilities = shifted.exp_()
    probabilities /= probabilities.sum(dim=1, keepdim=True)
    return probabilities
