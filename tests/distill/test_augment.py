import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from distcal.distill import SiameseAugment

OPERATIONS = ["color", "crop", "cutout", "flip", "scale", "rotate"]
DEFAULT = "color_crop_cutout_flip_scale_rotate"


def images(n=6, c=1, h=8, w=8, *, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, c, h, w, generator=g, dtype=dtype)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def only(op, **kwargs):
    """An augmentation that applies ``op`` alone to every image."""
    return SiameseAugment(op, mode="all", per_sample=True, **kwargs)


# --- determinism, global state, parameters ---------------------------------------------------


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("mode", ["single", "all"])
def test_output_is_a_function_of_the_generator(mode, per_sample):
    aug = SiameseAugment(mode=mode, per_sample=per_sample)
    x = images(16, 3)
    a, b = aug(x, generator=gen(1)), aug(x, generator=gen(1))
    assert torch.equal(a, b)
    assert not torch.equal(a, aug(x, generator=gen(2)))
    pa, pb = aug.sample(16, gen(5)), aug.sample(16, gen(5))
    assert pa.keys() == pb.keys()
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


def test_global_random_state_is_untouched():
    state = torch.random.get_rng_state()
    for mode in ("single", "all"):
        for per_sample in (False, True):
            aug = SiameseAugment(mode=mode, per_sample=per_sample)
            x = images(8, 3).requires_grad_()
            aug(x, generator=gen()).sum().backward()
            aug.apply(x, aug.sample(8, gen()))
    assert torch.equal(state, torch.random.get_rng_state())


def test_parameters_are_plain_tensors_that_round_trip(tmp_path):
    from safetensors.torch import load_file, save_file

    aug = SiameseAugment()
    params = aug.sample(5, gen())
    assert set(params) == {
        "brightness",
        "saturation",
        "contrast",
        "crop",
        "cutout",
        "flip",
        "scale",
        "rotate",
        "operation",
    }
    for key, value in params.items():
        assert isinstance(value, torch.Tensor)
        assert value.shape[0] == 5, key
        assert value.device == torch.device("cpu")
        assert not value.requires_grad
    assert params["flip"].dtype == torch.bool
    assert params["operation"].dtype == torch.int64
    save_file(params, tmp_path / "params.safetensors")
    loaded = load_file(tmp_path / "params.safetensors")
    x = images(5)
    assert torch.equal(aug.apply(x, params), aug.apply(x, loaded))
    assert set(SiameseAugment("flip_rotate", mode="all").sample(3, gen())) == {"flip", "rotate"}


def test_sampled_ranges_match_the_magnitudes():
    aug = SiameseAugment(
        mode="all",
        per_sample=True,
        brightness=0.8,
        saturation=3.0,
        contrast=0.25,
        scale=1.5,
        rotate=30.0,
        flip=0.25,
    )
    p = aug.sample(4000, gen())
    for key, low, high in [
        ("brightness", -0.4, 0.4),
        ("saturation", 0.0, 3.0),
        ("contrast", 0.25, 1.25),
        ("scale", 1 / 1.5, 1.5),
        ("rotate", -30.0, 30.0),
        ("crop", 0.0, 1.0),
        ("cutout", 0.0, 1.0),
    ]:
        value = p[key]
        assert low <= float(value.min()), key
        assert float(value.max()) <= high, key
        # Uniform draws fill the range.
        span = high - low
        assert float(value.min()) < low + 0.01 * span
        assert float(value.max()) > high - 0.01 * span
    assert abs(float(p["flip"].float().mean()) - 0.25) < 0.03


def test_single_mode_picks_each_operation_and_shares_a_draw_by_default():
    aug = SiameseAugment(per_sample=True)
    chosen = aug.sample(3000, gen())["operation"]
    counts = torch.bincount(chosen, minlength=6)
    assert counts.min() > 400  # about 500 each
    shared = SiameseAugment().sample(7, gen())
    for key, value in shared.items():
        assert torch.equal(value, value[:1].expand_as(value)), key


