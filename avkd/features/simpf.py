"""SimPF time pooling of a log-mel spectrogram (Liu et al., ICASSP 2023): the student's audio front end.

All pools take x shaped (B, C, T, F) (time, then mel bins) and return (B, C, ceil(k*T), F); k=1 is
the identity, so the teacher runs through the same code path.

Spectral pooling follows the SimPF reference (specpool2d.py): a 2-D discrete Hartley transform
over (T, F), keep the low time frequencies, transform back. In the unshifted layout the DHT row u
holds frequency u for u < T/2 and u - T above it; a length-n output keeps the first ceil(n/2) rows
(frequencies 0 .. ceil(n/2)-1) and the last floor(n/2) rows (-floor(n/2) .. -1). For even n that is
asymmetric (frequency -n/2 kept, +n/2 dropped), which is why a 1-D time-only DHT does not give the
same result: the reference's 2-D version is the definition used here. No amplitude renormalisation
(both transforms are orthonormal, so the output is ~sqrt(n/T) times the input's scale, as in SimPF).
One deliberate difference: for n == 1 the reference's slice `x[-(1-1):]` selects every row (a
Python quirk); here n == 1 keeps only the DC row.
"""
from __future__ import annotations

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


def spectral_pool(x: torch.Tensor, k: float) -> torch.Tensor:
    """SimPF spectral pooling of the time axis (dim -2) to ceil(k*T) frames; all F kept."""
    T = x.shape[-2]
    n = keep_count(T, k)
    if n == T:
        return x
    rows = torch.tensor(low_rows(T, n), device=x.device)
    return dht2(dht2(x).index_select(-2, rows))


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


def time_pool(x: torch.Tensor, k: float, method: str = "spectral") -> torch.Tensor:
    """Pool (B, C, T, F) to (B, C, ceil(k*T), F) with one of TIME_POOLS."""
    try:
        pool = TIME_POOLS[method]
    except KeyError:
        raise ConfigError(f"features.audio_pool: unknown pooling {method!r} (known: {', '.join(TIME_POOLS)})") from None
    return pool(x, k)
