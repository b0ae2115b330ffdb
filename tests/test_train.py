"""Trial training end to end on tiny synthetic latents whose captions depend on the latent."""

import csv
import json

import numpy as np
import pytest
import torch

from avkd.config import parse_sweep
from avkd.data.vocab import Vocabulary, tokenize_caption
from avkd.errors import ConfigError, DataError
from avkd.models.captioner import load_checkpoint
from avkd.training.data import Split, TrialInputs
from avkd.training.loop import pair_batches
from avkd.training.runners import run_student, run_teacher

torch.set_num_threads(1)

COLOURS = ["red", "green", "blue", "yellow"]
OBJECTS = ["ball", "car", "cup"]
TEMPLATES = ["a {c} {o} is moving", "there is a {c} {o}", "the {o} is {c}", "a {c} {o} rolls on the table"]


def make_inputs(n=(40, 12, 12), dim=8, seed=0):
    """(teacher inputs, student inputs). The colour lives in the visual latent, the object in the audio one.

    Teacher features are badly scaled on purpose (as random-weight backbones give); the student's
    are a noisy random mixing of the teacher's, so an MLP can map them back.
    """
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(2 * dim, 2 * dim)).astype(np.float32)
    teacher, student, refs, toks = {}, {}, {}, {}
    for name, count in zip(("train", "validate", "test"), n):
        ids = [f"{name}{i}" for i in range(count)]
        colour, obj = rng.integers(0, len(COLOURS), count), rng.integers(0, len(OBJECTS), count)
        audio = rng.normal(scale=0.3, size=(count, dim)).astype(np.float32)
        visual = rng.normal(scale=0.3, size=(count, dim)).astype(np.float32)
        visual[np.arange(count), colour] += 3.0
        audio[np.arange(count), obj] += 3.0
        teacher[name] = Split(ids, audio * 50 + 7, visual * 0.01)
        mixed = np.concatenate([audio, visual], 1) @ mix + rng.normal(scale=0.5, size=(count, 2 * dim))
        student[name] = Split(ids, mixed[:, :dim].astype(np.float32), mixed[:, dim:].astype(np.float32))
        for i, v in enumerate(ids):
            refs[v] = [TEMPLATES[(j + i) % 4].format(c=COLOURS[colour[i]], o=OBJECTS[obj[i]]) for j in range(4)]
            toks[v] = [tokenize_caption(r) for r in refs[v]]
    vocab = Vocabulary.build([t for v in teacher["train"].video_ids for t in toks[v]])
    return (TrialInputs(vocab, toks, refs, teacher), TrialInputs(vocab, toks, refs, student, teacher_features=teacher))


def config(**training):
    return parse_sweep(
        {
            "name": "t",
            "model": {"embed_dim": 32, "hidden": 64, "layers": 2, "dropout": 0.1},
            "training": {"epochs": 12, "batch_size": 32, "lr": 0.005, "patience": 4, **training},
            "distill": {"mlp": {"hidden": [64, 64], "dropout": 0.0}, "rep_epochs": 15},
            "decoding": {"beam_size": 3, "max_len": 10},
            "features": {"device": "cpu"},
        }
    )


