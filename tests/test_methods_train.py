"""Each method trained end to end (tiny latents, a few epochs): guides, mentor, students, early exit."""

import json

import numpy as np
import pytest
import torch

from avkd.config import parse_sweep
from avkd.data.vocab import Vocabulary, tokenize_caption
from avkd.errors import DataError
from avkd.models.captioner import load_checkpoint
from avkd.training.data import Split, TrialInputs
from avkd.training.runners import run_student, run_teacher

torch.set_num_threads(1)
COLOURS, OBJECTS = ["red", "green", "blue"], ["ball", "car", "cup"]


def make_inputs(n=(30, 8, 8), dim=6, seed=0):
    """Teacher / student (k) / mentor variants; the colour is in the visual latent, the object in the audio one."""
    rng = np.random.default_rng(seed)
    variants = {"teacher": {}, "student": {}, "mentor": {}}
    refs, toks = {}, {}
    for name, count in zip(("train", "validate", "test"), n):
        ids = [f"{name}{i}" for i in range(count)]
        colour, obj = rng.integers(0, 3, count), rng.integers(0, 3, count)
        audio = rng.normal(scale=0.3, size=(count, dim)).astype(np.float32)
        visual = rng.normal(scale=0.3, size=(count, dim)).astype(np.float32)
        visual[np.arange(count), colour] += 3.0
        audio[np.arange(count), obj] += 3.0
        for variant, noise in (("teacher", 0.0), ("mentor", 0.3), ("student", 0.8)):
            a = audio + rng.normal(scale=noise, size=audio.shape).astype(np.float32)
            v = visual + rng.normal(scale=noise, size=visual.shape).astype(np.float32)
            variants[variant][name] = Split(ids, a, v)
        for i, vid in enumerate(ids):
            refs[vid] = [
                f"a {COLOURS[colour[i]]} {OBJECTS[obj[i]]} is moving",
                f"the {OBJECTS[obj[i]]} is {COLOURS[colour[i]]}",
            ]
            toks[vid] = [tokenize_caption(r) for r in refs[vid]]
    vocab = Vocabulary.build([t for v in variants["teacher"]["train"].video_ids for t in toks[v]])
    make = lambda variant, **kw: TrialInputs(vocab, toks, refs, variants[variant], **kw)
    return make, variants


