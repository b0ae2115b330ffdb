"""Sharded extraction on a real local Ray (2 CPUs): the same tables as in one process, errors reported."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from avkd.config import FeatureConfig, parse_sweep
from avkd.data.msrvtt import Dataset, Video, load_msrvtt
from avkd.errors import ConfigError
from avkd.features.extract import extract_variants, get_extractors, shard_count


def small_cfg(cache: Path, **kw) -> FeatureConfig:
    return FeatureConfig(image_size=75, batch_frames=16, batch_audio=4, workers=1, cache_dir=str(cache), **kw)


@pytest.fixture(scope="module")
def dataset(tiny_corpus, tmp_path_factory) -> Dataset:
    """The 12-clip corpus plus a truncated file and an empty one (test split)."""
    corpus = load_msrvtt(tiny_corpus)
    bad = tmp_path_factory.mktemp("bad")
    blob = Path(corpus.split("train")[0].path).read_bytes()
    (bad / "truncated.mp4").write_bytes(blob[: len(blob) // 2])
    (bad / "empty.mp4").write_bytes(b"")
    videos = dict(corpus.videos)
    for name in ("truncated", "empty"):
        videos[name] = Video(name, "test", bad / f"{name}.mp4", ["a caption"], [["a", "caption"]])
    return Dataset(root=corpus.root, videos=videos)


def test_shards_config_range_and_count():
    with pytest.raises(ConfigError, match="features.shards"):
        parse_sweep({"name": "x", "features": {"shards": -1}}, "sweeps/bad.yaml")
    assert parse_sweep({"name": "x", "features": {"shards": 3}}, "s.yaml").features.shards == 3
    assert shard_count(FeatureConfig(shards=4), 10) == 4 and shard_count(FeatureConfig(shards=4), 3) == 3
    assert shard_count(FeatureConfig(shards=4), 1) == 1 and shard_count(FeatureConfig(shards=1), 10) == 1


@pytest.mark.slow
def test_sharded_equals_unsharded(dataset, tmp_path):
    """Injected: the same 14 videos (2 broken) extracted once in-process and once in 2 Ray tasks.
    Holds: same video ids, latents equal within float16 tolerance, the same errors; the driver runs
    no forward pass in the sharded call; the shards reuse the driver's weights (no new weight file)."""
    import ray

    torch.set_num_threads(2)
    ids = [v.video_id for s in ("train", "validate", "test") for v in dataset.split(s)]
    assert "truncated" in ids and "empty" in ids and len(ids) == 14
    here_cfg = small_cfg(tmp_path / "here")
    ext = get_extractors(dataset, here_cfg)  # re-estimated BN weights land in here/weights
    here = extract_variants(dataset, here_cfg, [0.2], video_ids=ids, progress=False, extractors=ext)

    # The sharded run gets its own feature cache but the same weight files: the comparison is fair.
    shutil.copytree(tmp_path / "here" / "weights", tmp_path / "sharded" / "weights")
    weight_files = sorted(p.name for p in (tmp_path / "sharded" / "weights").iterdir())
    sharded_cfg = small_cfg(tmp_path / "sharded")
    driver_ext = get_extractors(dataset, sharded_cfg)
    assert driver_ext.fingerprints == ext.fingerprints
    forwards = []
    hooks = [
        driver_ext.inception.register_forward_hook(lambda *a: forwards.append("inception")),
        driver_ext.audio.conv_block1.register_forward_hook(lambda *a: forwards.append("cnn14")),
    ]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        assert shard_count(sharded_cfg, len(ids)) == 2
        t0 = time.perf_counter()
        sharded = extract_variants(dataset, sharded_cfg, [0.2], video_ids=ids, progress=False, extractors=driver_ext)
        print(f"sharded extraction of {len(ids)} videos: {time.perf_counter() - t0:.1f} s")
    finally:
        ray.shutdown()
        for h in hooks:
            h.remove()
    assert forwards == []  # every forward ran in a shard; the driver only read the cache
    assert sorted(p.name for p in (tmp_path / "sharded" / "weights").iterdir()) == weight_files
    assert any((tmp_path / "sharded" / "visual").rglob("*.npz"))

    for k in (0.2, 1.0):
        a, b = here[k], sharded[k]
        assert a.video_ids == b.video_ids and len(a.video_ids) == 12
        assert a.no_audio == b.no_audio and a.weights == b.weights
        np.testing.assert_allclose(b.visual, a.visual, rtol=2e-3, atol=2e-3)  # per-frame features are float16
        np.testing.assert_allclose(b.audio, a.audio, rtol=2e-3, atol=2e-3)
        reasons = {e["video_id"]: e["reason"] for e in b.errors}
        assert reasons == {e["video_id"]: e["reason"] for e in a.errors}
        assert sorted(reasons) == ["empty", "truncated"] and "0 bytes" in reasons["empty"]
