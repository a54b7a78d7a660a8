"""Distribution matching (DM): match the mean embeddings of real and synthetic images."""

from __future__ import annotations

import math
import numbers

import torch

from .._distributed import all_reduce
from .._modules import in_pieces
from .._params import Interval
from ._base import DistillationMethod, StepContext, register_method

__all__ = ["DistributionMatching"]


def _check_finite(loss: torch.Tensor, iteration: int) -> None:
    if not math.isfinite(float(loss.detach())):
        raise FloatingPointError(
            f"the distribution-matching loss became {float(loss.detach())} at iteration {iteration}"
        )


@register_method
class DistributionMatching(DistillationMethod):
    """Distribution matching (Zhao & Bilen, WACV 2023).

    Every iteration draws a freshly initialised network and, for every class, matches the mean
    embedding (the features before the classifier) of a batch of real images with that of the
    class's synthetic images: the loss is the sum over classes of the squared distance between
    the two means. With augmentation on, each synthetic image gets the same augmentation
    parameters as the real image in the same row of its class's batch (siamese augmentation).
    The MDT mask is applied to the batches it names after augmentation.

    All classes go through the network in one forward pass for the real and one for the
    synthetic images. With instance norm (the default) every image is normalised on its own, so
    this equals the per-class loop of the original code (:meth:`reference_step`, kept for tests
    and the throughput benchmark); with batch norm it would not, and the step falls back to the
    per-class loop.

    Parameters
    ----------
    options : dict or None, default=None
        Method options (the trainer's ``method_params``), merged over :attr:`defaults`:

        batch_real : int, default=256
            Real images per class per iteration, at least 1.

    References
    ----------
    .. [1] B. Zhao and H. Bilen, "Dataset Condensation with Distribution Matching", WACV 2023.
    """

    name = "dm"
    defaults = {"batch_real": 256}
    _parameter_constraints = {"batch_real": [Interval(numbers.Integral, 1, None, closed="left")]}
    default_lr_img = 1.0
    default_augment = True
    supports_distributed = True

    def step(self, ctx: StepContext) -> dict:
        """Run one iteration with all classes in one forward pass per batch kind.

        Parameters
        ----------
        ctx : StepContext
            The images to update, their optimizer, the real data and this iteration's generator.

        Returns
        -------
        dict
            ``{"loss": float}``, the summed squared distance of the class means.
        """
        network = self._network(ctx)
        if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in network.modules()):
            if ctx.world_size > 1:
                raise ValueError(
                    "Distributed DM needs a network that normalises every image on its own "
                    "(norm='instancenorm', 'layernorm' or 'none'); batch norm mixes classes."
                )
            return self._reference_step(ctx, network)
        real, real_labels = ctx.real.sample(self.options["batch_real"], ctx.generator)
        syn, syn_labels = ctx.images, ctx.labels
        if ctx.augment is not None:
            params = ctx.sample_augment(len(real), ctx.generator)
            # Synthetic image j of class c replays the parameters of real image j of class c.
            starts = torch.cumsum(torch.bincount(real_labels, minlength=ctx.n_classes), 0)
            starts = torch.cat([starts.new_zeros(1), starts[:-1]])
            rows = starts[syn_labels] + torch.arange(len(syn), device=syn.device) % ctx.ipc
            real = ctx.augment(real, params)
            syn = ctx.augment(syn, {k: v[rows.to(v.device)] for k, v in params.items()})
        real = ctx.mask(real, "real", ctx.generator)
        syn = ctx.mask(syn, "synthetic", ctx.generator)
        if ctx.world_size > 1:
            # Every process drew the same batches; each embeds the classes c with
            # c % world_size == rank. The loss is a sum over classes, so the gradients of the
            # shares add up to the gradient of the whole (summed in _update).
            mine_real = real_labels % ctx.world_size == ctx.rank
            mine_syn = syn_labels % ctx.world_size == ctx.rank
            real, real_labels = real[mine_real], real_labels[mine_real]
            syn, syn_labels = syn[mine_syn], syn_labels[mine_syn]
        with torch.no_grad():  # the real batch's embedding, in cache-sized pieces on a CPU
            real_mean = _class_means(in_pieces(network.embed, real), real_labels, ctx.n_classes)
        syn_mean = _class_means(network.embed(syn), syn_labels, ctx.n_classes)
        loss = ((real_mean - syn_mean) ** 2).sum()
        return self._update(ctx, loss)

    def reference_step(self, ctx: StepContext) -> dict:
        """Run the original algorithm, one class at a time (reference for tests and benchmarks).

        Parameters
        ----------
        ctx : StepContext
            As for :meth:`step`.

        Returns
        -------
        dict
            ``{"loss": float}``, as :meth:`step` (up to floating-point rounding).
        """
        return self._reference_step(ctx, self._network(ctx))

    def _reference_step(self, ctx: StepContext, network) -> dict:
        loss = ctx.images.new_zeros(())
        for c in range(ctx.n_classes):
            real = ctx.real.sample_class(c, self.options["batch_real"], ctx.generator)
            syn = ctx.images[c * ctx.ipc : (c + 1) * ctx.ipc]
            real, syn = ctx.siamese(real, syn)
            real = ctx.mask(real, "real", ctx.generator)
            syn = ctx.mask(syn, "synthetic", ctx.generator)
            with torch.no_grad():
                real_mean = network.embed(real).mean(dim=0)
            loss = loss + ((real_mean - network.embed(syn).mean(dim=0)) ** 2).sum()
        return self._update(ctx, loss)

    @staticmethod
    def _network(ctx: StepContext) -> torch.nn.Module:
        network = ctx.build_network(ctx.draw_seed())
        network.train()
        for parameter in network.parameters():
            parameter.requires_grad_(False)
        return network

    @staticmethod
    def _update(ctx: StepContext, loss: torch.Tensor) -> dict:
        ctx.optimizer.zero_grad(set_to_none=True)
        if loss.requires_grad:  # a process with no class to match has nothing to differentiate
            loss.backward()
        if ctx.world_size > 1:
            loss = all_reduce(loss.detach().to(torch.float64))
            grad = ctx.images.grad
            grad = torch.zeros_like(ctx.images) if grad is None else grad
            ctx.images.grad = all_reduce(grad.to(torch.float64)).to(ctx.images.dtype)
        _check_finite(loss, ctx.iteration)
        ctx.optimizer.step()
        return {"loss": float(loss.detach())}


def _class_means(features: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    sums = features.new_zeros((n_classes, features.shape[1])).index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=n_classes).clamp_min(1).to(features.dtype)
    return sums / counts[:, None]
