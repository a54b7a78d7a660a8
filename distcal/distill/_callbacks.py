"""Callbacks: hooks into a distillation run, with no-op defaults (as skorch's callbacks)."""

from __future__ import annotations

__all__ = ["Callback", "EarlyStopping", "ProgressBar"]


class Callback:
    """Base class of callbacks. Override the hooks you need; each receives the trainer.

    ``on_iteration_end`` may return True to stop the run after this iteration.
    """

    def on_fit_begin(self, trainer, *, start_iteration: int, **info) -> None:
        """Run before the first iteration (``start_iteration > 0`` when resuming)."""

    def on_iteration_end(self, trainer, *, iteration: int, loss: float, **info) -> bool | None:
        """Run after every iteration with its number (zero-based) and loss."""

    def on_fit_end(self, trainer, **info) -> None:
        """Run after the last iteration, also when a callback stopped the run."""


class ProgressBar(Callback):
    """A tqdm progress bar over iterations showing the latest loss (added by ``verbose=True``)."""

    def on_fit_begin(self, trainer, *, start_iteration: int, **info) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(
            total=trainer.iterations,
            initial=start_iteration,
            desc=f"distil ({trainer.method})",
            leave=False,
            dynamic_ncols=True,
        )

    def on_iteration_end(self, trainer, *, iteration: int, loss: float, **info) -> None:
        self._bar.update(1)
        self._bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def on_fit_end(self, trainer, **info) -> None:
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
        self._best = float("inf")
        self._since = 0

    def on_iteration_end(self, trainer, *, iteration: int, loss: float, **info) -> bool:
        if loss < self._best - self.min_delta:
            self._best, self._since = loss, 0
        else:
            self._since += 1
        return self._since >= self.patience
