"""Audio features: a PANNs CNN (Cnn10 or Cnn14) with the SimPF pooling between its log-mel front end and its conv body.

Forward (as the PANNs model's forward in eval mode, split in two so the student's pooling can sit in
between, where the SimPF reference puts it):
    waveform -> STFT -> log-mel -> bn0 (over mel bins)            `logmel` (torch.stft, see power_spectrogram)
    -> SimPF time pooling (k < 1)                                  `simpf.time_pool`
    -> conv blocks -> mean over mel -> pooling over time -> relu(fc1) = embedding   `conv_body`
Cnn10: 4 conv blocks (2 conv layers each) + fc1 + fc_audioset, 512-d embedding (the paper's "10
layers", the SimPF reference's backbone). Cnn14: 6 blocks, 2048-d. Pooling over time:
"panns" = PANNs' own max + mean, "mean" = the paper's mean operator.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
import tempfile
import types
import typing
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from avkd.config import AUDIO_MODELS, AudioTimePool
from avkd.errors import ConfigError, WeightsError
from avkd.features import simpf

log = logging.getLogger(__name__)

PANNS_ARGS = dict(
    sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50, fmax=14000, classes_num=527
)  # the AudioSet checkpoints' settings (both backbones)
HOP = PANNS_ARGS["hop_size"]
MIN_SAMPLES = PANNS_ARGS["window_size"]
# Which implementation computes `logmel`'s numbers; part of the audio cache key (avkd.features.cache),
# so a changed front end never reuses embeddings computed by another. Bump when its values change.
# "stft": torch.stft (PANNs' own conv-based STFT was the unnamed first one).
LOGMEL_FRONT_END = "stft"


@dataclass(frozen=True)
class Backbone:
    """What differs between the PANNs CNNs used here (the rest is the same code)."""

    channels: tuple[int, ...]  # output channels of conv_block1..N
    pools: tuple[tuple[int, int], ...]  # their 2-D avg-pool sizes
    # Fewest log-mel frames the conv body accepts, measured (tests/test_features_audio.py checks both
    # sides): each 2x2 pool floors T/2, and the last pooled size must stay >= 1.
    min_time_frames: int

    @property
    def embed_dim(self) -> int:
        return self.channels[-1]


BACKBONES: dict[str, Backbone] = {
    "cnn10": Backbone((64, 128, 256, 512), ((2, 2),) * 4, min_time_frames=16),
    "cnn14": Backbone((64, 128, 256, 512, 1024, 2048), ((2, 2),) * 5 + ((1, 1),), min_time_frames=32),
}
assert tuple(BACKBONES) == AUDIO_MODELS, "audio backbones out of step with avkd.config.AudioModel"
AUDIO_TIME_POOLS = typing.get_args(AudioTimePool)
LABELS = {name: name.capitalize() for name in AUDIO_MODELS}  # "cnn10" -> "Cnn10", as PANNs names them


def backbone(model: nn.Module) -> Backbone:
    """The Backbone of a model built here (PANNs' class names are the config names, lower-cased)."""
    return BACKBONES[type(model).__name__.lower()]


def panns_models() -> types.ModuleType:
    """panns_inference.models, imported without running panns_inference/__init__.py.

    That __init__ imports `inference`, which wgets class labels into ~/panns_data at import time. A bare
    package object whose __path__ points at the installed folder lets `panns_inference.models` import
    on its own. models.py also imports matplotlib.pyplot, which would build a font cache under ~:
    point matplotlib at the temp dir unless the caller already configured it.
    """
    if "panns_inference.models" not in sys.modules:
        spec = importlib.util.find_spec("panns_inference")
        if spec is None or not spec.submodule_search_locations:
            raise WeightsError("panns_inference is not installed (needed for the PANNs audio extractor)")
        if "panns_inference" not in sys.modules:
            package = types.ModuleType("panns_inference")
            package.__path__ = list(spec.submodule_search_locations)
            package.__spec__ = spec
            package.__package__ = "panns_inference"
            sys.modules["panns_inference"] = package
        if "matplotlib" not in sys.modules:
            os.environ.setdefault("MPLCONFIGDIR", os.path.join(tempfile.gettempdir(), "avkd-matplotlib"))
    return importlib.import_module("panns_inference.models")


def cnn14_class() -> type:
    return panns_models().Cnn14


def cnn10_class() -> type:
    """PANNs Cnn10 (audioset_tagging_cnn's layout and parameter names, so Cnn10_mAP=0.380.pth loads
    strictly), built from panns_inference's parts: that package ships Cnn14 but not Cnn10."""
    global _Cnn10
    if _Cnn10 is None:
        pm = panns_models()

        class Cnn10(nn.Module):
            def __init__(self, sample_rate, window_size, hop_size, mel_bins, fmin, fmax, classes_num):
                super().__init__()
                self.spectrogram_extractor = pm.Spectrogram(
                    n_fft=window_size,
                    hop_length=hop_size,
                    win_length=window_size,
                    window="hann",
                    center=True,
                    pad_mode="reflect",
                    freeze_parameters=True,
                )
                self.logmel_extractor = pm.LogmelFilterBank(
                    sr=sample_rate,
                    n_fft=window_size,
                    n_mels=mel_bins,
                    fmin=fmin,
                    fmax=fmax,
                    ref=1.0,
                    amin=1e-10,
                    top_db=None,
                    freeze_parameters=True,
                )
                self.spec_augmenter = pm.SpecAugmentation(
                    time_drop_width=64, time_stripes_num=2, freq_drop_width=8, freq_stripes_num=2
                )
                self.bn0 = nn.BatchNorm2d(mel_bins)
                channels = (1, *BACKBONES["cnn10"].channels)
                for i in range(1, len(channels)):
                    setattr(self, f"conv_block{i}", pm.ConvBlock(in_channels=channels[i - 1], out_channels=channels[i]))
                self.fc1 = nn.Linear(channels[-1], channels[-1], bias=True)
                self.fc_audioset = nn.Linear(channels[-1], classes_num, bias=True)
                pm.init_bn(self.bn0)
                pm.init_layer(self.fc1)
                pm.init_layer(self.fc_audioset)

            def forward(self, waves: torch.Tensor) -> dict[str, torch.Tensor]:
                """PANNs' eval-mode outputs (no SpecAugment, mixup or dropout: only used frozen here)."""
                x = F.relu(self.fc1(time_pooled(self, logmel(self, waves), "panns")))
                return {"clipwise_output": torch.sigmoid(self.fc_audioset(x)), "embedding": x}

        _Cnn10 = Cnn10
    return _Cnn10


_Cnn10: type | None = None
MODEL_CLASSES = {"cnn10": cnn10_class, "cnn14": cnn14_class}


def new_audio_model(name: str) -> nn.Module:
    """A PANNs `name` (cnn10 | cnn14) with the library's initialisation (torch's global RNG), eval mode."""
    return MODEL_CLASSES[name]()(**PANNS_ARGS).eval()


def power_spectrogram(waves: torch.Tensor) -> torch.Tensor:
    """(B, samples) -> (B, 1, T, 513) |STFT|^2 with the settings of PANNs' `spectrogram_extractor`
    (torchlibrosa's Spectrogram: 1024-point periodic Hann window, hop 320, centred, reflect padding).

    torch.stft instead of that module's STFT-as-two-1-D-convolutions: the same values (relative
    difference ~1e-6, tests/test_features_audio.py) at about a tenth of the cost on a CPU, where the
    conv STFT was a fixed ~15 ms per clip whatever the student's k."""
    n_fft = PANNS_ARGS["window_size"]
    window = torch.hann_window(n_fft, periodic=True, device=waves.device, dtype=waves.dtype)
    z = torch.stft(waves, n_fft, HOP, n_fft, window, center=True, pad_mode="reflect", return_complex=True)
    return (z.real**2 + z.imag**2).transpose(1, 2)[:, None]


def logmel(model: nn.Module, waves: torch.Tensor) -> torch.Tensor:
    """(B, samples) float waveforms at 32 kHz -> (B, 1, T, 64) log-mel after bn0; T = samples // 320 + 1.

    The mel filterbank and dB conversion are the model's own `logmel_extractor` (PANNs' weights)."""
    x = model.logmel_extractor(power_spectrogram(waves))
    return model.bn0(x.transpose(1, 3)).transpose(1, 3)


def time_pooled(model: nn.Module, x: torch.Tensor, time_pool: str) -> torch.Tensor:
    """(B, 1, T, 64) -> (B, C): conv blocks (eval mode, no dropout), mean over mel, then over time
    max + mean ("panns", PANNs' own) or mean ("mean", the paper's)."""
    for i, pool in enumerate(backbone(model).pools, start=1):
        x = getattr(model, f"conv_block{i}")(x, pool_size=pool, pool_type="avg")
    x = x.mean(dim=3)
    if time_pool == "panns":
        return x.max(dim=2).values + x.mean(dim=2)
    if time_pool == "mean":
        return x.mean(dim=2)
    raise ConfigError(f"features.audio_time_pool: unknown pooling {time_pool!r} (known: {', '.join(AUDIO_TIME_POOLS)})")


def conv_body(model: nn.Module, x: torch.Tensor, time_pool: str = "panns") -> torch.Tensor:
    """(B, 1, T, 64) -> (B, D) embedding (relu(fc1), PANNs' `embedding`; D = 512 Cnn10, 2048 Cnn14)."""
    return F.relu(model.fc1(time_pooled(model, x, time_pool)))


def pad_time(x: torch.Tensor, min_frames: int) -> torch.Tensor:
    """Repeat a too-short (B, C, T, F) spectrogram along time up to min_frames.

    Tiling keeps the clip's own statistics (silence padding would add -100 dB frames that dominate
    the max/mean over time)."""
    T = x.shape[-2]
    if T >= min_frames:
        return x
    reps = -(-min_frames // T)
    return x.repeat(1, 1, reps, 1)[..., :min_frames, :]


def pooled_inputs(
    model: nn.Module, wave: torch.Tensor, ks: list[float], pool: str, name: str = "", renorm: bool = False
) -> list[torch.Tensor]:
    """One clip (samples,) -> its (1, 1, T', 64) conv-body input per k: one log-mel, pooled per k
    (renorm: features.simpf_renorm), repeated up to the backbone's fewest frames when too short
    (logged, naming the clip)."""
    if wave.shape[-1] < MIN_SAMPLES:  # the STFT's reflect padding needs more than half a window
        log.info("%s: audio clip of %d samples zero-padded to %d", name or "clip", wave.shape[-1], MIN_SAMPLES)
        wave = F.pad(wave, (0, MIN_SAMPLES - wave.shape[-1]))
    mel = logmel(model, wave[None])
    min_frames = backbone(model).min_time_frames
    inputs = []
    for k in ks:
        x = simpf.time_pool(mel, k, pool, renorm)
        if x.shape[-2] < min_frames:
            log.info(
                "%s: audio too short for %s at k=%g (%d log-mel frames < %d): repeated to %d",
                name or "clip",
                type(model).__name__,
                k,
                x.shape[-2],
                min_frames,
                min_frames,
            )
            x = pad_time(x, min_frames)
        inputs.append(x)
    return inputs


def embed_inputs(
    model: nn.Module, inputs: list[torch.Tensor], batch: int, time_pool: str = "panns"
) -> list[torch.Tensor]:
    """Run the conv body on (1, 1, T_i, 64) inputs; equal-length inputs share a forward of up to `batch`.

    Different lengths are never padded together: a clip's embedding must not depend on its batch."""
    out: list[torch.Tensor | None] = [None] * len(inputs)
    by_length: dict[int, list[int]] = {}
    for i, x in enumerate(inputs):
        by_length.setdefault(x.shape[-2], []).append(i)
    for members in by_length.values():
        for start in range(0, len(members), batch):
            chunk = members[start : start + batch]
            emb = conv_body(model, torch.cat([inputs[i] for i in chunk]), time_pool)
            for i, e in zip(chunk, emb):
                out[i] = e
    return out  # type: ignore[return-value]
