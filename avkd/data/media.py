"""Reading frames and audio from one video file: frames with decord, audio with PyAV.

Every failure is a `MediaError(path, short reason)`: a raw DECORDError/RuntimeError/FFmpegError
never escapes, so a batch can record the bad video and go on. PyAV reads the container header
first: that is cheap, gives clean errors for empty/garbage/truncated files (decord would print a
native log line for each) and lists the streams, so we know whether a clip has audio.
Audio is decoded with PyAV because decord 0.6's stereo output is corrupt (see read_audio).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import av
import decord
import numpy as np

from avkd.errors import MediaError

SAMPLE_RATE = 32000  # PANNs Cnn14 is trained on 32 kHz audio

# FFmpeg messages inside decord go quiet; decord's own C++ errors still come back as exceptions.
decord.logging.set_level(decord.logging.QUIET)


@dataclass
class MediaInfo:
    num_frames: int
    fps: float
    width: int
    height: int
    duration_s: float
    has_audio: bool


# FFmpeg error codes decord prints as bare numbers (FFERRTAG values; the sign varies).
_FFMPEG_ERRORS = {1094995529: "invalid data", 541478725: "end of file"}  # AVERROR_INVALIDDATA, AVERROR_EOF


def _short(err: Exception) -> str:
    """decord's messages carry '[10:02:48] /src/x.cc:292: ' prefixes and C++ checks: keep the gist."""
    text = re.sub(r"\[\d\d:\d\d:\d\d\] \S+:\d+: ", "", str(err)).strip()
    text = re.sub(r"Check failed: .*?\(-?\d+ vs\. -?\d+\)\s*", "", text)
    text = text.splitlines()[-1] if text else type(err).__name__
    # "Error: av_read_frame failed with 1094995529" -> "av_read_frame failed: invalid data"
    text = re.sub(r"failed with (-?\d+)", lambda m: "failed: " + _FFMPEG_ERRORS.get(abs(int(m.group(1))),
                                                                                 f"FFmpeg error {m.group(1)}"), text)
    text = re.sub(r"^Error: ", "", text)
    return text[:160]


def _read_header(path: Path) -> tuple[int, bool]:
    """(frames the header declares, 0 if unknown; has an audio stream). MediaError if unreadable."""
    if not path.exists():
        raise MediaError(str(path), "file not found")
    if not path.is_file():
        raise MediaError(str(path), "not a regular file")
    if path.stat().st_size == 0:
        raise MediaError(str(path), "empty file (0 bytes)")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError(str(path), "no video stream")
            return int(container.streams.video[0].frames or 0), bool(container.streams.audio)
    except (av.FFmpegError, OSError) as err:
        # e.g. a text file named .mp4, or an MP4 cut before its index ('moov' atom) was written.
        reason = getattr(err, "strerror", None) or str(err)
        raise MediaError(str(path), f"not a readable video ({reason}; truncated or not a video file?)") from None


