"""Reliability: Ctrl-C (SIGINT) and SIGTERM sent to a real sweep driver in each phase, then a rerun.

Each case runs `python -m avkd sweep` on a copy of sweeps/tiny.yaml (the teacher and the rep+ce
student at k = 0.2) in its own session with a private Ray temp folder, waits until the log or
MLflow shows the phase, sends the signal to the driver, and checks: the exit code (130 / 143) within
STOP_S, the "interrupted" summary (finished / killed / never started), no traceback, the sweep run
KILLED with avkd.interrupted, no trial run left RUNNING, no later phase started, no process of the
sweep (Ray's gcs_server / raylet / workers, METEOR's java) alive; then that the rerun resumes into
one FINISHED run per config under the same, single sweep run.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from . import sweep_helpers as H

CONFIGS = 2  # teacher-s0, student-k0.2-rep+ce-s0
STOP_S = 30  # the driver must have exited this long after the signal
LEFTOVER_S = 15  # ... and every process of the sweep this long after its exit


def _runs(uri: str, role: str) -> list:
    return [r for r in H.all_runs(uri) if r.data.tags.get("avkd.role") == role]


def _running(uri: str, role: str) -> bool:
    return any(r.info.status == "RUNNING" for r in _runs(uri, role))


# phase -> (needs a warm cache, timing enabled, tuning, the condition that shows the phase)
PHASES = {
    "extraction": (False, False, False, lambda tmp, uri, out: H.cache_entry_count(tmp / "cache") >= 3),
    "timing": (True, True, False, lambda tmp, uri, out: "timing benchmark" in out),
    "teachers": (True, False, False, lambda tmp, uri, out: _running(uri, "teacher")),
    "students": (True, False, False, lambda tmp, uri, out: _running(uri, "student")),
    "tuning": (True, False, True, lambda tmp, uri, out: _running(uri, "tune")),
}
# The driver's clock phase each case stops in, as the interrupted summary names it ("stopped in the ...").
CLOCK_PHASE = {
    "extraction": "features",
    "timing": "timing",
    "teachers": "trials_teachers",
    "students": "trials_students",
    "tuning": "trials_tune",
}
CASES = [
    ("extraction", "SIGINT"),
    ("timing", "SIGTERM"),
    ("teachers", "SIGINT"),
    ("teachers", "SIGTERM"),
    ("students", "SIGTERM"),
    ("tuning", "SIGINT"),
]


def _sweep_file(tmp: Path, corpus: Path, uri: str, cache: Path, timing: bool, tuning: bool) -> Path:
    path = H.write_sweep(tmp, corpus, uri, cache_dir=cache, ks=[0.2], losses=["rep+ce"], blind=False)
    d = yaml.safe_load(path.read_text())
    d["grid"]["timing"]["enabled"] = timing
    if tuning:
        d["tune"] = {
            "num_samples": 2,
            "metric": "cider",
            "seed": 0,
            "asha": False,
            "space": {
                "mlp_hidden": [32, 64],
                "mlp_dropout": [0.0, 0.5],
                "decoder_dropout": [0.0, 0.5],
                "rep_weight": [0.1, 10.0],
            },
        }
    path.write_text(yaml.safe_dump(d))
    return path


def _later_phase_started(phase: str, uri: str) -> list[str]:
    """Runs of phases after `phase` (none may exist after an interrupt in `phase`)."""
    later = {
        "extraction": ("timing", "teacher", "student", "tune"),
        "timing": ("teacher", "student", "tune"),
        "teachers": ("student", "tune"),
        "students": (),
        "tuning": ("student",),
    }[phase]
    return [r.info.run_name for r in H.all_runs(uri) if r.data.tags.get("avkd.role") in later]


@pytest.mark.slow
@pytest.mark.parametrize("phase,sig", CASES)
def test_signal_stops_the_sweep_then_rerun_resumes(phase, sig, tiny_corpus, tmp_path, tmp_path_factory):
    warm, timing, tuning, reached = PHASES[phase]
    cache = (
        H.copy_cache(H.warm_cache(tiny_corpus, tmp_path_factory), tmp_path / "cache") if warm else tmp_path / "cache"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_file = _sweep_file(tmp_path, tiny_corpus, uri, cache, timing, tuning)
    ray_tmp = H.ray_tmpdir()
    env = H.sweep_env(ray_tmp)
    sweep = H.start_sweep(sweep_file, tmp_path, env, name="interrupted")
    try:
        H.wait_until(
            f"the {phase} phase", lambda: reached(tmp_path, uri, sweep.output()), sweep, timeout=300, every=0.2
        )
        os.kill(sweep.proc.pid, getattr(signal, sig))
        sent = time.time()
        try:
            rc = sweep.proc.wait(timeout=STOP_S)
        except Exception:
            raise AssertionError(f"no exit {STOP_S} s after {sig} in {phase}:\n{sweep.output()[-3000:]}") from None
        took = time.time() - sent
        out = sweep.output()
        print(f"{sig} during {phase}: exit {rc} {took:.1f} s after the signal")
        assert rc == 128 + getattr(signal, sig), out[-3000:]
        assert f"interrupted ({sig})" in out, out[-3000:]
        assert f"stopped in the {CLOCK_PHASE[phase]}" in out, out[-3000:]
        assert "Traceback" not in out, out[-4000:]

        sweep_runs = _runs(uri, "sweep")
        assert [r.info.status for r in sweep_runs] == ["KILLED"], [(r.info.run_id, r.info.status) for r in sweep_runs]
        assert sweep_runs[0].data.tags.get("avkd.interrupted") == sig
        running = [r.info.run_name for r in H.all_runs(uri) if r.info.status == "RUNNING"]
        assert not running, f"runs left RUNNING after {sig}: {running}"
        assert not _later_phase_started(phase, uri), _later_phase_started(phase, uri)
        if phase in ("teachers", "students", "tuning"):
            killed = [
                r.info.run_name
                for r in H.all_runs(uri)
                if r.info.status == "KILLED" and r.data.tags.get("avkd.role") != "sweep"
            ]
            assert killed, "the running trial was not marked KILLED"
        if phase != "students":
            assert "never started: " in out and "student-k0.2-rep+ce-s0" in out.split("never started: ", 1)[1]

        deadline = time.time() + LEFTOVER_S
        while H.leftover_processes(sweep.proc.pid, ray_tmp) and time.time() < deadline:
            time.sleep(0.5)
        left = H.leftover_processes(sweep.proc.pid, ray_tmp)
        assert not left, f"processes of the interrupted sweep still alive {LEFTOVER_S} s after its exit: {left}"

        rc, out, seconds = H.run_sweep(sweep_file, tmp_path, env, name="rerun")
        print(f"rerun after {sig} during {phase}: exit {rc} in {seconds:.1f} s")
        assert rc == 0, out[-4000:]
        H.check_one_finished_per_config(uri, CONFIGS)
        sweep_runs = _runs(uri, "sweep")
        assert [(r.info.run_id, r.info.status) for r in sweep_runs] == [(sweep_runs[0].info.run_id, "FINISHED")]
    finally:
        H.stop_session(sweep.proc.pid, ray_tmp)
        H.remove_ray_tmp(ray_tmp)


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signal_during_the_report_then_rerun_builds_it(sig, tiny_corpus, tmp_path, tmp_path_factory):
    """The report phase (every trial FINISHED, the tables and figures being written) interrupted.

    To hold the driver in that phase without a hook in the code, the report's index.html is a named pipe
    nobody reads: the driver blocks opening it, as it would on a hung network folder, after
    summary.json is written next to it. The sweep run then ends KILLED, not FINISHED, although every
    trial finished: the sweep's product (the report) is missing, and FINISHED would tell a notebook or
    `reports/build.py --experiment` that it is complete; avkd.interrupted and the trial counts (all
    finished, none killed) say exactly what happened. The rerun trains nothing (same trial run ids),
    writes the report and ends the same sweep run FINISHED.
    """
    cache = H.copy_cache(H.warm_cache(tiny_corpus, tmp_path_factory), tmp_path / "cache")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_file = _sweep_file(tmp_path, tiny_corpus, uri, cache, timing=False, tuning=False)
    report = tmp_path / "reports" / H.EXPERIMENT  # start_sweep's --report-out, the sweep's name
    report.mkdir(parents=True)
    os.mkfifo(report / "index.html")
    ray_tmp = H.ray_tmpdir()
    env = H.sweep_env(ray_tmp)
    sweep = H.start_sweep(sweep_file, tmp_path, env, name="interrupted")
    try:
        H.wait_until("the report phase", lambda: (report / "summary.json").exists(), sweep, timeout=400, every=0.2)
        os.kill(sweep.proc.pid, getattr(signal, sig))
        sent = time.time()
        try:
            rc = sweep.proc.wait(timeout=STOP_S)
        except Exception:
            raise AssertionError(f"no exit {STOP_S} s after {sig} in the report:\n{sweep.output()[-3000:]}") from None
        out = sweep.output()
        print(f"{sig} during the report: exit {rc} {time.time() - sent:.1f} s after the signal")
        assert rc == 128 + getattr(signal, sig), out[-3000:]
        assert f"interrupted ({sig})" in out, out[-3000:]
        assert "Traceback" not in out, out[-4000:]
        assert "never started: " not in out and "killed: " not in out, out[-3000:]
        assert "stopped in the report phase; the report was not written" in out, out[-3000:]
        finished_line = out.split("   finished: ", 1)[1].split("\n", 1)[0]
        assert {"teacher-s0", "student-k0.2-rep+ce-s0"} <= set(finished_line.split(", ")), finished_line

        sweep_runs = _runs(uri, "sweep")
        assert [r.info.status for r in sweep_runs] == ["KILLED"], [(r.info.run_id, r.info.status) for r in sweep_runs]
        assert sweep_runs[0].data.tags.get("avkd.interrupted") == sig
        trials = {r.info.run_name: (r.info.run_id, r.info.status) for r in H.trial_runs(uri)}
        assert sorted(s for _, s in trials.values()) == ["FINISHED"] * CONFIGS, trials

        deadline = time.time() + LEFTOVER_S
        while H.leftover_processes(sweep.proc.pid, ray_tmp) and time.time() < deadline:
            time.sleep(0.5)
        left = H.leftover_processes(sweep.proc.pid, ray_tmp)
        assert not left, f"processes of the interrupted sweep still alive {LEFTOVER_S} s after its exit: {left}"

        (report / "index.html").unlink()  # the hung folder is back
        rc, out, seconds = H.run_sweep(sweep_file, tmp_path, env, name="rerun")
        print(f"rerun after {sig} during the report: exit {rc} in {seconds:.1f} s")
        assert rc == 0, out[-4000:]
        H.check_one_finished_per_config(uri, CONFIGS)
        assert {r.info.run_name: (r.info.run_id, r.info.status) for r in H.trial_runs(uri)} == trials, "a trial re-ran"
        sweep_runs = _runs(uri, "sweep")
        assert [(r.info.run_id, r.info.status) for r in sweep_runs] == [(sweep_runs[0].info.run_id, "FINISHED")]
        assert (report / "index.html").is_file() and "<html" in (report / "index.html").read_text().lower()
    finally:
        H.stop_session(sweep.proc.pid, ray_tmp)
        H.remove_ray_tmp(ray_tmp)
