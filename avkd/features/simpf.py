"""SimPF time pooling of a log-mel spectrogram (Liu et al., ICASSP 2023): the student's audio front end.

All pools take x shaped (B, C, T, F) (time, then mel bins) and return (B, C, ceil(k*T), F); k=1 is
the identity, so the teacher runs through the same code path.

Spectral pooling follows the SimPF reference (specpool2d.py): a 2-D discrete Hartley transform
over (T, F), keep the low time frequencies, transform back. In the unshifted layout the DHT row u
holds frequency u for u < T/2 and u - T above it; a length-n output keeps the first ceil(n/2) rows
(frequencies 0 .. ceil(n/2)-1) and the last floor(n/2) rows (-floor(n/2) .. -1). For even n that is
asymmetric (frequency -n/2 kept, +n/2 dropped), which is why a 1-D time-only DHT does not give the
same result: the reference's 2-D version is the definition used here.

Scale: both transforms are orthonormal but over different sizes (T x F forward, n x F back), so the
pooled output is about sqrt(T/n) ~ 1/sqrt(k) times the input's scale: LARGER for k < 1. Exactly,
each mel bin's mean over time is multiplied by sqrt(T/n) (the DC row of the spectrum is kept and its
inverse is normalised by 1/sqrt(n) instead of 1/sqrt(T)); a constant input c comes out as the
constant c*sqrt(T/n), e.g. 3.0 -> 3*sqrt(5) = 6.708 for T=100, k=0.2 (n=20). The reference does not
renormalise (it fine-tunes its backbone, which absorbs the scale); `renorm=True`
(features.simpf_renorm) multiplies the output by sqrt(n/T), which preserves every mel bin's mean
over time exactly. Other content (frame-to-frame variation) keeps only its low frequencies either way.
One deliberate difference: for n == 1 the reference's slice `x[-(1-1):]` selects every row (a
Python quirk); here n == 1 keeps only the DC row.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from avkd.errors import ConfigError
from avkd.features.sampling import keep_count, uniform_indices


def dht2(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal 2-D discrete Hartley transform over the last two dims (its own inverse)."""
    spectrum = torch.fft.fft2(x, dim=(-2, -1), norm="ortho")
    return spectrum.real - spectrum.imag


def low_rows(n_in: int, n_out: int) -> list[int]:
    """Rows of an unshifted length-n_in spectrum that a length-n_out crop keeps (see module doc)."""
    first, last = (n_out + 1) // 2, n_out // 2
    return list(range(first)) + list(range(n_in - last, n_in))


def spectral_pool(x: torch.Tensor, k: float, renorm: bool = False) -> torch.Tensor:
    """SimPF spectral pooling of the time axis (dim -2) to n = ceil(k*T) frames; all F kept.

    renorm=False (the reference): each mel bin's time mean comes out sqrt(T/n) times larger.
    renorm=True: the output is multiplied by sqrt(n/T), so each mel bin's time mean is preserved."""
    T = x.shape[-2]
    n = keep_count(T, k)
    if n == T:
        return x
    rows = torch.tensor(low_rows(T, n), device=x.device)
    pooled = dht2(dht2(x).index_select(-2, rows))
    return pooled * math.sqrt(n / T) if renorm else pooled


def avg_pool(x: torch.Tensor, k: float) -> torch.Tensor:
    """Mean over ceil(k*T) adaptive time windows."""
    n = keep_count(x.shape[-2], k)
    return x if n == x.shape[-2] else F.adaptive_avg_pool2d(x, (n, x.shape[-1]))


def max_pool(x: torch.Tensor, k: float) -> torch.Tensor:
    """Max over ceil(k*T) adaptive time windows."""
    n = keep_count(x.shape[-2], k)
    return x if n == x.shape[-2] else F.adaptive_max_pool2d(x, (n, x.shape[-1]))


def uniform_pool(x: torch.Tensor, k: float) -> torch.Tensor:
    """Keep ceil(k*T) uniformly spaced time frames (the audio analogue of frame down-sampling)."""
    T = x.shape[-2]
    n = keep_count(T, k)
    if n == T:
        return x
    return x.index_select(-2, torch.tensor(uniform_indices(T, n), device=x.device))


TIME_POOLS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "spectral": spectral_pool,
    "avg": avg_pool,
    "max": max_pool,
    "uniform": uniform_pool,
}


def time_pool(x: torch.Tensor, k: float, method: str = "spectral", renorm: bool = False) -> torch.Tensor:
    """Pool (B, C, T, F) to (B, C, ceil(k*T), F) with one of TIME_POOLS (renorm: spectral only)."""
    try:
        pool = TIME_POOLS[method]
    except KeyError:
        raise ConfigError(f"features.audio_pool: unknown pooling {method!r} (known: {', '.join(TIME_POOLS)})") from None
    if renorm and method != "spectral":
        raise ConfigError(f"features.simpf_renorm: only applies to audio_pool: spectral (got {method!r})")
    return spectral_pool(x, k, renorm) if renorm else pool(x, k)
