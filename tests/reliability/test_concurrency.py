"""Reliability: several processes at once, as real processes (no mocks).

- the sweep lock: a second driver of the same sweep refuses in one line naming the live one, and a
  driver killed with SIGKILL never blocks the next one (fast);
- the Table II warning when another sweep is running on the machine (fast);
- two `data synth` processes on one cold folder (fast-ish);
- two drivers of the same sweep (refusal; the first is unharmed; a rerun adds no sweep run) (slow);
- two different sweeps in one experiment, started together on a cold corpus folder and a cold
  feature cache: both complete, nothing KILLED, one FINISHED run per config each (slow).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from . import sweep_helpers as H
from .conftest import PYTHON, REPO, cli_env

HOLD = """
import sys, time
from avkd.sweep.lock import SweepLock
lock = SweepLock(sys.argv[1], "exp", sys.argv[2])
lock.acquire()
lock.describe("run-of-the-holder")
print("held", flush=True)
time.sleep(600)
"""


def _hold_lock(uri: str, sweep: str, tmp: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [PYTHON, "-c", HOLD, uri, sweep], cwd=REPO, env=cli_env(TMPDIR=str(tmp)), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_sweep_lock_refuses_a_second_driver_and_frees_on_kill(tmp_path, monkeypatch):
    """Injected: another process holds the lock of (uri, experiment, sweep). Holds: acquire() raises one
    line naming its host, pid and sweep run; another sweep name is free; after kill -9 of the holder
    the lock is free at once (the kernel releases an flock with its process)."""
    from avkd.errors import AvkdError
    from avkd.sweep.lock import SweepLock

    monkeypatch.setenv("TMPDIR", str(tmp_path))  # a private lock folder (tempfile.gettempdir reads it)
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    holder = _hold_lock("sqlite:///x.db", "tiny", tmp_path)
    try:
        with pytest.raises(AvkdError) as err:
            SweepLock("sqlite:///x.db", "exp", "tiny").acquire()
        line = str(err.value)
        assert "\n" not in line and f"pid {holder.pid}" in line and "run-of-the-holder" in line, line
        with SweepLock("sqlite:///x.db", "exp", "other") as other:  # another sweep: not blocked
            other.acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        with SweepLock("sqlite:///x.db", "exp", "tiny") as lock:
            lock.acquire()
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_sweep_lock_wait_takes_over_when_the_holder_ends(tmp_path, monkeypatch):
    """--wait: acquire(wait=True) says once that it waits (naming the holder) and returns as soon as
    the holder's process ends (here: SIGTERM after 3 s)."""
    import tempfile
    import threading

    from avkd.sweep.lock import SweepLock

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    holder = _hold_lock("sqlite:///z.db", "tiny", tmp_path)
    said = []
    threading.Timer(3.0, holder.terminate).start()
    t0 = time.time()
    try:
        with SweepLock("sqlite:///z.db", "exp", "tiny") as lock:
            lock.acquire(wait=True, on_wait=said.append)
        assert time.time() - t0 >= 2.5
        assert len(said) == 1 and f"pid {holder.pid}" in said[0] and "waiting" in said[0], said
    finally:
        holder.kill()
        holder.wait(timeout=10)


def test_timing_warns_when_another_sweep_runs(tmp_path, monkeypatch, capsys):
    """Injected: a live sweep driver (lock holder) on this machine. Holds: other_sweeps_running() names
    it, the Table II warning is printed; after it ends, no warning."""
    import tempfile

    from avkd.sweep.driver import warn_other_sweeps
    from avkd.sweep.lock import other_sweeps_running

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    holder = _hold_lock("sqlite:///y.db", "busy", tmp_path)
    try:
        assert [o["pid"] for o in other_sweeps_running()] == [holder.pid]
        warn_other_sweeps()
        out = capsys.readouterr().out
        assert "another sweep is running on this machine" in out and str(holder.pid) in out, out
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert other_sweeps_running() == []
    warn_other_sweeps()
    assert "another sweep" not in capsys.readouterr().out


def test_two_synth_generations_on_a_cold_folder(tmp_path):
    """Injected: two `python -m avkd data synth` of the same corpus started together on a folder that
    does not exist yet. Holds: both exit 0 (before the folder lock: `OSError: Directory not empty`), one
    corpus with every video, no partial folder left."""
    out = tmp_path / "data" / "corpus"
    cmd = [PYTHON, "-m", "avkd", "data", "synth", "--out", str(out), "--videos", "6", "--seed", "3"]
    procs = [
        subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stdout.read()) for p in procs]
    for rc, text in results:
        assert rc == 0, text
    assert not any("Error" in text for _, text in results), results
    entries = [
        v
        for name in ("train_val_videodatainfo.json", "test_videodatainfo.json")
        for v in json.loads((out / name).read_text())["videos"]
    ]
    assert len(entries) == 6 and all((out / "videos" / f"{v['video_id']}.mp4").is_file() for v in entries)
    assert sorted(p.name for p in out.parent.iterdir()) == ["corpus"]


def _parents(uri: str, experiment: str) -> list:
    return [r for r in H.all_runs(uri, experiment) if r.data.tags.get("avkd.role") == "sweep"]


