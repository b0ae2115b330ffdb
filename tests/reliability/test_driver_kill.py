"""Reliability: the sweep driver killed with SIGKILL, then the same sweep run again.

The driver (`python -m avkd sweep`, its own session) is killed at three points: while extracting
features, while trials train, and while a trial evaluates the test split (beam search + METEOR).
The sweep is the 12-clip corpus with 2 configs (the teacher and the rep+ce student at k = 0.2).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from . import sweep_helpers as H

CONFIGS = 2  # teacher-s0, student-k0.2-rep+ce-s0
EXTRACTION_DONE = re.compile(r"^features: \d+ videos:|\] features: done", re.M)
LEFTOVER_GRACE_S = 120  # Ray's agents outlive a killed driver by ~60 s (they give up reaching its GCS)


def _status(uri: str) -> dict[str, tuple[str, str]]:
    """run id -> (name, status) of every run (sweep runs too)."""
    return {r.info.run_id: (r.info.run_name, r.info.status) for r in H.all_runs(uri)}


def _during_extraction(tmp: Path, uri: str, sweep: H.Sweep):
    """Some entries written (each video writes 3: frames, audio k=1, audio k=0.2), extraction not done
    (neither the extraction's summary line nor the progress view's "features: done" printed yet)."""
    if EXTRACTION_DONE.search(sweep.output()):
        raise AssertionError(f"extraction finished before the kill point:\n{sweep.output()[-2000:]}")
    return H.cache_entry_count(tmp / "cache") >= 6


def _during_training(tmp: Path, uri: str, sweep: H.Sweep):
    """The teacher FINISHED and a student trial has opened its run."""
    runs = H.trial_runs(uri)
    teacher_done = any(r.info.run_name == "teacher-s0" and r.info.status == "FINISHED" for r in runs)
    return teacher_done and any(r.data.tags.get("avkd.role") == "student" and r.info.status == "RUNNING" for r in runs)


def _during_evaluation(tmp: Path, uri: str, sweep: H.Sweep):
    """A trial saved its best checkpoint (training done) and has not yet written its test captions
    (in its scratch folder, avkd-trial-* in the temp dir the test gives the sweep)."""
    return any(
        (d / "best.pt").exists() and not (d / "test_captions.json").exists()
        for d in (tmp / "scratch").glob("avkd-trial-*")
    )


KILL_POINTS = {"extraction": _during_extraction, "training": _during_training, "evaluation": _during_evaluation}


@pytest.mark.slow
@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_driver_killed_then_rerun_resumes(point, tiny_corpus, tmp_path, tmp_path_factory):
    """Injected: `kill -9` of the driver during feature extraction (cold cache), during training (the
    teacher FINISHED, a student RUNNING) or during a trial's test evaluation (warm cache for both).
    Holds: no process of the killed run keeps using CPU, and all of them are gone within
    LEFTOVER_GRACE_S; no cache entry is corrupt; the rerun exits 0 with exactly one FINISHED run
    (all test/* metrics) per config; trial runs left RUNNING are now KILLED or FAILED, and the sweep
    run the killed driver left RUNNING is continued by the rerun (one sweep run, FINISHED); trials FINISHED
    before the kill are not re-run (same run ids)."""
    if point == "extraction":
        cache = tmp_path / "cache"
    else:
        cache = H.copy_cache(H.warm_cache(tiny_corpus, tmp_path_factory), tmp_path / "cache")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep_file = H.write_sweep(tmp_path, tiny_corpus, uri, cache_dir=cache, ks=[0.2], losses=["rep+ce"], blind=False)
    ray_tmp = H.ray_tmpdir()
    (tmp_path / "scratch").mkdir()
    env = H.sweep_env(ray_tmp, TMPDIR=str(tmp_path / "scratch"))  # where the trials' scratch folders go
    sweep = H.start_sweep(sweep_file, tmp_path, env, name="killed")
    try:
        H.wait_until(
            f"the {point} kill point", lambda: KILL_POINTS[point](tmp_path, uri, sweep), sweep, timeout=240, every=0.2
        )
        sweep.kill()
        killed_at = time.time()
        print(f"killed during {point} after {killed_at - sweep.started:.1f} s")

        # What the killed run left behind: processes (none may keep using CPU), runs, cache entries.
        # A process counts as busy when it uses > 20 % of a core from 3 s to 8 s after the kill (an
        # orphaned trial still training uses far more; exiting processes use next to nothing).
        time.sleep(3)
        left = H.leftover_processes(sweep.proc.pid, ray_tmp)
        cpu_before = H.cpu_seconds(left)
        time.sleep(5)
        cpu_after = H.cpu_seconds(left)
        used = {pid: cpu_after[pid] - cpu_before[pid] for pid in cpu_after if pid in cpu_before}
        names = {pid: cmd.split()[0].rsplit("/", 1)[-1] for pid, cmd in left.items()}
        print(
            f"{len(left)} process(es) of the killed run alive 3 s after the kill (CPU-s used in the next 5 s): "
            + ", ".join(f"{names[pid]} {used.get(pid, 0.0):.2f}" for pid in sorted(left))
        )
        busy = {names[pid]: round(u, 2) for pid, u in used.items() if u > 1.0}
        assert not busy, f"processes of the killed run still using CPU (CPU-s in 5 s): {busy}"

        status_at_kill = _status(uri)
        finished_at_kill = H.finished_ids(uri)
        running_at_kill = [rid for rid, (_, st) in status_at_kill.items() if st == "RUNNING"]
        assert running_at_kill, "the killed sweep left no run RUNNING (its parent run at least should be)"
        bad = H.corrupt_cache_entries(cache)
        assert not bad, f"corrupt cache entries after the kill: {bad}"

        rc, out, seconds = H.run_sweep(sweep_file, tmp_path, env, name="rerun")
        print(
            f"rerun after a kill during {point}: exit {rc} in {seconds:.1f} s; "
            f"{len(finished_at_kill)} trial(s) were FINISHED at the kill, {len(running_at_kill)} run(s) RUNNING"
        )
        assert rc == 0, out[-4000:]
        assert "left RUNNING by an interrupted sweep were marked KILLED" in out, out[-3000:]
        H.check_one_finished_per_config(uri, CONFIGS)
        status_now = _status(uri)
        sweep_runs = [rid for rid, (name, _) in status_now.items() if name.startswith("sweep-")]
        assert len(sweep_runs) == 1 and status_now[sweep_runs[0]][1] == "FINISHED", status_now  # continued, not new
        for rid in running_at_kill:
            if rid not in sweep_runs:
                assert status_now[rid][1] in ("KILLED", "FAILED"), f"{status_now[rid]} was RUNNING at the kill"
        finished_now = H.finished_ids(uri)
        for name, rid in finished_at_kill.items():
            assert finished_now[name] == rid, f"{name} was re-run although it had FINISHED"
        if finished_at_kill:
            assert "already FINISHED in MLflow (skipped)" in out
        bad = H.corrupt_cache_entries(cache)
        assert not bad, f"corrupt cache entries after the rerun: {bad}"
        assert (tmp_path / "reports" / "tiny" / "table1.csv").exists()

        # Ray's processes of the killed run exit by themselves (its agents after ~60 s).
        while H.leftover_processes(sweep.proc.pid) and time.time() < killed_at + LEFTOVER_GRACE_S:
            time.sleep(1)
        still = H.leftover_processes(sweep.proc.pid)
        assert not still, f"processes of the killed run alive {LEFTOVER_GRACE_S} s after the kill: {still}"
        print(f"the killed run's processes were all gone {time.time() - killed_at:.0f} s after the kill")
    finally:
        H.stop_session(sweep.proc.pid, ray_tmp)  # whatever is left of both runs, by session / Ray folder
        H.remove_ray_tmp(ray_tmp)
