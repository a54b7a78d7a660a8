"""MDTTrainer: dataset distillation with the Masked Distillation Training mask, as an estimator."""

from __future__ import annotations

import hashlib
import numbers
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from .._device import draw_seed, resolve_device
from .._distributed import agree_settings, all_reduce, check_distributed
from .._params import Interval, Options, validate_params
from .._validation import record_input_shape
from ..exceptions import InvalidParameterError
from ._artifact import DistilledSet, save_network
from ._augment import make_augment
from ._base import METHODS, MDTMask, RealData, SetupContext, StepContext, _seed_for
from ._callbacks import Callback, Checkpoint, FitState, ProgressBar
from ._data import channel_statistics, check_samples, normalize
from ._networks import NETWORKS, build_network

__all__ = ["MDTTrainer"]

# Parameters that change neither the data a run sees nor its arithmetic: a checkpoint written
# with other values of these can be resumed.
_RUNTIME_PARAMS = (
    "calibration_recipe",
    "callbacks",
    "verbose",
    "checkpoint",
    "checkpoint_every",
    "iterations",
    "distributed",
)


class MDTTrainer(BaseEstimator):
    """Distil a small synthetic training set, optionally with the MDT mask.

    Masked Distillation Training (MDT) is the training-side fix of Zhu et al. (ICCV 2023). Its
    text is not available to us; distcal implements it as a mask inside the distillation
    objective: the images entering the matching network are masked (each element with
    probability ``mask_ratio``), so the distilled set must carry information that survives
    masking. ``mask_apply_to`` says which batches are masked and ``mask_kind`` what a masked
    element becomes. ``mask_ratio=0`` is plain distillation. ``docs/distill.md`` documents
    this reading and ``docs/benchmarks.md`` compares its variants.

    Parameters
    ----------
    method : {"dm", "dc", "dsa", "mtt"}, default="dm"
        Distribution matching, gradient matching (without / with siamese augmentation), or
        matching training trajectories (see :data:`distcal.distill.METHODS`).
    ipc : int, default=10
        Synthetic images per class.
    mask_ratio : float, default=0.0
        MDT mask: probability in [0, 1) that an image element is masked in the objective.
    mask_apply_to : {"both", "synthetic", "real"}, default="both"
        Which batches of the objective are masked; ``"both"`` draws independent masks of the
        same ratio for the real and the synthetic batch.
    mask_kind : {"zero", "mean"}, default="zero"
        A masked element becomes 0 in normalised space, or its channel's mean over the batch.
    network : str, default="convnet"
        The matching network's architecture, a key of :data:`distcal.distill.NETWORKS`.
    width : int, default=128
        Channels (ConvNet) or hidden units (MLP).
    depth : int, default=3
        Convolution blocks (use 2 for 8x8 images) or hidden layers.
    norm : {"instancenorm", "batchnorm", "layernorm", "none"}, default="instancenorm"
        Normalisation of the ConvNet.
    iterations : int, default=1000
        Updates of the synthetic images (unit: iterations of the method, see each method).
    lr_img : float or None, default=None
        Learning rate of the synthetic images (SGD); None uses the method's published value
        (DM 1.0, DC/DSA 0.1, MTT see its options).
    momentum_img : float, default=0.5
        SGD momentum of the synthetic images.
    init : {"real", "noise"}, default="real"
        Start from random real images of each class, or from Gaussian noise.
    augment : str, default="auto"
        Differentiable siamese augmentation: ``"auto"`` uses each method's published choice
        (on for DM, DSA and MTT, off for DC) with DSA's full strategy; ``"dsa"`` turns it on;
        ``"none"`` off; any other value is a :class:`SiameseAugment` strategy such as
        ``"color_crop_cutout_scale_rotate"`` (DSA's choice for digits, where flips change the
        class).
    normalize : bool, default=True
        Standardise every channel of the real images with their mean and standard deviation;
        the synthetic images live in that space and the statistics are saved with them.
    method_params : dict or None, default=None
        Method-specific options (see the method's documentation); unknown keys are rejected.
    checkpoint : str, path or None, default=None
        File to checkpoint to. If it exists when ``fit`` starts and was written by the same
        configuration on the same data, the run resumes from it.
    checkpoint_every : int, default=100
        Iterations between checkpoints.
    device : str, torch.device or None, default=None
        Where to distil; None follows ``X`` (its device if a tensor, else the CPU).
    random_state : int, RandomState instance or None, default=None
        Seeds everything: initial images, networks, batches, augmentation and masks.
    callbacks : list of Callback or None, default=None
        Hooks called during ``fit`` (see :class:`distcal.distill.Callback`).
    verbose : bool, default=False
        Show a progress bar.
    distributed : bool, default=False
        Under ``torchrun``, with a process group initialised (gloo on CPUs, nccl on GPUs):
        split each iteration's work over the processes and sum the gradients of the synthetic
        images, so that every process ends with the synthetic set a single process would make
        (up to floating-point rounding). Every process passes the same ``X``, ``y`` and
        parameters; ``random_state`` comes from process 0; only process 0 writes checkpoints and
        shows a progress bar. Supported by DM (the classes are split over the processes).
    calibration_recipe : bool or dict, default=False
        At the end of ``fit``, compute the set's calibration recipe
        (:func:`~distcal.distill.fit_calibration_recipe`) and keep it in ``recipe_`` and in the
        saved set, so that students trained on it can be calibrated without real data. The
        validation images are a stratified split of ``X`` (the distiller's real data; never
        pass test data as ``X``). ``True`` uses the defaults; a dict may set ``n_validation``
        (validation images, default 5000 or all of ``X`` if fewer), ``copies`` (proxies per
        variation of :func:`~distcal.distill.default_proxies`, default 1), ``method``,
        ``n_masks`` and ``feature_ratio``. It does not change the distilled images.

    Attributes
    ----------
    images_ : Tensor of shape (n_classes * ipc, C, H, W)
        The distilled images (normalised space), on the CPU.
    labels_ : Tensor of shape (n_classes * ipc,)
        Their classes, class-major.
    learning_rate_ : float or None
        The learned student learning rate (MTT), else None.
    mean_, std_ : Tensor of shape (C,)
        The normalisation of the real images.
    history_ : list of dict
        Per iteration: ``iteration``, ``loss`` and ``seconds``.
    n_classes_ : int
        Number of classes.
    seed_ : int
        The seed drawn from ``random_state`` (a resumed run reuses the checkpoint's).
    n_iter_ : int
        Iterations run (fewer than ``iterations`` when a callback stopped the run).
    recipe_ : CalibrationRecipe or None
        The calibration recipe (``calibration_recipe``), else None.

    Examples
    --------
    >>> from distcal.distill import MDTTrainer, load_digits
    >>> data = load_digits()
    >>> trainer = MDTTrainer(ipc=2, width=8, depth=2, iterations=3, random_state=0,
    ...                      method_params={"batch_real": 16})
    >>> trainer.fit(data.images, data.labels).images_.shape
    torch.Size([20, 1, 8, 8])
    """

    _parameter_constraints = {
        "method": [str],
        "ipc": [Interval(numbers.Integral, 1, None, closed="left")],
        "mask_ratio": [Interval(numbers.Real, 0.0, 1.0, closed="left")],
        "mask_apply_to": [Options("both", "synthetic", "real")],
        "mask_kind": [Options("zero", "mean")],
        "network": [str],
        "width": [Interval(numbers.Integral, 1, None, closed="left")],
        "depth": [Interval(numbers.Integral, 1, None, closed="left")],
        "norm": [Options("instancenorm", "batchnorm", "layernorm", "none")],
        "iterations": [Interval(numbers.Integral, 0, None, closed="left")],
        "lr_img": [None, Interval(numbers.Real, 0, None, closed="neither")],
        "momentum_img": [Interval(numbers.Real, 0, 1, closed="left")],
        "init": [Options("real", "noise")],
        "augment": [str],
        "normalize": ["boolean"],
        "method_params": [None, dict],
        "checkpoint": [None, str, Path],
        "checkpoint_every": [Interval(numbers.Integral, 1, None, closed="left")],
        "device": [None, "device"],
        "random_state": ["random_state"],
        "callbacks": [None, list],
        "verbose": ["boolean"],
        "distributed": ["boolean"],
        "calibration_recipe": ["boolean", dict],
    }

    #: The keys a ``calibration_recipe`` dict may set.
    _RECIPE_OPTIONS = ("n_validation", "copies", "method", "n_masks", "feature_ratio")

    def __init__(
        self,
        method="dm",
        *,
        ipc=10,
        mask_ratio=0.0,
        mask_apply_to="both",
        mask_kind="zero",
        network="convnet",
        width=128,
        depth=3,
        norm="instancenorm",
        iterations=1000,
        lr_img=None,
        momentum_img=0.5,
        init="real",
        augment="auto",
        normalize=True,
        method_params=None,
        checkpoint=None,
        checkpoint_every=100,
        device=None,
        random_state=None,
        callbacks=None,
        verbose=False,
        distributed=False,
        calibration_recipe=False,
    ):
        self.method = method
        self.ipc = ipc
        self.mask_ratio = mask_ratio
        self.mask_apply_to = mask_apply_to
        self.mask_kind = mask_kind
        self.network = network
        self.width = width
        self.depth = depth
        self.norm = norm
        self.iterations = iterations
        self.lr_img = lr_img
        self.momentum_img = momentum_img
        self.init = init
        self.augment = augment
        self.normalize = normalize
        self.method_params = method_params
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self.device = device
        self.random_state = random_state
        self.callbacks = callbacks
        self.verbose = verbose
        self.distributed = distributed
        self.calibration_recipe = calibration_recipe

    # ----------------------------------------------------------------------------- validation
    def _validate(self):
        validate_params(self)
        if self.method not in METHODS:
            raise InvalidParameterError(
                f"Unknown method {self.method!r}; valid names are {sorted(METHODS)}."
            )
        if self.network not in NETWORKS:
            raise InvalidParameterError(
                f"Unknown network {self.network!r}; valid names are {sorted(NETWORKS)}."
            )
        method_cls = METHODS[self.method]
        method = method_cls(self.method_params)  # checks the options (shared validation)
        augmenter = make_augment(self.augment, default=method_cls.default_augment)
        if self.distributed:
            check_distributed("MDTTrainer")
            if not method_cls.supports_distributed:
                supported = sorted(name for name, m in METHODS.items() if m.supports_distributed)
                raise InvalidParameterError(
                    f"distributed=True is not supported by method {self.method!r}; methods that "
                    f"support it: {supported}."
                )
        if isinstance(self.calibration_recipe, dict):
            unknown = sorted(set(self.calibration_recipe) - set(self._RECIPE_OPTIONS))
            if unknown:
                raise InvalidParameterError(
                    f"The 'calibration_recipe' parameter of MDTTrainer may set "
                    f"{list(self._RECIPE_OPTIONS)}. Got the unknown keys {unknown} instead."
                )
        for callback in self.callbacks or []:
            if not isinstance(callback, Callback):
                raise InvalidParameterError(
                    f"callbacks must hold distcal.distill.Callback instances; got "
                    f"{type(callback).__name__}."
                )
        return method, augmenter

    def _network_spec(self, input_shape, n_classes) -> dict:
        spec = {
            "name": self.network,
            "input_shape": list(input_shape),
            "n_classes": n_classes,
            "width": self.width,
            "depth": self.depth,
        }
        if self.network == "convnet":
            spec["norm"] = self.norm
        return spec

    def _build_network(self, seed: int) -> torch.nn.Module:
        """Build a freshly initialised matching network on ``device_`` (used by the methods)."""
        spec = dict(self.network_spec_)
        name = spec.pop("name")
        spec["input_shape"] = tuple(spec["input_shape"])
        return build_network(name, random_state=seed, device=self.device_, **spec)

    def _config(self) -> dict:
        """Return the configuration saved with results and checked when resuming (JSON-safe)."""
        params = self.get_params(deep=False)
        params.pop("callbacks")
        params["random_state"] = self.seed_
        params["device"] = None if params["device"] is None else str(params["device"])
        params["checkpoint"] = None if params["checkpoint"] is None else str(params["checkpoint"])
        params["n_classes"] = self.n_classes_
        params["input_shape"] = list(self.network_spec_["input_shape"])
        return params

    # ----------------------------------------------------------------------------- fitting
    def fit(self, X, y):
        """Distil ``X`` into ``ipc`` synthetic images per class.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, channels, height, width)
            Real training images (values in [0, 1] when ``normalize=True``); with
            ``network="mlp"`` and ``augment="none"``, samples of any shape (n_samples, ...).
        y : array-like or Tensor of shape (n_samples,)
            Class indices; every class in ``[0, max(y)]`` must have at least ``ipc`` images.

        Returns
        -------
        self : MDTTrainer
            The fitted trainer.
        """
        method, augmenter = self._validate()
        images, labels = self._check_data(X, y)
        callbacks, rank, world_size = self._start_run(X, images, labels)
        real = self._real_data(images, labels, augmenter)
        context, synthetic, synthetic_labels, optimizer, lr_img = self._setup(
            method, augmenter, real
        )
        state = self._begin(callbacks, synthetic, optimizer, method, images, labels, rank)
        self._iterate(
            state,
            method,
            callbacks,
            context,
            real,
            synthetic,
            synthetic_labels,
            optimizer,
            lr_img,
            rank,
            world_size,
        )
        self._set_fitted(synthetic, synthetic_labels, method, state.history, images, labels)
        for callback in callbacks:
            callback.on_fit_end(self, state=state)
        return self

    def _check_data(self, X, y):
        """Check ``X`` and ``y``; set ``n_classes_``; return them as tensors."""
        if y is None:
            raise ValueError("MDTTrainer requires y to be passed, but the target y is None.")
        images, labels = check_samples(X, y)
        self.n_classes_ = int(labels.max()) + 1
        counts = torch.bincount(labels, minlength=self.n_classes_)
        if int(counts.min()) < max(1, self.ipc if self.init == "real" else 1):
            c = int(counts.argmin())
            raise ValueError(
                f"ipc={self.ipc} is larger than class {c}, which has {int(counts[c])} images in "
                f"X; every class in [0, {self.n_classes_ - 1}] needs at least ipc images (use "
                "init='noise' to distil classes with fewer)."
                if int(counts[c]) > 0
                else f"class {c} has no images in X: labels must cover [0, {self.n_classes_ - 1}]."
            )
        return images, labels

    def _start_run(self, X, images, labels):
        """Set ``device_`` and ``seed_`` (a resumed run's own); return the callbacks and rank."""
        record_input_shape(self, images)
        self.device_ = resolve_device(self.device, X)
        self.seed_ = draw_seed(self.random_state)
        callbacks = list(self.callbacks or [])
        if self.checkpoint is not None:
            callbacks.insert(0, Checkpoint(self.checkpoint, every=self.checkpoint_every))
        if self.random_state is None:
            # A resumed run continues its own seed, from before the method's setup draws.
            saved = next((c.saved_seed() for c in callbacks if isinstance(c, Checkpoint)), None)
            self.seed_ = self.seed_ if saved is None else saved
        rank, world_size = 0, 1
        if self.distributed:
            agree_settings(self._distributed_settings(), "MDTTrainer(distributed=True)")
            rank, world_size = self._agree(images, labels)
        return callbacks, rank, world_size

    def _real_data(self, images, labels, augmenter) -> RealData:
        """Set ``network_spec_``, ``mean_`` and ``std_``; return the normalised real data."""
        self.network_spec_ = self._network_spec(images.shape[1:], self.n_classes_)
        self._build_network(0)  # the architecture must accept these samples; fail early if not
        if augmenter is not None and len(self.network_spec_["input_shape"]) != 3:
            raise ValueError(
                f"augment={self.augment!r} needs images of shape (n, channels, height, width); "
                f"got samples of shape {tuple(self.network_spec_['input_shape'])}. Use "
                "augment='none'."
            )
        if self.normalize:
            self.mean_, self.std_ = (s.to(torch.float32) for s in channel_statistics(images))
        else:
            channels = images.shape[1]
            self.mean_, self.std_ = torch.zeros(channels), torch.ones(channels)
        real_images = normalize(images.to(torch.float32), self.mean_, self.std_)
        return RealData(real_images.to(self.device_), labels.to(self.device_), self.n_classes_)

    def _setup(self, method, augmenter, real: RealData):
        """Set up the method; draw the initial synthetic images and build their optimizer."""
        # Built once per fit; the method's setup and every iteration get the same objects.
        context = SetupContext(
            build_network=self._build_network,
            seed=self.seed_,
            device=self.device_,
            augment=None if augmenter is None else augmenter.apply,
            sample_augment=None if augmenter is None else augmenter.sample,
            mask=MDTMask(self.mask_ratio, self.mask_apply_to, self.mask_kind),
            verbose=bool(self.verbose),
        )
        method.setup(real, context)
        synthetic, synthetic_labels = self._initial_images(real)
        lr_img = self.lr_img if self.lr_img is not None else type(method).default_lr_img
        groups = [{"params": [synthetic], "lr": lr_img, "momentum": self.momentum_img}]
        groups += method.parameter_groups()
        optimizer = torch.optim.SGD(groups)
        return context, synthetic, synthetic_labels, optimizer, lr_img

    def _begin(self, callbacks, synthetic, optimizer, method, images, labels, rank) -> FitState:
        """Start the callbacks (a checkpoint resumes here); return the run's state."""
        state = FitState(
            images=synthetic,
            optimizer=optimizer,
            method=method,
            seed=self.seed_,
            config=self._resume_config(),
            fingerprint=_fingerprint(images, labels),
            seed_fixed=self.random_state is not None,
            rank=rank,
        )
        if self.verbose and rank == 0:
            callbacks.append(ProgressBar())
        for callback in callbacks:
            callback.on_fit_begin(self, start_iteration=state.start_iteration, state=state)
            self.seed_ = state.seed  # a run resumed with random_state=None continues its seed
        return state

    def _iterate(
        self,
        state,
        method,
        callbacks,
        context,
        real,
        synthetic,
        synthetic_labels,
        optimizer,
        lr_img,
        rank,
        world_size,
    ) -> None:
        """Run the iterations from ``state.start_iteration`` until done or a callback stops."""
        for iteration in range(state.start_iteration, self.iterations):
            generator = torch.Generator(device=self.device_)
            generator.manual_seed(_seed_for(self.seed_, 1, iteration))
            ctx = StepContext(
                images=synthetic,
                labels=synthetic_labels,
                optimizer=optimizer,
                real=real,
                generator=generator,
                augment=context.augment,
                sample_augment=context.sample_augment,
                mask=context.mask,
                iteration=iteration,
                build_network=context.build_network,
                options=method.options,
                rank=rank,
                world_size=world_size,
            )
            record = self._step(method, ctx, callbacks, lr_img)
            state.history.append(record)
            stop = False
            for callback in callbacks:
                stop = bool(callback.on_iteration_end(self, **record, state=state)) or stop
            if stop:
                break

    def _step(self, method, ctx: StepContext, callbacks, lr_img) -> dict:
        """Take one step of ``method``; return its history record (divergence is an error)."""
        iteration, synthetic = ctx.iteration, ctx.images  # as given, whatever the step does
        began = time.perf_counter()
        try:
            info = method.step(ctx)
            if not bool(torch.isfinite(synthetic).all()):
                raise FloatingPointError(
                    f"the synthetic images became NaN or infinite at iteration {iteration}"
                )
        except FloatingPointError as exc:
            kept = "".join(
                " " + c.kept() for c in callbacks if isinstance(c, Checkpoint) and c.kept()
            )
            raise RuntimeError(
                f"Distillation diverged at iteration {iteration}: {exc}. Lower lr_img (now "
                f"{lr_img}) or the method's learning rates.{kept}"
            ) from exc
        record = {
            "iteration": iteration,
            "loss": float(info["loss"]),
            "seconds": time.perf_counter() - began,
        }
        record.update({k: float(v) for k, v in info.items() if k != "loss"})
        return record

    def _set_fitted(self, synthetic, synthetic_labels, method, history, images, labels) -> None:
        """Set the fitted attributes; fit the calibration recipe when asked."""
        self.n_iter_ = len(history)
        self.images_ = synthetic.detach().cpu()
        self.labels_ = synthetic_labels.cpu()
        self.learning_rate_ = method.learned_learning_rate()
        self.history_ = history
        self.recipe_ = None
        if self.calibration_recipe:
            self.recipe_ = self._fit_recipe(images, labels)

    def _fit_recipe(self, images: torch.Tensor, labels: torch.Tensor):
        """Compute the set's calibration recipe on a stratified validation split of ``X``."""
        from ._data import stratified_split
        from ._recipe import default_proxies, fit_calibration_recipe

        options = {} if self.calibration_recipe is True else dict(self.calibration_recipe)
        n_validation = int(options.pop("n_validation", 5000))
        copies = int(options.pop("copies", 1))
        if n_validation < len(labels):
            seed = _seed_for(self.seed_, 3) % 2**32
            validation = stratified_split(labels, [n_validation], random_state=seed)[0]
            images, labels = images[validation], labels[validation]
        distilled = self.to_distilled_set()
        where = f"a stratified split of {len(labels)} of the real images the set was distilled from"
        return fit_calibration_recipe(
            distilled,
            images,
            labels,
            proxies=default_proxies(distilled, copies=copies),
            random_state=_seed_for(self.seed_, 4),
            verbose=bool(self.verbose),
            notes={"validation": where},
            **options,
        )

    def _distributed_settings(self) -> dict:
        """Return the parameters every process must share (all but the per-process ones)."""
        params = self.get_params(deep=False)
        # the seed is process 0's by design; devices, callbacks, the checkpoint's path and
        # verbosity are each process's own. The iterations are shared: a process that stops
        # early would leave the others waiting in the next step's all_reduce.
        for key in ("random_state", "device", "callbacks", "verbose", "checkpoint"):
            params.pop(key, None)
        return params

    def _agree(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[int, int]:
        """Take process 0's seed; check that every process distils the same data."""
        import torch.distributed as dist

        rank, world_size = dist.get_rank(), dist.get_world_size()
        seed = torch.tensor([float(self.seed_) if rank == 0 else 0.0], dtype=torch.float64)
        self.seed_ = int(all_reduce(seed).item())
        # 52 bits of the data's fingerprint fit a float64 exactly.
        key = float(int(_fingerprint(images, labels)[:13], 16))
        spread = all_reduce(torch.tensor([key, -key], dtype=torch.float64), "max")
        if spread[0] != -spread[1]:
            raise ValueError(
                "MDTTrainer(distributed=True): the processes were given different X or y; every "
                "process must pass the whole training data (the work is split inside)."
            )
        return rank, world_size

    def _initial_images(self, real: RealData):
        generator = torch.Generator(device=self.device_)
        generator.manual_seed(_seed_for(self.seed_, 0))
        labels = torch.arange(self.n_classes_, device=self.device_).repeat_interleave(self.ipc)
        if self.init == "real":
            images, _ = real.sample(self.ipc, generator)
            images = images.clone()
        else:
            shape = (self.n_classes_ * self.ipc, *real.images.shape[1:])
            images = torch.randn(shape, generator=generator, device=self.device_)
        return images.requires_grad_(True), labels

    def _resume_config(self) -> dict:
        """Return the configuration a checkpoint must match to be resumed (JSON-safe)."""
        config = self._config()
        config.pop("random_state")
        for key in _RUNTIME_PARAMS:
            config.pop(key, None)
        return config

    # ----------------------------------------------------------------------------- results
    def to_distilled_set(self) -> DistilledSet:
        """Return the distilled set with its normalisation, learned lr and configuration.

        Returns
        -------
        DistilledSet
            The fitted images and labels, ``mean_``, ``std_``, ``learning_rate_``, the
            configuration and the history.
        """
        check_is_fitted(self)
        return DistilledSet(
            images=self.images_,
            labels=self.labels_,
            mean=self.mean_,
            std=self.std_,
            learning_rate=self.learning_rate_,
            config=self._config(),
            history=self.history_,
            recipe=getattr(self, "recipe_", None),
        )

    def save(self, path) -> Path:
        """Write the distilled set to a safetensors file (no pickle; atomic).

        Load it with :func:`distcal.distill.load_distilled`.

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        return self.to_distilled_set().save(path)

    def save_network(self, path, network: torch.nn.Module) -> Path:
        """Save a network of this trainer's architecture (weights + spec; no pickle).

        Parameters
        ----------
        path : str or os.PathLike
            The file to write.
        network : torch.nn.Module
            A network of this trainer's architecture (for example a trained student's).

        Returns
        -------
        pathlib.Path
            The path written; :func:`distcal.distill.load_network` rebuilds the network.
        """
        check_is_fitted(self)
        return save_network(path, network, spec=dict(self.network_spec_))


def _fingerprint(images: torch.Tensor, labels: torch.Tensor) -> str:
    digest = hashlib.sha256()
    digest.update(str(tuple(images.shape)).encode())
    digest.update(np.ascontiguousarray(images.detach().cpu().numpy()).tobytes())
    digest.update(np.ascontiguousarray(labels.detach().cpu().numpy()).tobytes())
    return digest.hexdigest()
