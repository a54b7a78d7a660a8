"""Progress bars for long work, switched by each estimator's ``verbose`` parameter."""

from __future__ import annotations

from collections.abc import Iterable


def progress(iterable: Iterable, *, enabled: bool, desc: str | None = None, total=None, **kwargs):
    """Wrap ``iterable`` in a tqdm progress bar when ``enabled``; return it unchanged otherwise."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, **kwargs)
