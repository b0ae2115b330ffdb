"""The model a trial trains and saves: raw latent -> standardise -> [mapper] -> caption decoder.

Also its checkpoint format (checkpoint/best.pt of every trial), read back by students (their
teacher and guides) and by `python -m avkd evaluate`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from avkd.data.vocab import Vocabulary
from avkd.errors import DataError
from avkd.models.branches import ModalBranches
from avkd.models.decode import decode
from avkd.models.decoder import CaptionDecoder
from avkd.models.distill import DistillMLP

MAPPERS = {"DistillMLP": DistillMLP, "ModalBranches": ModalBranches}  # mapper kinds a checkpoint may hold


class Captioner(nn.Module):
    """raw latent -> standardise (train statistics) -> [mapper] -> decoder.

    The teacher and blind baseline have no mapper; the blind baseline replaces every latent with zeros,
    an audio-only (visual-only) teacher the visual (audio) part. `mlp` is the student's mapper (a
    DistillMLP, or the per-modality ModalBranches of fused_to_modal). `frozen` names submodules no
    stage trains (multi_teacher's shared encoder).
    """

    def __init__(
        self,
        decoder: CaptionDecoder,
        mean: torch.Tensor,
        std: torch.Tensor,
        mlp: DistillMLP | ModalBranches | None = None,
        blind: bool = False,
        modality: str = "av",
        audio_dim: int | None = None,
    ):
        super().__init__()
        if modality not in ("av", "audio", "visual") or (modality != "av" and audio_dim is None):
            raise ValueError(f"modality {modality!r}: expected av, or audio / visual with audio_dim")
        self.decoder, self.mlp, self.blind = decoder, mlp, blind
        self.modality, self.audio_dim = modality, audio_dim
        self.frozen: tuple[str, ...] = ()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())

    def standardise(self, raw: torch.Tensor) -> torch.Tensor:
        if self.blind:
            return torch.zeros_like(raw)
        x = (raw - self.mean) / self.std
        if self.modality == "audio":
            x = torch.cat([x[:, : self.audio_dim], torch.zeros_like(x[:, self.audio_dim :])], dim=1)
        elif self.modality == "visual":
            x = torch.cat([torch.zeros_like(x[:, : self.audio_dim]), x[:, self.audio_dim :]], dim=1)
        return x

    def decoder_input(self, raw: torch.Tensor) -> torch.Tensor:
        x = self.standardise(raw)
        return self.mlp(x) if self.mlp is not None else x

    @torch.no_grad()
    def caption(
        self,
        audio: np.ndarray,
        visual: np.ndarray,
        vocab: Vocabulary,
        beam_size: int = 3,
        max_len: int = 20,
        length_penalty: float = 0.0,
    ) -> list[str]:
        """Captions for (N, Da) audio and (N, Dv) visual latents (inference on any device)."""
        self.eval()
        raw = torch.from_numpy(np.concatenate([audio, visual], axis=1)).float().to(self.mean.device)
        ids = decode(self.decoder, self.decoder_input(raw), beam_size, max_len, length_penalty)
        return [" ".join(vocab.decode(t)) for t in ids]


def latent_stats(latents: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean/std of the train split (random-weight backbones give badly scaled features)."""
    mean = latents.mean(axis=0)
    std = latents.std(axis=0)
    std[std < 1e-6] = 1.0  # a constant dimension only gets centred (to 0), not blown up
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


def save_checkpoint(path: Path, model: Captioner, vocab: Vocabulary, info: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": "avkd-captioner-1",
            "decoder_config": model.decoder.config,
            "decoder_state": model.decoder.state_dict(),
            "mlp_kind": type(model.mlp).__name__ if model.mlp is not None else None,
            "mlp_config": model.mlp.config if model.mlp is not None else None,
            "mlp_state": model.mlp.state_dict() if model.mlp is not None else None,
            "mean": model.mean.cpu(),
            "std": model.std.cpu(),
            "blind": model.blind,
            "modality": model.modality,
            "audio_dim": model.audio_dim,
            "vocab": list(vocab.words),
            "info": info,
        },
        path,
    )


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[Captioner, Vocabulary, dict]:
    """A saved trial model -> (Captioner in eval mode, its vocabulary, info dict)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint")
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file
        raise DataError(f"{path}: unreadable checkpoint ({type(err).__name__}: {str(err)[:120]})") from None
    if not isinstance(ck, dict) or ck.get("format") != "avkd-captioner-1":
        raise DataError(f"{path}: not an avkd caption-model checkpoint")
    decoder = CaptionDecoder(**ck["decoder_config"])
    decoder.load_state_dict(ck["decoder_state"])
    mlp = None
    if ck["mlp_config"] is not None:
        mlp = MAPPERS[ck.get("mlp_kind") or "DistillMLP"](**ck["mlp_config"])
        mlp.load_state_dict(ck["mlp_state"])
    model = (
        Captioner(decoder, ck["mean"], ck["std"], mlp, ck["blind"], ck.get("modality", "av"), ck.get("audio_dim"))
        .to(device)
        .eval()
    )
    return model, Vocabulary(ck["vocab"]), ck["info"]
