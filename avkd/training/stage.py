"""A training stage as a method declares it, and the tensors a stage produces for its loss terms.

The training loop (loop.py) fits any declared stage; it knows no method by name. Which tensors a
stage produces follows from what it trains and which guides the trial has, so a loss term that reads
something else is a ConfigError when the sweep file is loaded (avkd.methods.check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from avkd.config import LossTerm

MAPPER, DECODER = "mapper", "decoder"


@dataclass(frozen=True)
class Stage:
    name: str  # shown in errors and logs ("rep stage 1")
    trains: frozenset[str]  # MAPPER and/or DECODER (the rest of the model stays frozen)
    terms: tuple[LossTerm, ...]
    where: str  # the config key the terms come from (errors name it), e.g. distill.losses.rep
    # "captions": the validation split's training.val_metric of greedy captions (higher is better);
    # "loss": the stage's own objective on the validation split (lower is better; mapper-only stages).
    stop_on: Literal["captions", "loss"]
    epochs: int
    temperature: float | None = None  # the softmax temperature the KL terms read

    def __post_init__(self):
        if not self.trains or not self.trains <= {MAPPER, DECODER}:
            raise ValueError(f"stage {self.name!r}: trains {set(self.trains)}, expected mapper and/or decoder")
        if (DECODER in self.trains) != (self.stop_on == "captions"):
            raise ValueError(f"stage {self.name!r}: a stage stops on captions exactly when it trains the decoder")


def stage_tensors(
    stage: Stage, mapper_outputs: set[str], guides: list[str], aggregation: bool, early_exit: bool
) -> set[str]:
    """The named tensors a stage's loss terms can read.

    mapper_outputs: what the student's mapper produces (empty for a trial without one); guides:
    the frozen models the trial learns from ("teacher", "mentor", ...); aggregation: the method
    has an aggregation unit over them.
    """
    out = set()
    if MAPPER in stage.trains:
        out |= mapper_outputs | ({"teacher_latent"} if "teacher" in guides else set())
    if DECODER in stage.trains:
        out |= {"logits", "targets"} | ({"exit_logits"} if early_exit else set())
        out |= {f"{g}_logits" for g in guides}
        if aggregation:
            out |= {"aggregate_logits", "aggregate_log_weights"}
    if stage.temperature is not None:
        out.add("temperature")
    return out