# --- siamese replay -----------------------------------------------------------------------------


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("mode", ["single", "all"])
def test_same_parameters_transform_every_batch_alike(mode, per_sample):
    aug = SiameseAugment(mode=mode, per_sample=per_sample)
    x = images(12, 3, 10, 10)
    params = aug.sample(12, gen(3))
    full = aug.apply(x, params)
    assert torch.equal(full, aug.apply(x.clone(), params))
    torch.testing.assert_close(aug.apply(x[:3], params), full[:3])
    if not per_sample:
        # One shared draw: identical images come out identical, whatever their row.
        same = x[:1].expand(5, -1, -1, -1)
        out = aug.apply(same, params)
        torch.testing.assert_close(out, out[:1].expand_as(out))


@settings(max_examples=25, deadline=None)
@given(
    ops=st.lists(st.sampled_from(OPERATIONS), min_size=1, max_size=6, unique=True),
    mode=st.sampled_from(["single", "all"]),
    per_sample=st.booleans(),
    m=st.integers(1, 6),
    c=st.sampled_from([1, 3]),
    h=st.integers(4, 12),
    w=st.integers(4, 12),
    seed=st.integers(0, 2**16),
)
def test_prefix_property(ops, mode, per_sample, m, c, h, w, seed):
    aug = SiameseAugment("_".join(ops), mode=mode, per_sample=per_sample)
    x = images(6, c, h, w, seed=seed)
    params = aug.sample(6, gen(seed))
    out = aug.apply(x, params)
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert torch.isfinite(out).all()
    torch.testing.assert_close(aug.apply(x[:m], params), out[:m])


def test_single_mode_applies_exactly_the_chosen_operation():
    aug = SiameseAugment(per_sample=True)
    x = images(40, 3)
    params = aug.sample(40, gen(4))
    out = aug.apply(x, params)
    for index, op in enumerate(aug.operations):
        rows = params["operation"] == index
        assert rows.any()
        torch.testing.assert_close(out[rows], only(op).apply(x, params)[rows])


def test_a_shared_draw_applies_one_operation_to_the_whole_batch():
    aug = SiameseAugment()
    x = images(5, 3)
    seen = set()
    for seed in range(30):
        params = aug.sample(5, gen(seed))
        op = aug.operations[int(params["operation"][0])]
        seen.add(op)
        assert torch.equal(aug.apply(x, params), only(op).apply(x, params))
    assert seen == set(OPERATIONS)


def test_all_mode_composes_in_strategy_order():
    aug = SiameseAugment(mode="all", per_sample=True)
    x = images(6, 3)
    params = aug.sample(6, gen(7))
    expected = x
    for op in aug.operations:
        expected = only(op).apply(expected, params)
    torch.testing.assert_close(aug.apply(x, params), expected)
    # Flip and rotate do not commute, so the order of the strategy matters.
    p = {"rotate": torch.full((6,), 10.0), "flip": torch.ones(6, dtype=torch.bool)}
    one = SiameseAugment("rotate_flip", mode="all").apply(x, p)
    other = SiameseAugment("flip_rotate", mode="all").apply(x, p)
    assert not torch.allclose(one, other)


# --- gradients, shapes, dtypes ----------------------------------------------------------------


@pytest.mark.parametrize("op", [*OPERATIONS, DEFAULT])
def test_gradients_flow_to_the_images(op):
    aug = SiameseAugment(op, mode="all", per_sample=True)
    x = images(8, 3).requires_grad_()
    weights = images(8, 3, seed=9)
    (aug(x, generator=gen(1)) * weights).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("c", "h", "w"), [(1, 28, 28), (3, 8, 8), (3, 9, 13), (1, 5, 4)])
def test_shape_and_dtype_are_preserved(dtype, c, h, w):
    for mode in ("single", "all"):
        aug = SiameseAugment(mode=mode, per_sample=True)
        x = images(5, c, h, w, dtype=dtype)
        out = aug(x, generator=gen())
        assert out.shape == x.shape
        assert out.dtype == dtype
        assert torch.isfinite(out).all()


def test_one_image_and_an_empty_batch():
    aug = SiameseAugment()
    assert aug(images(1), generator=gen()).shape == (1, 1, 8, 8)
    assert aug(images(0), generator=gen()).shape == (0, 1, 8, 8)


# --- each operation does what it says ----------------------------------------------------------