def config():
    return parse_sweep(
        {
            "name": "m",
            "model": {
                "embed_dim": 16,
                "hidden": 32,
                "layers": 2,
                "dropout": 0.0,
                "early_exit": {"enabled": True, "thresholds": [1.0, 0.3]},
            },
            "training": {"epochs": 6, "batch_size": 16, "lr": 0.01, "patience": 6},
            "distill": {
                "mlp": {"hidden": [32, 32], "dropout": 0.0},
                "losses": {
                    "fused_to_modal": [{"name": "ce"}, {"name": "modal_kl", "weight": 0.5}],
                    "multi_teacher": [
                        {"name": "ce"},
                        {"name": "kd_aggregate", "weight": 0.1},
                        {"name": "aggregate_ce"},
                    ],
                    "multi_stage": [
                        {"name": "ce"},
                        {"name": "rep_l1"},
                        {"name": "kd_mentor", "weight": 0.5},
                        {"name": "kd_teacher", "weight": 0.25},
                    ],
                },
                "methods": {"multi_teacher": {"share_encoder_with": "teacher"}, "multi_stage": {"mentor_k": 0.8}},
            },
            "grid": {"ks": [0.2], "losses": ["fused_to_modal", "multi_teacher", "multi_stage"]},
            "decoding": {"beam_size": 2, "max_len": 8},
            "features": {"device": "cpu"},
        }
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("methods")
    make, variants = make_inputs()
    cfg = config()
    quiet = lambda m, s: None
    r = {}
    r["teacher"] = run_teacher(cfg, make("teacher"), 0, out / "teacher", quiet)
    for modality in ("audio", "visual"):
        r[modality] = run_teacher(cfg, make("teacher"), 0, out / modality, quiet, modality=modality)
    teacher_ck = r["teacher"].checkpoint
    r["mentor"] = run_student(
        cfg,
        make("mentor", teacher_features=variants["teacher"]),
        "multi_stage",
        teacher_ck,
        0,
        out / "mentor",
        quiet,
        guide="mentor",
    )
    student = lambda **kw: make("student", teacher_features=variants["teacher"], **kw)
    r["fused_to_modal"] = run_student(cfg, student(), "fused_to_modal", teacher_ck, 0, out / "f2m", quiet)
    r["multi_teacher"] = run_student(
        cfg,
        student(guide_features={"audio": variants["teacher"], "visual": variants["teacher"]}),
        "multi_teacher",
        teacher_ck,
        0,
        out / "mt",
        quiet,
        guide_checkpoints={"audio": r["audio"].checkpoint, "visual": r["visual"].checkpoint},
    )
    r["multi_stage"] = run_student(
        cfg,
        student(guide_features={"mentor": variants["mentor"]}),
        "multi_stage",
        teacher_ck,
        0,
        out / "ms",
        quiet,
        guide_checkpoints={"mentor": r["mentor"].checkpoint},
    )
    return cfg, make, variants, r


def test_every_method_trains_and_is_evaluated(trained):
    _, _, _, r = trained
    for name, result in r.items():
        assert {"bleu_4", "cider", "score"} <= set(result.test_metrics), name
        assert result.extra_metrics["test/decode_s_per_video"] > 0
    terms = lambda name: set(r[name].history[0])
    assert {"train/ce", "train/modal_kl", "train/exit_ce"} <= terms("fused_to_modal")
    assert {"train/kd_aggregate", "train/aggregate_ce", "train/aggregate_w/audio"} <= terms("multi_teacher")
    assert {"train/kd_mentor", "train/kd_teacher", "train/rep_l1"} <= terms("multi_stage")
    assert {"train/ce", "train/kd_teacher"} <= terms("mentor") and "train/kd_mentor" not in terms("mentor")
    # The visual-only and audio-only teachers each miss half of every caption: the AV teacher beats both.
    for single in ("audio", "visual"):
        assert r["teacher"].test_metrics["cider"] > r[single].test_metrics["cider"], single


def test_aggregation_weights_are_saved_and_normalised(trained):
    _, _, _, r = trained
    _, _, info = load_checkpoint(r["multi_teacher"].checkpoint)
    weights = info["aggregate_weights"]
    assert list(weights) == ["teacher", "audio", "visual"] and sum(weights.values()) == pytest.approx(1.0)
    assert weights != pytest.approx({"teacher": 1 / 3, "audio": 1 / 3, "visual": 1 / 3})  # they did learn
    assert info["guides"]["audio"] == str(r["audio"].checkpoint)


def test_shared_encoder_stayed_the_teachers(trained):
    _, _, _, r = trained
    teacher, _, _ = load_checkpoint(r["teacher"].checkpoint)
    student, _, _ = load_checkpoint(r["multi_teacher"].checkpoint)
    other, _, _ = load_checkpoint(r["multi_stage"].checkpoint)
    for name in ("latent_to_hidden", "latent_to_input"):
        assert torch.equal(getattr(student.decoder, name).weight, getattr(teacher.decoder, name).weight)
        assert not torch.equal(getattr(other.decoder, name).weight, getattr(teacher.decoder, name).weight)


def test_checkpoints_reload_with_their_pieces(trained):
    cfg, _, variants, r = trained
    model, vocab, info = load_checkpoint(r["fused_to_modal"].checkpoint)
    assert type(model.mlp).__name__ == "ModalBranches" and info["mode"] == "fused_to_modal"
    test = variants["student"]["test"]
    caps = model.caption(test.audio, test.visual, vocab, cfg.decoding.beam_size, cfg.decoding.max_len)
    assert caps == [c["caption"] for c in json.loads(r["fused_to_modal"].captions_path.read_text())]
    audio, _, info = load_checkpoint(r["audio"].checkpoint)
    assert audio.modality == "audio" and info["modality"] == "audio" and len(audio.decoder.exits) == 1
    _, _, info = load_checkpoint(r["mentor"].checkpoint)
    assert info["kind"] == "mentor"


def test_early_exit_metrics_per_threshold(trained):
    _, _, _, r = trained
    for name, result in r.items():
        m, test = result.extra_metrics, result.test_metrics
        # threshold 1.0 never exits: the same captions as the full decoder, so the same scores
        assert m["ee/t1/exit_rate"] == 0.0 and m["ee/t1/mean_layers"] == 2.0
        for metric in ("bleu_4", "cider", "meteor", "score"):
            assert m[f"ee/t1/{metric}"] == pytest.approx(test[metric]), (name, metric)
        assert 0.0 <= m["ee/t0.3/exit_rate"] <= 1.0 and m["ee/t0.3/decode_s_per_video"] > 0
    assert max(result.extra_metrics["ee/t0.3/exit_rate"] for result in r.values()) > 0.5  # a low threshold exits


def test_missing_guide_is_a_clear_error(trained, tmp_path):
    cfg, make, variants, r = trained
    inputs = make("student", teacher_features=variants["teacher"])
    with pytest.raises(DataError, match="student 'multi_stage': guide 'mentor' is missing"):
        run_student(cfg, inputs, "multi_stage", r["teacher"].checkpoint, 0, tmp_path, lambda m, s: None)
