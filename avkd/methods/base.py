"""What a distillation method is: the small interface every module of avkd/methods implements.

A method says
  - which guide trials it needs besides the teacher (extra teachers, a mentor) and at which k;
  - the mapper it builds from the student's latent (and the named tensors that mapper produces);
  - its training stages (what trains, which loss terms with which weights, what each stage early-
    stops on, how many epochs), for its students and for any guide it trains as a student;
  - optionally an aggregation unit over its guides and an encoder shared with one of them.
The training loop (avkd/training) runs the declared stages and knows no method by name; the sweep
(avkd/sweep) plans the guide trials a method declares. Its settings live in
`distill.methods.<key>` (when it has any) and its loss terms in `distill.losses.<key>`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch.nn as nn

from avkd.config import LossTerm, SweepConfig
from avkd.models.aggregation import AggregationUnit
from avkd.models.distill import DistillMLP
from avkd.training.stage import DECODER, MAPPER, Stage


@dataclass(frozen=True)
class GuideTrial:
    """A trial a method's students learn from, trained before them (avkd.role "guide")."""

    name: str  # "audio", "visual", "av@0.6", "mentor": the guide's name in runs and loss tensors
    k: float  # the frame rate of its features
    modality: str = "av"  # audio / visual: a single-modality teacher (the other modality zeroed)
    student: bool = False  # False: a teacher trained on captions alone; True: distilled from the teacher


class Method:
    key: str = ""  # the sweep file's name of the method (grid.losses, distill.losses.<key>)
    init_from_teacher: bool | None = (
        None  # the student decoder starts as the teacher's (None: distill.init_from_teacher)
    )
    mapper_outputs: frozenset[str] = frozenset({"student_mapped"})  # named tensors its mapper produces

    # ---- what the sweep plans -------------------------------------------------------------------
    def guide_trials(self, cfg: SweepConfig) -> list[GuideTrial]:
        return []

    def settings(self, cfg: SweepConfig) -> Any | None:
        """This method's section of distill.methods (None: it has none)."""
        return getattr(cfg.distill.methods, self.key, None)

    def terms(self, cfg: SweepConfig, guide: str | None = None) -> tuple[list[LossTerm], str]:
        """(loss terms, their config key) of a student, or of the guide trial `guide` it trains."""
        if guide is not None:
            raise ValueError(f"method {self.key!r} trains no guide {guide!r}")
        return cfg.distill.losses[self.key], f"distill.losses.{self.key}"

    def starts_from_teacher(self, cfg: SweepConfig) -> bool:
        """Whether this method's student decoder starts as a copy of the trained teacher's decoder."""
        return cfg.distill.init_from_teacher if self.init_from_teacher is None else self.init_from_teacher

    # ---- what a trial builds ----------------------------------------------------------------------
    def mapper(self, cfg: SweepConfig, audio_dim: int, visual_dim: int, teacher_dim: int) -> nn.Module:
        mlp = cfg.distill.mlp
        return DistillMLP(audio_dim + visual_dim, teacher_dim, mlp.hidden, mlp.activation, mlp.dropout)

    def temperature(self, cfg: SweepConfig) -> float | None:
        settings = self.settings(cfg)
        return getattr(settings, "temperature", None)

    def stages(self, cfg: SweepConfig, guide: str | None = None) -> list[Stage]:
        """Default: one joint stage, mapper and decoder on the method's terms, early stop on captions."""
        terms, where = self.terms(cfg, guide)
        return [
            Stage(
                "joint",
                frozenset({MAPPER, DECODER}),
                tuple(terms),
                where,
                "captions",
                cfg.training.epochs,
                self.temperature(cfg),
            )
        ]

    def guides(self, cfg: SweepConfig, guide: str | None = None) -> list[str]:
        """The frozen models a student (or the guide `guide`) learns from: the teacher and the guide trials."""
        if guide is not None:
            return ["teacher"]
        return ["teacher"] + [g.name for g in self.guide_trials(cfg)]

    def aggregation(self, cfg: SweepConfig, names: list[str], in_dim: int) -> AggregationUnit | None:
        """The unit the aggregate_* terms read (None: this method has none, and those terms are errors)."""
        return None

    def shared_encoder(self, cfg: SweepConfig) -> str | None:
        """The guide whose (frozen) latent projections the student's decoder shares (None: its own)."""
        return None

    # ---- identity -----------------------------------------------------------------------------------
    def distill_identity(self, cfg: SweepConfig, guide: str | None = None) -> dict[str, Any]:
        """What of `distill` determines a trial of this method: part of its config hash.

        For rep / rep+ce this is exactly what it always was (mlp, init_from_teacher, rep_epochs and
        the loss terms), so their finished trials stay finished.
        """
        d = cfg.to_dict()["distill"]
        out = {k: v for k, v in d.items() if k not in ("losses", "methods")}
        out["init_from_teacher"] = self.starts_from_teacher(cfg)  # a variant's own (avkd/methods/scratch.py)
        out["loss_terms"] = [dataclasses.asdict(t) for t in self.terms(cfg, guide)[0]]
        settings = self.settings(cfg)
        if settings is not None:
            out["method"] = dataclasses.asdict(settings)
        return out
