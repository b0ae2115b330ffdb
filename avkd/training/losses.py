"""Loss registry (torchdistill-like): a training stage is a weighted list of named terms.

Each term reads named tensors that the training step fills in, and declares which (`Loss.inputs`),
so a term a method cannot feed is a ConfigError when the sweep file is loaded (avkd.methods.check):
    logits (B, T, V), targets (B, T)               when the decoder trains
    exit_logits (E, B, T, V)                       early-exit heads (model.early_exit)
    student_mapped (N, D), teacher_latent (N, D)   a student's mapper output and the teacher's latent
    student_audio, student_visual (N, D)           fused_to_modal's per-modality branches
    temperature ()                                 the method's softmax temperature
    teacher_logits, mentor_logits (B, T, V)        frozen guides' next-word logits on the same captions
    aggregate_logits (G, B, T, V), aggregate_log_weights (G,) or (G, B)
                                                   the guides an aggregation unit combines (normalised
                                                   weights: one set, or one per caption pair)
A new loss is a new entry in LOSSES (and a name in a sweep's loss list), not a new loop.
"""

from __future__ import annotations

from dataclasses import dataclass
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
    """KL(softmax(teacher / T) || softmax(student / T)) over the latent's dimensions, mean over videos."""
    return F.kl_div(
        F.log_softmax(student / t, dim=-1), F.log_softmax(teacher / t, dim=-1), reduction="batchmean", log_target=True
    )


def modal_kl(out: Outputs) -> torch.Tensor:
    """VQAKD's released loss: KL from the teacher's fused latent to the audio branch plus to the visual one (no T^2)."""
    t = out["temperature"]
    return _latent_kl(out["student_audio"], out["teacher_latent"], t) + _latent_kl(
        out["student_visual"], out["teacher_latent"], t
    )


def modal_kl_t2(out: Outputs) -> torch.Tensor:
    """Hinton-style variant of modal_kl, scaled by T^2 (this harness's first version)."""
    t = out["temperature"]
    return modal_kl(out) * t * t


def modal_l1(out: Outputs) -> torch.Tensor:
    """Regression variant of modal_kl: L1(audio branch, teacher) + L1(visual branch, teacher)."""
    return F.l1_loss(out["student_audio"], out["teacher_latent"]) + F.l1_loss(
        out["student_visual"], out["teacher_latent"]
    )


# ---- next-word distillation from frozen guides (teacher, mentor, aggregated teachers) ---------------


def _word_kl(
    student_logits: torch.Tensor, target_logp: torch.Tensor, targets: torch.Tensor, t: torch.Tensor
) -> torch.Tensor:
    """KL(target || softmax(student / T)) per caption position, mean over the non-<pad> positions."""
    logp = F.log_softmax(student_logits / t, dim=-1)
    per_position = (target_logp.exp() * (target_logp - logp)).sum(-1)
    return per_position[targets != PAD_ID].mean()


def kd_teacher(out: Outputs) -> torch.Tensor:
    """Hinton KD on next-word distributions from the (frozen) teacher: T^2 * KL (DEEVISum's form)."""
    t = out["temperature"]
    return _word_kl(out["logits"], F.log_softmax(out["teacher_logits"] / t, dim=-1), out["targets"], t) * t * t


def kd_mentor(out: Outputs) -> torch.Tensor:
    """Hinton KD on next-word distributions from the (frozen) mentor (multi_stage): T^2 * KL."""
    t = out["temperature"]
    return _word_kl(out["logits"], F.log_softmax(out["mentor_logits"] / t, dim=-1), out["targets"], t) * t * t


