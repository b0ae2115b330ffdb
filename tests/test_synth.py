"""The synthetic corpus (v2): determinism, layout, splits, versioning, and captions that follow what is in the clips."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avkd.data import synth
from avkd.data.check import check_dataset
from avkd.data.media import probe, read_audio, read_frames
from avkd.data.msrvtt import load_msrvtt
from avkd.data.vocab import tokenize_caption
from avkd.errors import DataError
from avkd.features.sampling import frame_indices

N = 12
ANNOTATIONS = (synth.TRAIN_VAL_FILE, synth.TEST_FILE)
# Words that claim a sound is there (silent captions say "no sound", "nothing can be heard" instead).
SOUND_WORDS = {
    "tone",
    "hum",
    "drone",
    "note",
    "beeps",
    "beeping",
    "bleeps",
    "pips",
    "noise",
    "hiss",
    "hissing",
    "static",
    "bang",
    "pop",
    "crash",
    "thud",
    "plays",
    "play",
}
EVENT_WORDS = {"flash": {"flash", "flashes"}, "cross": {"cross", "plus"}, "bang": {"bang", "pop", "crash", "thud"}}
DIRECTION_WORDS = {"left", "right", "leftward", "rightward", "upward", "downward", "rises", "falls", "moves", "moving"}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("synth")
    return {
        "a": synth.generate(d / "a", videos=N, seed=0),
        "b": synth.generate(d / "b", videos=N, seed=0),
        "c": synth.generate(d / "c", videos=N, seed=1),
    }


def entries(root: Path) -> list[dict]:
    return [v for name in ANNOTATIONS for v in json.loads((root / name).read_text())["videos"]]


def captions_of(root: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name in ANNOTATIONS:
        for s in json.loads((root / name).read_text())["sentences"]:
            out.setdefault(s["video_id"], []).append(s["caption"])
    return out


def test_same_seed_is_identical(corpora):
    a, b = corpora["a"], corpora["b"]
    for name in ANNOTATIONS:
        assert (a / name).read_bytes() == (b / name).read_bytes()
    for vid in ("video0", "video11"):
        n = probe(a / "videos" / f"{vid}.mp4").num_frames
        np.testing.assert_array_equal(
            read_frames(a / "videos" / f"{vid}.mp4", range(n)), read_frames(b / "videos" / f"{vid}.mp4", range(n))
        )
        np.testing.assert_array_equal(
            read_audio(a / "videos" / f"{vid}.mp4")[0], read_audio(b / "videos" / f"{vid}.mp4")[0]
        )


def test_mp4_files_are_byte_identical(corpora, tmp_path):
    for path in sorted((corpora["a"] / "videos").iterdir()):
        assert path.read_bytes() == (corpora["b"] / "videos" / path.name).read_bytes(), path.name
    # Regression: with x264's mbtree on, encoding these very frames again in the same process
    # gave a different stream about every other time (uninitialised memory).
    clip = synth.sample_clip(0, 6, "train", has_audio=False)
    frames = synth.render_frames(clip)
    streams = set()
    for i in range(6):
        synth.write_mp4(tmp_path / f"{i}.mp4", frames, clip.fps)
        streams.add((tmp_path / f"{i}.mp4").read_bytes())
    assert len(streams) == 1


def test_other_seed_differs(corpora):
    assert (corpora["a"] / synth.TRAIN_VAL_FILE).read_bytes() != (corpora["c"] / synth.TRAIN_VAL_FILE).read_bytes()
    assert captions_of(corpora["a"])["video0"] != captions_of(corpora["c"])["video0"]
    assert not np.array_equal(
        read_frames(corpora["a"] / "videos" / "video0.mp4", [0]),
        read_frames(corpora["c"] / "videos" / "video0.mp4", [0]),
    )


def test_layout_counts_and_splits(corpora):
    root = corpora["a"]
    ds = load_msrvtt(root)
    assert ds.issues == []
    assert [len(ds.split(s)) for s in ("train", "validate", "test")] == [7, 2, 3]  # ~60/15/25 %
    assert synth._splits(180).count("train") == 108 and synth._splits(180).count("test") == 45
    assert sorted(p.name for p in (root / "videos").iterdir()) == sorted(f"video{i}.mp4" for i in range(N))
    assert not list(root.parent.glob(".a.partial-*"))  # the temporary build folder is gone
    for v in ds.videos.values():
        assert len(v.captions) == synth.CAPTIONS_PER_VIDEO and len(set(v.captions)) == synth.CAPTIONS_PER_VIDEO
    for name in ANNOTATIONS:
        data = json.loads((root / name).read_text())
        assert set(data) == {"info", "videos", "sentences"}
        assert {"video_id", "split", "id", "category", "url", "start time", "end time"} <= set(data["videos"][0])
        assert set(data["sentences"][0]) == {"video_id", "caption", "sen_id"}
    assert {v["split"] for v in json.loads((root / synth.TEST_FILE).read_text())["videos"]} == {"test"}


def test_media_properties_vary_within_bounds(corpora):
    for e in entries(corpora["a"]):
        info = probe(corpora["a"] / "videos" / f"{e['video_id']}.mp4")
        attrs = e["avkd"]
        assert info.fps in synth.FPS_CHOICES and info.num_frames == attrs["num_frames"]
        assert 18 <= info.num_frames <= 32  # 6-8 s at 3-4 fps
        assert 5.8 <= info.duration_s <= 8.2 and info.duration_s == pytest.approx(e["end time"], abs=1e-3)
        assert 144 <= info.width <= 176 and info.width % 2 == 0 and 112 <= info.height <= 128 and info.height % 2 == 0
        assert info.has_audio == attrs["has_audio"]
    assert sum(not e["avkd"]["has_audio"] for e in entries(corpora["a"])) == 1  # max(1, 5 % of 12)


def test_silent_clips_are_captioned_silent(corpora):
    caps = captions_of(corpora["a"])
    silent = [e["video_id"] for e in entries(corpora["a"]) if e["avkd"]["sound"] == "silence"]
    assert any(not e["avkd"]["has_audio"] for e in entries(corpora["a"]))
    for vid in silent:
        for caption in caps[vid]:
            assert not SOUND_WORDS & set(tokenize_caption(caption)), caption


def test_check_dataset_reports_clips_without_audio(corpora):
    report = check_dataset(corpora["a"])
    silent = sorted(e["video_id"] for e in entries(corpora["a"]) if not e["avkd"]["has_audio"])
    assert report["no_audio"] == silent
    assert sum(c["no_audio"] for c in report["splits"].values()) == len(silent)
    assert report["problems"] == []


def test_pictures_show_the_captioned_colour_and_background(corpora):
    for e in entries(corpora["a"]):
        attrs = e["avkd"]
        n = attrs["num_frames"]
        middle = [f for f in range(n) if not attrs["event_frames"][0] <= f < attrs["event_frames"][1]][n // 2 - 2]
        frame = read_frames(corpora["a"] / "videos" / f"{e['video_id']}.mp4", [middle])[0].astype(int)
        distance = {c: np.abs(frame - np.array(rgb)).sum(axis=2) for c, rgb in synth.COLOURS.items()}
        share = {c: float(np.mean(d < 80)) for c, d in distance.items()}
        assert max(share, key=share.get) == attrs["colour"], (e["video_id"], share)
        assert share[attrs["colour"]] > 0.002  # one small triangle is ~0.5 % of the picture
        corner = frame[:4, :4].mean()
        assert (corner < 80) if attrs["background"] == "dark" else (corner > 170)


def test_objects_drift_but_the_direction_is_never_captioned():
    """Mean-pooled features cannot tell left from right over the same positions: v2 never says it."""
    for index in range(40):
        c = synth.sample_clip(0, index, "train", has_audio=True)
        frames = synth.render_frames(c).astype(int)
        # the first and the last frame never hold an event (a flash would hide the objects)
        masks = [np.abs(f - np.array(c.colour_rgb)).sum(axis=2) < 10 for f in (frames[0], frames[-1])]
        (y0, x0), (y1, x1) = (np.argwhere(m).mean(axis=0) for m in masks)
        dx, dy = x1 - x0, y1 - y0
        expected = {
            "left": dx < -10,
            "right": dx > 10,
            "up": dy < -10,
            "down": dy > 10,
            "none": abs(dx) < 1 and abs(dy) < 1,
        }[c.drift]
        assert expected, (c.drift, dx, dy)
        for caption in synth.make_captions(c, 0, index):
            assert not DIRECTION_WORDS & set(tokenize_caption(caption)), caption


def test_audio_pitch_is_what_the_captions_say(corpora):
    caps = captions_of(corpora["a"])
    tonal = [e for e in entries(corpora["a"]) if e["avkd"]["sound"] in ("tone", "beeps")]
    assert tonal
    for e in tonal:
        audio, _ = read_audio(corpora["a"] / "videos" / f"{e['video_id']}.mp4")
        spectrum = np.abs(np.fft.rfft(audio))
        peak_hz = np.fft.rfftfreq(len(audio), 1 / 32000)[np.argmax(spectrum)]
        assert abs(peak_hz - synth.PITCH_HZ[e["avkd"]["pitch"]]) < 0.05 * synth.PITCH_HZ[e["avkd"]["pitch"]]
        words = {w for c in caps[e["video_id"]] for w in tokenize_caption(c)}
        assert words & ({"low", "deep"} if e["avkd"]["pitch"] == "low" else {"high", "shrill"})


def test_beep_rhythm_is_what_the_captions_say():
    """Slow beeps pulse at 2 Hz, fast ones at 8 Hz: the envelope's strongest modulation says which."""
    seen = set()
    for index in range(60):
        c = synth.sample_clip(0, index, "train", has_audio=True)
        if c.sound != "beeps" or c.rhythm in seen:
            continue
        seen.add(c.rhythm)
        audio = synth.render_audio(c)[0].astype(np.float64)
        a, b = (round(s * c.sample_rate) for s in c.audio_event_s)
        audio[a:b] = 0.0  # the bang is not part of the rhythm
        hop = c.sample_rate // 100  # a 100 Hz envelope
        envelope = np.abs(audio[: len(audio) // hop * hop]).reshape(-1, hop).mean(axis=1)
        spectrum = np.abs(np.fft.rfft(envelope - envelope.mean()))
        hz = np.fft.rfftfreq(len(envelope), 1 / 100)
        assert hz[np.argmax(spectrum)] == pytest.approx(synth.BEEP_HZ[c.rhythm], abs=0.3), c.rhythm
        rhythm_words = set(synth.RHYTHM_WORDS[c.rhythm])
        for caption in synth.make_captions(c, 0, index):
            assert rhythm_words & set(tokenize_caption(caption)), caption
    assert seen == {"slow", "fast"}


def test_brief_events_are_brief_and_visible():
    flashes = crosses = bangs = 0
    for index in range(60):
        c = synth.sample_clip(0, index, "train", has_audio=True)
        first, last = c.event_frames
        assert last - first in synth.VISUAL_EVENT_FRAMES and 0 < first and last < c.num_frames
        if c.visual_event == "flash":
            brightness = synth.render_frames(c).reshape(c.num_frames, -1).mean(axis=1)
            inside = np.zeros(c.num_frames, bool)
            inside[first:last] = True
            assert brightness[inside].min() > brightness[~inside].max()
            flashes += 1
        elif c.visual_event == "cross" and crosses < 3:
            frames = synth.render_frames(c)

            def changed(f: int, frames: np.ndarray = frames) -> int:
                return int((np.abs(frames[f].astype(int) - frames[f - 1]).sum(axis=2) > 100).sum())

            assert changed(first) > 20 and changed(last) > 20  # the cross pops up, and goes again
            crosses += 1
        if c.audio_event == "bang":
            audio = synth.render_audio(c)[0]
            a, b = (round(s * c.sample_rate) for s in c.audio_event_s)
            assert 0.079 <= (b - a) / c.sample_rate <= 0.201 and b <= len(audio)
            assert np.abs(audio[a : a + (b - a) // 3]).mean() > 1.5 * np.abs(np.delete(audio, np.s_[a:b])).mean()
            bangs += 1
    assert flashes and crosses and bangs


def test_every_caption_names_the_visual_attributes_the_sound_and_every_event():
    for index in range(30):
        c = synth.sample_clip(3, index, "train", has_audio=index != 7)
        shape_words = set(synth.SHAPE_NOUNS[c.shape]) | {synth.plural_noun(n) for n in synth.SHAPE_NOUNS[c.shape]}
        for caption in synth.make_captions(c, 3, index):
            words = set(tokenize_caption(caption))
            assert c.colour in words and shape_words & words, caption
            assert words & {w for p in synth.SIZE_WORDS[c.size] for w in p.split()}, caption
            if c.count > 1:
                assert {2: "two", 3: "three"}[c.count] in words, caption
            if c.sound == "silence":
                assert not SOUND_WORDS & words and words & {
                    "silence",
                    "silently",
                    "silent",
                    "no",
                    "nothing",
                    "without",
                }, caption
            else:
                assert words & {n for n, _ in synth.SOUND_NOUNS[c.sound]}, caption
            if c.pitch:
                assert words & {w.split()[0] for w in synth.PITCH_WORDS[c.pitch]}, caption
            for event in (c.visual_event, c.audio_event):
                if event:
                    assert EVENT_WORDS[event] & words, caption
            absent = {"flash", "cross", "bang"} - {c.visual_event, c.audio_event}
            assert not set().union(*(EVENT_WORDS[e] for e in absent)) & words, caption


def test_brief_events_are_common():
    specs = synth.clip_specs(180, 0)
    with_sound = [c for c in specs if c.sound != "silence"]
    assert 0.5 <= np.mean([c.visual_event is not None for c in specs]) <= 0.7
    assert 0.4 <= np.mean([c.audio_event is not None for c in with_sound]) <= 0.6


def test_k02_misses_the_stated_share_of_visual_events():
    """Expected miss rate from the generator's parameters (exact enumeration) vs. the 180-clip corpus,
    both with the frames a k-student really decodes (frame_indices)."""
    specs = [c for c in synth.clip_specs(180, 0) if c.visual_event]
    expected = {k: synth.expected_visual_event_miss_rate(k, frame_indices) for k in (0.2, 0.4, 0.6, 0.8, 1.0)}
    measured = np.mean([not set(frame_indices(c.num_frames, 0.2)) & set(range(*c.event_frames)) for c in specs])
    print(f"visual event miss rate: expected {expected}, measured at k=0.2 on {len(specs)} clips {measured:.3f}")
    assert expected[0.2] == pytest.approx(0.70, abs=0.02)
    assert expected[1.0] == 0.0 and all(expected[a] > expected[b] for a, b in [(0.2, 0.4), (0.4, 0.6), (0.6, 0.8)])
    assert measured == pytest.approx(expected[0.2], abs=0.1)  # binomial sd with ~110 clips: ~0.045


def test_written_annotations_are_the_annotations_function(corpora):
    """One code path: the files on disk are exactly `annotations()` (which the oracle test uses without MP4s)."""
    for name, ann in synth.annotations(N, 0).items():
        assert (corpora["a"] / name).read_text() == json.dumps(ann)
    info = ann["info"]
    assert info["corpus_version"] == synth.CORPUS_VERSION == 2 and info["generator"] == synth.GENERATOR
    stored = {
        v["video_id"]: v["avkd"] for e in ANNOTATIONS for v in json.loads((corpora["a"] / e).read_text())["videos"]
    }
    assert stored["video3"] == json.loads(json.dumps(synth.asdict(synth.clip_specs(N, 0)[3])))
    assert load_msrvtt(corpora["a"]).issues == []  # the loader ignores the extra fields


def test_an_older_corpus_version_is_refused_and_fingerprinted_apart(corpora, tmp_path):
    old = tmp_path / "v1"
    shutil.copytree(corpora["a"], old)
    for name in ANNOTATIONS:  # what corpus v1 wrote: no corpus_version in the info block
        data = json.loads((old / name).read_text())
        del data["info"]["corpus_version"]
        (old / name).write_text(json.dumps(data))
    assert load_msrvtt(old).fingerprint() != load_msrvtt(corpora["a"]).fingerprint()
    with pytest.raises(
        DataError,
        match=r"already holds a synthetic corpus with \{'videos': 12, 'seed': 0, "
        r"'corpus_version': 1\}.*corpus_version=2",
    ):
        synth.generate(old, videos=N, seed=0)


def test_existing_corpus_is_reused_and_foreign_folder_refused(corpora, tmp_path):
    root = corpora["a"]
    before = (root / synth.TRAIN_VAL_FILE).stat().st_mtime_ns
    assert synth.generate(root, videos=N, seed=0) == root
    assert (root / synth.TRAIN_VAL_FILE).stat().st_mtime_ns == before
    with pytest.raises(
        DataError, match=r"already holds a synthetic corpus with \{'videos': 12, 'seed': 0, 'corpus_version': 2\}"
    ):
        synth.generate(root, videos=N, seed=5)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match="already holds other files"):
        synth.generate(tmp_path / "mine", videos=N)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real_write = synth.write_mp4

    def fail_on_fourth(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        real_write(*args, **kwargs)

    monkeypatch.setattr(synth, "write_mp4", fail_on_fourth)
    with pytest.raises(KeyboardInterrupt):
        synth.generate(tmp_path / "corpus", videos=N)
    assert list(tmp_path.iterdir()) == []


def test_cmd_synth_prints_one_line(tmp_path, capsys):
    args = argparse.Namespace(out=str(tmp_path / "s"), videos=5, seed=2)
    assert synth.cmd_synth(args) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "5 clips (3 train / 1 validate / 1 test, 1 without audio, seed 2)" in line
    assert synth.cmd_synth(args) == 0
    assert "already there" in capsys.readouterr().out
    with pytest.raises(DataError, match="need at least 3"):
        synth.generate(tmp_path / "t", videos=2)
