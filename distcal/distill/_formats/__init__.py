"""Distilled sets made by other tools: read them, say what they hold, write them back.

Each format is named by where its files come from, and was read from the code that writes it.
One module per family of formats says how it lays its files out: ``mtt`` (MTT and DATM),
``condensation`` (DatasetCondensation's DC, DSA and DM), ``kip``, ``image_folder`` (SRe2L and
RDED) and ``plain`` (distcal's own file, and a plain dictionary of tensors). ``space`` holds
the pixel spaces and the statistics the repositories normalise with, ``loaded`` what every
reader returns, ``writing`` what every writer shares, and ``registry`` the formats by name
with the three doors: :func:`read_distilled`, :func:`detect_format` and
:func:`export_distilled`.

``.pt`` files are read with ``torch.load(weights_only=True)``: tensors, lists, dicts and
numbers only, nothing that can execute code. Whatever a file does not hold and the evaluation
needs (the pixel space, its statistics or ZCA, the learning rate) is an argument whose default
is the repository's, and :attr:`LoadedSet.assumed` lists what was assumed.
"""

from .loaded import LoadedSet
from .registry import FORMATS, detect_format, export_distilled, read_distilled
from .space import STATISTICS, PixelSpace

__all__ = [
    "FORMATS",
    "STATISTICS",
    "LoadedSet",
    "PixelSpace",
    "detect_format",
    "export_distilled",
    "read_distilled",
]
