"""distcal's fitted maps as small ``nn.Module`` heads, run by ``calibrated_module`` after a network.

A calibrator whose map is a few tensor operations declares its head in its own file, by
overriding :meth:`BaseLogitCalibrator._torch_head` to return one of these modules (or its own,
defined beside it); the head holds the fitted parameters as buffers, scripts
(``torch.jit.script``) and exports (``torch.export.export``). ``forward`` returns calibrated
logits and ``proba`` calibrated probabilities. They were the bodies of an ``isinstance`` chain
in ``_calibrated_module.py``; the chain is gone, the modules are unchanged.
"""

from __future__ import annotations

import torch

__all__ = ["AffineHead", "EnsembleHead", "TemperatureHead"]


class TemperatureHead(torch.nn.Module):
    """``z / T``."""

    def __init__(self, temperature: float):
        super().__init__()
        self.register_buffer("temperature", torch.tensor(temperature, dtype=torch.float64))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z / self.temperature

    @torch.jit.export
    def proba(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.forward(z), dim=1)


class AffineHead(torch.nn.Module):
    """``W f(z) + b`` in float64, ``f`` the identity or ``log_softmax``; ``W`` diagonal or full."""

    def __init__(self, weight, bias, diagonal: bool, log_softmax: bool):
        super().__init__()
        self.register_buffer("weight", weight.detach().to(torch.float64).clone())
        self.register_buffer("bias", bias.detach().to(torch.float64).clone())
        self.diagonal = diagonal
        self.log_softmax = log_softmax

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        features = z.to(torch.float64)
        if self.log_softmax:
            features = torch.log_softmax(features, dim=1)
        if self.diagonal:
            out = features * self.weight + self.bias
        else:
            out = features @ self.weight.t() + self.bias
        return out.to(z.dtype)

    @torch.jit.export
    def proba(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.forward(z), dim=1)


class EnsembleHead(torch.nn.Module):
    """``w0 softmax(z / T) + w1 softmax(z) + w2 / K``, and its logarithm as logits."""

    def __init__(self, temperature: float, weights):
        super().__init__()
        self.register_buffer("temperature", torch.tensor(temperature, dtype=torch.float64))
        self.register_buffer("weights", weights.detach().to(torch.float64).clone())

    def proba_float64(self, z: torch.Tensor) -> torch.Tensor:
        z = z.to(torch.float64)
        mixture = torch.softmax(z / self.temperature, dim=1) * self.weights[0]
        mixture = mixture + torch.softmax(z, dim=1) * self.weights[1]
        return mixture + self.weights[2] / z.shape[1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.log(self.proba_float64(z).clamp_min(1e-300)).to(z.dtype)

    @torch.jit.export
    def proba(self, z: torch.Tensor) -> torch.Tensor:
        return self.proba_float64(z).to(z.dtype)
