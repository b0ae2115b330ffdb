"""trackers/mlflow_tracker.py against a real MLflow SQLite store in tmp_path."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from avkd.config import parse_sweep
from avkd.errors import AvkdError
from avkd.sweep.lock import HEARTBEAT_STALE_S, Owner
from trackers import mlflow_tracker as mt
from trackers import schema


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    """One SQLite DB for the module (creating one costs ~1 s); each test gets its own experiment."""
    folder = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{folder / 'mlflow.db'}", folder


@pytest.fixture()
def store(db, request):
    uri, folder = db
    return uri, mt.ensure_experiment(uri, request.node.name), folder


def trial_tags(**extra) -> dict:
    tags = {
        schema.ROLE: "student",
        schema.K: "0.2",
        schema.LOSS: "rep+ce",
        schema.SEED: "0",
        schema.CONFIG_HASH: "h0",
        schema.SWEEP: "unit",
    }
    tags.update(extra)
    return tags


def test_resolve_tracking_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mt.resolve_tracking_uri() == f"sqlite:///{mt.REPO_ROOT / 'mlflow.db'}"
    assert mt.resolve_tracking_uri().startswith("sqlite:////")  # absolute: independent of the cwd
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert mt.resolve_tracking_uri() == "http://127.0.0.1:5999"
    assert mt.resolve_tracking_uri("sqlite:////x/y.db") == "sqlite:////x/y.db"
    with pytest.raises(AvkdError, match="not a URI"):
        mt.resolve_tracking_uri("mlflow.db")


def test_ensure_experiment_is_idempotent_and_puts_artifacts_next_to_the_db(store):
    uri, exp_id, folder = store
    name = MlflowClient(uri).get_experiment(exp_id).name
    assert mt.ensure_experiment(uri, name) == exp_id
    exp = MlflowClient(uri).get_experiment(exp_id)
    assert exp.artifact_location == (folder / "mlruns" / "artifacts" / name).as_uri()
    MlflowClient(uri).delete_experiment(exp_id)
    with pytest.raises(AvkdError, match=f"'{name}' is deleted"):
        mt.ensure_experiment(uri, name)


def test_concurrent_first_use_of_a_fresh_db(tmp_path):
    """Three processes creating the same fresh SQLite DB and experiment at once all get the same id."""
    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    code = f"from trackers.mlflow_tracker import ensure_experiment; print(ensure_experiment({uri!r}, 'race'))"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=mt.REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err[-500:] for _, err in outs]
    assert len({out.strip() for out, _ in outs}) == 1


def test_runs_nesting_tags_params_metrics_artifacts(store, tmp_path):
    uri, exp_id, folder = store
    exp_dir = folder / "mlruns" / "artifacts" / MlflowClient(uri).get_experiment(exp_id).name
    params = {f"p{i:03d}": i for i in range(150)}  # > 100: several log_batch calls
    params["long"] = "x" * 7000  # > MLflow's 6000-char limit
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(b"\x00checkpoint")
    folder = tmp_path / "extra"
    folder.mkdir()
    (folder / "a.txt").write_text("A")

    with mt.RunLogger(uri, exp_id, "sweep-unit", {schema.ROLE: "sweep", schema.SWEEP: "unit"}) as parent:
        with mt.RunLogger(uri, exp_id, "student-k0.2", trial_tags(), params, parent_run_id=parent.run_id) as run:
            for epoch in range(3):
                run.log_metrics({"train/loss": 3.0 - epoch, "val/cider": 0.1 * epoch}, step=epoch)
            run.log_metrics({"test/bleu_1": 0.7, "test/score": 0.4})
            run.log_artifact(ckpt, "checkpoint")
            run.log_artifact(folder, "folder")
            run.log_dict({"videos": 3, "failed": []}, schema.ARTIFACT_EXTRACTION_ERRORS)
            run.log_dict({"name": "unit"}, schema.ARTIFACT_CONFIG)
            run.log_text("video_id,cider\nv1,0.5\n", schema.ARTIFACT_PER_VIDEO)
            with pytest.raises(AvkdError, match="no such file"):
                run.log_artifact(tmp_path / "missing.pt")

    client = MlflowClient(uri)
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.info.end_time is not None
    assert client.get_run(parent.run_id).info.status == "FINISHED"
    assert got.data.tags[schema.PARENT] == parent.run_id
    assert got.data.tags[schema.RUN_NAME] == "student-k0.2"
    for key, value in trial_tags().items():
        assert got.data.tags[key] == value
    assert len(got.data.params) == 151
    assert got.data.params["p149"] == "149"
    assert len(got.data.params["long"]) == 6000 and got.data.params["long"].endswith("[truncated]")
    history = client.get_metric_history(run.run_id, "train/loss")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [(0, 3.0), (1, 2.0), (2, 1.0)]
    assert got.data.metrics["test/bleu_1"] == 0.7 and got.data.metrics["test/score"] == 0.4
    names = {f.path for f in client.list_artifacts(run.run_id)}
    assert {
        "checkpoint",
        "folder",
        schema.ARTIFACT_EXTRACTION_ERRORS,
        schema.ARTIFACT_CONFIG,
        schema.ARTIFACT_PER_VIDEO,
    } <= names
    local = Path(client.download_artifacts(run.run_id, "checkpoint/best.pt", str(tmp_path / "dl")))
    assert local.read_bytes() == b"\x00checkpoint"
    # artifacts physically live next to the DB, not in the working directory
    assert (exp_dir / run.run_id / "artifacts" / "folder" / "a.txt").is_file()
    errors = json.loads((exp_dir / run.run_id / "artifacts" / schema.ARTIFACT_EXTRACTION_ERRORS).read_text())
    assert errors == {"videos": 3, "failed": []}


def test_exception_marks_failed_with_traceback(store, tmp_path):
    uri, exp_id, _ = store
    with pytest.raises(ValueError, match="boom"):
        with mt.RunLogger(uri, exp_id, "bad", trial_tags()) as run:
            run.log_metrics({"train/loss": 1.0}, step=0)
            raise ValueError("boom in epoch 3")
    client = MlflowClient(uri)
    got = client.get_run(run.run_id)
    assert got.info.status == "FAILED"
    assert got.data.metrics["train/loss"] == 1.0  # buffered metrics were flushed before ending
    assert got.data.tags[schema.ERROR] == "ValueError: boom in epoch 3"
    text = Path(client.download_artifacts(run.run_id, schema.ARTIFACT_TRACEBACK, str(tmp_path))).read_text()
    assert "Traceback" in text and "ValueError: boom in epoch 3" in text


def test_keyboard_interrupt_marks_killed(store):
    uri, exp_id, _ = store
    with pytest.raises(KeyboardInterrupt):
        with mt.RunLogger(uri, exp_id, "interrupted", trial_tags()) as run:
            raise KeyboardInterrupt
    assert MlflowClient(uri).get_run(run.run_id).info.status == "KILLED"


def test_buffered_metrics_are_batched_and_all_arrive(store):
    uri, exp_id, _ = store
    client = MlflowClient(uri)
    with mt.RunLogger(uri, exp_id, "many", trial_tags()) as run:
        run.log_metrics({"val/cider": 0.5}, step=0)
        assert client.get_run(run.run_id).data.metrics == {}  # buffered, not yet written
        run.flush()
        assert client.get_run(run.run_id).data.metrics == {"val/cider": 0.5}
        for step in range(2500):  # crosses the 1000-per-batch limit twice
            run.log_metrics({"train/loss": float(step), "train/ce": step / 2}, step=step)
    history = client.get_metric_history(run.run_id, "train/loss")
    assert sorted(m.step for m in history) == list(range(2500))
    assert len(client.get_metric_history(run.run_id, "train/ce")) == 2500
    assert run.overhead_s > 0
    with pytest.raises(AvkdError, match="'val/x' = 'abc' is not a number"):
        mt.RunLogger(uri, exp_id, "x", trial_tags()).log_metrics({"val/x": "abc"})


def test_reattach_to_an_existing_run(store):
    uri, exp_id, _ = store
    first = mt.RunLogger(uri, exp_id, "retry", trial_tags(), {"lr": 0.002})
    first.close("FAILED")
    with mt.RunLogger(uri, exp_id, "retry", {"attempt": "2"}, {"lr": 0.002, "epochs": 3}, run_id=first.run_id) as again:
        assert MlflowClient(uri).get_run(first.run_id).info.status == "RUNNING"
        again.log_metrics({"test/score": 0.3})
    got = MlflowClient(uri).get_run(first.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params == {"lr": "0.002", "epochs": "3"} and got.data.tags["attempt"] == "2"
    with pytest.raises(AvkdError, match="lr"):
        mt.RunLogger(uri, exp_id, "retry", {}, {"lr": 0.5}, run_id=first.run_id)
    assert MlflowClient(uri).get_run(first.run_id).info.status == "FAILED"  # the failed re-attach ended it


def test_finished_runs_by_hash(store):
    uri, exp_id, _ = store
    with mt.RunLogger(uri, exp_id, "sweep", {schema.ROLE: "sweep"}) as parent:
        with mt.RunLogger(uri, exp_id, "a-old", trial_tags(**{schema.CONFIG_HASH: "a"}), parent_run_id=parent.run_id):
            pass
        with mt.RunLogger(
            uri, exp_id, "a-new", trial_tags(**{schema.CONFIG_HASH: "a"}), parent_run_id=parent.run_id
        ) as a_new:
            pass
        with pytest.raises(RuntimeError):
            with mt.RunLogger(uri, exp_id, "b", trial_tags(**{schema.CONFIG_HASH: "b"}), parent_run_id=parent.run_id):
                raise RuntimeError("crash")
        with mt.RunLogger(uri, exp_id, "c", trial_tags(**{schema.CONFIG_HASH: "c"}), parent_run_id=parent.run_id) as c:
            pass
        # a run that is not a child of a sweep does not count
        with mt.RunLogger(uri, exp_id, "loose", trial_tags(**{schema.CONFIG_HASH: "d"})):
            pass
    assert mt.finished_runs_by_hash(uri, exp_id) == {"a": a_new.run_id, "c": c.run_id}


def test_mark_stale_runs_only_ends_runs_whose_driver_is_gone(store):
    """A sweep run is stale only when its owner is provably gone (same host, pid gone or reused; or an
    old heartbeat); its RUNNING children go with it. A live driver's runs and loose runs stay RUNNING."""
    uri, exp_id, _ = store
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_owner = str(Owner(Owner.current().host, int(gone.stdout), 1))
    reused_pid = str(Owner(Owner.current().host, os.getpid(), Owner.current().started + 1))  # same pid, other process

    def sweep_run(name, **tags):
        return mt.RunLogger(uri, exp_id, name, {schema.ROLE: "sweep", **tags}).run_id

    dead = sweep_run("dead", **{schema.OWNER: dead_owner})
    reused = sweep_run("reused", **{schema.OWNER: reused_pid})
    live = sweep_run("live", **{schema.OWNER: str(Owner.current())})
    elsewhere_old = sweep_run(
        "elsewhere-old", **{schema.OWNER: "other-host:1:1", schema.HEARTBEAT: str(time.time() - HEARTBEAT_STALE_S - 5)}
    )
    elsewhere_fresh = sweep_run(
        "elsewhere-fresh", **{schema.OWNER: "other-host:1:1", schema.HEARTBEAT: str(time.time())}
    )
    child_of_dead = mt.RunLogger(uri, exp_id, "t1", trial_tags(), parent_run_id=dead).run_id
    child_of_live = mt.RunLogger(uri, exp_id, "t2", trial_tags(), parent_run_id=live).run_id
    loose = mt.RunLogger(uri, exp_id, "loose", trial_tags()).run_id
    with mt.RunLogger(uri, exp_id, "done", trial_tags(), parent_run_id=dead) as done:
        pass

    stale = mt.mark_stale_runs(uri, exp_id)
    assert sorted(stale) == sorted([dead, reused, elsewhere_old, child_of_dead])
    client = MlflowClient(uri)
    status = {r: client.get_run(r).info.status for r in (live, elsewhere_fresh, child_of_live, loose, done.run_id)}
    assert status == {
        live: "RUNNING",
        elsewhere_fresh: "RUNNING",
        child_of_live: "RUNNING",
        loose: "RUNNING",
        done.run_id: "FINISHED",
    }
    assert mt.mark_stale_runs(uri, exp_id) == []


