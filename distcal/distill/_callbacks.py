"""Callbacks: hooks into a distillation run, with no-op defaults (as skorch's callbacks).

The progress bar, early stopping and checkpointing are all callbacks. Every hook receives the
trainer and, as the keyword ``state``, the :class:`FitState` of the run: the tensors and
records a callback may save or restore, so that no callback reads the trainer's private parts.
"""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .._params import Interval, check_param
from ._artifact import FORMAT_VERSION, read_tensors, write_tensors

__all__ = ["Callback", "Checkpoint", "EarlyStopping", "FitState", "ProgressBar"]


@dataclass
class FitState:
    """The state of a distillation run, as the trainer hands it to its callbacks.

    The tensors are the live ones of the run: a callback that restores a run copies into them
    in place and sets ``start_iteration``, ``history`` and ``seed``.

    Parameters
    ----------
    images : Tensor
        The synthetic images (a leaf tensor with gradients), on the distillation device.
    optimizer : torch.optim.Optimizer
        The optimizer of the images and of the method's extra parameters.
    method : DistillationMethod
        The method, after its ``setup``.
    seed : int
        The seed of the run's random streams.
    config : dict
        The run's JSON-safe configuration without the parameters that change neither the data
        nor the arithmetic (``iterations``, ``callbacks``, ``verbose``, the checkpoint
        parameters, ``distributed``) and without ``random_state``: what a resumed run must match.
    fingerprint : str
        A hash of the training data.
    seed_fixed : bool, default=True
        Whether the seed came from an explicit ``random_state``; a run with
        ``random_state=None`` continues a checkpoint's seed.
    rank : int, default=0
        This process's rank (only rank 0 writes files in a distributed run).
    start_iteration : int, default=0
        The iteration the run starts from (after a resume, the checkpoint's).
    history : list of dict, default=[]
        The records of the iterations done so far (appended to by the trainer).
    """

    images: torch.Tensor
    optimizer: torch.optim.Optimizer
    method: object
    seed: int
    config: dict
    fingerprint: str
    seed_fixed: bool = True
    rank: int = 0
    start_iteration: int = 0
    history: list = field(default_factory=list)


class Callback:
    """Base class of callbacks. Override the hooks you need; each receives the trainer.

    The trainer calls the hooks of its callbacks in order; the :class:`Checkpoint` it installs
    for its ``checkpoint`` parameter comes first, so that the others see a resumed run's start.
    """

    def on_fit_begin(self, trainer, *, start_iteration: int, **info) -> None:
        """Run before the first iteration.

        Parameters
        ----------
        trainer : MDTTrainer
            The trainer being fitted.
        start_iteration : int
            The first iteration to run (greater than 0 when resuming).
        **info
            ``state``: the :class:`FitState` of the run.
        """

    def on_iteration_end(self, trainer, *, iteration: int, loss: float, **info) -> bool | None:
        """Run after every iteration.

        Parameters
        ----------
        trainer : MDTTrainer
            The trainer being fitted.
        iteration : int
            The iteration just done (zero-based).
        loss : float
            Its loss.
        **info
            The iteration's other records (``seconds`` and what the method reports) and
            ``state``, the :class:`FitState` of the run.

        Returns
        -------
        bool or None
            True to stop the run after this iteration.
        """

    def on_fit_end(self, trainer, **info) -> None:
        """Run after the last iteration, also when a callback stopped the run.

        Parameters
        ----------
        trainer : MDTTrainer
            The fitted trainer.
        **info
            ``state``: the :class:`FitState` of the run.
        """


class ProgressBar(Callback):
    """A tqdm progress bar over iterations showing the latest loss (added by ``verbose=True``)."""

    def on_fit_begin(self, trainer, *, start_iteration: int, **info) -> None:
        """Open the bar at ``start_iteration`` of ``trainer.iterations``.

        Parameters
        ----------
        trainer : MDTTrainer
            The trainer being fitted.
        start_iteration : int
            The first iteration to run.
        **info
            Ignored.
        """
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=trainer.iterations,
            initial=start_iteration,
            desc=f"distil ({trainer.method})",
            leave=False,
            dynamic_ncols=True,
        )

    def on_iteration_end(self, trainer, *, iteration: int, loss: float, **info) -> None:
        """Advance the bar and show ``loss``.

        Parameters
        ----------
        trainer : MDTTrainer
            The trainer being fitted.
        iteration : int
            The iteration just done.
        loss : float
            Its loss.
        **info
            Ignored.
        """
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def on_fit_end(self, trainer, **info) -> None:
        """Close the bar.

        Parameters
        ----------
        trainer : MDTTrainer
            The fitted trainer.
        **info
            Ignored.
        """
        self._bar.close()


