"""The real MLflow UI (a light `mlflow ui` on 127.0.0.1) in headless Chromium, against a finished tiny sweep:
the trials view avkd links to lists the trial runs with k and seed as param columns (issue 14)."""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        _chromium() is None,
        reason="headless Chromium is not installed (chromium not on PATH; apt-get install chromium)",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def finished_sweep(tiny_corpus, tmp_path_factory):
    """A tiny sweep through the real CLI (teacher + students at k 0.2 and 0.6, one loss): (uri, experiment id)."""
    tmp = tmp_path_factory.mktemp("ui-sweep")
    d = yaml.safe_load((REPO / "sweeps" / "tiny.yaml").read_text())
    d["dataset"] = {**d["dataset"], "kind": "msrvtt", "root": str(tiny_corpus)}
    d["features"]["cache_dir"] = str(tmp / "cache")
    d["runs_dir"] = str(tmp / "runs")
    d["tracking"] = {"uri": f"sqlite:///{tmp / 'mlflow.db'}"}
    sweep = tmp / "tiny.yaml"
    sweep.write_text(yaml.safe_dump(d))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "avkd",
            "sweep",
            str(sweep),
            "grid.losses=[rep+ce]",
            "grid.blind=false",
            "grid.timing.enabled=false",
            "training.epochs=1",
            "--no-report",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    from mlflow.tracking import MlflowClient

    uri = d["tracking"]["uri"]
    return uri, MlflowClient(uri).get_experiment_by_name("tiny").experiment_id


@pytest.fixture(scope="module")
def ui(finished_sweep, tmp_path_factory):
    """`make ui`'s light server (one worker, no job runner) on a free port; its base URL."""
    uri, _ = finished_sweep
    port = _free_port()
    log = tmp_path_factory.mktemp("ui") / "mlflow-ui.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    with open(log, "w") as out:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "ui",
                "--backend-store-uri",
                uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if urllib.request.urlopen(f"{base}/health", timeout=5).status == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        yield base
    finally:
        os.killpg(server.pid, 15)  # its own process group: the server and its uvicorn worker
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(timeout=30)


def _dom(url: str, profile: Path) -> str:
    proc = subprocess.run(
        [
            _chromium(),
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1600,1000",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HOME": str(profile)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _text(dom: str) -> str:
    dom = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.S)
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom)))


def test_trials_view_shows_k_and_seed_param_columns(finished_sweep, ui, tmp_path):
    from trackers.mlflow_tracker import runs_url

    _, exp_id = finished_sweep
    dom = _dom(runs_url(ui, exp_id), tmp_path / "profile")
    text = _text(dom)
    # the classic runs table (not the GenAI overview), with the trials listed flat and sorted by k
    assert "Overview Observability" not in text and "Sort: k" in text, text[:1500]
    for column in ("params.`k`", "params.`seed`", "params.`method`", "metrics.`test/score`"):
        assert f'col-id="{column}"' in dom, column
    names = ["student-k0.2-rep+ce-s0", "student-k0.6-rep+ce-s0", "teacher-s0"]  # k 0.2, 0.6, 1
    positions = [text.find(name) for name in names]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), (names, text[:3000])
    assert "sweep-" not in text  # the parent run is filtered out of the trials view
    # their param cells: k 0.2 / 0.6 / 1, method, seed 0
    assert re.search(r"\b0\.2 rep\+ce student 0\b", text) and re.search(r"\b1 ce teacher 0\b", text), text[:3000]


def test_finished_sweep_runs_as_mlflow_shows_them(finished_sweep, tmp_path):
    """The same sweep's runs: params differ exactly in what varies, MLflow's own tags, system metrics, and
    the command-line overrides recorded in the parent run."""
    from mlflow.tracking import MlflowClient

    from trackers import schema

    uri, exp_id = finished_sweep
    client = MlflowClient(uri)
    runs = client.search_runs([exp_id])
    trials = [r for r in runs if r.data.tags.get(schema.ROLE) in ("teacher", "student")]
    assert len(trials) == 3
    keys = set().union(*(r.data.params for r in trials))
    varying = {k for k in keys if len({r.data.params.get(k) for r in trials}) > 1}
    assert varying == {"role", "k", "method"} and keys == {"role", "k", "method", "seed"}
    for r in trials:
        tags = r.data.tags
        assert tags[schema.SOURCE_NAME].startswith("python -m avkd sweep ") and tags[schema.USER]
        assert len(tags[schema.SOURCE_GIT_COMMIT]) == 40
        assert any(m.startswith("system/cpu") for m in r.data.metrics), sorted(r.data.metrics)
        assert schema.TRIAL_TIME_S in r.data.metrics and "trial_time_s" not in r.data.metrics
    parent = next(r for r in runs if r.data.tags.get(schema.ROLE) == "sweep")
    assert "grid.losses=['rep+ce']" in parent.data.tags[schema.OVERRIDES]
    assert parent.data.params["training.epochs"] == "1"  # the resolved config, overrides applied
    saved = yaml.safe_load(
        Path(client.download_artifacts(parent.info.run_id, schema.ARTIFACT_OVERRIDES, str(tmp_path))).read_text()
    )
    assert saved == {"grid.losses": ["rep+ce"], "grid.blind": False, "grid.timing.enabled": False, "training.epochs": 1}
    exp = client.get_experiment(exp_id)
    assert exp.tags[schema.EXPERIMENT_KIND] == schema.EXPERIMENT_KIND_RUNS
