"""What makes the default study cheap, without changing what it measures: the phase clock, caption
pairs per epoch, which cells the Optuna search covers; and the trial identities they must not move."""

import time

import numpy as np
import pytest
from test_train import config, make_inputs

from avkd.clock import PhaseClock, phase
from avkd.config import load_sweep, parse_sweep
from avkd.errors import ConfigError
from avkd.sweep.plan import STUDENT, TrialSpec, plan_trials, trial_identity
from avkd.sweep.tune import tuned_cell
from avkd.training.loop import epoch_pairs, pair_batches
from trackers import schema


def test_phase_clock_times_are_exclusive_and_named_by_the_schema():
    clock = PhaseClock()
    with clock:
        with phase("test_metrics"):
            time.sleep(0.02)
            with phase("meteor_start"):
                time.sleep(0.05)
        with phase("epochs"):
            time.sleep(0.01)
        with phase("epochs"):
            time.sleep(0.01)
    with phase("epochs"):  # no active clock: not timed anywhere
        time.sleep(0.05)
    s = clock.seconds
    assert list(s) == ["meteor_start", "test_metrics", "epochs"]
    assert 0.05 <= s["meteor_start"] < 0.1
    assert 0.02 <= s["test_metrics"] < 0.05  # the nested JVM start is not counted twice
    assert 0.02 <= s["epochs"] < 0.05
    m = clock.metrics()
    assert m["time/epochs_s"] == s["epochs"] and m["time/total_s"] >= sum(s.values())
    assert clock.lines()[-1].startswith("total") and any(line.startswith("other") for line in clock.lines())


def test_phase_clock_names_the_innermost_phase_an_exception_left():
    """The interrupted summary's "stopped in the <phase> phase": the phase the signal's exception left,
    not a clean-up phase that ran afterwards (ray_stop runs in a finally)."""
    clock = PhaseClock()
    stop = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        try:
            with clock.phase("trials_teachers"), clock.phase("inner"):
                raise stop
        finally:
            with clock.phase("ray_stop"):
                pass
    assert clock.raised is stop and clock.raised_in == "inner"
    with pytest.raises(ValueError), clock.phase("report"):
        raise ValueError("a later, different exception")
    assert clock.raised_in == "report"


def test_phase_metric_names_are_valid_and_never_read_as_table_ii():
    assert schema.phase_time_metric("trials_tune k=0.2 rep+ce") == "time/trials_tune_k_0.2_rep_ce_s"
    for name in ("corpus", "features", "timing", "trials_teachers", "data", "epochs", "validation", "total"):
        assert schema.parse_time_metric(schema.phase_time_metric(name)) is None


def test_epoch_pairs_take_a_fresh_few_captions_of_every_video():
    rows = np.repeat(np.arange(6), [20, 20, 3, 20, 1, 20])
    rng = np.random.default_rng(0)
    assert (
        epoch_pairs(rows, None, rng) is None and rng.bit_generator.state == np.random.default_rng(0).bit_generator.state
    )
    first = epoch_pairs(rows, 4, rng)
    counts = np.bincount(rows[first], minlength=6)
    assert counts.tolist() == [4, 4, 3, 4, 1, 4] and len(set(first.tolist())) == len(first)
    second = epoch_pairs(rows, 4, rng)
    assert not np.array_equal(first, second)  # a fresh sample each epoch
    seen = set()
    for _ in range(40):
        seen |= set(epoch_pairs(rows, 4, rng).tolist())
    assert seen == set(range(len(rows)))  # every caption is seen over the epochs
    batches = pair_batches(np.ones(len(rows)), 8, rng, pairs=first)
    assert sorted(np.concatenate([b.numpy() for b in batches]).tolist()) == first.tolist()


def test_training_on_a_few_captions_per_epoch_learns(tmp_path):
    from avkd.training.runners import run_teacher

    teacher_in, _ = make_inputs()
    calls = []
    r = run_teacher(config(captions_per_video=1, epochs=20), teacher_in, 0, tmp_path, lambda m, s: calls.append(m))
    blind = run_teacher(
        config(captions_per_video=1, epochs=20), teacher_in, 0, tmp_path / "b", lambda m, s: None, blind=True
    )
    assert r.test_metrics["score"] > blind.test_metrics["score"]
    assert len(calls) == len(r.history) >= 2


