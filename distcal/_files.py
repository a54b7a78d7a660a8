"""Files: the one place distcal writes results and reads its own files back.

Every file distcal writes goes through :func:`atomic_write`: the content is written to a
temporary file in the same folder (named after the target and the writing process), flushed to
disk, given the permissions of the file it replaces (a new file: those the umask allows), and
renamed over the target. A crash, a kill or a full disk while writing leaves the previous file
(or no file), never a half-written one; the temporary file is removed when the write fails, and
temporaries left by a writer that was killed (its process no longer exists) are removed by the
next write to the same target.

A set of files that belong together (the calibrator, figure and scores of ``distcal
calibrate``) is written with :func:`staged_folder`: into a new temporary folder beside the
target folder, moved in only when every file is written, so that a failure leaves the old set
whole and never mixes an old file with a new one.

distcal's own files (distilled sets, networks, checkpoints, calibrators, expert trajectories)
are safetensors files: tensors and a JSON header, nothing that can execute code when loaded.
They are serialised in memory and written by :func:`atomic_write` (the serializer's own
file writer would leave a second full-size temporary behind when killed). The header carries a
SHA-256 digest of the metadata and of every tensor's name, dtype, shape and bytes; reading
recomputes it, so a truncated, damaged or edited file gives a ``ValueError`` naming it before
anything is built from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from .exceptions import DistcalWarning

__all__ = [
    "FORMAT_VERSION",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "read_tensors",
    "staged_folder",
    "write_tensors",
]

_UMASK_LOCK = threading.Lock()


def _umask() -> int:
    # os.umask can only be read by setting it; the lock keeps distcal's own threads from
    # seeing the temporary value.
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists, owned by someone else (or unknowable): leave its files alone
    return True


def _remove_stale_temporaries(path: Path) -> None:
    """Remove temporaries of ``path`` left by writers whose process no longer exists."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(\d+)\.[^.]+\.tmp$")
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = pattern.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _process_alive(int(match.group(1))):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)  # a staged folder (staged_folder)
            else:
                entry.unlink(missing_ok=True)


def _mode_for(path: Path, default: int) -> int:
    """Return the permissions of the file ``path`` replaces, or ``default`` for a new one."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return default


def atomic_write(path, write: Callable[[str], object]) -> Path:
    """Call ``write(temporary_path)``, then rename the temporary file to ``path``.

    The temporary file lives in the folder of ``path`` and is named
    ``.<name>.<pid>.<random>.tmp``; it is flushed to disk before the rename and given the
    permissions of the file it replaces, or those a new file gets under the current umask.
    Folders created for it are removed again when the write fails, so that a failed write
    leaves nothing behind.
    """
    path = Path(path)
    created = [folder for folder in Path(os.path.abspath(path)).parents if not folder.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent
        )
        os.close(handle)
        write(temporary)
        with open(temporary, "rb+") as flushed:
            os.fsync(flushed.fileno())
        os.chmod(temporary, _mode_for(path, 0o666 & ~_umask()))
        os.replace(temporary, path)
    except BaseException:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        for folder in created:  # deepest first; one that is not empty now is kept
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    return atomic_write(path, lambda temporary: Path(temporary).write_bytes(data))


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def staged_folder(path, names: Iterable[str]) -> Iterator[Path]:
    """Write a set of files into the folder ``path`` all at once, or not at all.

    Yields a new temporary folder beside ``path`` (in the same parent, so on the same file
    system) to write the files in. When the block ends without an error, they move into
    ``path``: if ``path`` does not exist, or holds nothing but files of ``names``, the temporary
    folder is renamed to ``path`` (the old folder renamed away first, then removed), so that
    ``path`` holds the old set or the new one, never a mix. If ``path`` holds other files too,
    each new file is renamed over its namesake (one atomic rename each) and the files of
    ``names`` that were not written this time are removed. A file that replaces another keeps
    its permissions. On an error, the temporary folder is removed and ``path`` is untouched.

    Parameters
    ----------
    path : str or path
        The folder the files go to; created if needed.
    names : iterable of str
        The file names of the set: those of an earlier set that are not written again are
        removed, so that no old file stays beside the new ones.
    """
    path = Path(os.path.abspath(path))  # "." has a name and a parent once absolute
    names = set(names)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    )
    try:
        yield staging
        os.chmod(staging, _mode_for(path, 0o777 & ~_umask()))
        written = [entry.name for entry in staging.iterdir()]
        for name in written:
            if (path / name).is_file():
                os.chmod(staging / name, _mode_for(path / name, 0o666))
        existing = list(path.iterdir()) if path.is_dir() else None
        if existing is None:
            os.rename(staging, path)
        elif all(entry.name in names and entry.is_file() for entry in existing):
            old = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}old.tmp"
            os.rename(path, old)
            os.rename(staging, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            for name in written:
                os.replace(staging / name, path / name)
            for name in names - set(written):
                (path / name).unlink(missing_ok=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


FORMAT_VERSION = 1
_DIGEST_KEY = "distcal_sha256"


def _digest(tensors: dict[str, torch.Tensor], metadata_json: str) -> str:
    """SHA-256 of the metadata and of every tensor's name, dtype, shape and bytes."""
    digest = hashlib.sha256(metadata_json.encode("utf-8"))
    for name in sorted(tensors):
        tensor = tensors[name].detach().to("cpu").contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode("utf-8"))
        if tensor.numel():
            digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def write_tensors(path, tensors: dict[str, torch.Tensor], metadata: dict) -> Path:
    """Write tensors and a JSON-serialisable ``metadata`` dict atomically to ``path``."""
    metadata_json = json.dumps(metadata, sort_keys=True)
    contiguous = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    header = {"distcal": metadata_json, _DIGEST_KEY: _digest(contiguous, metadata_json)}
    return atomic_write_bytes(path, _canonical(save(contiguous, metadata=header)))


