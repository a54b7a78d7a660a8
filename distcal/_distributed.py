"""Summing across processes with torch.distributed: the one place distcal calls it.

distcal's streaming statistics (the temperature solver's sums, the metrics' per-bin sums) add up
across batches, so they add up across processes too: under ``torchrun``, each process reduces
its own shard and one ``all_reduce`` gives every process the global sums. These helpers work on
float64 CPU tensors and move them to the device the process group's backend needs (gloo: the
CPU; nccl: the process's current CUDA device) and back.
"""

from __future__ import annotations

import torch

__all__ = ["agree", "agree_settings", "all_reduce", "check_distributed", "raise_if_any_failed"]


def check_distributed(caller: str, group=None) -> None:
    """Raise a clear error unless a default (or the given) process group is initialised."""
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError(f"{caller}: distributed=True, but this torch build has no distributed.")
    if not dist.is_initialized():
        raise RuntimeError(
            f"{caller}: distributed=True needs an initialised process group: run under torchrun "
            "and call torch.distributed.init_process_group (backend 'gloo' on CPUs, 'nccl' on "
            "GPUs) first."
        )


def _backend_device(group=None) -> torch.device:
    import torch.distributed as dist

    if dist.get_backend(group) == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(tensor: torch.Tensor, op: str = "sum", group=None) -> torch.Tensor:
    """Return the ``op`` ("sum" or "max") of ``tensor`` over every process of ``group``.

    Every process must pass a tensor of the same shape and dtype (distcal passes float64).
    """
    import torch.distributed as dist

    reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
    device = tensor.device
    work = tensor.to(_backend_device(group), copy=True)
    dist.all_reduce(work, op=reduce_op, group=group)
    return work.to(device)


def raise_if_any_failed(error: BaseException | None, caller: str, group=None) -> None:
    """Agree across processes on whether any of them failed; raise on every one if so.

    A process that raises before a collective call would leave the others waiting in it for
    ever. Every process calls this at the same point instead: the one that failed re-raises its
    error, the others raise an error that says another process failed.
    """
    import torch.distributed as dist

    flag = all_reduce(
        torch.tensor([0.0 if error is None else 1.0], dtype=torch.float64), "max", group
    )
    if flag.item() > 0:
        if error is not None:
            raise error
        raise RuntimeError(
            f"{caller}: another process (rank != {dist.get_rank(group)}) failed; its error "
            "message says why."
        )


def agree(values, size: int, caller: str, what: str, group=None) -> tuple | None:
    """Agree across processes on a tuple of non-negative numbers that some may not have.

    Each process passes its tuple of ``size`` numbers (a shape, say), or None when it has none
    (an empty shard). Every process gets the tuple of the processes that have one, or None when
    no process has one. If two processes' tuples differ, every process raises (this one with a
    ``ValueError`` naming ``what`` and both tuples) instead of waiting in a later collective.
    """
    local = torch.tensor(
        [-1.0] * size if values is None else [float(v) for v in values], dtype=torch.float64
    )
    agreed = all_reduce(local, "max", group)
    error = None
    if values is not None and bool((agreed != local).any()):
        error = ValueError(
            f"{caller}: the processes disagree on {what}: this process has "
            f"{tuple(values)}, another {tuple(int(v) for v in agreed.tolist())}."
        )
    raise_if_any_failed(error, caller, group)
    return None if agreed[0] < 0 else tuple(agreed.tolist())


def agree_settings(settings: dict, caller: str, group=None) -> None:
    """Check that every process was given the same settings; raise on every process if not.

    ``settings`` maps each setting that changes the result (an estimator's parameters, say) to
    its value on this process. Every process gathers every process's settings and compares them
    the same way, so either all go on or all raise the same ``ValueError``, which names each
    differing setting and every process's value: no process succeeds while another fails, and
    none waits in a later collective call for a process that stopped.

    The values travel with ``torch.distributed.all_gather_object`` (a pickle between the
    processes of one job, which trust each other); they must be plain Python values.
    """
    import torch.distributed as dist

    gathered: list = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, dict(settings), group=group)
    missing = object()
    differences = []
    for key in sorted(set().union(*(g.keys() for g in gathered))):
        values = [g.get(key, missing) for g in gathered]
        if any(v != values[0] for v in values[1:]):
            shown = ", ".join(
                f"process {r} has {'nothing' if v is missing else repr(v)}"
                for r, v in enumerate(values)
            )
            differences.append(f"{key} ({shown})")
    if differences:
        raise ValueError(
            f"{caller}: the processes were given different settings: {'; '.join(differences)}. "
            "Every process must be given the same settings (only the data shard may differ)."
        )
