import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from distcal.distill import (
    METHODS,
    MTT,
    ExpertTrajectories,
    MDTMask,
    RealData,
    SetupContext,
    StepContext,
    build_network,
    load_digits,
    train_expert_trajectories,
)

# Tiny, fast settings: 2 experts trained for 4 epochs on 200 digits.
EXPERTS = {
    "n_experts": 2,
    "expert_train_epochs": 4,
    "expert_batch_size": 32,
    "expert_lr": 0.01,
    "max_start_epoch": 2,
    "expert_epochs": 2,
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # The tensors here are tiny: intra-op threads only add overhead (on two busy cores they
    # multiplied the CPU time of an MTT iteration by five).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def convnet_builder(width=8, dtype=torch.float32):
    def build(seed):
        net = build_network(
            "convnet", input_shape=(1, 8, 8), n_classes=10, width=width, depth=2, random_state=seed
        )
        return net.to(dtype)

    return build


@pytest.fixture(scope="module")
def real():
    data = load_digits()
    return RealData(data.images[:200], data.labels[:200], data.n_classes)


@pytest.fixture(scope="module")
def real64(real):
    return RealData(real.images.to(torch.float64), real.labels, real.n_classes)


@pytest.fixture(scope="module")
def buffer_dir(tmp_path_factory, real):
    """Experts trained once and saved; methods below load them instead of training again."""
    path = tmp_path_factory.mktemp("experts")
    MTT({**EXPERTS, "buffer": str(path)}).prepare(
        real, build_network=convnet_builder(), generator=torch.Generator().manual_seed(0)
    )
    return path


def make_method(real, buffer_dir=None, **options):
    method = MTT({**EXPERTS, "buffer": None if buffer_dir is None else str(buffer_dir), **options})
    return method.prepare(
        real,
        build_network=convnet_builder(dtype=real.images.dtype),
        generator=torch.Generator().manual_seed(0),
    )


def make_images(real, ipc=2, seed=1):
    images, labels = real.sample(ipc, torch.Generator().manual_seed(seed))
    return images.clone().requires_grad_(True), labels


def make_optimizer(method, images, lr_img=10.0, lr_lr=1e-2):
    # As MDTTrainer builds it: the images' group, then the method's groups.
    groups = [{"params": [images], "lr": lr_img, "momentum": 0.5}]
    groups += [{**group, "lr": lr_lr} for group in method.parameter_groups()]
    return torch.optim.SGD(groups)


def make_ctx(method, images, labels, optimizer, *, iteration=0, seed=100, **kwargs):
    fields = {"augment": None, "sample_augment": None, "mask": MDTMask()}
    fields.update(kwargs)
    return StepContext(
        images=images,
        labels=labels,
        optimizer=optimizer,
        real=None,
        generator=torch.Generator().manual_seed(seed + iteration),
        iteration=iteration,
        build_network=convnet_builder(),
        options=method.options,
        **fields,
    )


def run(method, images, labels, iterations, **kwargs):
    optimizer = make_optimizer(method, images, **kwargs)
    return [
        method.step(make_ctx(method, images, labels, optimizer, iteration=it))
        for it in range(iterations)
    ]


# A differentiable siamese augmentation: per-image flip and brightness shift.
def sample_augment(n, generator):
    return {
        "flip": torch.rand(n, generator=generator) < 0.5,
        "shift": 0.1 * torch.randn(n, generator=generator),
    }


def augment(x, params):
    n = len(x)
    flipped = torch.where(params["flip"][:n, None, None, None], x.flip(-1), x)
    return flipped + params["shift"][:n, None, None, None].to(x.dtype)


# ------------------------------------------------------------------------------------------
# Interface, options, buffer
# ------------------------------------------------------------------------------------------


def test_registered_with_documented_defaults():
    assert METHODS["mtt"] is MTT
    assert set(MTT.defaults) == {
        "n_experts",
        "expert_epochs",
        "syn_steps",
        "max_start_epoch",
        "lr_teacher",
        "lr_lr",
        "batch_syn",
        "expert_train_epochs",
        "expert_lr",
        "expert_batch_size",
        "memory",
        "buffer",
    }
    for key in MTT.defaults:
        assert f"{key} :" in MTT.__doc__


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nope": 1}, r"Unknown option\(s\) \['nope'\]"),
        ({"syn_steps": 0}, "'syn_steps' option of MTT must be an int in the range \\[1, inf\\)"),
        ({"memory": "tesla"}, "'memory' option of MTT must be one of"),
        ({"lr_teacher": -0.1}, "'lr_teacher'"),
        ({"batch_syn": 0}, "'batch_syn' option of MTT must be an int .* or None"),
        ({"max_start_epoch": 20, "expert_train_epochs": 15}, "expert_train_epochs=15 is too short"),
    ],
)
def test_options_are_validated(options, message):
    with pytest.raises(ValueError, match=message):
        MTT(options)


