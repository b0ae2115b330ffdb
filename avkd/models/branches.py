"""Per-modality student branches (fused_to_modal): the student maps audio and video separately.

    student audio  (Da) --MLP--> audio branch  (D)  \\
                                                      concat --Linear--> fused (D) -> decoder
    student visual (Dv) --MLP--> visual branch (D)  /

Each branch lives in the teacher's fused latent space (D = Da + Dv of the teacher), so the teacher's
fused latent can supervise each branch on its own, before fusion (Shao et al., Information 2023).
It replaces the single DistillMLP of `rep`/`rep+ce`: same input (the concatenated student latent),
same output space.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from avkd.models.distill import DistillMLP


class ModalBranches(nn.Module):
    def __init__(
        self,
        audio_dim: int,
        visual_dim: int,
        out_dim: int,
        hidden: tuple[int, int] | list[int] = (1024, 1024),
        activation: str = "relu",
        dropout: float = 0.1,
    ):
        super().__init__()
        self.config = dict(
            audio_dim=audio_dim,
            visual_dim=visual_dim,
            out_dim=out_dim,
            hidden=list(hidden),
            activation=activation,
            dropout=dropout,
        )
        self.audio = DistillMLP(audio_dim, out_dim, hidden, activation, dropout)
        self.visual = DistillMLP(visual_dim, out_dim, hidden, activation, dropout)
        self.fuse = nn.Linear(2 * out_dim, out_dim)

    def parts(self, student_latent: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, Da + Dv) -> {"student_audio", "student_visual", "student_mapped" (the fused latent)}, each (B, D)."""
        audio_dim = self.config["audio_dim"]
        a = self.audio(student_latent[:, :audio_dim])
        v = self.visual(student_latent[:, audio_dim:])
        return {"student_audio": a, "student_visual": v, "student_mapped": self.fuse(torch.cat([a, v], dim=1))}

    def forward(self, student_latent: torch.Tensor) -> torch.Tensor:
        """(B, Da + Dv) -> (B, D): the fused latent the decoder reads."""
        return self.parts(student_latent)["student_mapped"]
