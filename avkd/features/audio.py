"""Audio features: PANNs Cnn14 with the SimPF pooling between its log-mel front end and its conv body.

Forward (as Cnn14.forward in eval mode, split in two so the student's pooling can sit in between,
where the SimPF reference puts it):
    waveform -> STFT -> log-mel -> bn0 (over mel bins)            `logmel`
    -> SimPF time pooling (k < 1)                                  `simpf.time_pool`
    -> 6 conv blocks -> mean over mel -> max+mean over time -> relu(fc1) = 2048-d embedding   `conv_body`
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import tempfile
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

from avkd.errors import WeightsError
from avkd.features.simpf import time_pool

log = logging.getLogger(__name__)

CNN14_ARGS = dict(sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000,
                  classes_num=527)
HOP = CNN14_ARGS["hop_size"]
# Fewest log-mel frames the conv body accepts (~0.32 s of audio), measured: 31 raise "Output size is
# too small" in conv_block5's 2x2 pool (31 -> 15 -> 7 -> 3 -> 1 -> 0), 32 work (32 -> ... -> 1).
# tests/test_features_audio.py checks both sides of the limit.
MIN_TIME_FRAMES = 32
MIN_SAMPLES = CNN14_ARGS["window_size"]


def cnn14_class() -> type:
    """The Cnn14 class, imported without running panns_inference/__init__.py.

    That __init__ imports `inference`, which wgets class labels into ~/panns_data at import time. A bare
    package object whose __path__ points at the installed folder lets `panns_inference.models` import
    on its own. models.py also imports matplotlib.pyplot, which would build a font cache under ~:
    point matplotlib at the temp dir unless the caller already configured it.
    """
    if "panns_inference.models" not in sys.modules:
        spec = importlib.util.find_spec("panns_inference")
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError("panns_inference is not installed (needed for the Cnn14 audio extractor)")
        if "panns_inference" not in sys.modules:
            package = types.ModuleType("panns_inference")
            package.__path__ = list(spec.submodule_search_locations)
            package.__spec__ = spec
            package.__package__ = "panns_inference"
            sys.modules["panns_inference"] = package
        if "matplotlib" not in sys.modules:
            os.environ.setdefault("MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), "avkd-matplotlib"))
    return importlib.import_module("panns_inference.models").Cnn14


def new_cnn14() -> nn.Module:
    """A Cnn14 with the library's own initialisation (from torch's global RNG), in eval mode."""
    return cnn14_class()(**CNN14_ARGS).eval()


def logmel(model: nn.Module, waves: torch.Tensor) -> torch.Tensor:
    """(B, samples) float waveforms at 32 kHz -> (B, 1, T, 64) log-mel after bn0; T = samples // 320 + 1."""
    x = model.logmel_extractor(model.spectrogram_extractor(waves))
    return model.bn0(x.transpose(1, 3)).transpose(1, 3)


def conv_body(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, 1, T, 64) -> (B, 2048) embedding (relu(fc1), PANNs' `embedding`), eval mode (no dropout)."""
    for i in range(1, 7):
        x = getattr(model, f"conv_block{i}")(x, pool_size=(2, 2) if i < 6 else (1, 1), pool_type="avg")
    x = x.mean(dim=3)
    x = x.max(dim=2).values + x.mean(dim=2)
    return F.relu(model.fc1(x))


def pad_time(x: torch.Tensor, min_frames: int = MIN_TIME_FRAMES) -> torch.Tensor:
    """Repeat a too-short (B, C, T, F) spectrogram along time up to min_frames.

    Tiling keeps the clip's own statistics (silence padding would add -100 dB frames that dominate
    the max/mean over time)."""
    T = x.shape[-2]
    if T >= min_frames:
        return x
    reps = -(-min_frames // T)
    return x.repeat(1, 1, reps, 1)[..., :min_frames, :]


def pooled_inputs(model: nn.Module, wave: torch.Tensor, ks: list[float], pool: str, name: str = "") -> list[torch.Tensor]:
    """One clip (samples,) -> its (1, 1, T', 64) conv-body input per k: one log-mel, pooled per k,
    repeated up to MIN_TIME_FRAMES when too short (logged, naming the clip)."""
    if wave.shape[-1] < MIN_SAMPLES:  # the STFT's reflect padding needs more than half a window
        log.info("%s: audio clip of %d samples zero-padded to %d", name or "clip", wave.shape[-1], MIN_SAMPLES)
        wave = F.pad(wave, (0, MIN_SAMPLES - wave.shape[-1]))
    mel = logmel(model, wave[None])
    inputs = []
    for k in ks:
        x = time_pool(mel, k, pool)
        if x.shape[-2] < MIN_TIME_FRAMES:
            log.info("%s: audio too short for Cnn14 at k=%g (%d log-mel frames < %d): repeated to %d",
                     name or "clip", k, x.shape[-2], MIN_TIME_FRAMES, MIN_TIME_FRAMES)
            x = pad_time(x)
        inputs.append(x)
    return inputs


def embed_inputs(model: nn.Module, inputs: list[torch.Tensor], batch: int) -> list[torch.Tensor]:
    """Run the conv body on (1, 1, T_i, 64) inputs; equal-length inputs share a forward of up to `batch`.

    Different lengths are never padded together: a clip's embedding must not depend on its batch."""
    out: list[torch.Tensor | None] = [None] * len(inputs)
    by_length: dict[int, list[int]] = {}
    for i, x in enumerate(inputs):
        by_length.setdefault(x.shape[-2], []).append(i)
    for members in by_length.values():
        for start in range(0, len(members), batch):
            chunk = members[start:start + batch]
            emb = conv_body(model, torch.cat([inputs[i] for i in chunk]))
            for i, e in zip(chunk, emb):
                out[i] = e
    return out  # type: ignore[return-value]
