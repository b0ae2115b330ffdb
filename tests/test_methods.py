"""Distillation methods (fused_to_modal, multi_teacher, multi_stage) and early exit: losses on
hand-made tensors (each method's default against a hand-computed value), which parameters each
trains, the aggregation unit, exit heads and thresholds, load-time checks and trial identities."""

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F

from avkd import methods
from avkd.config import LossTerm, load_sweep, parse_sweep
from avkd.data.vocab import PAD_ID
from avkd.errors import ConfigError
from avkd.models.aggregation import AggregationUnit
from avkd.models.branches import ModalBranches
from avkd.models.captioner import Captioner
from avkd.models.decode import beam_search, greedy
from avkd.models.decoder import CaptionDecoder
from avkd.models.distill import DistillMLP
from avkd.sweep.plan import TrialSpec, plan_trials, trial_identity
from avkd.training.loop import pair_outputs, set_trainable
from avkd.training.losses import LOSSES, build_objective
from avkd.training.runners import build_guides, share_encoder

torch.set_num_threads(1)


def kl(p, q):
    """KL(p || q) of two probability vectors, by the definition."""
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def softmax(xs, t=1.0):
    e = [math.exp(x / t) for x in xs]
    return [v / sum(e) for v in e]


# ---- loss values on hand-made tensors ------------------------------------------------------------------


def test_modal_kl_and_l1_values():
    teacher = torch.tensor([[1.0, 0.0, -1.0]])
    audio, visual = torch.tensor([[0.0, 0.0, 0.0]]), torch.tensor([[2.0, 1.0, 0.0]])
    out = {
        "student_audio": audio,
        "student_visual": visual,
        "teacher_latent": teacher,
        "temperature": torch.tensor(2.0),
    }
    p = softmax([1.0, 0.0, -1.0], 2.0)
    plain = kl(p, softmax([0, 0, 0], 2.0)) + kl(p, softmax([2.0, 1.0, 0.0], 2.0))
    assert float(LOSSES["modal_kl"](out)) == pytest.approx(plain, rel=1e-5)  # the released form: no T^2
    assert float(LOSSES["modal_kl_t2"](out)) == pytest.approx(4.0 * plain, rel=1e-5)
    assert float(LOSSES["modal_l1"](out)) == pytest.approx(2 / 3 + 1.0)  # |1,0,1|/3 + |1,1,1|/3
    out["student_audio"] = out["student_visual"] = teacher.clone()
    assert float(LOSSES["modal_kl"](out)) == pytest.approx(0.0, abs=1e-7)