@pytest.mark.slow
def test_same_sweep_twice_refuses_and_rerun_adds_no_parent(tiny_corpus, tmp_path, tmp_path_factory):
    """Injected: a second `python -m avkd sweep` of the same file while the first trains; then a rerun
    of the finished sweep. Holds: the second exits 2 with one line naming the live driver
    (host, pid, sweep run id) and writes no run; the first finishes with one FINISHED run per config and
    nothing KILLED; the rerun trains nothing, exits 0 and reuses the one sweep run (FINISHED, with its
    trial counts in the report header)."""
    cache = H.copy_cache(H.warm_cache(tiny_corpus, tmp_path_factory), tmp_path / "cache")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_file = H.write_sweep(tmp_path, tiny_corpus, uri, cache_dir=cache, ks=[0.2], losses=["rep+ce"], blind=False)
    ray_tmp = H.ray_tmpdir()
    env = H.sweep_env(ray_tmp)
    first = H.start_sweep(sweep_file, tmp_path, env, name="first")
    try:
        H.wait_until("the first sweep's run", lambda: ">> sweep run " in first.output(), first, timeout=300)
        run_id = first.output().split(">> sweep run ", 1)[1].split()[0]
        before = {r.info.run_id for r in H.all_runs(uri)}
        t0 = time.time()
        second = subprocess.run(
            [PYTHON, "-m", "avkd", "sweep", str(sweep_file), "--report-out", str(tmp_path / "r2")],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        print(f"second driver: exit {second.returncode} in {time.time() - t0:.1f} s: {second.stderr.strip()}")
        assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
        line = second.stderr.strip()
        assert "\n" not in line and "already running" in line and f"pid {first.proc.pid}" in line and run_id in line, (
            line
        )
        assert {r.info.run_id for r in H.all_runs(uri)} <= before | {r.info.run_id for r in H.trial_runs(uri)}

        rc = first.proc.wait(timeout=400)
        assert rc == 0, first.output()[-3000:]
        H.check_one_finished_per_config(uri, 2)
        assert not [r.info.run_name for r in H.all_runs(uri) if r.info.status == "KILLED"]

        rc, out, seconds = H.run_sweep(sweep_file, tmp_path, env, name="rerun")
        print(f"rerun of the finished sweep: exit {rc} in {seconds:.1f} s")
        # the plan: teacher, the two modality guides, the student: all skipped, none trained again
        assert rc == 0 and "0 trial(s) run, 4 skipped (already finished)" in out, out[-3000:]
        parents = _parents(uri, H.EXPERIMENT)
        assert [(r.info.run_id, r.info.status) for r in parents] == [(run_id, "FINISHED")]
        html = (tmp_path / "reports" / "tiny" / "index.html").read_text()
        assert run_id[:8] in html and "FINISHED" in html and "trials 4 finished (0 now, 4 earlier)" in html
    finally:
        H.stop_session(first.proc.pid, ray_tmp)
        H.remove_ray_tmp(ray_tmp)


@pytest.mark.slow
def test_two_different_sweeps_side_by_side_on_cold_folders(tmp_path):
    """Injected: sweeps `tiny-a` and `tiny-b` (same grid, same experiment, same tracking DB) started
    together on a corpus folder that does not exist yet and an empty feature cache. Holds: both exit 0;
    no run is KILLED or left RUNNING; each sweep has one sweep run and one FINISHED run per config;
    the cache has no corrupt entry; the corpus was generated once."""
    corpus = tmp_path / "data" / "synth"
    cache = tmp_path / "cache"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from trackers import mlflow_tracker as mt

    mt.ensure_experiment(uri, "shared")  # a fresh DB is created by one process (README: SQLite migration race)
    sweeps, procs, rays = {}, {}, {}
    for name in ("tiny-a", "tiny-b"):
        folder = tmp_path / name
        folder.mkdir()
        path = H.write_sweep(folder, corpus, uri, cache_dir=cache, ks=[0.2], losses=["rep+ce"], blind=False)
        d = yaml.safe_load(path.read_text())
        d["name"], d["tracking"]["experiment"] = name, "shared"
        d["dataset"]["synth"] = {"videos": 12, "seed": 0}
        path.write_text(yaml.safe_dump(d))
        sweeps[name], rays[name] = path, H.ray_tmpdir()
    try:
        for name, path in sweeps.items():
            procs[name] = H.start_sweep(path, tmp_path / name, H.sweep_env(rays[name]), name=name)
        for name, s in procs.items():
            rc = s.proc.wait(timeout=900)
            print(f"{name}: exit {rc} in {time.time() - s.started:.0f} s")
            assert rc == 0, s.output()[-4000:]
        assert sum("generating the synthetic corpus" in s.output() for s in procs.values()) >= 1
        runs = H.all_runs(uri, "shared")
        bad = [(r.info.run_name, r.info.status) for r in runs if r.info.status in ("KILLED", "RUNNING", "FAILED")]
        assert not bad, bad
        for name in sweeps:
            mine = [r for r in runs if r.data.tags.get("avkd.sweep") == name]
            parents = [r for r in mine if r.data.tags.get("avkd.role") == "sweep"]
            assert len(parents) == 1, f"{name}: {len(parents)} sweep runs"
            trials = [r for r in mine if r.data.tags.get("avkd.role") in H.TRIAL_ROLES]
            by_config = H.runs_by_config(trials)
            assert len(by_config) == 2 and all(len(rs) == 1 for rs in by_config.values()), {
                h: [(r.info.run_name, r.info.status) for r in rs] for h, rs in by_config.items()
            }
            assert all(r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for r in trials)
        assert not H.corrupt_cache_entries(cache)
        assert sorted(p.name for p in corpus.parent.iterdir()) == ["synth"]
    finally:
        for name, s in procs.items():
            H.stop_session(s.proc.pid, rays[name])
        for r in rays.values():
            H.remove_ray_tmp(r)
