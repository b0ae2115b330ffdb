"""`fused_to_modal` (Shao, Wan, Zong, *Multimodal KD for video QA*, Information 14(6):328, 2023).

The student maps audio and video by separate branches (avkd/models/branches.py) and the teacher's
fused latent supervises each branch before fusion. Default = the released code (VQAKD, a DualVGR
fork): task CE + KL(softmax(teacher_fused / T) || softmax(branch / T)) for each branch, T = 1,
weight 1, no T^2 factor (`modal_kl`). Variants: `modal_kl_t2` (T^2-scaled, this harness's first
version) and `modal_l1` (regression), chosen in distill.losses.fused_to_modal.
"""

from __future__ import annotations

import torch.nn as nn

from avkd.config import SweepConfig
from avkd.methods.base import Method
from avkd.models.branches import ModalBranches


class FusedToModal(Method):
    key = "fused_to_modal"
    mapper_outputs = frozenset({"student_mapped", "student_audio", "student_visual"})

    def mapper(self, cfg: SweepConfig, audio_dim: int, visual_dim: int, teacher_dim: int) -> nn.Module:
        mlp = cfg.distill.mlp
        return ModalBranches(audio_dim, visual_dim, teacher_dim, mlp.hidden, mlp.activation, mlp.dropout)


METHOD = FusedToModal()
