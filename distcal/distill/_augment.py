"""Differentiable siamese augmentation (DSA) for dataset distillation.

Sampling and applying are separate steps so that one draw of random parameters can transform
several batches in the same way (the real and the synthetic batch of a distillation step), and
so that the parameters can be saved, compared and replayed. Every random number comes from the
``generator`` passed in; the global random state is never read or changed.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["SiameseAugment", "make_augment"]

# float32 parameters are reproducible whatever torch's default dtype is; they are cast to the
# images' dtype when applied.
_PARAM_DTYPE = torch.float32


def _uniform(generator: torch.Generator, shape: tuple[int, ...]) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device, dtype=_PARAM_DTYPE)


def _rows(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Take the first ``len(x)`` rows of a parameter, shaped to broadcast over ``x``."""
    return t[: x.shape[0]].to(x.dtype).view(-1, 1, 1, 1)


# --- color: brightness, saturation, contrast ------------------------------------------------


def _sample_color(aug: SiameseAugment, n: int, generator: torch.Generator) -> dict:
    return {
        "brightness": (_uniform(generator, (n,)) - 0.5) * aug.brightness,
        "saturation": _uniform(generator, (n,)) * aug.saturation,
        "contrast": _uniform(generator, (n,)) + aug.contrast,
    }


def _apply_color(aug: SiameseAugment, x: torch.Tensor, params: dict) -> torch.Tensor:
    x = x + _rows(params["brightness"], x)
    if x.shape[1] > 1:
        # With one channel every pixel equals its mean over channels: saturation is the identity.
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * _rows(params["saturation"], x) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _rows(params["contrast"], x) + mean


# --- crop: integer translation with zero fill -----------------------------------------------


def _max_shift(size: int, ratio: float) -> int:
    # Round half up, as the DSA reference code does (28 * 0.125 = 3.5 gives 4 pixels).
    return int(size * ratio + 0.5)


def _shifts(u: torch.Tensor, size: int, ratio: float) -> torch.Tensor:
    """Map quantiles in [0, 1) to integer shifts uniform on [-s, s], s = round(size * ratio)."""
    s = _max_shift(size, ratio)
    return (u * (2 * s + 1)).floor().long().clamp_(0, 2 * s) - s


def _sample_crop(aug: SiameseAugment, n: int, generator: torch.Generator) -> dict:
    return {"crop": _uniform(generator, (n, 2))}


def _apply_crop(aug: SiameseAugment, x: torch.Tensor, params: dict) -> torch.Tensor:
    m, c, h, w = x.shape
    sh, sw = _max_shift(h, aug.crop), _max_shift(w, aug.crop)
    u = params["crop"][:m]
    dy, dx = _shifts(u[:, 0], h, aug.crop), _shifts(u[:, 1], w, aug.crop)
    # Gathering from a zero-padded copy keeps the gradient of every pixel that stays in view.
    padded = F.pad(x, (sw, sw, sh, sh))
    rows = torch.arange(h, device=x.device) + sh - dy[:, None]
    padded = padded.gather(2, rows.view(m, 1, h, 1).expand(m, c, h, w + 2 * sw))
    cols = torch.arange(w, device=x.device) + sw - dx[:, None]
    return padded.gather(3, cols.view(m, 1, 1, w).expand(m, c, h, w))


# --- cutout: a zeroed square ----------------------------------------------------------------