def test_open_sweep_run_continues_the_same_sweep(store):
    """A rerun of the same sweep (name + sweep hash) reopens its run; another hash gets its own run;
    a run whose owner is alive elsewhere is refused in one line."""
    uri, exp_id, _ = store
    first, continued = mt.open_sweep_run(uri, exp_id, "s", "h1", {}, {"a": 1}, owner="x:1:1")
    assert not continued
    first.close("KILLED")
    again, continued = mt.open_sweep_run(uri, exp_id, "s", "h1", {}, {"a": 1}, owner=str(Owner.current()))
    assert continued and again.run_id == first.run_id
    assert MlflowClient(uri).get_run(first.run_id).info.status == "RUNNING"
    other, continued = mt.open_sweep_run(uri, exp_id, "s", "h2", {}, {"a": 2}, owner="x:1:1")
    assert not continued and other.run_id != first.run_id
    other.close()
    MlflowClient(uri).set_tag(again.run_id, schema.OWNER, "other-host:1:1")  # alive elsewhere (fresh heartbeat)
    with pytest.raises(AvkdError, match="already running: run " + again.run_id):
        mt.open_sweep_run(uri, exp_id, "s", "h1", {}, {"a": 1}, owner="x:1:1")
    again.close()


def _timing_result() -> dict:
    return {
        "videos": 4,
        "threads": 2,
        "device": "cpu",
        "image_size": 128,
        "weights": {"inception": "random", "cnn14": "random", "fingerprint": "abc123"},
        "variants": [
            {
                "k": 1.0,
                "name": "teacher",
                "extract_mean_s": 2.0,
                "extract_std_s": 0.2,
                "e2e_mean_s": 2.5,
                "e2e_std_s": 0.25,
                "extract_reduction_pct": 0.0,
                "e2e_reduction_pct": 0.0,
                "frames_mean": 30,
                "audio_frames_mean": 100,
            },
            {
                "k": 0.2,
                "name": "k0.2",
                "extract_mean_s": 0.5,
                "extract_std_s": 0.05,
                "e2e_mean_s": 1.0,
                "e2e_std_s": 0.1,
                "extract_reduction_pct": 75.0,
                "e2e_reduction_pct": 60.0,
                "frames_mean": 6,
                "audio_frames_mean": 20,
            },
        ],
    }


