import math

import pytest
import torch

from distcal.distill import METHODS, MDTMask, RealData, StepContext, build_network, load_digits
from distcal.distill._gradient_matching import (
    GradientMatching,
    GradientMatchingDSA,
    _batched_gradient_distance,
    _gradient_distance,
)
from distcal.exceptions import InvalidParameterError

N_CLASSES = 10
IPC = 2
# Small and fast: 32 real images per class, two image updates with two network epochs between.
OPTIONS = {"outer_loop": 2, "inner_loop": 2, "batch_real": 32, "batch_train": 8}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The tensors here are tiny: a second OpenMP thread only adds spin-waiting, which on a busy
    # shared machine makes each step hundreds of times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def flip_sample(n, generator):
    return torch.rand(n, generator=generator, device=generator.device) < 0.5


def flip_apply(x, params):
    return torch.where(params[: len(x), None, None, None], x.flip(-1), x)


def make_ctx(
    digits,
    *,
    images=None,
    real_images=None,
    iteration=0,
    lr=0.1,
    augment=False,
    mask=None,
    network="convnet",
    norm="instancenorm",
    ipc=IPC,
):
    if images is None:
        images = torch.randn(N_CLASSES * ipc, 1, 8, 8, generator=torch.Generator().manual_seed(123))
    images = images.clone().requires_grad_(True)
    real = RealData(digits.images if real_images is None else real_images, digits.labels, N_CLASSES)
    kwargs = {"norm": norm} if network == "convnet" else {}

    def build(seed):
        return build_network(
            network,
            input_shape=(1, 8, 8),
            n_classes=N_CLASSES,
            width=8,
            depth=2,
            random_state=seed,
            **kwargs,
        )

    return StepContext(
        images=images,
        labels=torch.arange(N_CLASSES).repeat_interleave(ipc),
        optimizer=torch.optim.SGD([images], lr=lr, momentum=0.5),
        real=real,
        generator=torch.Generator().manual_seed(1000 + iteration),
        augment=flip_apply if augment else None,
        sample_augment=flip_sample if augment else None,
        mask=MDTMask() if mask is None else mask,
        iteration=iteration,
        build_network=build,
    )


class MaskSpy:
    """Wraps a mask, recording (which, input, output) of every call."""

    def __init__(self, mask):
        self.mask = mask
        self.calls = []

    def __call__(self, images, which, generator):
        out = self.mask(images, which, generator)
        self.calls.append((which, images.detach().clone(), out.detach().clone()))
        return out


# ------------------------------------------------------------------------------ registry, options
def test_registered_with_dc_defaults():
    assert METHODS["dc"] is GradientMatching
    assert METHODS["dsa"] is GradientMatchingDSA
    assert issubclass(GradientMatchingDSA, GradientMatching)
    assert not GradientMatching.default_augment
    assert GradientMatchingDSA.default_augment
    assert GradientMatching.default_lr_img == GradientMatchingDSA.default_lr_img == 0.1
    assert GradientMatching.defaults == {
        "outer_loop": None,
        "inner_loop": None,
        "lr_net": 0.01,
        "momentum_net": 0.0,
        "batch_real": 256,
        "batch_train": 256,
        "distance": "layerwise_cosine",
        "vectorize": True,
    }
    assert GradientMatching({}).options == GradientMatching.defaults


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"outer_loops": 3}, r"Unknown option\(s\) \['outer_loops'\] for GradientMatching"),
        ({"distance": "l2"}, r"'distance' option of GradientMatching must be one of"),
        ({"outer_loop": 0}, r"'outer_loop' option .* must be None or an int in the range \[1"),
        ({"outer_loop": True}, "'outer_loop' option"),
        ({"lr_net": 0.0}, "'lr_net' option"),
        ({"vectorize": 1}, "'vectorize' option"),
    ],
)
def test_invalid_options_are_rejected(options, match):
    with pytest.raises(InvalidParameterError, match=match):
        GradientMatching(options)


def test_published_schedule():
    assert GradientMatching.published_schedule(1) == (1, 1)
    assert GradientMatching.published_schedule(10) == (10, 50)
    assert GradientMatching.published_schedule(50) == (50, 10)
    with pytest.raises(ValueError, match=r"ipc=3\. Set both in method_params"):
        GradientMatching.published_schedule(3)


def test_none_takes_the_published_schedule(digits):
    # ipc=1 publishes (1, 1): one image update, so one "real" mask call per class.
    ctx = make_ctx(digits, ipc=1)
    ctx.mask = spy = MaskSpy(ctx.mask)
    GradientMatching({"batch_real": 8}).step(ctx)
    assert sum(which == "real" for which, _, _ in spy.calls) == N_CLASSES
    # Only the missing one is filled in.
    ctx = make_ctx(digits, ipc=1)
    ctx.mask = spy = MaskSpy(ctx.mask)
    GradientMatching({"batch_real": 8, "outer_loop": 3}).step(ctx)
    assert sum(which == "real" for which, _, _ in spy.calls) == 3 * N_CLASSES
    with pytest.raises(ValueError, match="ipc=2"):
        GradientMatching({"batch_real": 8}).step(make_ctx(digits))


