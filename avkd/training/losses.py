"""Loss registry (torchdistill-like): a training method is a weighted list of named terms.

Each loss takes a dict of named tensors that the training step fills in:
    logits (B, T, V), targets (B, T)               when the decoder runs
    student_mapped (N, D), teacher_latent (N, D)   when a distillation MLP runs
A new loss is a new entry in LOSSES (and a name in the sweep's `distill.losses`), not a new loop.
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


LOSSES: dict[str, Callable[[Outputs], torch.Tensor]] = {"ce": ce, "rep_l1": rep_l1, "rep_mse": rep_mse}

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