def _mixture_logp(logits: torch.Tensor, log_weights: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """log sum_g w_g softmax(logits_g / T): logits (G, B, T, V), weights (G,) or per pair (G, B) -> (B, T, V)."""
    logp = F.log_softmax(logits / t, dim=-1)
    w = log_weights.view(-1, 1, 1, 1) if log_weights.dim() == 1 else log_weights[:, :, None, None]
    return torch.logsumexp(logp + w, dim=0)


def kd_aggregate(out: Outputs) -> torch.Tensor:
    """KL from the aggregation unit's mixture of the guides' next-word distributions (weights fixed here).

    No T^2 factor: EMTM's released loss is KL to the ensemble at T = 1 (weight 0.1 in its config).
    """
    t = out["temperature"]
    target = _mixture_logp(out["aggregate_logits"], out["aggregate_log_weights"].detach(), t)
    return _word_kl(out["logits"], target, out["targets"], t)


def aggregate_ce(out: Outputs) -> torch.Tensor:
    """Trains the aggregation weights: caption loss of the guides' mixture on the true words (T = 1).

    Only the weights get a gradient (the guides are frozen): the better guide earns the larger weight.
    """
    logp = _mixture_logp(out["aggregate_logits"].detach(), out["aggregate_log_weights"], 1.0)
    return F.nll_loss(logp.reshape(-1, logp.size(-1)), out["targets"].reshape(-1), ignore_index=PAD_ID)


@dataclass(frozen=True)
class Loss:
    fn: Callable[[Outputs], torch.Tensor]
    inputs: frozenset[str]  # the named tensors it reads

    def __call__(self, out: Outputs) -> torch.Tensor:
        return self.fn(out)


def _loss(fn: Callable[[Outputs], torch.Tensor], *inputs: str) -> Loss:
    return Loss(fn, frozenset(inputs))


CAPTION = ("logits", "targets")
LOSSES: dict[str, Loss] = {
    "ce": _loss(ce, *CAPTION),
    "rep_l1": _loss(rep_l1, "student_mapped", "teacher_latent"),
    "rep_mse": _loss(rep_mse, "student_mapped", "teacher_latent"),
    "exit_ce": _loss(exit_ce, "exit_logits", "targets"),
    "modal_kl": _loss(modal_kl, "student_audio", "student_visual", "teacher_latent", "temperature"),
    "modal_kl_t2": _loss(modal_kl_t2, "student_audio", "student_visual", "teacher_latent", "temperature"),
    "modal_l1": _loss(modal_l1, "student_audio", "student_visual", "teacher_latent"),
    "kd_teacher": _loss(kd_teacher, *CAPTION, "teacher_logits", "temperature"),
    "kd_mentor": _loss(kd_mentor, *CAPTION, "mentor_logits", "temperature"),
    "kd_aggregate": _loss(kd_aggregate, *CAPTION, "aggregate_logits", "aggregate_log_weights", "temperature"),
    "aggregate_ce": _loss(aggregate_ce, "targets", "aggregate_logits", "aggregate_log_weights"),
}

Objective = Callable[[Outputs], tuple[torch.Tensor, dict[str, float]]]


def check_terms(terms: list[LossTerm], available: set[str], where: str, why: str = "") -> None:
    """Every term known and fed: a ConfigError naming `where`[i] and what is missing otherwise."""
    if not terms:
        raise ConfigError(f"{where}: needs at least one loss term")
    for i, term in enumerate(terms):
        if term.name not in LOSSES:
            raise ConfigError(f"{where}[{i}].name: unknown loss {term.name!r} (known: {', '.join(sorted(LOSSES))})")
        missing = sorted(LOSSES[term.name].inputs - available)
        if missing:
            raise ConfigError(
                f"{where}[{i}]: loss {term.name!r} reads {', '.join(missing)}, which {why or 'this stage'} "
                f"does not produce (it has: {', '.join(sorted(available))})"
            )


def build_objective(terms: list[LossTerm], where: str = "distill.losses") -> Objective:
    """Weighted sum of registry terms: objective(outputs) -> (total, {term name: unweighted value})."""
    if not terms:
        raise ConfigError(f"{where}: needs at least one loss term")
    for i, term in enumerate(terms):
        if term.name not in LOSSES:
            raise ConfigError(f"{where}[{i}].name: unknown loss {term.name!r} (known: {', '.join(LOSSES)})")
    pairs = [(t.name, float(t.weight), LOSSES[t.name].fn) for t in terms]

    def objective(out: Outputs) -> tuple[torch.Tensor, dict[str, float]]:
        total, parts = None, {}
        for name, weight, fn in pairs:
            try:
                value = fn(out)
            except KeyError as err:
                raise ConfigError(
                    f"{where}: loss {name!r} needs {err.args[0]!r}, which this training stage "
                    f"does not compute (it has: {', '.join(out)})"
                ) from None
            parts[name] = float(value.detach())
            total = weight * value if total is None else total + weight * value
        return total, parts

    return objective