def test_flip_mirrors_left_to_right():
    x = images(4, 3, 6, 7)
    assert torch.equal(only("flip", flip=1.0)(x, generator=gen()), x.flip(3))
    assert torch.equal(only("flip", flip=0.0)(x, generator=gen()), x)
    p = {"flip": torch.tensor([True, False, True, False])}
    out = only("flip").apply(x, p)
    assert torch.equal(out[0], x[0].flip(2))
    assert torch.equal(out[1], x[1])


def crop_oracle(x, dy, dx):
    """Shift content down by dy and right by dx, zeros shifted in."""
    out = torch.zeros_like(x)
    _, h, w = x.shape
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[:, i, j] = x[:, i - dy, j - dx]
    return out


def test_crop_shifts_content_by_the_sampled_integer_amounts():
    aug = only("crop")  # largest shift: 8 * 0.125 = 1 pixel; 28 * 0.125 = 3.5 -> 4 pixels
    for h, w, sh, sw in [(8, 8, 1, 1), (28, 28, 4, 4), (8, 28, 1, 4)]:
        x = images(3, 2, h, w)
        # A quantile in the middle of bin k of 2s + 1 bins gives the shift k - s.
        for dy, dx in [(-sh, sw), (sh, -sw), (0, 0), (sh, sw - 1)]:
            u = torch.tensor([[(dy + sh + 0.5) / (2 * sh + 1), (dx + sw + 0.5) / (2 * sw + 1)]])
            out = aug.apply(x, {"crop": u.expand(3, 2)})
            for b in range(3):
                assert torch.equal(out[b], crop_oracle(x[b], dy, dx)), (h, w, dy, dx)
    # Sampled shifts cover every integer in [-s, s] and nothing else.
    x = torch.zeros(500, 1, 28, 28)
    x[:, :, 14, 14] = 1
    out = aug(x, generator=gen())
    rows, cols = out[:, 0].sum(2).argmax(1) - 14, out[:, 0].sum(1).argmax(1) - 14
    assert set(rows.tolist()) == set(range(-4, 5)) == set(cols.tolist())


def test_cutout_zeroes_a_square_of_the_expected_size():
    x = torch.ones(3, 2, 8, 8)
    aug = only("cutout")  # side 8 * 0.5 = 4
    u = torch.tensor([[0.5, 0.5], [0.0, 0.0], [0.99, 0.5]])
    out = aug.apply(x, {"cutout": u})
    zeros = out == 0
    assert torch.equal(zeros[:, 0], zeros[:, 1])  # the same square in every channel
    # Centre 4 (of positions 0..8): rows and columns 2..5.
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[2:6, 2:6] = True
    assert torch.equal(zeros[0, 0], expected)
    # Hanging over the corner: only a 2x2 quarter is visible.
    assert int(zeros[1, 0].sum()) == 4
    assert bool(zeros[1, 0, :2, :2].all())
    assert int(zeros[2, 0].sum()) == 8
    assert bool(zeros[2, 0, 6:, 2:6].all())
    # Odd side: 9 * 0.5 = 4.5 rounds up to 5, centred on the middle pixel.
    out = aug.apply(torch.ones(1, 1, 9, 9), {"cutout": torch.tensor([[0.5, 0.5]])})
    assert torch.equal((out[0, 0] == 0).nonzero().amin(0), torch.tensor([2, 2]))
    assert int((out == 0).sum()) == 25
    # Sampled squares keep at least a quarter of their area in view, and untouched pixels stay.
    x = images(200, 1, 8, 8).abs() + 1
    out = only("cutout")(x, generator=gen())
    n_zero = (out == 0).flatten(1).sum(1)
    assert int(n_zero.min()) >= 4
    assert int(n_zero.max()) == 16
    kept = out != 0
    assert torch.equal(out[kept], x[kept])
    assert torch.equal(only("cutout", cutout=0.0)(x, generator=gen()), x)


@pytest.mark.parametrize("size", [7, 8, 28])
def test_rotate_by_a_quarter_turn_matches_rot90(size):
    x = images(2, 3, size, size, dtype=torch.float64)
    aug = only("rotate", rotate=90.0)
    out = aug.apply(x, {"rotate": torch.tensor([90.0, -90.0])})
    torch.testing.assert_close(out[0], torch.rot90(x[0], 1, dims=(1, 2)), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], torch.rot90(x[1], -1, dims=(1, 2)), atol=1e-6, rtol=0)


