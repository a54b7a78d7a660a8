"""Files: the one place distcal writes results and reads its own files back.

A file is written to a temporary file in the same folder, then renamed over the target, so a
crash or a full disk while writing leaves the previous file (or no file) and never a
half-written one; the temporary file is removed when the write fails. distcal's own files
(distilled sets, networks, checkpoints, calibrators) are safetensors files: tensors and a JSON
header, nothing that can execute code when loaded; a truncated or tampered file gives a
``ValueError`` naming it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

__all__ = [
    "FORMAT_VERSION",
    "atomic_write",
    "atomic_write_text",
    "read_tensors",
    "write_tensors",
]


def atomic_write(path, write: Callable[[str], object]) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


FORMAT_VERSION = 1


def write_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict) -> Path:
    """Write tensors and a JSON-serialisable ``metadata`` dict atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"distcal": json.dumps(metadata, sort_keys=True)}
    contiguous = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda temporary: save_file(contiguous, temporary, metadata=header))


def read_tensors(path, *, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read what :func:`write_tensors` wrote; check that the file holds a distcal ``kind``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        tensors = load_file(path)
        from safetensors import safe_open

        with safe_open(path, framework="pt") as handle:
            header = handle.metadata() or {}
        metadata = json.loads(header["distcal"])
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"{path} is not a readable distcal file (truncated, corrupt or another format): {exc}"
        ) from exc
    if metadata.get("kind") != kind:
        raise ValueError(f"{path} holds a {metadata.get('kind')!r}, not a {kind!r}.")
    if metadata.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by a newer distcal (format {metadata['format_version']}); this "
            f"version reads format {FORMAT_VERSION}."
        )
    return tensors, metadata
