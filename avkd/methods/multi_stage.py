"""`multi_stage` (DEEVISum's MSKD): teacher -> mentor (a student at mentor_k) -> student.

The mentor is a guide trial distilled from the teacher on distill.methods.multi_stage.mentor_losses;
the student then learns from both. Default = the released code, where the KD weights (0.5, 0.5,
0.25) are parameters no optimiser updates, i.e. fixed, and each KL is T^2-scaled at T = 2:
    mentor:  CE + 0.5 * T^2 KL(teacher || mentor)                                 (kd_teacher)
    student: CE + 0.5 * T^2 KL(mentor || student) + 0.25 * T^2 KL(teacher || student)
Option (learned weights, as the paper describes): `kd_aggregate` + `aggregate_ce` in
distill.losses.multi_stage, over (teacher, mentor) starting at aggregate_init.
"""

from __future__ import annotations

from avkd.config import LossTerm, SweepConfig
from avkd.methods.base import GuideTrial, Method
from avkd.models.aggregation import AggregationUnit

MENTOR = "mentor"


class MultiStage(Method):
    key = "multi_stage"

    def guide_trials(self, cfg: SweepConfig) -> list[GuideTrial]:
        return [GuideTrial(MENTOR, float(cfg.distill.methods.multi_stage.mentor_k), student=True)]

    def terms(self, cfg: SweepConfig, guide: str | None = None) -> tuple[list[LossTerm], str]:
        if guide == MENTOR:
            return cfg.distill.methods.multi_stage.mentor_losses, "distill.methods.multi_stage.mentor_losses"
        return super().terms(cfg, guide)

    def aggregation(self, cfg: SweepConfig, names: list[str], in_dim: int) -> AggregationUnit | None:
        return AggregationUnit(names, init=cfg.distill.methods.multi_stage.aggregate_init)  # one global weighting


METHOD = MultiStage()
