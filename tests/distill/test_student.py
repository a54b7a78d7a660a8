import pickle

import numpy as np
import pytest
import torch

from distcal import TemperatureScaling
from distcal.distill import StudentClassifier, load_digits, stratified_split
from distcal.exceptions import InvalidParameterError


@pytest.fixture(scope="module")
def digits_split():
    data = load_digits()
    train, test = stratified_split(data.labels, [100, 500], random_state=0)
    return data.images[train], data.labels[train], data.images[test], data.labels[test]


def small(**kwargs):
    return StudentClassifier(**{"width": 16, "depth": 2, "epochs": 60, "random_state": 0, **kwargs})


def test_student_learns_and_feeds_calibrators(digits_split):
    X, y, X_test, y_test = digits_split
    student = small().fit(X, y)
    accuracy = (student.predict(X_test) == y_test).float().mean().item()
    assert accuracy > 0.75
    logits = student.decision_function(X_test)
    assert logits.shape == (500, 10)
    assert isinstance(student.decision_function(X_test.numpy()), np.ndarray)
    ts = TemperatureScaling().fit(logits, y_test)
    assert ts.converged_
    assert student.history_[0]["loss"] > student.history_[-1]["loss"]
    assert not student.network_.training


def test_same_seed_same_network(digits_split):
    X, y, X_test, _ = digits_split
    a = small(mixup_alpha=0.5).fit(X, y).decision_function(X_test)
    b = small(mixup_alpha=0.5).fit(X, y).decision_function(X_test)
    assert torch.equal(a, b)
    c = small(mixup_alpha=0.5, random_state=1).fit(X, y).decision_function(X_test)
    assert not torch.equal(a, c)


def test_mixup_and_label_smoothing_soften_the_student(digits_split):
    X, y, X_test, _ = digits_split
    plain = small().fit(X, y).predict_proba(X_test).amax(dim=1).mean()
    mixed = small(mixup_alpha=1.0).fit(X, y).predict_proba(X_test).amax(dim=1).mean()
    smooth = small(label_smoothing=0.2).fit(X, y).predict_proba(X_test).amax(dim=1).mean()
    assert mixed < plain
    assert smooth < plain


def test_grid_search_over_mixup(digits_split):
    from sklearn.model_selection import GridSearchCV

    X, y, _, _ = digits_split
    search = GridSearchCV(
        StudentClassifier(width=8, depth=2, epochs=5, random_state=0),
        {"mixup_alpha": [0.0, 0.4]},
        cv=2,
    ).fit(X.numpy(), y.numpy())
    assert search.best_params_["mixup_alpha"] in (0.0, 0.4)


def test_bad_input(digits_split):
    X, y, _, _ = digits_split
    with pytest.raises(InvalidParameterError, match="'network' parameter"):
        StudentClassifier("resnet").fit(X, y)
    with pytest.raises(ValueError, match="n_classes=5"):
        small(n_classes=5).fit(X, y)
    with pytest.raises(ValueError, match="network='mlp' for feature vectors"):
        small().fit(X.reshape(100, 64), y)
    student = small(epochs=1).fit(X, y)
    with pytest.raises(ValueError, match=r"fitted on samples of shape \(1, 8, 8\)"):
        student.predict(torch.zeros(2, 1, 4, 4))


def test_pickle(digits_split):
    X, y, X_test, _ = digits_split
    student = small(epochs=2).fit(X, y)
    restored = pickle.loads(pickle.dumps(student))
    assert torch.equal(restored.decision_function(X_test), student.decision_function(X_test))


def test_a_saved_student_loads_without_pickle_and_predicts_the_same(tmp_path):
    from distcal.distill import load_student

    data = load_digits()
    X, y = data.images[:300], data.labels[:300]
    student = StudentClassifier(width=8, depth=2, epochs=3, random_state=0).fit(X, y)
    path = student.save(tmp_path / "student.safetensors")
    loaded = load_student(path)
    assert loaded.get_params() == student.get_params()
    assert loaded.input_shape_ == student.input_shape_
    assert loaded.history_ == student.history_
    torch.testing.assert_close(loaded.decision_function(X), student.decision_function(X))
    np.testing.assert_array_equal(loaded.predict(X), student.predict(X))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="not a readable distcal file"):
        load_student(path)
    mlp = StudentClassifier("mlp", width=8, epochs=2, augment="none", random_state=0)
    mlp.fit(X.reshape(300, -1), y)
    loaded_mlp = load_student(mlp.save(tmp_path / "mlp.safetensors"))
    assert loaded_mlp.n_features_in_ == 64
    np.testing.assert_array_equal(
        loaded_mlp.predict(X.reshape(300, -1)), mlp.predict(X.reshape(300, -1))
    )
