"""The frozen models a student learns from besides its own input (its *guides*) and their aggregation.

"teacher" is always a guide of a student; methods add others (multi_teacher's extra teachers by name,
multi_stage's "mentor"). A stage's loss terms read `<guide>_logits` and, with an aggregation unit,
`aggregate_logits` / `aggregate_log_weights`; only what the terms read is computed.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from avkd.models.aggregation import AggregationUnit
from avkd.models.captioner import Captioner


class Guides(nn.Module):
    """Frozen guide models + their train-split decoder inputs, and the aggregation unit.

    Only the aggregation unit has parameters; the guides are held outside the module tree.
    """

    def __init__(
        self,
        models: dict[str, Captioner],
        latents: dict[str, torch.Tensor],
        logits_of: list[str],
        aggregation: AggregationUnit | None,
    ):
        super().__init__()
        self.models, self.latents = dict(models), dict(latents)  # plain dicts: not trained, not saved
        self.logits_of, self.aggregation = list(logits_of), aggregation
        for model in self.models.values():
            model.eval()

    def batch_outputs(
        self, videos: torch.Tensor, inverse: torch.Tensor, tokens: torch.Tensor, student_input: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """videos: distinct train rows of the batch; inverse: pair -> video; tokens: <bos> w1 .. (P, T);
        student_input: the student's standardised latents of `videos` (a per-sample unit weighs from them)."""
        out = {}
        wanted = list(dict.fromkeys(self.logits_of + (self.aggregation.names if self.aggregation else [])))
        logits = {}
        with torch.no_grad():
            for name in wanted:
                logits[name] = self.models[name].decoder(self.latents[name][videos][inverse], tokens)
        for name in self.logits_of:
            out[f"{name}_logits"] = logits[name]
        if self.aggregation is not None:
            out["aggregate_logits"] = torch.stack([logits[n] for n in self.aggregation.names])
            if self.aggregation.per_sample:
                out["aggregate_log_weights"] = self.aggregation.log_weights(student_input[inverse])
            else:
                out["aggregate_log_weights"] = self.aggregation.log_weights()
        return out

    def epoch_metrics(self) -> dict[str, float]:
        if self.aggregation is None:
            return {}
        return {f"train/aggregate_w/{name}": w for name, w in self.aggregation.named_weights().items()}
