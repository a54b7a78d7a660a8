"""fit_trainers: a sweep of distillation runs in parallel equals the runs one by one."""

import pytest
import torch

from distcal.distill import MDTTrainer, fit_trainers, load_digits


def _sweep():
    common = {"ipc": 1, "width": 8, "depth": 2, "iterations": 3, "random_state": 0}
    return [
        MDTTrainer("dm", method_params={"batch_real": 8}, **common),
        MDTTrainer("dm", mask_ratio=0.3, method_params={"batch_real": 8}, **common),
        MDTTrainer(
            "dc", method_params={"batch_real": 8, "outer_loop": 1, "inner_loop": 1}, **common
        ),
    ]


def test_a_parallel_sweep_equals_the_runs_one_by_one():
    data = load_digits()
    X, y = data.images[:400], data.labels[:400]
    sweep = _sweep()
    parallel = fit_trainers(sweep, X, y, n_jobs=2)
    assert not hasattr(sweep[0], "images_")  # the given trainers are left unfitted
    for trainer, fitted in zip(sweep, parallel, strict=True):
        alone = trainer.fit(X, y)
        assert fitted.method == alone.method
        assert fitted.mask_ratio == alone.mask_ratio
        torch.testing.assert_close(fitted.images_, alone.images_)


def test_bad_sweeps_are_named():
    with pytest.raises(TypeError, match="must be a list of estimators"):
        fit_trainers(MDTTrainer(), None, None)
    with pytest.raises(ValueError, match="trainers is empty"):
        fit_trainers([], None, None)
