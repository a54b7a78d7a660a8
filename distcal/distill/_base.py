"""What every distillation method shares: the real-data sampler, the MDT mask and a step context.

A distillation method (DM, DC, DSA, MTT) is a class registered in ``METHODS``. The trainer
calls its ``setup`` once and its ``step`` once per iteration with a :class:`StepContext` that
holds everything the step may touch: the synthetic images (a leaf tensor with gradients), their
labels, the image optimizer, the real data, the per-iteration random generator, the siamese
augmentation and the MDT mask. Everything random in a step draws from ``ctx.generator``, which
the trainer derives from ``random_state`` and the iteration number, so a resumed run replays
exactly what an uninterrupted one does.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .._masking import mask_inputs

__all__ = ["METHODS", "DistillationMethod", "MDTMask", "RealData", "StepContext"]


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

        Returns
        -------
        images : Tensor of shape (sum of batch sizes, C, H, W)
        labels : Tensor of matching length
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
        """Draw up to ``n`` images of class ``c`` without replacement."""
        return self.sample(n, generator, classes=[c])[0]


@dataclass
class MDTMask:
    """The Masked Distillation Training mask: which batches of the objective it masks, and how.

    Attributes
    ----------
    ratio : float
        Probability in [0, 1) that an element of an image is masked; 0 disables masking.
    apply_to : {"synthetic", "real", "both"}
        Which batches entering the matching objective are masked. With ``"both"`` the real and
        synthetic batches draw independent masks of the same ratio.
    kind : {"zero", "mean"}
        The value a masked element takes: 0 in the (normalised) space the network sees, or the
        per-channel mean of the batch it belongs to.
    """

    ratio: float = 0.0
    apply_to: str = "synthetic"
    kind: str = "zero"

    def __call__(self, images: torch.Tensor, which: str, generator: torch.Generator):
        """Mask ``images`` if the mask applies to ``which`` batches ("real" or "synthetic")."""
        if self.ratio == 0 or self.apply_to not in (which, "both"):
            return images
        return mask_inputs(images, self.ratio, generator=generator, kind=self.kind)


@dataclass
class StepContext:
    """Everything one distillation iteration may read or update.

    Attributes
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
    options : dict
        Method-specific options (``method_params`` of the trainer, with defaults filled in).
    rank, world_size : int
        This process's rank and the number of processes of a distributed run (0 and 1 when the
        run is not distributed). Every process draws the same random numbers; a method that
        supports distribution computes its share of the objective and sums the gradients.
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
        return self.real.n_classes

    @property
    def ipc(self) -> int:
        return self.images.shape[0] // self.real.n_classes

    def siamese(self, *batches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Augment every batch with the same sampled parameters (siamese augmentation).

        Parameters are drawn for the largest batch; each batch uses its first rows.
        """
        if self.augment is None:
            return batches
        params = self.sample_augment(max(len(b) for b in batches), self.generator)
        return tuple(self.augment(b, params) for b in batches)

    def draw_seed(self) -> int:
        """Draw an integer seed from this iteration's generator (for networks built in a step)."""
        return int(torch.randint(0, 2**31 - 1, (1,), generator=self.generator).item())


class DistillationMethod(ABC):
    """Base class of distillation methods. Subclasses define ``defaults`` and ``step``.

    Attributes
    ----------
    name : str
        Registry key.
    defaults : dict
        Method-specific options and their defaults; ``method_params`` of the trainer override
        them, and unknown keys are rejected.
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
    default_lr_img = 1.0
    default_augment = False
    supports_distributed = False

    def __init__(self, options: dict):
        self.options = options

    def setup(self, real: RealData, trainer) -> None:  # noqa: B027 - optional hook
        """Prepare once before the first iteration (for example, train expert trajectories)."""

    def extra_parameters(self) -> dict[str, torch.Tensor]:
        """Learnable tensors besides the images (for example MTT's learning rate)."""
        return {}

    def parameter_groups(self) -> list[dict]:
        """Optimizer parameter groups for :meth:`extra_parameters` (added after the images')."""
        return []

    def learned_learning_rate(self) -> float | None:
        """Return the learned student learning rate (MTT), or None for methods without one."""
        return None

    @abstractmethod
    def step(self, ctx: StepContext) -> dict:
        """Run one distillation iteration: update ``ctx.images``; return ``{"loss": float}``."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to checkpoint besides the images and the optimizer."""
        return dict(self.extra_parameters())

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state_dict` returned."""
        with torch.no_grad():
            for name, tensor in self.extra_parameters().items():
                tensor.copy_(state[name])


METHODS: dict[str, type[DistillationMethod]] = {}


def register_method(cls: type[DistillationMethod]) -> type[DistillationMethod]:
    """Class decorator adding a method to :data:`METHODS` under its ``name``."""
    METHODS[cls.name] = cls
    return cls
