"""Gradient matching (DC) and gradient matching with siamese augmentation (DSA).

Every iteration draws a freshly initialised network and alternates, ``outer_loop`` times,
between one update of the synthetic images, which makes the gradient of the classification loss
on each class's synthetic images match the gradient on a batch of that class's real images, and
a few epochs of training the network on the synthetic images.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from .._params import Interval, Options
from ._base import DistillationMethod, StepContext, register_method

__all__ = ["GradientMatching", "GradientMatchingDSA"]

# (outer_loop, inner_loop) by images per class, from ``get_loops`` of the DC code [1].
_PUBLISHED_LOOPS = {1: (1, 1), 10: (10, 50), 20: (20, 25), 30: (30, 20), 40: (40, 15), 50: (50, 10)}
# Real images per class that set the running statistics of batch norm before matching (DC's
# ``BNSizePC``).
_BATCHNORM_IMAGES_PER_CLASS = 16
# Added to the product of norms in every cosine, as in DC's ``distance_wb``.
_COSINE_EPS = 1e-6


# ------------------------------------------------------------------------------------ distances
def _gradient_distance(
    gw_syn: Sequence[torch.Tensor], gw_real: Sequence[torch.Tensor], distance: str
) -> torch.Tensor:
    """Distance between the gradients of one class, one tensor per network parameter.

    This is the per-class form used by :meth:`GradientMatching.reference_step`.
    """
    if distance == "layerwise_cosine":
        total = gw_syn[0].new_zeros(())
        for gs, gr in zip(gw_syn, gw_real, strict=True):
            if gs.dim() < 2:
                # Biases and normalisation scales are left out, as in DC.
                continue
            gs, gr = gs.flatten(1), gr.flatten(1)
            cosine = (gs * gr).sum(-1) / (gs.norm(dim=-1) * gr.norm(dim=-1) + _COSINE_EPS)
            total = total + (1 - cosine).sum()
        return total
    gs = torch.cat([g.flatten() for g in gw_syn])
    gr = torch.cat([g.flatten() for g in gw_real])
    if distance == "mse":
        return ((gs - gr) ** 2).sum()
    return 1 - (gs * gr).sum() / (gs.norm() * gr.norm() + _COSINE_EPS)


def _batched_gradient_distance(
    gw_syn: Sequence[torch.Tensor], gw_real: Sequence[torch.Tensor], distance: str
) -> torch.Tensor:
    """:func:`_gradient_distance` summed over classes; each tensor has a leading class axis."""
    if distance == "layerwise_cosine":
        total = gw_syn[0].new_zeros(())
        for gs, gr in zip(gw_syn, gw_real, strict=True):
            if gs.dim() < 3:
                continue
            gs, gr = gs.flatten(2), gr.flatten(2)
            cosine = (gs * gr).sum(-1) / (gs.norm(dim=-1) * gr.norm(dim=-1) + _COSINE_EPS)
            total = total + (1 - cosine).sum()
        return total
    gs = torch.cat([g.flatten(1) for g in gw_syn], dim=1)
    gr = torch.cat([g.flatten(1) for g in gw_real], dim=1)
    if distance == "mse":
        return ((gs - gr) ** 2).sum()
    cosine = (gs * gr).sum(-1) / (gs.norm(dim=-1) * gr.norm(dim=-1) + _COSINE_EPS)
    return (1 - cosine).sum()


# ------------------------------------------------------------------------------------ the method
@register_method
class GradientMatching(DistillationMethod):
    """Dataset condensation by gradient matching (DC, Zhao, Mopuri & Bilen, ICLR 2021).

    One iteration (one call of :meth:`step`) builds a freshly initialised network, in training
    mode, with its own SGD optimizer, and repeats ``outer_loop`` times:

    1. for every class ``c``, draw ``batch_real`` real images of ``c`` and take the ``ipc``
       synthetic images of ``c`` (rows ``c * ipc`` to ``(c + 1) * ipc`` of the class-major
       ``ctx.images``); augment both with the same parameters (``ctx.siamese``) when
       augmentation is on; pass each through the MDT mask (``ctx.mask``); compute the gradient
       of the cross-entropy loss with respect to the network's parameters on each batch;
    2. sum the distances between the real and synthetic gradients over the classes and take one
       step of the image optimizer ``ctx.optimizer`` on that sum;
    3. unless this was the last outer step, train the network for ``inner_loop`` epochs on the
       (updated, detached) synthetic images, each image augmented on its own when augmentation
       is on. The MDT mask does not apply here: this training is not part of the objective.

    When the network has batch-norm layers, each outer step first sets their running statistics
    with one forward pass of ``16`` unaugmented real images per class, then freezes them (evaluation
    mode) for the matching, as DC does; the network trains in training mode.

    Parameters
    ----------
    options : dict or None, default=None
        Method options (the trainer's ``method_params``), merged over :attr:`defaults`:

        outer_loop : int or None, default=None
            Image updates per iteration (each on a fresh draw of real batches). None takes the
            value DC published for this ``ipc`` (see :meth:`published_schedule`).
        inner_loop : int or None, default=None
            Epochs over the synthetic set (``n_classes * ipc`` images) that train the network
            between two image updates; an epoch is ``ceil(n_classes * ipc / batch_train)``
            optimizer steps on shuffled minibatches, so with ``n_classes * ipc <= batch_train``
            it is one step. None takes the published value for this ``ipc``.
        lr_net : float, default=0.01
            Learning rate of the network's SGD optimizer in the inner loop.
        momentum_net : float, default=0.0
            Momentum of that optimizer. DC's code uses plain SGD for the network (momentum 0.5 is
            the image optimizer's, set by the trainer's ``momentum_img``).
        batch_real : int, default=256
            Real images per class (images, not batches) in each outer step; a class with fewer
            images contributes all of them.
        batch_train : int, default=256
            Synthetic images per minibatch of the inner loop.
        distance : {"layerwise_cosine", "mse", "cosine"}, default="layerwise_cosine"
            How two gradients are compared, for each class:

            - ``"layerwise_cosine"``: DC's distance ("ours" in its code). For every parameter with
              two or more dimensions, the gradient is reshaped to ``(output units, rest)`` and
              ``1 - cosine`` of each row is summed; one-dimensional parameters (biases, the scales
              and shifts of normalisation layers) are ignored, as in DC.
            - ``"mse"``: the sum (not the mean) of squared differences over all parameters.
            - ``"cosine"``: ``1 - cosine`` between the two gradients flattened into one vector.

            Every cosine adds ``1e-6`` to the product of norms in its denominator.
        vectorize : bool, default=True
            Compute the synthetic gradients of all classes in one vectorised call (see Notes);
            False runs :meth:`reference_step`, the per-class loop of the original code.

    See Also
    --------
    GradientMatchingDSA : The same method with siamese augmentation on by default.

    Notes
    -----
    The returned loss is the matching loss averaged over classes and outer steps, as DC
    reports it. Before each image update the loss is checked: a NaN or infinite value raises
    :class:`FloatingPointError` naming the iteration, and the images keep their last values.

    **Batching.** :meth:`step` and :meth:`reference_step` draw the same random numbers in the
    same order and compute the same quantities; they differ only in how the synthetic side is
    evaluated. The synthetic batches of all classes are stacked into one
    ``(n_classes, ipc, C, H, W)`` tensor and their per-class parameter gradients are computed
    with :func:`torch.func.vmap` over :func:`torch.func.grad`. vmap evaluates every class as if
    on its own, so this is exact whatever the network's normalisation: instance norm, layer norm,
    and batch norm (frozen as described above, or with batch statistics per class) give the same
    result as the loop. Only the real gradients stay a per-class loop: they are large batches
    whose cost is arithmetic, not overhead, and a vmap over classes (with grouped weight
    gradients) measured slower on a CPU, while one forward pass over all classes cannot give
    per-class gradients without one backward pass per class over the whole batch. The network
    must support :func:`torch.func.vmap` (the networks of :data:`~distcal.distill.NETWORKS` do);
    otherwise set ``vectorize=False``.

    The image update back-propagates only to the optimizer's parameters; DC's
    ``loss.backward()`` also fills the network's gradients, which its inner loop then discards.

    References
    ----------
    .. [1] B. Zhao, K. R. Mopuri and H. Bilen, "Dataset Condensation with Gradient Matching",
       ICLR 2021. Code: https://github.com/VICO-UoE/DatasetCondensation
    .. [2] B. Zhao and H. Bilen, "Dataset Condensation with Differentiable Siamese
       Augmentation", ICML 2021.

    Examples
    --------
    >>> from distcal.distill import GradientMatching
    >>> GradientMatching.published_schedule(10)
    (10, 50)
    >>> GradientMatching({"distance": "mse"}).options["lr_net"]
    0.01
    """

    name = "dc"
    defaults = {
        "outer_loop": None,
        "inner_loop": None,
        "lr_net": 0.01,
        "momentum_net": 0.0,
        "batch_real": 256,
        "batch_train": 256,
        "distance": "layerwise_cosine",
        "vectorize": True,
    }
    _parameter_constraints = {
        "outer_loop": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "inner_loop": [None, Interval(numbers.Integral, 0, None, closed="left")],
        "lr_net": [Interval(numbers.Real, 0, None, closed="neither")],
        "momentum_net": [Interval(numbers.Real, 0, 1, closed="left")],
        "batch_real": [Interval(numbers.Integral, 1, None, closed="left")],
        "batch_train": [Interval(numbers.Integral, 1, None, closed="left")],
        "distance": [Options("layerwise_cosine", "mse", "cosine")],
        "vectorize": ["boolean"],
    }
    default_lr_img = 0.1
    default_augment = False

    @staticmethod
    def published_schedule(ipc: int) -> tuple[int, int]:
        """Return DC's ``(outer_loop, inner_loop)`` for ``ipc`` images per class.

        Parameters
        ----------
        ipc : int
            Synthetic images per class; DC published values for 1, 10, 20, 30, 40 and 50.

        Returns
        -------
        outer_loop : int
            Image updates per iteration.
        inner_loop : int
            Epochs of network training on the synthetic set between two image updates.

        Raises
        ------
        ValueError
            For any other ``ipc``: then set both options explicitly.
        """
        if ipc not in _PUBLISHED_LOOPS:
            raise ValueError(
                f"DC published outer_loop and inner_loop for ipc in {sorted(_PUBLISHED_LOOPS)} "
                f"only; got ipc={ipc}. Set both in method_params, for example "
                "{'outer_loop': 10, 'inner_loop': 50} (the values for ipc=10)."
            )
        return _PUBLISHED_LOOPS[ipc]

    # --------------------------------------------------------------------------- the iteration
    def step(self, ctx: StepContext) -> dict:
        """Run one iteration, computing all classes' synthetic gradients in one vmap call.

        Parameters
        ----------
        ctx : StepContext
            The images to update, their optimizer, the real data and this iteration's generator.

        Returns
        -------
        dict
            ``{"loss": float}``, the matching loss averaged over classes and outer steps.

        Raises
        ------
        FloatingPointError
            If the matching loss is NaN or infinite; the images are left as they were before the
            offending outer step.
        """
        if not self.options["vectorize"]:
            return self.reference_step(ctx)
        return self._iterate(ctx, self._match_vectorized)

    def reference_step(self, ctx: StepContext) -> dict:
        """Run one iteration of the original algorithm, one class at a time.

        Same draws, same mathematics and same result (up to floating-point rounding) as
        :meth:`step`. It is the oracle of the tests and the baseline of the throughput benchmark.

        Parameters
        ----------
        ctx : StepContext
            As for :meth:`step`.

        Returns
        -------
        dict
            ``{"loss": float}``, the matching loss averaged over classes and outer steps.
        """
        return self._iterate(ctx, self._match_per_class)

    def _iterate(self, ctx: StepContext, match: Callable) -> dict:
        outer_loop, inner_loop = self._loops(ctx)
        network = ctx.build_network(ctx.draw_seed())
        network.train()
        network_optimizer = torch.optim.SGD(
            network.parameters(), lr=self.options["lr_net"], momentum=self.options["momentum_net"]
        )
        targets = [p for group in ctx.optimizer.param_groups for p in group["params"]]
        total = 0.0
        for outer in range(outer_loop):
            _freeze_batchnorm(network, ctx)
            loss = match(network, ctx)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"the gradient-matching loss became {value} at iteration {ctx.iteration} "
                    f"(outer step {outer} of {outer_loop}); the images were not updated with it"
                )
            ctx.optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:  # False only if a mask cut every synthetic image off.
                loss.backward(inputs=targets)
            ctx.optimizer.step()
            total += value
            if outer < outer_loop - 1:
                self._train_network(network, network_optimizer, ctx, inner_loop)
        return {"loss": total / (ctx.n_classes * outer_loop)}

    def _loops(self, ctx: StepContext) -> tuple[int, int]:
        outer_loop, inner_loop = self.options["outer_loop"], self.options["inner_loop"]
        if outer_loop is None or inner_loop is None:
            published = self.published_schedule(ctx.ipc)
            outer_loop = published[0] if outer_loop is None else outer_loop
            inner_loop = published[1] if inner_loop is None else inner_loop
        return outer_loop, inner_loop

    def _class_batches(self, ctx: StepContext, c: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Class ``c``'s real batch and synthetic images, augmented and masked."""
        real = ctx.real.sample_class(c, self.options["batch_real"], ctx.generator)
        syn = ctx.images[c * ctx.ipc : (c + 1) * ctx.ipc]
        real, syn = ctx.siamese(real, syn)
        real = ctx.mask(real, "real", ctx.generator)
        syn = ctx.mask(syn, "synthetic", ctx.generator)
        return real, syn

    def _match_per_class(self, network: nn.Module, ctx: StepContext) -> torch.Tensor:
        parameters = list(network.parameters())
        loss = ctx.images.new_zeros(())
        for c in range(ctx.n_classes):
            real, syn = self._class_batches(ctx, c)
            real_loss = F.cross_entropy(network(real), _full(len(real), c, real.device))
            gw_real = [g.detach() for g in torch.autograd.grad(real_loss, parameters)]
            syn_loss = F.cross_entropy(network(syn), _full(len(syn), c, syn.device))
            gw_syn = torch.autograd.grad(syn_loss, parameters, create_graph=True)
            loss = loss + _gradient_distance(gw_syn, gw_real, self.options["distance"])
        return loss

    def _match_vectorized(self, network: nn.Module, ctx: StepContext) -> torch.Tensor:
        parameters = list(network.parameters())
        gw_real, syns = [], []
        for c in range(ctx.n_classes):
            real, syn = self._class_batches(ctx, c)
            real_loss = F.cross_entropy(network(real), _full(len(real), c, real.device))
            gw_real.append(torch.autograd.grad(real_loss, parameters))
            syns.append(syn)
        gw_real = [torch.stack(per_class) for per_class in zip(*gw_real, strict=True)]

        # Detached copies: the image update needs no gradient with respect to the parameters.
        params = {name: p.detach() for name, p in network.named_parameters()}
        buffers = dict(network.named_buffers())

        def class_loss(params, x, y):
            return F.cross_entropy(functional_call(network, (params, buffers), (x,)), y)

        syn = torch.stack(syns)
        labels = torch.arange(ctx.n_classes, device=syn.device)[:, None].expand(-1, syn.shape[1])
        gw_syn = vmap(grad(class_loss), in_dims=(None, 0, 0))(params, syn, labels)
        gw_syn = [gw_syn[name] for name in params]
        return _batched_gradient_distance(gw_syn, gw_real, self.options["distance"])

    def _train_network(
        self,
        network: nn.Module,
        optimizer: torch.optim.Optimizer,
        ctx: StepContext,
        epochs: int,
    ) -> None:
        """Train ``network`` for ``epochs`` passes over the detached synthetic images."""
        network.train()
        images = ctx.images.detach()
        labels = torch.arange(ctx.n_classes, device=images.device).repeat_interleave(ctx.ipc)
        n, batch = len(images), self.options["batch_train"]
        for _ in range(epochs):
            order = torch.randperm(n, generator=ctx.generator, device=ctx.generator.device)
            order = order.to(images.device)
            for start in range(0, n, batch):
                rows = order[start : start + batch]
                x = images[rows]
                if ctx.augment is not None:
                    x = ctx.augment(x, ctx.sample_augment(len(x), ctx.generator))
                loss = F.cross_entropy(network(x), labels[rows])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()


