"""Distillation methods from related video-KD systems, as student modes of the sweep.

A method is a student mode of the same name in `distill.losses` (its loss terms live in
avkd/training/losses.py), plus at most a small model addition made here:

    fused_to_modal  (Shao et al., video QA, Information 2023): per-modality student branches
                    (avkd/models/branches.py); the teacher's fused latent supervises each branch
                    before fusion: terms modal_kl (T^2 KL) or modal_l1, with ce.
    multi_teacher   (EMTM, Liang et al. 2023): extra frozen teachers (audio-only, visual-only, or at
                    another frame rate), unified as latent vectors and next-word distributions and
                    combined by a learned AggregationUnit into one target: terms kd_aggregate,
                    rep_aggregate, aggregate_ce. Optionally the student shares its encoder (the
                    decoder's latent projections, frozen) with one teacher.
    multi_stage     (DEEVISum's MSKD): teacher -> mentor (a student at k = mentor_k, run_mentor)
                    -> student, which learns from both: kd_teacher + kd_mentor with configured
                    weights, or kd_aggregate + aggregate_ce with learned ones.
    early exit      (DEEVISum's EE): model.early_exit, usable with any mode; exit heads in
                    avkd/models/decoder.py, their loss `exit_ce`, evaluated here per threshold.

The frozen models a student learns from beside its own input are its *guides*: "teacher" always,
plus the extra teachers (by name, e.g. "audio") or "mentor". The sweep driver trains them as trials
of role "guide" before the students that need them (guide_trials, student_guides below).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from avkd.config import LossTerm, MLPConfig, SweepConfig
from avkd.errors import ConfigError
from avkd.evaluation import metrics as M
from avkd.models.branches import ModalBranches
from avkd.models.decoder import CaptionDecoder
from avkd.models.distill import DistillMLP
from avkd.training.decode import decode

if TYPE_CHECKING:
    from avkd.data.vocab import Vocabulary
    from avkd.training.train import Captioner

METHODS = ("fused_to_modal", "multi_teacher", "multi_stage")
AGGREGATED = ("multi_teacher", "multi_stage")  # methods with an aggregation unit over their guides
AGGREGATE_TERMS = {"kd_aggregate", "aggregate_ce", "rep_aggregate"}
GUIDE_LOGIT_TERMS = {"kd_teacher": "teacher", "kd_mentor": "mentor"}  # term -> the guide whose logits it reads
MODAL_TERMS = {"modal_kl", "modal_l1"}
TEMPERATURE_TERMS = {"modal_kl", "kd_teacher", "kd_mentor", "kd_aggregate"}


# ---- which pieces a mode uses ------------------------------------------------------------------------

def guide_names(cfg: SweepConfig, mode: str) -> list[str]:
    """The guides a mode needs beside the teacher (trained by the driver before the student)."""
    if mode == "multi_teacher":
        return [t.name for t in cfg.distill.methods.multi_teacher.teachers]
    if mode == "multi_stage":
        return ["mentor"]
    return []


def make_mapper(mode: str, audio_dim: int, visual_dim: int, teacher_dim: int, mlp: MLPConfig
                ) -> DistillMLP | ModalBranches:
    """The student's latent -> teacher latent map: per-modality branches for fused_to_modal, else the MLP."""
    if mode == "fused_to_modal":
        return ModalBranches(audio_dim, visual_dim, teacher_dim, mlp.hidden, mlp.activation, mlp.dropout)
    return DistillMLP(audio_dim + visual_dim, teacher_dim, mlp.hidden, mlp.activation, mlp.dropout)


def shared_encoder(cfg: SweepConfig, mode: str) -> str | None:
    """multi_teacher: the guide whose encoder the student shares (None: its own)."""
    return cfg.distill.methods.multi_teacher.share_encoder_with if mode == "multi_teacher" else None


def share_encoder(model: "Captioner", guide: "Captioner") -> None:
    """The student's latent projections become a frozen copy of the guide's (EMTM's shared encoder)."""
    for name in ("latent_to_hidden", "latent_to_input"):
        getattr(model.decoder, name).load_state_dict(getattr(guide.decoder, name).state_dict())
    model.frozen = ("decoder.latent_to_hidden", "decoder.latent_to_input")


# ---- the aggregation unit and the frozen guides ----------------------------------------------------------