class Log:
    def __init__(self):
        self.calls = []

    def __call__(self, metrics, step):
        self.calls.append((step, dict(metrics)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("trials")
    teacher_in, student_in = make_inputs()
    cfg = config()
    results, logs = {}, {}
    for name in ("teacher", "blind"):
        logs[name] = Log()
        results[name] = run_teacher(cfg, teacher_in, 0, out / name, logs[name], blind=(name == "blind"))
    for mode in ("rep", "rep+ce"):
        logs[mode] = Log()
        results[mode] = run_student(cfg, student_in, mode, results["teacher"].checkpoint, 0, out / mode, logs[mode])
    return cfg, teacher_in, student_in, results, logs


def test_teacher_beats_blind_baseline(trained):
    _, _, _, results, _ = trained
    teacher, blind = results["teacher"].test_metrics, results["blind"].test_metrics
    assert teacher["cider"] > blind["cider"] + 1.0
    assert teacher["score"] > blind["score"]


def test_students_learn_from_the_teacher_latent_space(trained):
    _, _, _, results, _ = trained
    blind = results["blind"].test_metrics["cider"]
    for mode in ("rep", "rep+ce"):
        assert results[mode].test_metrics["cider"] > blind + 1.0, mode


def test_result_files_and_metrics(trained):
    _, teacher_in, _, results, _ = trained
    test_ids = teacher_in.features["test"].video_ids
    for r in results.values():
        assert set(r.test_metrics) >= {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider", "score"}
        assert r.score_metrics[:4] == ["bleu", "meteor", "rouge_l", "cider"]
        caps = json.loads(r.captions_path.read_text())
        assert [c["video_id"] for c in caps] == test_ids and all(isinstance(c["caption"], str) for c in caps)
        rows = list(csv.DictReader(r.per_video_path.open()))
        assert [row["video_id"] for row in rows] == test_ids and "cider" in rows[0]
        assert r.checkpoint == r.captions_path.parent / "best.pt" and r.checkpoint.is_file() and r.decode_s > 0
        assert r.val_best == max(h["val/cider"] for h in r.history if "val/cider" in h)


def test_one_log_call_per_epoch(trained):
    _, _, _, results, logs = trained
    for name, r in results.items():
        steps = [s for s, _ in logs[name].calls]
        assert steps == list(range(1, len(steps) + 1)) == [h["epoch"] for h in r.history]
    teacher_first = logs["teacher"].calls[0][1]
    assert {"train/loss", "train/ce", "val/cider", "val/bleu_4"} <= set(teacher_first)
    rep = [m for _, m in logs["rep"].calls]
    # rep's two stages log apart (train/stage<n>/...), so neither curve jumps between objectives
    assert "train/stage1/rep_l1" in rep[0] and "val/rep_l1" in rep[0] and "train/stage1/ce" not in rep[0]
    assert "train/stage2/ce" in rep[-1] and "val/cider" in rep[-1] and "train/loss" not in rep[-1]
    assert "train/rep_l1" in results["rep"].history[0]  # the trial's own history keeps the plain names
    joint = logs["rep+ce"].calls[0][1]
    assert {"train/ce", "train/rep_l1", "val/cider", "val/rep_l1"} <= set(joint)


def test_checkpoint_reloads_and_captions_the_same(trained):
    cfg, teacher_in, student_in, results, _ = trained
    for name, inputs in (("teacher", teacher_in), ("rep+ce", student_in)):
        model, vocab, info = load_checkpoint(results[name].checkpoint)
        test = inputs.features["test"]
        caps = model.caption(test.audio, test.visual, vocab, cfg.decoding.beam_size, cfg.decoding.max_len)
        saved = [c["caption"] for c in json.loads(results[name].captions_path.read_text())]
        assert caps == saved
        assert info["best_epoch"] == results[name].best_epoch
    model, _, _ = load_checkpoint(results["teacher"].checkpoint)
    train = np.concatenate([teacher_in.features["train"].audio, teacher_in.features["train"].visual], 1)
    np.testing.assert_allclose(model.mean.numpy(), train.mean(0), rtol=1e-5)  # standardised on train only
    np.testing.assert_allclose(model.std.numpy(), train.std(0), rtol=1e-4)


def test_same_seed_same_result_and_test_split_never_selects(tmp_path):
    teacher_in, _ = make_inputs(n=(16, 6, 6), seed=1)
    cfg = config(epochs=4, patience=2)
    a = run_teacher(cfg, teacher_in, 7, tmp_path / "a", lambda m, s: None)
    b = run_teacher(cfg, teacher_in, 7, tmp_path / "b", lambda m, s: None)
    assert a.captions_path.read_text() == b.captions_path.read_text()
    assert a.test_metrics == b.test_metrics and a.history[-1]["train/loss"] == b.history[-1]["train/loss"]
    # Changing only the test split's references must not change which epoch is selected.
    refs = dict(teacher_in.references)
    for v in teacher_in.features["test"].video_ids:
        refs[v] = ["something else entirely"]
    other = TrialInputs(teacher_in.vocab, teacher_in.captions, refs, teacher_in.features)
    c = run_teacher(cfg, other, 7, tmp_path / "c", lambda m, s: None)
    assert c.best_epoch == a.best_epoch and c.val_best == a.val_best
    assert c.captions_path.read_text() == a.captions_path.read_text()
    assert c.test_metrics["bleu_1"] < a.test_metrics["bleu_1"]  # the test references did change


def test_tuning_trial_leaves_test_unseen(trained, tmp_path):
    cfg, _, student_in, results, _ = trained
    r = run_student(
        config(epochs=2),
        student_in,
        "rep+ce",
        results["teacher"].checkpoint,
        0,
        tmp_path,
        lambda m, s: None,
        evaluate_test=False,
    )
    assert r.test_metrics == {} and r.captions_path is None and r.per_video_path is None
    assert r.checkpoint.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]
    assert r.val_best == max(h["val/cider"] for h in r.history)


def test_pair_batches_cover_every_pair_once():
    lengths = np.random.default_rng(0).integers(3, 20, size=1000)
    batches = pair_batches(lengths, 64, np.random.default_rng(1))
    seen = np.sort(np.concatenate([b.numpy() for b in batches]))
    assert np.array_equal(seen, np.arange(1000))
    assert max(len(b) for b in batches) == 64


def test_bad_inputs_are_clear_errors(trained, tmp_path):
    cfg, teacher_in, student_in, results, _ = trained
    ck = results["teacher"].checkpoint
    with pytest.raises(ConfigError, match="unknown distillation method 'kd' \\(known: fused_to_modal, multi_stage"):
        run_student(cfg, student_in, "kd", ck, 0, tmp_path, lambda m, s: None)
    shuffled = dict(student_in.features)
    t = shuffled["validate"]
    shuffled["validate"] = Split(t.video_ids[::-1], t.audio[::-1], t.visual[::-1])
    bad = TrialInputs(
        student_in.vocab, student_in.captions, student_in.references, shuffled, student_in.teacher_features
    )
    with pytest.raises(DataError, match="validate split: student and teacher features list different videos"):
        run_student(cfg, bad, "rep", ck, 0, tmp_path, lambda m, s: None)
    refs = {k: v for k, v in teacher_in.references.items() if k != "validate3"}
    no_refs = TrialInputs(teacher_in.vocab, teacher_in.captions, refs, teacher_in.features)
    with pytest.raises(DataError, match="video 'validate3' has no reference captions"):
        run_teacher(cfg, no_refs, 0, tmp_path, lambda m, s: None)
    nan = dict(teacher_in.features)
    audio = nan["train"].audio.copy()
    audio[5, 0] = np.nan
    nan["train"] = Split(nan["train"].video_ids, audio, nan["train"].visual)
    with pytest.raises(DataError, match="video 'train5' has non-finite features"):
        run_teacher(
            cfg,
            TrialInputs(teacher_in.vocab, teacher_in.captions, teacher_in.references, nan),
            0,
            tmp_path,
            lambda m, s: None,
        )
    with pytest.raises(DataError, match="no such checkpoint"):
        run_student(cfg, student_in, "rep", tmp_path / "missing.pt", 0, tmp_path, lambda m, s: None)
