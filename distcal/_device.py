"""Moving data between numpy and torch, and between devices.

The helpers here (``as_tensor``, ``to_numpy``, ``like``, ``resolve_device``, ...) implement
scikit-learn's array-API rule: results follow their input. A numpy array in gives a numpy array
out; a tensor in gives a tensor out, on the same device. Computation happens in torch, on the
device of the data, without copying it to the host.

:mod:`distcal.metrics` and :mod:`distcal.plotting` convert only through these helpers
(``tests/test_structure.py`` checks it). The other packages and ground modules do not yet: about
a hundred calls there still convert in place (``.numpy()``, ``.cpu()``, ``torch.from_numpy``,
``.to(device)``, mostly moving networks and batches in training code); ``_conversions`` in
``tests/test_structure.py`` lists them.
"""

from __future__ import annotations

import io
import numbers
import warnings
from collections.abc import Iterator

import numpy as np
import torch

from .exceptions import PerformanceWarning

__all__ = [
    "PortablePickleMixin",
    "as_tensor",
    "draw_seed",
    "is_tensor",
    "like",
    "make_generator",
    "module_device",
    "one_thread_in_workers",
    "resolve_device",
    "row_chunks",
    "to_numpy",
    "torch_dumps",
    "torch_loads",
]

# Elements of float64 scratch space per chunk in reductions over large matrices. 2**18 elements
# (2 MiB) keeps the temporaries in cache on a CPU and far below the input's size; on an accelerator
# larger chunks amortise kernel launches.
_CPU_CHUNK_ELEMENTS = 1 << 18
_ACCELERATOR_CHUNK_ELEMENTS = 1 << 24


def is_tensor(x) -> bool:
    """Return True if ``x`` is a torch tensor."""
    return isinstance(x, torch.Tensor)


def _numpy_view(x) -> np.ndarray:
    """Return ``x`` as a numpy array torch can share memory with (native byte order)."""
    array = np.asarray(x)
    if array.dtype.byteorder not in ("=", "|") and array.dtype.byteorder != _native_byteorder():
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def _native_byteorder() -> str:
    return "<" if np.little_endian else ">"


