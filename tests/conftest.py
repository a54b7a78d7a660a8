"""Shared fixtures: small, seeded data that every test can afford."""

import math
import os

import numpy as np
import pytest
import torch


def make_logits(n_samples=200, n_classes=3, *, scale=3.0, random_state=0):
    """Logits whose optimal temperature is ``scale``: labels are drawn from softmax(z) and the
    logits returned are ``scale * z``."""
    rng = np.random.default_rng(random_state)
    z = rng.normal(size=(n_samples, n_classes))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    y = (p.cumsum(axis=1) > rng.random((n_samples, 1))).argmax(axis=1)
    return scale * z, y


@pytest.fixture
def logits_data():
    return make_logits()


def make_recipe(**changes):
    """A valid calibration recipe with made-up numbers (two proxies whose masked temperatures
    span 0.04 to 50, so that any test network lies within them), for tests of its users."""
    from distcal.calibration import CalibrationRecipe

    proxies = [
        {"params": {"epochs": 10}, "temperature": 1.5, "accuracy": 0.8, "matched_ratio": 0.4,
         "logit_scale": 0.04, "masked_temperature": 0.05, "feature_temperature": 0.06},
        {"params": {"epochs": 20}, "temperature": 2.0, "accuracy": 0.85, "matched_ratio": 0.6,
         "logit_scale": 40.0, "masked_temperature": 50.0, "feature_temperature": 60.0},
    ]  # fmt: skip
    fields = dict(method="temperature", temperature=math.sqrt(3.0), mask_ratio=0.5,
                  feature_ratio=0.7, intercept=0.1, scale_slope=0.9, masked_slope=0.2,
                  n_masks=3, proxies=proxies, n_validation=100)  # fmt: skip
    fields.update(changes)
    return CalibrationRecipe(**fields)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _train_mlp(X, y, *, seed, steps=300):
    # fork_rng keeps the global generator untouched: construction is seeded, nothing leaks.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10)
        )
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(net(Xt), yt).backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return net.eval()


@pytest.fixture(scope="session")
def digits_student():
    """A small network trained on 10 real digits per class, with held-out and test splits.

    Like a network trained on a distilled set, it fits its 100 training images perfectly.
    """
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    train = np.concatenate([order[y[order] == k][:10] for k in range(10)])
    rest = rng.permutation(np.setdiff1d(order, train))
    cal, test = rest[:500], rest[500:]
    net = _train_mlp(X[train], y[train], seed=0)
    return {
        "net": net,
        "X_train": X[train],
        "y_train": y[train],
        "X_cal": X[cal],
        "y_cal": y[cal],
        "X_test": X[test],
        "y_test": y[test],
    }


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests use tiny tensors: a second OpenMP thread only adds synchronisation, which on a busy
    2-core machine makes each small operation many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _malloc_environment_restored():
    """`distcal run` in a test's own process exports glibc's malloc settings for the worker
    processes it starts; undo that after the test, so later tests' subprocesses (Dask workers,
    CLI children) start with the environment the test run began with."""
    from distcal._allocator import MALLOC_SETTINGS

    before = {name: os.environ.get(name) for name in MALLOC_SETTINGS}
    yield
    for name, value in before.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
