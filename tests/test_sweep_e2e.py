"""The tiny sweep end to end through the real CLI, real Ray and real MLflow (SQLite, then a real server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "sweeps" / "tiny.yaml"


def tiny_sweep_file(tmp: Path, corpus: Path, uri: str | None, **grid) -> Path:
    d = yaml.safe_load(TINY.read_text())
    d["dataset"]["root"] = str(corpus)
    d["features"]["cache_dir"] = str(tmp / "cache")
    d["runs_dir"] = str(tmp / "runs")
    d["tracking"] = {"uri": uri}
    d["grid"].update(grid)
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def run_sweep_cli(sweep: Path, tmp: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "RAY_ADDRESS": "", **(env or {})}
    full_env.pop("RAY_ADDRESS")
    return subprocess.run(
        [sys.executable, "-m", "avkd", "sweep", str(sweep), "--report-out", str(tmp / "reports")],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def child_runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment}"
    return client.search_runs([exp.experiment_id], max_results=1000)


def check_tracking(uri: str) -> dict[str, int]:
    from mlflow.tracking import MlflowClient

    from trackers import schema

    runs = child_runs(uri, "tiny")
    parents = [r for r in runs if r.data.tags.get("avkd.role") == "sweep"]
    assert parents, "no parent sweep run"
    parent_ids = {p.info.run_id for p in parents}
    trials = [r for r in runs if r.data.tags.get("avkd.role") in ("teacher", "student", "blind")]
    roles = {}
    for r in trials:
        tags, metrics = r.data.tags, r.data.metrics
        assert r.info.status == "FINISHED", (r.info.run_name, r.info.status)
        assert tags["mlflow.parentRunId"] in parent_ids
        for key in (
            "avkd.k",
            "avkd.loss",
            "avkd.seed",
            "avkd.config_hash",
            "avkd.sweep",
            "avkd.weights",
            "avkd.dataset_fingerprint",
            "avkd.git_commit",
            "avkd.score_metrics",
        ):
            assert tags.get(key), (r.info.run_name, key)
        assert tags["avkd.weights"] == "random"
        for m in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider", "score"):
            assert f"test/{m}" in metrics, (r.info.run_name, m)
        assert 0.0 <= metrics["test/score"] <= 10.0
        assert any(k.startswith("val/") for k in metrics)
        # Params are what makes a trial differ (role, k, method, seed); the whole resolved config is its
        # config.yaml artifact (trial.trial_params), where the sweep file's model.hidden must be.
        assert {"role", "k", "method", "seed"} <= set(r.data.params), r.data.params
        with tempfile.TemporaryDirectory() as config_dir:
            local = MlflowClient(uri).download_artifacts(r.info.run_id, schema.ARTIFACT_CONFIG, config_dir)
            assert yaml.safe_load(Path(local).read_text())["config"]["model"]["hidden"] == 64
        roles[tags["avkd.role"]] = roles.get(tags["avkd.role"], 0) + 1
    hashes = [r.data.tags["avkd.config_hash"] for r in trials]
    assert len(hashes) == len(set(hashes)), "duplicate FINISHED runs for one config"
    timing = [r for r in runs if r.data.tags.get("avkd.role") == "timing"]
    assert timing and {"time/extract_s", "time/e2e_s"} <= set(timing[0].data.metrics)
    return roles


@pytest.mark.slow
def test_tiny_sweep_sqlite_then_rerun_is_idempotent(tiny_corpus, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = tiny_sweep_file(tmp_path, tiny_corpus, uri)
    first = run_sweep_cli(sweep, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    roles = check_tracking(uri)
    assert roles == {"teacher": 1, "blind": 1, "student": 4}
    assert (tmp_path / "reports" / "tiny" / "table1.csv").exists()

    t0 = time.time()
    second = run_sweep_cli(sweep, tmp_path)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "already FINISHED" in second.stdout
    assert check_tracking(uri) == roles  # no new trial runs
    print(f"rerun of a finished tiny sweep: {time.time() - t0:.1f} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_tiny_sweep_against_a_real_mlflow_server(tiny_corpus, tmp_path):
    port = _free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{tmp_path / 'server.db'}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # its own process group: stopping it stops its workers too
    uri = f"http://127.0.0.1:{port}"
    try:
        import urllib.request

        deadline = time.time() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "mlflow server did not become healthy in 60 s"
            time.sleep(0.5)
        sweep = tiny_sweep_file(tmp_path, tiny_corpus, None, ks=[0.2], losses=["rep+ce"], blind=False)
        proc = run_sweep_cli(sweep, tmp_path, env={"MLFLOW_TRACKING_URI": uri})
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert check_tracking(uri) == {"teacher": 1, "student": 1}
    finally:
        import signal

        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
