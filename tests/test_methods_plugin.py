"""Methods are plugins: a new method is one new module, found through the registry, run by the same
loop; and the structure rules the refactor set (no method names outside avkd/methods, no import circles,
the core does not import trackers/reports except trackers.schema)."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest
from test_train import make_inputs

from avkd import methods
from avkd.config import parse_sweep
from avkd.errors import ConfigError
from avkd.training.runners import run_student, run_teacher

REPO = Path(__file__).resolve().parents[1]

TOY = '''
"""A toy method: the decoder alone on L_CE first, then mapper and decoder on its own terms."""
from avkd.config import LossTerm
from avkd.methods.base import Method
from avkd.training.stage import DECODER, MAPPER, Stage


class DecoderFirst(Method):
    key = "decoder_first"

    def stages(self, cfg, guide=None):
        terms, where = self.terms(cfg, guide)
        return [Stage("decoder", frozenset({DECODER}), (LossTerm("ce"),), where, "captions", 2),
                Stage("both", frozenset({MAPPER, DECODER}), tuple(terms), where, "captions", 2)]


METHOD = DecoderFirst()
'''


def toy_config(losses):
    return parse_sweep(
        {
            "name": "toy",
            "model": {"embed_dim": 16, "hidden": 32, "layers": 2, "dropout": 0.0},
            "training": {"epochs": 2, "batch_size": 32, "lr": 0.005, "patience": 3},
            "distill": {"mlp": {"hidden": [32, 32], "dropout": 0.0}, "losses": {"decoder_first": losses}},
            "grid": {"ks": [0.2], "losses": ["decoder_first"]},
            "decoding": {"beam_size": 2, "max_len": 8},
            "features": {"device": "cpu"},
        },
        "sweeps/toy.yaml",
    )


def test_a_toy_method_is_one_new_module_run_through_a_trial(tmp_path, monkeypatch):
    cfg = toy_config([{"name": "ce"}, {"name": "rep_mse", "weight": 0.5}])
    with pytest.raises(
        ConfigError,
        match=r"^sweeps/toy.yaml: grid.losses\[0\]: unknown distillation method 'decoder_first' "
        r"\(known: fused_to_modal, multi_stage, multi_teacher, rep, rep\+ce, rep\+ce-scratch, rep-scratch\)$",
    ):
        methods.check(cfg, "sweeps/toy.yaml")

    (tmp_path / "toy_method.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(methods, "REGISTRY", dict(methods.REGISTRY))  # registered for this test only
    methods.register(importlib.import_module("toy_method").METHOD)
    methods.check(cfg, "sweeps/toy.yaml")  # its stages' terms are fed

    teacher_in, student_in = make_inputs(n=(24, 6, 6))
    log = []
    teacher = run_teacher(cfg, teacher_in, 0, tmp_path / "teacher", lambda m, s: None)
    result = run_student(
        cfg, student_in, "decoder_first", teacher.checkpoint, 0, tmp_path / "toy", lambda m, s: log.append((s, m))
    )
    assert [s for s, _ in log] == [1, 2, 3, 4]  # two declared stages of two epochs, one step count
    # each stage's curves apart in the tracker (schema.train_stage_metric): no curve jumps between objectives
    assert "train/stage1/loss" in log[0][1] and "train/stage1/rep_mse" not in log[0][1]
    assert "train/stage2/rep_mse" in log[2][1] and "train/loss" not in log[2][1]
    assert {"bleu_4", "cider", "score"} <= set(result.test_metrics)

    # A term its stages cannot feed is a load-time error naming the key.
    with pytest.raises(ConfigError, match=r"distill.losses.decoder_first\[1\]: loss 'kd_mentor' reads mentor_logits"):
        methods.check(toy_config([{"name": "ce"}, {"name": "kd_mentor"}]), "sweeps/toy.yaml")
    sys.modules.pop("toy_method", None)


# ---- structure --------------------------------------------------------------------------------------

# (import circles and layering: tests/test_import_graph.py)


def test_no_method_is_named_outside_the_methods_package():
    """`grep -rn 'mode == "' avkd/` finds nothing outside avkd/methods (nor any method key comparison)."""
    keys = "|".join(re.escape(k) for k in methods.REGISTRY)
    pattern = re.compile(rf"""(mode|method|loss)\s*(==|!=|in)\s*\(?["']({keys})["']|mode == \"""")
    hits = [
        f"{p.relative_to(REPO)}:{i}"
        for p in (REPO / "avkd").rglob("*.py")
        if "methods" not in p.parts
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []
