"""The `features` keys of the audio branch: defaults, the paper's settings, one-line errors naming the key."""

from pathlib import Path

import pytest

from avkd.config import AUDIO_MODELS, load_sweep, parse_sweep
from avkd.errors import ConfigError

SWEEPS = Path(__file__).resolve().parents[1] / "sweeps"


def test_defaults_keep_cnn14_with_panns_pooling_and_no_renorm():
    f = parse_sweep({"name": "x"}).features
    assert (f.audio_model, f.audio_time_pool, f.simpf_renorm) == ("cnn14", "panns", False)
    assert f.weights.cnn10 is None and f.weights.cnn14 is None
    assert AUDIO_MODELS == ("cnn10", "cnn14")


def test_paper_yaml_uses_what_the_paper_describes():
    f = load_sweep(SWEEPS / "paper.yaml").features
    assert (f.audio_model, f.audio_time_pool, f.audio_pool, f.simpf_renorm) == ("cnn10", "mean", "spectral", False)
    assert f.image_size == 299 and f.weights.require_pretrained


@pytest.mark.parametrize(
    "features",
    [
        {"audio_model": "cnn10", "audio_time_pool": "mean"},
        {"audio_model": "cnn14", "audio_time_pool": "panns", "simpf_renorm": True},
        {"weights": {"cnn10": "/x/Cnn10_mAP=0.380.pth"}},
    ],
)
def test_good_values_load(features):
    f = parse_sweep({"name": "x", "features": features}).features
    for key, value in features.items():
        if key != "weights":
            assert getattr(f, key) == value


@pytest.mark.parametrize(
    "features, key, words",
    [
        ({"audio_model": "cnn6"}, "features.audio_model", "'cnn6' is not one of 'cnn10' | 'cnn14'"),
        ({"audio_model": 10}, "features.audio_model", "is not one of"),
        ({"audio_time_pool": "max"}, "features.audio_time_pool", "'max' is not one of 'panns' | 'mean'"),
        ({"simpf_renorm": "yes"}, "features.simpf_renorm", "expected bool"),
        ({"simpf_renorm": True, "audio_pool": "avg"}, "features.simpf_renorm", "only applies to audio_pool: spectral"),
        ({"weights": {"cnn10": 3}}, "features.weights.cnn10", "expected"),
        ({"weights": {"cnn12": "x.pth"}}, "features.weights.cnn12", "unknown key"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(features, key, words):
    with pytest.raises(ConfigError) as err:
        parse_sweep({"name": "x", "features": features}, "sweeps/bad.yaml")
    msg = str(err.value)
    assert msg.startswith(f"sweeps/bad.yaml: {key}") and words in msg and "\n" not in msg
