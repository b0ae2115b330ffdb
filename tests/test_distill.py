"""The distillation MLP and which parameters each student stage trains."""

import numpy as np
import pytest
import torch

from avkd import methods
from avkd.config import LossTerm, parse_sweep
from avkd.data.vocab import Vocabulary
from avkd.evaluation.metrics import ValidationScorer
from avkd.models.captioner import Captioner
from avkd.models.decoder import CaptionDecoder
from avkd.models.distill import DistillMLP
from avkd.training.data import TrialData
from avkd.training.loop import Fit, fit_stage, mapper_outputs, pair_outputs, set_trainable
from avkd.training.losses import build_objective

torch.set_num_threads(1)
CE = build_objective([LossTerm("ce", 1.0)])
REP = build_objective([LossTerm("rep_l1", 1.0)])
REP_CE = build_objective([LossTerm("ce", 1.0), LossTerm("rep_l1", 1.0)])


def test_mlp_has_two_hidden_layers():
    mlp = DistillMLP(16, 12, hidden=(32, 24), activation="gelu", dropout=0.2)
    linears = [m for m in mlp.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(16, 32), (32, 24), (24, 12)]
    assert any(isinstance(m, torch.nn.GELU) for m in mlp.modules())
    assert mlp(torch.randn(5, 16)).shape == (5, 12)
    with pytest.raises(ValueError, match="swish"):
        DistillMLP(4, 4, activation="swish")


def student(seed=0):
    torch.manual_seed(seed)
    decoder = CaptionDecoder(latent_dim=12, vocab_size=9, embed_dim=8, hidden=10, layers=2, dropout=0.1)
    mlp = DistillMLP(16, 12, hidden=(20, 20), dropout=0.1)
    return Captioner(decoder, torch.zeros(16), torch.ones(16), mlp)


def batch():
    torch.manual_seed(1)
    latents, teacher = torch.randn(6, 16), torch.randn(6, 12)
    rows = torch.tensor([0, 0, 2, 3, 5])
    seqs = torch.tensor([[1, 4, 5, 2, 0], [1, 6, 2, 0, 0], [1, 7, 8, 4, 2], [1, 5, 2, 0, 0], [1, 8, 2, 0, 0]])
    return latents, teacher, rows, seqs


def grad_owners(model):
    """Which parts ('decoder', 'mlp') got a non-zero gradient."""
    owners = set()
    for name, p in model.named_parameters():
        if p.grad is not None and p.grad.abs().sum() > 0:
            owners.add(name.split(".")[0])
    return owners


def test_rep_stage1_trains_only_the_mlp():
    model = student()
    latents, teacher, _, _ = batch()
    set_trainable(model, decoder=False, mlp=True)
    total, _ = REP(mapper_outputs(model.mlp, latents, teacher, torch.tensor([0, 2, 4])))
    total.backward()
    assert grad_owners(model) == {"mlp"}


def test_rep_stage2_trains_only_the_decoder():
    model = student()
    latents, teacher, rows, seqs = batch()
    params = set_trainable(model, decoder=True, mlp=False)
    assert {id(p) for p in params} == {id(p) for p in model.decoder.parameters()}
    assert not model.mlp.training  # frozen MLP: no dropout
    with torch.no_grad():  # as fit_decoder does: the frozen MLP maps the split once
        mapped = model.mlp(latents)
    total, _ = CE(pair_outputs(model.decoder, None, mapped, rows, seqs))
    total.backward()
    assert grad_owners(model) == {"decoder"}


def test_rep_ce_trains_both():
    model = student()
    latents, teacher, rows, seqs = batch()
    set_trainable(model, decoder=True, mlp=True)
    out = pair_outputs(model.decoder, model.mlp, latents, rows, seqs, teacher)
    assert out["student_mapped"].shape == (4, 12)  # one row per distinct video of the batch
    total, parts = REP_CE(out)
    assert set(parts) == {"ce", "rep_l1"}
    total.backward()
    assert grad_owners(model) == {"decoder", "mlp"}


def test_ce_alone_reaches_the_mlp_through_the_decoder():
    model = student()
    latents, teacher, rows, seqs = batch()
    set_trainable(model, decoder=True, mlp=True)
    total, _ = CE(pair_outputs(model.decoder, model.mlp, latents, rows, seqs, teacher))
    total.backward()
    assert grad_owners(model) == {"decoder", "mlp"}


# ---- the real stage loops change only what they train -------------------------------------------

WORDS = ["a", "red", "blue", "ball", "cup"]


@pytest.fixture(scope="module")
def stage_setup():
    vocab = Vocabulary(["<pad>", "<bos>", "<eos>", "<unk>"] + WORDS)
    rng = np.random.default_rng(0)
    train, val = torch.from_numpy(rng.normal(size=(8, 16)).astype(np.float32)), torch.randn(4, 16)
    seqs = torch.tensor([[1, 4, 5, 7, 2], [1, 4, 6, 8, 2]] * 8)
    rows = torch.arange(8).repeat_interleave(2)
    val_ids = [f"v{i}" for i in range(4)]
    scorer = ValidationScorer({v: ["a red ball", "a blue cup"] for v in val_ids})
    data = TrialData(train, val, val, rows, seqs, val_ids, torch.randn(8, 12), torch.randn(4, 12))
    cfg = parse_sweep(
        {
            "name": "t",
            "training": {"epochs": 2, "batch_size": 4, "patience": 5},
            "distill": {"rep_epochs": 2},
            "decoding": {"max_len": 4},
        }
    )
    return vocab, data, scorer, cfg


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def changed(before, module):
    return any(not torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_stage_loops_run_the_methods_declared_stages(stage_setup):
    """rep's two declared stages: the mapper alone, then the decoder alone; rep+ce's one joint stage."""
    vocab, data, scorer, cfg = stage_setup
    rng, log = np.random.default_rng(0), (lambda m, s: None)

    model = student()
    fit = Fit(model, data, cfg, vocab, scorer, rng, log)
    first, second = methods.get("rep").stages(cfg)
    assert (first.trains, first.stop_on, first.epochs) == ({"mapper"}, "loss", cfg.distill.rep_epochs)
    assert (second.trains, second.stop_on, [t.name for t in second.terms]) == ({"decoder"}, "captions", ["ce"])
    dec0, mlp0 = snapshot(model.decoder), snapshot(model.mlp)
    fit_stage(fit, first)
    assert changed(mlp0, model.mlp) and not changed(dec0, model.decoder)

    mlp1 = snapshot(model.mlp)
    fit_stage(fit, second)
    assert changed(dec0, model.decoder) and not changed(mlp1, model.mlp)
    assert [h["epoch"] for h in fit.history] == [1, 2, 3, 4]  # one step count across both stages

    model = student()
    (joint,) = methods.get("rep+ce").stages(cfg)
    assert joint.trains == {"mapper", "decoder"} and [t.name for t in joint.terms] == ["ce", "rep_l1"]
    dec0, mlp0 = snapshot(model.decoder), snapshot(model.mlp)
    fit_stage(Fit(model, data, cfg, vocab, scorer, rng, log), joint)
    assert changed(dec0, model.decoder) and changed(mlp0, model.mlp)
