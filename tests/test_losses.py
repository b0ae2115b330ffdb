"""The loss registry: values, weighting, unknown names, and extension by a new entry."""

import math

import pytest
import torch

from avkd.config import LossTerm
from avkd.data.vocab import PAD_ID
from avkd.errors import ConfigError
from avkd.training import losses
from avkd.training.losses import LOSSES, build_objective


def caption_outputs():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    targets = torch.tensor([[5, 6, 2, PAD_ID], [4, 2, PAD_ID, PAD_ID]])
    return {"logits": logits, "targets": targets}


def test_ce_ignores_padding():
    out = caption_outputs()
    logp = torch.log_softmax(out["logits"], dim=-1)
    picked = [-logp[b, t, out["targets"][b, t]] for b in range(2) for t in range(4) if out["targets"][b, t] != PAD_ID]
    expected = sum(picked) / len(picked)  # 5 real tokens; the 3 <pad> positions do not count
    assert math.isclose(float(LOSSES["ce"](out)), float(expected), rel_tol=1e-6)


def test_rep_l1_is_mean_absolute_difference():
    a, b = torch.tensor([[1.0, -2.0], [0.5, 0.0]]), torch.tensor([[0.0, 0.0], [0.5, 3.0]])
    assert float(LOSSES["rep_l1"]({"student_mapped": a, "teacher_latent": b})) == pytest.approx((1 + 2 + 0 + 3) / 4)


def test_objective_is_weighted_sum_and_reports_each_term():
    out = caption_outputs()
    out.update(student_mapped=torch.ones(3, 5), teacher_latent=torch.zeros(3, 5))
    objective = build_objective([LossTerm("ce", 1.0), LossTerm("rep_l1", 2.5)])
    total, parts = objective(out)
    assert set(parts) == {"ce", "rep_l1"}
    assert parts["rep_l1"] == pytest.approx(1.0)
    assert float(total) == pytest.approx(parts["ce"] + 2.5 * 1.0)


def test_objective_gradient_flows_to_inputs():
    mapped = torch.zeros(2, 3, requires_grad=True)
    total, _ = build_objective([LossTerm("rep_l1", 2.0)])(
        {"student_mapped": mapped, "teacher_latent": torch.ones(2, 3)}
    )
    total.backward()
    assert torch.allclose(mapped.grad, torch.full((2, 3), -2.0 / 6))


def test_unknown_loss_names_key_and_known_names():
    with pytest.raises(ConfigError) as err:
        build_objective([LossTerm("ce"), LossTerm("kl_div")], where="distill.losses.mine")
    msg = str(err.value)
    assert "distill.losses.mine[1].name" in msg and "'kl_div'" in msg
    assert all(name in msg for name in LOSSES)
    assert "\n" not in msg


def test_empty_objective_is_an_error():
    with pytest.raises(ConfigError, match="at least one"):
        build_objective([])


def test_stage_missing_a_tensor_is_a_clear_error():
    objective = build_objective([LossTerm("ce")], where="distill.losses.rep")
    with pytest.raises(ConfigError, match="'ce' needs 'logits'"):
        objective({"student_mapped": torch.zeros(1, 2), "teacher_latent": torch.zeros(1, 2)})


def test_new_loss_is_a_registry_entry(monkeypatch):
    def cosine(out):
        return 1 - torch.cosine_similarity(out["student_mapped"], out["teacher_latent"]).mean()

    monkeypatch.setitem(losses.LOSSES, "rep_cos", losses.Loss(cosine, frozenset({"student_mapped", "teacher_latent"})))
    total, parts = build_objective([LossTerm("rep_cos", 1.0)])(
        {"student_mapped": torch.tensor([[1.0, 0.0]]), "teacher_latent": torch.tensor([[0.0, 2.0]])}
    )
    assert parts == {"rep_cos": pytest.approx(1.0)}


def test_every_term_declares_what_it_reads():
    """A term's declared inputs are exactly what it needs: feeding only those works, dropping any fails."""
    torch.manual_seed(0)
    full = {
        "logits": torch.randn(2, 3, 5),
        "targets": torch.tensor([[4, 2, PAD_ID], [3, 4, 2]]),
        "exit_logits": torch.randn(2, 2, 3, 5),
        "student_mapped": torch.randn(2, 4),
        "teacher_latent": torch.randn(2, 4),
        "student_audio": torch.randn(2, 4),
        "student_visual": torch.randn(2, 4),
        "temperature": torch.tensor(2.0),
        "teacher_logits": torch.randn(2, 3, 5),
        "mentor_logits": torch.randn(2, 3, 5),
        "aggregate_logits": torch.randn(2, 2, 3, 5),
        "aggregate_log_weights": torch.log(torch.tensor([0.3, 0.7])),
    }
    for name, loss in LOSSES.items():
        fed = {k: full[k] for k in loss.inputs}
        assert torch.isfinite(loss(fed)), name
        for missing in loss.inputs:
            with pytest.raises(KeyError):
                loss({k: v for k, v in fed.items() if k != missing})


def test_check_terms_names_the_term_and_the_missing_tensor():
    with pytest.raises(ConfigError) as err:
        losses.check_terms(
            [LossTerm("ce"), LossTerm("kd_mentor", 0.5)],
            {"logits", "targets", "temperature"},
            "distill.losses.rep+ce",
            "stage 'joint' of rep+ce",
        )
    msg = str(err.value)
    assert (
        msg.startswith(
            "distill.losses.rep+ce[1]: loss 'kd_mentor' reads mentor_logits, which stage 'joint' of "
            "rep+ce does not produce"
        )
        and "\n" not in msg
    )
    with pytest.raises(ConfigError, match=r"distill.losses.x\[0\].name: unknown loss 'nope'"):
        losses.check_terms([LossTerm("nope")], {"logits"}, "distill.losses.x")
    losses.check_terms([LossTerm("ce")], {"logits", "targets"}, "distill.losses.x")  # fed: no error