def test_log_timing_run(store, tmp_path):
    uri, exp_id, _ = store
    name = MlflowClient(uri).get_experiment(exp_id).name
    cfg = parse_sweep({"name": "unit", "tracking": {"uri": uri, "experiment": name}})
    with mt.RunLogger(uri, exp_id, "sweep", {schema.ROLE: "sweep"}) as parent:
        run_id = mt.log_timing_run(cfg, _timing_result(), parent_run_id=parent.run_id, config_hash="timing-h")
    got = MlflowClient(uri).get_run(run_id)
    assert got.info.experiment_id == exp_id and got.info.status == "FINISHED"
    # one metric per quantity, one point per variant at step = % of frames kept: plotted against k
    assert set(got.data.metrics) == set(schema.TIMING_METRICS.values())
    history = MlflowClient(uri).get_metric_history(run_id, schema.TIMING_EXTRACT_S)
    assert sorted((m.step, m.value) for m in history) == [(20, 0.5), (100, 2.0)]
    assert mt.timing_values(MlflowClient(uri), got) == {
        1.0: {(False, False): 2.0, (False, True): 0.2, (True, False): 2.5, (True, True): 0.25},
        0.2: {(False, False): 0.5, (False, True): 0.05, (True, False): 1.0, (True, True): 0.1},
    }
    tags = got.data.tags
    assert (tags[schema.ROLE], tags[schema.SWEEP], tags[schema.WEIGHTS], tags[schema.PARENT]) == (
        "timing",
        "unit",
        "random",
        parent.run_id,
    )
    assert tags[schema.WEIGHTS_DETAIL] == "inception=random,cnn14=random"  # schema.weights_tags, per backbone
    assert tags[schema.GIT_COMMIT] == mt.git_commit()
    assert mt.finished_runs_by_hash(uri, exp_id) == {"timing-h": run_id}  # a resumed sweep can skip it
    assert got.data.params["bench.videos"] == "4" and got.data.params["model.hidden"] == "512"
    assert "distill.losses.rep_ce" in got.data.params  # "+" is not allowed in MLflow keys
    saved = json.loads(
        Path(MlflowClient(uri).download_artifacts(run_id, schema.ARTIFACT_TIMING, str(tmp_path))).read_text()
    )
    assert saved == _timing_result()
    # without a parent: the sweep's experiment (created on demand), from cfg.tracking.uri
    other = parse_sweep({"name": "bench-only", "tracking": {"uri": uri}})
    run2 = MlflowClient(uri).get_run(mt.log_timing_run(other, _timing_result()))
    assert MlflowClient(uri).get_experiment(run2.info.experiment_id).name == "bench-only"
    assert schema.CONFIG_HASH not in run2.data.tags and schema.PARENT not in run2.data.tags
    bad = _timing_result()
    del bad["variants"][1]["e2e_std_s"]
    with pytest.raises(AvkdError, match=r"variants\[1\]: missing e2e_std_s"):
        mt.log_timing_run(cfg, bad)


