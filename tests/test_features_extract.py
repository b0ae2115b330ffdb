"""Extraction end to end on real MP4 files: tables per k, frame reuse, bad inputs recorded, not fatal."""

import json
import os
from pathlib import Path

import numpy as np
import pytest

from avkd.config import FeatureConfig
from avkd.data.msrvtt import Dataset, Video, load_msrvtt
from avkd.data.synth import write_mp4
from avkd.features.cache import FeatureCache, video_key
from avkd.features.extract import LatentTable, extract_variants, get_extractors
from avkd.features.sampling import frame_indices


def small_cfg(base: Path, **kw) -> FeatureConfig:
    # One weights/cache folder per test session: every test file reuses the same extractors.
    return FeatureConfig(
        image_size=75, batch_frames=16, batch_audio=4, workers=2, cache_dir=str(base / "avkd-feature-cache"), **kw
    )


@pytest.fixture(scope="module")
def corpus(tiny_corpus):
    return load_msrvtt(tiny_corpus)


@pytest.fixture(scope="module")
def ext(corpus, tmp_path_factory):
    return get_extractors(corpus, small_cfg(tmp_path_factory.getbasetemp()))


@pytest.fixture(scope="module")
def run(corpus, ext, tmp_path_factory):
    fcfg = small_cfg(tmp_path_factory.mktemp("features"))
    return fcfg, extract_variants(corpus, fcfg, [0.2, 0.6], progress=False, extractors=ext)


def test_tables_for_teacher_and_students(corpus, ext, run):
    fcfg, tables = run
    assert sorted(tables) == [0.2, 0.6, 1.0]
    ids = [v.video_id for s in ("train", "validate", "test") for v in corpus.split(s)]
    silent = sorted(v for v, m in _annotations(corpus.root).items() if not m["has_audio"])
    for k, t in tables.items():
        assert t.k == k and t.pool == "spectral" and t.video_ids == ids and t.errors == []
        assert t.audio.shape == t.visual.shape == (len(ids), 2048)  # the default audio model: Cnn14
        assert t.audio.dtype == t.visual.dtype == np.float32
        assert np.isfinite(t.audio).all() and np.isfinite(t.visual).all()
        assert sorted(t.no_audio) == silent
        assert t.weights["inception"] == "random" and t.weights["cnn14"] == "random" and t.weights["fingerprint"]
    # not collapsed: different clips give clearly different latents, in every variant
    for t in tables.values():
        for x in (t.visual, t.audio):
            spread = np.linalg.norm(x - x.mean(0), axis=1).mean() / np.linalg.norm(x, axis=1).mean()
            assert spread > 0.05
    # a student's visual latent is the mean of the teacher's per-frame features at its frames
    cache = FeatureCache.for_config(fcfg.cache_dir, ext.fingerprints, fcfg)
    v = corpus.videos[ids[0]]
    entry = cache.load_visual(video_key(v.path))
    assert len(entry.indices) == entry.num_frames  # the teacher's frames, each computed once
    for k in (0.2, 1.0):
        idx = frame_indices(entry.num_frames, k)
        np.testing.assert_allclose(tables[k].visual[0], entry.lookup(idx).astype(np.float32).mean(0), rtol=1e-6)


def test_visual_latents_identify_their_video_across_k(run):
    """A student's visual latent is nearest to its own video's teacher latent (content, not noise)."""
    _, tables = run
    teacher = tables[1.0].visual
    for k in (0.2, 0.6):
        d = ((tables[k].visual[:, None] - teacher[None]) ** 2).sum(-1)
        assert (d.argmin(1) == np.arange(len(teacher))).mean() >= 0.9


