"""Dataset distillation and students: data, networks, distillation methods, MDTTrainer.

Importing this package registers the distillation methods in :data:`METHODS`. A new method is
a :class:`DistillationMethod` subclass with ``defaults`` and ``_parameter_constraints``,
decorated with :func:`register_method` (see ``docs/distill.md``).
"""

from . import _dm  # noqa: F401 - registers "dm"
from ._analysis import masking_spread, max_logit_statistics
from ._artifact import DistilledSet, load_distilled, load_network, save_network
from ._augment import SiameseAugment
from ._base import (
    METHODS,
    DistillationMethod,
    MDTMask,
    RealData,
    SetupContext,
    StepContext,
    register_method,
)
from ._batched import fit_students
from ._callbacks import Callback, Checkpoint, EarlyStopping, FitState, ProgressBar
from ._data import (
    channel_statistics,
    check_images,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    normalize,
    stratified_split,
)
from ._experts import ExpertTrajectories, train_expert_trajectories
from ._formats import (
    FORMATS,
    STATISTICS,
    LoadedSet,
    PixelSpace,
    detect_format,
    export_distilled,
    read_distilled,
)
from ._gradient_matching import GradientMatching, GradientMatchingDSA
from ._mtt import MTT
from ._networks import MLP, NETWORKS, ConvNet, build_network
from ._protocols import PROTOCOLS, Protocol, protocol_by_name
from ._recipe import default_proxies, fit_calibration_recipe
from ._student import StudentClassifier, load_student
from ._sweep import fit_trainers
from ._trainer import MDTTrainer
from ._zca import ZCAWhitening

__all__ = [
    "FORMATS",
    "METHODS",
    "MLP",
    "MTT",
    "NETWORKS",
    "PROTOCOLS",
    "STATISTICS",
    "Callback",
    "Checkpoint",
    "ConvNet",
    "DistillationMethod",
    "DistilledSet",
    "EarlyStopping",
    "ExpertTrajectories",
    "FitState",
    "GradientMatching",
    "GradientMatchingDSA",
    "LoadedSet",
    "MDTMask",
    "MDTTrainer",
    "PixelSpace",
    "ProgressBar",
    "Protocol",
    "RealData",
    "SetupContext",
    "SiameseAugment",
    "StepContext",
    "StudentClassifier",
    "ZCAWhitening",
    "build_network",
    "channel_statistics",
    "check_images",
    "default_proxies",
    "detect_format",
    "export_distilled",
    "fit_calibration_recipe",
    "fit_students",
    "fit_trainers",
    "load_dataset",
    "load_digits",
    "load_distilled",
    "load_fashion_mnist",
    "load_network",
    "load_student",
    "masking_spread",
    "max_logit_statistics",
    "normalize",
    "protocol_by_name",
    "read_distilled",
    "register_method",
    "save_network",
    "stratified_split",
    "train_expert_trajectories",
]