def test_retry_transient_errors_then_give_up(monkeypatch):
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise MlflowException("(sqlite3.OperationalError) database is locked", error_code="TEMPORARILY_UNAVAILABLE")
        return "ok"

    assert mt._retry("log", flaky) == "ok" and len(calls) == 3

    def down():
        raise MlflowException("API request to http://127.0.0.1:5000 failed: Max retries exceeded (Connection refused)")

    monkeypatch.setattr(mt, "RETRY_SECONDS", 0.5)
    with pytest.raises(AvkdError, match="still failing after"):
        mt._retry("log metrics", down)

    permanent = []

    def invalid():
        permanent.append(1)
        raise MlflowException("Changing param values is not allowed.", error_code="INVALID_PARAMETER_VALUE")

    with pytest.raises(AvkdError, match="log params: Changing param values"):
        mt._retry("log params", invalid)
    assert len(permanent) == 1  # permanent errors are not retried


def test_git_commit(monkeypatch, tmp_path):
    commit = mt.git_commit()
    assert re.fullmatch(r"[0-9a-f]{4,40}(\+dirty)?|unknown", commit), commit
    monkeypatch.setattr(mt, "REPO_ROOT", tmp_path)  # not a git checkout
    assert mt.git_commit() == "unknown"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_survives_a_tracking_server_restart(tmp_path):
    """A metric logged while the MLflow server is down arrives once it is back (retry with backoff)."""
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    servers: list[subprocess.Popen] = []

    def start() -> None:
        servers.append(
            subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "mlflow"),
                    "server",
                    "--backend-store-uri",
                    f"sqlite:///{tmp_path / 'srv.db'}",
                    "--artifacts-destination",
                    str(tmp_path / "artifacts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--workers",
                    "1",
                ],
                cwd=tmp_path,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
            )
        )

    def wait_healthy() -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise AssertionError((tmp_path / "server.log").read_text()[-2000:])

    def stop(proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # the server and its worker processes
            proc.wait(timeout=30)

    try:
        start()
        wait_healthy()
        uri = f"http://127.0.0.1:{port}"
        exp_id = mt.ensure_experiment(uri, "restart")
        run = mt.RunLogger(uri, exp_id, "through-a-restart", trial_tags())
        run.log_metrics({"val/cider": 0.1}, step=0)
        run.flush()
        stop(servers[0])
        restart = threading.Timer(2.0, start)
        restart.start()
        run.log_metrics({"val/cider": 0.2}, step=1)
        down_at = time.monotonic()
        run.flush()  # blocks, retrying, until the restarted server answers
        waited = time.monotonic() - down_at
        run.close()
        restart.join()
        history = MlflowClient(uri).get_metric_history(run.run_id, "val/cider")
        assert sorted((m.step, m.value) for m in history) == [(0, 0.1), (1, 0.2)]
        assert MlflowClient(uri).get_run(run.run_id).info.status == "FINISHED"
        assert waited > 1.0  # it really did wait for the server
    finally:
        for proc in servers:
            stop(proc)
        log.close()


def test_a_run_shorter_than_one_sampling_interval_still_logs_system_metrics(tmp_path):
    """MLflow publishes system metrics only after a whole sampling interval (5 s here): a 1 s run would
    have none; RunLogger publishes the first collected sample when the run ends."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = mt.ensure_experiment(uri, "short-runs")
    with mt.RunLogger(uri, exp, "short", {}, system_metrics=True) as run:
        time.sleep(1.0)
    metrics = MlflowClient(uri).get_run(run.run_id).data.metrics
    assert any(k.startswith("system/cpu") for k in metrics), sorted(metrics)
