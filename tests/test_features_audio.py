"""PANNs Cnn10 / Cnn14 split around the SimPF pooling: same embedding as the model's own forward,
embedding sizes, the time-mean option, length limits, checkpoint layout, no ~ writes."""

import logging
import math
import os
import subprocess
import sys

import pytest
import torch

from avkd.config import AUDIO_MODELS, WeightsConfig
from avkd.errors import ConfigError, WeightsError
from avkd.features import audio as A
from avkd.features import weights as W

EMBED_DIMS = {"cnn10": 512, "cnn14": 2048}  # PANNs' embedding sizes (fc1), from the PANNs paper


@pytest.fixture(scope="module", params=AUDIO_MODELS)
def model(request):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return A.new_audio_model(request.param)


def test_every_configurable_model_has_a_backbone_and_a_checkpoint_name():
    assert set(AUDIO_MODELS) == set(A.BACKBONES) == {"cnn10", "cnn14"}
    assert {name: A.BACKBONES[name].embed_dim for name in AUDIO_MODELS} == EMBED_DIMS
    assert W.CHECKPOINT_FILES["cnn10"] == "Cnn10_mAP=0.380.pth" and W.CHECKPOINT_FILES["cnn14"] == "Cnn14_mAP=0.431.pth"


@torch.inference_mode()
def test_split_forward_equals_the_models_own_embedding(model):
    # non-trivial BN statistics, so bn0 and the conv blocks' BN really do something
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    waves = 0.1 * torch.randn(2, 32000)
    own = model(waves)["embedding"]
    mine = A.conv_body(model, A.logmel(model, waves))
    # the model's own forward runs PANNs' conv-based STFT, logmel torch.stft (same values to ~1e-6)
    torch.testing.assert_close(mine, own, rtol=1e-4, atol=1e-4)
    assert own.shape == (2, EMBED_DIMS[type(model).__name__.lower()])
    assert A.logmel(model, waves).shape == (2, 1, 32000 // A.HOP + 1, 64)
    # and the k=1 path (pooling is the identity) gives the same embedding per clip
    single = A.embed_inputs(model, A.pooled_inputs(model, waves[1], [1.0], "spectral"), batch=4)[0]
    torch.testing.assert_close(single, own[1], rtol=1e-4, atol=1e-5)


def test_cnn10_matches_the_panns_layout():
    """Cnn10 = Cnn14's parameter names (the library's own) minus conv blocks 5-6, with 512-wide fc1:
    the key set of audioset_tagging_cnn's Cnn10, whose checkpoint must load strictly."""
    cnn10 = A.new_audio_model("cnn10").state_dict()
    cnn14 = A.new_audio_model("cnn14").state_dict()
    expected = {k for k in cnn14 if not k.startswith(("conv_block5.", "conv_block6."))}
    assert set(cnn10) == expected
    assert cnn10["fc1.weight"].shape == (512, 512) and cnn10["fc_audioset.weight"].shape == (527, 512)
    assert cnn10["conv_block4.conv2.weight"].shape == (512, 512, 3, 3)
    for k in expected - {"fc1.weight", "fc1.bias", "fc_audioset.weight"}:  # front end and blocks 1-4 as Cnn14's
        assert cnn10[k].shape == cnn14[k].shape, k
    convs = [k for k in cnn10 if k.endswith(".weight") and cnn10[k].dim() == 4 and k.startswith("conv_block")]
    assert len(convs) == 8  # 8 conv layers + fc1 + fc_audioset = "10 layers"


@torch.inference_mode()
def test_a_panns_format_cnn10_checkpoint_loads(tmp_path, monkeypatch):
    """A {"model": state_dict} file under ~/panns_data/Cnn10_mAP=0.380.pth (PANNs' format and place)
    is found, loaded strictly and used as is (no BN re-estimation)."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    src = W.seeded(lambda: A.new_audio_model("cnn10"), 5)
    for m in src.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
    path = tmp_path / "home" / "panns_data" / "Cnn10_mAP=0.380.pth"
    path.parent.mkdir(parents=True)
    torch.save({"model": src.state_dict(), "iteration": 10}, path)
    model, status, fp = W.prepare(
        "cnn10",
        lambda: A.new_audio_model("cnn10"),
        WeightsConfig(require_pretrained=True),
        tmp_path / "unused.pt",
        calibrate=lambda m: pytest.fail("no calibration"),
    )
    assert status == "pretrained" and fp == W.state_fingerprint(src.state_dict())
    waves = 0.1 * torch.randn(1, 32000)
    torch.testing.assert_close(model(waves)["embedding"], src(waves)["embedding"])
    # a Cnn14 file under the Cnn10 name is refused, naming the file
    path.unlink()
    torch.save({"model": A.new_audio_model("cnn14").state_dict()}, path)
    with pytest.raises(WeightsError, match=r"Cnn10_mAP=0\.380\.pth: does not match the model \(size mismatch for fc1"):
        W.prepare(
            "cnn10",
            lambda: A.new_audio_model("cnn10"),
            WeightsConfig(),
            tmp_path / "unused.pt",
            calibrate=lambda m: None,
        )


@torch.inference_mode()
def test_time_mean_option_is_the_plain_mean_over_time(model):
    x = torch.randn(2, 1, 80, 64)
    body = x
    for i, pool in enumerate(A.backbone(model).pools, start=1):
        body = getattr(model, f"conv_block{i}")(body, pool_size=pool, pool_type="avg")
    per_frame = body.mean(dim=3)  # (B, C, T')
    assert per_frame.shape[-1] > 1  # several frames left, so max+mean and mean differ
    mean = A.conv_body(model, x, "mean")
    panns = A.conv_body(model, x, "panns")
    torch.testing.assert_close(mean, torch.relu(model.fc1(per_frame.mean(dim=2))))
    torch.testing.assert_close(panns, torch.relu(model.fc1(per_frame.max(dim=2).values + per_frame.mean(dim=2))))
    assert not torch.allclose(mean, panns)
    batched = A.embed_inputs(model, [x[:1], x[1:]], batch=2, time_pool="mean")
    torch.testing.assert_close(torch.stack(batched), mean, rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="features.audio_time_pool: unknown pooling 'max'"):
        A.conv_body(model, x, "max")


@torch.inference_mode()
def test_min_time_frames_is_the_real_limit(model):
    least = A.backbone(model).min_time_frames
    A.conv_body(model, torch.randn(1, 1, least, 64))
    with pytest.raises(RuntimeError, match="too small"):
        A.conv_body(model, torch.randn(1, 1, least - 1, 64))


def test_pad_time_repeats_the_clip():
    x = torch.arange(10.0).view(1, 1, 5, 2)
    y = A.pad_time(x, 12)
    assert y.shape == (1, 1, 12, 2)
    torch.testing.assert_close(y[0, 0, 5:10], x[0, 0])
    assert A.pad_time(x, 5) is x


@torch.inference_mode()
@pytest.mark.parametrize("pool", ["spectral", "avg", "max", "uniform"])
def test_pooled_inputs_lengths(model, pool, caplog):
    caplog.set_level(logging.INFO, logger="avkd.features.audio")
    least = A.backbone(model).min_time_frames
    wave = 0.1 * torch.randn(32000 * 2)  # 201 log-mel frames
    xs = A.pooled_inputs(model, wave, [1.0, 0.6, 0.2, 0.05], pool, name="clipA")
    assert [x.shape[-2] for x in xs] == [201, math.ceil(0.6 * 201), math.ceil(0.2 * 201), least]
    assert "clipA" in caplog.text  # the too-short k=0.05 input (11 frames) is reported, naming the clip
    embs = A.embed_inputs(model, xs, batch=8)
    assert all(
        e.shape == (A.BACKBONES[type(model).__name__.lower()].embed_dim,) and torch.isfinite(e).all() for e in embs
    )


@torch.inference_mode()
def test_renorm_reaches_the_conv_body_input(model):
    wave = 0.1 * torch.randn(32000)
    (plain,), (renormed,) = (A.pooled_inputs(model, wave, [0.25], "spectral", renorm=r) for r in (False, True))
    T, n = 32000 // A.HOP + 1, math.ceil(0.25 * (32000 // A.HOP + 1))
    torch.testing.assert_close(renormed, plain * math.sqrt(n / T))


@torch.inference_mode()
def test_very_short_audio_is_padded_not_fatal(model):
    for samples in (0, 100, 600, 5000):
        (x,) = A.pooled_inputs(model, torch.zeros(samples), [1.0], "spectral")
        assert x.shape == (1, 1, A.backbone(model).min_time_frames, 64)


@torch.inference_mode()
def test_equal_length_clips_batch_without_changing_results(model):
    xs = [torch.randn(1, 1, 40, 64) for _ in range(3)] + [torch.randn(1, 1, 50, 64)]
    together = A.embed_inputs(model, xs, batch=8)
    alone = [A.embed_inputs(model, [x], batch=1)[0] for x in xs]
    for a, b in zip(together, alone):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_import_runs_no_download_and_writes_nothing_under_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home)}
    env.pop("MPLCONFIGDIR", None)
    code = (
        "import sys; from avkd.features.audio import new_audio_model; "
        "assert [type(new_audio_model(n)).__name__ for n in ('cnn10', 'cnn14')] == ['Cnn10', 'Cnn14']; "
        "assert 'panns_inference.inference' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert list(home.rglob("*")) == []  # no ~/panns_data, no ~/.cache/matplotlib


@torch.inference_mode()
def test_torch_stft_front_end_matches_the_panns_conv_stft_on_a_real_clip(tiny_corpus):
    """logmel's torch.stft power spectrogram = PANNs' own Spectrogram module (torchlibrosa's STFT as
    convolutions) on a decoded corpus clip, and so is the log-mel through the model's filterbank."""
    from avkd.data import media

    model = A.new_audio_model("cnn10")
    path = sorted((tiny_corpus / "videos").glob("*.mp4"))[0]
    wave, has_audio = media.read_audio(path)
    assert has_audio
    waves = torch.from_numpy(wave)[None]
    ours, theirs = A.power_spectrogram(waves), model.spectrogram_extractor(waves)
    assert ours.shape == theirs.shape == (1, 1, len(wave) // A.HOP + 1, 513)
    assert ((ours - theirs).abs().max() / theirs.max()).item() < 1e-5
    db_ours, db_theirs = model.logmel_extractor(ours), model.logmel_extractor(theirs)
    loud = db_theirs > db_theirs.max() - 60  # float32 rounding dominates near the -100 dB floor
    assert (db_ours - db_theirs)[loud].abs().max().item() < 0.01
    assert (db_ours - db_theirs).abs().max().item() < 0.5