def test_rotate_is_rigid_on_non_square_images_and_identity_at_zero():
    x = images(2, 1, 6, 10)
    aug = only("rotate", rotate=180.0)
    out = aug.apply(x, {"rotate": torch.tensor([180.0, 0.0])})
    torch.testing.assert_close(out[0], x[0].flip(1, 2), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], x[1], atol=1e-5, rtol=0)
    # Rotation is about the image centre: the centre pixel of an odd image keeps its value.
    y = torch.zeros(1, 1, 9, 9)
    y[0, 0, 4, 4] = 1
    out = aug.apply(y, {"rotate": torch.tensor([15.0])})
    assert abs(float(out[0, 0, 4, 4]) - 1) < 1e-5


def test_scale_zooms_each_axis():
    x = torch.ones(1, 1, 8, 8)
    aug = only("scale", scale=2.0)
    # Factor 2 on the width: the content shrinks to the middle half of the columns.
    out = aug.apply(x, {"scale": torch.tensor([[1.0, 2.0]])})
    expected = torch.zeros(8, 8)
    expected[:, 2:6] = 1
    torch.testing.assert_close(out[0, 0], expected, atol=1e-6, rtol=0)
    out = aug.apply(x, {"scale": torch.tensor([[2.0, 1.0]])})
    torch.testing.assert_close(out[0, 0], expected.T, atol=1e-6, rtol=0)
    # Factors below 1 enlarge: a constant image stays constant; (1, 1) is the identity.
    out = aug.apply(x, {"scale": torch.tensor([[0.6, 0.8]])})
    torch.testing.assert_close(out, x)
    z = images(2, 3)
    torch.testing.assert_close(aug.apply(z, {"scale": torch.ones(2, 2)}), z, atol=1e-6, rtol=0)


def color_params(n, brightness=0.0, saturation=1.0, contrast=1.0):
    return {
        "brightness": torch.full((n,), brightness),
        "saturation": torch.full((n,), saturation),
        "contrast": torch.full((n,), contrast),
    }


def test_color_changes_mean_and_spread_as_documented():
    aug = only("color")
    x = images(4, 3, 8, 8, dtype=torch.float64)
    mean, std = x.mean(dim=(1, 2, 3)), x.std(dim=(1, 2, 3))
    # Brightness shifts the mean and keeps the spread.
    out = aug.apply(x, color_params(4, brightness=0.3))
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), mean + 0.3)
    torch.testing.assert_close(out.std(dim=(1, 2, 3)), std)
    # Contrast scales the spread about the image mean.
    out = aug.apply(x, color_params(4, contrast=1.5))
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), mean)
    torch.testing.assert_close(out.std(dim=(1, 2, 3)), 1.5 * std)
    # Saturation scales each pixel's deviation from its channel mean; 0 makes the image grey.
    grey = aug.apply(x, color_params(4, saturation=0.0))
    torch.testing.assert_close(grey, x.mean(dim=1, keepdim=True).expand_as(x))
    out = aug.apply(x, color_params(4, saturation=2.0))
    torch.testing.assert_close(out - grey, 2 * (x - grey))
    # Identity parameters change nothing.
    torch.testing.assert_close(aug.apply(x, color_params(4)), x)


def test_saturation_is_the_identity_on_one_channel():
    aug = only("color")
    x = images(4, 1, 8, 8)
    reference = aug.apply(x, color_params(4, brightness=0.2, contrast=0.7))
    for s in (0.0, 0.5, 2.0):
        out = aug.apply(x, color_params(4, brightness=0.2, saturation=s, contrast=0.7))
        assert torch.equal(out, reference)


def test_default_magnitudes_are_those_of_dsa():
    aug = SiameseAugment()
    assert aug.operations == tuple(OPERATIONS)
    assert (aug.mode, aug.per_sample) == ("single", False)
    assert (aug.brightness, aug.saturation, aug.contrast) == (1.0, 2.0, 0.5)
    assert (aug.crop, aug.cutout, aug.scale, aug.rotate, aug.flip) == (0.125, 0.5, 1.2, 15.0, 0.5)
    assert repr(aug) == "SiameseAugment()"
    assert repr(SiameseAugment("flip", rotate=5)) == "SiameseAugment(strategy='flip', rotate=5)"