def word_outputs():
    student = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]]])  # (B=1, T=2, V=3)
    teacher = torch.tensor([[[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    mentor = torch.tensor([[[3.0, 0.0, 0.0], [5.0, 5.0, 5.0]]])
    targets = torch.tensor([[1, PAD_ID]])  # the second position is padding: it must not count
    return {
        "logits": student,
        "teacher_logits": teacher,
        "mentor_logits": mentor,
        "targets": targets,
        "temperature": torch.tensor(2.0),
    }


def test_kd_teacher_and_mentor_ignore_padding():
    out = word_outputs()
    expected_t = 4.0 * kl(softmax([0, 1, 0], 2.0), softmax([1, 0, 0], 2.0))
    expected_m = 4.0 * kl(softmax([3, 0, 0], 2.0), softmax([1, 0, 0], 2.0))
    assert float(LOSSES["kd_teacher"](out)) == pytest.approx(expected_t, rel=1e-5)
    assert float(LOSSES["kd_mentor"](out)) == pytest.approx(expected_m, rel=1e-5)


def test_aggregate_terms_use_the_normalised_mixture():
    out = word_outputs()
    w = [0.25, 0.75]
    out["aggregate_logits"] = torch.stack([out["teacher_logits"], out["mentor_logits"]])
    out["aggregate_log_weights"] = torch.log(torch.tensor(w))
    pt, pm = softmax([0, 1, 0], 2.0), softmax([3, 0, 0], 2.0)
    mix = [w[0] * a + w[1] * b for a, b in zip(pt, pm)]
    assert float(LOSSES["kd_aggregate"](out)) == pytest.approx(kl(mix, softmax([1, 0, 0], 2.0)), rel=1e-5)  # no T^2
    # aggregate_ce: -log of the T = 1 mixture's probability of the true word (index 1), padding ignored
    p1 = w[0] * softmax([0, 1, 0])[1] + w[1] * softmax([3, 0, 0])[1]
    assert float(LOSSES["aggregate_ce"](out)) == pytest.approx(-math.log(p1), rel=1e-5)
    # Per-sample weights (G, B): the same value when every pair has the same weights.
    out["aggregate_log_weights"] = torch.log(torch.tensor(w)).view(2, 1)
    assert float(LOSSES["kd_aggregate"](out)) == pytest.approx(kl(mix, softmax([1, 0, 0], 2.0)), rel=1e-5)


def test_aggregate_gradients_go_where_intended():
    out = word_outputs()
    student = out["logits"].clone().requires_grad_(True)
    unit = AggregationUnit(["teacher", "mentor"])
    out.update(
        logits=student,
        aggregate_logits=torch.stack([out["teacher_logits"], out["mentor_logits"]]),
        aggregate_log_weights=unit.log_weights(),
    )
    LOSSES["kd_aggregate"](out).backward(retain_graph=True)
    assert student.grad.abs().sum() > 0 and unit.logits.grad is None  # the target's weights are fixed here
    student.grad = None
    LOSSES["aggregate_ce"](out).backward()
    assert student.grad is None and unit.logits.grad.abs().sum() > 0  # only the weights learn from the truth


def test_exit_ce_is_the_mean_caption_loss_of_the_exits():
    torch.manual_seed(0)
    targets = torch.tensor([[4, 2, PAD_ID]])
    exits = torch.randn(2, 1, 3, 6)
    value = LOSSES["exit_ce"]({"exit_logits": exits, "targets": targets})
    each = [F.cross_entropy(e[0, :2], targets[0, :2]) for e in exits]
    assert float(value) == pytest.approx(float(sum(each) / 2), rel=1e-6)


# ---- the aggregation unit ------------------------------------------------------------------------------


def test_aggregation_weights_are_normalised_learnable_and_follow_the_better_guide():
    unit = AggregationUnit(["teacher", "mentor"], init=[0.25, 0.5])
    assert unit.named_weights() == pytest.approx({"teacher": 1 / 3, "mentor": 2 / 3})
    assert unit.logits.requires_grad and [p for p in unit.parameters()] == [unit.logits]
    # The "teacher" guide predicts the true words, the "mentor" does not: its weight must grow.
    targets = torch.tensor([[1, 2, 3, 1]])
    good = F.one_hot(targets, 5).float() * 6.0
    bad = F.one_hot((targets + 1) % 5, 5).float() * 6.0
    opt = torch.optim.Adam(unit.parameters(), lr=0.1)
    for _ in range(30):
        opt.zero_grad()
        loss = LOSSES["aggregate_ce"](
            {
                "aggregate_logits": torch.stack([good, bad]),
                "targets": targets,
                "aggregate_log_weights": unit.log_weights(),
            }
        )
        loss.backward()
        opt.step()
        assert sum(unit.named_weights().values()) == pytest.approx(1.0)
    assert unit.named_weights()["teacher"] > 0.9
    with pytest.raises(ValueError, match="one positive weight per guide"):
        AggregationUnit(["a", "b"], init=[1.0])


def test_per_sample_aggregation_starts_at_init_and_learns_weights_per_input():
    """EMTM's unit: weights from the student's input; a guide that is right only for some inputs wins there."""
    unit = AggregationUnit(["teacher", "audio"], init=[1.0, 3.0], in_dim=2)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(unit.log_weights(x).exp(), torch.tensor([[0.25, 0.25], [0.75, 0.75]]))
    targets = torch.tensor([[1], [2]])  # pair 0 says word 1, pair 1 says word 2
    teacher = F.one_hot(torch.tensor([[1], [0]]), 4).float() * 6.0  # right for pair 0 only
    audio = F.one_hot(torch.tensor([[0], [2]]), 4).float() * 6.0  # right for pair 1 only
    opt = torch.optim.Adam(unit.parameters(), lr=0.2)
    for _ in range(60):
        opt.zero_grad()
        LOSSES["aggregate_ce"](
            {
                "aggregate_logits": torch.stack([teacher, audio]),
                "targets": targets,
                "aggregate_log_weights": unit.log_weights(x),
            }
        ).backward()
        opt.step()
    w = unit.log_weights(x).exp()
    assert w[0, 0] > 0.9 and w[1, 1] > 0.9  # teacher for the first input, audio for the second


# ---- which parameters each method trains ----------------------------------------------------------------


def decoder(layers=2, exits=False, latent=12, seed=0):
    torch.manual_seed(seed)
    return CaptionDecoder(
        latent_dim=latent, vocab_size=9, embed_dim=8, hidden=10, layers=layers, dropout=0.1, exit_heads=exits
    )


def batch():
    torch.manual_seed(1)
    latents, teacher = torch.randn(6, 16), torch.randn(6, 12)
    rows = torch.tensor([0, 0, 2, 3, 5])
    seqs = torch.tensor([[1, 4, 5, 2, 0], [1, 6, 2, 0, 0], [1, 7, 8, 4, 2], [1, 5, 2, 0, 0], [1, 8, 2, 0, 0]])
    return latents, teacher, rows, seqs


def grad_names(module):
    return {name for name, p in module.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_fused_to_modal_branches_and_what_each_term_trains():
    cfg = parse_sweep({"name": "x"})
    assert isinstance(methods.get("fused_to_modal").mapper(cfg, 7, 9, 12), ModalBranches)
    assert isinstance(methods.get("rep+ce").mapper(cfg, 7, 9, 12), DistillMLP)
    torch.manual_seed(0)
    model = Captioner(decoder(), torch.zeros(16), torch.ones(16), ModalBranches(7, 9, 12, (20, 20), dropout=0.0))
    latents, teacher, rows, seqs = batch()
    set_trainable(model, decoder=True, mlp=True)
    out = pair_outputs(model.decoder, model.mlp, latents, rows, seqs, teacher)
    assert out["student_audio"].shape == out["student_visual"].shape == out["student_mapped"].shape == (4, 12)
    out["temperature"] = torch.tensor(2.0)
    # The audio branch sees only the audio columns: changing the visual ones leaves it unchanged.
    changed = latents.clone()
    changed[:, 7:] += 1.0
    torch.testing.assert_close(model.mlp.parts(changed)["student_audio"], model.mlp.parts(latents)["student_audio"])
    LOSSES["modal_kl"](out).backward(retain_graph=True)
    owners = {n.split(".")[1] for n in grad_names(model) if n.startswith("mlp.")}
    assert owners == {"audio", "visual"} and not any(n.startswith("decoder.") for n in grad_names(model))
    model.zero_grad()
    total, parts = build_objective([LossTerm("ce"), LossTerm("modal_kl")])(out)
    total.backward()
    assert {
        "mlp.fuse.weight",
        "mlp.audio.net.0.weight",
        "mlp.visual.net.0.weight",
        "decoder.head.weight",
    } <= grad_names(model)


def guide(latent=12, seed=5, mlp=False):
    g = Captioner(
        decoder(latent=latent, seed=seed),
        torch.zeros(latent),
        torch.ones(latent),
        DistillMLP(16, 12, (8, 8)) if mlp else None,
    )
    return g.eval()


def test_multi_teacher_trains_student_and_aggregation_never_the_guides():
    cfg = parse_sweep({"name": "x"})
    latents, teacher, rows, seqs = batch()
    models = {"teacher": guide(seed=5), "audio": guide(seed=6), "visual": guide(seed=7)}
    guide_latents = {name: torch.randn(6, 12) for name in models}
    mt = methods.get("multi_teacher")
    stages = mt.stages(cfg)
    terms = list(stages[0].terms) + [LossTerm("rep_l1")]
    guides = build_guides(mt, cfg, stages, mt.guides(cfg), models, guide_latents, 16, True)
    assert guides.aggregation.names == ["teacher", "audio", "visual"] and guides.aggregation.per_sample
    assert list(guides.parameters()) == list(guides.aggregation.proj.parameters())  # the guides are not parameters
    model = Captioner(decoder(), torch.zeros(16), torch.ones(16), DistillMLP(16, 12, (20, 20)))
    set_trainable(model, decoder=True, mlp=True)
    out = pair_outputs(model.decoder, model.mlp, latents, rows, seqs, teacher, guides, mt.temperature(cfg))
    assert out["aggregate_logits"].shape == (3, 5, 4, 9) and out["aggregate_log_weights"].shape == (3, 5)
    total, parts = build_objective(terms)(out)
    assert set(parts) == {"ce", "kd_aggregate", "aggregate_ce", "rep_l1"}
    total.backward()
    assert {"decoder.head.weight", "mlp.net.0.weight"} <= grad_names(model)
    assert guides.aggregation.proj.weight.grad.abs().sum() > 0
    assert all(not grad_names(g) for g in models.values())
    assert set(guides.epoch_metrics()) == {
        "train/aggregate_w/teacher",
        "train/aggregate_w/audio",
        "train/aggregate_w/visual",
    }


def test_shared_encoder_is_a_frozen_copy_of_the_guide():
    model = Captioner(decoder(), torch.zeros(16), torch.ones(16), DistillMLP(16, 12, (20, 20)))
    shared = guide(seed=9)
    share_encoder(model, shared)
    params = set_trainable(model, decoder=True, mlp=True)
    torch.testing.assert_close(model.decoder.latent_to_hidden.weight, shared.decoder.latent_to_hidden.weight)
    frozen = {id(p) for n in ("latent_to_hidden", "latent_to_input") for p in getattr(model.decoder, n).parameters()}
    assert frozen and not frozen & {id(p) for p in params}
    assert {id(p) for p in model.decoder.head.parameters()} <= {id(p) for p in params}


def test_multi_stage_student_learns_from_teacher_and_mentor():
    cfg = parse_sweep({"name": "x"})
    latents, teacher, rows, seqs = batch()
    models = {"teacher": guide(seed=5), "mentor": guide(seed=6, mlp=True)}
    ms = methods.get("multi_stage")
    stages = ms.stages(cfg)
    terms = list(stages[0].terms)
    assert [(t.name, t.weight) for t in terms] == [("ce", 1.0), ("kd_mentor", 0.5), ("kd_teacher", 0.25)]
    guides = build_guides(ms, cfg, stages, ms.guides(cfg), models, {n: torch.randn(6, 12) for n in models}, 16, True)
    assert guides.aggregation is None and guides.logits_of == ["teacher", "mentor"]
    assert list(guides.parameters()) == []  # the released code's weights are fixed: nothing to optimise
    model = Captioner(decoder(), torch.zeros(16), torch.ones(16), DistillMLP(16, 12, (20, 20)))
    set_trainable(model, decoder=True, mlp=True)
    total, parts = build_objective(terms)(
        pair_outputs(model.decoder, model.mlp, latents, rows, seqs, teacher, guides, stages[0].temperature)
    )
    assert parts["kd_mentor"] > 0 and parts["kd_teacher"] > 0
    assert float(total.detach()) == pytest.approx(
        parts["ce"] + 0.5 * parts["kd_mentor"] + 0.25 * parts["kd_teacher"], rel=1e-5
    )
    total.backward()
    assert "mlp.net.0.weight" in grad_names(model) and not grad_names(models["mentor"])
    learned_cfg = parse_sweep(
        {
            "name": "x",
            "grid": {"ks": [0.2], "losses": ["multi_stage"]},
            "distill": {
                "losses": {"multi_stage": [{"name": "ce"}, {"name": "kd_aggregate"}, {"name": "aggregate_ce"}]}
            },
        }
    )
    learned = build_guides(
        ms,
        learned_cfg,
        ms.stages(learned_cfg),
        ms.guides(cfg),
        models,
        {n: torch.randn(6, 12) for n in models},
        16,
        True,
    )
    assert not learned.aggregation.per_sample  # the learned option: one global weighting, DEEVISum's init
    assert learned.aggregation.named_weights() == pytest.approx({"teacher": 1 / 3, "mentor": 2 / 3})


@pytest.mark.parametrize(
    "losses, key, message",
    [
        (
            {"rep+ce": [{"name": "ce"}, {"name": "kd_mentor"}]},
            "distill.losses.rep+ce[1]",
            "loss 'kd_mentor' reads mentor_logits, temperature, which stage 'joint' of rep+ce does not produce",
        ),
        (
            {"rep+ce": [{"name": "ce"}, {"name": "kd_aggregate"}]},
            "distill.losses.rep+ce[1]",
            "loss 'kd_aggregate' reads aggregate_log_weights, aggregate_logits, temperature",
        ),
        (
            {"multi_teacher": [{"name": "ce"}, {"name": "modal_kl"}]},
            "distill.losses.multi_teacher[1]",
            "loss 'modal_kl' reads student_audio, student_visual",
        ),
        (
            {"rep": [{"name": "ce"}]},
            "distill.losses.rep[0]",
            "loss 'ce' reads logits, targets, which stage 'rep stage 1'",
        ),
        (
            {"rep": [{"name": "rep_l1"}], "mine": [{"name": "ce"}]},
            "distill.losses.mine",
            "no distillation method of that name (known: fused_to_modal, multi_stage, multi_teacher, rep, rep+ce, "
            "rep+ce-scratch, rep-scratch)",
        ),
    ],
)
def test_a_term_the_method_cannot_feed_fails_when_the_sweep_file_is_loaded(losses, key, message):
    cfg = parse_sweep({"name": "x", "distill": {"losses": losses}, "grid": {"losses": [list(losses)[0]]}})
    with pytest.raises(ConfigError) as err:
        methods.check(cfg, "sweeps/x.yaml")
    assert str(err.value).startswith(f"sweeps/x.yaml: {key}") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_mentor_losses_are_checked_at_load_time_too():
    data = {
        "name": "x",
        "grid": {"ks": [0.2], "losses": ["multi_stage"]},
        "distill": {"methods": {"multi_stage": {"mentor_losses": [{"name": "ce"}, {"name": "kd_mentor"}]}}},
    }
    with pytest.raises(
        ConfigError,
        match=r"^sweeps/x.yaml: distill.methods.multi_stage.mentor_losses\[1\]: loss "
        r"'kd_mentor' reads mentor_logits, which stage 'joint' of multi_stage \(its mentor\)",
    ):
        methods.check(parse_sweep(data), "sweeps/x.yaml")
    data["distill"]["methods"]["multi_stage"]["mentor_losses"][1]["name"] = "kd_techer"
    with pytest.raises(ConfigError, match=r"mentor_losses\[1\].name: unknown loss 'kd_techer'"):
        methods.check(parse_sweep(data), "sweeps/x.yaml")


def test_every_shipped_sweep_file_passes_the_checks(repo_root):
    for path in sorted((repo_root / "sweeps").glob("*.yaml")):
        methods.check(load_sweep(path), str(path))


def test_single_modality_teacher_zeroes_the_other_modality():
    raw = torch.arange(12, dtype=torch.float32).view(2, 6) + 1
    mean, std = torch.zeros(6), torch.ones(6)
    audio = Captioner(decoder(latent=6), mean, std, modality="audio", audio_dim=4)
    visual = Captioner(decoder(latent=6), mean, std, modality="visual", audio_dim=4)
    assert torch.equal(audio.standardise(raw)[:, 4:], torch.zeros(2, 2)) and torch.equal(
        audio.standardise(raw)[:, :4], raw[:, :4]
    )
    assert torch.equal(visual.standardise(raw)[:, :4], torch.zeros(2, 4)) and torch.equal(
        visual.standardise(raw)[:, 4:], raw[:, 4:]
    )
    with pytest.raises(ValueError, match="modality"):
        Captioner(decoder(latent=6), mean, std, modality="audio")


# ---- early exit ----------------------------------------------------------------------------------


def test_exit_heads_are_trained_by_exit_ce_and_stop_below_the_top():
    dec = decoder(layers=3, exits=True).train()
    latents, _, rows, seqs = batch()
    out = pair_outputs(dec, None, latents[:, :12], rows, seqs)
    assert out["exit_logits"].shape == (2, 5, 4, 9) and out["logits"].shape == (5, 4, 9)
    LOSSES["exit_ce"](out).backward()
    got = grad_names(dec)
    assert {"exits.0.weight", "exits.1.weight", "grus.0.weight_hh_l0", "grus.1.weight_hh_l0"} <= got
    assert not {"head.weight", "grus.2.weight_hh_l0"} & got  # nothing above the last exit
    plain = decoder(layers=3, exits=False)
    assert len(plain.exits) == 0 and "exit_logits" not in pair_outputs(plain, None, latents[:, :12], rows, seqs)


def test_forward_all_final_logits_are_forward():
    dec = decoder(layers=3, exits=True).eval()
    latent, tokens = torch.randn(3, 12), torch.randint(0, 9, (3, 5))
    with torch.no_grad():
        *exits, final = dec.forward_all(latent, tokens)
        torch.testing.assert_close(final, dec(latent, tokens))
    assert len(exits) == 2


def test_threshold_one_is_the_full_decoder():
    dec = decoder(layers=3, exits=True).eval()
    latent = torch.randn(4, 12)
    with torch.no_grad():
        state = dec.init_state(latent)
        tokens = torch.tensor([1, 4, 5, 6])
        full_logits, full_state = dec.step(tokens, state)
        plain_greedy, plain_beam = greedy(dec, latent, 8), beam_search(dec, latent, 3, 8)
        with dec.early_exit(1.0):
            logits, new_state = dec.step(tokens, state)
            assert greedy(dec, latent, 8) == plain_greedy and beam_search(dec, latent, 3, 8) == plain_beam
            assert dec.exit_counts[:2] == [0, 0] and dec.exit_counts[2] > 0
    assert torch.equal(logits, full_logits) and torch.equal(new_state, full_state)
    assert dec.exit_threshold is None  # restored after the block


def test_threshold_zero_exits_at_the_first_layer_and_copies_its_state():
    dec = decoder(layers=3, exits=True).eval()
    latent, tokens = torch.randn(4, 12), torch.tensor([1, 4, 5, 6])
    with torch.no_grad():
        state = dec.init_state(latent)
        out0, h0 = dec.grus[0](dec.embed(tokens).unsqueeze(1), state[0:1].contiguous())
        with dec.early_exit(0.0):
            logits, new_state = dec.step(tokens, state)
        assert dec.exit_counts == [4, 0, 0]
    torch.testing.assert_close(logits, dec.exits[0](out0[:, 0]))
    for layer in range(3):
        torch.testing.assert_close(new_state[layer], h0[0])


def test_mixed_exits_per_row():
    """Rows confident at exit 0 take its logits; the others get exactly the full decoder's."""
    dec = decoder(layers=2, exits=True).eval()
    latent, tokens = torch.randn(6, 12), torch.tensor([1, 4, 5, 6, 7, 8])
    with torch.no_grad():
        state = dec.init_state(latent)
        out0, _ = dec.grus[0](dec.embed(tokens).unsqueeze(1), state[0:1].contiguous())
        exit_logits = dec.exits[0](out0[:, 0])
        conf = torch.softmax(exit_logits, -1).amax(-1)
        threshold = float(conf.median())
        full_logits, _ = dec.step(tokens, state)
        with dec.early_exit(threshold):
            logits, _ = dec.step(tokens, state)
    leave = conf > threshold
    assert 0 < int(leave.sum()) < 6
    torch.testing.assert_close(logits[leave], exit_logits[leave])
    torch.testing.assert_close(logits[~leave], full_logits[~leave])
    with pytest.raises(ValueError, match="no exit heads"):
        with decoder(exits=False).early_exit(0.5):
            pass


# ---- config and the driver's view -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, key, text",
    [
        (
            {
                "grid": {"ks": [0.2, 0.9], "losses": ["multi_stage"]},
                "distill": {"losses": {"multi_stage": [{"name": "ce"}]}},
            },
            "distill.methods.multi_stage.mentor_k",
            "must be larger than every k",
        ),
        (
            {"distill": {"methods": {"multi_stage": {"mentor_k": 1.0}}}},
            "distill.methods.multi_stage.mentor_k",
            "(0, 1)",
        ),
        (
            {"distill": {"methods": {"multi_teacher": {"teachers": [{"modality": "av"}]}}}},
            "distill.methods.multi_teacher.teachers[0]",
            "always included",
        ),
        (
            {"distill": {"methods": {"multi_teacher": {"teachers": [{"modality": "audio"}, {"modality": "audio"}]}}}},
            "distill.methods.multi_teacher.teachers[1]",
            "listed twice",
        ),
        (
            {"distill": {"methods": {"multi_teacher": {"teachers": [{"modality": "speech"}]}}}},
            "distill.methods.multi_teacher.teachers[0].modality",
            "not one of",
        ),
        (
            {"distill": {"methods": {"multi_teacher": {"share_encoder_with": "visual@0.5"}}}},
            "distill.methods.multi_teacher.share_encoder_with",
            "not 'teacher' or an extra teacher (audio, visual)",
        ),
        (
            {"distill": {"methods": {"multi_stage": {"temperature": 0}}}},
            "distill.methods.multi_stage.temperature",
            "> 0",
        ),
        ({"model": {"layers": 1, "early_exit": {"enabled": True}}}, "model.early_exit.enabled", "layers >= 2"),
        ({"model": {"early_exit": {"thresholds": [0.9, 1.5]}}}, "model.early_exit.thresholds[1]", "outside [0, 1]"),
    ],
)
def test_bad_method_config_names_the_key(data, key, text):
    with pytest.raises(ConfigError) as err:
        parse_sweep({"name": "x", **data}, "sweeps/m.yaml")
    msg = str(err.value)
    assert msg.startswith(f"sweeps/m.yaml: {key}") and text in msg and "\n" not in msg


def test_rep_and_rep_ce_keep_their_trial_identity():
    """The methods' config must not change the hash of a paper trial (finished runs stay finished)."""
    cfg = parse_sweep({"name": "x"})
    distill = cfg.to_dict()["distill"]
    for mode in ("rep", "rep+ce"):
        old = {
            **{k: v for k, v in distill.items() if k not in ("losses", "temperature", "methods")},
            "loss_terms": distill["losses"][mode],
        }
        assert methods.get(mode).distill_identity(cfg) == old
    ms = methods.get("multi_stage").distill_identity(cfg, "mentor")
    assert ms["loss_terms"][1]["name"] == "kd_teacher" and ms["method"]["temperature"] == 2.0


# Pinned identities of sweeps/tiny.yaml's trials for a dataset fingerprint "fp". The structure refactor
# kept the pre-refactor hashes (commit 8f542fc); the audio-model keys (features.audio_model,
# audio_time_pool, simpf_renorm) then changed them once, on purpose (README: "Trial identity"). A
# change here means every finished run of every user is retrained: make it deliberately.
TINY_HASHES = {
    "teacher-s0": "25256a308a9dd3c4",
    "blind-s0": "41ca29249a3b3136",
    "guide-audio-k1-s0": "58a274d2e836c5ba",
    "guide-visual-k1-s0": "252cbc914eea1dd6",  # modality rows
    "student-k0.2-rep-s0": "fc107659e86fb88e",
    "student-k0.2-rep+ce-s0": "a649d4afe93c73a0",
    "student-k0.6-rep-s0": "a44208c32b045d22",
    "student-k0.6-rep+ce-s0": "3ad540bdd2f80e9b",
}


def test_trial_hashes_are_pinned(repo_root):
    cfg = load_sweep(repo_root / "sweeps" / "tiny.yaml")
    first, middle, students = plan_trials(cfg, "fp")
    assert {s.name: s.config_hash for s in first + middle + students} == TINY_HASHES
    # Execution settings of extraction are not part of a result's identity.
    for key, value in (("device", "cpu"), ("workers", 7), ("batch_frames", 3), ("batch_audio", 5), ("cache_dir", "/x")):
        other = load_sweep(repo_root / "sweeps" / "tiny.yaml")
        setattr(other.features, key, value)
        assert trial_identity(other, students[0], "fp") == TINY_HASHES[students[0].name], key
    other.training.lr = 0.001
    assert trial_identity(other, students[0], "fp") != TINY_HASHES[students[0].name]


def test_trial_spec_round_trips_through_a_plain_dict():
    cfg = parse_sweep({"name": "x", "grid": {"ks": [0.2], "losses": ["multi_teacher", "multi_stage"]}})
    first, middle, students = plan_trials(cfg, "fp")
    for spec in first + middle + students:
        assert TrialSpec.from_dict(spec.to_dict()) == spec
        assert spec.to_dict() == json.loads(json.dumps(spec.to_dict()))


def test_guide_trials_and_student_guides():
    cfg = parse_sweep(
        {
            "name": "x",
            "grid": {"ks": [0.2], "losses": ["rep+ce", "multi_teacher", "multi_stage"], "modality_teachers": False},
            "distill": {
                "methods": {"multi_teacher": {"teachers": [{"modality": "audio"}, {"modality": "av", "k": 0.6}]}}
            },
        }
    )
    first, middle, students = plan_trials(cfg, "fp")
    teacher = first[0]
    extra = [s for s in first if s.role == "guide"]
    assert [(s.guide, s.modality, s.k, s.teacher) for s in extra] == [
        ("audio", "audio", 1.0, None),
        ("av@0.6", "av", 0.6, None),
    ]
    assert [(s.guide, s.k, s.teacher, s.method, s.name) for s in middle] == [
        ("mentor", 0.9, teacher.config_hash, "multi_stage", "guide-mentor-k0.9-s0")
    ]
    assert len({s.config_hash for s in first + middle + students}) == len(first + middle + students)
    by_method = {s.method: s for s in students}
    assert [(g.name, g.hash, g.k) for g in by_method["multi_teacher"].guides] == [
        ("audio", extra[0].config_hash, 1.0),
        ("av@0.6", extra[1].config_hash, 0.6),
    ]
    assert by_method["rep+ce"].guides == () and by_method["rep+ce"].needs == {teacher.config_hash}
    assert by_method["multi_stage"].needs == {teacher.config_hash, middle[0].config_hash}
    assert {g.k for m in cfg.grid.losses for g in methods.get(m).guide_trials(cfg)} == {1.0, 0.6, 0.9}


def test_modality_rows_are_multi_teachers_extra_teachers_trained_once():
    """grid.modality_teachers (default on) plans the audio-only and visual-only teachers as the same
    guide trials multi_teacher uses, so a sweep with both trains each once, and its students point at them."""
    grid = {"ks": [0.2], "losses": ["rep+ce", "multi_teacher"], "seeds": [0, 1]}
    first, _, students = plan_trials(parse_sweep({"name": "x", "grid": grid}), "fp")
    guides = [s for s in first if s.role == "guide"]
    assert sorted(s.name for s in guides) == [
        "guide-audio-k1-s0",
        "guide-audio-k1-s1",
        "guide-visual-k1-s0",
        "guide-visual-k1-s1",
    ]
    assert len({s.config_hash for s in first}) == len(first)
    mt = [s for s in students if s.method == "multi_teacher" and s.seed == 1][0]
    assert {g.hash for g in mt.guides} == {s.config_hash for s in guides if s.seed == 1}
    off, _, _ = plan_trials(
        parse_sweep({"name": "x", "grid": {**grid, "losses": ["rep+ce"], "modality_teachers": False}}), "fp"
    )
    assert [s.role for s in off] == ["teacher", "blind", "teacher", "blind"]


def test_tuned_teacher_and_blind_are_what_students_learn_from():
    """Fair tuning: plan_trials with the teacher's and blind baseline's best settings swaps in their tuned
    re-runs (own hash, tag avkd.tuned), and every student and mentor is distilled from the tuned teacher."""
    from avkd.sweep.plan import tuned_spec
    from avkd.sweep.tune import CAPTION_ONLY_PARAMS, STUDENT_PARAMS

    cfg = parse_sweep(
        {
            "name": "x",
            "grid": {"ks": [0.2], "losses": ["rep+ce", "multi_stage"], "seeds": [0, 1]},
            "tune": {"num_samples": 2},
        }
    )
    plain, plain_mid, plain_students = plan_trials(cfg, "fp")
    best = {"teacher": {"decoder_dropout": 0.2}, "blind": {"decoder_dropout": 0.4}}
    first, middle, students = plan_trials(cfg, "fp", best)
    by_name = {s.name: s for s in first}
    for seed in (0, 1):
        old = next(s for s in plain if s.name == f"teacher-s{seed}")
        new = by_name[f"teacher-s{seed}"]
        assert new == tuned_spec(old, best["teacher"]) and new.tuned and new.config_hash != old.config_hash
        assert by_name[f"blind-s{seed}"].overrides == {"decoder_dropout": 0.4}
        assert all(s.teacher == new.config_hash for s in students + middle if s.seed == seed)
    assert not by_name["guide-audio-k1-s0"].tuned  # modality rows are not tuned
    assert {s.config_hash for s in students}.isdisjoint(s.config_hash for s in plain_students)
    assert set(CAPTION_ONLY_PARAMS) < set(STUDENT_PARAMS)
    tune_spec = dataclasses.replace(new, role="tune", tunes="blind")
    assert tune_spec.name == "tune-blind-s1" and TrialSpec.from_dict(tune_spec.to_dict()) == tune_spec