def as_tensor(x, *, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """Return ``x`` as a tensor, sharing memory with a numpy input whenever possible.

    Tensors stay on their device unless ``device`` is given. Read-only numpy arrays (memory maps,
    for instance) are wrapped without a copy; distcal never writes into its inputs.
    """
    if is_tensor(x):
        tensor = x.detach()
    else:
        array = _numpy_view(x)
        if array.dtype.kind not in "biufc":
            raise TypeError(
                f"Expected a numeric array or tensor; got an array of dtype {array.dtype}."
            )
        with warnings.catch_warnings():
            # torch warns that a read-only array is wrapped as a writable tensor; the tensor is
            # only read, so the warning would only alarm the user.
            warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
            tensor = torch.from_numpy(array)
    if dtype is not None or device is not None:
        tensor = tensor.to(dtype=dtype, device=device)
    return tensor


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """Return a tensor's values as a numpy array on the host."""
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        # numpy has no bfloat16; float32 holds every bfloat16 value exactly.
        tensor = tensor.to(torch.float32)
    return tensor.cpu().numpy()


def like(result: torch.Tensor, reference):
    """Return ``result`` in the kind of container ``reference`` came in.

    A tensor reference gives a tensor on the reference's device; anything else gives numpy.
    """
    if is_tensor(reference):
        return result.to(reference.device)
    return to_numpy(result)


def resolve_device(device, reference=None) -> torch.device:
    """Turn a ``device`` parameter into a :class:`torch.device`.

    ``device=None`` follows ``reference``: its device if it is a tensor or a module, else the CPU.
    """
    if device is not None:
        return torch.device(device)
    if is_tensor(reference):
        return reference.device
    if isinstance(reference, torch.nn.Module):
        return module_device(reference)
    return torch.device("cpu")


def module_device(module: torch.nn.Module) -> torch.device:
    """Return the device of a module's first parameter or buffer (the CPU for an empty module)."""
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return torch.device("cpu")


def draw_seed(random_state) -> int:
    """Turn ``random_state`` into an integer seed, following scikit-learn's convention.

    An int is used as it is, a :class:`numpy.random.RandomState` or
    :class:`numpy.random.Generator` is drawn from, and None draws from numpy's global
    RandomState (which distcal never reseeds).
    """
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    from sklearn.utils import check_random_state

    return int(check_random_state(random_state).randint(0, 2**31 - 1))


def one_thread_in_workers(parent_pid: int | None) -> None:
    """Use one torch thread when running in a worker process other than ``parent_pid``.

    joblib runs parallel jobs in worker processes (loky, Dask, Ray), as many as cores; each
    then gets one thread instead of competing for all of them. In the caller's own process
    (sequential runs, joblib's threading backend) the thread count is left alone.
    """
    import os

    if parent_pid is not None and os.getpid() != parent_pid:
        torch.set_num_threads(1)


def _malloc_trim_threshold():
    import os

    return os.environ.get("MALLOC_TRIM_THRESHOLD_")


def _trims_early(value) -> bool:
    """Whether a MALLOC_TRIM_THRESHOLD_ value gives memory back before distcal's own setting."""
    from ._allocator import MALLOC_SETTINGS

    if value is None:
        return False
    try:
        return int(value) < int(MALLOC_SETTINGS["MALLOC_TRIM_THRESHOLD_"])
    except ValueError:
        return True


def warn_if_workers_trim_memory(caller: str) -> None:
    """Warn when joblib sends jobs to Dask workers whose allocator returns memory eagerly.

    Dask's nanny starts each worker with ``MALLOC_TRIM_THRESHOLD_=65536`` (its
    ``distributed.nanny.pre-spawn-environ`` setting), so glibc hands memory back to the system
    after every large free and takes it again on the next allocation. Torch allocates and frees
    large activations at every step; in a worker with that setting a digits seed of the
    experiment took 83 s instead of 58 s (docs/benchmarks.md, "Seeds on a Dask cluster").
    Outside a Dask backend, or with workers started without it, this does nothing.
    """
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    client = getattr(backend, "client", None)
    if client is None or not hasattr(client, "run"):
        return
    settings = client.run(_malloc_trim_threshold)
    trimming = sorted(worker for worker, value in settings.items() if _trims_early(value))
    if trimming:
        value = settings[trimming[0]]
        warnings.warn(
            f"{caller}: {len(trimming)} of {len(settings)} Dask workers run with "
            f"MALLOC_TRIM_THRESHOLD_={value} (Dask's nanny sets 65536), which makes torch's "
            "work in them up to 2x slower. Start the workers with `MALLOC_MMAP_MAX_=0 "
            "MALLOC_TRIM_THRESHOLD_=1073741824 dask worker ADDRESS --no-nanny` (what `distcal "
            "run` sets for its own workers), or, for a LocalCluster, create it within "
            "dask.config.set({'distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_': "
            "None}). The results are the same either way.",
            PerformanceWarning,
            stacklevel=3,
        )


def make_generator(random_state, device=None) -> torch.Generator:
    """Return a :class:`torch.Generator` on ``device`` seeded by :func:`draw_seed`."""
    device = torch.device("cpu") if device is None else torch.device(device)
    generator = torch.Generator(device=device)
    generator.manual_seed(draw_seed(random_state))
    return generator


def row_chunks(n_rows: int, n_cols: int, device) -> Iterator[slice]:
    """Yield slices of rows whose float64 scratch space stays within a small, fixed budget."""
    device = torch.device(device)
    budget = _CPU_CHUNK_ELEMENTS if device.type == "cpu" else _ACCELERATOR_CHUNK_ELEMENTS
    step = max(1, budget // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield slice(start, min(start + step, n_rows))


def torch_dumps(obj) -> bytes:
    """Serialise a module or tensor with :func:`torch.save` (used when pickling estimators)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def torch_loads(payload: bytes):
    """Load what :func:`torch_dumps` wrote; tensors whose device is missing here land on the CPU.

    A model fitted on a GPU must load on a machine without one. The payload comes from a pickle,
    which can already run code, so loading full objects adds no risk the caller had not accepted.
    """
    return torch.load(io.BytesIO(payload), map_location=_restore_location, weights_only=False)


def _restore_location(storage, location: str):
    if location == "cpu":
        return storage
    try:
        return torch.serialization.default_restore_location(storage, location)
    except (RuntimeError, AssertionError):
        # The device it was saved from does not exist on this machine: keep the CPU copy.
        return storage


class _TorchPayload:
    """A module or tensor serialised with :func:`torch.save` inside a pickled estimator."""

    def __init__(self, obj):
        self.payload = torch_dumps(obj)

    def load(self):
        return torch_loads(self.payload)


class PortablePickleMixin:
    """Pickle estimators holding modules or tensors so they load on machines without the device.

    Modules and tensors among the estimator's attributes are stored with :func:`torch.save` and
    restored with :func:`torch_loads`: an estimator fitted on a GPU unpickles on a CPU-only
    machine, with its tensors on the CPU (as skorch does for its modules).
    """

    def __getstate__(self):
        state = super().__getstate__()
        return {
            key: _TorchPayload(value)
            if isinstance(value, torch.nn.Module) or is_tensor(value)
            else value
            for key, value in state.items()
        }

    def __setstate__(self, state):
        state = {
            key: value.load() if isinstance(value, _TorchPayload) else value
            for key, value in state.items()
        }
        super().__setstate__(state)
