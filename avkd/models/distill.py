"""The distillation MLP: maps the student's latent into the teacher's latent space (paper: two hidden layers)."""

from __future__ import annotations

import torch
import torch.nn as nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class DistillMLP(nn.Module):
    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: tuple[int, int] | list[int] = (1024, 1024),
        activation: str = "relu",
        dropout: float = 0.1,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
        h1, h2 = hidden
        self.config = dict(in_dim=in_dim, out_dim=out_dim, hidden=[h1, h2], activation=activation, dropout=dropout)
        act = ACTIVATIONS[activation]
        self.net = nn.Sequential(
            nn.Linear(in_dim, h1),
            act(),
            nn.Dropout(dropout),
            nn.Linear(h1, h2),
            act(),
            nn.Dropout(dropout),
            nn.Linear(h2, out_dim),  # linear output: the teacher's (standardised) latents are unbounded
        )

    def forward(self, student_latent: torch.Tensor) -> torch.Tensor:
        """(B, in_dim) -> (B, out_dim), an estimate of the teacher's latent."""
        return self.net(student_latent)
