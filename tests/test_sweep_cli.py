"""The sweep as researchers drive it: what trials log as params, command-line overrides, --dry-run,
the progress view and warnings once per sweep (issue 14)."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from avkd.config import load_sweep_with_overrides, parse_overrides
from avkd.errors import ConfigError
from trackers import schema

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "sweeps" / "tiny.yaml"


# ---- params: what varies ---------------------------------------------------------------------------


def _varying(param_sets: list[dict]) -> set[str]:
    keys = set().union(*param_sets)
    return {k for k in keys if len({str(p.get(k)) for p in param_sets}) > 1}


def test_trial_params_differ_exactly_in_what_varies(tiny_config):
    from avkd.sweep.plan import plan_trials
    from avkd.sweep.trial import apply_overrides, trial_params

    cfg = tiny_config(grid={"seeds": [0, 1], "blind": True})
    teachers, guides, students = plan_trials(cfg, "fp")
    specs = teachers + guides + students
    params = [trial_params(s, {}, cfg, cfg) for s in specs]
    # (the modality rows are guide trials: "guide" names which single-modality teacher)
    assert _varying(params) == {
        schema.PARAM_ROLE,
        schema.PARAM_K,
        schema.PARAM_METHOD,
        schema.PARAM_SEED,
        schema.PARAM_GUIDE,
    }
    student = params[specs.index(next(s for s in specs if s.name == "student-k0.2-rep+ce-s1"))]
    assert student == {"role": "student", "k": "0.2", "method": "rep+ce", "seed": 1}  # no copy of the whole config
    # a tuned re-run: its overrides, and every config value they change, are params too
    best = {"mlp_h1": 32, "mlp_h2": 16, "mlp_dropout": 0.3, "decoder_dropout": 0.2, "rep_weight": 2.0}
    tuned = dataclasses.replace(students[0], tuned=True, overrides=best)
    got = trial_params(tuned, best, apply_overrides(cfg, best), cfg)
    assert got["tuned"] == "true" and got["tune.mlp_h1"] == 32
    assert got["distill.mlp.hidden"] == [32, 16] and got["model.dropout"] == 0.2
    assert got["distill.mlp.dropout"] == 0.3
    assert "training.epochs" not in got  # unchanged values stay in config.yaml and the parent's params


# ---- overrides --------------------------------------------------------------------------------------


def test_overrides_are_yaml_typed():
    assert parse_overrides(
        ["training.epochs=3", "grid.ks=[0.2, 0.6]", "grid.blind=false", "tune=null", "name=x y"]
    ) == {"training.epochs": 3, "grid.ks": [0.2, 0.6], "grid.blind": False, "tune": None, "name": "x y"}


def test_overrides_apply_and_validate_like_the_file(tmp_path):
    cfg, overrides = load_sweep_with_overrides(TINY, ["training.epochs=1", "grid.ks=[0.4]", "tracking.experiment=e"])
    assert (cfg.training.epochs, cfg.grid.ks, cfg.tracking.experiment) == (1, [0.4], "e")
    assert overrides == {"training.epochs": 1, "grid.ks": [0.4], "tracking.experiment": "e"}
    cases = {
        "grid.ks=[1.5]": "sweeps/tiny.yaml with grid.ks=[1.5]: grid.ks[0]: 1.5 is outside (0, 1]",
        "grid.kss=1": "grid.kss: unknown key",
        "training.epochs=three": "training.epochs",
        "grid.ks.x=1": "command line: grid.ks.x: grid.ks is a value",
        "epochs": "command line: 'epochs': expected key=value",
        "grid.ks=[0.2": "command line: 'grid.ks=[0.2': the value is not valid YAML",
    }
    for item, expected in cases.items():
        with pytest.raises(ConfigError) as err:
            load_sweep_with_overrides(TINY, [item])
        message = str(err.value)
        assert expected in message and "\n" not in message, (item, message)


# ---- --dry-run ----------------------------------------------------------------------------------------


def _sweep_file(tmp: Path, corpus: Path, db: Path) -> Path:
    d = yaml.safe_load(TINY.read_text())
    d["dataset"] = {**d["dataset"], "kind": "msrvtt", "root": str(corpus)}
    d["features"]["cache_dir"] = str(tmp / "cache")
    d["runs_dir"] = str(tmp / "runs")
    d["tracking"] = {"uri": f"sqlite:///{db}"}
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def _dry_run(sweep: Path, *extra: str) -> subprocess.CompletedProcess:
    code = (
        "import sys; from avkd.cli import main; rc = main(sys.argv[1:]); "
        "import ray; print('RAY STARTED' if ray.is_initialized() else 'no ray'); sys.exit(rc)"
    )
    return subprocess.run(
        [sys.executable, "-c", code, "sweep", str(sweep), "--dry-run", *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_corpus, tmp_path):
    from avkd.config import load_sweep
    from avkd.data.msrvtt import load_msrvtt
    from avkd.sweep.plan import plan_trials
    from trackers import mlflow_tracker as mt

    db = tmp_path / "mlflow.db"
    sweep = _sweep_file(tmp_path, tiny_corpus, db)
    proc = _dry_run(sweep, "grid.ks=[0.2]")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    # teacher, blind, the audio-only and visual-only teachers (modality rows), two students
    assert "6 trials: 6 would run, 0 already FINISHED" in out and "student-k0.2-rep+ce-s0" in out
    assert "student-k0.6" not in out  # the override applies to the plan
    assert "no ray" in out and not db.exists() and not (tmp_path / "runs").exists()
    assert "\x1b[" not in out  # not a terminal: no escape codes

    # one finished teacher in MLflow: the plan says so, and the dry run adds no run
    cfg = load_sweep(sweep)
    teacher = plan_trials(cfg, load_msrvtt(tiny_corpus).fingerprint())[0][0]
    uri = f"sqlite:///{db}"
    exp = mt.ensure_experiment(uri, "tiny")
    with mt.RunLogger(uri, exp, "sweep", {schema.ROLE: "sweep"}) as parent:
        with mt.RunLogger(
            uri,
            exp,
            teacher.name,
            {schema.ROLE: "teacher", schema.CONFIG_HASH: teacher.config_hash},
            parent_run_id=parent.run_id,
        ) as run:
            pass
    before = len(mt.search_all_runs(mt.mlflow_client(uri), exp))
    proc = _dry_run(sweep)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "8 trials: 7 would run, 1 already FINISHED" in proc.stdout  # 4 teachers (modality rows too), 4 students
    assert f"finished (run {run.run_id})" in proc.stdout
    assert len(mt.search_all_runs(mt.mlflow_client(uri), exp)) == before and "no ray" in proc.stdout


def test_bad_override_is_one_line_before_any_work(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "avkd", "sweep", "sweeps/tiny.yaml", "grid.ks=[1.5]"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: sweeps/tiny.yaml with grid.ks=[1.5]: grid.ks[0]: 1.5 is outside (0, 1]"


# ---- progress and warnings ----------------------------------------------------------------------------


def test_plain_progress_lines_without_a_terminal():
    import time

    from rich.console import Console

    from avkd.sweep.progress import SweepProgress

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=False, width=120)
    with SweepProgress(console, live=False, every_s=0.2) as view:
        with view.phase("features", unit="videos") as phase:
            phase.set_total(4)
            phase.skip(1)  # a cache hit: done, but not in the rate
            time.sleep(0.7)  # a long step: the heartbeat still prints
            phase.advance(3)
        with view.phase("teachers", 2, "trials") as phase:
            phase.advance(1, "done teacher-s0: test SCORE 0.100")
    text = buffer.getvalue()
    assert "\x1b[" not in text
    lines = text.splitlines()
    assert lines[0].startswith("[progress 0m00s] features: started")
    heartbeats = [line for line in lines if "features: 1/4 videos (25%)" in line]
    assert len(heartbeats) >= 2, text  # while nothing finished, the phase still reports
    assert any("features: 4/4 videos (100%)" in line for line in lines)
    assert any("features: done in" in line for line in lines)
    assert any("teachers: 1/2 trials (50%)" in line and "done teacher-s0" in line for line in lines)


def test_each_warning_once_per_sweep_across_processes(tmp_path):
    code = "from avkd.warn import warn_once; warn_once('SPICE not available'); warn_once('SPICE not available')"
    env = {**os.environ, "PYTHONPATH": str(REPO), "AVKD_WARN_DIR": str(tmp_path)}
    errs = [
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stderr for _ in range(3)
    ]
    assert "".join(errs).count("warning: SPICE not available") == 1
