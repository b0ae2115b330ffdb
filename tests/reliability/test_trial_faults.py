"""Reliability: a trial that crashes once, crashes every time, or diverges (NaN loss).

Faults come from the trial's hook (avkd/sweep/trial.py, AVKD_FAULT="<kind>:<trial name>[:<attempts>]")
inside real Ray workers; the sweep is the real CLI on the 12-clip corpus, logging to SQLite.
"""

from __future__ import annotations

import csv
import math
import re

import numpy as np
import pytest
import torch

from avkd.config import parse_sweep
from avkd.data.vocab import Vocabulary, tokenize_caption
from avkd.sweep.plan import TrialSpec
from avkd.sweep.trial import _fault_armed, _inject_fault
from avkd.training.data import Split, TrialInputs
from avkd.training.runners import run_teacher

from . import sweep_helpers as H

STUDENT = TrialSpec("student", 0.2, "rep", 0, teacher="t")


# ---- unit level (fast) ------------------------------------------------------------------------------


def test_fault_hook_counts_attempts_and_matches_kind_and_name(tmp_path, monkeypatch):
    """Injected: AVKD_FAULT=crash:student-k0.2-rep-s0:2. Holds: the first two attempts of that trial
    raise and the third does not; another trial and another kind are never hit; without attempts
    a fault fires every time."""
    monkeypatch.setenv("AVKD_FAULT_DIR", str(tmp_path))
    monkeypatch.setenv("AVKD_FAULT", "crash:student-k0.2-rep-s0:2")
    for _ in range(2):
        with pytest.raises(RuntimeError, match="injected fault"):
            _inject_fault(STUDENT, "crash")
    _inject_fault(STUDENT, "crash")  # third attempt: no fault
    assert (tmp_path / "avkd-fault-student-k0.2-rep-s0").read_text() == "2"
    _inject_fault(TrialSpec("student", 0.2, "rep+ce", 0, teacher="t"), "crash")
    assert not _fault_armed(TrialSpec("teacher", 1.0, "ce", 0), "crash")

    monkeypatch.setenv("AVKD_FAULT", "nan:student-k0.2-rep-s0")
    assert not _fault_armed(STUDENT, "crash")
    assert all(_fault_armed(STUDENT, "nan") for _ in range(3))
    monkeypatch.delenv("AVKD_FAULT")
    assert not _fault_armed(STUDENT, "nan")


def _tiny_inputs() -> TrialInputs:
    rng = np.random.default_rng(0)
    words = ["a", "red", "blue", "ball", "cup", "is", "here"]
    splits, refs, toks = {}, {}, {}
    for name, n in (("train", 40), ("validate", 4), ("test", 4)):
        ids = [f"{name}{i}" for i in range(n)]
        splits[name] = Split(
            ids, rng.normal(size=(n, 4)).astype(np.float32), rng.normal(size=(n, 4)).astype(np.float32)
        )
        for v in ids:
            refs[v] = [" ".join(rng.choice(words, 4)) for _ in range(2)]
            toks[v] = [tokenize_caption(r) for r in refs[v]]
    vocab = Vocabulary.build([t for v in splits["train"].video_ids for t in toks[v]])
    return TrialInputs(vocab, toks, refs, splits)


def test_non_finite_loss_stops_training_naming_the_epoch(tmp_path):
    """Injected: a learning rate of inf (what the `nan` fault sets: Adam's first step makes the
    weights inf/NaN). Holds: training stops at the next batch with FloatingPointError naming epoch
    1; no epoch is logged and no checkpoint is written."""
    torch.set_num_threads(1)
    cfg = parse_sweep(
        {
            "name": "t",
            "model": {"embed_dim": 8, "hidden": 16, "layers": 1, "dropout": 0.0},
            "training": {"epochs": 3, "batch_size": 16, "lr": 0.01, "patience": 3},
            "decoding": {"beam_size": 1, "max_len": 6},
            "features": {"device": "cpu"},
        }
    )
    cfg.training.lr = math.inf
    logged = []
    with pytest.raises(FloatingPointError, match=r"training loss is (nan|inf|-inf) at epoch 1 \(batch 2 of \d+\)"):
        run_teacher(cfg, _tiny_inputs(), 0, tmp_path, lambda metrics, step: logged.append(step))
    assert logged == [] and not (tmp_path / "best.pt").exists()


# ---- through the sweep (slow) --------------------------------------------------------------------------


@pytest.fixture
def cache(tiny_corpus, tmp_path, tmp_path_factory):
    return H.copy_cache(H.warm_cache(tiny_corpus, tmp_path_factory), tmp_path / "cache")


def _sweep(tmp_path, corpus, cache, losses, fault: str):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    sweep = H.write_sweep(
        tmp_path, corpus, uri, cache_dir=cache, ks=[0.2], losses=losses, blind=False, resources={"max_failures": 1}
    )
    ray_tmp = H.ray_tmpdir()
    try:
        rc, out, seconds = H.run_sweep(
            sweep, tmp_path, H.sweep_env(ray_tmp, AVKD_FAULT=fault, AVKD_FAULT_DIR=str(tmp_path))
        )
    finally:
        H.remove_ray_tmp(ray_tmp)
    print(f"sweep with AVKD_FAULT={fault}: exit {rc} in {seconds:.1f} s")
    return uri, rc, out


