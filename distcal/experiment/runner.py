"""Running the experiment over seeds: configuration, resuming, parallel seeds, the outputs."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from joblib import Parallel, delayed

from .._device import one_thread_in_workers, warn_if_workers_trim_memory
from .._progress import progress
from ..distill import load_dataset
from .figures import draw_figures
from .files import environment, load_seed, save_seed, write_tables
from .pipeline import run_seed, split_indices
from .report import summarise, summarise_diagnostics
from .settings import Profile, dataset_recipe, profile_by_name

__all__ = ["check_device", "run_experiment"]


def check_device(device) -> torch.device:
    """Return ``device`` as a :class:`torch.device` if this machine has it, else say why not.

    Parameters
    ----------
    device : str or torch.device
        A torch device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ...

    Returns
    -------
    torch.device
        The device.

    Raises
    ------
    ValueError
        If ``device`` is not a torch device, or its backend or index is not available here.
    """
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(
            f"device must be a torch device such as 'cpu', 'cuda', 'cuda:1' or 'mps'; got "
            f"{device!r}."
        ) from None
    kind = resolved.type
    if kind == "cpu":
        return resolved
    if kind == "mps":
        backend, available = None, torch.backends.mps.is_available()
    else:
        backend = getattr(torch, kind, None)
        available = bool(backend is not None and backend.is_available())
    if not available:
        built = (
            "" if kind != "cuda" or torch.version.cuda else " (this torch is built without CUDA)"
        )
        raise ValueError(f"device {device!r} is not available on this machine{built}.")
    count = getattr(backend, "device_count", None)
    if resolved.index is not None and count is not None and resolved.index >= count():
        raise ValueError(
            f"device {device!r} is not available on this machine: it has {count()} {kind} "
            f"device(s), numbered from 0."
        )
    return resolved


def run_experiment(
    dataset: str = "digits",
    *,
    profile: str | Profile = "small",
    seeds=(0, 1, 2),
    device=None,
    output=None,
    root=None,
    verbose: bool = True,
    n_jobs: int | None = None,
    threads: int = 1,
) -> dict:
    """Run the experiment and return its rows, summary and diagnostics.

    Parameters
    ----------
    dataset : {"digits", "fashion-mnist"}, default="digits"
        scikit-learn's digits (embedded) or Fashion-MNIST (Debian's IDX files, or ``root``).
    profile : {"smoke", "small", "paper"} or Profile, default="small"
        Sizes of the run (see :data:`PROFILES`).
    seeds : iterable of int, default=(0, 1, 2)
        One full run per seed (splits, distillation, students, masks); results are reported
        as mean and sample standard deviation over seeds.
    device : str or torch.device, default=None
        Where to train (None: the CPU).
    output : str or path, default=None
        Folder for ``results.csv`` (one row per seed, set, student and calibrator),
        ``comparisons.csv`` (paired bootstrap intervals per seed), ``diagnostics.csv``
        (maximum-logit statistics per seed), ``summary.csv``, ``max_logits.csv``,
        ``summary.md``, ``recipes.csv`` (each distilled set's calibration recipe),
        ``results.json``, the figures, the distilled sets with their recipes (``sets/``) and
        the per-seed files that let an interrupted run resume; None writes nothing.
    root : str or path, default=None
        Folder of the Fashion-MNIST files.
    verbose : bool, default=True
        Show progress bars (with ``n_jobs``, one bar over the seeds).
    n_jobs : int or None, default=None
        Seeds run in parallel through joblib (None or 1: one after the other; -1: one process
        per core). The backend is joblib's: loky processes by default, or a Dask or Ray cluster
        within ``joblib.parallel_config(backend="dask")`` (or ``"ray"``). Each worker loads the
        data itself and saves its seed when it finishes, so an interrupted parallel run resumes
        too.
    threads : int, default=1
        Torch threads of each seed (restored afterwards). Floating-point sums depend on it, so
        it is part of the configuration: a seed gives the same results whichever ``n_jobs``
        runs it, and a rerun on the same machine reproduces its rows exactly.

    Returns
    -------
    dict
        ``config`` (including the thread count and library versions), ``rows``,
        ``comparisons``, ``summary`` (mean, SD and 95% t-interval over seeds),
        ``diagnostics`` (maximum-logit statistics per seed), ``diagnostics_summary``
        (:func:`summarise_diagnostics`), ``recipes`` (per seed and distilled set, its
        calibration recipe) and ``stage_seconds`` (per seed, the seconds of each stage:
        distillation, recipes, students, calibration, evaluation, full-data network).

    Raises
    ------
    ValueError
        If the dataset or the profile has no such name, ``seeds`` is empty, ``threads`` is not
        a positive int, or ``device`` is not available (:func:`check_device`).
    """
    dataset_recipe(dataset)  # a known dataset
    if device is not None:
        check_device(device)
    profile_spec = profile_by_name(profile)
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed.")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int; got {threads!r}.")
    config = {
        "dataset": dataset,
        "profile": asdict(profile_spec),
        "seeds": seeds,
        "device": None if device is None else str(device),
        "distcal": _version(),
        "environment": environment(threads),
    }
    out = Path(output) if output is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    done = {seed: load_seed(out, config, seed, required={"recipes": dict}) for seed in seeds}
    todo = [seed for seed in seeds if done[seed] is None]
    # Figures show the first seed; a resumed run that has it keeps its figures.
    figure_seed = seeds[0] if out is not None else None
    job = _SeedJob(dataset, root, profile_spec, device, out, config, figure_seed, threads)
    if n_jobs in (None, 1) or len(todo) <= 1:
        data = load_dataset(dataset, root=root)
        for seed in todo:
            done[seed] = job(seed, data=data, verbose=verbose)
    else:
        # Seeds in parallel through joblib: loky processes by default, or any backend chosen
        # with joblib.parallel_config (Dask, Ray). Each job loads the data and saves its seed.
        warn_if_workers_trim_memory("run_experiment")
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(job)(seed, data=None, verbose=False, parent=os.getpid()) for seed in todo
        )
        for result in progress(results, enabled=verbose, desc="seeds", total=len(todo)):
            done[result["seed"]] = result
    per_seed = [done[seed] for seed in seeds]
    rows = [row for result in per_seed for row in result["rows"]]
    diagnostics = {r["seed"]: r["diagnostics"] for r in per_seed}
    result = {
        "config": config,
        "rows": rows,
        "comparisons": [row for r in per_seed for row in r["comparisons"]],
        "summary": summarise(rows),
        "diagnostics": diagnostics,
        "diagnostics_summary": summarise_diagnostics(diagnostics),
        "recipes": {r["seed"]: r["recipes"] for r in per_seed},
        "stage_seconds": {r["seed"]: r["stage_seconds"] for r in per_seed},
    }
    if out is not None:
        write_tables(out, result)
    return result


# eq=False: hashed by identity, as joblib's Dask backend hashes the functions it sends
# (a frozen dataclass with a dict field would hash its fields, and fail).
@dataclass(frozen=True, eq=False)
class _SeedJob:
    """One seed of a run, as a process of its own can run it (picklable)."""

    dataset: str
    root: object
    profile: Profile
    device: object
    out: Path | None
    config: dict
    figure_seed: int | None
    threads: int

    def __call__(self, seed: int, *, data, verbose: bool, parent=None) -> dict:
        """Run one seed on ``threads`` torch threads; draw its figures if it is the first; save."""
        one_thread_in_workers(parent)
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            if data is None:
                data = load_dataset(self.dataset, root=self.root)
            figures = {} if seed == self.figure_seed else None
            sets = None if self.out is None else self.out / "sets"
            result = run_seed(
                data, self.dataset, self.profile, seed, self.device, verbose, figures, sets
            )
            if figures:
                draw_figures(self.out, figures, split_indices(data, seed), data, self.profile)
        finally:
            torch.set_num_threads(previous)
        save_seed(self.out, self.config, result)
        return result


def _version() -> str:
    from .._version import __version__

    return __version__
