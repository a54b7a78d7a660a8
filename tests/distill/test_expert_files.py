"""Expert-trajectory buffers go through the one writer: no shared temporaries, checked loads."""

import json
import threading

import pytest
import torch

from distcal.distill import ExpertTrajectories


def _buffer(seed=0, n_experts=2):
    generator = torch.Generator().manual_seed(seed)
    trajectories = [torch.randn(3, 10, generator=generator) for _ in range(n_experts)]
    return ExpertTrajectories(trajectories, [("w", (2, 4)), ("b", (2,))], {"epochs": 2})


def test_a_buffer_round_trips(tmp_path):
    buffer = _buffer()
    loaded = ExpertTrajectories.load(buffer.save(tmp_path / "experts"))
    pairs = zip(loaded.trajectories, buffer.trajectories, strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert loaded.layout == buffer.layout


def test_concurrent_saves_to_one_directory_never_collide(tmp_path):
    """Fixed temporary names made 1 to 11 of 20 concurrent saves fail; unique ones cannot."""
    errors = []

    def save(seed):
        try:
            for _ in range(10):
                _buffer(seed).save(tmp_path / "experts")
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(seed,)) for seed in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(p.name for p in (tmp_path / "experts").iterdir()) == [
        "trajectories.json",
        "trajectories.safetensors",
    ]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "trajectories.json").write_text("{truncated"), "is not readable JSON"),
        (lambda d: (d / "trajectories.json").write_text("[]"), "not a distcal expert buffer"),
        (lambda d: _edit_sidecar(d, "n_epochs", 7), r"has shape \(3, 10\), but its sidecar"),
        (lambda d: _edit_sidecar(d, "layout", [["w", [3, 3]]]), "does not add up"),
        (lambda d: _flip_last_byte(d / "trajectories.safetensors"), "does not match its checksum"),
        (lambda d: (d / "trajectories.safetensors").write_bytes(b"\x00" * 5), "not a readable"),
    ],
)
def test_a_damaged_buffer_is_a_value_error_naming_the_file(tmp_path, damage, message):
    directory = _buffer().save(tmp_path / "experts")
    damage(directory)
    with pytest.raises(ValueError, match=message):
        ExpertTrajectories.load(directory)


def _edit_sidecar(directory, key, value):
    path = directory / "trajectories.json"
    sidecar = json.loads(path.read_text())
    sidecar[key] = value
    path.write_text(json.dumps(sidecar))


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def test_a_buffer_written_before_checksums_loads_with_a_warning(tmp_path):
    from safetensors.torch import save_file

    from distcal.exceptions import DistcalWarning

    buffer = _buffer()
    directory = buffer.save(tmp_path / "experts")
    tensors = {f"expert_{k:04d}": t for k, t in enumerate(buffer.trajectories)}
    save_file(tensors, str(directory / "trajectories.safetensors"))  # the old writer's file
    with pytest.warns(DistcalWarning, match="carries no checksum"):
        loaded = ExpertTrajectories.load(directory)
    assert torch.equal(loaded.trajectories[1], buffer.trajectories[1])