def test_learning_rate_needs_setup():
    method = MTT()
    with pytest.raises(RuntimeError, match="call setup"):
        method.extra_parameters()


def test_expert_trajectories_record_every_epoch_and_round_trip(tmp_path, real):
    build = convnet_builder()
    buffer = train_expert_trajectories(
        real.images,
        real.labels,
        build_network=build,
        n_experts=2,
        epochs=3,
        lr=0.01,
        batch_size=64,
        generator=torch.Generator().manual_seed(0),
    )
    n_params = sum(p.numel() for p in build(0).parameters())
    assert len(buffer) == 2
    assert all(t.shape == (4, n_params) for t in buffer)
    assert not torch.equal(buffer[0], buffer[1])  # independent seeds
    assert all(not torch.equal(t[e], t[e + 1]) for t in buffer for e in range(3))

    buffer.save(tmp_path / "buf")
    assert sorted(p.name for p in (tmp_path / "buf").iterdir()) == [
        "trajectories.json",
        "trajectories.safetensors",
    ]
    sidecar = json.loads((tmp_path / "buf" / "trajectories.json").read_text())
    assert sidecar["n_epochs"] == 3
    assert sidecar["n_params"] == n_params
    assert sidecar["config"]["lr"] == 0.01
    loaded = ExpertTrajectories.load(tmp_path / "buf")
    assert loaded.layout == buffer.layout
    assert all(torch.equal(a, b) for a, b in zip(loaded, buffer, strict=True))
    with pytest.raises(FileNotFoundError, match="missing"):
        ExpertTrajectories.load(tmp_path / "elsewhere")


def test_saved_buffer_is_reused_and_must_match(real, buffer_dir):
    calls = []

    def counting(seed):
        calls.append(seed)
        return convnet_builder()(seed)

    method = MTT({**EXPERTS, "buffer": str(buffer_dir)})
    method.prepare(real, build_network=counting, generator=torch.Generator().manual_seed(5))
    assert len(calls) == 1  # the template network only: no expert was trained
    fresh = make_method(real)  # the same experts, trained in memory
    assert all(torch.equal(a, b) for a, b in zip(method.experts_, fresh.experts_, strict=True))

    with pytest.raises(ValueError, match=r"does not match this run: lr=0.01 \(wanted 0.02\)"):
        make_method(real, buffer_dir, expert_lr=0.02)
    other = RealData(real.images.flip(-1), real.labels, real.n_classes)
    with pytest.raises(ValueError, match="trained on other real images"):
        make_method(other, buffer_dir)


def setup_context(**kwargs):
    """What MDTTrainer hands to MTT.setup."""
    fields = {
        "build_network": convnet_builder(),
        "seed": 0,
        "device": torch.device("cpu"),
        "augment": None,
        "sample_augment": None,
        "mask": MDTMask(),
        "verbose": False,
    }
    return SetupContext(**{**fields, **kwargs})


def test_setup_reads_its_context_and_masks_the_experts_real_batches(real):
    masked, plain, synthetic_only = MTT(EXPERTS), MTT(EXPERTS), MTT(EXPERTS)
    masked.setup(real, setup_context(mask=MDTMask(0.5, "real")))
    plain.setup(real, setup_context())
    synthetic_only.setup(real, setup_context(mask=MDTMask(0.5, "synthetic")))
    assert masked.experts_.config["mask"] == {"ratio": 0.5, "kind": "zero"}
    assert plain.experts_.config["mask"] is None
    assert synthetic_only.experts_.config["mask"] is None
    # Same seeds, masked real batches: the trajectories start together and then part.
    assert torch.equal(masked.experts_[0][0], plain.experts_[0][0])
    assert not torch.equal(masked.experts_[0][-1], plain.experts_[0][-1])
    assert torch.equal(synthetic_only.experts_[0][-1], plain.experts_[0][-1])
    assert set(masked.extra_parameters()) == {"log_lr"}
    (group,) = masked.parameter_groups()
    assert group["params"] == [masked.log_lr]
    assert group["lr"] == MTT.defaults["lr_lr"]


# ------------------------------------------------------------------------------------------
# Iterations
# ------------------------------------------------------------------------------------------


