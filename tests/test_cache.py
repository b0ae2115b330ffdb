"""The shared feature cache: a rerun does no forward pass; a killed write is never read as valid."""

import os
from pathlib import Path

import numpy as np
import pytest

from avkd.config import FeatureConfig
from avkd.data.msrvtt import load_msrvtt
from avkd.features import cache as cache_mod
from avkd.features.cache import FeatureCache, VisualEntry, atomic_savez, read_npz, video_key
from avkd.features.extract import extract_variants, get_extractors


def small_cfg(base: Path) -> FeatureConfig:
    return FeatureConfig(
        image_size=75, batch_frames=16, batch_audio=4, workers=2, cache_dir=str(base / "avkd-feature-cache")
    )


@pytest.fixture(scope="module")
def corpus(tiny_corpus):
    return load_msrvtt(tiny_corpus)


@pytest.fixture(scope="module")
def ext(corpus, tmp_path_factory):
    return get_extractors(corpus, small_cfg(tmp_path_factory.getbasetemp()))


class ForwardCounter:
    """Counts forward calls of the real models (Inception, the audio model's front end and conv body)."""

    def __init__(self, ext):
        self.calls = {"inception": 0, "audio_frontend": 0, "audio_body": 0}
        self.hooks = [
            ext.inception.register_forward_hook(self._count("inception")),
            ext.audio.logmel_extractor.register_forward_hook(self._count("audio_frontend")),
            ext.audio.conv_block1.register_forward_hook(self._count("audio_body")),
        ]

    def _count(self, name):
        def hook(*_):
            self.calls[name] += 1

        return hook

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self.hooks:
            h.remove()


def test_rerun_hits_the_cache_with_zero_forwards(corpus, ext, tmp_path):
    fcfg = small_cfg(tmp_path)
    ids = [v.video_id for v in corpus.split("train")][:4]
    with ForwardCounter(ext) as first:
        a = extract_variants(corpus, fcfg, [0.4], video_ids=ids, progress=False, extractors=ext)
    assert first.calls["inception"] > 0 and first.calls["audio_body"] == 2 * len(ids)
    with ForwardCounter(ext) as second:
        b = extract_variants(corpus, fcfg, [0.4], video_ids=ids, progress=False, extractors=ext)
    assert second.calls == {"inception": 0, "audio_frontend": 0, "audio_body": 0}
    for k in a:
        np.testing.assert_array_equal(a[k].visual, b[k].visual)
        np.testing.assert_array_equal(a[k].audio, b[k].audio)
    # a new k reuses the cached teacher frames: only its audio is computed
    with ForwardCounter(ext) as third:
        c = extract_variants(corpus, fcfg, [0.4, 0.8], video_ids=ids, progress=False, extractors=ext)
    assert third.calls["inception"] == 0 and third.calls["audio_body"] == len(ids)
    np.testing.assert_array_equal(c[0.4].audio, a[0.4].audio)
    # --rebuild recomputes everything
    with ForwardCounter(ext) as fourth:
        extract_variants(corpus, fcfg, [0.4], video_ids=ids[:1], progress=False, extractors=ext, rebuild=True)
    assert fourth.calls["inception"] > 0 and fourth.calls["audio_body"] == 2


