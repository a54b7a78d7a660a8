import numpy as np
import torch

from distcal._device import (
    _restore_location,
    as_tensor,
    like,
    make_generator,
    module_device,
    resolve_device,
    row_chunks,
    to_numpy,
    torch_dumps,
    torch_loads,
)


def test_numpy_is_wrapped_without_a_copy_even_when_read_only():
    array = np.arange(6.0).reshape(2, 3)
    assert as_tensor(array).data_ptr() == array.ctypes.data
    array.setflags(write=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = as_tensor(array)
    assert tensor.data_ptr() == array.ctypes.data


def test_big_endian_arrays_are_converted():
    array = np.arange(4.0).astype(">f8")
    np.testing.assert_array_equal(as_tensor(array).numpy(), [0.0, 1.0, 2.0, 3.0])


def test_like_follows_the_reference():
    result = torch.ones(2)
    assert isinstance(like(result, np.zeros(2)), np.ndarray)
    assert isinstance(like(result, torch.zeros(2)), torch.Tensor)
    assert to_numpy(torch.ones(2, dtype=torch.bfloat16)).dtype == np.float32


def test_device_resolution():
    assert resolve_device(None) == torch.device("cpu")
    assert resolve_device("cpu", torch.zeros(1)) == torch.device("cpu")
    assert module_device(torch.nn.Identity()) == torch.device("cpu")
    assert resolve_device(None, torch.nn.Linear(2, 2)) == torch.device("cpu")


def test_generators_are_seeded_from_random_state_only():
    draws = [torch.rand(3, generator=make_generator(7)) for _ in range(2)]
    assert torch.equal(draws[0], draws[1])
    rs = np.random.RandomState(0)
    a = torch.rand(3, generator=make_generator(rs))
    b = torch.rand(3, generator=make_generator(rs))
    assert not torch.equal(a, b), "a RandomState instance is drawn from, like scikit-learn"
    c = torch.rand(3, generator=make_generator(np.random.default_rng(0)))
    d = torch.rand(3, generator=make_generator(np.random.default_rng(0)))
    assert torch.equal(c, d)
    state = torch.random.get_rng_state()
    make_generator(None)
    assert torch.equal(state, torch.random.get_rng_state()), "the global generator is untouched"


def test_row_chunks_cover_every_row_once():
    rows = [r for chunk in row_chunks(10_000, 100, "cpu") for r in range(chunk.start, chunk.stop)]
    assert rows == list(range(10_000))
    assert len(list(row_chunks(5, 10**9, "cpu"))) == 5


def test_payload_round_trip_and_missing_device_falls_back_to_cpu():
    module = torch.nn.Linear(2, 2)
    restored = torch_loads(torch_dumps(module))
    assert torch.equal(restored.weight, module.weight)
    storage = torch.UntypedStorage(8)
    if not torch.cuda.is_available():
        assert _restore_location(storage, "cuda:0") is storage
    assert _restore_location(storage, "cpu") is storage
