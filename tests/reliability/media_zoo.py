"""A zoo of good and bad video files in MSR-VTT layout, written with PyAV (real encoders, real files).

`build_zoo(root)` writes ROOT/videos/<id>.mp4 plus the two annotation files and returns one
`ZooClip` per file, saying what the file is and what decoding it must give. The good clips are
small (64x48, 10 fps, 2 s) so the whole zoo takes a second or two to write.

Codec notes (checked on the PyAV 18 wheel here): libx264, libvpx-vp9, libopus and AAC 5.1 encode;
odd frame sizes need 4:4:4 chroma with libx264 (4:2:0 requires even sizes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

FPS = 10
FRAMES = 20  # 2 s
WIDTH, HEIGHT = 64, 48
TONE_HZ = 440.0


@dataclass
class ZooClip:
    video_id: str
    path: Path
    split: str
    bad: str | None = None  # regex the MediaError reason must match; None for a decodable clip
    has_audio: bool = True
    num_frames: int = FRAMES
    width: int = WIDTH
    height: int = HEIGHT
    audio_s: float | None = None  # length of the audio track written (None: as long as the video)
    expected_rms: float | None = None  # RMS of the mono (channel-mean) signal that was written
    seed: int | None = None  # frames_for(num_frames, height, width, seed) are the frames written
    note: str = ""


def frames_for(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """A seeded colour with a smooth gradient and a white bar moving 3 px per frame.

    Smooth pictures survive lossy coding (4:2:0 chroma included) to within a few grey levels, so a
    test can tell decoded frame i from frame i-1."""
    colour = np.random.default_rng(seed).integers(40, 170, size=3)
    yy, xx = np.mgrid[0:height, 0:width]
    base = colour[None, None, :] + (40 * xx / width + 20 * yy / height)[:, :, None]
    frames = np.repeat(base[None].astype(np.uint8), num_frames, axis=0)
    for i in range(num_frames):
        x = (i * 3) % max(1, width - 4)
        frames[i, :, x : x + 4] = 250
    return frames


def tone(seconds: float, rate: int, gains: list[float]) -> np.ndarray:
    """float32 (channels, samples): a 440 Hz sine, channel c scaled by gains[c]."""
    t = np.arange(round(seconds * rate)) / rate
    wave = np.sin(2 * np.pi * TONE_HZ * t).astype(np.float32)
    return np.stack([g * wave for g in gains]).astype(np.float32)


def write_clip(
    path: Path,
    frames: np.ndarray,
    *,
    fps: int = FPS,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    container: str = "mp4",
    audio: np.ndarray | None = None,
    audio_rate: int = 44100,
    audio_codec: str = "aac",
    layout: str | None = None,
    faststart: bool = False,
) -> None:
    """Encode frames (T, H, W, 3) uint8 and optional audio (channels, samples) float32 into one file."""
    height, width = frames.shape[1:3]
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=container, options=options) as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.codec_context.thread_count = 1
        if codec == "libx264":
            video.options = {"preset": "veryfast", "threads": "1"}
        sound = None
        if audio is not None:
            layout = layout or {1: "mono", 2: "stereo", 6: "5.1"}[audio.shape[0]]
            sound = out.add_stream(audio_codec, rate=audio_rate, layout=layout)
            sound.bit_rate = 64000 * max(1, audio.shape[0] // 2)
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            # The encoder's frame size (1024 for AAC, 960 for Opus at 48 kHz): Opus refuses other sizes.
            step = sound.codec_context.frame_size or 1024
            for start in range(0, audio.shape[1], step):
                chunk = np.ascontiguousarray(audio[:, start : start + step])
                if chunk.shape[1] < step and audio_codec != "aac":
                    chunk = np.pad(chunk, ((0, 0), (0, step - chunk.shape[1])))
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                frame.sample_rate, frame.pts, frame.time_base = audio_rate, start, Fraction(1, audio_rate)
                out.mux(sound.encode(frame))
            out.mux(sound.encode())


def rms_of(gains: list[float]) -> float:
    """RMS of the channel mean of tone(..., gains): a sine of amplitude mean(gains)."""
    return float(np.mean(gains)) / np.sqrt(2)


def build_zoo(root: Path) -> dict[str, ZooClip]:
    """Write the zoo under root (MSR-VTT layout) and return {video_id: ZooClip}."""
    videos = root / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    clips: dict[str, ZooClip] = {}

    def clip(
        vid: str,
        split: str,
        note: str,
        *,
        seed: int,
        gains: list[float] | None,
        rate: int = 44100,
        num_frames: int = FRAMES,
        size: tuple[int, int] = (WIDTH, HEIGHT),
        audio_s: float | None = None,
        **write_options,
    ) -> None:
        """Write one decodable clip: seeded frames and (unless gains is None) a 440 Hz tone per channel."""
        width, height = size
        audio = None if gains is None else tone(audio_s or num_frames / FPS, rate, gains)
        path = videos / f"{vid}.mp4"
        write_clip(path, frames_for(num_frames, height, width, seed), audio=audio, audio_rate=rate, **write_options)
        clips[vid] = ZooClip(
            vid,
            path,
            split,
            has_audio=gains is not None,
            num_frames=num_frames,
            width=width,
            height=height,
            audio_s=audio_s,
            seed=seed,
            note=note,
            expected_rms=None if gains is None else rms_of(gains),
        )

    def broken(vid: str, split: str, note: str, data: bytes, reason: str) -> None:
        path = videos / f"{vid}.mp4"
        path.write_bytes(data)
        clips[vid] = ZooClip(vid, path, split, bad=reason, note=note)

    # Good clips, all in train: random-weight calibration needs train clips with audio.
    for i, (rate, gains) in enumerate([(44100, [0.4, 0.1]), (32000, [0.3]), (48000, [0.2, 0.2]), (44100, [0.5])]):
        clip(f"good{i}", "train", f"H.264 + AAC, {len(gains)} ch, {rate} Hz", seed=i, gains=gains, rate=rate)
    clip("good_faststart", "train", "index first (+faststart)", seed=10, gains=[0.4, 0.1], faststart=True)

    # Decodable oddities.
    clip("no_audio", "validate", "no audio stream", seed=20, gains=None)
    clip("one_frame", "validate", "a single frame (0.1 s)", seed=21, gains=[0.3], num_frames=1)
    clip("short_audio", "validate", "0.3 s of audio in a 2 s video", seed=22, gains=[0.3], audio_s=0.3)
    clip("surround51", "test", "5.1 AAC at 48 kHz", seed=23, gains=[0.6, 0.5, 0.4, 0.3, 0.2, 0.1], rate=48000)
    clip("audio_8k", "test", "mono AAC at 8 kHz", seed=24, gains=[0.4], rate=8000)
    clip(
        "vp9_webm",
        "test",
        "VP9 + Opus in WebM, named .mp4",
        seed=25,
        gains=[0.4, 0.2],
        rate=48000,
        codec="libvpx-vp9",
        container="webm",
        audio_codec="libopus",
    )
    clip("odd_161x97", "test", "161x97 frames (H.264 4:4:4)", seed=26, gains=[0.3], size=(161, 97), pix_fmt="yuv444p")

    # Broken files.
    plain, faststart = clips["good0"].path.read_bytes(), clips["good_faststart"].path.read_bytes()
    broken(
        "truncated",
        "train",
        "first half of an MP4 whose index is at the end",
        plain[: len(plain) // 2],
        r"^not a readable video \(.*truncated or not a video file\?\)$",
    )
    broken(
        "truncated_faststart",
        "train",
        "index-first MP4 cut at 60 %",
        faststart[: int(len(faststart) * 0.6)],
        r"truncated",
    )
    broken("zero_bytes", "validate", "0-byte file", b"", r"^empty file \(0 bytes\)$")
    broken(
        "text_file",
        "test",
        "a text file named .mp4",
        b"this is a text file, not a video\n" * 20,
        r"^not a readable video \(",
    )

    write_annotations(root, clips)
    return clips


def write_annotations(root: Path, clips: dict[str, ZooClip]) -> None:
    """The two MSR-VTT annotation files: two captions per clip."""
    for name, splits in (
        ("train_val_videodatainfo.json", ("train", "validate")),
        ("test_videodatainfo.json", ("test",)),
    ):
        chosen = [c for c in clips.values() if c.split in splits]
        data = {
            "info": {"note": "avkd reliability media zoo"},
            "videos": [{"video_id": c.video_id, "split": c.split} for c in chosen],
            "sentences": [
                {"video_id": c.video_id, "caption": f"a clip called {c.video_id.replace('_', ' ')} number {j}"}
                for c in chosen
                for j in range(2)
            ],
        }
        (root / name).write_text(json.dumps(data, indent=1))
