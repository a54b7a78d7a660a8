"""Run by tests/test_distributed.py under torchrun (2 processes, gloo): not a test module."""

import json
import os
import sys
from pathlib import Path


def data():
    import numpy as np

    rng = np.random.default_rng(0)
    z = rng.normal(size=(3001, 6))
    y = (z + rng.gumbel(size=z.shape)).argmax(axis=1)  # y ~ softmax(z)
    return 2.5 * z, y


# Seed 0 on process 0 only: the others must take process 0's seed.
DM_PARAMS = {
    "ipc": 2,
    "width": 8,
    "depth": 2,
    "iterations": 6,
    "mask_ratio": 0.1,
    "method_params": {"batch_real": 16},
    "checkpoint_every": 3,
}


def main(out: Path) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist

    from distcal import TemperatureScaling
    from distcal.metrics import CalibrationAccumulator

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    logits, y = data()
    mine = np.arange(rank, len(y), world)  # this process's shard, no sample twice
    batches = [(logits[mine[i : i + 100]], y[mine[i : i + 100]]) for i in range(0, len(mine), 100)]
    result = {"rank": rank, "out": str(out)}

    ts = TemperatureScaling().fit_batches(batches, distributed=True)
    result["temperature"] = ts.temperature_
    proba = [(torch.softmax(torch.tensor(z) / ts.temperature_, 1), t) for z, t in batches]
    accumulator = CalibrationAccumulator().update_batches(proba)
    result["local_n"] = accumulator.compute().n_samples
    result["metrics"] = dict(accumulator.compute(distributed=True))

    # a process without data gets the same temperature as the one that has all of it
    everything = [(logits[i : i + 500], y[i : i + 500]) for i in range(0, len(y), 500)]
    lopsided = TemperatureScaling().fit_batches(everything if rank == 0 else [], distributed=True)
    result["lopsided"] = [lopsided.temperature_, lopsided.n_features_in_]
    empty = CalibrationAccumulator()
    if rank == 0:
        empty.update(np.full((4, 6), 1 / 6), np.arange(4))
    result["lopsided_n"] = empty.compute(distributed=True).n_samples

    # bad data on one process: every process raises, none waits for ever
    bad = [(logits[:10], np.full(10, 9 if rank == 1 else 0))]
    try:
        TemperatureScaling().fit_batches(bad, distributed=True)
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    # distillation: the classes are split over the processes, the gradients summed
    from distcal.distill import MDTTrainer, load_digits
    from distcal.exceptions import InvalidParameterError

    digits = load_digits()
    trainer = MDTTrainer(
        **DM_PARAMS,
        random_state=0 if rank == 0 else 123,
        checkpoint=out / "dm.ckpt",
        distributed=True,
    )
    trainer.fit(digits.images, digits.labels)
    torch.save(trainer.images_, out / f"dm-rank-{rank}.pt")
    result["dm_seed"] = trainer.seed_
    try:
        MDTTrainer("dc", distributed=True).fit(digits.images, digits.labels)
    except InvalidParameterError as exc:
        result["dc_error"] = str(exc)
    # settings that differ between processes: every process raises, naming the setting
    disagreements = {
        "ts_max_iter": lambda: TemperatureScaling(max_iter=100 if rank == 0 else 3).fit_batches(
            batches, distributed=True
        ),
        "mask_ratio": lambda: MDTTrainer(
            **{**DM_PARAMS, "mask_ratio": 0.0 if rank == 0 else 0.5}, distributed=True
        ).fit(digits.images, digits.labels),
        "ipc": lambda: MDTTrainer(
            **{**DM_PARAMS, "ipc": 2 if rank == 0 else 3}, distributed=True
        ).fit(digits.images, digits.labels),
        "iterations": lambda: MDTTrainer(
            **{**DM_PARAMS, "iterations": 6 if rank == 0 else 2}, distributed=True
        ).fit(digits.images, digits.labels),
        "width": lambda: MDTTrainer(
            **{**DM_PARAMS, "width": 8 if rank == 0 else 16}, distributed=True
        ).fit(digits.images, digits.labels),
        "n_bins": lambda: (
            CalibrationAccumulator(n_bins=15 if rank == 0 else 10)
            .update_batches(proba)
            .compute(distributed=True)
        ),
    }
    result["disagreements"] = {}
    for name, run in disagreements.items():
        try:
            run()
            result["disagreements"][name] = "succeeded"
        except Exception as exc:  # every process must end here, none may succeed
            result["disagreements"][name] = f"{type(exc).__name__}: {exc}"
    (out / f"rank-{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()
    # torch 2.13's gloo worker thread can outlive destroy_process_group and free the last
    # collective's tensors while the interpreter shuts down, which aborts the process
    # ("terminate called without an active exception"; core dump: ~AsyncAllgatherWork in
    # ProcessGroupGloo::runLoop taking the GIL during finalisation, pytorch/pytorch#179291).
    # The results are written and every collective is done: leave without the shutdown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
