"""Decoding with decord on real small MP4 files written in the test: normal, no audio, broken files."""

from __future__ import annotations

from pathlib import Path

import av
import decord
import numpy as np
import pytest

from avkd.data.media import SAMPLE_RATE, probe, read_audio, read_frames
from avkd.data.synth import write_mp4
from avkd.errors import MediaError

FPS, N_FRAMES, H, W = 10, 24, 48, 64
AUDIO_RATE = 44100


def grey_frames() -> np.ndarray:
    """Frame i is flat grey 10*i, so a decoded frame tells which index it is."""
    levels = 10 * np.arange(N_FRAMES, dtype=np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (N_FRAMES, H, W, 3)).copy()


def stereo_tone_at(rate: int) -> np.ndarray:
    """Left 0.4, right 0.1 amplitude 440 Hz: the channel mean has amplitude 0.25."""
    t = np.arange(round(N_FRAMES / FPS * rate)) / rate
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([0.4 * tone, 0.1 * tone])


def stereo_tone() -> np.ndarray:
    return stereo_tone_at(AUDIO_RATE)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    paths = {name: d / f"{name}.mp4" for name in ("normal", "silent_track_free", "faststart")}
    write_mp4(paths["normal"], grey_frames(), FPS, stereo_tone(), AUDIO_RATE)
    write_mp4(paths["silent_track_free"], grey_frames(), FPS)  # no audio stream at all
    write_mp4(paths["faststart"], grey_frames(), FPS, stereo_tone(), AUDIO_RATE, faststart=True)
    data = paths["normal"].read_bytes()
    paths["truncated"] = d / "truncated.mp4"  # cut before the index at the end
    paths["truncated"].write_bytes(data[: len(data) // 2])
    data = paths["faststart"].read_bytes()
    paths["truncated_faststart"] = d / "truncated_faststart.mp4"  # index intact, last frames' data missing
    paths["truncated_faststart"].write_bytes(data[: int(len(data) * 0.97)])
    paths["zero"] = d / "zero.mp4"
    paths["zero"].write_bytes(b"")
    paths["text"] = d / "text.mp4"
    paths["text"].write_text("this is a text file, not a video\n" * 20)
    return paths


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_probe_normal_clip(clips):
    info = probe(clips["normal"])
    assert (info.num_frames, info.fps, info.width, info.height) == (N_FRAMES, FPS, W, H)
    assert info.duration_s == pytest.approx(N_FRAMES / FPS)
    assert info.has_audio


def test_probe_clip_without_audio(clips):
    info = probe(clips["silent_track_free"])
    assert info.num_frames == N_FRAMES and not info.has_audio


def test_read_frames_unsorted_and_repeated_indices(clips):
    wanted = [5, 2, 5, 0, 23, 2]
    frames = read_frames(clips["normal"], wanted)
    assert frames.dtype == np.uint8 and frames.shape == (len(wanted), H, W, 3)
    levels = frames.reshape(len(wanted), -1).mean(axis=1)
    np.testing.assert_allclose(levels, [10 * i for i in wanted], atol=3)  # lossy H.264 on flat grey
    # Same pixels as decoding each frame on its own.
    for row, index in enumerate(wanted):
        np.testing.assert_array_equal(frames[row], read_frames(clips["normal"], [index])[0])


def test_read_frames_edge_cases(clips):
    assert read_frames(clips["normal"], []).shape == (0, H, W, 3)
    with pytest.raises(MediaError, match=r"normal\.mp4: frame index 24 out of range \(the video has 24 frames\)"):
        read_frames(clips["normal"], [0, 24])


def test_stereo_is_averaged_not_downmixed(clips, tmp_path):
    # At the file's own rate nothing is resampled: the result is exactly the mean of the two
    # channels as FFmpeg's AAC decoder gives them.
    path = tmp_path / "stereo32k.mp4"
    write_mp4(path, grey_frames(), FPS, stereo_tone_at(SAMPLE_RATE), SAMPLE_RATE)
    with av.open(str(path)) as container:
        channels = np.concatenate([f.to_ndarray() for f in container.decode(audio=0)], axis=1)
    assert channels.shape[0] == 2
    audio, has_audio = read_audio(path)
    assert has_audio and audio.dtype == np.float32 and audio.ndim == 1
    np.testing.assert_allclose(audio, channels.mean(axis=0), rtol=0, atol=1e-7)
    # Resampled from 44.1 kHz: still the amplitude we wrote (mean 0.25 -> RMS 0.177) ...
    audio, _ = read_audio(clips["normal"])
    assert rms(audio) == pytest.approx(0.25 / np.sqrt(2), rel=0.05)
    assert np.isfinite(audio).all() and np.array_equal(audio, read_audio(clips["normal"])[0])
    # ... unlike FFmpeg's mono downmix (decord's mono=True), which is ~3 dB louder.
    downmix = decord.AudioReader(str(clips["normal"]), ctx=decord.cpu(0), sample_rate=SAMPLE_RATE, mono=True)
    downmix = downmix[:].asnumpy()
    assert rms(downmix[0]) / rms(audio) == pytest.approx(np.sqrt(2), rel=0.05)


def test_audio_length_and_rate(clips):
    audio, _ = read_audio(clips["normal"], sample_rate=16000)
    assert abs(len(audio) - 16000 * N_FRAMES / FPS) < 0.05 * 16000  # AAC adds a few ms of padding
    fixed, _ = read_audio(clips["normal"], duration_s=3.0)
    assert len(fixed) == 3 * SAMPLE_RATE and np.all(fixed[-SAMPLE_RATE // 2 :] == 0)  # padded past 2.4 s
    short, _ = read_audio(clips["normal"], duration_s=1.0)
    np.testing.assert_array_equal(short, read_audio(clips["normal"])[0][:SAMPLE_RATE])


def test_clip_without_audio_gives_silence_and_flag(clips):
    audio, has_audio = read_audio(clips["silent_track_free"])
    assert not has_audio
    assert audio.dtype == np.float32 and len(audio) == round(N_FRAMES / FPS * SAMPLE_RATE)
    assert not audio.any()


def test_faststart_file_decodes(clips):
    assert probe(clips["faststart"]).num_frames == N_FRAMES


@pytest.mark.parametrize(
    "name, reason",
    [
        ("truncated", r"not a readable video \(Invalid data"),
        ("truncated_faststart", r"truncated or corrupt"),
        ("zero", r"empty file \(0 bytes\)"),
        ("text", r"not a readable video \(Invalid data"),
    ],
)
def test_broken_files_raise_media_error(clips, name, reason):
    path = clips[name]
    for call in (lambda: probe(path), lambda: read_frames(path, list(range(N_FRAMES)))):
        with pytest.raises(MediaError, match=reason) as err:
            call()
        assert err.value.video == str(path) and "\n" not in str(err.value)
    with pytest.raises(MediaError) as err:
        read_audio(path)
    assert err.value.video == str(path) and "\n" not in str(err.value)


def test_audio_cut_short_is_an_error(clips, tmp_path):
    """Cut in the middle of an index-first file, the audio decodes without an FFmpeg error: it just stops."""
    with av.open(str(clips["faststart"])) as container:  # cut where an audio packet starts
        starts = [p.pos for p in container.demux(container.streams.audio[0]) if p.pos is not None]
    path = tmp_path / "half.mp4"
    path.write_bytes(clips["faststart"].read_bytes()[: starts[len(starts) // 2]])
    with pytest.raises(MediaError, match=r"half\.mp4: audio ends at \d\.\d\d s of 2\.40 s \(truncated\?\)"):
        read_audio(path)
    with pytest.raises(MediaError):
        probe(path)


def test_missing_file(tmp_path):
    with pytest.raises(MediaError, match="file not found"):
        probe(tmp_path / "nope.mp4")


# ---- decode_clip / OpenClip: one open per video ------------------------------------------------------


def test_decode_clip_matches_the_separate_calls(clips):
    from avkd.data.media import decode_clip

    clip = decode_clip(clips["normal"], lambda n: [n - 1, 3, 3, 0])
    assert clip.info == probe(clips["normal"]) and clip.has_audio
    np.testing.assert_array_equal(clip.frames, read_frames(clips["normal"], [N_FRAMES - 1, 3, 3, 0]))
    np.testing.assert_array_equal(clip.audio, read_audio(clips["normal"])[0])
    no_audio = decode_clip(clips["normal"], [2], sample_rate=None)
    assert no_audio.audio is None and no_audio.frames.shape == (1, H, W, 3)


def test_decode_clip_without_audio_gives_silence_and_flag(clips):
    from avkd.data.media import decode_clip

    clip = decode_clip(clips["silent_track_free"], range(N_FRAMES))
    assert not clip.has_audio and not clip.info.has_audio
    assert clip.audio.dtype == np.float32 and len(clip.audio) == round(N_FRAMES / FPS * SAMPLE_RATE)
    assert not clip.audio.any()
    np.testing.assert_allclose(clip.frames.reshape(N_FRAMES, -1).mean(1), 10 * np.arange(N_FRAMES), atol=3)


@pytest.mark.parametrize(
    "name, reason",
    [
        ("truncated", r"not a readable video \(Invalid data"),
        ("truncated_faststart", r"truncated or corrupt"),
        ("zero", r"empty file \(0 bytes\)"),
        ("text", r"not a readable video \(Invalid data"),
    ],
)
def test_decode_clip_broken_files(clips, name, reason):
    from avkd.data.media import decode_clip

    with pytest.raises(MediaError, match=reason) as err:
        decode_clip(clips[name], [0])
    assert err.value.video == str(clips[name]) and "\n" not in str(err.value)
    assert probe_reason(clips[name]) == err.value.reason  # the same reason as probe gives


def probe_reason(path) -> str:
    with pytest.raises(MediaError) as err:
        probe(path)
    return err.value.reason


def test_decode_clip_audio_cut_short(clips, tmp_path):
    """The index-first file cut where an audio packet starts (see test_audio_cut_short_is_an_error)."""
    from avkd.data.media import decode_clip

    with av.open(str(clips["faststart"])) as container:
        starts = [p.pos for p in container.demux(container.streams.audio[0]) if p.pos is not None]
    path = tmp_path / "half.mp4"
    path.write_bytes(clips["faststart"].read_bytes()[: starts[len(starts) // 2]])
    with pytest.raises(MediaError, match=r"half\.mp4: "):
        decode_clip(path, [0])


def test_open_clip_decodes_no_frame_to_learn_the_size(clips):
    from avkd.data.media import OpenClip

    with OpenClip(clips["normal"]) as clip:
        assert (clip.info.width, clip.info.height, clip.info.num_frames) == (W, H, N_FRAMES)
        assert clip.frames([]).shape == (0, H, W, 3)
        with pytest.raises(MediaError, match="out of range"):
            clip.frames([N_FRAMES])
        audio, has_audio = clip.audio(16000)  # frames and audio from the same open file
        assert has_audio and abs(len(audio) - 16000 * N_FRAMES / FPS) < 0.05 * 16000


@pytest.mark.parametrize("height, width", [(16, 16), (32, 48), (24, 24), (2, 2)])
def test_small_frame_sizes_decord_cannot_copy(tmp_path, height, width):
    """decord 0.6 fails on these sizes ('DECORDArrayCopyFromTo: The size must exactly match'): PyAV decodes them."""
    from avkd.data.media import decode_clip

    frames = np.broadcast_to((20 * np.arange(6, dtype=np.uint8))[:, None, None, None], (6, height, width, 3)).copy()
    path = tmp_path / f"s{height}x{width}.mp4"
    write_mp4(path, frames, FPS)
    clip = decode_clip(path, [4, 1, 4])
    assert clip.frames.shape == (3, height, width, 3) and clip.info.num_frames == 6
    np.testing.assert_allclose(clip.frames.reshape(3, -1).mean(1), [80, 20, 80], atol=4)
    np.testing.assert_array_equal(read_frames(path, [4, 1, 4]), clip.frames)
    assert (probe(path).width, probe(path).height) == (width, height)


@pytest.mark.parametrize("rate", [SAMPLE_RATE, 16000, 48000])
def test_audio_resampled_in_one_call_equals_frame_by_frame(clips, rate):
    """read_audio joins the decoded frames and resamples once: bit-identical to feeding FFmpeg's
    resampler one AAC frame at a time (what it did before; the resampler is a stream)."""
    chunks = []
    with av.open(str(clips["normal"])) as container:
        resampler = av.AudioResampler(format="fltp", rate=rate)
        for frame in [*container.decode(audio=0), None]:
            chunks += [f.to_ndarray() for f in resampler.resample(frame)]
    frame_by_frame = np.concatenate(chunks, axis=1).mean(axis=0)
    audio, _ = read_audio(clips["normal"], sample_rate=rate)
    assert audio.shape == frame_by_frame.shape and np.array_equal(audio, frame_by_frame)