def test_damaged_entries_are_misses_and_get_rewritten(corpus, ext, tmp_path):
    fcfg = small_cfg(tmp_path)
    ids = [v.video_id for v in corpus.split("train")][:3]
    ref = extract_variants(corpus, fcfg, [0.5], video_ids=ids, progress=False, extractors=ext)
    cache = FeatureCache.for_config(fcfg.cache_dir, ext.fingerprints, fcfg)
    v0, v1 = (corpus.videos[i] for i in ids[:2])
    vis = cache.visual_path(video_key(v0.path))
    vis.write_bytes(vis.read_bytes()[: vis.stat().st_size // 2])  # truncated, as by a crash without atomic writes
    aud = cache.audio_path(video_key(v1.path), 0.5)
    aud.write_bytes(b"")
    # a temp file left by a killed writer is never read
    (vis.parent / f".{vis.stem}.abc123.tmp").write_bytes(b"PK\x03\x04 half an npz")
    with ForwardCounter(ext) as counter:
        again = extract_variants(corpus, fcfg, [0.5], video_ids=ids, progress=False, extractors=ext)
    assert counter.calls["inception"] > 0  # v0's frames recomputed
    assert counter.calls["audio_body"] == 1  # only v1's k=0.5 audio: everything else was a hit
    for k in ref:  # v0's frames ran in other batches: equal up to float16 storage rounding
        np.testing.assert_allclose(again[k].visual, ref[k].visual, rtol=2e-3, atol=1e-4)
        np.testing.assert_allclose(again[k].audio, ref[k].audio, rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(again[k].visual[1:], ref[k].visual[1:])  # cache hits: bit-identical
    assert cache.load_visual(video_key(v0.path)) is not None
    assert cache.load_audio(video_key(v1.path), 0.5) is not None


def test_a_write_killed_midway_leaves_no_entry(tmp_path, monkeypatch):
    path = tmp_path / "x" / "entry.npz"
    atomic_savez(path, key=np.array("k1"), a=np.arange(3))

    def crash(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # the process is stopped in the middle of the write

    monkeypatch.setattr(cache_mod.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        atomic_savez(path, key=np.array("k1"), a=np.arange(5))
    monkeypatch.undo()
    assert read_npz(path, "k1")["a"].tolist() == [0, 1, 2]  # the old entry, intact
    assert [p.name for p in path.parent.iterdir()] == ["entry.npz"]  # the temp file was removed
    # a crash that leaves the temp file behind (SIGKILL): the reader only opens the final name
    (path.parent / ".entry.1234.tmp").write_bytes(b"garbage")
    assert read_npz(path, "k1")["a"].tolist() == [0, 1, 2]
    assert read_npz(path, "another key") is None
    path.write_bytes(b"not a zip")
    assert read_npz(path, "k1") is None


def test_video_key_follows_content_identity(tmp_path):
    f = tmp_path / "v.mp4"
    f.write_bytes(b"abc")
    k1 = video_key(f)
    assert video_key(f) == k1
    f.write_bytes(b"abcd")
    assert video_key(f) != k1
    os.utime(f, ns=(1, 1))
    k2 = video_key(f)
    os.utime(f, ns=(2, 2))
    assert video_key(f) != k2


def test_visual_entry_lookup_and_merge():
    e = VisualEntry(10, np.array([0, 5]), np.ones((2, 2048), np.float16))
    assert e.lookup([0, 5]).shape == (2, 2048)
    assert e.lookup([0, 3]) is None and e.lookup([9]) is None
    m = e.merged([3, 9], np.full((2, 2048), 2.0))
    assert m.indices.tolist() == [0, 3, 5, 9] and m.features.dtype == np.float16
    assert m.lookup([3, 9]).mean() == 2.0 and m.lookup([0, 5]).mean() == 1.0


def test_audio_cache_keys_keep_models_time_pools_and_renorm_apart(tmp_path):
    def tag(**kw):
        return FeatureCache(tmp_path, "inc", "aud", 75, 32000, "spectral", **kw).audio_tag

    assert tag() == "cnn14-aud-stft-sr32000-spectral"  # stft: the log-mel front end (audio.LOGMEL_FRONT_END)
    tags = {
        tag(audio_model=m, audio_time_pool=t, simpf_renorm=r)
        for m in ("cnn10", "cnn14")
        for t in ("panns", "mean")
        for r in (False, True)
    }
    assert len(tags) == 8
    assert tag(audio_model="cnn10", audio_time_pool="mean") == "cnn10-aud-stft-sr32000-spectral-tmean"
    with pytest.raises(ValueError, match="unknown audio model 'cnn6'"):
        tag(audio_model="cnn6")
    # for_config picks the chosen model's fingerprint
    fcfg = FeatureConfig(image_size=75, audio_model="cnn10", audio_time_pool="mean", simpf_renorm=True)
    c = FeatureCache.for_config(tmp_path, {"inception": "i1", "cnn10": "a10", "cnn14": "a14"}, fcfg)
    assert c.audio_tag == "cnn10-a10-stft-sr32000-spectral-renorm-tmean" and c.visual_tag == "inception-i1-s75-nhwc"


def test_a_changed_audio_front_end_gives_new_audio_keys(tmp_path, monkeypatch):
    """Embeddings computed by one log-mel implementation are never read back for another."""
    before = FeatureCache(tmp_path, "inc", "aud", 75, 32000, "spectral")
    monkeypatch.setattr(cache_mod, "LOGMEL_FRONT_END", "next")
    after = FeatureCache(tmp_path, "inc", "aud", 75, 32000, "spectral")
    assert after.audio_tag != before.audio_tag and after.visual_tag == before.visual_tag
    before.save_audio("v", 0.2, np.ones(512, np.float32), True, 40)
    assert after.load_audio("v", 0.2) is None and before.load_audio("v", 0.2) is not None


def test_a_changed_inception_layout_gives_new_visual_keys(tmp_path, monkeypatch):
    before = FeatureCache(tmp_path, "inc", "aud", 75, 32000, "spectral")
    monkeypatch.setattr(cache_mod, "INCEPTION_LAYOUT", "nchw")
    after = FeatureCache(tmp_path, "inc", "aud", 75, 32000, "spectral")
    assert after.visual_tag != before.visual_tag and after.audio_tag == before.audio_tag