def _canonical(data: bytes) -> bytes:
    """Return the same safetensors file with its header's keys in sorted order.

    The serializer orders the header's metadata as a hash map does, differently from run to
    run; sorted keys make the same content the same bytes. Offsets are relative to the data
    after the header, so they do not change.
    """
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    ordered = {}
    if "__metadata__" in header:
        ordered["__metadata__"] = dict(sorted(header.pop("__metadata__").items()))
    ordered.update(sorted(header.items()))
    text = json.dumps(ordered, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the format aligns the data to 8 bytes
    return len(text).to_bytes(8, "little") + text + data[8 + size :]


def read_tensors(
    path, *, kind: str, version: int = FORMAT_VERSION
) -> tuple[dict[str, torch.Tensor], dict]:
    """Read what :func:`write_tensors` wrote; check its digest and that it holds a ``kind``.

    ``version`` is the newest format of ``kind`` this distcal reads (each kind of file has its
    own: a distilled set of format 2 carries a calibration recipe, a network is still format 1).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a distcal file.")
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist.")
    try:
        data = path.read_bytes()
        tensors = load(data)
        header = _header(data)
        metadata_json = header["distcal"]
        metadata = json.loads(metadata_json)
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise ValueError(
            f"{path} is not a readable distcal file (truncated, corrupt or another format): {exc}"
        ) from exc
    if not isinstance(metadata, dict):
        raise ValueError(f"{path} is not a distcal file: its metadata is not a JSON object.")
    expected = header.get(_DIGEST_KEY)
    if expected is None:
        warnings.warn(
            f"{path} carries no checksum (written by a distcal before checksums were added), "
            "so damage or tampering cannot be detected; save it again to add one.",
            DistcalWarning,
            stacklevel=3,
        )
    elif _digest(tensors, metadata_json) != expected:
        raise ValueError(
            f"{path} does not match its checksum: its content was damaged or edited after "
            "distcal wrote it. Refusing to load it."
        )
    if metadata.get("kind") != kind:
        raise ValueError(f"{path} holds a {metadata.get('kind')!r}, not a {kind!r}.")
    found = metadata.get("format_version", 0)
    if not isinstance(found, int) or isinstance(found, bool) or found > version:
        raise ValueError(
            f"{path} was written by a newer distcal (format {found!r}); this version reads "
            f"{kind} files of format {version} and older."
        )
    return tensors, metadata


def _header(data: bytes) -> dict:
    """Return the ``__metadata__`` of a safetensors header (its string key-value pairs)."""
    size = int.from_bytes(data[:8], "little")
    if len(data) < 8 + size:
        raise ValueError("the header is truncated")
    header = json.loads(data[8 : 8 + size])
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict):
        raise ValueError("the header's metadata is not a JSON object")
    return metadata
