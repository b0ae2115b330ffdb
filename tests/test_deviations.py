"""reports/deviations.py: the report's notes on where the run shown differs from the paper, for a
random-weights demo run, a pretrained run with the paper's settings, and the cases in between; and
build.py appending them to a real report read from MLflow."""

from __future__ import annotations

import re
from pathlib import Path

from avkd.config import load_sweep, parse_sweep
from reports import build, deviations
from trackers import mlflow_tracker as mt
from trackers import schema

REPO = Path(__file__).resolve().parents[1]
NO_SPICE = ["bleu", "meteor", "rouge_l", "cider"]
WITH_SPICE = [*NO_SPICE, "spice"]


def topics(notes: list[str]) -> list[str]:
    found = [re.fullmatch(r"Paper deviation \(([^)]+)\): .+", n, re.S) for n in notes]
    assert all(found), notes
    return [m.group(1) for m in found]


def config(path: str, **changes) -> dict:
    d = load_sweep(REPO / path).to_dict()
    for key, value in changes.items():
        section, name = key.split("__")
        d[section][name] = value
    return parse_sweep(d, path).to_dict()


# The demo's settings with the Cnn14 audio backbone and PANNs' pooling (a run that deviates in every way
# a CPU demo can): the default demo now uses the paper's Cnn10 + mean.
CNN14 = {"features__audio_model": "cnn14", "features__audio_time_pool": "panns"}


def demo_tags() -> dict:
    return schema.weights_tags({"inception": "random", "cnn14": "random", "fingerprint": "x"})


def paper_tags() -> dict:
    return schema.weights_tags({"inception": "pretrained", "cnn10": "pretrained"})


def test_random_weights_demo_run():
    notes = deviations.deviation_notes(config("sweeps/demo.yaml", **CNN14), demo_tags(), NO_SPICE)
    assert topics(notes) == [
        "data",
        "backbone weights",
        "audio model",
        "image size",
        "latent size",
        "language model size",
        "student decoder",
        "SPICE",
    ]
    text = dict(zip(topics(notes), notes))
    assert "Inception-v3" in text["backbone weights"] and "Cnn14" in text["backbone weights"]
    assert "inception=random,cnn14=random" in text["backbone weights"]
    assert "Cnn14 with PANNs' own max + mean over time" in text["audio model"]
    assert "128 x 128" in text["image size"] and "299 x 299" in text["image size"]
    assert "2048 (visual) + 2048 (cnn14) = 4096" in text["latent size"] and "2560" in text["latent size"]
    assert "GRU hidden size 256, word embedding 128" in text["language model size"]
    assert "students of rep, rep+ce start with a copy" in text["student decoder"]
    assert "mean(BLEU-1..4), METEOR, ROUGE-L, CIDEr" in text["SPICE"]


def test_same_notes_from_the_runs_mlflow_params():
    """The params fallback (flattened, every value a string, '+' in keys replaced) gives the same notes."""
    cfg = load_sweep(REPO / "sweeps/demo.yaml")
    params = {re.sub(r"[^\w\-. :/]", "_", k): str(v) for k, v in cfg.flat().items()}
    text = "\n".join(f"{k}: {v}" for k, v in sorted(params.items()))
    assert deviations.deviation_notes(
        deviations.parse_config(text), demo_tags(), NO_SPICE
    ) == deviations.deviation_notes(cfg.to_dict(), demo_tags(), NO_SPICE)


def test_pretrained_paper_config_lists_no_weights_deviation():
    notes = deviations.deviation_notes(config("sweeps/paper.yaml"), paper_tags(), WITH_SPICE)
    assert topics(notes) == ["student decoder"]  # paper.yaml keeps the default init_from_teacher: true
    off = config("sweeps/paper.yaml", distill__init_from_teacher=False)
    assert deviations.deviation_notes(off, paper_tags(), WITH_SPICE) == []


def test_pretrained_weights_with_demo_settings():
    notes = deviations.deviation_notes(
        config("sweeps/demo.yaml", **CNN14),
        schema.weights_tags({"inception": "pretrained", "cnn14": "pretrained"}),
        WITH_SPICE,
    )
    assert "backbone weights" not in topics(notes) and "SPICE" not in topics(notes)
    assert "audio model" in topics(notes)


def test_mixed_weights_name_the_random_backbone_only():
    tags = schema.weights_tags({"inception": "pretrained", "cnn10": "random"})
    (note,) = [n for n in deviations.deviation_notes(config("sweeps/paper.yaml"), tags) if "weights" in n]
    assert "PANNs Cnn10" in note and "Inception-v3" not in note
    missing = deviations.deviation_notes(config("sweeps/paper.yaml"), {})
    assert "backbone weights" in topics(missing) and "no avkd.weights_detail tag" in missing[0]


def test_feature_options_and_the_scratch_ablation():
    c = config(
        "sweeps/paper.yaml", features__simpf_renorm=True, features__max_frames=16, features__audio_time_pool="panns"
    )
    c["grid"]["losses"] = ["rep+ce", "rep+ce-scratch"]
    notes = deviations.deviation_notes(c, paper_tags(), WITH_SPICE)
    text = dict(zip(topics(notes), notes))
    assert set(text) == {"audio model", "teacher frames", "SimPF scale", "student decoder"}
    assert "Cnn10 with PANNs' own max + mean" in text["audio model"]  # no latent-size note: still 512-d
    assert "students of rep+ce start" in text["student decoder"]
    assert "rep+ce-scratch train theirs from scratch" in text["student decoder"]
    avg = config("sweeps/paper.yaml", features__audio_pool="avg")
    assert "audio compression" in topics(deviations.deviation_notes(avg, paper_tags(), WITH_SPICE))
    assert "SPICE" not in topics(deviations.deviation_notes(avg, {**paper_tags(), schema.SCORE_METRICS: "bleu,spice"}))
    assert "SPICE" in topics(deviations.deviation_notes(avg, {**paper_tags(), schema.SCORE_METRICS: "bleu,cider"}))


def test_report_built_from_mlflow_carries_the_notes(tmp_path):
    """A real MLflow store: a demo sweep run (config artifact, weights tags) and one finished teacher run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = mt.ensure_experiment(uri, "demo")
    cfg = parse_sweep(config("sweeps/demo.yaml", **CNN14), "demo")
    with mt.RunLogger(
        uri, exp, "sweep-demo", {schema.ROLE: "sweep", schema.SWEEP: "demo", **demo_tags()}, cfg.flat()
    ) as sweep:
        sweep.log_dict(cfg.to_dict(), schema.ARTIFACT_CONFIG)
        tags = {
            schema.ROLE: "teacher",
            schema.LOSS: "ce",
            schema.K: "1",
            schema.SEED: "0",
            schema.SWEEP: "demo",
            schema.CONFIG_HASH: "t0",
        }
        with mt.RunLogger(uri, exp, "teacher-s0", tags, parent_run_id=sweep.run_id) as run:
            run.log_metrics(
                {f"test/{m}": 0.5 for m in ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider")}
            )
    report = build.load_report(uri, "demo")
    assert report.table1.notes[-8:] == deviations.deviation_notes(cfg.to_dict(), demo_tags(), NO_SPICE)
    assert sum(n.startswith(deviations.PREFIX) for n in report.table1.notes) == 8