def test_captions_per_video_is_checked_and_its_default_keeps_identities():
    with pytest.raises(ConfigError, match="training.captions_per_video"):
        parse_sweep({"name": "x", "training": {"captions_per_video": 0}}, "x.yaml")
    base = parse_sweep({"name": "x"}, "x.yaml")
    d = base.to_dict()
    del d["training"]["captions_per_video"]  # as a config written before the option existed
    spec = TrialSpec("teacher", 1.0, "ce", 0)
    assert trial_identity(base, spec, "fp") == trial_identity(parse_sweep(d, "x.yaml"), spec, "fp")
    few = parse_sweep({"name": "x", "training": {"captions_per_video": 4}}, "x.yaml")
    assert trial_identity(few, spec, "fp") != trial_identity(base, spec, "fp")


def test_tune_cells_limit_the_search_and_must_be_in_the_grid():
    cfg = parse_sweep(
        {
            "name": "x",
            "grid": {"ks": [0.2, 0.6], "losses": ["rep", "rep+ce"]},
            "tune": {"num_samples": 2, "ks": [0.2], "losses": ["rep+ce"]},
        },
        "x.yaml",
    )
    _, _, students = plan_trials(cfg, "fp")
    searched = [s for s in students if tuned_cell(cfg, s)]
    assert [(s.k, s.method) for s in searched] == [(0.2, "rep+ce")] and all(s.role == STUDENT for s in students)
    every = parse_sweep({"name": "x", "tune": {"num_samples": 2}}, "x.yaml")
    assert all(tuned_cell(every, s) for s in plan_trials(every, "fp")[2])
    with pytest.raises(ConfigError, match=r"tune.ks\[0\]"):
        parse_sweep({"name": "x", "grid": {"ks": [0.2]}, "tune": {"ks": [0.4]}}, "x.yaml")
    with pytest.raises(ConfigError, match=r"tune.losses\[0\]"):
        parse_sweep({"name": "x", "tune": {"losses": ["nope"]}}, "x.yaml")


def test_demo_study_has_three_seeds_and_a_small_search(repo_root):
    cfg = load_sweep(repo_root / "sweeps" / "demo.yaml")
    assert len(cfg.grid.seeds) >= 3 and cfg.tune is not None and cfg.tune.num_samples <= 8
    teachers, _, students = plan_trials(cfg, "fp")
    cells = {(s.k, s.method) for s in students if tuned_cell(cfg, s)}
    assert 1 <= len(cells) <= 2  # a search on one or two cells; the others train with the file's settings
    assert {(s.k, s.method) for s in students} == {(k, m) for k in (0.2, 0.4, 0.6, 0.8) for m in ("rep", "rep+ce")}


def test_reference_tokenisation_runs_once_per_process_and_is_the_same():
    from avkd.evaluation.metrics import ptb_tokenize, ptb_tokenize_refs

    refs = {"v1": ["A man, talking!", "a person speaks"], "v2": ["Don't stop."]}
    first = ptb_tokenize_refs(refs)
    assert first == ptb_tokenize(refs)
    assert ptb_tokenize_refs({"v1": list(refs["v1"]), "v2": list(refs["v2"])}) is first  # no second JVM


def test_table1_marks_the_tuned_cells():
    from reports.model import Row, Trial

    def trial(tuned):
        return Trial("r", "student", "rep+ce", 0.2, "0", "h", "FINISHED", 0, None, {}, tuned=tuned)

    assert (
        Row("student", "rep+ce", 0.2, trials=[trial(True), trial(True)]).label
        == "L_rep + L_CE student (k = 0.2) (tuned)"
    )
    assert Row("student", "rep+ce", 0.2, trials=[trial(False)]).label == "L_rep + L_CE student (k = 0.2)"
