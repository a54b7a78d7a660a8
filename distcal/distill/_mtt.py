"""Matching Training Trajectories (MTT), with an exact constant-memory backward pass.

A student network starts from an expert's parameters at epoch ``t``, takes ``syn_steps`` SGD
steps on the synthetic images with a learnable learning rate, and is pulled towards the
expert's parameters at epoch ``t + expert_epochs``. The images and the learning rate follow the
gradient of the normalised distance between the two parameter vectors.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .._params import Interval, Options
from ..exceptions import InvalidParameterError
from ._base import (
    DistillationMethod,
    MDTMask,
    RealData,
    SetupContext,
    StepContext,
    register_method,
)
from ._experts import (
    ExpertTrajectories,
    config_differences,
    data_fingerprint,
    parameter_layout,
    train_expert_trajectories,
)

__all__ = ["MTT"]

# The key of the experts' random stream: the trainer seeds its streams with [seed, 0] (initial
# images) and [seed, 1, iteration]; "MTT" in ASCII keeps the experts' draws apart from them.
_SETUP_STREAM = 0x4D5454
_POSITIVE_INT = Interval(numbers.Integral, 1, None, closed="left")


class _FlatNetwork:
    """Call a module with its parameters given as one flat vector (``torch.func``)."""

    def __init__(self, module: nn.Module):
        self.module = module
        layout = parameter_layout(module)
        self.names = [name for name, _ in layout]
        self.shapes = [shape for _, shape in layout]
        self.numels = [math.prod(shape) for shape in self.shapes]

    def __call__(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        pieces = flat.split(self.numels)
        params = {
            name: piece.view(shape)
            for name, piece, shape in zip(self.names, pieces, self.shapes, strict=True)
        }
        return functional_call(self.module, params, (x,))


@register_method
class MTT(DistillationMethod):
    """Dataset distillation by matching training trajectories (Cazenavette et al., 2022).

    Each iteration draws an expert ``k`` and a start epoch ``t``, starts a student at the
    expert's parameters ``θ*_t`` and takes ``N = syn_steps`` SGD steps on synthetic batches,
    ``θ_{i+1} = θ_i - lr · ∇ℓ(θ_i; X_i)``, with the learnable learning rate ``lr``. The loss is
    the normalised parameter distance

    ``L = ||θ_N - θ*_{t+M}||² / ||θ*_t - θ*_{t+M}||²``,  with ``M = expert_epochs``,

    and one step of ``ctx.optimizer`` moves the images and ``log(lr)`` down its gradient.

    Parameters
    ----------
    options : dict or None, default=None
        Method options (the trainer's ``method_params``), merged over :attr:`defaults`:

        n_experts : int, default=5
            Experts trained in :meth:`setup` (a loaded buffer must hold this many).
        expert_epochs : int, default=2
            ``M``, in **epochs of expert training**: the target is ``M`` epochs after the start.
        syn_steps : int, default=10
            ``N``, in **student SGD steps** on synthetic batches per iteration.
        max_start_epoch : int, default=10
            Start epochs are drawn uniformly from ``{0, ..., max_start_epoch - 1}`` (in epochs).
        lr_teacher : float, default=0.01
            Initial student learning rate (SGD step size per synthetic batch).
        lr_lr : float, default=1e-2
            Learning rate of ``log(lr)`` (the trainer gives it to the parameter group of
            :meth:`extra_parameters`). It is unitless: one unit of gradient changes the
            learning rate by a factor ``exp(-lr_lr)``; it is not MTT's ``lr_lr``, which steps
            the learning rate itself.
        batch_syn : int or None, default=None
            Synthetic images per student step; None uses all of them in every step. Smaller
            batches cycle through random permutations of the synthetic set.
        expert_train_epochs : int, default=15
            Epochs each expert trains for; at least ``max_start_epoch - 1 + expert_epochs``.
        expert_lr : float, default=0.01
            SGD learning rate of the experts (no momentum, no weight decay, as MTT).
        expert_batch_size : int, default=256
            Real images per expert SGD step.
        memory : {"unrolled", "constant"}, default="unrolled"
            ``"unrolled"`` back-propagates through the graph of all ``N`` steps (its memory
            grows linearly with ``N``). ``"constant"`` keeps one step's graph at a time and
            recomputes each step during the backward pass; it gives the same gradient (see
            Notes) for more compute (docs/benchmarks.md has the measured cost).
        buffer : str, os.PathLike or None, default=None
            Directory of a saved expert buffer. If it holds one, it is loaded and must match the
            network, the real images and the expert options above (a mismatch raises
            ``ValueError``); otherwise the experts are trained and saved there. None trains
            them in memory.

    Attributes
    ----------
    experts_ : ExpertTrajectories
        The expert buffer (after :meth:`setup`).
    network_ : torch.nn.Module
        The template network whose parameters the flat vectors fill (after :meth:`setup`).
    log_lr : Tensor of shape ()
        The learnable log learning rate (after :meth:`setup`); ``lr = exp(log_lr) > 0``.

    Notes
    -----
    **What ``setup`` uses.** Only its :class:`SetupContext`: the network builder, a generator
    on a stream of its own (seeded from the run's seed), the augmentation and the mask the
    iterations use, and the verbosity. :meth:`prepare` takes the same things as explicit
    arguments.

    **Optimizer.** :meth:`step` sets ``.grad`` of ``ctx.images`` and of :attr:`log_lr` and
    calls ``ctx.optimizer.step()``; the optimizer must hold both, ``log_lr`` through
    :meth:`parameter_groups` (learning rate ``lr_lr``, momentum 0.5), and is built after
    :meth:`setup`.

    **The MDT mask.** The synthetic batch of every student step is masked when ``apply_to``
    is ``"synthetic"`` or ``"both"`` (a fresh mask per step, drawn from ``ctx.generator``).
    MTT's objective has no real batch: the real images enter it only through the experts. With
    ``"real"`` or ``"both"`` the experts are therefore trained on masked real batches (a fresh
    mask per expert mini-batch, drawn when the buffer is built, since trajectories are
    precomputed); the buffer records the mask and a saved buffer must match it.

    **The constant-memory gradient is exact.** With ``g_i = ∇_θ ℓ(θ_i; X_i)``,
    ``H_i = ∇²_θ ℓ(θ_i; X_i)``, ``D = ||θ*_t - θ*_{t+M}||²`` and
    ``a_N = ∂L/∂θ_N = 2 (θ_N - θ*_{t+M}) / D``, reverse
    accumulation through ``θ_{i+1} = θ_i - lr g_i`` gives, for ``i = N-1, ..., 0``::

        ∂L/∂X_i  += -lr (∂g_i/∂X_i)ᵀ a_{i+1}
        ∂L/∂lr   += -g_i · a_{i+1}
        a_i       =  a_{i+1} - lr H_i a_{i+1}

    With ``memory="constant"`` the forward pass keeps only the detached ``θ_0 .. θ_{N-1}``
    (``N × n_params`` numbers, no activations) and the random state of each step's
    augmentation and mask; the backward pass rebuilds step ``i``'s graph (replaying the same
    random draws) and gets all three terms from one double-backward of ``a_{i+1} · g_i``. This
    is the gradient autograd computes through the unrolled graph, up to rounding (the tests
    agree to 1e-10 in float64), with the graph of one step alive at a time: the memory saved
    for backward does not depend on ``N``, and only the ``θ_i`` (``4 N n_params`` bytes in
    float32, about 1.4% of one step's graph for a width-128 ConvNet on 100 digits) grow
    with it.

    TESLA (Cui et al., 2023) computes, per step, ``-lr (∂g_i/∂X_i)ᵀ a_N``: it uses ``a_N``
    in place of ``a_{i+1}``, dropping the factors ``(I - lr H_j)`` of the later steps
    ``j > i``, and differentiates the learning rate with the ``g_i`` held fixed
    (``∂L/∂lr ≈ -Σ g_i · a_N``). That is exact only for ``N = 1`` (or a loss linear in
    ``θ``). On digits (float64) its image gradient is off by 3%, 8% and 18% (relative
    norm of the error) for ``N`` = 5, 10 and 20 with a width-8 ConvNet and ``lr = 0.01``, and
    by 24% and 44% for ``N`` = 5 and 20 with width 32 and ``lr = 0.03``; the error grows with
    ``N``, ``lr`` and the curvature. Its released code also multiplies a tuple by 2 (tesla
    issue #5), which halves its image gradient relative to its Eq. 6. The exact reverse pass
    costs the same as TESLA's (one rebuilt step graph and one double-backward per step), so
    distcal computes the exact one.

    References
    ----------
    .. [1] G. Cazenavette, T. Wang, A. Torralba, A. A. Efros and J.-Y. Zhu, "Dataset
       Distillation by Matching Training Trajectories", CVPR 2022.
    .. [2] J. Cui, R. Wang, S. Si and C.-J. Hsieh, "Scaling Up Dataset Distillation to
       ImageNet-1K with Constant Memory", ICML 2023.
    .. [3] A. Griewank and A. Walther, "Evaluating Derivatives: Principles and Techniques of
       Algorithmic Differentiation", 2nd ed., SIAM, 2008 (reverse mode with recomputation).

    Examples
    --------
    >>> import torch
    >>> from distcal.distill import build_network, load_digits
    >>> from distcal.distill import MTT, MDTMask, RealData, StepContext
    >>> data = load_digits()
    >>> real = RealData(data.images[:100], data.labels[:100], 10)
    >>> net = lambda seed: build_network("mlp", input_shape=(1, 8, 8), n_classes=10, width=8,
    ...                                  depth=1, random_state=seed)
    >>> mtt = MTT({"n_experts": 1, "expert_train_epochs": 3, "max_start_epoch": 1,
    ...            "syn_steps": 2, "memory": "constant"})
    >>> mtt = mtt.prepare(real, build_network=net, generator=torch.Generator().manual_seed(0))
    >>> images = data.images[:10].clone().requires_grad_(True)
    >>> optimizer = torch.optim.SGD([{"params": [images], "lr": 10.0},
    ...                              {"params": [mtt.log_lr], "lr": 1e-2}])
    >>> ctx = StepContext(images, data.labels[:10], optimizer, real,
    ...                   torch.Generator().manual_seed(1), None, None, MDTMask(), 0, net)
    >>> record = mtt.step(ctx)
    >>> sorted(record), record["loss"] > 0
    (['expert', 'loss', 'start_epoch', 'syn_lr'], True)
    """

    name = "mtt"
    defaults = {
        "n_experts": 5,
        "expert_epochs": 2,
        "syn_steps": 10,
        "max_start_epoch": 10,
        "lr_teacher": 0.01,
        "lr_lr": 1e-2,
        "batch_syn": None,
        "expert_train_epochs": 15,
        "expert_lr": 0.01,
        "expert_batch_size": 256,
        "memory": "unrolled",
        "buffer": None,
    }
    _parameter_constraints = {
        "n_experts": [_POSITIVE_INT],
        "expert_epochs": [_POSITIVE_INT],
        "syn_steps": [_POSITIVE_INT],
        "max_start_epoch": [_POSITIVE_INT],
        "lr_teacher": [Interval(numbers.Real, 0, None, closed="neither")],
        "lr_lr": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_syn": [_POSITIVE_INT, None],
        "expert_train_epochs": [_POSITIVE_INT],
        "expert_lr": [Interval(numbers.Real, 0, None, closed="neither")],
        "expert_batch_size": [_POSITIVE_INT],
        "memory": [Options("unrolled", "constant")],
        "buffer": [str, os.PathLike, None],
    }
    default_lr_img = 100.0
    default_augment = True

    def __init__(self, options: dict | None = None):
        super().__init__(options)
        self.log_lr: torch.Tensor | None = None

    @classmethod
    def _check_combination(cls, options: dict) -> None:
        last = options["max_start_epoch"] - 1 + options["expert_epochs"]
        if options["expert_train_epochs"] < last:
            raise InvalidParameterError(
                f"MTT's expert_train_epochs={options['expert_train_epochs']} is too short: a "
                f"start epoch up to max_start_epoch - 1 = {options['max_start_epoch'] - 1} plus "
                f"expert_epochs = {options['expert_epochs']} reaches epoch {last}. Raise "
                "expert_train_epochs or lower max_start_epoch."
            )

    # ------------------------------------------------------------------------------------
    # Setup
    # ------------------------------------------------------------------------------------

    def setup(self, real: RealData, context: SetupContext) -> None:
        """Train (or load) the expert buffer and create the learnable learning rate.

        Calls :meth:`prepare` with the context's network builder, augmentation, mask and
        verbosity, and a generator on a stream of its own (``context.generator(0x4D5454)``,
        "MTT" in ASCII), so that the experts' draws are independent of the iterations'.

        Parameters
        ----------
        real : RealData
            The real training images; the experts train on all of them.
        context : SetupContext
            What the trainer hands to every method once per fit.
        """
        self.prepare(
            real,
            build_network=context.build_network,
            generator=context.generator(_SETUP_STREAM),
            augment=context.augment,
            sample_augment=context.sample_augment,
            mask=context.mask,
            verbose=bool(context.verbose),
        )

    def prepare(
        self,
        real: RealData,
        *,
        build_network: Callable[[int], nn.Module],
        generator: torch.Generator,
        augment: Callable | None = None,
        sample_augment: Callable | None = None,
        mask: MDTMask | None = None,
        verbose: bool = False,
    ) -> MTT:
        """Train (or load) the expert buffer and create the learnable learning rate.

        Parameters
        ----------
        real : RealData
            The real training images; the experts train on all of them.
        build_network : callable
            ``build_network(seed: int) -> torch.nn.Module`` on the device of the real images;
            it is cast to their dtype.
        generator : torch.Generator
            Source of the experts' seeds, batch orders, augmentation and masks.
        augment, sample_augment : callable or None, default=None
            Siamese augmentation, as in :class:`StepContext`; applied to the experts' batches.
        mask : MDTMask or None, default=None
            Applied to the experts' batches when ``mask.apply_to`` is ``"real"`` or ``"both"``.
        verbose : bool, default=False
            Show a progress bar while training experts.

        Returns
        -------
        self : MTT
            The method, ready for :meth:`step`.
        """
        options = self.options
        dtype, device = real.images.dtype, real.images.device

        def build(seed: int) -> nn.Module:
            return build_network(seed).to(dtype=dtype)

        self.network_ = build(0)
        expert_augment = None
        if augment is not None:

            def expert_augment(x, g):
                return augment(x, sample_augment(len(x), g))

        expert_mask, mask_record = None, None
        if mask is not None and mask.ratio > 0 and mask.apply_to in ("real", "both"):

            def expert_mask(x, g):
                return mask(x, "real", g)

            mask_record = {"ratio": float(mask.ratio), "kind": mask.kind}
        wanted = {
            "epochs": options["expert_train_epochs"],
            "lr": float(options["expert_lr"]),
            "batch_size": options["expert_batch_size"],
            "momentum": 0.0,
            "weight_decay": 0.0,
            "augment": augment is not None,
            "mask": mask_record,
            "architecture": repr(self.network_),
            "data": data_fingerprint(real.images, real.labels),
        }
        path = None if options["buffer"] is None else Path(options["buffer"])
        if path is not None and (path / "trajectories.json").is_file():
            buffer = ExpertTrajectories.load(path)
            differences = config_differences(buffer.config, wanted)
            if buffer.n_experts != options["n_experts"]:
                differences.append(f"n_experts={buffer.n_experts} (wanted {options['n_experts']})")
            if buffer.layout != parameter_layout(self.network_):
                differences.append("its parameter names or shapes differ from the network's")
            if differences:
                raise ValueError(
                    f"The expert buffer at {str(path)!r} does not match this run: "
                    + "; ".join(differences)
                    + ". Point 'buffer' to another directory (or delete this one) to train new "
                    "experts, or set MTT's options to match the buffer."
                )
        else:
            buffer = train_expert_trajectories(
                real.images,
                real.labels,
                build_network=build,
                n_experts=options["n_experts"],
                epochs=options["expert_train_epochs"],
                lr=options["expert_lr"],
                batch_size=options["expert_batch_size"],
                generator=generator,
                augment=expert_augment,
                mask=expert_mask,
                verbose=verbose,
            )
            buffer.config["mask"] = mask_record
            if path is not None:
                buffer.save(path)
        self.experts_ = buffer
        self._flat = _FlatNetwork(self.network_)
        self.log_lr = torch.tensor(
            math.log(options["lr_teacher"]), dtype=dtype, device=device
        ).requires_grad_(True)
        return self

    def extra_parameters(self) -> dict[str, torch.Tensor]:
        """Return the learnable log learning rate (after :meth:`setup`).

        Returns
        -------
        dict of str to Tensor
            ``{"log_lr": tensor}``, a scalar leaf tensor with gradients.
        """
        self._check_prepared()
        return {"log_lr": self.log_lr}

    def parameter_groups(self) -> list[dict]:
        """Return the optimizer group of ``log_lr``: learning rate ``lr_lr``, momentum 0.5.

        Momentum 0.5 is MTT's for its learning-rate optimizer (and for its images).

        Returns
        -------
        list of dict
            One parameter group holding :attr:`log_lr`.
        """
        self._check_prepared()
        return [{"params": [self.log_lr], "lr": self.options["lr_lr"], "momentum": 0.5}]

    def learned_learning_rate(self) -> float:
        """Return the current student learning rate.

        Returns
        -------
        float
            ``exp(log_lr)``, the SGD step size of every student step.
        """
        self._check_prepared()
        return math.exp(float(self.log_lr.detach()))

    def _check_prepared(self) -> None:
        if self.log_lr is None:
            raise RuntimeError(
                "MTT has no expert buffer or learning rate yet: call setup(real, context) (or "
                "prepare) before extra_parameters() and step()."
            )

    # ------------------------------------------------------------------------------------
    # One iteration
    # ------------------------------------------------------------------------------------

    def step(self, ctx: StepContext) -> dict:
        """Run one trajectory-matching iteration and step ``ctx.optimizer``.

        Parameters
        ----------
        ctx : StepContext
            The images to update, their optimizer (holding :attr:`log_lr` too) and this
            iteration's generator.

        Returns
        -------
        dict
            ``loss`` (the normalised matching loss before the update, a float), ``syn_lr``
            (the learning rate the student used), ``expert`` and ``start_epoch`` (the epoch
            ``t`` the student started from).

        Raises
        ------
        FloatingPointError
            If the loss or a gradient is NaN or infinite; the images and learning rate are
            left as they were before this iteration.
        """
        self._check_prepared()
        if not any(
            p is self.log_lr for group in ctx.optimizer.param_groups for p in group["params"]
        ):
            raise RuntimeError(
                "ctx.optimizer does not hold MTT's learnable learning rate: add "
                "method.extra_parameters().values() to it as a parameter group with "
                "lr=options['lr_lr'], after calling setup()."
            )
        options = self.options
        generator = ctx.generator
        images = ctx.images
        expert = int(
            torch.randint(len(self.experts_), (1,), generator=generator, device=generator.device)
        )
        start_epoch = int(
            torch.randint(
                options["max_start_epoch"], (1,), generator=generator, device=generator.device
            )
        )
        trajectory = self.experts_[expert]
        start = trajectory[start_epoch].to(device=images.device, dtype=images.dtype)
        target = trajectory[start_epoch + options["expert_epochs"]].to(
            device=images.device, dtype=images.dtype
        )
        # The normaliser and the loss are reductions over all parameters: float64.
        scale = (start - target).to(torch.float64).square().sum()
        plan = self._plan(images.shape[0], ctx)
        lr = self.log_lr.exp()
        if options["memory"] == "unrolled":
            loss, image_grad, lr_grad = self._unrolled(ctx, plan, start, target, scale, lr)
        else:
            loss, image_grad, lr_grad = self._constant(ctx, plan, start, target, scale, lr)
        log_lr_grad = lr_grad * lr.detach()
        grads_finite = bool(torch.isfinite(image_grad).all() & torch.isfinite(log_lr_grad))
        if not grads_finite:
            raise FloatingPointError(
                f"MTT's gradient is NaN or infinite at iteration {ctx.iteration} (matching loss "
                f"{loss:.6g}, learned learning rate {self.learned_learning_rate():.6g}); the "
                "images were not updated. Lower lr_img, lr_lr or lr_teacher."
            )
        ctx.optimizer.zero_grad(set_to_none=True)
        images.grad = image_grad
        self.log_lr.grad = log_lr_grad
        ctx.optimizer.step()
        return {
            "loss": loss,
            "syn_lr": float(lr.detach()),
            "expert": expert,
            "start_epoch": start_epoch,
        }

    def _plan(self, n: int, ctx: StepContext) -> list[torch.Tensor | None]:
        """Draw the indices of the synthetic images of each student step (None: all of them)."""
        batch = self.options["batch_syn"]
        steps = self.options["syn_steps"]
        if batch is None or batch >= n:
            return [None] * steps
        generator = ctx.generator
        chunks: list[torch.Tensor] = []
        while len(chunks) < steps:
            order = torch.randperm(n, generator=generator, device=generator.device)
            chunks.extend(order.to(ctx.images.device).split(batch))
        return chunks[:steps]

    @staticmethod
    def _inputs(
        ctx: StepContext,
        index: torch.Tensor | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Select, augment (siamese) and mask a student step's batch; return it and its labels."""
        x = ctx.images if index is None else ctx.images[index]
        y = ctx.labels if index is None else ctx.labels[index]
        if ctx.augment is not None:
            context = (
                ctx if generator is ctx.generator else dataclasses.replace(ctx, generator=generator)
            )
            (x,) = context.siamese(x)
        return ctx.mask(x, "synthetic", generator), y

    def _check_loss(self, loss: float, ctx: StepContext) -> None:
        if not math.isfinite(loss):
            raise FloatingPointError(
                f"MTT's matching loss is {loss} at iteration {ctx.iteration} (learned learning "
                f"rate {self.learned_learning_rate():.6g}); the images were not updated. Lower "
                "lr_img, lr_lr or lr_teacher; a zero denominator means the expert did not move "
                "between the start and target epochs."
            )

    def _unrolled(self, ctx, plan, start, target, scale, lr):
        """Autograd through the graph of all student steps (memory linear in ``syn_steps``)."""
        theta = start.clone().requires_grad_(True)
        for index in plan:
            x, y = self._inputs(ctx, index, ctx.generator)
            inner = F.cross_entropy(self._flat(theta, x), y)
            (grad,) = torch.autograd.grad(inner, theta, create_graph=True)
            theta = theta - lr * grad
        loss = (theta - target).to(torch.float64).square().sum() / scale
        value = float(loss.detach())
        self._check_loss(value, ctx)
        image_grad, lr_grad = torch.autograd.grad(loss, [ctx.images, lr])
        return value, image_grad, lr_grad

    def _constant(self, ctx, plan, start, target, scale, lr):
        """Exact reverse accumulation, rebuilding one step's graph at a time (see Notes)."""
        step_lr = lr.detach()
        generator = ctx.generator
        thetas, states = [], []
        theta = start
        for index in plan:
            thetas.append(theta)
            states.append(generator.get_state())
            with torch.no_grad():
                x, y = self._inputs(ctx, index, generator)
            free = theta.detach().requires_grad_(True)
            inner = F.cross_entropy(self._flat(free, x), y)
            (grad,) = torch.autograd.grad(inner, free)
            theta = theta - step_lr * grad
        difference = theta - target
        value = float(difference.to(torch.float64).square().sum() / scale)
        self._check_loss(value, ctx)
        adjoint = (2 * difference / scale).to(theta.dtype)
        image_grad = torch.zeros_like(ctx.images)
        lr_grad = torch.zeros((), dtype=theta.dtype, device=theta.device)
        replay = torch.Generator(device=generator.device)
        for i in reversed(range(len(plan))):
            replay.set_state(states[i])
            x, y = self._inputs(ctx, plan[i], replay)
            free = thetas[i].detach().requires_grad_(True)
            inner = F.cross_entropy(self._flat(free, x), y)
            (grad,) = torch.autograd.grad(inner, free, create_graph=True)
            directional = torch.dot(adjoint, grad)
            hessian_adjoint, image_part = torch.autograd.grad(directional, [free, ctx.images])
            lr_grad -= directional.detach()
            image_grad -= step_lr * image_part
            adjoint = adjoint - step_lr * hessian_adjoint
        return value, image_grad, lr_grad
