"""Progress bars for long work, switched by each estimator's ``verbose`` parameter."""

from __future__ import annotations

from collections.abc import Iterable


def progress(iterable: Iterable, *, enabled: bool, desc: str | None = None, total=None, **kwargs):
    """Wrap ``iterable`` in a tqdm progress bar when ``enabled``; return it unchanged otherwise."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, **kwargs)


class _NoBar:
    """What :func:`counter` returns when disabled: updates go nowhere."""

    def update(self, n: int = 1) -> None:
        """Ignore ``n`` units of progress."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        return None


def counter(total: int, *, enabled: bool, desc: str | None = None, unit: str = "it"):
    """Return a progress bar of ``total`` units advanced by ``update(n)``, or a silent one.

    Use it as a context manager, so the bar closes when the work ends or fails.
    """
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
