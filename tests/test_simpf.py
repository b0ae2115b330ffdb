"""SimPF time pooling: shapes, identity at k=1, linearity, and agreement with a direct Hartley computation."""

import math

import numpy as np
import pytest
import torch

from avkd.errors import ConfigError
from avkd.features.simpf import TIME_POOLS, dht2, low_rows, spectral_pool, time_pool


def direct_dht2(x: np.ndarray) -> np.ndarray:
    """Orthonormal 2-D DHT by explicit cos+sin sums (no FFT): H[u,v] = sum x[t,f] cas(2pi(ut/T + vf/F))."""
    T, F = x.shape
    t, f = np.arange(T), np.arange(F)
    phase = 2 * np.pi * (np.outer(t, t)[:, :, None, None] / T + np.outer(f, f)[None, None, :, :] / F)
    # phase[u, t, v, f]
    cas = np.cos(phase) + np.sin(phase)
    return np.einsum("tf,utvf->uv", x, cas) / math.sqrt(T * F)


def direct_spectral_pool(x: np.ndarray, n: int) -> np.ndarray:
    """Independent derivation: keep the signed time frequencies u in [-floor(n/2), ceil(n/2)-1]; the
    length-T spectrum holds u at row u mod T, the length-n one at row u mod n."""
    H = direct_dht2(x)
    cropped = np.zeros((n, x.shape[1]))
    for u in range(-(n // 2), (n + 1) // 2):
        cropped[u % n] = H[u % x.shape[0]]
    return direct_dht2(cropped)


def reference_crop_rows(T: int, n: int) -> list[int]:
    """The SimPF reference's _spectral_crop slicing of the height (specpool2d.py), for n > 1."""
    rows = list(range(T))
    c = math.ceil(n / 2)
    if n % 2 == 1:
        return rows[:c] + rows[-(c - 1) :]
    return rows[:c] + rows[-c:]


@pytest.mark.parametrize("T, k", [(10, 0.2), (10, 0.6), (11, 0.4), (12, 0.5), (9, 0.8), (7, 0.3), (8, 0.1)])
def test_spectral_pool_matches_direct_hartley(T, k):
    rng = np.random.default_rng(T)
    x = rng.normal(size=(T, 6))
    n = math.ceil(round(k * T, 9))
    got = spectral_pool(torch.tensor(x)[None, None], k)[0, 0].numpy()
    assert got.shape == (n, 6)
    np.testing.assert_allclose(got, direct_spectral_pool(x, n), atol=1e-10)


@pytest.mark.parametrize("T, n", [(100, 20), (100, 21), (33, 8), (33, 7), (64, 2), (64, 3)])
def test_crop_rows_match_the_reference_slicing(T, n):
    assert low_rows(T, n) == reference_crop_rows(T, n)
    # first ceil(n/2) rows and last floor(n/2) rows, for odd and even n alike
    assert low_rows(T, n)[: (n + 1) // 2] == list(range((n + 1) // 2))
    assert len(low_rows(T, n)) == n


def test_stack_definition_fft2_real_minus_imag():
    x = torch.randn(2, 1, 13, 5, dtype=torch.float64)
    spec = torch.fft.fft2(x, norm="ortho")
    torch.testing.assert_close(dht2(x), spec.real - spec.imag)
    np.testing.assert_allclose(dht2(x)[0, 0].numpy(), direct_dht2(x[0, 0].numpy()), atol=1e-10)
    torch.testing.assert_close(dht2(dht2(x)), x)  # its own inverse


def test_shape_identity_and_linearity():
    x = torch.randn(3, 1, 101, 64, dtype=torch.float64)
    y = torch.randn(3, 1, 101, 64, dtype=torch.float64)
    for k, n in [(0.2, 21), (0.4, 41), (0.6, 61), (0.8, 81)]:
        assert spectral_pool(x, k).shape == (3, 1, n, 64)
        torch.testing.assert_close(spectral_pool(2 * x - 3 * y, k), 2 * spectral_pool(x, k) - 3 * spectral_pool(y, k))
    assert spectral_pool(x, 1.0) is x
    # a batch is pooled item by item
    torch.testing.assert_close(spectral_pool(x, 0.3)[1:2], spectral_pool(x[1:2], 0.3))


def test_no_amplitude_renormalisation():
    # a constant c over (T, F) keeps only the DC term: c*sqrt(TF) -> c*sqrt(TF)/sqrt(nF) = c*sqrt(T/n)
    x = torch.full((1, 1, 50, 4), 2.0, dtype=torch.float64)
    out = spectral_pool(x, 0.2)
    torch.testing.assert_close(out, torch.full((1, 1, 10, 4), 2.0 * math.sqrt(5), dtype=torch.float64))


def test_single_output_frame_keeps_only_dc():
    x = torch.randn(1, 1, 4, 3, dtype=torch.float64)
    out = spectral_pool(x, 0.2)  # ceil(0.8) = 1
    assert out.shape == (1, 1, 1, 3)
    np.testing.assert_allclose(out[0, 0].numpy(), direct_spectral_pool(x[0, 0].numpy(), 1), atol=1e-12)


def test_low_frequency_content_survives():
    # a slow time trend is kept (up to the sqrt(T/n) scale); a per-frame alternation is removed
    T, n = 40, 10
    t = torch.arange(T, dtype=torch.float64)
    slow = torch.cos(2 * math.pi * t / T)[None, None, :, None].repeat(1, 1, 1, 2)
    out = spectral_pool(slow, n / T)[0, 0, :, 0]
    expected = math.sqrt(T / n) * torch.cos(2 * math.pi * torch.arange(n, dtype=torch.float64) / n)
    torch.testing.assert_close(out, expected)
    fast = torch.cos(math.pi * t)[None, None, :, None]
    assert spectral_pool(fast, n / T).abs().max() < 1e-9


@pytest.mark.parametrize("method", ["avg", "max", "uniform"])
def test_other_pools(method):
    x = torch.arange(20, dtype=torch.float32).reshape(1, 1, 10, 2)
    out = time_pool(x, 0.2, method)
    assert out.shape == (1, 1, 2, 2)
    expected = {
        "avg": [[4.0, 5.0], [14.0, 15.0]],
        "max": [[8.0, 9.0], [18.0, 19.0]],
        "uniform": [[0.0, 1.0], [10.0, 11.0]],
    }[method]
    torch.testing.assert_close(out[0, 0], torch.tensor(expected))
    assert time_pool(x, 1.0, method) is x
    assert time_pool(x, 0.55, method).shape[-2] == 6


def test_registry_and_unknown_pool():
    assert set(TIME_POOLS) == {"spectral", "avg", "max", "uniform"}
    with pytest.raises(ConfigError, match="features.audio_pool: unknown pooling 'median'"):
        time_pool(torch.zeros(1, 1, 4, 2), 0.5, "median")


def test_scale_factor_of_a_constant_input_matches_the_hand_computation():
    # The example: 3.0 over T=100 frames at k=0.2 (n=20). Only the DC coefficient is non-zero:
    # forward: H[0,0] = 3*T*F/sqrt(T*F) = 3*sqrt(T*F); inverse over (n, F): 3*sqrt(T*F)/sqrt(n*F) = 3*sqrt(T/n).
    x = torch.full((1, 1, 100, 64), 3.0, dtype=torch.float64)
    out = spectral_pool(x, 0.2)
    assert out.shape == (1, 1, 20, 64)
    torch.testing.assert_close(out, torch.full_like(out, 3.0 * math.sqrt(5.0)))
    assert round(float(out[0, 0, 0, 0]), 2) == 6.71  # larger than the input: ~1/sqrt(k), not sqrt(k)
    # renorm=True multiplies by sqrt(n/T): the constant comes back as itself
    torch.testing.assert_close(spectral_pool(x, 0.2, renorm=True), torch.full_like(out, 3.0))


@pytest.mark.parametrize("T, k", [(100, 0.2), (101, 0.4), (37, 0.6), (64, 0.8), (10, 0.1)])
def test_renorm_preserves_each_mel_bins_time_mean(T, k):
    x = torch.randn(2, 1, T, 8, dtype=torch.float64) + torch.linspace(-5, 5, 8, dtype=torch.float64)
    n = math.ceil(round(k * T, 9))
    plain, renormed = spectral_pool(x, k), spectral_pool(x, k, renorm=True)
    # without renorm each mel bin's time mean is scaled by exactly sqrt(T/n); with it, preserved
    torch.testing.assert_close(plain.mean(dim=-2), math.sqrt(T / n) * x.mean(dim=-2))
    torch.testing.assert_close(renormed.mean(dim=-2), x.mean(dim=-2))
    torch.testing.assert_close(renormed, plain * math.sqrt(n / T))
    # ... but not the energy per frame (the high time frequencies are dropped), as the docstring says
    assert not torch.allclose(renormed.pow(2).mean(dim=(-2, -1)), x.pow(2).mean(dim=(-2, -1)))
    assert spectral_pool(x, 1.0, renorm=True) is x


def test_renorm_is_refused_for_other_pools():
    torch.testing.assert_close(time_pool(torch.ones(1, 1, 10, 2), 0.5, "spectral", renorm=True), torch.ones(1, 1, 5, 2))
    with pytest.raises(ConfigError, match="features.simpf_renorm: only applies to audio_pool: spectral"):
        time_pool(torch.zeros(1, 1, 10, 2), 0.5, "avg", renorm=True)