class EarlyStopping(Callback):
    """Stop when the loss has not improved by ``min_delta`` for ``patience`` iterations.

    Parameters
    ----------
    patience : int, default=200
        Iterations without improvement before stopping.
    min_delta : float, default=0.0
        Smallest decrease of the loss that counts as an improvement.
    """

    def __init__(self, patience: int = 200, min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"patience must be a positive int; got {patience!r}.")
        self.patience = patience
        self.min_delta = min_delta

    def on_fit_begin(self, trainer, *, start_iteration: int, **info) -> None:
        """Forget the best loss of any earlier run.

        Parameters
        ----------
        trainer : MDTTrainer
            The trainer being fitted.
        start_iteration : int
            The first iteration to run.
        **info
            Ignored.
        """
        self._best = float("inf")
        self._since = 0

    def on_iteration_end(self, trainer, *, iteration: int, loss: float, **info) -> bool:
        """Count the iterations since the last improvement of the loss.

        Parameters
        ----------
        trainer : MDTTrainer
            The trainer being fitted.
        iteration : int
            The iteration just done.
        loss : float
            Its loss.
        **info
            Ignored.

        Returns
        -------
        bool
            True once ``patience`` iterations have passed without improvement.
        """
        if loss < self._best - self.min_delta:
            self._best, self._since = loss, 0
        else:
            self._since += 1
        return self._since >= self.patience


