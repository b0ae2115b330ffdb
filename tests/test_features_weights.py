"""Extractor weights: local checkpoints only (weights_only), seeded random fallback, clear errors."""

import time

import pytest
import torch
import torch.nn as nn
from torchvision.models import inception_v3

from avkd.config import WeightsConfig
from avkd.errors import WeightsError
from avkd.features import weights as W
from avkd.features.visual import new_inception


@pytest.fixture(autouse=True)
def no_user_checkpoints(tmp_path, monkeypatch):
    """The usual places point into an empty temp home, so the user's real files never matter here."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)


def test_seeded_random_weights_are_deterministic():
    a = W.state_fingerprint(W.seeded(new_inception, 0).state_dict())
    b = W.state_fingerprint(W.seeded(new_inception, 0).state_dict())
    c = W.state_fingerprint(W.seeded(new_inception, 1).state_dict())
    assert a == b != c
    before = torch.random.get_rng_state()
    W.seeded(new_inception, 0)
    assert torch.equal(before, torch.random.get_rng_state())  # the caller's RNG is untouched


def test_require_pretrained_names_every_path_looked_at(tmp_path):
    with pytest.raises(WeightsError) as err:
        W.find_checkpoint("inception", WeightsConfig(require_pretrained=True))
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / "inception_v3_google-0cc3c7bd.pth") in str(err.value)
    with pytest.raises(WeightsError, match=r"home/panns_data/Cnn14_mAP=0\.431\.pth"):
        W.find_checkpoint("cnn14", WeightsConfig(require_pretrained=True))
    assert W.find_checkpoint("cnn14", WeightsConfig()) is None  # not required: random weights
    with pytest.raises(WeightsError, match="features.weights.cnn14: checkpoint .*nope.pth does not exist"):
        W.find_checkpoint("cnn14", WeightsConfig(cnn14=str(tmp_path / "nope.pth")))
    with pytest.raises(WeightsError, match=r"home/panns_data/Cnn10_mAP=0\.380\.pth.*features\.weights\.cnn10"):
        W.find_checkpoint("cnn10", WeightsConfig(require_pretrained=True))
    with pytest.raises(WeightsError, match="features.weights.cnn10: checkpoint .*nope.pth does not exist"):
        W.find_checkpoint("cnn10", WeightsConfig(cnn10=str(tmp_path / "nope.pth")))
    assert not (tmp_path / "home" / "panns_data").exists()  # looked at, never created


def test_torchvision_checkpoint_with_aux_logits_loads_weights_only(tmp_path):
    src = W.seeded(lambda: inception_v3(weights=None, aux_logits=True, init_weights=True), 3)
    state = src.state_dict()
    assert any(k.startswith("AuxLogits.") for k in state)
    path = tmp_path / "torch" / "hub" / "checkpoints" / "inception_v3_google-0cc3c7bd.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    loaded = W.load_checkpoint(path)
    assert not any(k.startswith("AuxLogits.") for k in loaded)
    model, status, fp = W.prepare(
        "inception",
        new_inception,
        WeightsConfig(require_pretrained=True),
        tmp_path / "unused.pt",
        calibrate=lambda m: pytest.fail("no calibration"),
    )
    assert status == "pretrained"
    assert torch.equal(model.Conv2d_1a_3x3.conv.weight, state["Conv2d_1a_3x3.conv.weight"])
    assert isinstance(model.fc, nn.Identity) and not model.training
    assert fp == W.state_fingerprint(model.state_dict())
    assert not (tmp_path / "unused.pt").exists()


def test_panns_style_checkpoint_is_unwrapped(tmp_path):
    net = nn.Sequential(nn.Linear(3, 2))
    torch.save({"model": net.state_dict(), "iteration": 5}, tmp_path / "c.pth")
    assert set(W.load_checkpoint(tmp_path / "c.pth")) == {"0.weight", "0.bias"}


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"garbage", "not a readable PyTorch checkpoint")])
def test_broken_checkpoints_are_clear_errors(tmp_path, content, message):
    (tmp_path / "bad.pth").write_bytes(content)
    with pytest.raises(WeightsError, match=message) as err:
        W.load_checkpoint(tmp_path / "bad.pth")
    assert "bad.pth" in str(err.value)


def test_mismatching_checkpoint_is_a_clear_error(tmp_path):
    torch.save({"fc1.weight": torch.zeros(2, 2)}, tmp_path / "wrong.pth")
    with pytest.raises(WeightsError, match="wrong.pth: does not match the model"):
        W.load_into(nn.Sequential(nn.Linear(2, 2)), W.load_checkpoint(tmp_path / "wrong.pth"), tmp_path / "wrong.pth")


def test_bn_reestimation_uses_the_calibration_batches():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5)).eval()
    batches = [torch.randn(2, 1, 8, 8) * 3 + 5 for _ in range(3)]
    with torch.no_grad():
        conv = [model[0](b) for b in batches]

    def run(m):
        assert not m[2].training  # dropout stays off
        for b in batches:
            m(b)

    W.reestimate_bn(model, run)
    expected = torch.stack([c.mean(dim=(0, 2, 3)) for c in conv]).mean(0)
    torch.testing.assert_close(model[1].running_mean, expected)
    assert model[1].momentum == 0.1 and not model.training


def test_random_weights_are_calibrated_once_and_shared(tmp_path):
    calls = []

    def calibrate(model):
        calls.append(1)
        model(torch.randn(2, 4, 5, 5) + 3)

    factory = lambda: nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))  # noqa: E731
    path = tmp_path / "cache" / "weights" / "toy.pt"
    m1, s1, fp1 = W.prepare("cnn14", factory, WeightsConfig(seed=7), path, calibrate)
    m2, s2, fp2 = W.prepare("cnn14", factory, WeightsConfig(seed=7), path, calibrate)
    assert calls == [1] and s1 == s2 == "random" and fp1 == fp2 and path.is_file()
    assert torch.equal(m1[1].running_mean, m2[1].running_mean)
    assert not list(path.parent.glob("*.tmp"))
    path.write_bytes(b"")  # a damaged cached file is re-estimated, not trusted
    W.prepare("cnn14", factory, WeightsConfig(seed=7), path, calibrate)
    assert calls == [1, 1]


def test_fingerprints_are_remembered_per_weight_file_and_forgotten_when_it_changes(tmp_path):
    """weights.known: what prepare gave, without building the model, for the very same weight file only."""

    def calibrate(model):
        model(torch.randn(2, 4, 5, 5) + 3)

    factory = lambda: nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))  # noqa: E731
    path = tmp_path / "cache" / "weights" / "toy.pt"
    seeded = WeightsConfig(seed=7)
    assert W.known("cnn14", seeded, path) is None  # nothing re-estimated yet
    _, status, fp = W.prepare("cnn14", factory, seeded, path, calibrate)
    assert W.known("cnn14", seeded, path) == (status, fp) == ("random", fp)

    # The re-estimated file edited in place: forgotten, and prepare hashes the new weights.
    time.sleep(0.05)  # (a file's identity is its path, size and mtime: an edit gets a later mtime)
    state = torch.load(path, weights_only=True)
    state["1.running_mean"] += 1.0
    torch.save(state, path)
    assert W.known("cnn14", seeded, path) is None
    _, _, fp_edited = W.prepare("cnn14", factory, seeded, path, calibrate)
    assert fp_edited != fp and W.known("cnn14", seeded, path) == ("random", fp_edited)

    # A configured checkpoint: remembered by its own file; replacing it, or naming another, forgets.
    ckpt = tmp_path / "Cnn14.pth"
    torch.save(W.seeded(factory, 1).state_dict(), ckpt)
    pretrained = WeightsConfig(cnn14=str(ckpt))
    _, status, fp_ckpt = W.prepare("cnn14", factory, pretrained, path, calibrate)
    assert W.known("cnn14", pretrained, path) == (status, fp_ckpt) == ("pretrained", fp_ckpt)
    other = tmp_path / "other.pth"
    torch.save(W.seeded(factory, 2).state_dict(), other)
    assert W.known("cnn14", WeightsConfig(cnn14=str(other)), path) is None
    time.sleep(0.05)
    torch.save(W.seeded(factory, 3).state_dict(), ckpt)
    assert W.known("cnn14", pretrained, path) is None
    assert W.prepare("cnn14", factory, pretrained, path, calibrate)[2] not in (fp_ckpt, fp, fp_edited)
