"""Table I's intervals end to end on a real MLflow store: per-video artifacts written by the real writer,
read back by reports/build.py, and the same numbers as score.summarize computed directly."""

from __future__ import annotations

import csv
import json
import time

import pytest

from avkd.config import parse_sweep
from avkd.evaluation import metrics as M
from avkd.evaluation import score as S
from reports import build
from trackers import mlflow_tracker as mt
from trackers import schema

VIDEOS = [f"video{i}" for i in range(8)]
METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")


def per_video(level: float, seed: int) -> dict[str, dict[str, float]]:
    """Per-video metrics that vary by video (so the bootstrap has something to resample) and a bit by seed."""
    # Rounded to 6 decimals, as per_video_scores.csv stores them.
    return {v: {m: round(level * (0.5 + 0.1 * i) + 0.01 * seed, 6) for m in METRICS} for i, v in enumerate(VIDEOS)}


def log_trial(uri, exp, parent, tmp, role, seed, level, k=1.0, loss="ce", guide=None, attrs=True) -> S.TrialScores:
    pv = per_video(level, seed)
    metrics = {m: sum(s[m] for s in pv.values()) / len(pv) for m in METRICS}
    if attrs:
        metrics.update({f"attr/{g}": min(1.0, level * (0.6 + 0.05 * seed)) for g in ("visual_static", "audio")})
    tags = {
        schema.ROLE: role,
        schema.LOSS: loss,
        schema.K: f"{k:g}",
        schema.SEED: str(seed),
        schema.SWEEP: "ci",
        schema.CONFIG_HASH: f"{role}-{guide}-{loss}-{k}-{seed}",
    }
    if guide:
        tags[schema.GUIDE] = guide
    path = tmp / f"{role}-{guide}-{loss}-{k}-{seed}.csv"
    M.write_per_video(path, {v: "a caption" for v in VIDEOS}, pv)
    with mt.RunLogger(uri, exp, f"{role}-{seed}", tags, parent_run_id=parent) as run:
        run.log_metrics({schema.TEST_PREFIX + n: v for n, v in metrics.items()})
        run.log_artifact(path.rename(path.with_name(schema.ARTIFACT_PER_VIDEO)))
    time.sleep(0.003)
    return S.TrialScores("", str(seed), metrics, pv)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ci")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    exp = mt.ensure_experiment(uri, "ci")
    cfg = parse_sweep(
        {"name": "ci", "grid": {"ks": [0.2], "losses": ["rep"], "seeds": [0, 1, 2], "bootstrap_samples": 300}}
    )
    sweep = mt.RunLogger(uri, exp, "sweep-ci", {schema.ROLE: "sweep", schema.SWEEP: "ci"}, cfg.flat())
    p, logged = sweep.run_id, {}
    for seed in (0, 1, 2):
        for row, kwargs in (
            ("teacher", dict(role="teacher", level=1.0)),
            ("modality-audio", dict(role="guide", guide="audio", level=0.5)),
            ("student-k0.2-rep", dict(role="student", loss="rep", k=0.2, level=1.0)),
        ):
            folder = tmp / f"{row}-{seed}"
            folder.mkdir()
            t = log_trial(uri, exp, p, folder, seed=seed, **kwargs)
            logged.setdefault(row, []).append(S.TrialScores(row, t.seed, t.metrics, t.per_video))
    folder = tmp / "blind"
    folder.mkdir()
    t = log_trial(uri, exp, p, folder, role="blind", seed=0, level=0.2, attrs=False)
    logged["blind"] = [S.TrialScores("blind", t.seed, t.metrics, t.per_video)]
    sweep.close()
    index = build.build_report(uri, experiment="ci", out=tmp / "out", show=False)
    return {"folder": index.parent, "logged": logged, "uri": uri}


def test_summary_json_is_score_summarize_of_what_was_logged(report):
    summary = json.loads((report["folder"] / "summary.json").read_text())
    trials = [t for ts in report["logged"].values() for t in ts]
    direct = S.summarize(trials, metrics=schema.TABLE1_METRICS, samples=300)
    assert summary == json.loads(json.dumps(direct))
    assert summary["bootstrap"] == {"samples": 300, "seed": 0}


def test_table1_intervals_markers_modality_rows_and_attributes(report):
    rows = {r["row"]: r for r in csv.DictReader(open(report["folder"] / "table1.csv", encoding="utf-8"))}
    assert list(rows) == ["L_rep student (k = 0.2)", "Teacher", "Audio-only teacher ‡", "Blind baseline †"]
    student, audio, blind = rows["L_rep student (k = 0.2)"], rows["Audio-only teacher ‡"], rows["Blind baseline †"]
    # The student logged exactly the teacher's per-video scores: Diff 0, zero-width interval, not distinguishable.
    assert float(student["diff_ci95_low"]) == float(student["diff_ci95_high"]) == 0.0
    assert student["distinguishable"] == "false"
    # Audio-only at half the teacher's level: Diff about 50 %, clearly distinguishable.
    assert (
        40 < float(audio["diff_ci95_low"]) <= float(audio["diff_ci95_high"]) < 60 and audio["distinguishable"] == "true"
    )
    assert audio["n"] == "3" and float(audio["score_ci95"]) > 0
    # Attribute columns: present (stored attributes), the blind row (logged none) empty, not zero.
    assert float(rows["Teacher"]["attr_audio_mean"]) == pytest.approx(0.65)
    assert blind["attr_audio_mean"] == "" and blind["score_ci95"] == ""
    md = (report["folder"] / "table1.md").read_text()
    assert "Attr: visual static" in md and "Diff 95 % CI" in md
    assert "[0.0, 0.0] ≈" in md
    assert "Fewer than 3 seeds in Blind baseline † (n = 1)" in md
    assert "not distinguishable from the teacher" in md and "over the 8 test videos" in md
    assert (
        "From the Diff intervals (not by eye): below the teacher: Audio-only teacher ‡, Blind baseline †; "
        "not distinguishable from "
        "the teacher: L_rep student (k = 0.2)."
    ) in md


def test_tables_without_attributes_have_no_attribute_columns(report, tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = mt.ensure_experiment(uri, "msrvtt")
    cfg = parse_sweep({"name": "msrvtt", "grid": {"ks": [0.2], "losses": ["rep"], "seeds": [0]}})
    sweep = mt.RunLogger(uri, exp, "sweep", {schema.ROLE: "sweep", schema.SWEEP: "msrvtt"}, cfg.flat())
    log_trial(uri, exp, sweep.run_id, tmp_path, role="teacher", seed=0, level=1.0, attrs=False)
    sweep.close()
    folder = build.build_report(uri, experiment="msrvtt", out=tmp_path / "out", show=False).parent
    assert "Attr" not in (folder / "table1.md").read_text()
    assert not any(h.startswith("attr_") for h in next(csv.reader(open(folder / "table1.csv", encoding="utf-8"))))