# --- errors -------------------------------------------------------------------------------------


def test_bad_strategies_raise_and_list_the_valid_names():
    valid = r"valid names are \['color', 'crop', 'cutout', 'flip', 'scale', 'rotate'\]"
    with pytest.raises(ValueError, match=r"unknown operations \['noise'\].*" + valid):
        SiameseAugment("crop_noise")
    with pytest.raises(ValueError, match=r"'strategy'.*empty"):
        SiameseAugment("")
    with pytest.raises(ValueError, match=r"\['flip'\] more than once"):
        SiameseAugment("flip_crop_flip")
    with pytest.raises(ValueError, match="unknown operations"):
        SiameseAugment("crop__flip")
    with pytest.raises(TypeError, match="'strategy' parameter"):
        SiameseAugment(["crop"])
    with pytest.raises(ValueError, match=r"'mode' parameter.*\['single', 'all'\]"):
        SiameseAugment(mode="multiple")
    with pytest.raises(TypeError, match="'per_sample' parameter"):
        SiameseAugment(per_sample=1)


@pytest.mark.parametrize(
    ("name", "value", "interval"),
    [
        ("brightness", -0.1, r"\[0.0, inf\)"),
        ("saturation", math.inf, r"\[0.0, inf\)"),
        ("contrast", math.nan, r"\[0.0, inf\)"),
        ("crop", 1.0, r"\[0.0, 1.0\)"),
        ("cutout", 1.5, r"\[0.0, 1.0\]"),
        ("scale", 0.2, r"\[1.0, inf\)"),
        ("rotate", 200, r"\[0.0, 180.0\]"),
        ("flip", -0.5, r"\[0.0, 1.0\]"),
    ],
)
def test_bad_magnitudes_raise_naming_the_argument(name, value, interval):
    with pytest.raises(ValueError, match=f"The '{name}' parameter of SiameseAugment .*{interval}"):
        SiameseAugment(**{name: value})


@pytest.mark.parametrize("value", [True, "0.5", None])
def test_non_numeric_magnitudes_raise_type_errors(value):
    with pytest.raises(TypeError, match=r"The 'rotate' parameter .* Got"):
        SiameseAugment(rotate=value)


def test_bad_inputs_to_sample_and_apply():
    aug = SiameseAugment()
    with pytest.raises(ValueError, match="non-negative int"):
        aug.sample(-1, gen())
    with pytest.raises(TypeError, match="non-negative int"):
        aug.sample(2.0, gen())
    with pytest.raises(TypeError, match=r"torch\.Generator"):
        aug.sample(3, 0)
    with pytest.raises(TypeError, match=r"torch\.Generator"):
        aug(images(2), generator=None)
    params = aug.sample(3, gen())
    with pytest.raises(ValueError, match=r"shape \(n_samples, channels, height, width\)"):
        aug.apply(torch.zeros(3, 8, 8), params)
    with pytest.raises(TypeError, match="floating-point"):
        aug.apply(torch.zeros(3, 1, 8, 8, dtype=torch.uint8), params)
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        aug.apply([[0.0]], params)
    with pytest.raises(ValueError, match="drawn for 3 images but x holds 4"):
        aug.apply(images(4), params)
    with pytest.raises(ValueError, match=r"params lacks \['operation'\]"):
        SiameseAugment().apply(images(2), SiameseAugment(mode="all").sample(2, gen()))
    with pytest.raises(TypeError, match="dict returned by sample"):
        aug.apply(images(2), [params])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.cuda
def test_cuda_generator_keeps_everything_on_the_device():
    aug = SiameseAugment(mode="all", per_sample=True)
    g = torch.Generator(device="cuda").manual_seed(0)
    x = images(8, 3).cuda().requires_grad_()
    params = aug.sample(8, g)
    assert all(v.device.type == "cuda" for v in params.values())
    out = aug.apply(x, params)
    out.sum().backward()
    assert out.device.type == "cuda"
    assert torch.isfinite(x.grad).all()
    cpu = aug.apply(x.detach().cpu(), {k: v.cpu() for k, v in params.items()})
    torch.testing.assert_close(out.detach().cpu(), cpu, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="params are on cuda"):
        aug.apply(x.detach().cpu(), params)
