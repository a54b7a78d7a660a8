"""Distilled sets and networks are checked when loaded, before anything is built from them."""

import pytest
import torch

from distcal._files import read_tensors, write_tensors
from distcal.distill import build_network, load_distilled, load_network, save_network


def _distilled(**changes):
    tensors = {
        "images": torch.rand(20, 1, 8, 8),
        "labels": torch.arange(20) % 10,
        "mean": torch.zeros(1),
        "std": torch.ones(1),
    }
    tensors.update(changes)
    return tensors


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": torch.tensor([0, 1, 2])}, r"labels must be 20 int64 class indices"),
        ({"images": torch.full((20, 1, 8, 8), float("nan"))}, "images has NaN"),
        ({"labels": torch.arange(20) - 1}, "negative class indices"),
        ({"std": torch.zeros(1)}, "std has values <= 0"),
        ({"mean": torch.zeros(3)}, "mean must hold 1 finite per-channel values"),
        ({"images": torch.zeros(20, 1, 8, 8, dtype=torch.int64)}, "images must be a non-empty"),
    ],
)
def test_a_crafted_distilled_set_is_refused_with_what_is_wrong(tmp_path, changes, message):
    path = write_tensors(
        tmp_path / "set.safetensors", _distilled(**changes), {"kind": "distilled-set"}
    )
    with pytest.raises(ValueError, match=rf"set\.safetensors holds an invalid distilled set: "
                                         rf".*{message}"):  # fmt: skip
        load_distilled(path)


def test_a_valid_distilled_set_loads(tmp_path):
    path = write_tensors(tmp_path / "set.safetensors", _distilled(), {"kind": "distilled-set"})
    assert load_distilled(path).images.shape == (20, 1, 8, 8)


def _network_file(tmp_path, spec_changes=None, drop_spec=False):
    spec = {"name": "convnet", "input_shape": [1, 8, 8], "n_classes": 10, "width": 8, "depth": 2}
    network = build_network(
        "convnet", input_shape=(1, 8, 8), n_classes=10, width=8, depth=2, random_state=0
    )
    path = save_network(tmp_path / "net.safetensors", network, spec=spec)
    tensors, metadata = read_tensors(path, kind="network")
    if drop_spec:
        del metadata["spec"]
    metadata.get("spec", {}).update(spec_changes or {})
    return write_tensors(tmp_path / "crafted.safetensors", tensors, metadata)


def test_a_network_file_without_its_spec_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="it has no spec"):
        load_network(_network_file(tmp_path, drop_spec=True))


def test_a_crafted_width_is_compared_on_the_meta_device_and_never_allocated(tmp_path):
    """A width of 1e6 would ask for terabytes; the spec is checked against the file's tensors
    on the meta device, which holds shapes only."""
    path = _network_file(tmp_path, {"width": 1_000_000})
    with pytest.raises(ValueError, match="differ in name or shape from convnet's"):
        load_network(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "resnet9000"}, "names the network 'resnet9000'"),
        ({"input_shape": [0, 8, 8]}, "invalid input_shape"),
        ({"n_classes": 1}, "invalid n_classes"),
        ({"depth": "deep"}, "cannot be built|differ in name or shape"),
    ],
)
def test_crafted_specs_are_refused(tmp_path, changes, message):
    with pytest.raises(ValueError, match=message):
        load_network(_network_file(tmp_path, changes))


def test_nan_weights_are_refused(tmp_path):
    path = _network_file(tmp_path)
    tensors, metadata = read_tensors(path, kind="network")
    name = next(iter(tensors))
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    write_tensors(path, tensors, metadata)
    with pytest.raises(ValueError, match=rf"NaN or infinite values in the weights '{name}'"):
        load_network(path)
