"""distcal's one file writer: atomic, cleaned up after kills, umask-respecting, checksummed."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from distcal._files import atomic_write, atomic_write_text, read_tensors, write_tensors
from distcal.exceptions import DistcalWarning


def _dead_pid():
    """A process id that no longer exists: a child that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_write_removes_the_temporaries_of_killed_writers_and_keeps_live_ones(tmp_path):
    target = tmp_path / "set.safetensors"
    stale = tmp_path / f".set.safetensors.{_dead_pid()}.abc123.tmp"
    stale.write_bytes(b"x" * 1000)
    live = tmp_path / f".set.safetensors.{os.getppid()}.def456.tmp"  # a running process's
    live.write_bytes(b"y")
    other = tmp_path / ".other.safetensors.1.zzz.tmp"  # another target's: not ours to touch
    other.write_bytes(b"z")
    write_tensors(target, {"x": torch.ones(3)}, {"kind": "test"})
    assert not stale.exists()
    assert live.exists()
    assert other.exists()
    assert target.exists()


def test_a_writer_killed_mid_write_leaves_one_temporary_that_the_next_write_removes(tmp_path):
    """SIGKILL while a large file is written: the old file survives, one temporary is left (the
    serializer writes no second one of its own), and the next write cleans it up."""
    target = tmp_path / "big.safetensors"
    write_tensors(target, {"x": torch.zeros(10)}, {"kind": "test"})
    before = target.read_bytes()
    script = (
        "import torch, sys\n"
        "from distcal._files import write_tensors\n"
        "print('ready', flush=True)\n"
        "big = {'x': torch.zeros(20_000_000)}\n"
        "while True:\n"
        f"    write_tensors({str(target)!r}, big, {{'kind': 'test'}})\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    assert child.stdout.readline().strip() == b"ready"
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".big.safetensors.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    leftovers = [p for p in tmp_path.iterdir() if p.name != "big.safetensors"]
    assert len(leftovers) <= 1  # at most distcal's own temporary
    assert read_tensors(target, kind="test")[0]["x"].numel() in (10, 20_000_000)
    write_tensors(target, {"x": torch.zeros(10)}, {"kind": "test"})
    assert [p.name for p in tmp_path.iterdir()] == ["big.safetensors"]
    assert target.read_bytes() == before


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_the_permissions_the_umask_allows(tmp_path, umask):
    previous = os.umask(umask)
    try:
        tensors = write_tensors(tmp_path / "a.safetensors", {"x": torch.ones(2)}, {"kind": "t"})
        text = atomic_write_text(tmp_path / "results.csv", "a,b\n")
    finally:
        os.umask(previous)
    for path in (tensors, text):
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_damaged_files_fail_their_checksum_and_name_the_file(tmp_path):
    path = write_tensors(
        tmp_path / "a.safetensors",
        {"x": torch.arange(6.0), "b": torch.tensor([True]), "h": torch.ones(2).bfloat16()},
        {"kind": "t", "value": 3},
    )
    tensors, metadata = read_tensors(path, kind="t")
    assert metadata == {"kind": "t", "value": 3}
    assert torch.equal(tensors["x"], torch.arange(6.0))
    data = path.read_bytes()
    data_start = 8 + int.from_bytes(data[:8], "little")  # after the header
    for position in (data_start, len(data) - 1):  # the first and last tensor bytes
        damaged = bytearray(data)
        damaged[position] ^= 0x10
        path.write_bytes(bytes(damaged))
        with pytest.raises(ValueError, match=r"a\.safetensors does not match its checksum"):
            read_tensors(path, kind="t")
    edited = data.replace(b'\\"value\\": 3', b'\\"value\\": 4')
    assert edited != data
    path.write_bytes(edited)
    with pytest.raises(ValueError, match="does not match its checksum"):
        read_tensors(path, kind="t")
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable distcal file"):
        read_tensors(path, kind="t")


def test_a_file_without_checksum_loads_with_a_warning(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "old.safetensors"
    save_file({"x": torch.ones(2)}, path, metadata={"distcal": '{"kind": "t"}'})
    with pytest.warns(DistcalWarning, match="carries no checksum"):
        tensors, _ = read_tensors(path, kind="t")
    assert torch.equal(tensors["x"], torch.ones(2))


def test_a_directory_is_named_as_a_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory, not a distcal file"):
        read_tensors(tmp_path, kind="t")


def test_the_same_content_is_written_as_the_same_bytes(tmp_path):
    tensors = {"b": torch.arange(4.0), "a": torch.ones(2, dtype=torch.int64)}
    first = write_tensors(tmp_path / "1.safetensors", tensors, {"kind": "t", "z": 1, "a": 2})
    for _ in range(5):
        again = write_tensors(tmp_path / "2.safetensors", tensors, {"kind": "t", "z": 1, "a": 2})
        assert again.read_bytes() == first.read_bytes()
    loaded, metadata = read_tensors(first, kind="t")
    assert metadata == {"kind": "t", "z": 1, "a": 2}
    assert torch.equal(loaded["b"], tensors["b"])


def test_an_overwritten_file_keeps_its_mode(tmp_path):
    """Before: overwriting a 0664 file left it 0644 (the umask's mode for a new file)."""
    target = tmp_path / "results.csv"
    target.write_text("old")
    os.chmod(target, 0o664)
    previous = os.umask(0o022)
    try:
        atomic_write_text(target, "new")
        write_tensors(tmp_path / "a.safetensors", {"x": torch.ones(2)}, {"kind": "t"})
        os.chmod(tmp_path / "a.safetensors", 0o600)
        write_tensors(tmp_path / "a.safetensors", {"x": torch.zeros(2)}, {"kind": "t"})
    finally:
        os.umask(previous)
    assert target.read_text() == "new"
    assert target.stat().st_mode & 0o777 == 0o664
    assert (tmp_path / "a.safetensors").stat().st_mode & 0o777 == 0o600


def test_a_failed_write_leaves_no_folder_it_created(tmp_path):
    """Before: a full disk on the first distilled set left an empty ``sets/`` in the output."""
    (tmp_path / "kept").mkdir()

    def fail(temporary):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(tmp_path / "new" / "deeper" / "a.txt", fail)
    with pytest.raises(OSError, match="No space"):
        atomic_write(tmp_path / "kept" / "a.txt", fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert list((tmp_path / "kept").iterdir()) == []


def test_a_staged_folder_moves_in_whole_or_not_at_all(tmp_path):
    from distcal._files import staged_folder

    names = ("a.txt", "b.txt")
    target = tmp_path / "out"
    with staged_folder(target, names) as folder:
        atomic_write_text(folder / "a.txt", "1")
        atomic_write_text(folder / "b.txt", "1")
        assert not target.exists()  # nothing is visible before the block ends
    assert {p.name: p.read_text() for p in target.iterdir()} == {"a.txt": "1", "b.txt": "1"}

    def fail_midway():
        with staged_folder(target, names) as folder:
            atomic_write_text(folder / "a.txt", "2")
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        fail_midway()
    assert {p.name: p.read_text() for p in target.iterdir()} == {"a.txt": "1", "b.txt": "1"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # a staging folder of a killed writer is removed by the next write to the same target
    stale = tmp_path / f".out.{_dead_pid()}.abc123.tmp"
    stale.mkdir()
    (stale / "a.txt").write_text("half")
    with staged_folder(target, names) as folder:
        atomic_write_text(folder / "a.txt", "3")
    assert {p.name: p.read_text() for p in target.iterdir()} == {"a.txt": "3"}  # b: not rewritten
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