def test_features_are_informative(ext, tmp_path):
    """Random weights with re-estimated BN still tell apart what controlled clips show and play."""
    rng = np.random.default_rng(0)
    t = np.arange(32000 * 2) / 32000
    sounds = {"tone": 0.3 * np.sin(2 * np.pi * 440 * t), "noise": 0.3 * rng.standard_normal(len(t))}
    videos = {}
    for background, grey in (("dark", 30), ("light", 220)):
        for sound in sounds:
            for i in range(2):
                name = f"{background}-{sound}-{i}"
                frames = np.clip(grey + rng.normal(0, 12, (16, 48, 64, 3)), 0, 255).astype(np.uint8)
                audio = (sounds[sound] * rng.uniform(0.7, 1.3) + 0.01 * rng.standard_normal(len(t)))[None]
                write_mp4(tmp_path / f"{name}.mp4", frames, 8, audio=audio.astype(np.float32))
                videos[name] = Video(name, "test", tmp_path / f"{name}.mp4", ["x"], [["x"]])
    tables = extract_variants(Dataset(tmp_path, videos), small_cfg(tmp_path), [0.5], progress=False, extractors=ext)
    for table in tables.values():
        assert table.errors == [] and len(table.video_ids) == 8
        for feats, attr in ((table.visual, 0), (table.audio, 1)):
            x = feats - feats.mean(0)
            label = [vid.split("-")[attr] for vid in table.video_ids]
            same = [np.linalg.norm(x[i] - x[j]) for i in range(8) for j in range(i) if label[i] == label[j]]
            other = [np.linalg.norm(x[i] - x[j]) for i in range(8) for j in range(i) if label[i] != label[j]]
            assert max(same) < min(other) or np.mean(same) < 0.5 * np.mean(other), (attr, same, other)


def test_cnn10_with_time_mean_gives_512d_audio_beside_cnn14_in_one_cache(corpus, ext, run, tmp_path_factory):
    """The paper's audio settings: 512-d latents tagged cnn10, in their own cache entries; the Cnn14
    entries of the same videos are untouched and still hit."""
    _, tables14 = run
    base = tmp_path_factory.getbasetemp()  # ext's folder: its re-estimated Inception weights are there
    fcfg14, fcfg = small_cfg(base), small_cfg(base, audio_model="cnn10", audio_time_pool="mean")
    ids = tables14[1.0].video_ids[:4]
    extract_variants(corpus, fcfg14, [0.2], video_ids=ids, progress=False, extractors=ext)
    ext10 = get_extractors(corpus, fcfg)
    assert type(ext10.audio).__name__ == "Cnn10" and ext10.audio_model == "cnn10"
    assert ext10.fingerprints["inception"] == ext.fingerprints["inception"]
    tables = extract_variants(corpus, fcfg, [0.2], video_ids=ids, progress=False, extractors=ext10)
    for k, t in tables.items():
        assert t.audio.shape == (4, 512) and t.visual.shape == (4, 2048) and np.isfinite(t.audio).all()
        assert set(t.weights) == {"inception", "cnn10", "fingerprint"} and t.weights["cnn10"] == "random"
        # same Inception features (other batch compositions: equal up to float16 storage rounding)
        np.testing.assert_allclose(t.visual, tables14[k].visual[:4], rtol=2e-3, atol=1e-4)
    tags = {
        FeatureCache.for_config(fcfg14.cache_dir, ext.fingerprints, fcfg14).audio_tag,
        FeatureCache.for_config(fcfg.cache_dir, ext10.fingerprints, fcfg).audio_tag,
    }
    assert {p.name for p in (Path(fcfg.cache_dir) / "audio").iterdir()} >= tags and len(tags) == 2
    again = extract_variants(corpus, fcfg14, [0.2], video_ids=ids, progress=False, extractors=ext)
    np.testing.assert_array_equal(again[0.2].audio, tables14[0.2].audio[:4])


