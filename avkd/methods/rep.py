"""`rep` (the paper): stage 1 fits the MLP alone on L_rep, stage 2 freezes it and trains the decoder on L_CE.

Stage 1 runs up to distill.rep_epochs and early-stops on the validation L_rep; stage 2 runs up to
training.epochs and early-stops on the validation captions.
"""

from __future__ import annotations

from avkd.config import LossTerm, SweepConfig
from avkd.methods.base import Method
from avkd.training.stage import DECODER, MAPPER, Stage


class Rep(Method):
    key = "rep"

    def stages(self, cfg: SweepConfig, guide: str | None = None) -> list[Stage]:
        terms, where = self.terms(cfg, guide)
        return [
            Stage("rep stage 1", frozenset({MAPPER}), tuple(terms), where, "loss", cfg.distill.rep_epochs),
            Stage(
                "rep stage 2",
                frozenset({DECODER}),
                (LossTerm("ce", 1.0),),
                "rep stage 2 loss",
                "captions",
                cfg.training.epochs,
            ),
        ]


METHOD = Rep()
