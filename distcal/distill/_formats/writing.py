"""What every writer shares: the set to write, and the refusal of soft labels.

Some formats store class indices only; they refuse a set with soft labels.
"""

from __future__ import annotations

from .._artifact import DistilledSet
from .loaded import LoadedSet, _from_distilled


def _as_loaded(distilled) -> LoadedSet:
    if isinstance(distilled, LoadedSet):
        return distilled
    if isinstance(distilled, DistilledSet):
        return _from_distilled(distilled, "the set")
    raise TypeError(
        f"distilled must be a DistilledSet or a LoadedSet; got {type(distilled).__name__}."
    )


def _hard_only(loaded: LoadedSet, format: str) -> None:
    if loaded.soft:
        raise ValueError(
            f"The {format!r} format stores class indices and the set has soft labels; export "
            "it as 'datm' or 'plain'."
        )
