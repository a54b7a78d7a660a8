"""Seeds and distillation sweeps on a Dask cluster (joblib's Dask backend), as on one machine.

Uses a ``dask.distributed.LocalCluster`` of two worker processes; on a real cluster the
``Client`` is given the scheduler's address instead (docs/user_guide.md, "Seeds on a
cluster"). Needs the ``dask`` extra.
"""

import json

import pytest
import torch
from joblib import parallel_config

distributed = pytest.importorskip("distributed", reason="needs dask: pip install 'distcal[dask]'")

from distcal.distill import MDTTrainer, fit_trainers, load_digits  # noqa: E402
from distcal.experiment import run_experiment  # noqa: E402


@pytest.fixture(scope="module")
def client():
    # Workers without the nanny's MALLOC_TRIM_THRESHOLD_, as the user guide says to start them
    # (distcal warns otherwise: test_workers_that_trim_memory_eagerly_are_named).
    import dask

    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
    with distributed.Client(cluster) as client:
        yield client
    cluster.close()


def _rows(path):
    return json.loads(path.read_text())["result"]["rows"]


@pytest.mark.slow
def test_two_seeds_on_a_dask_cluster_give_the_per_seed_results_of_a_local_run(client, tmp_path):
    local = tmp_path / "local"
    run_experiment("digits", profile="smoke", seeds=[0, 1], output=local, verbose=False)
    on_cluster = tmp_path / "dask"
    with parallel_config(backend="dask"):
        result = run_experiment(
            "digits", profile="smoke", seeds=[0, 1], output=on_cluster, verbose=False, n_jobs=2
        )
    workers = {w["id"] for w in client.scheduler_info()["workers"].values()}
    assert len(workers) == 2
    for seed in (0, 1):
        assert _rows(on_cluster / f"seed-{seed}.json") == _rows(local / f"seed-{seed}.json")
    assert (on_cluster / "results.csv").read_text() == (local / "results.csv").read_text()
    assert len(result["rows"]) > 0


def test_a_sweep_of_trainers_on_a_dask_cluster_equals_the_local_sweep(client):
    data = load_digits()
    X, y = data.images[:400], data.labels[:400]

    def trainers():
        return [
            MDTTrainer(
                ipc=1, width=8, depth=2, iterations=3, augment="none", mask_ratio=ratio,
                method_params={"batch_real": 16}, random_state=0,
            )
            for ratio in (0.0, 0.5)
        ]  # fmt: skip

    local = fit_trainers(trainers(), X, y)
    with parallel_config(backend="dask"):
        on_cluster = fit_trainers(trainers(), X, y, n_jobs=2)
    for a, b in zip(local, on_cluster, strict=True):
        assert torch.equal(a.images_, b.images_)


@pytest.mark.slow
def test_distcal_run_takes_a_scheduler_address(client, tmp_path, capsys):
    from distcal.cli import main

    address = client.scheduler.address
    argv = ["run", "--profile", "smoke", "--seeds", "2", "--quiet", "--output", str(tmp_path)]
    assert main([*argv, "--scheduler", address]) == 0
    assert (tmp_path / "seed-1.json").is_file()
    assert "mean±SD over seeds" in capsys.readouterr().out


def test_an_unreachable_scheduler_is_one_line(tmp_path, capsys):
    from distcal.cli import main

    argv = ["run", "--profile", "smoke", "--seeds", "1", "--quiet", "--output", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--scheduler", "tcp://127.0.0.1:9"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("distcal: error: argument --scheduler: cannot reach")
    assert err.count("\n") == 1


def test_workers_that_trim_memory_eagerly_are_named(client):
    # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which made a digits seed
    # 1.4x slower (docs/benchmarks.md); a sweep or a run on such workers says so, and what to do.
    from distcal.exceptions import PerformanceWarning

    data = load_digits()
    X, y = data.images[:200], data.labels[:200]
    sweep = [
        MDTTrainer(ipc=1, width=8, depth=2, iterations=1, augment="none", random_state=seed)
        for seed in (0, 1)
    ]
    with parallel_config(backend="dask"):
        fit_trainers(sweep, X, y, n_jobs=2)  # the module's workers: no warning (an error here)
    nanny_default = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    )
    expected = "1 of 1 Dask workers run with MALLOC_TRIM_THRESHOLD_=65536"
    with (
        nanny_default,
        distributed.Client(nanny_default, set_as_default=False) as trimming,
        parallel_config(backend="dask", client=trimming),
        pytest.warns(PerformanceWarning, match=expected),
    ):
        fitted = fit_trainers(sweep, X, y, n_jobs=2)
    assert [t.images_.shape for t in fitted] == [(10, 1, 8, 8)] * 2