class Checkpoint(Callback):
    """Save a run every ``every`` iterations and resume it from the file when it exists.

    :class:`MDTTrainer` installs one, first among its callbacks, for its ``checkpoint`` and
    ``checkpoint_every`` parameters. The file is a safetensors file (no pickle) written
    atomically (a temporary file, then a rename), holding the synthetic images, the method's
    state (for example MTT's learning rate), the optimizer's state, the history, the seed, the
    run's configuration and a fingerprint of the training data. At the start of a fit an
    existing file is resumed only if it was written by the same configuration on the same
    data, with the same seed (a ``random_state=None`` run continues the file's seed); otherwise
    the fit stops with a ``ValueError`` saying what differs. A resumed run ends with the
    images an uninterrupted run makes, bit for bit. The last state is saved at the end of the
    fit, also when a callback stopped it.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file.
    every : int, default=100
        Iterations between two saves.

    Attributes
    ----------
    last_saved : int
        Iterations done when the file was last written or read (0 before any).
    """

    def __init__(self, path, every: int = 100):
        check_param(path, _PATH, "path", "Checkpoint")
        check_param(
            every, Interval(numbers.Integral, 1, None, closed="left"), "every", "Checkpoint"
        )
        self.path = Path(path)
        self.every = every
        self.last_saved = 0

    def saved_seed(self) -> int | None:
        """Return the seed of the run saved at :attr:`path`, or None when there is no file.

        The trainer reads it before a method's setup, so that a ``random_state=None`` run
        resumes with everything its setup draws (MTT's expert trajectories) drawn as before.

        Returns
        -------
        int or None
            The saved run's seed.
        """
        if not self.path.exists():
            return None
        _, metadata = read_tensors(self.path, kind="checkpoint")
        return int(metadata["seed"])

    def on_fit_begin(self, trainer, *, start_iteration: int, state: FitState, **info) -> None:
        """Resume the run from :attr:`path` if the file exists.

        Parameters
        ----------
        trainer : MDTTrainer
            The trainer being fitted.
        start_iteration : int
            The iteration the run would start from without the file.
        state : FitState
            The run, restored in place from the file.
        **info
            Ignored.

        Raises
        ------
        ValueError
            If the file was written with another seed, other settings or other data, or is
            not a readable checkpoint.
        """
        self.last_saved = start_iteration
        if not self.path.exists():
            return
        tensors, metadata = read_tensors(self.path, kind="checkpoint")
        if not state.seed_fixed:
            state.seed = int(metadata["seed"])  # random_state=None: continue the saved run
        elif int(metadata["seed"]) != state.seed:
            raise ValueError(
                f"The checkpoint {self.path} was written with random_state "
                f"{metadata['seed']}, not {state.seed}; delete it or use the same random_state."
            )
        current, saved = state.config, metadata["config"]
        differing = sorted(k for k in set(current) | set(saved) if current.get(k) != saved.get(k))
        if differing:
            raise ValueError(
                f"The checkpoint {self.path} was written with other settings "
                f"({', '.join(f'{k}={saved.get(k)!r}' for k in differing)}); delete it or "
                "restore those settings to resume."
            )
        if metadata["fingerprint"] != state.fingerprint:
            raise ValueError(
                f"The checkpoint {self.path} was written for other training data; delete "
                "it or pass the same X and y to resume."
            )
        iterations = getattr(trainer, "iterations", None)
        if iterations is not None and int(metadata["iteration"]) > iterations:
            raise ValueError(
                f"The checkpoint {self.path} is at iteration {metadata['iteration']}, beyond "
                f"iterations={iterations}: resuming would return the longer run. Set "
                f"iterations to at least {metadata['iteration']}, or delete the checkpoint "
                "to distil the shorter run."
            )
        device = state.images.device
        with torch.no_grad():
            state.images.copy_(tensors["images"].to(device))
        state.method.load_state_dict(
            {
                key.removeprefix("method."): value.to(device)
                for key, value in tensors.items()
                if key.startswith("method.")
            }
        )
        optimizer_state = state.optimizer.state_dict()
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                optimizer_state["state"].setdefault(int(index), {})[name] = value.to(device)
        groups = zip(optimizer_state["param_groups"], metadata["param_groups"], strict=True)
        for group, saved_group in groups:
            group.update(saved_group)
        state.optimizer.load_state_dict(optimizer_state)
        state.start_iteration = int(metadata["iteration"])
        state.history[:] = list(metadata["history"])
        self.last_saved = state.start_iteration

    def on_iteration_end(self, trainer, *, iteration: int, loss: float, **info) -> None:
        """Save the run when ``iteration + 1`` is a multiple of :attr:`every`.

        Parameters
        ----------
        trainer : MDTTrainer
            The trainer being fitted.
        iteration : int
            The iteration just done.
        loss : float
            Its loss.
        **info
            ``state``, the :class:`FitState` of the run, and the iteration's other records.
        """
        done = iteration + 1
        if done % self.every == 0:
            self._save(info["state"], done)

    def on_fit_end(self, trainer, **info) -> None:
        """Save the run's last state unless the last save already holds it.

        Parameters
        ----------
        trainer : MDTTrainer
            The fitted trainer.
        **info
            ``state``, the :class:`FitState` of the run.
        """
        state = info["state"]
        if len(state.history) != self.last_saved:
            self._save(state, len(state.history))

    def kept(self) -> str:
        """Describe the last good checkpoint, for the error of a diverged run.

        Returns
        -------
        str
            A sentence naming the file and its iteration, or ``""`` if nothing was saved yet.
        """
        if self.last_saved == 0:
            return ""
        return f"The last good checkpoint, {self.path} (iteration {self.last_saved}), is kept."

    def _save(self, state: FitState, done: int) -> None:
        if state.rank == 0:
            tensors = {"images": state.images}
            for key, value in state.method.state_dict().items():
                tensors[f"method.{key}"] = value
            optimizer_state = state.optimizer.state_dict()
            for index, entries in optimizer_state["state"].items():
                for key, value in entries.items():
                    if isinstance(value, torch.Tensor):
                        tensors[f"optimizer.{index}.{key}"] = value
            metadata = {
                "kind": "checkpoint",
                "format_version": FORMAT_VERSION,
                "iteration": done,
                "seed": state.seed,
                "config": state.config,
                "fingerprint": state.fingerprint,
                "history": state.history,
                "param_groups": [
                    {k: v for k, v in group.items() if k != "params"}
                    for group in optimizer_state["param_groups"]
                ],
            }
            write_tensors(self.path, tensors, metadata)
        self.last_saved = done


class _PathConstraint:
    def is_satisfied_by(self, value) -> bool:
        return isinstance(value, str | os.PathLike)

    def __str__(self) -> str:
        return "a str or os.PathLike naming a file"


_PATH = _PathConstraint()
