"""The knowledge aggregation unit of multi-guide methods: normalised weights over frozen guides.

    global     (in_dim None): one learned weight vector w = softmax(a)            DEEVISum's learned option
    per sample (in_dim D):    w(x) = softmax(W x + b) from the student's input    EMTM's released unit

W starts at zero, so every sample starts at the `init` weights (and building the unit draws no
random numbers: adding it leaves a trial's other initial weights unchanged).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class AggregationUnit(nn.Module):
    def __init__(self, names: list[str], init: list[float] | None = None, in_dim: int | None = None):
        super().__init__()
        self.names = list(names)
        w = torch.tensor(init if init is not None else [1.0] * len(names), dtype=torch.float32)
        if w.numel() != len(self.names) or not bool((w > 0).all()):
            raise ValueError(f"aggregation init {init} does not give one positive weight per guide {names}")
        start = torch.log(w / w.sum())
        self.per_sample = in_dim is not None
        if self.per_sample:
            self.proj = nn.Linear(in_dim, len(self.names))
            nn.init.zeros_(self.proj.weight)
            with torch.no_grad():
                self.proj.bias.copy_(start)
        else:
            self.logits = nn.Parameter(start)
        self._last_mean = torch.softmax(start, 0).tolist()

    def log_weights(self, x: torch.Tensor | None = None) -> torch.Tensor:
        """(G,) for a global unit; (G, B) for a per-sample unit given the inputs x (B, D)."""
        if not self.per_sample:
            return torch.log_softmax(self.logits, dim=0)
        if x is None:
            raise ValueError("a per-sample aggregation unit needs the inputs it weighs")
        logw = torch.log_softmax(self.proj(x), dim=1)
        self._last_mean = logw.detach().exp().mean(0).tolist()
        return logw.T

    def named_weights(self) -> dict[str, float]:
        """The weights (per-sample unit: their mean over the last batch it weighed)."""
        if not self.per_sample:
            return dict(zip(self.names, self.log_weights().exp().tolist()))
        return dict(zip(self.names, self._last_mean))