@register_method
class GradientMatchingDSA(GradientMatching):
    """Gradient matching with differentiable siamese augmentation (DSA, Zhao & Bilen, ICML 2021).

    :class:`GradientMatching` with augmentation on by default (``augment="auto"`` of the
    trainer): in every outer step, the real batch and the synthetic images of a class are
    augmented with the same sampled parameters before their gradients are compared, and the
    network of the inner loop trains on augmented synthetic images. The options, their defaults
    and the image learning rate (0.1) are those of :class:`GradientMatching`.

    Parameters
    ----------
    options : dict or None, default=None
        Method options (the trainer's ``method_params``), as for :class:`GradientMatching`.

    References
    ----------
    .. [1] B. Zhao and H. Bilen, "Dataset Condensation with Differentiable Siamese
       Augmentation", ICML 2021. Code: https://github.com/VICO-UoE/DatasetCondensation
    """

    name = "dsa"
    default_augment = True


# ------------------------------------------------------------------------------------ helpers
def _full(n: int, value: int, device) -> torch.Tensor:
    return torch.full((n,), value, dtype=torch.long, device=device)


def _freeze_batchnorm(network: nn.Module, ctx: StepContext) -> None:
    """Set batch norm's running statistics from real images and freeze them, as DC does.

    A class's synthetic batch (as small as one image) gives unusable batch statistics, so the
    matching runs batch norm in evaluation mode on statistics from 16 real images per class.
    """
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    network.train()
    real, _ = ctx.real.sample(_BATCHNORM_IMAGES_PER_CLASS, ctx.generator)
    with torch.no_grad():
        network(real)
    for module in norms:
        module.eval()
