"""Reliability: the MLflow tracking server crashes in the middle of a sweep and comes back.

A real `mlflow server` (127.0.0.1, free port, 1 worker, SQLite + local artifacts in tmp_path) is
SIGKILLed while the teacher evaluates the test split - so the trial's final logging (metrics,
artifacts, end of run) and the start of the student trials fall into the outage - and restarted on
the same port and database a few seconds later. RunLogger retries transient errors for up to
RETRY_SECONDS (30 s), so the sweep is expected to ride through; if it stops instead, it must stop
cleanly and a rerun must complete.
"""

from __future__ import annotations

import re
import time

import pytest

from trackers.mlflow_tracker import RETRY_SECONDS

from . import sweep_helpers as H

DOWN_S = 3.0  # the server stays dead this long before it is restarted


def _epoch_steps(uri: str, run_id: str, key: str) -> list[int]:
    from mlflow.tracking import MlflowClient

    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, key))


@pytest.mark.slow
def test_tracking_server_restart_mid_sweep(tiny_corpus, tmp_path, tmp_path_factory):
    """Injected: SIGKILL of the tracking server (its whole process group) while the teacher trial
    evaluates; restart on the same port and DB DOWN_S later. Holds: the sweep exits 0 (or, if it
    stopped, a rerun exits 0); one FINISHED run per config with every test/* metric, a train/loss
    and val/ value for every epoch it logged (steps 1..n, none lost), the captions, per-video
    scores and checkpoint artifacts; the parent sweep run FINISHED too."""
    cache = H.copy_cache(H.warm_cache(tiny_corpus, tmp_path_factory), tmp_path / "cache")
    server_dir = tmp_path / "server"
    server_dir.mkdir()
    server = H.MlflowServer(server_dir)
    ray_tmp = H.ray_tmpdir()
    sweep = None
    try:
        print(f"mlflow server healthy in {server.start():.1f} s")
        uri = server.uri
        sweep_file = H.write_sweep(
            tmp_path, tiny_corpus, uri, cache_dir=cache, ks=[0.2], losses=["rep", "rep+ce"], blind=False
        )
        scratch = tmp_path / "scratch"  # the trials' scratch folders (avkd-trial-*) go to this TMPDIR
        scratch.mkdir()
        env = H.sweep_env(ray_tmp, TMPDIR=str(scratch))
        sweep = H.start_sweep(sweep_file, tmp_path, env)
        H.wait_until(
            "the teacher evaluating",
            lambda: any(
                (d / "best.pt").exists() and not (d / "test_captions.json").exists()
                for d in scratch.glob("avkd-trial-*")
            ),
            sweep,
            timeout=300,
            every=0.2,
        )
        server.kill()
        killed_at = time.time()
        time.sleep(DOWN_S)
        restart_s = server.start()
        outage = time.time() - killed_at
        print(
            f"server killed {killed_at - sweep.started:.1f} s into the sweep; back after {outage:.1f} s "
            f"(restart {restart_s:.1f} s; the tracker retries for {RETRY_SECONDS:.0f} s)"
        )

        rc = sweep.proc.wait(timeout=400)
        out = sweep.output()
        print(f"sweep exit {rc} in {time.time() - sweep.started:.1f} s")
        if rc != 0:  # allowed: a clean stop (a trial FAILED, or a one-line MLflow error), then a rerun
            assert rc == 1 and ("FAILED" in out or "MLflow:" in out), out[-4000:]
            rc, out, seconds = H.run_sweep(sweep_file, tmp_path, env, name="rerun")
            print(f"rerun exit {rc} in {seconds:.1f} s")
        assert rc == 0, out[-4000:]

        by_config = H.check_one_finished_per_config(uri, 3)
        for runs in by_config.values():
            run = next(r for r in runs if r.info.status == "FINISHED")
            name = run.info.run_name
            # One loss per epoch: train/loss, or train/stage<N>/loss for a student trained in stages (rep:
            # the MLP, then the decoder), whose epochs number on across the stages.
            loss_keys = [k for k in run.data.metrics if k == "train/loss" or re.fullmatch(r"train/stage\d+/loss", k)]
            epochs = sorted(step for key in loss_keys for step in _epoch_steps(uri, run.info.run_id, key))
            assert epochs == list(range(1, len(epochs) + 1)) and epochs, (name, loss_keys, epochs)
            val_steps = _epoch_steps(uri, run.info.run_id, "val/cider")
            last_decoder_epoch = epochs[-1]
            assert val_steps and val_steps[-1] == last_decoder_epoch, (name, val_steps, epochs)
            artifacts = H.artifact_names(uri, run.info.run_id)
            for artifact in ("test_captions.json", "per_video_scores.csv", "checkpoint", "config.yaml"):
                assert artifact in artifacts, (name, artifact, artifacts)
        teacher = next(r for rs in by_config.values() for r in rs if r.info.run_name == "teacher-s0")
        print(
            f"teacher run ended {teacher.info.end_time / 1000 - killed_at:.1f} s after the kill "
            f"({'inside' if teacher.info.end_time / 1000 < killed_at + outage else 'after'} the outage)"
        )
        sweeps = [r for r in H.all_runs(uri) if r.data.tags.get("avkd.role") == "sweep"]
        assert sweeps[0].info.status == "FINISHED", [r.info.status for r in sweeps]
    finally:
        if sweep is not None:
            H.stop_session(sweep.proc.pid, ray_tmp)
        server.stop()
        H.remove_ray_tmp(ray_tmp)
