import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from distcal.distill import (
    Callback,
    DistilledSet,
    EarlyStopping,
    MDTMask,
    MDTTrainer,
    RealData,
    StepContext,
    build_network,
    load_digits,
    load_distilled,
    load_network,
)
from distcal.distill._dm import DistributionMatching
from distcal.exceptions import InvalidParameterError


@pytest.fixture(scope="module")
def digits():
    data = load_digits()
    return data.images[:600], data.labels[:600]


def tiny(**kwargs):
    params = {
        "ipc": 2,
        "width": 8,
        "depth": 2,
        "iterations": 10,
        "random_state": 0,
        "augment": "none",
        "method_params": {"batch_real": 16},
    }
    return MDTTrainer(**{**params, **kwargs})


def test_fit_produces_a_distilled_set(digits):
    X, y = digits
    trainer = tiny(iterations=30).fit(X, y)
    assert trainer.images_.shape == (20, 1, 8, 8)
    assert trainer.labels_.tolist() == [c for c in range(10) for _ in range(2)]
    assert len(trainer.history_) == 30
    assert trainer.n_iter_ == 30
    losses = [h["loss"] for h in trainer.history_]
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    assert trainer.learning_rate_ is None
    assert torch.allclose(trainer.mean_, X.mean(), atol=1e-5)


def test_same_seed_same_images_and_global_rng_untouched(digits):
    X, y = digits
    state = torch.random.get_rng_state()
    a = tiny(augment="dsa").fit(X, y).images_ if _has_augment() else tiny().fit(X, y).images_
    b = tiny(augment="dsa").fit(X, y).images_ if _has_augment() else tiny().fit(X, y).images_
    c = tiny(random_state=1).fit(X, y).images_
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(state, torch.random.get_rng_state())


def _has_augment():
    try:
        import distcal.distill._augment  # noqa: F401
    except ImportError:
        return False
    return True


def test_mask_changes_the_result(digits):
    X, y = digits
    plain = tiny().fit(X, y).images_
    masked = tiny(mask_ratio=0.5).fit(X, y).images_
    assert not torch.equal(plain, masked)


@pytest.mark.parametrize("apply_to", ["synthetic", "real", "both"])
@pytest.mark.parametrize("kind", ["zero", "mean"])
def test_mdt_mask_applies_to_the_batches_it_names(apply_to, kind):
    mask = MDTMask(0.5, apply_to, kind)
    x = torch.rand(8, 3, 4, 4) + 1.0  # no element is 0 or a channel mean by chance
    for which in ("real", "synthetic"):
        out = mask(x, which, torch.Generator().manual_seed(0))
        applies = apply_to in (which, "both")
        assert torch.equal(out, x) != applies
        if applies:
            changed = out != x
            assert 0.4 < changed.float().mean() < 0.6
            if kind == "zero":
                assert torch.all(out[changed] == 0)
            else:
                means = x.mean(dim=(0, 2, 3), keepdim=True).expand_as(x)
                assert torch.allclose(out[changed], means[changed])
    assert torch.equal(MDTMask(0.0, "both")(x, "real", torch.Generator()), x)


def test_batched_dm_equals_the_per_class_reference(digits):
    X, y = digits
    real = RealData(X, y, 10)

    def context(seed):
        images = X[torch.arange(20) * 7].clone().requires_grad_(True)
        return StepContext(
            images=images,
            labels=torch.arange(10).repeat_interleave(2),
            optimizer=torch.optim.SGD([images], lr=1.0, momentum=0.5),
            real=real,
            generator=torch.Generator().manual_seed(seed),
            augment=None,
            sample_augment=None,
            mask=MDTMask(),
            iteration=0,
            build_network=lambda s: build_network(
                "convnet", input_shape=(1, 8, 8), n_classes=10, width=8, depth=2, random_state=s
            ),
        )

    method = DistributionMatching({"batch_real": 16})
    a, b = context(3), context(3)
    loss_a = method.step(a)["loss"]
    loss_b = method.reference_step(b)["loss"]
    assert loss_a == pytest.approx(loss_b, rel=1e-5)
    assert torch.allclose(a.images, b.images, atol=1e-6)