class AggregationUnit(nn.Module):
    """Learned, normalised weights over guides: w = softmax(a); the only trained part of the target."""

    def __init__(self, names: list[str], init: list[float] | None = None):
        super().__init__()
        self.names = list(names)
        w = torch.tensor(init if init is not None else [1.0] * len(names), dtype=torch.float32)
        if w.numel() != len(self.names) or not bool((w > 0).all()):
            raise ValueError(f"aggregation init {init} does not give one positive weight per guide {names}")
        self.logits = nn.Parameter(torch.log(w / w.sum()))

    def log_weights(self) -> torch.Tensor:
        return torch.log_softmax(self.logits, dim=0)

    def named_weights(self) -> dict[str, float]:
        return dict(zip(self.names, self.log_weights().exp().tolist()))


class Guides(nn.Module):
    """Frozen guide models + their train-split latents, the aggregation unit and the temperature.

    batch_outputs() fills in the tensors the method's loss terms read (see losses.py).
    Only the aggregation unit has parameters; the guides are held outside the module tree.
    """

    def __init__(self, models: dict[str, "Captioner"], latents: dict[str, torch.Tensor], logits_of: list[str],
                 aggregation: AggregationUnit | None, temperature: float):
        super().__init__()
        self.models, self.latents = dict(models), dict(latents)  # plain dicts: not trained, not saved
        self.logits_of, self.aggregation, self.temperature = list(logits_of), aggregation, float(temperature)
        for model in self.models.values():
            model.eval()

    def batch_outputs(self, videos: torch.Tensor, inverse: torch.Tensor, tokens: torch.Tensor
                      ) -> dict[str, torch.Tensor]:
        """videos: distinct train rows of the batch; inverse: pair -> video; tokens: <bos> w1 .. (P, T)."""
        out = {"temperature": torch.tensor(self.temperature, device=tokens.device)}
        wanted = list(dict.fromkeys(self.logits_of + (self.aggregation.names if self.aggregation else [])))
        logits = {}
        with torch.no_grad():
            for name in wanted:
                logits[name] = self.models[name].decoder(self.latents[name][videos][inverse], tokens)
        for name in self.logits_of:
            out[f"{name}_logits"] = logits[name]
        if self.aggregation is not None:
            names = self.aggregation.names
            out["aggregate_logits"] = torch.stack([logits[n] for n in names])
            out["aggregate_latents"] = torch.stack([self.latents[n][videos] for n in names])
            out["aggregate_log_weights"] = self.aggregation.log_weights()
        return out

    def epoch_metrics(self) -> dict[str, float]:
        if self.aggregation is None:
            return {}
        return {f"train/aggregate_w/{name}": w for name, w in self.aggregation.named_weights().items()}


def build_guides(cfg: SweepConfig, mode: str, terms: list[LossTerm], models: dict[str, "Captioner"],
                 latents: dict[str, torch.Tensor], where: str) -> Guides | None:
    """The guides this mode's terms read (None when they read none); a clear error for a term the mode lacks."""
    names = {t.name for t in terms}
    for term in sorted(names & MODAL_TERMS):
        if mode != "fused_to_modal":
            raise ConfigError(f"{where}: loss {term!r} needs the per-modality branches of the fused_to_modal method "
                              f"(use it in distill.losses.fused_to_modal)")
    for term in sorted(names & AGGREGATE_TERMS):
        if mode not in AGGREGATED:
            raise ConfigError(f"{where}: loss {term!r} needs an aggregation unit, which only "
                              f"{' and '.join(AGGREGATED)} have")
    logits_of = []
    for term, guide in GUIDE_LOGIT_TERMS.items():
        if term in names:
            if guide not in models:
                raise ConfigError(f"{where}: loss {term!r} needs the {guide}, which only the multi_stage method has")
            logits_of.append(guide)
    aggregation = None
    if names & AGGREGATE_TERMS:
        order = ["teacher"] + guide_names(cfg, mode)
        init = cfg.distill.methods.multi_stage.aggregate_init if mode == "multi_stage" else None
        aggregation = AggregationUnit(order, init).to(latents["teacher"].device)
    if not logits_of and aggregation is None and not names & TEMPERATURE_TERMS:
        return None
    return Guides(models, latents, logits_of, aggregation, cfg.distill.temperature)


# ---- early exit: decode and score the test split at each threshold -----------------------------------------

def ee_key(threshold: float, name: str) -> str:
    """MLflow metric of an early-exit evaluation: ee/t0.9/score, ee/t0.9/decode_s_per_video, ..."""
    return f"ee/t{threshold:g}/{name}"


