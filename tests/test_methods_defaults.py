"""Each method's DEFAULT loss (its declared stages from the default config) against a value computed
by hand on tiny tensors, including the released-code forms: VQAKD's KL at T = 1 without T^2, EMTM's
0.1-weighted KL to a per-sample ensemble at T = 1, DEEVISum's fixed 0.5 / 0.5 / 0.25 T^2-scaled KLs at T = 2."""

import math

import pytest
import torch

from avkd import methods
from avkd.config import parse_sweep
from avkd.data.vocab import PAD_ID
from avkd.training.losses import build_objective

CFG = parse_sweep({"name": "x"})


def softmax(xs, t=1.0):
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


def kl(p, q):
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def total(stage, out):
    """The stage's objective as the loop computes it (temperature from the stage)."""
    if stage.temperature is not None:
        out = {**out, "temperature": torch.tensor(stage.temperature)}
    value, parts = build_objective(list(stage.terms), stage.where)(out)
    return float(value), parts


# One caption pair of two positions, the second one padding; vocabulary of 3 words; true word 1.
STUDENT = [1.0, 0.0, 0.0]
TEACHER = [0.0, 1.0, 0.0]
MENTOR = [3.0, 0.0, 0.0]
CE = -math.log(softmax(STUDENT)[1])


def caption(student=STUDENT):
    return {"logits": torch.tensor([[student, [9.0, -9.0, 0.0]]]), "targets": torch.tensor([[1, PAD_ID]])}


def test_rep_default():
    first, second = methods.get("rep").stages(CFG)
    out = {"student_mapped": torch.tensor([[1.0, -2.0]]), "teacher_latent": torch.tensor([[0.0, 0.0]])}
    assert total(first, out)[0] == pytest.approx(1.5)  # L_rep = L1 = (1 + 2) / 2
    assert total(second, caption())[0] == pytest.approx(CE)  # stage 2: L_CE alone


def test_rep_ce_default():
    (joint,) = methods.get("rep+ce").stages(CFG)
    out = {**caption(), "student_mapped": torch.tensor([[1.0, -2.0]]), "teacher_latent": torch.tensor([[0.0, 0.0]])}
    assert total(joint, out)[0] == pytest.approx(CE + 1.5)


def test_fused_to_modal_default_is_vqakds_released_loss():
    (joint,) = methods.get("fused_to_modal").stages(CFG)
    assert joint.temperature == 1.0
    t, a, v = [1.0, 0.0, -1.0], [0.0, 0.0, 0.0], [2.0, 1.0, 0.0]
    out = {
        **caption(),
        "teacher_latent": torch.tensor([t]),
        "student_audio": torch.tensor([a]),
        "student_visual": torch.tensor([v]),
        "student_mapped": torch.zeros(1, 3),
    }
    expected = CE + 1.0 * (kl(softmax(t), softmax(a)) + kl(softmax(t), softmax(v)))  # weight 1, T = 1, no T^2
    assert total(joint, out)[0] == pytest.approx(expected, rel=1e-6)


def test_multi_teacher_default_is_emtms_released_loss():
    (joint,) = methods.get("multi_teacher").stages(CFG)
    assert joint.temperature == 1.0
    w = [0.2, 0.8]  # the aggregation unit's weights for this pair (per sample: shape (G, B))
    out = {
        **caption(),
        "aggregate_logits": torch.tensor([[[TEACHER, [0.0, 0.0, 0.0]]], [[MENTOR, [0.0, 0.0, 0.0]]]]),
        "aggregate_log_weights": torch.log(torch.tensor(w)).view(2, 1),
    }
    mix = [w[0] * p + w[1] * q for p, q in zip(softmax(TEACHER), softmax(MENTOR))]
    aggregate_ce = -math.log(mix[1])  # trains the unit's weights only
    expected = CE + 0.1 * kl(mix, softmax(STUDENT)) + 1.0 * aggregate_ce
    value, parts = total(joint, out)
    assert value == pytest.approx(expected, rel=1e-6)
    assert parts["kd_aggregate"] == pytest.approx(kl(mix, softmax(STUDENT)), rel=1e-6)


def test_multi_stage_default_is_deevisums_released_loss():
    ms = methods.get("multi_stage")
    (student,) = ms.stages(CFG)
    (mentor,) = ms.stages(CFG, "mentor")
    assert student.temperature == mentor.temperature == 2.0
    out = {
        **caption(),
        "teacher_logits": torch.tensor([[TEACHER, [0.0, 0.0, 0.0]]]),
        "mentor_logits": torch.tensor([[MENTOR, [0.0, 0.0, 0.0]]]),
    }
    s, t, m = softmax(STUDENT, 2.0), softmax(TEACHER, 2.0), softmax(MENTOR, 2.0)
    expected = CE + 0.5 * 4.0 * kl(m, s) + 0.25 * 4.0 * kl(t, s)  # fixed weights, T^2 = 4 at T = 2
    assert total(student, out)[0] == pytest.approx(expected, rel=1e-6)
    # the mentor: its own CE + 0.5 * T^2 KL(teacher || mentor), computed on the mentor's logits
    mentor_out = {**caption(MENTOR), "teacher_logits": out["teacher_logits"]}
    expected = -math.log(softmax(MENTOR)[1]) + 0.5 * 4.0 * kl(t, m)
    assert total(mentor, mentor_out)[0] == pytest.approx(expected, rel=1e-6)