def test_resume_from_a_checkpoint_equals_an_uninterrupted_run(digits, tmp_path):
    X, y = digits
    whole = tiny(iterations=10).fit(X, y)
    path = tmp_path / "run.safetensors"
    first = tiny(iterations=6, checkpoint=path, checkpoint_every=3).fit(X, y)
    assert first.n_iter_ == 6
    resumed = tiny(iterations=10, checkpoint=path, checkpoint_every=3).fit(X, y)
    assert resumed.n_iter_ == 10
    assert torch.equal(resumed.images_, whole.images_)
    assert [h["loss"] for h in resumed.history_] == [h["loss"] for h in whole.history_]


def test_a_killed_run_resumes_to_the_same_result(digits, tmp_path):
    """SIGKILL in the middle of a run; the resumed run ends where an uninterrupted one does."""
    X, y = digits
    path = tmp_path / "killed.safetensors"
    script = textwrap.dedent(
        f"""
        import os, signal
        from distcal.distill import Callback, MDTTrainer, load_digits

        class Kill(Callback):
            def on_iteration_end(self, trainer, *, iteration, loss, **info):
                if iteration == 7:
                    os.kill(os.getpid(), signal.SIGKILL)

        data = load_digits()
        MDTTrainer(ipc=2, width=8, depth=2, iterations=12, random_state=0, augment="none",
                   method_params={{"batch_real": 16}}, checkpoint={str(path)!r},
                   checkpoint_every=3, callbacks=[Kill()]).fit(data.images[:600], data.labels[:600])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert done.returncode == -9, done.stderr.decode()
    resumed = tiny(iterations=12, checkpoint=path, checkpoint_every=3).fit(X, y)
    whole = tiny(iterations=12).fit(X, y)
    assert torch.equal(resumed.images_, whole.images_)


def test_checkpoints_refuse_other_settings_data_and_corruption(digits, tmp_path):
    X, y = digits
    path = tmp_path / "run.safetensors"
    tiny(iterations=3, checkpoint=path, checkpoint_every=3).fit(X, y)
    with pytest.raises(ValueError, match=r"other settings \(mask_ratio=0.0"):
        tiny(iterations=6, checkpoint=path, mask_ratio=0.3).fit(X, y)
    with pytest.raises(ValueError, match="other training data"):
        tiny(iterations=6, checkpoint=path).fit(X[:500], y[:500])
    with pytest.raises(ValueError, match="random_state 0, not 5"):
        tiny(iterations=6, checkpoint=path, random_state=5).fit(X, y)
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(ValueError, match="not a readable distcal file"):
        tiny(iterations=6, checkpoint=path).fit(X, y)


def test_divergence_names_the_iteration_and_keeps_the_last_good_checkpoint(digits, tmp_path):
    X, y = digits
    path = tmp_path / "run.safetensors"

    class NaNMethod(DistributionMatching):
        name = "nan-dm"

        def step(self, ctx):
            info = super().step(ctx)
            if ctx.iteration == 5:
                with torch.no_grad():
                    ctx.images[0, 0, 0, 0] = float("nan")
            return info

    from distcal.distill import METHODS

    METHODS["nan-dm"] = NaNMethod
    try:
        with pytest.raises(RuntimeError, match="diverged at iteration 5") as info:
            tiny(method="nan-dm", checkpoint=path, checkpoint_every=2).fit(X, y)
        assert "last good checkpoint" in str(info.value)
        from distcal._files import read_tensors

        tensors, metadata = read_tensors(path, kind="checkpoint")
        assert metadata["iteration"] == 4
        assert torch.isfinite(tensors["images"]).all()
    finally:
        del METHODS["nan-dm"]


def test_save_and_load_a_distilled_set_and_evaluate_in_one_call(digits, tmp_path):
    X, y = digits
    trainer = tiny(iterations=5).fit(X, y)
    path = trainer.save(tmp_path / "set.safetensors")
    loaded = load_distilled(path)
    assert isinstance(loaded, DistilledSet)
    assert torch.equal(loaded.images, trainer.images_)
    assert loaded.config["ipc"] == 2
    assert loaded.config["random_state"] == 0
    assert loaded.n_classes == 10
    data = load_digits()
    from distcal.distill import StudentClassifier

    result = loaded.evaluate(
        data.images[600:900],
        data.labels[600:900],
        student=StudentClassifier(width=8, depth=2, epochs=150),
        n_students=2,
    )
    assert len(result["accuracy"]) == 2
    assert result["accuracy_mean"] > 0.4
    tiny(iterations=1, checkpoint=tmp_path / "c.safetensors").fit(X, y)
    with pytest.raises(ValueError, match="not a 'distilled-set'"):
        load_distilled(tmp_path / "c.safetensors")


def test_networks_save_and_load_without_pickle(tmp_path, digits):
    X, y = digits
    trainer = tiny(iterations=1).fit(X, y)
    network = trainer._build_network(3)
    path = trainer.save_network(tmp_path / "net.safetensors", network)
    restored = load_network(path)
    with torch.no_grad():
        assert torch.equal(restored(X[:4]), network.eval()(X[:4]))
    assert b"pickle" not in path.read_bytes()[:200]


def test_atomic_write_leaves_the_previous_file_when_saving_fails(tmp_path, monkeypatch, digits):
    X, y = digits
    trainer = tiny(iterations=2).fit(X, y)
    path = trainer.save(tmp_path / "set.safetensors")
    before = path.read_bytes()
    import distcal._files as files

    real_write_bytes = files.Path.write_bytes

    def failing_write(self, data):
        real_write_bytes(self, data[:4])  # half written, then the disk is full
        raise OSError("No space left on device")

    monkeypatch.setattr(files.Path, "write_bytes", failing_write)
    with pytest.raises(OSError, match="No space left"):
        trainer.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["set.safetensors"]


def test_callbacks_and_early_stopping(digits):
    X, y = digits
    seen = []

    class Record(Callback):
        def on_fit_begin(self, trainer, *, start_iteration, **info):
            seen.append(("begin", start_iteration))

        def on_iteration_end(self, trainer, *, iteration, loss, **info):
            seen.append(iteration)

        def on_fit_end(self, trainer, **info):
            seen.append("end")

    tiny(iterations=3, callbacks=[Record()]).fit(X, y)
    assert seen == [("begin", 0), 0, 1, 2, "end"]
    stopped = tiny(iterations=50, callbacks=[EarlyStopping(patience=2)]).fit(X, y)
    assert stopped.n_iter_ < 50


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"method": "kip"}, InvalidParameterError, r"valid names are \[.*'dm'"),
        ({"network": "vit"}, InvalidParameterError, r"valid names are \['convnet', 'mlp'\]"),
        ({"method_params": {"outer_loop": 3}}, InvalidParameterError, r"valid keys are"),
        ({"mask_ratio": 1.0}, InvalidParameterError, r"'mask_ratio' parameter of MDTTrainer"),
        ({"callbacks": ["print"]}, InvalidParameterError, "Callback instances"),
        ({"ipc": 100}, ValueError, "ipc=100 is larger than class"),
    ],
)
def test_bad_parameters(params, error, match, digits):
    X, y = digits
    with pytest.raises(error, match=match):
        tiny(**params).fit(X, y)


def test_bad_data(digits):
    X, y = digits
    with pytest.raises(ValueError, match="network='mlp' for feature vectors"):
        tiny().fit(X.reshape(600, 64), y)
    y_gap = y.clone()
    y_gap[y_gap == 3] = 4
    with pytest.raises(ValueError, match="class 3 has no images"):
        tiny().fit(X, y_gap)
