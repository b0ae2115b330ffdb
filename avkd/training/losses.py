"""Loss registry (torchdistill-like): a training method is a weighted list of named terms.

Each loss takes a dict of named tensors that the training step fills in:
    logits (B, T, V), targets (B, T)               when the decoder runs
    student_mapped (N, D), teacher_latent (N, D)   when a distillation MLP runs
    exit_logits (E, B, T, V)                       early-exit heads (model.early_exit)
    student_audio, student_visual (N, D)           fused_to_modal's per-modality branches
    temperature ()                                 distill.temperature, for the KL terms
    teacher_logits, mentor_logits (B, T, V)        frozen guides' next-word logits on the same captions
    aggregate_logits (G, B, T, V), aggregate_latents (G, N, D), aggregate_log_weights (G,)
                                                   the guides an aggregation unit combines (normalised weights)
(avkd/training/methods.py fills in the guide tensors.) A new loss is a new entry in LOSSES (and a
name in the sweep's `distill.losses`), not a new loop.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from avkd.config import LossTerm
from avkd.data.vocab import PAD_ID
from avkd.errors import ConfigError

Outputs = dict[str, torch.Tensor]


def ce(out: Outputs) -> torch.Tensor:
    """Token cross-entropy of the caption, <pad> positions ignored (L_CE)."""
    logits, targets = out["logits"], out["targets"]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=PAD_ID)


def rep_l1(out: Outputs) -> torch.Tensor:
    """L1 between MLP(student latent) and the teacher latent (L_rep)."""
    return F.l1_loss(out["student_mapped"], out["teacher_latent"])


def rep_mse(out: Outputs) -> torch.Tensor:
    """Squared-error variant of L_rep."""
    return F.mse_loss(out["student_mapped"], out["teacher_latent"])


def exit_ce(out: Outputs) -> torch.Tensor:
    """Early exit: the caption loss of every exit head, averaged over the heads."""
    return torch.stack([ce({"logits": logits, "targets": out["targets"]}) for logits in out["exit_logits"]]).mean()


# ---- fused_to_modal: the teacher's fused latent supervises each student branch before fusion -------

def _latent_kl(student: torch.Tensor, teacher: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """T^2 * KL(softmax(teacher / T) || softmax(student / T)) over the latent's dimensions, mean over videos."""
    return F.kl_div(F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1),
                    reduction="batchmean", log_target=True) * t * t


def modal_kl(out: Outputs) -> torch.Tensor:
    """Temperature-scaled KL from the teacher's fused latent to the audio branch, plus the same for video."""
    t = out["temperature"]
    return _latent_kl(out["student_audio"], out["teacher_latent"], t) + \
        _latent_kl(out["student_visual"], out["teacher_latent"], t)


def modal_l1(out: Outputs) -> torch.Tensor:
    """Regression variant of modal_kl: L1(audio branch, teacher) + L1(visual branch, teacher)."""
    return F.l1_loss(out["student_audio"], out["teacher_latent"]) + \
        F.l1_loss(out["student_visual"], out["teacher_latent"])


# ---- next-word distillation from frozen guides (teacher, mentor, aggregated teachers) ---------------

def _word_kl(student_logits: torch.Tensor, target_logp: torch.Tensor, targets: torch.Tensor,
             t: torch.Tensor) -> torch.Tensor:
    """T^2 * KL(target || softmax(student / T)) per caption position, mean over the non-<pad> positions."""
    logp = F.log_softmax(student_logits / t, dim=-1)
    per_position = (target_logp.exp() * (target_logp - logp)).sum(-1)
    mask = targets != PAD_ID
    return per_position[mask].mean() * t * t


def kd_teacher(out: Outputs) -> torch.Tensor:
    """Hinton KD on next-word distributions from the (frozen) teacher."""
    t = out["temperature"]
    return _word_kl(out["logits"], F.log_softmax(out["teacher_logits"] / t, dim=-1), out["targets"], t)


def kd_mentor(out: Outputs) -> torch.Tensor:
    """Hinton KD on next-word distributions from the (frozen) mentor (multi_stage)."""
    t = out["temperature"]
    return _word_kl(out["logits"], F.log_softmax(out["mentor_logits"] / t, dim=-1), out["targets"], t)


def _mixture_logp(logits: torch.Tensor, log_weights: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """log sum_g w_g softmax(logits_g / T): (G, B, T, V), (G,) -> (B, T, V)."""
    logp = F.log_softmax(logits / t, dim=-1)
    return torch.logsumexp(logp + log_weights.view(-1, 1, 1, 1), dim=0)


def kd_aggregate(out: Outputs) -> torch.Tensor:
    """KD towards the aggregation unit's mixture of the guides' next-word distributions (weights fixed here)."""
    t = out["temperature"]
    target = _mixture_logp(out["aggregate_logits"], out["aggregate_log_weights"].detach(), t)
    return _word_kl(out["logits"], target, out["targets"], t)


def aggregate_ce(out: Outputs) -> torch.Tensor:
    """Trains the aggregation weights: caption loss of the guides' mixture on the true words (T = 1).

    Only the weights get a gradient (the guides are frozen): the better guide earns the larger weight.
    """
    logp = _mixture_logp(out["aggregate_logits"].detach(), out["aggregate_log_weights"], 1.0)
    return F.nll_loss(logp.reshape(-1, logp.size(-1)), out["targets"].reshape(-1), ignore_index=PAD_ID)


def rep_aggregate(out: Outputs) -> torch.Tensor:
    """L1 between MLP(student latent) and the aggregation unit's weighted mean of the guides' latents."""
    weights = out["aggregate_log_weights"].detach().exp()
    target = (weights.view(-1, 1, 1) * out["aggregate_latents"]).sum(0)
    return F.l1_loss(out["student_mapped"], target)


LOSSES: dict[str, Callable[[Outputs], torch.Tensor]] = {
    "ce": ce, "rep_l1": rep_l1, "rep_mse": rep_mse, "exit_ce": exit_ce,
    "modal_kl": modal_kl, "modal_l1": modal_l1,
    "kd_teacher": kd_teacher, "kd_mentor": kd_mentor,
    "kd_aggregate": kd_aggregate, "aggregate_ce": aggregate_ce, "rep_aggregate": rep_aggregate,
}

Objective = Callable[[Outputs], tuple[torch.Tensor, dict[str, float]]]


def build_objective(terms: list[LossTerm], where: str = "distill.losses") -> Objective:
    """Weighted sum of registry terms: objective(outputs) -> (total, {term name: unweighted value})."""
    if not terms:
        raise ConfigError(f"{where}: needs at least one loss term")
    for i, term in enumerate(terms):
        if term.name not in LOSSES:
            raise ConfigError(f"{where}[{i}].name: unknown loss {term.name!r} (known: {', '.join(LOSSES)})")
    pairs = [(t.name, float(t.weight), LOSSES[t.name]) for t in terms]

    def objective(out: Outputs) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = None, {}
        for name, weight, fn in pairs:
            try:
                value = fn(out)
            except KeyError as err:
                raise ConfigError(f"{where}: loss {name!r} needs {err.args[0]!r}, which this training stage "
                                  f"does not compute (it has: {', '.join(out)})") from None
            parts[name] = float(value.detach())
            total = weight * value if total is None else total + weight * value
        return total, parts

    return objective