def _failed_run_checks(uri: str, run, error: str) -> None:
    """A FAILED trial run: the error tag and traceback.txt artifact name the error."""
    assert run.info.status == "FAILED"
    assert "traceback.txt" in H.artifact_names(uri, run.info.run_id)
    traceback_text = H.artifact_text(uri, run.info.run_id, "traceback.txt")
    assert re.search(error, traceback_text), traceback_text[-1500:]
    assert re.search(error, run.data.tags.get("avkd.error", "")), run.data.tags.get("avkd.error")


@pytest.mark.slow
def test_crash_that_succeeds_on_retry(tiny_corpus, tmp_path, cache):
    """Injected: AVKD_FAULT=crash:student-k0.2-rep-s0:1 (only the first attempt crashes), with
    resources.max_failures 1. Holds: the sweep exits 0; that config has exactly one FINISHED run
    (all test/* metrics) and one FAILED run whose traceback.txt artifact names the fault; the
    teacher has one FINISHED run."""
    uri, rc, out = _sweep(tmp_path, tiny_corpus, cache, ["rep"], "crash:student-k0.2-rep-s0:1")
    assert rc == 0, out[-4000:]
    by_config = H.check_one_finished_per_config(uri, 2)
    student = next(rs for rs in by_config.values() if rs[0].info.run_name == "student-k0.2-rep-s0")
    assert sorted(r.info.status for r in student) == ["FAILED", "FINISHED"]
    _failed_run_checks(
        uri,
        next(r for r in student if r.info.status == "FAILED"),
        r"RuntimeError: injected fault \(crash:student-k0.2-rep-s0:1\)",
    )
    assert (tmp_path / "avkd-fault-student-k0.2-rep-s0").read_text() == "1"


def _check_permanent_failure(uri: str, rc: int, out: str, tmp_path, name: str, loss: str, error: str) -> None:
    """(b) and (c): `name` FAILED on both attempts, everything else FINISHED, exit 1 with a summary
    naming it, the report shows its cell as missing."""
    assert rc == 1, out[-4000:]
    assert re.search(rf"FAILED {re.escape(name)}: .*{error}", out), out[-3000:]
    runs = H.runs_by_config(H.trial_runs(uri))
    assert len(runs) == 3
    for rs in runs.values():
        if rs[0].info.run_name == name:
            assert len(rs) == 2, [r.info.status for r in rs]  # the first attempt and its one retry
            for r in rs:
                _failed_run_checks(uri, r, error)
        else:
            assert [r.info.status for r in rs] == ["FINISHED"], (rs[0].info.run_name, [r.info.status for r in rs])
            assert all(f"test/{m}" in rs[0].data.metrics for m in H.TEST_METRICS)
    sweep_run = next(r for r in H.all_runs(uri) if r.data.tags.get("avkd.role") == "sweep")
    assert sweep_run.data.tags.get("avkd.failed_trials") == name

    with open(tmp_path / "reports" / "tiny" / "table1.csv", newline="") as fh:
        rows = {(r["role"], r["loss"], r["k"]): r for r in csv.DictReader(fh)}
    cell = rows[("student", loss, "0.2")]
    assert cell["n"] == "0" and cell["score_mean"] == "" and cell["run_ids"] == ""
    assert cell["missing"].startswith("seed 0 FAILED ")
    assert rows[("teacher", "ce", "1")]["score_mean"] != ""
    md = (tmp_path / "reports" / "tiny" / "table1.md").read_text()
    assert f"Missing: student loss={loss} k=0.2 seed 0 is FAILED" in md


@pytest.mark.slow
def test_permanent_crash_is_failed_reported_and_the_rest_finishes(tiny_corpus, tmp_path, cache):
    """Injected: AVKD_FAULT=crash:student-k0.2-rep-s0 (every attempt), max_failures 1.
    Holds: both attempts are FAILED runs with traceback.txt; the teacher and the rep+ce student
    FINISH; the driver exits 1 with a summary line naming the failed config; the parent run's
    avkd.failed_trials tag names it; Table I shows its cell empty and lists it as missing."""
    uri, rc, out = _sweep(tmp_path, tiny_corpus, cache, ["rep", "rep+ce"], "crash:student-k0.2-rep-s0")
    _check_permanent_failure(
        uri, rc, out, tmp_path, "student-k0.2-rep-s0", "rep", r"injected fault \(crash:student-k0.2-rep-s0\)"
    )


@pytest.mark.slow
def test_nan_loss_is_failed_reported_and_the_rest_finishes(tiny_corpus, tmp_path, cache):
    """Injected: AVKD_FAULT=nan:student-k0.2-rep+ce-s0 (the trial's learning rate becomes inf, so
    its loss turns NaN), max_failures 1. Holds: the same as a permanent crash, the error being
    train.py's "FloatingPointError: training loss is nan at epoch 1"."""
    uri, rc, out = _sweep(tmp_path, tiny_corpus, cache, ["rep", "rep+ce"], "nan:student-k0.2-rep+ce-s0")
    _check_permanent_failure(
        uri, rc, out, tmp_path, "student-k0.2-rep+ce-s0", "rep+ce", r"training loss is (nan|inf|-inf) at epoch 1"
    )
