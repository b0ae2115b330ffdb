"""A feature variant's latent table: what extraction produces and every trial reads.

Its own light module (numpy only), so a trial worker loads its inputs without importing the
extractors (torchvision, PANNs, decord and PyAV: seconds per Ray worker).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avkd.errors import DataError
from avkd.features.cache import atomic_savez


@dataclass
class LatentTable:
    """One feature variant (teacher k=1.0, or a student k) for a list of videos."""

    k: float
    pool: str
    video_ids: list[str]
    audio: np.ndarray  # (N, D) float32: the audio model's embedding (D = 512 Cnn10, 2048 Cnn14)
    visual: np.ndarray  # (N, 2048) float32: mean of the selected frames' Inception features
    no_audio: list[str] = field(default_factory=list)  # clip had no audio stream (silence was used)
    errors: list[dict] = field(default_factory=list)  # [{"video_id", "path", "reason"}], excluded
    # {"inception": "pretrained"|"random", <audio model, e.g. "cnn10">: ..., "fingerprint": ...}
    weights: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """One .npz (arrays + a JSON string), written atomically."""
        meta = {
            "k": self.k,
            "pool": self.pool,
            "no_audio": self.no_audio,
            "errors": self.errors,
            "weights": self.weights,
        }
        atomic_savez(
            Path(path),
            video_ids=np.array(self.video_ids, dtype=str),
            audio=self.audio.astype(np.float32),
            visual=self.visual.astype(np.float32),
            meta=np.array(json.dumps(meta)),
        )

    @classmethod
    def load(cls, path: str | Path) -> "LatentTable":
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                return cls(
                    k=float(meta["k"]),
                    pool=meta["pool"],
                    video_ids=[str(v) for v in data["video_ids"]],
                    audio=data["audio"],
                    visual=data["visual"],
                    no_audio=meta["no_audio"],
                    errors=meta["errors"],
                    weights=meta["weights"],
                )
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"{path}: not a readable latent table ({type(err).__name__}: {err})") from None
