"""Networks used in dataset distillation, in a registry, built with seeded initialisation."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._device import make_generator
from ._pooling import AvgPool2x2

__all__ = ["MLP", "NETWORKS", "ConvNet", "build_network"]


def _norm_layer(kind: str, width: int, spatial: int) -> nn.Module:
    if kind == "instancenorm":
        # Instance norm with learnable affine, written as GroupNorm with one group per channel
        # (the convention of the dataset-distillation ConvNet).
        return nn.GroupNorm(width, width, affine=True)
    if kind == "batchnorm":
        return nn.BatchNorm2d(width)
    if kind == "layernorm":
        return nn.GroupNorm(1, width, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(
        f"norm must be one of 'instancenorm', 'batchnorm', 'layernorm', 'none'; got {kind!r}."
    )


class ConvNet(nn.Module):
    """The ConvNet of the dataset-distillation literature (DC, DSA, DM, MTT).

    ``depth`` blocks of 3x3 convolution (``width`` channels), normalisation, ReLU and 2x2
    average pooling, then a linear classifier. For 28x28 inputs the first convolution pads by 3
    so that the feature map is 32x32 and, at depth 3, ends at 4x4 as in the original code.

    Parameters
    ----------
    input_shape : tuple of int
        Shape ``(channels, height, width)`` of one image; height and width must be equal.
    n_classes : int
        Number of output logits.
    width : int, default=128
        Channels of every convolution.
    depth : int, default=3
        Number of convolution blocks.
    norm : {"instancenorm", "batchnorm", "layernorm", "none"}, default="instancenorm"
        Normalisation after each convolution.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        n_classes: int,
        *,
        width: int = 128,
        depth: int = 3,
        norm: str = "instancenorm",
    ):
        super().__init__()
        if len(input_shape) != 3 or input_shape[1] != input_shape[2]:
            raise ValueError(
                "ConvNet needs square images of shape (channels, height, width); got samples of "
                f"shape {tuple(input_shape)}. Use network='mlp' for feature vectors."
            )
        in_channels, image_size = input_shape[0], input_shape[1]
        layers: list[nn.Module] = []
        channels = in_channels
        size = image_size
        for block in range(depth):
            padding = 3 if block == 0 and image_size == 28 else 1
            layers.append(nn.Conv2d(channels, width, kernel_size=3, padding=padding))
            size = size + 2 * padding - 2
            layers += [_norm_layer(norm, width, size), nn.ReLU(inplace=True), AvgPool2x2()]
            size //= 2
            channels = width
            if size < 1:
                raise ValueError(
                    f"depth={depth} pools a {image_size}x{image_size} image below 1x1; use a "
                    f"smaller depth (at most {block})."
                )
        self.features = nn.Sequential(*layers)
        self.feature_dim = width * size * size
        self.classifier = nn.Linear(self.feature_dim, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Return the flattened features before the classifier (used by distribution matching).

        Parameters
        ----------
        x : Tensor of shape (n, C, H, W) or (n, ...)
            Input samples.

        Returns
        -------
        Tensor of shape (n, feature_dim)
            The features.
        """
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits.

        Parameters
        ----------
        x : Tensor of shape (n, C, H, W) or (n, ...)
            Input samples.

        Returns
        -------
        Tensor of shape (n, n_classes)
            The classifier's outputs on :meth:`embed`.
        """
        return self.classifier(self.embed(x))


class MLP(nn.Module):
    """A multilayer perceptron over flattened images.

    Parameters
    ----------
    input_shape : tuple of int
        Shape of one sample (any number of dimensions; it is flattened).
    n_classes : int
        Number of output logits.
    width : int, default=128
        Units of every hidden layer.
    depth : int, default=2
        Number of hidden layers.
    """

    def __init__(
        self, input_shape: tuple[int, ...], n_classes: int, *, width: int = 128, depth: int = 2
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        features = math.prod(input_shape)
        for _ in range(depth):
            layers += [nn.Linear(features, width), nn.ReLU(inplace=True)]
            features = width
        self.features = nn.Sequential(*layers)
        self.feature_dim = features
        self.classifier = nn.Linear(features, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Return the last hidden layer's activations.

        Parameters
        ----------
        x : Tensor of shape (n, C, H, W) or (n, ...)
            Input samples.

        Returns
        -------
        Tensor of shape (n, feature_dim)
            The activations (the flattened input when ``depth=0``).
        """
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the logits.

        Parameters
        ----------
        x : Tensor of shape (n, C, H, W) or (n, ...)
            Input samples.

        Returns
        -------
        Tensor of shape (n, n_classes)
            The classifier's outputs on :meth:`embed`.
        """
        return self.classifier(self.embed(x))


NETWORKS = {"convnet": ConvNet, "mlp": MLP}


def _reset_parameters(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation, drawn from ``generator`` instead of the global RNG."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            if layer.bias is not None:
                fan_in = layer.weight[0].numel()
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def build_network(
    name: str,
    *,
    input_shape: tuple[int, ...],
    n_classes: int,
    random_state=None,
    device=None,
    **kwargs,
) -> nn.Module:
    """Build a network from :data:`NETWORKS` with its weights drawn from ``random_state``.

    Parameters
    ----------
    name : str
        A key of :data:`NETWORKS` (``"convnet"``, ``"mlp"``).
    input_shape : tuple of int
        Shape of one input sample, ``(channels, height, width)`` for images.
    n_classes : int
        Number of output logits.
    random_state : int, RandomState instance or None, default=None
        Seeds the initial weights; the global generator is never used.
    device : str or torch.device, default=None
        Where to put the network (the CPU when None).
    **kwargs
        Architecture options of the network class (``width``, ``depth``, ``norm``).

    Returns
    -------
    torch.nn.Module
        The network, in training mode, on ``device``.
    """
    if name not in NETWORKS:
        raise ValueError(
            f"Unknown network {name!r}; valid names are {sorted(NETWORKS)}. Register a new one "
            "with distcal.distill.NETWORKS[name] = cls."
        )
    # Layers draw their default initialisation from the global generator; fork it so that its
    # state is restored, then draw the weights that count from random_state.
    with torch.random.fork_rng(devices=[]):
        network = NETWORKS[name](tuple(input_shape), n_classes, **kwargs)
    with torch.no_grad():
        _reset_parameters(network, make_generator(random_state))
    return network.to(device if device is not None else "cpu")
