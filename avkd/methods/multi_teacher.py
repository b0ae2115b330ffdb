"""`multi_teacher` (Liang, Yang, Lu, Li, *EMTM*, 2023): several teachers aggregated into one target.

Besides the audio-visual teacher, extra teachers (audio-only, visual-only, or at another frame rate;
distill.methods.multi_teacher.teachers) are trained as guide trials. Their next-word distributions
are combined by an aggregation unit that predicts the weights PER SAMPLE from the student's input
(EMTM's released unit), trained by `aggregate_ce` (the mixture's caption loss on the true words).
Default = the released loss: task CE + 0.1 * KL(ensemble || student) at T = 1 (`kd_aggregate`, no
T^2). `share_encoder_with` ties the student's latent projections to one teacher's (frozen), as EMTM
shares the student's encoder with one teacher.

(The first version's `rep_aggregate`, L1 to the weighted mean of the teachers' latents, is gone:
single-modality teachers' latents are the AV teacher's with one part zeroed, so that target was a
shrunken copy of the teacher latent and carried no extra knowledge.)
"""

from __future__ import annotations

from avkd.config import SweepConfig
from avkd.methods.base import GuideTrial, Method
from avkd.models.aggregation import AggregationUnit


class MultiTeacher(Method):
    key = "multi_teacher"

    def guide_trials(self, cfg: SweepConfig) -> list[GuideTrial]:
        return [GuideTrial(t.name, float(t.k), t.modality) for t in cfg.distill.methods.multi_teacher.teachers]

    def aggregation(self, cfg: SweepConfig, names: list[str], in_dim: int) -> AggregationUnit | None:
        return AggregationUnit(names, in_dim=in_dim)

    def shared_encoder(self, cfg: SweepConfig) -> str | None:
        return cfg.distill.methods.multi_teacher.share_encoder_with


METHOD = MultiTeacher()
