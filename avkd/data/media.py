"""Reading frames and audio from one video file: frames with decord, audio with PyAV.

Every failure is a `MediaError(path, short reason)`: a raw DECORDError/RuntimeError/FFmpegError
never escapes, so a batch can record the bad video and go on. PyAV reads the container header
first: that is cheap, gives clean errors for empty/garbage/truncated files (decord would print a
native log line for each) and lists the streams, so we know whether a clip has audio.
Audio is decoded with PyAV because decord 0.6's stereo output is corrupt (see read_audio).

`decode_clip` (what feature extraction uses) opens a file once: one PyAV container for the header and
the audio, one decord reader for the frames. probe/read_frames/read_audio each open it on their own.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

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
    text = re.sub(
        r"failed with (-?\d+)",
        lambda m: "failed: " + _FFMPEG_ERRORS.get(abs(int(m.group(1))), f"FFmpeg error {m.group(1)}"),
        text,
    )
    text = re.sub(r"^Error: ", "", text)
    return text[:160]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise MediaError(str(path), "file not found")
    if not path.is_file():
        raise MediaError(str(path), "not a regular file")
    if path.stat().st_size == 0:
        raise MediaError(str(path), "empty file (0 bytes)")


def _unreadable(path: Path, err: Exception) -> MediaError:
    # e.g. a text file named .mp4, or an MP4 cut before its index ('moov' atom) was written.
    reason = getattr(err, "strerror", None) or str(err)
    return MediaError(str(path), f"not a readable video ({reason}; truncated or not a video file?)")


def _open_container(path: Path):
    """A PyAV container with a video stream, for a checked file. MediaError if unreadable."""
    _check_file(path)
    try:
        container = av.open(str(path))
    except (av.FFmpegError, OSError) as err:
        raise _unreadable(path, err) from None
    if not container.streams.video:
        container.close()
        raise MediaError(str(path), "no video stream")
    return container


def _read_header(path: Path) -> tuple[int, bool]:
    """(frames the header declares, 0 if unknown; has an audio stream). MediaError if unreadable."""
    with _open_container(path) as container:
        return int(container.streams.video[0].frames or 0), bool(container.streams.audio)


def _open(path: Path, header: tuple[int, bool] | None = None) -> tuple[decord.VideoReader, bool]:
    """A decord reader for a checked file, and whether the file has audio (`header`: _read_header's, if read)."""
    declared_frames, has_audio = header or _read_header(path)
    try:
        # One decoding thread: callers parallelise across videos, and the machines are small.
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    except (decord.DECORDError, RuntimeError) as err:
        raise MediaError(str(path), f"cannot open video (truncated or corrupt?): {_short(err)}") from None
    # decord indexes only the packets it can read (opening scans every packet): an index-first MP4
    # cut short has fewer, or fails to open.
    if declared_frames and len(reader) < declared_frames - max(1, declared_frames // 50):
        raise MediaError(str(path), f"only {len(reader)} of {declared_frames} frames are readable (truncated?)")
    return reader, has_audio


def _decode(path: Path, reader: decord.VideoReader, sorted_indices: list[int]) -> np.ndarray:
    try:
        return reader.get_batch(sorted_indices).asnumpy()
    except (decord.DECORDError, RuntimeError) as err:
        if "size must exactly match" in str(err):
            # decord 0.6 cannot copy out some small frame sizes (16x16, 48x32, 24x24, 2x2 ...): PyAV can.
            return _decode_with_pyav(path, sorted_indices)
        raise MediaError(str(path), f"decoding failed (truncated or corrupt?): {_short(err)}") from None


def _decode_with_pyav(path: Path, sorted_indices: list[int]) -> np.ndarray:
    """Frames at sorted distinct indices (presentation order), decoding from the start: the fallback path."""
    wanted, frames = set(sorted_indices), []
    try:
        with av.open(str(path)) as container:
            for i, frame in enumerate(container.decode(container.streams.video[0])):
                if i in wanted:
                    frames.append(frame.to_ndarray(format="rgb24"))
                if i >= sorted_indices[-1]:
                    break
    except (av.FFmpegError, OSError) as err:
        raise MediaError(
            str(path), f"decoding failed (truncated or corrupt?): {getattr(err, 'strerror', None) or err}"
        ) from None
    if len(frames) != len(sorted_indices):
        raise MediaError(
            str(path), f"decoding failed: only {len(frames)} of {len(sorted_indices)} frames decoded (truncated?)"
        )
    return np.stack(frames)


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
    return MediaInfo(
        num_frames=num_frames,
        fps=fps,
        width=int(width),
        height=int(height),
        duration_s=num_frames / fps,
        has_audio=has_audio,
    )


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
    return _frames_at(path, reader, indices)


def _frames_at(path: Path, reader: decord.VideoReader, indices: Sequence[int]) -> np.ndarray:
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


@contextmanager
def _borrowed(container):
    """`with` on a container someone else closes."""
    yield container


def _resampled(frames: list, sample_rate: int) -> np.ndarray | None:
    """Decoded audio frames -> float32 (channels, samples) at sample_rate (layout kept), None if none.

    The frames are joined first and resampled in one call: FFmpeg's resampler is a stream, so the
    samples are the same (bit-identical, tests/test_media.py) as frame by frame, without a filter-graph
    round trip per ~1024-sample AAC frame (about a third of the audio decoding time of a short clip)."""
    if not frames:
        return None
    first = frames[0]
    resampler = av.AudioResampler(format="fltp", rate=sample_rate)  # layout: as the input
    same = all(
        (f.format.name, f.layout.name, f.sample_rate) == (first.format.name, first.layout.name, first.sample_rate)
        for f in frames
    )
    if same:  # one frame holding the whole stream (a format change mid-stream keeps the frames apart)
        whole = av.AudioFrame.from_ndarray(
            np.concatenate([f.to_ndarray() for f in frames], axis=1), format=first.format.name, layout=first.layout.name
        )
        whole.sample_rate = first.sample_rate
        frames = [whole]
    chunks = [out.to_ndarray() for f in [*frames, None] for out in resampler.resample(f)]  # None flushes
    return np.concatenate(chunks, axis=1) if chunks else None


def _decode_audio(path: Path, sample_rate: int, container=None) -> np.ndarray:
    """float32 (channels, samples) of the first audio stream, resampled (channels kept) to sample_rate.

    `container`: an open PyAV container of `path` to read from (else the file is opened here)."""
    try:
        with av.open(str(path)) if container is None else _borrowed(container) as container:
            stream = container.streams.audio[0]
            declared_s = float(stream.duration * stream.time_base) if stream.duration else None
            samples = _resampled(list(container.decode(stream)), sample_rate)
    except (av.FFmpegError, OSError, ValueError) as err:
        raise MediaError(str(path), f"audio decoding failed: {getattr(err, 'strerror', None) or err}") from None
    if samples is None:
        raise MediaError(str(path), "audio stream has no samples")
    decoded_s = samples.shape[1] / sample_rate
    # A file cut short can decode without an error, just stopping early: compare with its header.
    if declared_s and decoded_s < 0.9 * declared_s - 0.05:
        raise MediaError(str(path), f"audio ends at {decoded_s:.2f} s of {declared_s:.2f} s (truncated?)")
    return samples


def read_audio(
    path: str | Path, sample_rate: int = SAMPLE_RATE, duration_s: float | None = None
) -> tuple[np.ndarray, bool]:
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


# ---- one open per video ----------------------------------------------------------------------------


class OpenClip:
    """A video opened once: header and audio from one PyAV container, frames from one decord reader.

    Same checks and errors as probe/read_frames/read_audio, minus probe's decoding of the first and
    last frame: opening the decord reader already scans every packet (a cut file fails there or has
    too few frames), the frames asked for are decoded, and a cut audio track is caught by its length.
        with OpenClip(path) as clip:
            clip.info; clip.frames([0, 5, 9]); clip.audio(32000)
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._container = _open_container(self.path)
        try:
            stream = self._container.streams.video[0]
            header = int(stream.frames or 0), bool(self._container.streams.audio)
            self._reader, has_audio = _open(self.path, header)
            num_frames, fps = len(self._reader), float(self._reader.get_avg_fps())
            if num_frames == 0:
                raise MediaError(str(self.path), "video stream has no frames")
            if not fps > 0:
                raise MediaError(str(self.path), f"invalid frame rate {fps}")
            # The size from the header: no frame is decoded just to learn it.
            self.info = MediaInfo(
                num_frames=num_frames,
                fps=fps,
                width=int(stream.codec_context.width),
                height=int(stream.codec_context.height),
                duration_s=num_frames / fps,
                has_audio=has_audio,
            )
        except BaseException:
            self._container.close()
            raise

    def frames(self, indices: Sequence[int]) -> np.ndarray:
        """uint8 RGB (N, H, W, 3) at `indices`, in the order asked; distinct frames decoded once, ascending."""
        return _frames_at(self.path, self._reader, indices)

    def audio(self, sample_rate: int = SAMPLE_RATE) -> tuple[np.ndarray, bool]:
        """Mono float32 (channel mean) at sample_rate and has_audio; silence as long as the video if none."""
        if not self.info.has_audio:
            return np.zeros(round(self.info.duration_s * sample_rate), np.float32), False
        mono = _decode_audio(self.path, sample_rate, self._container).mean(axis=0)
        return np.ascontiguousarray(mono, dtype=np.float32), True

    def close(self) -> None:
        self._container.close()
        self._reader = None

    def __enter__(self) -> "OpenClip":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass
class Clip:
    info: MediaInfo
    frames: np.ndarray  # uint8 (N, H, W, 3) RGB at the indices asked, in that order
    audio: np.ndarray | None  # mono float32 at the sample rate asked (silence if none); None if not asked
    has_audio: bool


def decode_clip(
    path: str | Path, frames: Sequence[int] | Callable[[int], Sequence[int]] = (), sample_rate: int | None = SAMPLE_RATE
) -> Clip:
    """Info, frames and audio of one video, opened once. `frames`: indices, or a function of the
    frame count giving them (e.g. lambda n: frame_indices(n, k)); `sample_rate=None`: no audio."""
    with OpenClip(path) as clip:
        wanted = frames(clip.info.num_frames) if callable(frames) else frames
        pixels = clip.frames(wanted)
        audio = clip.audio(sample_rate)[0] if sample_rate is not None else None
        return Clip(clip.info, pixels, audio, clip.info.has_audio)