def _open(path: Path) -> tuple[decord.VideoReader, bool]:
    """A decord reader for a checked file, and whether the file has audio."""
    declared_frames, has_audio = _read_header(path)
    try:
        # One decoding thread: callers parallelise across videos, and the machines are small.
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except (decord.DECORDError, RuntimeError) as err:
        raise MediaError(str(path), f"cannot open video (truncated or corrupt?): {_short(err)}") from None
    # decord indexes only the packets it can read: an index-first MP4 cut short has fewer.
    if declared_frames and len(reader) < declared_frames - max(1, declared_frames // 50):
        raise MediaError(str(path), f"only {len(reader)} of {declared_frames} frames are readable (truncated?)")
    return reader, has_audio


def _decode(path: Path, reader: decord.VideoReader, sorted_indices: list[int]) -> np.ndarray:
    try:
        return reader.get_batch(sorted_indices).asnumpy()
    except (decord.DECORDError, RuntimeError) as err:
        raise MediaError(str(path), f"decoding failed (truncated or corrupt?): {_short(err)}") from None


def _info(path: Path, reader: decord.VideoReader, has_audio: bool) -> MediaInfo:
    num_frames = len(reader)
    if num_frames == 0:
        raise MediaError(str(path), "video stream has no frames")
    fps = float(reader.get_avg_fps())
    if not fps > 0:
        raise MediaError(str(path), f"invalid frame rate {fps}")
    # Decoding the first and the last frame catches files cut after their index: the header
    # then promises frames whose data is missing.
    first_last = _decode(path, reader, sorted({0, num_frames - 1}))
    height, width = first_last.shape[1:3]
    return MediaInfo(num_frames=num_frames, fps=fps, width=int(width), height=int(height),
                     duration_s=num_frames / fps, has_audio=has_audio)


def probe(path: str | Path) -> MediaInfo:
    """Frame count, rate, size, duration and whether there is an audio stream; MediaError if undecodable."""
    path = Path(path)
    return _info(path, *_open(path))


def read_frames(path: str | Path, indices: Sequence[int]) -> np.ndarray:
    """uint8 RGB frames (N, H, W, 3) at `indices`, in the order asked (repeats allowed).

    Only the distinct indices are decoded, in ascending order: decord's get_batch seeks from the
    nearest keyframe, so sorted requests decode each group of pictures once.
    """
    path = Path(path)
    reader, _ = _open(path)
    num_frames = len(reader)
    wanted = [int(i) for i in indices]
    bad = [i for i in wanted if not 0 <= i < num_frames]
    if bad:
        raise MediaError(str(path), f"frame index {bad[0]} out of range (the video has {num_frames} frames)")
    if not wanted:
        height, width = _decode(path, reader, [0]).shape[1:3]
        return np.empty((0, height, width, 3), np.uint8)
    distinct = sorted(set(wanted))
    decoded = _decode(path, reader, distinct)
    row = {index: r for r, index in enumerate(distinct)}
    return decoded[[row[i] for i in wanted]]


def _fit_length(samples: np.ndarray, length: int) -> np.ndarray:
    if len(samples) >= length:
        return samples[:length]
    return np.concatenate([samples, np.zeros(length - len(samples), np.float32)])


def _decode_audio(path: Path, sample_rate: int) -> np.ndarray:
    """float32 (channels, samples) of the first audio stream, resampled (channels kept) to sample_rate."""
    chunks = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            declared_s = float(stream.duration * stream.time_base) if stream.duration else None
            resampler = av.AudioResampler(format="fltp", rate=sample_rate)  # layout: as the input
            for frame in container.decode(stream):
                chunks += [f.to_ndarray() for f in resampler.resample(frame)]
            chunks += [f.to_ndarray() for f in resampler.resample(None)]  # flush
    except (av.FFmpegError, OSError) as err:
        raise MediaError(str(path), f"audio decoding failed: {getattr(err, 'strerror', None) or err}") from None
    if not chunks:
        raise MediaError(str(path), "audio stream has no samples")
    samples = np.concatenate(chunks, axis=1)
    decoded_s = samples.shape[1] / sample_rate
    # A file cut short can decode without an error, just stopping early: compare with its header.
    if declared_s and decoded_s < 0.9 * declared_s - 0.05:
        raise MediaError(str(path), f"audio ends at {decoded_s:.2f} s of {declared_s:.2f} s (truncated?)")
    return samples


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE,
               duration_s: float | None = None) -> tuple[np.ndarray, bool]:
    """Mono float32 audio at `sample_rate` and whether the clip has an audio track.

    Channels are averaged here: FFmpeg's mono downmix (decord's mono=True) is ~3 dB louder. Audio
    is decoded with PyAV, not decord: decord 0.6's AudioReader(mono=False) returns garbage (NaN,
    ~1e38, different on every read) in the second channel of stereo AAC (dmlc/decord#242).
    A clip without an audio stream gives silence as long as the video and False, so the caller can
    count it. With `duration_s`, the result is cut or zero-padded to exactly round(duration_s * rate).
    """
    path = Path(path)
    if _read_header(path)[1]:
        mono, has_audio = _decode_audio(path, sample_rate).mean(axis=0), True
    else:
        video, has_audio = _open(path)
        mono = np.zeros(round(len(video) / float(video.get_avg_fps()) * sample_rate), np.float32)
    if duration_s is not None:
        mono = _fit_length(mono, round(duration_s * sample_rate))
    return np.ascontiguousarray(mono, dtype=np.float32), has_audio