def test_step_updates_images_and_positive_learning_rate(real, buffer_dir):
    method = make_method(real, buffer_dir, syn_steps=4, batch_syn=8)
    images, labels = make_images(real)
    before = images.detach().clone()
    # A large lr_lr moves log(lr) a long way: the learning rate stays positive.
    start = float(method.log_lr.detach())
    records = run(method, images, labels, 5, lr_lr=5.0)
    assert abs(float(method.log_lr.detach()) - start) > 0.5
    assert images.shape == before.shape
    assert not torch.equal(images, before)
    assert set(records[0]) == {"loss", "syn_lr", "expert", "start_epoch"}
    assert all(0 <= r["start_epoch"] < EXPERTS["max_start_epoch"] for r in records)
    assert all(r["syn_lr"] > 0 for r in records)
    assert method.learned_learning_rate() > 0
    assert math.isfinite(method.learned_learning_rate())
    assert method.state_dict()["log_lr"].shape == ()


def test_matching_loss_decreases(real, buffer_dir):
    method = make_method(real, buffer_dir, syn_steps=10)
    images, labels = make_images(real)
    losses = [r["loss"] for r in run(method, images, labels, 20)]
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first


@pytest.mark.parametrize("memory", ["unrolled", "constant"])
def test_same_seed_same_images(real, buffer_dir, memory):
    results = []
    for _ in range(2):
        method = make_method(real, buffer_dir, syn_steps=3, batch_syn=8, memory=memory)
        images, labels = make_images(real)
        run(method, images, labels, 3)
        results.append((images.detach(), method.learned_learning_rate()))
    assert torch.equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


def test_optimizer_must_hold_the_learning_rate(real, buffer_dir):
    method = make_method(real, buffer_dir, syn_steps=1)
    images, labels = make_images(real)
    optimizer = torch.optim.SGD([images], lr=1.0)
    with pytest.raises(RuntimeError, match="does not hold MTT's learnable learning rate"):
        method.step(make_ctx(method, images, labels, optimizer))


def test_nan_raises_floating_point_error_naming_the_iteration(real, buffer_dir):
    method = make_method(real, buffer_dir, syn_steps=3)
    images, labels = make_images(real)
    optimizer = make_optimizer(method, images)
    with torch.no_grad():
        method.log_lr.fill_(200.0)  # lr = e^200: the student diverges
    before = images.detach().clone()
    with pytest.raises(FloatingPointError, match="at iteration 7"):
        method.step(make_ctx(method, images, labels, optimizer, iteration=7))
    assert torch.equal(images, before)


# ------------------------------------------------------------------------------------------
# The constant-memory gradient
# ------------------------------------------------------------------------------------------


def gradients(method, images, labels, **ctx_fields):
    """The gradients one step computes (with zero learning rates, nothing moves)."""
    optimizer = make_optimizer(method, images, lr_img=0.0, lr_lr=0.0)
    record = method.step(make_ctx(method, images, labels, optimizer, **ctx_fields))
    return record["loss"], images.grad.clone(), method.log_lr.grad.clone()


@pytest.mark.parametrize(
    ("batch_syn", "fields"),
    [
        (None, {}),
        (7, {"mask": MDTMask(ratio=0.3, apply_to="both", kind="mean")}),
        (7, {"augment": augment, "sample_augment": sample_augment, "mask": MDTMask(0.2)}),
    ],
)
def test_constant_memory_gradient_equals_unrolled_autograd(real64, batch_syn, fields):
    images, labels = make_images(real64)
    results = {}
    for memory in ("unrolled", "constant"):
        method = make_method(real64, syn_steps=6, batch_syn=batch_syn, memory=memory)
        results[memory] = gradients(method, images, labels, **fields)
        images.grad = None
    (loss_u, img_u, lr_u), (loss_c, img_c, lr_c) = results["unrolled"], results["constant"]
    assert loss_u == pytest.approx(loss_c, rel=1e-12)
    assert torch.allclose(img_c, img_u, rtol=1e-10, atol=1e-12 * img_u.abs().max())
    assert torch.allclose(lr_c, lr_u, rtol=1e-10)


