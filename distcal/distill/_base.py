"""The contract between the trainer and the distillation methods.

A distillation method (DM, DC, DSA, MTT) is a :class:`DistillationMethod` subclass registered
in ``METHODS``. It declares its options once, in ``defaults`` and ``_parameter_constraints``;
its constructor checks them with the shared parameter validation (the same as estimators'
parameters). The trainer calls ``setup(real, context)`` once with a :class:`SetupContext`
(network builder, seed and random streams, augmentation, MDT mask, device, verbosity) and
``step(ctx)`` once per iteration with a :class:`StepContext` that holds everything the step may
touch: the synthetic images (a leaf tensor with gradients), their labels, the image optimizer,
the real data, the per-iteration random generator, the siamese augmentation and the MDT mask.
Everything random in a step draws from ``ctx.generator``, which the trainer derives from
``random_state`` and the iteration number, so a resumed run replays exactly what an
uninterrupted one does. A method reads nothing else from the trainer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .._masking import mask_inputs
from .._params import validate_constraints
from ..exceptions import InvalidParameterError

__all__ = [
    "METHODS",
    "DistillationMethod",
    "MDTMask",
    "RealData",
    "SetupContext",
    "StepContext",
    "register_method",
]


def _seed_for(seed: int, *key: int) -> int:
    """Derive a seed from ``seed`` and ``key`` (independent streams per key)."""
    return int(np.random.SeedSequence([seed, *key]).generate_state(1, dtype=np.uint64)[0] >> 1)


class RealData:
    """Real training images grouped by class, for drawing class-wise random batches.

    Parameters
    ----------
    images : Tensor of shape (n, C, H, W) or (n, ...)
        Normalised real samples, on the device the distillation runs on.
    labels : Tensor of shape (n,)
        Class indices in ``[0, n_classes)``.
    n_classes : int
        Number of classes; every class must have at least one image.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, n_classes: int):
        self.images = images
        self.labels = labels
        self.n_classes = n_classes
        self.indices = [torch.nonzero(labels == c).flatten() for c in range(n_classes)]
        self.counts = [len(i) for i in self.indices]

    def sample(self, n_per_class: int, generator: torch.Generator, classes=None):
        """Draw up to ``n_per_class`` images of each class without replacement.

        Parameters
        ----------
        n_per_class : int
            Images to draw per class (a class with fewer gives all of its images).
        generator : torch.Generator
            Source of the random order, on the device of the images.
        classes : iterable of int or None, default=None
            The classes to draw from, in this order; None draws from every class.

        Returns
        -------
        images : Tensor of shape (sum of batch sizes, C, H, W)
            The drawn images, class after class.
        labels : Tensor of matching length
            Their class indices.
        """
        classes = range(self.n_classes) if classes is None else classes
        chosen = []
        for c in classes:
            pool = self.indices[c]
            take = min(n_per_class, len(pool))
            order = torch.randperm(len(pool), generator=generator, device=generator.device)
            chosen.append(pool[order[:take].to(pool.device)])
        index = torch.cat(chosen)
        return self.images[index], self.labels[index]

    def sample_class(self, c: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """Draw up to ``n`` images of class ``c`` without replacement.

        Parameters
        ----------
        c : int
            The class.
        n : int
            Images to draw.
        generator : torch.Generator
            Source of the random order.

        Returns
        -------
        Tensor of shape (min(n, count of c), C, H, W)
            The drawn images.
        """
        return self.sample(n, generator, classes=[c])[0]


@dataclass
class MDTMask:
    """The Masked Distillation Training mask: which batches of the objective it masks, and how.

    Its defaults are :class:`MDTTrainer`'s (``apply_to="both"``).

    Parameters
    ----------
    ratio : float, default=0.0
        Probability in [0, 1) that an element of an image is masked; 0 disables masking.
    apply_to : {"both", "synthetic", "real"}, default="both"
        Which batches entering the matching objective are masked. With ``"both"`` the real and
        synthetic batches draw independent masks of the same ratio.
    kind : {"zero", "mean"}, default="zero"
        The value a masked element takes: 0 in the (normalised) space the network sees, or the
        per-channel mean of the batch it belongs to.
    """

    ratio: float = 0.0
    apply_to: str = "both"
    kind: str = "zero"

    def __call__(self, images: torch.Tensor, which: str, generator: torch.Generator):
        """Mask ``images`` if the mask applies to ``which`` batches ("real" or "synthetic").

        Parameters
        ----------
        images : Tensor of shape (n, ...)
            A batch entering the objective.
        which : {"real", "synthetic"}
            Which kind of batch ``images`` is.
        generator : torch.Generator
            Source of the mask.

        Returns
        -------
        Tensor
            ``images`` itself when the mask does not apply, else a masked copy.
        """
        if self.ratio == 0 or self.apply_to not in (which, "both"):
            return images
        return mask_inputs(images, self.ratio, generator=generator, kind=self.kind)


@dataclass(frozen=True)
class SetupContext:
    """What a distillation method may use in :meth:`DistillationMethod.setup`.

    The trainer builds one per fit; the same network builder, augmentation and mask then reach
    every :class:`StepContext` of the run. A method reads nothing else from the trainer.

    Parameters
    ----------
    build_network : callable
        ``build_network(seed: int) -> torch.nn.Module``: a freshly initialised network of the
        trainer's architecture on ``device``.
    seed : int
        The run's seed (drawn from the trainer's ``random_state``).
    device : torch.device
        Where the distillation runs.
    augment : callable or None
        ``augment(x, params)``: differentiable siamese augmentation, or None when it is off.
    sample_augment : callable or None
        ``sample_augment(n, generator)``: draws augmentation parameters for ``n`` images.
    mask : MDTMask
        The MDT mask of the run.
    verbose : bool, default=False
        Whether the method may show progress (for example while training experts).
    """

    build_network: Callable
    seed: int
    device: torch.device
    augment: Callable | None
    sample_augment: Callable | None
    mask: MDTMask
    verbose: bool = False

    def generator(self, *stream: int) -> torch.Generator:
        """Return a generator on ``device`` seeded from ``seed`` and a stream key of the method's.

        The trainer's own streams are ``(0,)`` (initial images) and ``(1, iteration)``; a
        method picks another key, so its draws are independent of the iterations'.

        Parameters
        ----------
        *stream : int
            The key of the stream.

        Returns
        -------
        torch.Generator
            A new generator; the same key always gives the same draws.
        """
        generator = torch.Generator(device=self.device)
        generator.manual_seed(_seed_for(self.seed, *stream))
        return generator


@dataclass
class StepContext:
    """Everything one distillation iteration may read or update.

    Parameters
    ----------
    images : Tensor (leaf, requires_grad)
        The synthetic images, ``(n_classes * ipc, C, H, W)``, class-major.
    labels : Tensor
        Their class indices.
    optimizer : torch.optim.Optimizer
        Updates ``images`` (and any extra parameter of the method).
    real : RealData
        The real training images.
    generator : torch.Generator
        This iteration's source of randomness, on the distillation device.
    augment : callable or None
        ``augment(x, params)`` applies differentiable siamese augmentation with parameters from
        ``sample_augment(n, generator)``; None disables augmentation.
    sample_augment : callable or None
        Draws augmentation parameters for ``n`` images.
    mask : MDTMask
        The MDT mask, applied by the method to the batches entering its objective.
    iteration : int
        Zero-based iteration number.
    build_network : callable
        ``build_network(random_state) -> torch.nn.Module``: a freshly initialised network of the
        trainer's architecture on the distillation device.
    options : dict, default={}
        Method-specific options (``method_params`` of the trainer, with defaults filled in).
    rank : int, default=0
        This process's rank in a distributed run (0 when the run is not distributed).
    world_size : int, default=1
        The number of processes of a distributed run. Every process draws the same random
        numbers; a method that supports distribution computes its share of the objective and
        sums the gradients.
    """

    images: torch.Tensor
    labels: torch.Tensor
    optimizer: torch.optim.Optimizer
    real: RealData
    generator: torch.Generator
    augment: Callable | None
    sample_augment: Callable | None
    mask: MDTMask
    iteration: int
    build_network: Callable
    options: dict = field(default_factory=dict)
    rank: int = 0
    world_size: int = 1

    @property
    def n_classes(self) -> int:
        """The number of classes."""
        return self.real.n_classes

    @property
    def ipc(self) -> int:
        """Synthetic images per class."""
        return self.images.shape[0] // self.real.n_classes

    def siamese(self, *batches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Augment every batch with the same sampled parameters (siamese augmentation).

        Parameters are drawn for the largest batch; each batch uses its first rows.

        Parameters
        ----------
        *batches : Tensor of shape (n_i, C, H, W)
            The batches to augment alike.

        Returns
        -------
        tuple of Tensor
            The augmented batches, in order (the batches themselves when augmentation is off).
        """
        if self.augment is None:
            return batches
        params = self.sample_augment(max(len(b) for b in batches), self.generator)
        return tuple(self.augment(b, params) for b in batches)

    def draw_seed(self) -> int:
        """Draw an integer seed from this iteration's generator.

        Returns
        -------
        int
            A seed in ``[0, 2**31 - 1)``, for networks built in a step.
        """
        return int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator).item())


class DistillationMethod(ABC):
    """Base class of distillation methods: the plugin API of :class:`MDTTrainer`.

    A subclass sets ``name``, ``defaults`` and ``_parameter_constraints`` (one list of accepted
    specifications per option, as estimators' ``_parameter_constraints``), implements
    :meth:`step`, and is registered with :func:`register_method`. The constructor checks the
    options with the shared parameter validation; the trainer calls :meth:`setup` once and
    :meth:`step` once per iteration.

    Parameters
    ----------
    options : dict or None, default=None
        Method options (the trainer's ``method_params``), merged over :attr:`defaults`.
        Unknown keys and values outside ``_parameter_constraints`` raise
        :class:`~distcal.exceptions.InvalidParameterError`.

    Attributes
    ----------
    name : str
        Registry key.
    defaults : dict
        Method-specific options and their defaults.
    options : dict
        The checked options, defaults filled in.
    default_lr_img : float
        Learning rate of the synthetic images when the trainer's ``lr_img`` is None.
    default_augment : bool
        Whether siamese augmentation is on when the trainer's ``augment`` is ``"auto"``.
    supports_distributed : bool
        Whether ``step`` splits its work over the processes of a distributed run
        (``MDTTrainer(distributed=True)``).
    """

    name = ""
    defaults: dict = {}
    _parameter_constraints: dict = {}
    default_lr_img = 1.0
    default_augment = False
    supports_distributed = False

    def __init__(self, options: dict | None = None):
        self.options = self.check_options(options)

    @classmethod
    def check_options(cls, options: dict | None) -> dict:
        """Check options against ``defaults`` and ``_parameter_constraints``; fill in defaults.

        Parameters
        ----------
        options : dict or None
            The options given (None for none).

        Returns
        -------
        dict
            The options merged over :attr:`defaults`.

        Raises
        ------
        InvalidParameterError
            For an unknown key, a value outside its constraints, or options that do not fit
            together (:meth:`_check_combination`).
        """
        if options is not None and not isinstance(options, dict):
            raise InvalidParameterError(
                f"The options of {cls.__name__} (method_params) must be a dict or None. Got "
                f"{options!r} instead."
            )
        given = dict(options or {})
        unknown = sorted(set(given) - set(cls.defaults))
        if unknown:
            raise InvalidParameterError(
                f"Unknown option(s) {unknown} for {cls.__name__} (method {cls.name!r}, set "
                f"through method_params); valid keys are {sorted(cls.defaults)}."
            )
        merged = {**cls.defaults, **given}
        validate_constraints(merged, cls._parameter_constraints, cls.__name__, noun="option")
        cls._check_combination(merged)
        return merged

    @classmethod  # noqa: B027 - optional hook
    def _check_combination(cls, options: dict) -> None:
        """Raise InvalidParameterError for options that are valid one by one but not together."""

    def setup(self, real: RealData, context: SetupContext) -> None:  # noqa: B027 - optional hook
        """Prepare once before the first iteration (for example, train expert trajectories).

        Parameters
        ----------
        real : RealData
            The real training images, normalised, on the distillation device.
        context : SetupContext
            The network builder, random streams, augmentation, mask, device and verbosity of
            the run.
        """

    def extra_parameters(self) -> dict[str, torch.Tensor]:
        """Return learnable tensors besides the images (for example MTT's learning rate).

        Returns
        -------
        dict of str to Tensor
            Empty unless the method learns something besides the images.
        """
        return {}

    def parameter_groups(self) -> list[dict]:
        """Return optimizer parameter groups for :meth:`extra_parameters`.

        Returns
        -------
        list of dict
            Groups added to the image optimizer after the images' group.
        """
        return []

    def learned_learning_rate(self) -> float | None:
        """Return the learned student learning rate.

        Returns
        -------
        float or None
            The learning rate (MTT), or None for methods without one.
        """
        return None

    @abstractmethod
    def step(self, ctx: StepContext) -> dict:
        """Run one distillation iteration: update ``ctx.images``.

        Parameters
        ----------
        ctx : StepContext
            The images to update, their optimizer, the real data and this iteration's
            randomness.

        Returns
        -------
        dict
            ``{"loss": float}``, plus any other float the method reports.
        """

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Return the tensors to checkpoint besides the images and the optimizer.

        Returns
        -------
        dict of str to Tensor
            By default :meth:`extra_parameters`.
        """
        return dict(self.extra_parameters())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned.

        Parameters
        ----------
        state : dict of str to Tensor
            The tensors, on the distillation device.
        """
        with torch.no_grad():
            for name, tensor in self.extra_parameters().items():
                tensor.copy_(state[name])


METHODS: dict[str, type[DistillationMethod]] = {}


def register_method(method: type[DistillationMethod]) -> type[DistillationMethod]:
    """Add a method to :data:`METHODS` under its ``name`` (a class decorator).

    Parameters
    ----------
    method : type
        A :class:`DistillationMethod` subclass with a ``name``, and one entry of
        ``_parameter_constraints`` for every key of ``defaults``.

    Returns
    -------
    type
        ``method`` itself.

    Raises
    ------
    TypeError
        If ``method`` is not a DistillationMethod, has no name, or its constraints do not cover
        exactly its options.
    """
    if not (isinstance(method, type) and issubclass(method, DistillationMethod)):
        raise TypeError(f"register_method takes a DistillationMethod subclass; got {method!r}.")
    if not isinstance(method.name, str) or not method.name:
        raise TypeError(f"{method.__name__}.name must be a non-empty str; got {method.name!r}.")
    declared, constrained = set(method.defaults), set(method._parameter_constraints)
    if declared != constrained:
        raise TypeError(
            f"{method.__name__}._parameter_constraints must have one entry per option of defaults; "
            f"options without constraints: {sorted(declared - constrained)}, constraints "
            f"without options: {sorted(constrained - declared)}."
        )
    METHODS[method.name] = method
    return method
