"""Sweeps: several distillation runs in parallel, through joblib."""

from __future__ import annotations

import os

from joblib import Parallel, delayed
from sklearn.base import clone

from .._device import one_thread_in_workers, warn_if_workers_trim_memory

__all__ = ["fit_trainers"]


def _fit_one(trainer, X, y, parent: int):
    one_thread_in_workers(parent)
    return trainer.fit(X, y)


def fit_trainers(trainers, X, y, *, n_jobs=None):
    """Fit several trainers on the same data, in parallel through joblib.

    A sweep over methods, MDT mask ratios or seeds is a list of
    :class:`~distcal.distill.MDTTrainer` (or any estimator with ``fit(X, y)``); each is cloned,
    so the list given is left unfitted, and fitted in its own job. The backend is joblib's:
    loky processes by default, or a Dask or Ray cluster within
    ``joblib.parallel_config(backend="dask")``. Each worker process uses one torch thread, and
    every run draws its randomness from its own ``random_state``, so a run gives the same
    result in parallel as alone, on the same number of threads.

    Parameters
    ----------
    trainers : list of estimators
        The runs of the sweep.
    X, y : array-like or Tensor
        The training data, shared by every run.
    n_jobs : int or None, default=None
        Parallel jobs (None or 1: one after the other; -1: one per core).

    Returns
    -------
    list
        The fitted clones, in the order of ``trainers``.

    Examples
    --------
    >>> from distcal.distill import MDTTrainer, fit_trainers, load_digits
    >>> data = load_digits()
    >>> sweep = [MDTTrainer(ipc=1, width=8, depth=2, iterations=2, mask_ratio=ratio,
    ...                     method_params={"batch_real": 8}, random_state=0)
    ...          for ratio in (0.0, 0.3)]
    >>> [t.mask_ratio for t in fit_trainers(sweep, data.images, data.labels)]
    [0.0, 0.3]
    """
    if isinstance(trainers, str) or not hasattr(trainers, "__iter__"):
        raise TypeError(f"trainers must be a list of estimators; got a {type(trainers).__name__}.")
    trainers = [clone(trainer) for trainer in trainers]
    if not trainers:
        raise ValueError("trainers is empty: give at least one run to fit.")
    parent = os.getpid()
    if n_jobs not in (None, 1):
        warn_if_workers_trim_memory("fit_trainers")
    return Parallel(n_jobs=n_jobs)(delayed(_fit_one)(t, X, y, parent) for t in trainers)
