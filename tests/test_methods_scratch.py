"""The init_from_teacher ablation (avkd/methods/scratch.py): rep-scratch / rep+ce-scratch train the student
decoder from scratch, rep / rep+ce start from the teacher's, and the trial identity tells them apart."""

import numpy as np
import pytest
import torch

from avkd import methods
from avkd.config import parse_sweep
from avkd.data.vocab import Vocabulary, tokenize_caption
from avkd.models.captioner import load_checkpoint
from avkd.sweep.plan import STUDENT, TrialSpec, trial_identity
from avkd.training.data import Split, TrialInputs
from avkd.training.runners import run_student, run_teacher

torch.set_num_threads(1)
TERMS = [{"name": "ce"}, {"name": "rep_l1"}]


def cfg(lr=0.01, **distill):
    return parse_sweep(
        {
            "name": "s",
            "model": {"embed_dim": 16, "hidden": 32, "layers": 2, "dropout": 0.0},
            "training": {"epochs": 1, "batch_size": 16, "lr": lr, "patience": 1},
            "distill": {
                "mlp": {"hidden": [16, 16], "dropout": 0.0},
                "rep_epochs": 1,
                "losses": {
                    "rep": [{"name": "rep_l1"}],
                    "rep+ce": TERMS,
                    "rep-scratch": [{"name": "rep_l1"}],
                    "rep+ce-scratch": TERMS,
                },
                **distill,
            },
            "grid": {"ks": [0.2], "losses": ["rep+ce", "rep+ce-scratch", "rep-scratch"]},
            "decoding": {"beam_size": 1, "max_len": 6},
            "features": {"device": "cpu"},
        }
    )


def inputs(n=(20, 6, 6), dim=4):
    rng = np.random.default_rng(0)
    feats, refs, toks = {}, {}, {}
    for split, count in zip(("train", "validate", "test"), n):
        ids = [f"{split}{i}" for i in range(count)]
        feats[split] = Split(
            ids, rng.normal(size=(count, dim)).astype(np.float32), rng.normal(size=(count, dim)).astype(np.float32)
        )
        for i, vid in enumerate(ids):
            refs[vid] = [f"a {'red' if i % 2 else 'blue'} ball"]
            toks[vid] = [tokenize_caption(r) for r in refs[vid]]
    vocab = Vocabulary.build([t for v in feats["train"].video_ids for t in toks[v]])
    return TrialInputs(vocab, toks, refs, feats), TrialInputs(vocab, toks, refs, feats, teacher_features=feats)


def test_variants_are_registered_with_their_base_stages():
    c = cfg()
    for key, base in (("rep-scratch", "rep"), ("rep+ce-scratch", "rep+ce")):
        m = methods.get(key)
        assert isinstance(m, type(methods.get(base)))
        assert m.starts_from_teacher(c) is False and methods.get(base).starts_from_teacher(c) is True
        assert [s.name for s in m.stages(c)] == [s.name for s in methods.get(base).stages(c)]
    # distill.init_from_teacher: false turns the base methods off too; the variants stay off either way
    off = cfg(init_from_teacher=False)
    assert not methods.get("rep+ce").starts_from_teacher(off) and not methods.get("rep+ce-scratch").starts_from_teacher(
        off
    )


def test_identity_tells_the_ablation_apart():
    c = cfg()
    spec = lambda key: TrialSpec(STUDENT, 0.2, key, 0, teacher="t" * 16)
    scratch = trial_identity(c, spec("rep+ce-scratch"), "fp")
    assert scratch != trial_identity(c, spec("rep+ce"), "fp")
    assert methods.get("rep+ce-scratch").distill_identity(c)["init_from_teacher"] is False
    # rep+ce with init_from_teacher: false is the same training as rep+ce-scratch, but its own trial (key)
    assert methods.get("rep+ce").distill_identity(cfg(init_from_teacher=False)) == methods.get(
        "rep+ce-scratch"
    ).distill_identity(c)


@pytest.mark.parametrize("key, copied", [("rep+ce", True), ("rep+ce-scratch", False)])
def test_student_decoder_starts_from_the_teacher_only_by_default(tmp_path, key, copied):
    """With a vanishing learning rate the trained student decoder is still its initialisation."""
    teacher_in, student_in = inputs()
    quiet = lambda m, s: None
    teacher = run_teacher(cfg(), teacher_in, 0, tmp_path / "teacher", quiet, evaluate_test=False)
    result = run_student(
        cfg(lr=1e-12), student_in, key, teacher.checkpoint, 1, tmp_path / key, quiet, evaluate_test=False
    )
    t_dec = load_checkpoint(teacher.checkpoint, "cpu")[0].decoder.state_dict()
    s_dec = load_checkpoint(result.checkpoint, "cpu")[0].decoder.state_dict()
    same = all(torch.allclose(t_dec[name], s_dec[name], atol=1e-6) for name in t_dec)
    assert same is copied