# ------------------------------------------------------------------------------ distances
def test_distances_on_known_gradients():
    weight = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    bias = torch.tensor([1.0, -1.0])
    same = [weight, bias]
    # Proportional rows and a different bias: the layer-wise cosine ignores biases.
    other = [torch.tensor([[3.0, 0.0], [0.0, 1.0]]), torch.tensor([5.0, 5.0])]
    assert _gradient_distance(same, same, "layerwise_cosine").item() == pytest.approx(0, abs=1e-5)
    assert _gradient_distance(other, same, "layerwise_cosine").item() == pytest.approx(0, abs=1e-5)
    # Orthogonal rows: 1 - 0 for each of the two output units.
    swapped = [torch.tensor([[0.0, 1.0], [1.0, 0.0]]), bias]
    assert _gradient_distance(swapped, same, "layerwise_cosine").item() == pytest.approx(2.0)
    assert _gradient_distance(other, same, "mse").item() == pytest.approx(4 + 1 + 16 + 36)
    flat_a, flat_b = torch.cat([t.flatten() for t in other]), torch.cat([t.flatten() for t in same])
    cosine = (flat_a @ flat_b / (flat_a.norm() * flat_b.norm())).item()
    assert _gradient_distance(other, same, "cosine").item() == pytest.approx(1 - cosine)


@pytest.mark.parametrize("distance", ["layerwise_cosine", "mse", "cosine"])
def test_batched_distance_is_the_sum_of_per_class_distances(distance):
    g = torch.Generator().manual_seed(0)
    shapes = [(4, 3, 3, 3), (4,), (5, 16), (5,)]
    syn = [torch.randn(3, *s, generator=g) for s in shapes]
    real = [torch.randn(3, *s, generator=g) for s in shapes]
    per_class = sum(
        _gradient_distance([t[c] for t in syn], [t[c] for t in real], distance) for c in range(3)
    )
    batched = _batched_gradient_distance(syn, real, distance)
    torch.testing.assert_close(batched, per_class)


# ------------------------------------------------------------------------------ the step
def probe_loss(digits, images, method):
    """The matching loss of ``images`` on fixed draws, without updating them (lr 0)."""
    losses = []
    for iteration in range(3):
        ctx = make_ctx(digits, images=images, iteration=10_000 + iteration, lr=0.0)
        losses.append(method.step(ctx)["loss"])
    return sum(losses) / len(losses)


def test_matching_loss_decreases_and_images_keep_their_shape(digits):
    method = GradientMatching(OPTIONS)
    ctx = make_ctx(digits)
    start = ctx.images.detach().clone()
    before = probe_loss(digits, start, method)
    for iteration in range(15):
        ctx.iteration = iteration
        ctx.generator = torch.Generator().manual_seed(iteration)
        info = method.step(ctx)
        assert set(info) == {"loss"}
        assert math.isfinite(info["loss"])
    after = probe_loss(digits, ctx.images.detach(), method)
    assert ctx.images.shape == start.shape
    assert ctx.images.is_leaf
    assert ctx.images.requires_grad
    assert not torch.allclose(ctx.images, start)
    assert after < 0.9 * before


def test_same_seeds_give_identical_images(digits):
    results = []
    for _ in range(2):
        ctx = make_ctx(digits, augment=True, mask=MDTMask(0.3, "both"))
        for iteration in range(2):
            ctx.iteration = iteration
            ctx.generator = torch.Generator().manual_seed(iteration)
            GradientMatchingDSA(OPTIONS).step(ctx)
        results.append(ctx.images.detach().clone())
    assert torch.equal(results[0], results[1])
    other = make_ctx(digits, augment=True, mask=MDTMask(0.3, "both"))
    other.generator = torch.Generator().manual_seed(99)
    GradientMatchingDSA(OPTIONS).step(other)
    assert not torch.equal(other.images.detach(), results[0])


@pytest.mark.parametrize(
    ("network", "norm", "distance", "augment", "mask"),
    [
        ("convnet", "instancenorm", "layerwise_cosine", False, None),
        ("convnet", "instancenorm", "mse", True, MDTMask(0.3, "both")),
        ("convnet", "batchnorm", "layerwise_cosine", True, MDTMask(0.3, "synthetic", "mean")),
        ("convnet", "layernorm", "cosine", False, MDTMask(0.2, "real")),
        ("mlp", None, "layerwise_cosine", False, None),
    ],
)
def test_vectorized_step_equals_reference_step(digits, network, norm, distance, augment, mask):
    method = GradientMatching({**OPTIONS, "distance": distance})
    results = []
    for run in (method.step, method.reference_step):
        ctx = make_ctx(digits, network=network, norm=norm, augment=augment, mask=mask)
        info = run(ctx)
        results.append((info["loss"], ctx.images.detach().clone()))
    (loss, images), (ref_loss, ref_images) = results
    assert loss == pytest.approx(ref_loss, rel=1e-4)
    start = make_ctx(digits).images.detach()
    assert not torch.allclose(ref_images, start)
    torch.testing.assert_close(images, ref_images, rtol=1e-4, atol=1e-5)


