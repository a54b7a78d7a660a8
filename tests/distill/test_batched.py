"""Students trained as one batch match the same students trained alone.

The batched convolutions sum in another order than the per-student ones, so float32 results
differ by rounding. The tolerance is measured, not chosen: the same batch is also trained in
float64 (same initial weights, same random draws), and the distance of the float32 batch from
that float64 trajectory is the rounding float32 accumulates on this computation. A student
trained alone is another float32 rounding of the same trajectory, so it must lie within a small
multiple of that distance of both; a wrong draw, order or update would be off by the size of a
training step instead. The measured rounding is itself checked against the worst-case bound of
float32 summation (steps x largest fan-in x epsilon x weight scale).
"""

import numpy as np
import pytest
import torch

from distcal.distill import StudentClassifier, fit_students, load_digits, load_student
from distcal.distill._batched import _fit_students

EPS32 = torch.finfo(torch.float32).eps


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.images, data.labels


def flat(student):
    return torch.cat(
        [t.detach().double().flatten() for t in student.network_.state_dict().values()]
    )


def make(configs, **shared):
    return [StudentClassifier(**{**shared, **config}) for config in configs]


CASES = {
    # The experiment's students: augmentation, mixup or not, instance norm.
    "instancenorm-dsa-mixup": (
        {"network": "convnet", "width": 8, "depth": 2, "epochs": 4, "norm": "instancenorm"},
        [
            {"random_state": 0},
            {"random_state": 0, "mixup_alpha": 1.0},
            {"random_state": 3, "mixup_alpha": 0.4, "lr": 0.05},
        ],
        "color_crop_cutout_scale_rotate",
    ),
    # Batch norm's running statistics are stacked buffers, updated per student; several
    # mini-batches per epoch and a single epoch (learning-rate milestone at 0).
    "batchnorm-batches-one-epoch": (
        {"network": "convnet", "width": 8, "depth": 2, "epochs": 1, "norm": "batchnorm"},
        [
            {"random_state": 1, "batch_size": 32},
            {"random_state": 2, "batch_size": 32, "label_smoothing": 0.1, "momentum": 0.5},
        ],
        "none",
    ),
    # Students with different augmentations (or none) in one batch.
    "mixed-augmentations": (
        {"network": "convnet", "width": 8, "depth": 2, "epochs": 2, "norm": "layernorm"},
        [
            {"random_state": 0},
            {"random_state": 1, "augment": "crop_cutout"},
            {"random_state": 2, "augment": "scale_rotate", "mixup_alpha": 1.0},
        ],
        "none",
    ),
    "mlp-weight-decay": (
        {"network": "mlp", "width": 16, "depth": 2, "epochs": 3},
        [
            {"random_state": 5, "weight_decay": 0.0},
            {"random_state": 6, "weight_decay": 1e-2, "mixup_alpha": 0.2},
        ],
        "none",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_batched_students_match_students_trained_alone(digits, case):
    shared, configs, augment = CASES[case]
    images, labels = digits
    sets = [(images[100 * i : 100 * (i + 1)], labels[100 * i : 100 * (i + 1)]) for i in range(3)]
    sets = sets[: len(configs)]
    shared = {**shared, "augment": augment, "n_classes": 10}
    alone = [s.fit(X, y) for s, (X, y) in zip(make(configs, **shared), sets, strict=True)]
    batched = fit_students(make(configs, **shared), sets)
    exact = _fit_students(make(configs, **shared), sets, dtype=torch.float64)

    batch_size = configs[0].get("batch_size", 256)
    steps = shared["epochs"] * -(-100 // batch_size)
    largest_fan_in = max(p[0].numel() for p in alone[0].network_.parameters() if p.ndim > 1)
    for a, b, e in zip(alone, batched, exact, strict=True):
        assert b.network_.state_dict().keys() == a.network_.state_dict().keys()
        assert next(b.network_.parameters()).dtype == torch.float32
        rounding = (flat(b) - flat(e)).abs().max().item()
        scale = flat(e).abs().max().item()
        assert 0 < rounding <= steps * largest_fan_in * EPS32 * scale
        # Alone and batched are two float32 roundings of the same float64 trajectory.
        assert (flat(a) - flat(e)).abs().max().item() <= 4 * rounding
        assert (flat(a) - flat(b)).abs().max().item() <= 4 * rounding
        assert [h["epoch"] for h in b.history_] == [h["epoch"] for h in a.history_]
        losses_a = np.array([h["loss"] for h in a.history_])
        losses_e = np.array([h["loss"] for h in e.history_])
        losses_b = np.array([h["loss"] for h in b.history_])
        loss_rounding = np.abs(losses_b - losses_e).max()
        assert np.abs(losses_a - losses_e).max() <= 4 * loss_rounding + 4 * EPS32 * losses_e.max()
        X_test = images[1000:1200]
        assert torch.equal(a.predict(X_test), b.predict(X_test))


def test_students_sharing_one_random_state_draw_in_order(digits):
    images, labels = digits
    sets = [(images[:100], labels[:100])] * 2
    options = {"width": 4, "depth": 2, "epochs": 1, "augment": "none"}
    source = np.random.RandomState(7)
    alone = [StudentClassifier(**options, random_state=source).fit(*sets[0]) for _ in range(2)]
    source = np.random.RandomState(7)
    batched = fit_students(
        [StudentClassifier(**options, random_state=source) for _ in range(2)], sets
    )
    for a, b in zip(alone, batched, strict=True):
        assert torch.allclose(flat(a), flat(b), rtol=0, atol=1e-5)
    assert not torch.equal(flat(batched[0]), flat(batched[1]))


def test_batched_students_predict_save_and_load(digits, tmp_path):
    images, labels = digits
    sets = [(images[:100], labels[:100]), (images[100:200].numpy(), labels[100:200].numpy())]
    students = [
        StudentClassifier(width=4, depth=2, epochs=2, random_state=seed, verbose=False)
        for seed in (0, 1)
    ]
    fitted = fit_students(students, sets)
    assert fitted == students
    for student in fitted:
        assert not student.network_.training
        assert student.input_shape_ == (1, 8, 8)
        assert list(student.classes_) == list(range(10))
        assert len(student.history_) == 2
        path = student.save(tmp_path / "student.safetensors")
        loaded = load_student(path)
        assert torch.equal(
            loaded.decision_function(images[:5]), student.decision_function(images[:5])
        )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs": 3}, "epochs differs"),
        ({"width": 8}, "width differs"),
        ({"batch_size": 16}, "batch_size differs"),
        ({"network": "mlp"}, "network differs"),
        ({"norm": "batchnorm"}, "norm differs"),
        ({"n_classes": 12}, "n_classes differs"),
    ],
)
def test_students_that_cannot_be_batched_are_named(digits, change, message):
    images, labels = digits
    sets = [(images[:100], labels[:100])] * 2
    options = {"width": 4, "depth": 2, "epochs": 2}
    students = [StudentClassifier(**options), StudentClassifier(**{**options, **change})]
    with pytest.raises(ValueError, match=message):
        fit_students(students, sets)


def test_bad_arguments_are_explained(digits):
    images, labels = digits
    student = StudentClassifier(width=4, depth=2, epochs=1)
    with pytest.raises(ValueError, match="number of samples differs"):
        fit_students(
            [student, StudentClassifier(width=4, depth=2, epochs=1)],
            [(images[:100], labels[:100]), (images[:90], labels[:90])],
        )
    with pytest.raises(ValueError, match="same length"):
        fit_students([student], [(images, labels)] * 2)
    with pytest.raises(ValueError, match="empty"):
        fit_students([], [])
    with pytest.raises(TypeError, match=r"students\[0\] must be a StudentClassifier"):
        fit_students(["convnet"], [(images, labels)])
    with pytest.raises(TypeError, match="must be lists"):
        fit_students(student, (images, labels))
    with pytest.raises(ValueError, match=r"datasets\[0\] must be an \(X, y\) pair"):
        fit_students([student], [images])
    with pytest.raises(ValueError, match="only one class"):
        fit_students([student], [(images[:10], torch.zeros(10, dtype=torch.long))])
    with pytest.raises(ValueError, match="n_classes=3"):
        fit_students(
            [StudentClassifier(width=4, depth=2, epochs=1, n_classes=3)], [(images, labels)]
        )
