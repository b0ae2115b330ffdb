"""Reliability: a zoo of good, odd and broken video files through decoding, `data check` and extraction.

The zoo (media_zoo.py) is real files written with PyAV: H.264/AAC clips, an index-first clip, a clip
without audio, a one-frame clip, 0.3 s of audio in a 2 s clip, 5.1 audio, 8 kHz audio, VP9/Opus
WebM named .mp4, 161x97 frames, a truncated MP4 (index lost), an index-first MP4 cut at 60 %, a
0-byte file and a text file named .mp4.
"""

from __future__ import annotations

import json
import re
import subprocess
import time

import av
import numpy as np
import pytest

from avkd.data.media import SAMPLE_RATE, probe, read_audio, read_frames
from avkd.errors import MediaError

from .conftest import PYTHON, cli_env
from .media_zoo import FPS, TONE_HZ, frames_for

DECODABLE = [
    "good0",
    "good1",
    "good2",
    "good3",
    "good_faststart",
    "no_audio",
    "one_frame",
    "short_audio",
    "surround51",
    "audio_8k",
    "vp9_webm",
    "odd_161x97",
]
BROKEN = ["truncated", "truncated_faststart", "zero_bytes", "text_file"]


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def native_channels(path) -> tuple[np.ndarray, int]:
    """Every channel of the first audio stream at the file's own rate, decoded directly with PyAV."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return np.concatenate([f.to_ndarray() for f in container.decode(stream)], axis=1), stream.rate


def test_zoo_lists_every_file(zoo):
    """Injected: nothing. Holds: the zoo has every case the suite talks about, each file on disk."""
    root, clips = zoo
    assert sorted(clips) == sorted(DECODABLE + BROKEN)
    assert sorted(p.stem for p in (root / "videos").iterdir()) == sorted(clips)


@pytest.mark.parametrize("vid", DECODABLE)
def test_decodable_clip_frames(zoo, vid):
    """Injected: one good or odd-but-valid file (VP9 WebM as .mp4, 161x97, 1 frame, 5.1, 8 kHz ...).
    Holds: probe gives its frame count, rate, size and audio flag; read_frames returns (N, H, W, 3)
    uint8 RGB within a few grey levels of the frames written, in order; an index past the end is a
    MediaError naming the file."""
    clip = zoo[1][vid]
    info = probe(clip.path)
    assert (info.num_frames, info.fps, info.width, info.height) == (clip.num_frames, FPS, clip.width, clip.height)
    assert info.duration_s == pytest.approx(clip.num_frames / FPS)
    assert info.has_audio == clip.has_audio
    frames = read_frames(clip.path, list(range(clip.num_frames)))
    assert frames.dtype == np.uint8 and frames.shape == (clip.num_frames, clip.height, clip.width, 3)
    written = frames_for(clip.num_frames, clip.height, clip.width, clip.seed).astype(np.float64)
    error = np.abs(frames - written).mean(axis=(1, 2, 3))
    assert error.max() < 6, f"{vid}: decoded frames differ from the written ones by {error.max():.1f} levels"
    if clip.num_frames > 1:  # frame i is closer to written frame i than to frame i-1: the order is right
        shifted = np.abs(frames[1:] - written[:-1]).mean(axis=(1, 2, 3))
        assert np.all(shifted > 2 * error[1:])
    with pytest.raises(MediaError) as err:
        read_frames(clip.path, [clip.num_frames])
    assert err.value.video == str(clip.path) and "out of range" in err.value.reason


@pytest.mark.parametrize("vid", [v for v in DECODABLE if v != "no_audio"])
def test_decodable_clip_audio(zoo, vid):
    """Injected: a clip with an audio track (1, 2 or 6 channels; 8, 32, 44.1 or 48 kHz; AAC or Opus).
    Holds: read_audio gives finite mono float32 at 32 kHz, as long as the track, whose level is the
    mean of the channels as decoded (not FFmpeg's louder downmix)."""
    clip = zoo[1][vid]
    audio, has_audio = read_audio(clip.path)
    assert has_audio and audio.dtype == np.float32 and audio.ndim == 1 and np.isfinite(audio).all()
    track_s = clip.audio_s or clip.num_frames / FPS
    # Encoders pad to whole frames (AAC 1024 samples, +priming): allow 0.06 s over, nothing under 95 %.
    assert 0.95 * track_s <= len(audio) / SAMPLE_RATE <= track_s + 0.06
    channels, rate = native_channels(clip.path)
    assert rms(audio) == pytest.approx(rms(channels.mean(axis=0)), rel=0.02)
    assert rms(audio) == pytest.approx(clip.expected_rms, rel=0.08 if channels.shape[0] < 6 else 0.25)


def test_surround_is_averaged_to_mono(zoo):
    """Injected: 5.1 AAC at 48 kHz, channel gains 0.6..0.1 (the encoder low-passes the LFE channel).
    Holds: the file really has 6 distinct channels; read_audio is their plain mean at 32 kHz."""
    clip = zoo[1]["surround51"]
    channels, rate = native_channels(clip.path)
    assert channels.shape[0] == 6 and rate == 48000
    levels = [rms(c) for c in channels]
    assert levels[0] > levels[1] > levels[2] > levels[4] > levels[5] > 0.05  # FL FR FC (LFE) BL BR
    audio, _ = read_audio(clip.path)
    assert rms(audio) == pytest.approx(rms(channels.mean(axis=0)), rel=0.02)
    assert abs(len(audio) - channels.shape[1] * SAMPLE_RATE / rate) <= 64
    for single in channels:  # not one channel picked, and not the sum
        assert abs(rms(audio) - rms(single)) > 0.02
    assert rms(audio) < 0.5 * rms(channels.sum(axis=0))


def test_8khz_audio_is_resampled_to_32khz(zoo):
    """Injected: a 440 Hz tone in mono AAC at 8 kHz. Holds: the output has 32000 samples per second
    and its spectral peak is still at 440 Hz (a wrong rate would move it)."""
    audio, _ = read_audio(zoo[1]["audio_8k"].path)
    assert len(audio) == pytest.approx(2.0 * SAMPLE_RATE, abs=0.06 * SAMPLE_RATE)
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(audio)
    assert peak_hz == pytest.approx(TONE_HZ, abs=2.0)


def test_short_audio_and_padding(zoo):
    """Injected: 0.3 s of audio in a 2 s clip. Holds: read_audio returns ~0.3 s (it does not invent
    sound), and with duration_s=2.0 exactly 2 s, zero after the track ends."""
    path = zoo[1]["short_audio"].path
    audio, has_audio = read_audio(path)
    assert has_audio and 0.28 <= len(audio) / SAMPLE_RATE <= 0.36
    padded, _ = read_audio(path, duration_s=2.0)
    assert len(padded) == 2 * SAMPLE_RATE and not padded[round(0.4 * SAMPLE_RATE) :].any()
    np.testing.assert_array_equal(padded[: len(audio)], audio)


def test_clip_without_audio_gives_silence_and_flag(zoo):
    """Injected: a clip with no audio stream. Holds: read_audio returns 2 s of zeros and has_audio=False."""
    audio, has_audio = read_audio(zoo[1]["no_audio"].path)
    assert not has_audio and audio.dtype == np.float32
    assert len(audio) == 2 * SAMPLE_RATE and not audio.any()


@pytest.mark.parametrize("vid", BROKEN)
def test_broken_file_raises_media_error(zoo, vid):
    """Injected: a truncated MP4, an index-first MP4 cut at 60 %, a 0-byte file, a text file as .mp4.
    Holds: probe, read_frames and read_audio each raise MediaError (nothing else) carrying the file
    and a short one-line reason (no raw FFmpeg error numbers); probe's reason says what is wrong."""
    clip = zoo[1][vid]
    calls = {
        "probe": lambda: probe(clip.path),
        "read_frames": lambda: read_frames(clip.path, [0, 1]),
        "read_audio": lambda: read_audio(clip.path),
    }
    for name, call in calls.items():
        with pytest.raises(MediaError) as err:
            call()
        e = err.value
        assert e.video == str(clip.path), name
        assert str(e).startswith(f"{clip.path}: ") and "\n" not in str(e), name
        assert 0 < len(e.reason) <= 200, name
        assert not re.search(r"\d{6,}", e.reason), f"{name}: raw FFmpeg error code in {e.reason!r}"
        if name != "read_audio":  # read_audio of the cut index-first file stops at the audio instead
            assert re.search(clip.bad, e.reason), f"{name}: {e.reason!r} !~ {clip.bad!r}"


def test_data_check_cli_names_every_bad_file(zoo, tmp_path):
    """Injected: the whole zoo, through `python -m avkd data check ROOT --json OUT` (a subprocess).
    Holds: exit 0; every broken file is printed with its reason; the 'no audio' column counts the one
    clip without audio; the JSON lists exactly the broken files as undecodable and the usable rest."""
    root, clips = zoo
    out = tmp_path / "check.json"
    proc = subprocess.run(
        [PYTHON, "-m", "avkd", "data", "check", str(root), "--json", str(out)],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for vid in BROKEN:
        reason = probe_reason(clips[vid].path)
        assert any(vid in line and reason in line for line in lines), f"{vid} ({reason}) not in:\n{proc.stdout}"
    table = {line.split()[0]: line.split() for line in lines if line.split()[:1] in (["train"], ["validate"], ["test"])}
    header = next(line.split() for line in lines if "undecodable" in line)
    no_audio_col = header.index("no")  # the header's "no audio" is two words, each row's value one
    assert sum(int(row[no_audio_col]) for row in table.values()) == 1
    report = json.loads(out.read_text())
    assert report["no_audio"] == ["no_audio"]
    undecodable = {p["video_id"]: p for p in report["problems"] if p["kind"] == "undecodable"}
    assert sorted(undecodable) == sorted(BROKEN)
    assert all(undecodable[v]["file"] == str(clips[v].path) for v in BROKEN)
    assert len(report["problems"]) == len(BROKEN)  # nothing else is flagged
    for split in ("train", "validate", "test"):
        decodable = [v for v in DECODABLE if clips[v].split == split]
        assert report["splits"][split]["usable"] == len(decodable)
        assert report["splits"][split]["undecodable"] == sum(clips[v].split == split for v in BROKEN)


def probe_reason(path) -> str:
    with pytest.raises(MediaError) as err:
        probe(path)
    return err.value.reason


@pytest.mark.slow
def test_extract_variants_on_the_zoo(zoo, tmp_path):
    """Injected: the whole zoo through extract_variants (image_size 75, 1 worker, random weights,
    cache in tmp_path) for k in {1.0, 0.2}. Holds: extraction finishes; each broken file is in
    `errors` with its path and reason; the clip without audio is in `no_audio`; every decodable clip
    has finite, non-constant latents, distinct across clips; a second call runs no Inception or
    Cnn14 forward pass (counted with forward hooks), is much faster and returns the same tables."""
    import torch

    from avkd.config import FeatureConfig, WeightsConfig
    from avkd.data.msrvtt import load_msrvtt
    from avkd.features.extract import extract_variants, get_extractors

    torch.set_num_threads(2)
    root, clips = zoo
    dataset = load_msrvtt(root)
    fcfg = FeatureConfig(
        image_size=75,
        workers=1,
        batch_frames=32,
        cache_dir=str(tmp_path / "features"),
        weights=WeightsConfig(require_pretrained=False, seed=0),
    )
    ext = get_extractors(dataset, fcfg)
    forwards = {"inception": 0, "cnn14": 0}

    def counter(name):
        def hook(module, inputs, output):
            forwards[name] += 1

        return hook

    hooks = [
        ext.inception.register_forward_hook(counter("inception")),
        ext.audio.conv_block1.register_forward_hook(counter("cnn14")),
    ]  # conv_body's first block
    try:
        t0 = time.perf_counter()
        first = extract_variants(dataset, fcfg, [1.0, 0.2], progress=False, extractors=ext)
        first_s = time.perf_counter() - t0
        after_first = dict(forwards)
        t0 = time.perf_counter()
        second = extract_variants(dataset, fcfg, [1.0, 0.2], progress=False, extractors=ext)
        second_s = time.perf_counter() - t0
    finally:
        for h in hooks:
            h.remove()

    assert sorted(first) == [0.2, 1.0]
    assert after_first["inception"] > 0 and after_first["cnn14"] > 0
    for k, table in first.items():
        assert sorted(table.video_ids) == sorted(DECODABLE), k
        errors = {e["video_id"]: e for e in table.errors}
        assert sorted(errors) == sorted(BROKEN), k
        for vid in BROKEN:
            assert errors[vid]["path"] == str(clips[vid].path)
            assert errors[vid]["reason"] == probe_reason(clips[vid].path)
        assert table.no_audio == ["no_audio"], k
        for name in ("audio", "visual"):
            latents = getattr(table, name)
            assert latents.shape == (len(DECODABLE), 2048) and np.isfinite(latents).all(), (k, name)
            assert (latents.std(axis=1) > 1e-4).all(), f"k={k} {name}: a constant latent vector"
            distinct = {np.round(row, 4).tobytes() for row in latents}
            if name == "visual":  # every clip has its own colours
                assert len(distinct) == len(DECODABLE), f"k={k}: identical visual latents for different clips"
    # The student's visual latent averages fewer frames: it differs from the teacher's for 20-frame clips.
    row = first[1.0].video_ids.index("good0")
    assert not np.allclose(first[1.0].visual[row], first[0.2].visual[row])

    assert forwards == after_first, f"second call ran forwards: {forwards} vs {after_first}"
    assert second_s < first_s / 3, f"cached call took {second_s:.2f} s vs {first_s:.2f} s"
    for k in first:
        assert second[k].video_ids == first[k].video_ids and second[k].no_audio == first[k].no_audio
        np.testing.assert_array_equal(second[k].visual, first[k].visual)
        np.testing.assert_array_equal(second[k].audio, first[k].audio)
        assert [e["video_id"] for e in second[k].errors] == [e["video_id"] for e in first[k].errors]