def early_exit_metrics(decoder: CaptionDecoder, latents: torch.Tensor, video_ids: list[str],
                       refs: dict[str, list[str]], vocab: "Vocabulary", cfg: SweepConfig,
                       scorer: M.CaptionScorer) -> dict[str, float]:
    """Per threshold: every test metric and SCORE, decoding seconds per video, and where the steps ended.

    exit_rate: share of decoding steps (beam rows) that ended before the last GRU layer;
    mean_layers: GRU layers run per step on average.
    """
    dc, out = cfg.decoding, {}
    for threshold in cfg.model.early_exit.thresholds:
        with torch.no_grad(), decoder.early_exit(threshold):
            started = time.perf_counter()
            ids = decode(decoder, latents, dc.beam_size, dc.max_len, dc.length_penalty)
            seconds = time.perf_counter() - started
            counts = list(decoder.exit_counts)
        preds = {v: " ".join(vocab.decode(t)) for v, t in zip(video_ids, ids)}
        metrics, _ = scorer.score(refs, preds)
        metrics["score"] = M.final_score(metrics)[0]
        out.update({ee_key(threshold, name): value for name, value in metrics.items()})
        steps = max(1, sum(counts))
        out[ee_key(threshold, "decode_s_per_video")] = seconds / len(video_ids)
        out[ee_key(threshold, "exit_rate")] = 1.0 - counts[-1] / steps
        out[ee_key(threshold, "mean_layers")] = sum((i + 1) * c for i, c in enumerate(counts)) / steps
    return out


# ---- the sweep driver's view: guide trials and trial identities --------------------------------------------

def feature_ks(cfg: SweepConfig) -> set[float]:
    """Frame rates the guides need features for, beyond the teacher's and grid.ks."""
    ks = set()
    if "multi_teacher" in cfg.grid.losses:
        ks |= {t.k for t in cfg.distill.methods.multi_teacher.teachers}
    if "multi_stage" in cfg.grid.losses:
        ks.add(cfg.distill.methods.multi_stage.mentor_k)
    return ks


def student_distill_config(cfg: SweepConfig, mode: str) -> dict[str, Any]:
    """What of `distill` determines a student of this mode (or the "mentor"): part of its config hash.

    For rep / rep+ce this is exactly what it always was (mlp, init_from_teacher, rep_epochs and
    the loss terms), so their finished trials stay finished; the temperature and a method's
    section count only where they are used.
    """
    d = cfg.to_dict()["distill"]
    out = {k: v for k, v in d.items() if k not in ("losses", "temperature", "methods")}
    terms = d["methods"]["multi_stage"]["mentor_losses"] if mode == "mentor" else d["losses"][mode]
    out["loss_terms"] = terms
    if any(t["name"] in TEMPERATURE_TERMS for t in terms):
        out["temperature"] = d["temperature"]
    if mode in d["methods"]:
        out["method"] = d["methods"][mode]
    return out


def guide_trials(cfg: SweepConfig, base: dict[str, Any], seed: int, teacher_hash: str,
                 hash_fn: Any) -> tuple[list[dict], list[dict]]:
    """Guide trial specs for one seed: (extra teachers: beside the teacher; mentors: after it).

    An extra teacher is a teacher trial (L_CE) on its own variant with one modality zeroed; the
    mentor is a student at mentor_k trained on mentor_losses. Both have avkd.role "guide".
    """
    teachers, mentors = [], []
    if "multi_teacher" in cfg.grid.losses:
        for t in cfg.distill.methods.multi_teacher.teachers:
            h = hash_fn({**base, "role": "guide", "guide": t.name, "modality": t.modality, "k": t.k, "seed": seed})
            teachers.append({"role": "guide", "guide": t.name, "modality": t.modality, "k": float(t.k),
                             "loss": "ce", "seed": seed, "config_hash": h})
    if "multi_stage" in cfg.grid.losses:
        k = cfg.distill.methods.multi_stage.mentor_k
        h = hash_fn({**base, "distill": student_distill_config(cfg, "mentor"), "role": "guide", "guide": "mentor",
                     "k": k, "seed": seed, "teacher": teacher_hash})
        mentors.append({"role": "guide", "guide": "mentor", "modality": "av", "k": float(k), "loss": "multi_stage",
                        "seed": seed, "teacher_hash": teacher_hash, "config_hash": h})
    return teachers, mentors


def student_guides(cfg: SweepConfig, mode: str, specs: list[dict]) -> dict[str, dict]:
    """A student spec's `guides`: name -> {"hash", "k"} of the guide trials (same seed) it learns from."""
    by_name = {s["guide"]: s for s in specs}
    return {name: {"hash": by_name[name]["config_hash"], "k": by_name[name]["k"]} for name in guide_names(cfg, mode)}
