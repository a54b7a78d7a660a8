import pytest
import torch

from distcal.distill import NETWORKS, ConvNet, build_network


@pytest.mark.parametrize(("size", "depth", "feature"), [(28, 3, 4), (32, 3, 4), (8, 2, 2)])
def test_convnet_feature_map(size, depth, feature):
    net = build_network(
        "convnet", input_shape=(1, size, size), n_classes=10, depth=depth, width=8, random_state=0
    )
    assert net.feature_dim == 8 * feature * feature
    assert net(torch.zeros(2, 1, size, size)).shape == (2, 10)


def test_construction_is_seeded_and_leaves_the_global_generator_alone():
    state = torch.random.get_rng_state()
    a = build_network("convnet", input_shape=(1, 8, 8), n_classes=3, depth=2, random_state=1)
    b = build_network("convnet", input_shape=(1, 8, 8), n_classes=3, depth=2, random_state=1)
    c = build_network("convnet", input_shape=(1, 8, 8), n_classes=3, depth=2, random_state=2)
    assert torch.equal(state, torch.random.get_rng_state())
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_registry_errors_list_the_valid_names():
    with pytest.raises(ValueError, match=r"valid names are \['convnet', 'mlp'\]"):
        build_network("resnet", input_shape=(1, 8, 8), n_classes=3)
    with pytest.raises(ValueError, match="smaller depth"):
        ConvNet((1, 8, 8), 3, depth=4)
    with pytest.raises(ValueError, match="norm must be one of"):
        ConvNet((1, 8, 8), 3, depth=2, norm="groupnorm")
    with pytest.raises(ValueError, match="network='mlp' for feature vectors"):
        ConvNet((64,), 3)
    assert set(NETWORKS) == {"convnet", "mlp"}


def test_mlp_and_embeddings():
    net = build_network("mlp", input_shape=(1, 8, 8), n_classes=4, width=16, random_state=0)
    x = torch.zeros(3, 1, 8, 8)
    assert net.embed(x).shape == (3, 16)
    assert net(x).shape == (3, 4)
