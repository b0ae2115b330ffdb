"""Table I's statistics (avkd/evaluation/score.py) against values computed by hand on small fixed inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from avkd.evaluation import score as S


def test_t_interval_matches_hand_computed_values():
    # n = 3: mean 2, s = 1, t_{0.975, 2} = 4.302653 (table value) -> half-width 4.302653 / sqrt(3)
    i = S.t_interval([1.0, 2.0, 3.0])
    assert (i.n, i.mean) == (3, 2.0)
    assert i.half_width == pytest.approx(4.302653 / math.sqrt(3), abs=1e-6)
    assert (i.low, i.high) == pytest.approx((2.0 - 2.484138, 2.0 + 2.484138), abs=1e-6)
    # n = 2: s = sqrt(2), t_{0.975, 1} = 12.706205 -> half-width 12.706205 * sqrt(2) / sqrt(2)
    assert S.t_interval([1.0, 3.0]).half_width == pytest.approx(12.706205, abs=1e-6)
    # 90 %: t_{0.95, 4} = 2.131847; values 0..4: s = sqrt(2.5)
    assert S.t_interval([0, 1, 2, 3, 4], 0.90).half_width == pytest.approx(
        2.131847 * math.sqrt(2.5) / math.sqrt(5), abs=1e-6
    )


def test_t_interval_with_one_or_no_value_has_no_interval():
    one = S.t_interval([0.4])
    assert (one.n, one.mean, one.half_width, one.low) == (1, 0.4, None, None)
    assert S.t_interval([]) == S.Interval(0, None, None)
    assert S.t_interval([0.3, 0.3, 0.3]).half_width == 0.0


def test_bootstrap_of_identical_scores_has_zero_width_and_is_not_distinguishable():
    scores = {"0": {"a": 0.2, "b": 0.5, "c": 0.9}, "1": {"a": 0.3, "b": 0.4, "c": 0.8}}
    d = S.paired_bootstrap_diff(scores, scores, samples=200)
    assert (d.diff, d.low, d.high) == (0.0, 0.0, 0.0)
    assert not d.distinguishable
    assert (d.seeds, d.videos, d.samples) == (("0", "1"), 3, 200)


def test_bootstrap_of_a_proportional_student_is_exact():
    # Every video of the student scores half the teacher's: every replicate's Diff is exactly 0.5.
    teacher = {"0": {"a": 0.2, "b": 0.6, "c": 1.0}}
    student = {"0": {v: s / 2 for v, s in teacher["0"].items()}}
    d = S.paired_bootstrap_diff(teacher, student, samples=50)
    assert (d.diff, d.low, d.high) == pytest.approx((0.5, 0.5, 0.5))
    assert d.distinguishable


def test_bootstrap_percentiles_at_a_fixed_seed_by_hand():
    """Recompute the replicates with plain loops from the same seeded draws, then the 2.5/97.5 % points
    with the linear rule written out: the vectorised code must agree exactly."""
    teacher = {"0": {"a": 1.0, "b": 0.0, "c": 0.5, "d": 0.8}, "1": {"a": 0.9, "b": 0.1, "c": 0.4, "d": 0.7}}
    student = {"0": {"a": 0.6, "b": 0.2, "c": 0.5, "d": 0.3}, "1": {"a": 0.5, "b": 0.0, "c": 0.6, "d": 0.4}}
    videos, B = ["a", "b", "c", "d"], 7
    draws = np.random.default_rng(3).integers(0, 4, size=(B, 4))
    reps = []
    for row in draws:
        t = sum(teacher[s][videos[i]] for s in ("0", "1") for i in row) / 8
        o = sum(student[s][videos[i]] for s in ("0", "1") for i in row) / 8
        reps.append((t - o) / t)
    reps.sort()

    def linear(p: float) -> float:  # numpy's default percentile: position p/100 * (B - 1)
        pos = p / 100 * (B - 1)
        lo = math.floor(pos)
        return reps[lo] + (reps[min(lo + 1, B - 1)] - reps[lo]) * (pos - lo)

    d = S.paired_bootstrap_diff(teacher, student, samples=B, seed=3)
    assert d.low == pytest.approx(linear(2.5), abs=1e-12) and d.high == pytest.approx(linear(97.5), abs=1e-12)
    t_all = sum(sum(v.values()) for v in teacher.values()) / 8
    o_all = sum(sum(v.values()) for v in student.values()) / 8
    assert d.diff == pytest.approx((t_all - o_all) / t_all)
    assert S.paired_bootstrap_diff(teacher, student, samples=B, seed=3) == d  # deterministic


def test_bootstrap_pairs_seeds_and_common_videos_only():
    teacher = {"0": {"a": 1.0, "b": 1.0}, "1": {"a": 1.0, "b": 1.0}}
    student = {"1": {"a": 0.5, "b": 0.5, "z": 9.0}, "2": {"a": 0.0, "b": 0.0}}
    d = S.paired_bootstrap_diff(teacher, student, samples=20)
    assert d.seeds == ("1",) and d.videos == 2 and d.diff == pytest.approx(0.5)
    assert S.paired_bootstrap_diff(teacher, {"5": {"a": 1.0}}) is None


def test_summarize_rows_intervals_diff_and_attributes():
    def trial(row, seed, scale, attrs=True):
        per_video = {
            v: {"bleu_1": x, "bleu_2": x, "bleu_3": x, "bleu_4": x, "meteor": x, "rouge_l": x, "cider": x}
            for v, x in (("a", 0.4 * scale), ("b", 0.6 * scale))
        }
        metrics = {m: 0.5 * scale for m in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")}
        if attrs:
            metrics["attr/audio"] = 0.5 + 0.1 * int(seed)
        return S.TrialScores(row, seed, metrics, per_video)

    trials = [trial("teacher", s, 1.0) for s in ("0", "1", "2")] + [trial("student", s, 0.5) for s in ("0", "1", "2")]
    trials.append(trial("blind", "0", 1.0, attrs=False))
    out = S.summarize(trials, metrics=["cider"], samples=100)
    assert out["terms"] == ["bleu", "meteor", "rouge_l", "cider"]
    teacher, student, blind = out["rows"]["teacher"], out["rows"]["student"], out["rows"]["blind"]
    assert teacher["n"] == 3 and teacher["diff"] is None
    assert teacher["metrics"]["score"]["mean"] == pytest.approx(0.5) and teacher["metrics"]["score"]["half_width"] == 0
    assert teacher["attributes"]["audio"]["mean"] == pytest.approx(0.6)
    assert teacher["attributes"]["audio"]["half_width"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), abs=1e-6)
    assert student["diff"]["diff"] == pytest.approx(0.5) and student["diff"]["distinguishable"]
    assert blind["attributes"] == {}  # no stored attributes: absent, not zero
    assert blind["metrics"]["score"]["half_width"] is None and blind["diff"]["diff"] == pytest.approx(0.0)
    assert not blind["diff"]["distinguishable"]


def test_attribute_metrics_per_group_and_per_video(tiny_corpus):
    """What a trial logs: attr/<group> means, and each video's accuracy added to its per-video row."""
    from avkd.evaluation.attributes import GROUPS, load_attributes, oracle_caption
    from avkd.training.evaluate import attribute_metrics

    truths = load_attributes(tiny_corpus)
    first, second = sorted(truths)[:2]
    preds = {first: oracle_caption(truths[first]), second: "nothing at all"}
    per_video = {first: {"cider": 1.0}, second: {"cider": 0.0}}
    means = attribute_metrics(preds, truths, per_video)
    assert set(means) == {f"attr/{g}" for g in GROUPS}
    assert all(per_video[first][f"attr/{g}"] == 1.0 for g in GROUPS)  # the oracle states every attribute
    assert per_video[second]["attr/visual_static"] == 0.0 and per_video[first]["cider"] == 1.0
    assert means["attr/visual_static"] == 0.5
    assert attribute_metrics(preds, None, per_video) == {}  # MSR-VTT: no columns, not zeros


def test_bootstrap_is_undefined_when_a_resample_has_a_zero_teacher():
    # The teacher scores 0 on one of two videos: some resamples draw only that video, where Diff is 0/0.
    teacher, student = {"0": {"a": 0.0, "b": 1.0}}, {"0": {"a": 0.5, "b": 0.5}}
    assert S.paired_bootstrap_diff(teacher, student, samples=200) is None
    assert S.paired_bootstrap_diff({"0": {"a": 0.0}}, student) is None