def _cutout_band(u: torch.Tensor, size: int, ratio: float) -> torch.Tensor:
    """Boolean (m, size): which rows (or columns) the square covers.

    The centre is uniform over ``size + 1 - side % 2`` positions, which makes the square as
    likely to hang over the first edge as over the last one.
    """
    side = int(size * ratio + 0.5)
    positions = size + 1 - side % 2
    centre = (u * positions).floor().long().clamp_(0, positions - 1)
    first = (centre - side // 2)[:, None]
    index = torch.arange(size, device=u.device)
    return (index >= first) & (index < first + side)


def _sample_cutout(aug: SiameseAugment, n: int, generator: torch.Generator) -> dict:
    return {"cutout": _uniform(generator, (n, 2))}


def _apply_cutout(aug: SiameseAugment, x: torch.Tensor, params: dict) -> torch.Tensor:
    m, _, h, w = x.shape
    u = params["cutout"][:m]
    rows, cols = _cutout_band(u[:, 0], h, aug.cutout), _cutout_band(u[:, 1], w, aug.cutout)
    keep = ~(rows[:, :, None] & cols[:, None, :])
    return x * keep.unsqueeze(1).to(x.dtype)


# --- flip: horizontal mirror ----------------------------------------------------------------


def _sample_flip(aug: SiameseAugment, n: int, generator: torch.Generator) -> dict:
    return {"flip": _uniform(generator, (n,)) < aug.flip}


def _apply_flip(aug: SiameseAugment, x: torch.Tensor, params: dict) -> torch.Tensor:
    return torch.where(params["flip"][: x.shape[0]].view(-1, 1, 1, 1), x.flip(3), x)


# --- scale and rotate: affine resampling ----------------------------------------------------


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    # align_corners=False maps pixel centres onto pixel centres under the identity and under
    # quarter turns of square images, so those are exact up to rounding.
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _affine(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """Batch of 2x3 matrices [[a, b, 0], [c, d, 0]] acting on (x, y) = (width, height)."""
    zero = torch.zeros_like(a)
    return torch.stack([torch.stack([a, b, zero], 1), torch.stack([c, d, zero], 1)], 1)


def _sample_scale(aug: SiameseAugment, n: int, generator: torch.Generator) -> dict:
    low = 1.0 / aug.scale
    return {"scale": low + _uniform(generator, (n, 2)) * (aug.scale - low)}


def _apply_scale(aug: SiameseAugment, x: torch.Tensor, params: dict) -> torch.Tensor:
    f = params["scale"][: x.shape[0]].to(x.dtype)
    zero = torch.zeros_like(f[:, 0])
    return _warp(x, _affine(f[:, 1], zero, zero, f[:, 0]))


def _sample_rotate(aug: SiameseAugment, n: int, generator: torch.Generator) -> dict:
    return {"rotate": (_uniform(generator, (n,)) * 2 - 1) * aug.rotate}


def _apply_rotate(aug: SiameseAugment, x: torch.Tensor, params: dict) -> torch.Tensor:
    _, _, h, w = x.shape
    angle = torch.deg2rad(params["rotate"][: x.shape[0]].to(torch.float64))
    cos, sin = torch.cos(angle).to(x.dtype), torch.sin(angle).to(x.dtype)
    # affine_grid works in coordinates normalised to [-1, 1] on each axis; the aspect ratio
    # terms make the rotation rigid in pixels on non-square images too.
    return _warp(x, _affine(cos, -sin * (h / w), sin * (w / h), cos))


@dataclass(frozen=True)
class _Operation:
    keys: tuple[str, ...]
    sample: Callable[[SiameseAugment, int, torch.Generator], dict]
    apply: Callable[[SiameseAugment, torch.Tensor, dict], torch.Tensor]


_OPERATIONS = {
    "color": _Operation(("brightness", "saturation", "contrast"), _sample_color, _apply_color),
    "crop": _Operation(("crop",), _sample_crop, _apply_crop),
    "cutout": _Operation(("cutout",), _sample_cutout, _apply_cutout),
    "flip": _Operation(("flip",), _sample_flip, _apply_flip),
    "scale": _Operation(("scale",), _sample_scale, _apply_scale),
    "rotate": _Operation(("rotate",), _sample_rotate, _apply_rotate),
}

_MODES = ("single", "all")

# name: (lowest, highest, highest included); None means unbounded.
_RANGES = {
    "brightness": (0.0, None, False),
    "saturation": (0.0, None, False),
    "contrast": (0.0, None, False),
    "crop": (0.0, 1.0, False),
    "cutout": (0.0, 1.0, True),
    "scale": (1.0, None, False),
    "rotate": (0.0, 180.0, True),
    "flip": (0.0, 1.0, True),
}


def _check_magnitude(name: str, value) -> float:
    low, high, closed = _RANGES[name]
    upper = "inf)" if high is None else f"{high}{']' if closed else ')'}"
    interval = f"[{low}, {upper}"
    expected = f"The {name!r} parameter of SiameseAugment must be a float in the range {interval}."
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{expected} Got {value!r} of type {type(value).__name__} instead.")
    value = float(value)
    too_high = high is not None and (value > high or (value == high and not closed))
    if not math.isfinite(value) or value < low or too_high:
        raise ValueError(f"{expected} Got {value!r} instead.")
    return value


class SiameseAugment:
    """Differentiable siamese augmentation (DSA) of image batches.

    A call draws random transformation parameters from a :class:`torch.Generator` and applies
    them; :meth:`sample` and :meth:`apply` do the two steps separately, so that the same draw
    transforms several batches alike (the real and the synthetic images of a distillation step).
    Every operation is differentiable with respect to the images, and nothing touches torch's
    global random state.

    Parameters
    ----------
    strategy : str, default="color_crop_cutout_flip_scale_rotate"
        Operations joined by underscores, each at most once, applied in this order (with
        ``mode="all"``): ``"color"`` (brightness, then saturation, then contrast), ``"crop"``
        (integer translation with zero fill), ``"cutout"`` (a zeroed square), ``"flip"``
        (horizontal mirror), ``"scale"`` (independent zoom of each axis) and ``"rotate"``.
        The DSA authors drop ``"flip"`` for digits (MNIST, SVHN), whose classes it can change.
    mode : {"single", "all"}, default="single"
        ``"single"`` applies one operation drawn uniformly from ``strategy`` (what the DSA
        reference code does); ``"all"`` applies every operation of ``strategy`` in order.
    per_sample : bool, default=False
        Whether every image gets its own draw. ``False`` draws once and shares the draw across
        the batch, as the DSA reference code does, so that a real batch of any size and a
        synthetic batch of a few images see exactly the same transformation. ``True`` draws
        independently per row; row ``i`` of every batch augmented with the same parameters
        still gets the same transformation.
    brightness : float, default=1.0
        Brightness shifts are added to every pixel, uniform on
        ``[-brightness / 2, brightness / 2]`` (in units of the pixel values).
    saturation : float, default=2.0
        Each pixel's deviations from its mean over channels are multiplied by a factor uniform
        on ``[0, saturation]``. Saturation is the identity on 1-channel images.
    contrast : float, default=0.5
        Each image's deviations from its mean over channels and pixels are multiplied by a
        factor uniform on ``[contrast, contrast + 1]``.
    crop : float, default=0.125
        Largest translation, as a fraction of the image height (vertical) and width
        (horizontal); the shift in pixels is an integer uniform on ``[-s, s]`` with
        ``s = round(crop * size)`` (half rounded up), and pixels shifted in are 0. Must be in
        ``[0, 1)``.
    cutout : float, default=0.5
        Side of the zeroed square as a fraction of the image height and width (rounded to whole
        pixels, half up). Its centre is uniform over the image, so the square may hang over an
        edge. Must be in ``[0, 1]``.
    scale : float, default=1.2
        Largest zoom factor; the factors of the two axes are drawn independently and uniformly
        from ``[1 / scale, scale]``. A factor above 1 shrinks the content along that axis
        (the image is resampled over a wider field of view, zeros outside), a factor below 1
        enlarges it. Must be at least 1.
    rotate : float, default=15.0
        Largest rotation angle in degrees; angles are uniform on ``[-rotate, rotate]``, positive
        anticlockwise as displayed (row 0 at the top), about the image centre, zeros outside.
        Must be in ``[0, 180]``.
    flip : float, default=0.5
        Probability of mirroring an image left to right. Must be in ``[0, 1]``.

    Attributes
    ----------
    operations : tuple of str
        The operations of ``strategy``, in order.

    Notes
    -----
    The defaults are those of the DSA reference implementation (``ParamDiffAug`` and
    ``DiffAugment`` in the authors' ``utils.py``), where ``scale=1.2`` is the largest zoom
    factor and ``mode="single"`` with a shared draw is how real and synthetic batches are
    augmented. Pixels that a transformation moves in from outside the image are 0 (the mean of
    standardised data). Scale and rotation resample bilinearly; crop, cutout and flip move or
    mask whole pixels and are exact.

    Parameters drawn by :meth:`sample` are plain tensors on the generator's device:

    ========================================  =====================  ===========================
    key (operation)                           shape, dtype           meaning
    ========================================  =====================  ===========================
    ``brightness`` (color)                    (n,), float32          added shift
    ``saturation``, ``contrast`` (color)      (n,), float32          factors
    ``crop``                                  (n, 2), float32        quantiles in [0, 1) of the
                                                                     (vertical, horizontal)
                                                                     shifts
    ``cutout``                                (n, 2), float32        quantiles in [0, 1) of the
                                                                     square's centre
    ``flip``                                  (n,), bool             mirror or not
    ``scale``                                 (n, 2), float32        (vertical, horizontal)
                                                                     factors
    ``rotate``                                (n,), float32          angle in degrees
    ``operation`` (``mode="single"``)         (n,), int64            index into ``operations``
    ========================================  =====================  ===========================

    Crop and cutout store quantiles rather than pixels because the image size is only known
    when the parameters are applied: a quantile ``u`` becomes the shift
    ``floor(u * (2 * s + 1)) - s``, so content moves down (right) by that many pixels, and the
    centre row (column) ``floor(u * (size + 1 - side % 2))``.

    References
    ----------
    .. [1] B. Zhao and H. Bilen, "Dataset Condensation with Differentiable Siamese
       Augmentation", Proceedings of the 38th International Conference on Machine Learning
       (ICML), PMLR 139, pp. 12674-12685, 2021. arXiv:2102.08259.

    Examples
    --------
    >>> import torch
    >>> from distcal.distill import SiameseAugment
    >>> augment = SiameseAugment("flip_rotate", mode="all", per_sample=True)
    >>> generator = torch.Generator().manual_seed(0)
    >>> real = torch.arange(4 * 64, dtype=torch.float32).reshape(4, 1, 8, 8)
    >>> params = augment.sample(4, generator)
    >>> sorted(params)
    ['flip', 'rotate']
    >>> out_real, out_syn = augment.apply(real, params), augment.apply(real[:2], params)
    >>> tuple(out_real.shape), torch.allclose(out_real[:2], out_syn)
    ((4, 1, 8, 8), True)
    """

    def __init__(
        self,
        strategy: str = "color_crop_cutout_flip_scale_rotate",
        *,
        mode: str = "single",
        per_sample: bool = False,
        brightness: float = 1.0,
        saturation: float = 2.0,
        contrast: float = 0.5,
        crop: float = 0.125,
        cutout: float = 0.5,
        scale: float = 1.2,
        rotate: float = 15.0,
        flip: float = 0.5,
    ):
        self.strategy = strategy
        self.mode = mode
        self.per_sample = per_sample
        self.brightness = brightness
        self.saturation = saturation
        self.contrast = contrast
        self.crop = crop
        self.cutout = cutout
        self.scale = scale
        self.rotate = rotate
        self.flip = flip
        # A plain class, not an estimator: checking here reports a mistake where it was made.
        self.operations = _parse_strategy(strategy)
        if mode not in _MODES:
            raise ValueError(
                f"The 'mode' parameter of SiameseAugment must be a str among {list(_MODES)}. "
                f"Got {mode!r} instead."
            )
        if not isinstance(per_sample, bool):
            raise TypeError(
                "The 'per_sample' parameter of SiameseAugment must be an instance of 'bool'. "
                f"Got {per_sample!r} instead."
            )
        for name in _RANGES:
            _check_magnitude(name, getattr(self, name))

    def __repr__(self) -> str:
        defaults = type(self)()
        changed = [
            f"{name}={value!r}"
            for name, value in vars(self).items()
            if name != "operations" and value != getattr(defaults, name)
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    def _keys(self) -> list[str]:
        keys = [key for name in self.operations for key in _OPERATIONS[name].keys]
        return [*keys, "operation"] if self.mode == "single" else keys

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Draw transformation parameters for ``n`` images.

        Parameters
        ----------
        n : int
            Number of images the parameters are for: at least the size of the largest batch
            they will be applied to.
        generator : torch.Generator
            Source of every random number; the parameters are created on its device.

        Returns
        -------
        dict of str to Tensor
            Parameters with ``n`` rows each; the keys are listed in the class Notes. With
            ``per_sample=False`` all rows are equal.
        """
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"n must be a non-negative int; got {n!r} of type {type(n).__name__}.")
        if n < 0:
            raise ValueError(f"n must be a non-negative int; got {n!r}.")
        _check_generator(generator)
        n = int(n)
        draws = n if self.per_sample else 1
        params: dict[str, torch.Tensor] = {}
        for name in self.operations:
            params.update(_OPERATIONS[name].sample(self, draws, generator))
        if self.mode == "single":
            params["operation"] = torch.randint(
                len(self.operations), (draws,), generator=generator, device=generator.device
            )
        if not self.per_sample:
            params = {k: v.expand(n, *v.shape[1:]).contiguous() for k, v in params.items()}
        return params

    def apply(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """Transform a batch of images with parameters from :meth:`sample`.

        Parameters
        ----------
        x : Tensor of shape (m, C, H, W)
            Floating-point images, on the device of the parameters.
        params : dict of str to Tensor
            Parameters drawn by :meth:`sample` for ``n >= m`` images; image ``i`` uses row
            ``i`` of each.

        Returns
        -------
        Tensor of shape (m, C, H, W)
            The transformed images, in the dtype of ``x``, differentiable with respect to ``x``.
        """
        self._check_apply(x, params)
        if x.numel() == 0:
            # affine_grid rejects empty batches; there is nothing to transform.
            return x.clone()
        if self.mode == "all":
            for name in self.operations:
                x = _OPERATIONS[name].apply(self, x, params)
            return x
        chosen = params["operation"][: x.shape[0]]
        indices = range(len(self.operations))
        if chosen.device.type == "cpu":
            # Reading the choice costs no device synchronisation here, so operations that no
            # image chose are skipped (with a shared draw, all but one).
            indices = sorted(set(torch.unique(chosen).tolist()))
            if len(indices) == 1:
                return _OPERATIONS[self.operations[indices[0]]].apply(self, x, params)
        chosen = chosen.view(-1, 1, 1, 1)
        out = x
        for index in indices:
            y = _OPERATIONS[self.operations[index]].apply(self, x, params)
            out = torch.where(chosen == index, y, out)
        return out

    def __call__(self, x: torch.Tensor, *, generator: torch.Generator) -> torch.Tensor:
        """Augment ``x`` with parameters drawn from ``generator``: ``apply(x, sample(len(x)))``.

        Parameters
        ----------
        x : Tensor of shape (m, C, H, W)
            Floating-point images on the generator's device.
        generator : torch.Generator
            Source of every random number.

        Returns
        -------
        Tensor of shape (m, C, H, W)
            The transformed images.
        """
        _check_images(x)
        return self.apply(x, self.sample(x.shape[0], generator))

    def _check_apply(self, x, params) -> None:
        _check_images(x)
        if not isinstance(params, dict):
            raise TypeError(
                f"params must be the dict returned by sample(); got {type(params).__name__}."
            )
        missing = [key for key in self._keys() if key not in params]
        if missing:
            raise ValueError(
                f"params lacks {missing} needed by strategy={self.strategy!r} with "
                f"mode={self.mode!r}; draw the parameters with this object's sample()."
            )
        for key in self._keys():
            value = params[key]
            if value.shape[0] < x.shape[0]:
                raise ValueError(
                    f"params were drawn for {value.shape[0]} images but x holds {x.shape[0]}; "
                    "sample parameters for the largest batch they will be applied to."
                )
            if value.device != x.device:
                raise ValueError(
                    f"params are on {value.device} but x is on {x.device}; draw them with a "
                    f"generator on {x.device}."
                )


def _parse_strategy(strategy) -> tuple[str, ...]:
    valid = list(_OPERATIONS)
    if not isinstance(strategy, str):
        raise TypeError(
            "The 'strategy' parameter of SiameseAugment must be a str of operations joined by "
            f"underscores, such as 'crop_flip'; got {strategy!r}. Pass augment=None to the "
            "trainer for no augmentation."
        )
    if not strategy:
        raise ValueError(
            "The 'strategy' parameter of SiameseAugment is empty; name at least one of "
            f"{valid}, or pass augment=None to the trainer for no augmentation."
        )
    names = strategy.split("_")
    unknown = [name for name in names if name not in _OPERATIONS]
    if unknown:
        raise ValueError(
            f"The 'strategy' parameter of SiameseAugment names unknown operations {unknown} in "
            f"{strategy!r}; valid names are {valid}, joined by underscores."
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(
            f"The 'strategy' parameter of SiameseAugment names {repeated} more than once in "
            f"{strategy!r}; each operation may appear once."
        )
    return tuple(names)


def _check_images(x) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor of images; got {type(x).__name__}.")
    if x.ndim != 4:
        raise ValueError(
            "x must hold images of shape (n_samples, channels, height, width); got shape "
            f"{tuple(x.shape)}. Add a channel axis with x[:, None] for grey images."
        )
    if not x.is_floating_point():
        raise TypeError(f"x must hold floating-point images; got dtype {x.dtype}.")


def _check_generator(generator) -> None:
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator; got {type(generator).__name__}. Create one "
            "with torch.Generator(device).manual_seed(seed)."
        )


def make_augment(augment: str, *, default: bool, per_sample: bool = False) -> SiameseAugment | None:
    """Turn an ``augment`` parameter into an augmenter, or None for no augmentation.

    ``"auto"`` follows ``default`` (with DSA's full strategy), ``"dsa"`` is the full strategy,
    ``"none"`` disables augmentation, and any other string is a strategy. ``per_sample`` draws
    parameters per image (training a student) rather than per batch (siamese matching).
    """
    if not isinstance(augment, str):
        raise TypeError(f"augment must be a str; got {type(augment).__name__}.")
    if augment == "none" or (augment == "auto" and not default):
        return None
    if augment in ("auto", "dsa"):
        return SiameseAugment(per_sample=per_sample)
    try:
        return SiameseAugment(augment, per_sample=per_sample)
    except ValueError as exc:
        raise ValueError(
            f"augment must be 'auto', 'dsa', 'none' or a strategy of SiameseAugment: {exc}"
        ) from exc
