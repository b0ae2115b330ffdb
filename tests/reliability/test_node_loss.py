"""Reliability: a Ray worker node lost in the middle of a sweep.

The test process owns a two-node Ray cluster on this machine (ray.cluster_utils.Cluster: a head and
a worker node, 1 CPU each, in a private Ray temp folder); the sweep runs in a subprocess (the CLI)
that joins it through RAY_ADDRESS. Removing the worker node kills its raylet and every trial on it.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from . import sweep_helpers as H


@pytest.mark.slow
def test_worker_node_lost_mid_sweep(tiny_corpus, tmp_path, tmp_path_factory, monkeypatch):
    """Injected: `cluster.remove_node(worker)` (processes SIGKILLed) while both student trials run,
    one on each node; resources.max_failures 1. Holds: the sweep exits 0; the lost trial is
    rescheduled on the head node; every config has exactly one FINISHED run with all test/*
    metrics; the run the lost trial left behind is no longer RUNNING (KILLED or FAILED)."""
    from ray.cluster_utils import Cluster

    cache = H.copy_cache(H.warm_cache(tiny_corpus, tmp_path_factory), tmp_path / "cache")
    ray_tmp = H.ray_tmpdir()
    # The cluster's processes inherit these: a private Ray folder (Cluster records its address in
    # <RAY_TMPDIR>/ray/ray_current_cluster, where nobody else's `ray.init()` looks), no token auth
    # (nothing written to ~), and the repo importable by the trial workers.
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("PYTHONPATH", str(H.REPO))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=1)
    # A cluster of several nodes logs into a tracking server (a SQLite file is refused there).
    server = H.MlflowServer(tmp_path)
    sweep = None
    try:
        server.start()
        uri = server.uri
        sweep_file = H.write_sweep(
            tmp_path,
            tiny_corpus,
            uri,
            cache_dir=cache,
            ks=[0.2],
            losses=["rep", "rep+ce"],
            blind=False,
            resources={"max_failures": 1, "max_concurrent_trials": 2},
        )
        sweep = H.start_sweep(sweep_file, tmp_path, H.sweep_env(ray_tmp, RAY_ADDRESS=cluster.address))

        def both_students_running():
            return (
                sum(r.data.tags.get("avkd.role") == "student" and r.info.status == "RUNNING" for r in H.trial_runs(uri))
                == 2
            )

        H.wait_until("two student trials RUNNING (one per node)", both_students_running, sweep, timeout=300, every=0.5)
        time.sleep(3)  # well into training
        removed_at = time.time()
        cluster.remove_node(worker, allow_graceful=False)
        print(f"worker node removed {removed_at - sweep.started:.1f} s into the sweep")

        rc = sweep.proc.wait(timeout=400)
        out = sweep.output()
        print(f"sweep exit {rc} {time.time() - removed_at:.1f} s after the node loss")
        assert rc == 0, out[-4000:]
        by_config = H.check_one_finished_per_config(uri, 3)
        retried = {rs[0].info.run_name: sorted(r.info.status for r in rs) for rs in by_config.values() if len(rs) > 1}
        print(f"runs of the configs that were retried: {retried}")
        assert len(retried) == 1, retried  # exactly the trial that ran on the lost node
        assert list(retried.values())[0] in (["FINISHED", "KILLED"], ["FAILED", "FINISHED"])
        rerun = next(r for rs in by_config.values() if len(rs) > 1 for r in rs if r.info.status == "FINISHED")
        assert rerun.info.start_time / 1000 > removed_at, "the lost trial's FINISHED run started before the loss"
        assert "whose worker ended were marked KILLED" in out or "FAILED" in list(retried.values())[0]
        assert (tmp_path / "reports" / "tiny" / "table1.csv").exists()
    finally:
        if sweep is not None:
            H.stop_session(sweep.proc.pid)
        server.stop()
        cluster.shutdown()
        H.remove_ray_tmp(ray_tmp)


@pytest.mark.slow
def test_driver_without_ray_address_starts_its_own_ray(tmp_path, monkeypatch):
    """Injected: a running cluster recorded in <RAY_TMPDIR>/ray/ray_current_cluster (what `ray start`
    and ray.cluster_utils leave), and a driver started without RAY_ADDRESS. Holds: the driver starts
    its own local Ray (2 CPUs here) instead of joining that cluster (or failing with Ray's
    "num_cpus must not be provided" ValueError, which is what address=None gave)."""
    from ray.cluster_utils import Cluster

    ray_tmp = H.ray_tmpdir()
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        assert (ray_tmp / "ray" / "ray_current_cluster").read_text().strip() == cluster.address
        code = (
            "import ray; from avkd.sweep.driver import _ray_init, _ray_shutdown; _ray_init(); "
            "print(ray.get_runtime_context().gcs_address, int(ray.cluster_resources()['CPU'])); _ray_shutdown()"
        )
        proc = subprocess.run(
            [H.PYTHON, "-c", code],
            cwd=H.REPO,
            env=H.sweep_env(ray_tmp),
            capture_output=True,
            text=True,
            timeout=120,
            start_new_session=True,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        gcs, cpus = proc.stdout.split()[-2:]
        assert gcs != cluster.address and int(cpus) == os.cpu_count()
    finally:
        cluster.shutdown()
        H.remove_ray_tmp(ray_tmp)


def test_orphaned_trial_runs_of_one_sweep_are_marked_killed(tmp_path):
    """Injected: trial runs left RUNNING (their worker died) under this sweep's parent run, plus a
    RUNNING run of another sweep. Holds: mark_stale_runs(parent_run_id=...) ends only this sweep's
    children, as KILLED; the parent and the other sweep's run stay RUNNING."""
    from mlflow.tracking import MlflowClient

    from trackers import mlflow_tracker as mt

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = mt.ensure_experiment(uri, "orphans")
    client = MlflowClient(uri)
    parent, other = (client.create_run(exp, run_name=n).info.run_id for n in ("sweep-a", "sweep-b"))
    ours = [client.create_run(exp, tags={"mlflow.parentRunId": parent}).info.run_id for _ in range(2)]
    theirs = client.create_run(exp, tags={"mlflow.parentRunId": other}).info.run_id
    client.set_terminated(ours[1], "FINISHED")
    assert mt.mark_stale_runs(uri, exp, parent_run_id=parent) == [ours[0]]
    status = {rid: client.get_run(rid).info.status for rid in (parent, other, *ours, theirs)}
    assert status == {parent: "RUNNING", other: "RUNNING", ours[0]: "KILLED", ours[1]: "FINISHED", theirs: "RUNNING"}