def test_latent_table_roundtrip(tmp_path):
    t = LatentTable(
        k=0.2,
        pool="spectral",
        video_ids=["a", "b"],
        audio=np.ones((2, 2048), np.float32),
        visual=np.zeros((2, 2048), np.float32),
        no_audio=["b"],
        errors=[{"video_id": "c", "path": "/x/c.mp4", "reason": "empty file (0 bytes)"}],
        weights={"inception": "random", "cnn14": "pretrained", "fingerprint": "ab-cd"},
    )
    t.save(tmp_path / "t.npz")
    u = LatentTable.load(tmp_path / "t.npz")
    assert (u.k, u.pool, u.video_ids, u.no_audio, u.errors, u.weights) == (
        t.k,
        t.pool,
        t.video_ids,
        t.no_audio,
        t.errors,
        t.weights,
    )
    np.testing.assert_array_equal(u.audio, t.audio)
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_inputs_are_recorded_and_the_batch_goes_on(corpus, ext, tmp_path):
    good = corpus.split("train")[0]
    files = tmp_path / "videos"
    files.mkdir()
    (files / "empty.mp4").write_bytes(b"")
    (files / "text.mp4").write_text("this is not a video\n")
    blob = Path(good.path).read_bytes()
    (files / "truncated.mp4").write_bytes(blob[: len(blob) // 2])
    rng = np.random.default_rng(0)
    write_mp4(files / "silent.mp4", rng.integers(0, 255, (12, 48, 64, 3), dtype=np.uint8), 10)  # no audio stream
    write_mp4(
        files / "one_frame.mp4",
        rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8),
        10,
        audio=0.1 * rng.standard_normal((1, 3200)).astype(np.float32),
    )
    write_mp4(files / "small.mp4", rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), 10)  # upsampled
    write_mp4(files / "pixels2.mp4", rng.integers(0, 255, (4, 2, 2, 3), dtype=np.uint8), 10)  # decord cannot: PyAV
    write_mp4(files / "wide.mp4", np.full((2, 16, 4128, 3), 90, np.uint8), 10)
    names = ["empty", "text", "truncated", "silent", "one_frame", "small", "pixels2", "wide", "missing"]
    videos = {n: Video(n, "test", files / f"{n}.mp4", ["a caption"], [["a", "caption"]]) for n in names}
    videos[good.video_id] = good
    ds = Dataset(root=tmp_path, videos=videos)
    tables = extract_variants(
        ds, small_cfg(tmp_path), [0.5], video_ids=[good.video_id, *names], progress=False, extractors=ext
    )
    t = tables[0.5]
    assert t.video_ids == [good.video_id, "silent", "one_frame", "small", "pixels2"]
    assert t.no_audio == ["silent", "small", "pixels2"]  # written without an audio stream
    reasons = {e["video_id"]: e["reason"] for e in t.errors}
    assert sorted(reasons) == ["empty", "missing", "text", "truncated", "wide"]
    assert "0 bytes" in reasons["empty"] and "4096" in reasons["wide"] and "not found" in reasons["missing"]
    assert all(e["path"].endswith(f"{e['video_id']}.mp4") for e in t.errors)
    assert np.isfinite(t.audio).all() and np.isfinite(t.visual).all()
    assert tables[1.0].errors == t.errors


def _annotations(root: Path) -> dict:
    out = {}
    for name in ("train_val_videodatainfo.json", "test_videodatainfo.json"):
        for v in json.loads((Path(root) / name).read_text())["videos"]:
            out[v["video_id"]] = v["avkd"]
    return out


def test_a_full_cache_hit_builds_no_extractor_until_a_weight_file_changes(corpus, ext, tmp_path_factory, monkeypatch):
    """The rerun of a finished sweep: the cache keys come from the remembered weight fingerprints."""
    from avkd.features import extract as E

    fcfg = small_cfg(tmp_path_factory.getbasetemp())  # ext's own cache: its re-estimated weights are there
    first = extract_variants(corpus, fcfg, [0.6], progress=False, extractors=ext)
    monkeypatch.setattr(E, "_LOADED", {})  # this process forgets the extractors it built
    again = extract_variants(corpus, fcfg, [0.6], progress=False)
    assert E._LOADED == {}  # every feature was cached: no model was built, no weights hashed
    for k in (0.6, 1.0):
        assert again[k].weights == first[k].weights and again[k].video_ids == first[k].video_ids
        assert np.array_equal(again[k].visual, first[k].visual) and np.array_equal(again[k].audio, first[k].audio)

    # A weight file that changed (here only touched) is loaded and hashed again before any cache lookup.
    weights_file = next((Path(fcfg.cache_dir) / "weights").glob("inception-*.pt"))
    st = weights_file.stat()
    os.utime(weights_file, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    third = extract_variants(corpus, fcfg, [0.6], progress=False)
    assert len(E._LOADED) == 1  # built (same content, so the same fingerprint and the same cache entries)
    assert third[1.0].weights == first[1.0].weights
    assert np.array_equal(third[0.6].visual, first[0.6].visual)
