"""ZCA whitening as the dataset-distillation repositories apply it, and its inverse.

Published distilled CIFAR sets are often stored in ZCA space, and the files do not hold the
whitening matrix: it must be refitted from the real training images, with the regularisation
the distiller used. Two definitions are in use, both regularised by ``eps = 0.1``:

- ``"kornia"``: ``kornia.enhance.ZCAWhitening(eps=0.1, compute_inv=True)`` fitted on the whole
  real training set in [0, 1] (mtt-distillation ``utils.py::get_dataset``, DATM
  ``utils/utils_baseline.py::get_dataset``, DD-Ranking ``ddranking/utils/data.py``). Each image
  is flattened; the data are centred on the mean image; the covariance is unbiased
  (``N - 1``); with its eigen-decomposition ``U S U^T`` the whitening is
  ``(x - mean) U (S + eps)^(-1/2) U^T`` and the inverse ``z U (S + eps)^(1/2) U^T + mean``.
- ``"kip"``: KIP's preprocessing as dc_benchmark applies it to the KIP sets
  (``data_loader/kip_data_loader.py``) and neural-tangents' KIP code defines it
  (``_get_whitening_transform`` with ``layer_norm=True, zca_reg=0.1``): each flattened image is
  centred on its own mean and scaled to unit norm ("layer norm"); the covariance is the
  uncentred ``X^T X / N``; ``eps * trace / D`` is added to its diagonal; the whitening is
  ``x U S^(-1/2) U^T``. With fewer images than features the smallest ``D - N`` factors are
  set to 1 (KIP's "rank control"; dc_benchmark omits it, and the two agree whenever
  ``N >= D``, as on CIFAR). The per-image layer norm cannot be undone: the inverse returns
  the centred unit-norm image.

The matrices are computed in float64, accumulating the covariance over chunks of rows, so a
refit on the same images gives the same transform up to float64 rounding.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .._device import like
from .._params import Interval, Options, validate_params
from .._validation import check_inputs

__all__ = ["ZCAWhitening"]

#: Rows per chunk of the covariance accumulation (float64 copies of this many images).
_CHUNK_ROWS = 2048


class ZCAWhitening(TransformerMixin, BaseEstimator):
    """ZCA whitening of images with the regularisation of the distillation repositories.

    Parameters
    ----------
    method : {"kornia", "kip"}, default="kornia"
        ``"kornia"``: ``kornia.enhance.ZCAWhitening(eps=eps)`` as MTT, DATM and DD-Ranking fit
        it (centred, unbiased covariance, ``eps`` added to the eigenvalues). ``"kip"``: KIP's
        (each image centred and scaled to unit norm, uncentred covariance, ``eps`` times the
        mean eigenvalue added, rank control with fewer images than features). The module
        docstring gives both definitions and their sources.
    eps : float, default=0.1
        The regularisation; 0.1 in every repository.

    Attributes
    ----------
    mean_ : Tensor of shape (n_features,)
        The mean image, flattened (zeros for ``"kip"``, which does not centre), float64.
    whitening_ : Tensor of shape (n_features, n_features)
        The symmetric whitening matrix, acting on the right of flattened rows, float64.
    coloring_ : Tensor of shape (n_features, n_features)
        Its inverse, float64.
    input_shape_ : tuple of int
        The shape of one image, ``(C, H, W)``.
    n_features_in_ : int
        The number of values in one image (the product of ``input_shape_``).
    n_samples_fit_ : int
        The number of images fitted on.

    See Also
    --------
    distcal.distill.read_distilled : Reads distilled sets, some of them in ZCA space.

    Notes
    -----
    The transform is computed in float64 and returned in the input's floating dtype. Kornia
    computes in the dtype it is given (float32 on a GPU in the repositories), so a set
    whitened there and the same images whitened here differ by float32 rounding, about
    ``1e-6`` relative.

    Examples
    --------
    >>> import torch
    >>> from distcal.distill import ZCAWhitening
    >>> images = torch.rand(200, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> zca = ZCAWhitening().fit(images)
    >>> white = zca.transform(images)
    >>> bool(torch.allclose(zca.inverse_transform(white), images, atol=1e-5))
    True
    """

    _parameter_constraints = {
        "method": [Options("kornia", "kip")],
        "eps": [Interval(numbers.Real, 0, None, closed="neither")],
    }

    def __init__(self, method="kornia", *, eps=0.1):
        self.method = method
        self.eps = eps

    def fit(self, X, y=None):
        """Fit the whitening to images (the whole real training set, in [0, 1]).

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            The images; each is flattened.
        y : None
            Ignored.

        Returns
        -------
        self : ZCAWhitening
            The fitted transform.
        """
        validate_params(self)
        images = check_inputs(X)
        n = images.shape[0]
        if n < 2:
            raise ValueError(
                f"ZCAWhitening needs at least 2 images to estimate a covariance; got n_samples={n}."
            )
        rows = images.reshape(n, -1)
        d = rows.shape[1]
        if self.method == "kornia":
            mean = torch.zeros(d, dtype=torch.float64, device=rows.device)
            for start in range(0, n, _CHUNK_ROWS):
                mean += rows[start : start + _CHUNK_ROWS].to(torch.float64).sum(0)
            mean /= n
        else:
            mean = torch.zeros(d, dtype=torch.float64, device=rows.device)
        cov = torch.zeros(d, d, dtype=torch.float64, device=rows.device)
        for start in range(0, n, _CHUNK_ROWS):
            chunk = self._prepare(rows[start : start + _CHUNK_ROWS].to(torch.float64)) - mean
            cov += chunk.T @ chunk
        if self.method == "kornia":
            cov /= n - 1
            values, vectors = torch.linalg.eigh(cov)
            # kornia takes singular values of the covariance: its eigenvalues' magnitudes
            values = values.abs() + self.eps
            scale = values.rsqrt()
        else:
            cov /= n
            cov += torch.eye(d, dtype=torch.float64, device=cov.device) * (
                self.eps * torch.trace(cov) / d
            )
            values, vectors = torch.linalg.eigh(cov)
            values = values.abs()
            scale = values.rsqrt()
            if n < d:
                # KIP's rank control: eigenvalues in decreasing order, those past the N-th
                # (the directions the data cannot span) are left unscaled.
                order = torch.argsort(values, descending=True)
                scale[order[n:]] = 1.0
        self.mean_ = mean
        self.whitening_ = (vectors * scale) @ vectors.T
        self.coloring_ = (vectors / scale) @ vectors.T
        self.input_shape_ = tuple(images.shape[1:])
        self.n_features_in_ = d
        self.n_samples_fit_ = n
        return self

    def _prepare(self, rows: torch.Tensor) -> torch.Tensor:
        """KIP's per-image layer norm (centred, unit norm); nothing for kornia."""
        if self.method != "kip":
            return rows
        rows = rows - rows.mean(dim=1, keepdim=True)
        norms = rows.norm(dim=1, keepdim=True)
        if bool((norms == 0).any()):
            raise ValueError(
                "ZCAWhitening(method='kip') scales each image to unit norm, and an image is "
                "constant (norm 0 after centring)."
            )
        return rows / norms

    def _check(self, X, name: str) -> tuple[torch.Tensor, torch.dtype]:
        check_is_fitted(self)
        images = check_inputs(X, name=name)
        if tuple(images.shape[1:]) != self.input_shape_:
            n_features = int(np.prod(images.shape[1:]))
            raise ValueError(
                f"{name} has {n_features} features, but ZCAWhitening is expecting "
                f"{self.n_features_in_} features as input: {name} has images of shape "
                f"{tuple(images.shape[1:])}, and it was fitted on images of shape "
                f"{self.input_shape_}."
            )
        return images, images.dtype

    def transform(self, X):
        """Whiten images.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Images in the space the transform was fitted in ([0, 1] pixels).

        Returns
        -------
        ndarray or Tensor of shape (n_samples, ...)
            The whitened images, in the container and floating dtype of ``X``.
        """
        images, dtype = self._check(X, "X")
        rows = images.reshape(images.shape[0], -1)
        out = torch.empty(rows.shape, dtype=dtype, device=rows.device)
        for start in range(0, rows.shape[0], _CHUNK_ROWS):
            chunk = self._prepare(rows[start : start + _CHUNK_ROWS].to(torch.float64))
            out[start : start + _CHUNK_ROWS] = ((chunk - self.mean_) @ self.whitening_).to(dtype)
        return like(out.reshape(images.shape), X)

    def inverse_transform(self, X):
        """Map whitened images back to pixels.

        Parameters
        ----------
        X : array-like or Tensor of shape (n_samples, ...)
            Whitened images.

        Returns
        -------
        ndarray or Tensor of shape (n_samples, ...)
            The images before whitening (for ``"kip"``: each centred and of unit norm), in the
            container and floating dtype of ``X``.
        """
        images, dtype = self._check(X, "X")
        rows = images.reshape(images.shape[0], -1)
        out = torch.empty(rows.shape, dtype=dtype, device=rows.device)
        for start in range(0, rows.shape[0], _CHUNK_ROWS):
            chunk = rows[start : start + _CHUNK_ROWS].to(torch.float64)
            out[start : start + _CHUNK_ROWS] = (chunk @ self.coloring_ + self.mean_).to(dtype)
        return like(out.reshape(images.shape), X)
