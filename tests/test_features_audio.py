"""Cnn14 split around the SimPF pooling: same embedding as PANNs' own forward, length limits, no ~ writes."""
import logging
import math
import os
import subprocess
import sys

import pytest
import torch

from avkd.features import audio as A



@pytest.fixture(scope="module")
def cnn14():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return A.new_cnn14()


@torch.inference_mode()
def test_split_forward_equals_the_models_own_embedding(cnn14):
    # non-trivial BN statistics, so bn0 and the conv blocks' BN really do something
    for m in cnn14.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    waves = 0.1 * torch.randn(2, 32000)
    own = cnn14(waves)["embedding"]
    mine = A.conv_body(cnn14, A.logmel(cnn14, waves))
    torch.testing.assert_close(mine, own)
    assert A.logmel(cnn14, waves).shape == (2, 1, 32000 // A.HOP + 1, 64)
    # and the k=1 path (pooling is the identity) gives the same embedding per clip
    single = A.embed_inputs(cnn14, A.pooled_inputs(cnn14, waves[1], [1.0], "spectral"), batch=4)[0]
    torch.testing.assert_close(single, own[1], rtol=1e-4, atol=1e-5)


@torch.inference_mode()
def test_min_time_frames_is_the_real_limit(cnn14):
    A.conv_body(cnn14, torch.randn(1, 1, A.MIN_TIME_FRAMES, 64))
    with pytest.raises(RuntimeError, match="too small"):
        A.conv_body(cnn14, torch.randn(1, 1, A.MIN_TIME_FRAMES - 1, 64))


def test_pad_time_repeats_the_clip():
    x = torch.arange(10.0).view(1, 1, 5, 2)
    y = A.pad_time(x, 12)
    assert y.shape == (1, 1, 12, 2)
    torch.testing.assert_close(y[0, 0, 5:10], x[0, 0])
    assert A.pad_time(x, 5) is x


@torch.inference_mode()
@pytest.mark.parametrize("pool", ["spectral", "avg", "max", "uniform"])
def test_pooled_inputs_lengths(cnn14, pool, caplog):
    caplog.set_level(logging.INFO, logger="avkd.features.audio")
    wave = 0.1 * torch.randn(32000 * 2)  # 201 log-mel frames
    xs = A.pooled_inputs(cnn14, wave, [1.0, 0.6, 0.2, 0.1], pool, name="clipA")
    assert [x.shape[-2] for x in xs] == [201, math.ceil(0.6 * 201), math.ceil(0.2 * 201), A.MIN_TIME_FRAMES]
    assert "clipA" in caplog.text  # the too-short k=0.1 input is reported, naming the clip
    embs = A.embed_inputs(cnn14, xs, batch=8)
    assert all(e.shape == (2048,) and torch.isfinite(e).all() for e in embs)


@torch.inference_mode()
def test_very_short_audio_is_padded_not_fatal(cnn14):
    for samples in (0, 100, 600, 5000):
        (x,) = A.pooled_inputs(cnn14, torch.zeros(samples), [1.0], "spectral")
        assert x.shape == (1, 1, A.MIN_TIME_FRAMES, 64)


@torch.inference_mode()
def test_equal_length_clips_batch_without_changing_results(cnn14):
    xs = [torch.randn(1, 1, 40, 64) for _ in range(3)] + [torch.randn(1, 1, 50, 64)]
    together = A.embed_inputs(cnn14, xs, batch=8)
    alone = [A.embed_inputs(cnn14, [x], batch=1)[0] for x in xs]
    for a, b in zip(together, alone):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_import_runs_no_download_and_writes_nothing_under_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    env.pop("MPLCONFIGDIR", None)
    code = ("import sys; from avkd.features.audio import cnn14_class; c = cnn14_class(); "
            "assert c.__name__ == 'Cnn14'; assert 'panns_inference.inference' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert list(home.rglob("*")) == []  # no ~/panns_data, no ~/.cache/matplotlib
