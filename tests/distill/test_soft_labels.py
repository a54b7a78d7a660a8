"""Students trained on soft labels (DATM's logits): the loss, its options, hard labels untouched."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distcal.distill import StudentClassifier, build_network, fit_students, load_digits


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.images[:60], data.labels[:60]


def _soft(labels, n_classes=10, seed=0):
    """Class scores whose argmax is the label, as DATM's learned logits are."""
    noise = torch.randn(len(labels), n_classes, generator=torch.Generator().manual_seed(seed))
    return noise + 3 * F.one_hot(labels, n_classes).float()


def _student(**options):
    params = {"width": 8, "depth": 2, "epochs": 3, "batch_size": 64, "augment": "none"}
    return StudentClassifier(random_state=0, **{**params, **options})


def _datm_soft_cross_entropy(inputs, target):
    """DATM distill/evaluation.py SoftCrossEntropy, written out."""
    return torch.sum(-F.log_softmax(inputs, dim=1) * F.softmax(target, dim=1)) / inputs.shape[0]


def _first_loss(X, scores, **options):
    """The loss of the first epoch of one batch: the loss at the initial weights."""
    student = _student(epochs=1, **options).fit(X, scores)
    rng = np.random.default_rng(0)  # StudentClassifier's draws: the weights' seed comes first
    network = build_network(
        "convnet", input_shape=(1, 8, 8), n_classes=10, random_state=int(rng.integers(2**31)),
        width=8, depth=2, norm="instancenorm",
    )  # fmt: skip
    with torch.no_grad():
        return student.history_[0]["loss"], network(X)


def test_soft_cross_entropy_is_datms(digits):
    X, y = digits
    scores = _soft(y)
    loss, logits = _first_loss(X, scores)
    expected = float(_datm_soft_cross_entropy(logits, scores))
    assert loss == pytest.approx(expected, rel=1e-5)


def test_temperature_and_kl(digits):
    X, y = digits
    scores = _soft(y)
    for T in (1.0, 2.5):
        ce, logits = _first_loss(X, scores, soft_label_temperature=T)
        kl, _ = _first_loss(X, scores, soft_label_loss="kl", soft_label_temperature=T)
        target = F.softmax(scores / T, dim=1)
        assert ce == pytest.approx(
            float(_datm_soft_cross_entropy(logits / T, scores / T)), rel=1e-5
        )
        # KL = cross-entropy - entropy of the targets (DD-Ranking's KLDivergenceLoss)
        entropy = float(-(target * target.log()).sum(1).mean())
        assert kl == pytest.approx(ce - entropy, rel=1e-5, abs=1e-6)


def test_kl_and_cross_entropy_train_the_same_student(digits):
    X, y = digits
    scores = _soft(y)
    ce = _student().fit(X, scores)
    kl = _student(soft_label_loss="kl").fit(X, scores)
    # same gradients (the losses differ by a constant): the same weights up to rounding
    for a, b in zip(ce.network_.parameters(), kl.network_.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert ce.classes_.tolist() == list(range(10))


def test_hard_labels_ignore_the_soft_options(digits):
    X, y = digits
    plain = _student(label_smoothing=0.1).fit(X, y)
    other = _student(label_smoothing=0.1, soft_label_loss="kl", soft_label_temperature=4.0).fit(
        X, y
    )
    for a, b in zip(plain.network_.parameters(), other.network_.parameters(), strict=True):
        assert torch.equal(a, b)
    assert plain.history_ == other.history_


def test_soft_label_errors(digits):
    X, y = digits
    scores = _soft(y)
    with pytest.raises(ValueError, match=r"soft labels over 10 classes, but n_classes=12"):
        _student(n_classes=12).fit(X, scores)
    with pytest.raises(ValueError, match="label_smoothing applies to hard labels"):
        _student(label_smoothing=0.1).fit(X, scores)
    bad = scores.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="contains NaN or infinity"):
        _student().fit(X, bad)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        _student().fit(X, scores[:10])
    with pytest.raises(ValueError, match="'soft_label_loss' parameter of StudentClassifier"):
        _student(soft_label_loss="mse").fit(X, scores)
    with pytest.raises(ValueError, match=r"datasets\[0\] has soft labels .*StudentClassifier.fit"):
        fit_students([_student()], [(X, scores)])


def test_a_soft_student_saves_and_loads(tmp_path, digits):
    from distcal.distill import load_student

    X, y = digits
    student = _student(soft_label_loss="kl", soft_label_temperature=2.0).fit(X, _soft(y))
    loaded = load_student(student.save(tmp_path / "s.safetensors"))
    assert loaded.soft_label_loss == "kl"
    assert loaded.soft_label_temperature == 2.0
    assert torch.equal(loaded.decision_function(X[:5]), student.decision_function(X[:5]))