def tesla_and_exact(method, images, labels, steps):
    """TESLA's gradient (Cui et al. 2023, Eq. 6 without its code's factor-2 slip) and the exact
    one, by an implementation independent of MTT's: one expert, start epoch 0, all images."""
    network = method.network_
    layout = [(n, p.shape, p.numel()) for n, p in network.named_parameters()]

    def logits(flat, x):
        pieces = flat.split([k for _, _, k in layout])
        params = {n: t.view(s) for (n, s, _), t in zip(layout, pieces, strict=True)}
        return functional_call(network, params, (x,))

    trajectory = method.experts_[0]
    start, target = trajectory[0], trajectory[EXPERTS["expert_epochs"]]
    scale = (start - target).square().sum()
    lr = method.log_lr.detach().exp().requires_grad_(True)

    theta = start.clone().requires_grad_(True)  # exact: autograd through every step
    for _ in range(steps):
        inner = F.cross_entropy(logits(theta, images), labels)
        g = torch.autograd.grad(inner, theta, create_graph=True)[0]
        theta = theta - lr * g
    exact = torch.autograd.grad((theta - target).square().sum() / scale, [images, lr])

    thetas, total = [start], torch.zeros_like(start)  # TESLA: detached steps, fixed adjoint
    for _ in range(steps):
        free = thetas[-1].clone().requires_grad_(True)
        g = torch.autograd.grad(F.cross_entropy(logits(free, images), labels), free)[0]
        thetas.append(thetas[-1] - lr.detach() * g)
        total += g
    adjoint = 2 * (thetas[-1] - target) / scale
    image_grad = torch.zeros_like(images)
    for i in range(steps):
        free = thetas[i].clone().requires_grad_(True)
        g = torch.autograd.grad(
            F.cross_entropy(logits(free, images), labels), free, create_graph=True
        )[0]
        image_grad -= lr.detach() * torch.autograd.grad(torch.dot(adjoint, g), images)[0]
    tesla = (image_grad, -torch.dot(total, adjoint))
    return exact, tesla


def test_tesla_gradient_is_exact_for_one_step_only(real64):
    method = make_method(real64, n_experts=1, max_start_epoch=1, expert_train_epochs=2)
    images, labels = make_images(real64)
    errors = {}
    for steps in (1, 5, 10):
        (exact_img, exact_lr), (tesla_img, tesla_lr) = tesla_and_exact(
            method, images, labels, steps
        )
        image_error = float((tesla_img - exact_img).norm() / exact_img.norm())
        lr_error = float(abs(tesla_lr - exact_lr) / abs(exact_lr))
        errors[steps] = (image_error, lr_error)
        # The exact reference agrees with MTT's constant-memory gradient.
        ours = make_method(
            real64,
            n_experts=1,
            max_start_epoch=1,
            expert_train_epochs=2,
            syn_steps=steps,
            memory="constant",
        )
        _, img, log_lr_grad = gradients(ours, images, labels)
        images.grad = None
        assert torch.allclose(img, exact_img, rtol=1e-10, atol=1e-12 * exact_img.abs().max())
        assert torch.allclose(log_lr_grad, exact_lr * ours.learned_learning_rate(), rtol=1e-10)
    assert errors[1][0] < 1e-12
    assert errors[1][1] < 1e-12
    # With several steps TESLA drops the later steps' Hessians: a real, measurable error.
    assert errors[5][0] > 1e-3
    assert errors[10][0] > errors[5][0]


# ------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------


class SavedTensorMeter:
    """Bytes of tensors saved for backward that are alive at once (peak) and in total.

    The packed handle keeps a detached alias: keeping the tensor itself would tie a cycle
    between an output and its own graph node and keep graphs alive past their use.
    """

    def __init__(self):
        self.live = self.peak = self.total = 0

    def pack(self, tensor):
        return _Saved(tensor, self)

    def unpack(self, saved):
        return saved.tensor


class _Saved:
    def __init__(self, tensor, meter):
        self.tensor, self.meter = tensor.detach(), meter
        self.nbytes = tensor.numel() * tensor.element_size()
        meter.live += self.nbytes
        meter.total += self.nbytes
        meter.peak = max(meter.peak, meter.live)

    def __del__(self):
        self.meter.live -= self.nbytes


def saved_bytes(real, buffer_dir, memory, steps):
    method = make_method(real, buffer_dir, syn_steps=steps, memory=memory)
    images, labels = make_images(real, ipc=5)
    optimizer = make_optimizer(method, images)
    meter = SavedTensorMeter()
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        method.step(make_ctx(method, images, labels, optimizer))
    assert meter.live == 0  # every graph was freed
    return meter.peak


def test_saved_tensor_memory_grows_with_steps_only_when_unrolled(real, buffer_dir):
    unrolled = {n: saved_bytes(real, buffer_dir, "unrolled", n) for n in (5, 10, 20)}
    constant = {n: saved_bytes(real, buffer_dir, "constant", n) for n in (5, 10, 20)}
    assert constant[5] == constant[10] == constant[20]
    assert unrolled[10] / unrolled[5] == pytest.approx(2, rel=0.05)
    assert unrolled[20] / unrolled[5] == pytest.approx(4, rel=0.05)
    assert constant[5] < unrolled[5] / 2
