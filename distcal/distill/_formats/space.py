"""The pixel space of a distilled set, and the statistics the repositories normalise with.

:class:`PixelSpace` maps real [0, 1] images into the space a set lives in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..._device import as_tensor
from .._data import channel_statistics, normalize
from .._zca import ZCAWhitening

if TYPE_CHECKING:  # the loaded set carries a space; a space only fills in a loaded set's
    from .loaded import LoadedSet

#: Per-channel (mean, std) of the datasets the repositories normalise with, and where from.
STATISTICS = {
    "mnist": ((0.1307,), (0.3081,), "DatasetCondensation utils.py::get_dataset"),
    "fashion-mnist": ((0.2861,), (0.3530,), "DatasetCondensation utils.py::get_dataset"),
    "svhn": (
        (0.4377, 0.4438, 0.4728),
        (0.1980, 0.2010, 0.1970),
        "DatasetCondensation utils.py::get_dataset",
    ),
    "cifar10": (
        (0.4914, 0.4822, 0.4465),
        (0.2023, 0.1994, 0.2010),
        "DatasetCondensation, mtt-distillation, DATM and DD-Ranking get_dataset",
    ),
    "cifar100": (
        (0.5071, 0.4866, 0.4409),
        (0.2673, 0.2564, 0.2762),
        "DatasetCondensation utils.py::get_dataset (MTT, DATM, DD-Ranking use CIFAR-10's)",
    ),
    "imagenet": (
        (0.485, 0.456, 0.406),
        (0.229, 0.224, 0.225),
        "torchvision's ImageNet statistics (SRe2L, RDED; MTT and DATM for Tiny ImageNet)",
    ),
}


#: Dataset names as the repositories write them, to the keys of STATISTICS.
_DATASET_NAMES = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "svhn": "svhn",
    "cifar10": "cifar10",
    "cifar-10": "cifar10",
    "cifar100": "cifar100",
    "cifar-100": "cifar100",
    "tiny": "imagenet",
    "tinyimagenet": "imagenet",
    "imagenet": "imagenet",
}


class PixelSpace:
    """How a set's pixels relate to [0, 1] images, and the map of real images into that space.

    Parameters
    ----------
    kind : {"raw", "normalized", "zca"}
        ``"raw"``: [0, 1] pixels; ``"normalized"``: ``(x - mean) / std`` per channel;
        ``"zca"``: whitened by :class:`~distcal.distill.ZCAWhitening` fitted on the real
        training images in [0, 1].
    mean, std : tuple of float or None, default=None
        The statistics of ``"normalized"``; None computes them from the real training images
        in :meth:`fit` (per channel, as distcal's experiment does).
    statistics : str, default="given"
        Where ``mean`` and ``std`` come from, for reports: a key of :data:`STATISTICS`,
        ``"file"``, ``"given"`` or ``"data"``.
    zca : {"kornia", "kip"} or None, default=None
        The ZCA definition of ``"zca"``.
    eps : float, default=0.1
        The ZCA regularisation.
    origin : str, default="the set"
        What the space belongs to (a file name), for error messages.

    Attributes
    ----------
    zca_ : ZCAWhitening
        The whitening fitted by :meth:`fit` (``"zca"`` only).
    mean_, std_ : Tensor of shape (C,)
        The statistics used by :meth:`transform` (``"normalized"`` only), float32.
    """

    def __init__(
        self, kind, *, mean=None, std=None, statistics="given", zca=None, eps=0.1, origin="the set"
    ):
        if kind not in ("raw", "normalized", "zca"):
            raise ValueError(f"kind must be 'raw', 'normalized' or 'zca'; got {kind!r}.")
        if kind == "zca" and zca not in ("kornia", "kip"):
            raise ValueError(f"A ZCA space needs zca='kornia' or 'kip'; got {zca!r}.")
        if (mean is None) != (std is None):
            raise ValueError("mean and std must be given together.")
        self.kind = kind
        self.mean = None if mean is None else tuple(float(v) for v in mean)
        self.std = None if std is None else tuple(float(v) for v in std)
        self.statistics = statistics if mean is not None or kind != "normalized" else "data"
        self.zca = zca if kind == "zca" else None
        self.eps = float(eps)
        self.origin = origin
        if kind == "normalized" and self.mean is not None:
            self.mean_ = torch.tensor(self.mean, dtype=torch.float32)
            self.std_ = torch.tensor(self.std, dtype=torch.float32)

    @property
    def needs_fit(self) -> bool:
        """Whether :meth:`fit` must see the real training images first (ZCA, computed stats)."""
        return self.kind == "zca" or (self.kind == "normalized" and self.mean is None)

    def describe(self) -> str:
        """Return the space in words, for reports.

        Returns
        -------
        str
            For example ``"mean/std-normalised (cifar10: mean 0.4914, ...)"``.
        """
        if self.kind == "raw":
            return "raw pixels in [0, 1]"
        if self.kind == "zca":
            how = "kornia ZCAWhitening" if self.zca == "kornia" else "KIP's ZCA (layer norm)"
            return f"ZCA space ({how}, eps={self.eps:g}), refitted on the real training images"
        if self.mean is None:
            return "mean/std-normalised with the real training images' per-channel statistics"
        numbers = ", ".join(f"{m:.4g}/{s:.4g}" for m, s in zip(self.mean, self.std, strict=True))
        return f"mean/std-normalised ({self.statistics}: mean/std {numbers})"

    def fit(self, X_train):
        """Fit what the space needs from the real training images in [0, 1].

        Parameters
        ----------
        X_train : array-like or Tensor of shape (n, C, H, W)
            The real training images the set was distilled from, in [0, 1].

        Returns
        -------
        self : PixelSpace
            The fitted space.
        """
        if self.kind == "zca":
            self.zca_ = ZCAWhitening(self.zca, eps=self.eps).fit(as_tensor(X_train))
        elif self.kind == "normalized" and self.mean is None:
            mean, std = channel_statistics(as_tensor(X_train))
            self.mean_, self.std_ = mean.float(), std.float()
        return self

    def transform(self, X) -> torch.Tensor:
        """Map [0, 1] images into the space.

        Parameters
        ----------
        X : array-like or Tensor of shape (n, C, H, W)
            Images with values in [0, 1].

        Returns
        -------
        Tensor of shape (n, C, H, W)
            The images in the set's space, float32.
        """
        images = as_tensor(X).float()
        if self.kind == "raw":
            return images
        if self.kind == "zca":
            if not hasattr(self, "zca_"):
                raise ValueError(
                    f"{self.origin} is in ZCA space ({self.zca}, eps={self.eps:g}) and the file "
                    "does not hold the whitening: it must be refitted on the real training "
                    "images the set was distilled from. Pass the real training data (fit(X_train)"
                    " in Python; --dataset on the command line)."
                )
            return self.zca_.transform(images)
        if not hasattr(self, "mean_"):
            raise ValueError(
                f"{self.origin} is normalised with the real training images' statistics, "
                "which must be computed first: call fit(X_train) with the real training images."
            )
        return normalize(images, self.mean_, self.std_)

    def __repr__(self) -> str:
        return f"PixelSpace({self.describe()!r})"


def _dataset_key(dataset) -> str | None:
    if not isinstance(dataset, str):
        return None
    return _DATASET_NAMES.get(dataset.lower().replace("_", "-"))


def _statistics_space(
    loaded: LoadedSet, statistics, *, default: str | None, why: str
) -> PixelSpace:
    """Return a normalised space with the given statistics, or the format's default."""
    origin = loaded.path
    if statistics is None:
        if default is None:
            loaded.assume(
                "pixel statistics",
                "the real training images' per-channel mean and std",
                why + " No repository statistics are known for this dataset: pass statistics="
                " (--statistics).",
            )
            return PixelSpace("normalized", statistics="data", origin=origin)
        mean, std, source = STATISTICS[default]
        loaded.assume("pixel statistics", f"{default}: mean {mean}, std {std}", f"{why} ({source})")
        return PixelSpace("normalized", mean=mean, std=std, statistics=default, origin=origin)
    if isinstance(statistics, str):
        if statistics == "data":
            return PixelSpace("normalized", statistics="data", origin=origin)
        if statistics not in STATISTICS:
            raise ValueError(
                f"statistics must be a key of STATISTICS {sorted(STATISTICS)}, 'data' or a "
                f"(mean, std) pair; got {statistics!r}."
            )
        mean, std, _ = STATISTICS[statistics]
        return PixelSpace("normalized", mean=mean, std=std, statistics=statistics, origin=origin)
    try:
        mean, std = statistics
        mean = [float(v) for v in as_tensor(mean).reshape(-1).tolist()]
        std = [float(v) for v in as_tensor(std).reshape(-1).tolist()]
    except (TypeError, ValueError):
        raise ValueError(
            f"statistics must be a key of STATISTICS, 'data' or a (mean, std) pair of per-channel "
            f"sequences; got {statistics!r}."
        ) from None
    channels = loaded.images.shape[1]
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise ValueError(
            f"statistics must give {channels} means and {channels} positive stds (one per channel "
            f"of the images in {origin}); got mean {mean}, std {std}."
        )
    return PixelSpace("normalized", mean=mean, std=std, statistics="given", origin=origin)


def _pixel_space(
    loaded: LoadedSet, *, zca, statistics, default_zca, default_statistics, why: str
) -> PixelSpace:
    """Return the set's pixel space: ZCA if asked (or the format's default), else stats."""
    if zca is None:
        zca = default_zca
        if zca != "none":
            loaded.assume(
                "pixel space",
                f"ZCA ({zca}, eps=0.1)",
                why + " Pass zca='none' (--zca none) if it was not.",
            )
    if zca not in ("none", "kornia", "kip"):
        raise ValueError(f"zca must be 'none', 'kornia' or 'kip'; got {zca!r}.")
    if zca != "none":
        if statistics is not None:
            raise ValueError(
                f"statistics={statistics!r} and zca={zca!r} exclude each other: a ZCA set is "
                "whitened from [0, 1] pixels, without mean/std normalisation."
            )
        return PixelSpace("zca", zca=zca, origin=loaded.path)
    return _statistics_space(loaded, statistics, default=default_statistics, why=why)
