"""Dataset distillation and students: data, networks and the classifier trained on images."""

from ._data import (
    channel_statistics,
    check_images,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    normalize,
    stratified_split,
)
from ._networks import MLP, NETWORKS, ConvNet, build_network
from ._student import StudentClassifier

__all__ = [
    "MLP",
    "NETWORKS",
    "ConvNet",
    "StudentClassifier",
    "build_network",
    "channel_statistics",
    "check_images",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "normalize",
    "stratified_split",
]