def test_vectorize_false_runs_the_reference(digits, monkeypatch):
    method = GradientMatching({**OPTIONS, "vectorize": False})
    calls = []
    monkeypatch.setattr(method, "_match_vectorized", lambda *a: calls.append(a))
    method.step(make_ctx(digits))
    assert calls == []


# ------------------------------------------------------------------------------ MDT mask
@pytest.mark.parametrize("run", ["step", "reference_step"])
def test_mask_is_applied_to_the_batches_it_names(digits, run):
    ctx = make_ctx(digits)
    start = ctx.images.detach().clone()
    ctx.mask = spy = MaskSpy(MDTMask(0.99, "real"))
    getattr(GradientMatching(OPTIONS), run)(ctx)
    # Per outer step, per class: the real batch of the class, then its synthetic rows.
    assert [which for which, _, _ in spy.calls] == ["real", "synthetic"] * (2 * N_CLASSES)
    for k, (which, before, after) in enumerate(spy.calls):
        c = (k // 2) % N_CLASSES
        if which == "real":
            assert len(before) == OPTIONS["batch_real"]
            own_class = digits.images[digits.labels == c].flatten(1)
            assert all((own_class == row).all(1).any() for row in before.flatten(1))
            assert (after == 0).float().mean() > 0.95
        else:
            assert len(before) == IPC
            if k < 2 * N_CLASSES:  # First outer step: the images are not updated yet.
                torch.testing.assert_close(before, start[c * IPC : (c + 1) * IPC])
            torch.testing.assert_close(after, before)


@pytest.mark.parametrize("run", ["step", "reference_step"])
def test_masked_batches_are_the_ones_that_are_matched(digits, run):
    method = GradientMatching({**OPTIONS, "outer_loop": 1})

    def zero(which_to_zero):
        def mask(images, which, generator):
            return torch.zeros_like(images) if which == which_to_zero else images

        return mask

    # Zeroing the real batches is the same as matching against all-zero real images ...
    masked = make_ctx(digits)
    masked.mask = zero("real")
    getattr(method, run)(masked)
    blank = make_ctx(digits, real_images=torch.zeros_like(digits.images))
    getattr(method, run)(blank)
    assert not torch.equal(masked.images, make_ctx(digits).images)
    torch.testing.assert_close(masked.images, blank.images)
    # ... and zeroing the synthetic batches cuts the images off from the objective.
    cut = make_ctx(digits)
    cut.mask = zero("synthetic")
    info = getattr(method, run)(cut)
    assert info["loss"] > 0
    assert torch.equal(cut.images, make_ctx(digits).images)


# ------------------------------------------------------------------------------ augmentation
@pytest.mark.parametrize("method_cls", [GradientMatching, GradientMatchingDSA])
def test_siamese_gets_each_class_real_and_synthetic_batch(digits, method_cls):
    ctx = make_ctx(digits, augment=True)
    start = ctx.images.detach().clone()
    calls = []
    siamese = ctx.siamese

    def spy(*batches):
        calls.append([b.detach().clone() for b in batches])
        return siamese(*batches)

    ctx.siamese = spy
    method_cls({**OPTIONS, "outer_loop": 1}).step(ctx)
    assert len(calls) == N_CLASSES
    for c, (real, syn) in enumerate(calls):
        assert len(real) == OPTIONS["batch_real"]
        own_class = digits.images[digits.labels == c].flatten(1)
        assert all((own_class == row).all(1).any() for row in real.flatten(1))
        torch.testing.assert_close(syn, start[c * IPC : (c + 1) * IPC])


def test_augmentation_changes_the_result_and_trains_the_network_on_minibatches(digits):
    sizes = []

    def sample(n, generator):
        sizes.append(n)
        return flip_sample(n, generator)

    ctx = make_ctx(digits, augment=True)
    ctx.sample_augment = sample
    GradientMatchingDSA(OPTIONS).step(ctx)
    # Outer step: one siamese draw per class (for the larger, real batch); inner loop:
    # 2 epochs of 20 images in minibatches of 8, 8 and 4; outer step again.
    per_outer = [OPTIONS["batch_real"]] * N_CLASSES
    assert sizes == per_outer + [8, 8, 4] * 2 + per_outer
    plain = make_ctx(digits)
    GradientMatchingDSA(OPTIONS).step(plain)
    assert not torch.allclose(plain.images, ctx.images)


# ------------------------------------------------------------------------------ divergence
@pytest.mark.parametrize("run", ["step", "reference_step"])
def test_non_finite_loss_raises_naming_the_iteration(digits, run):
    images = torch.randn(N_CLASSES * IPC, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    images[3, 0, 2, 2] = float("nan")
    ctx = make_ctx(digits, images=images, iteration=7)
    with pytest.raises(FloatingPointError, match=r"loss became nan at iteration 7 \(outer step 0"):
        getattr(GradientMatching(OPTIONS), run)(ctx)
    torch.testing.assert_close(ctx.images.detach(), images, equal_nan=True)
