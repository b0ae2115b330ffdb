"""The embedded synthetic audio-visual caption corpus (version 2), written in MSR-VTT layout.

Each clip (6-8 s at 3 or 4 fps: 18-32 frames) shows 1-3 coloured shapes (colour, shape, size,
count) on a dark or light background and plays a sound only the audio can tell apart (a low or high
tone, slow or fast low or high beeps, noise, or silence). Brief events are common: a white flash or
a cross in 1 or 2 frames (~60 % of the clips) and a short bang in the audio (~50 % of the clips
with sound). EVERY caption says what the audio is (or that the clip is silent) and names every
event the clip has, so a model that ignores the audio or misses an event loses measurably.

Why these choices (corpus v1 failed them, see issue 12):
- Objects drift slowly, but the direction is NOT an attribute: mean-pooled frame features cannot
  tell "left" from "right" over the same positions, so v1's motion words were unlearnable.
- A 1- or 2-frame event is missed by uniform down-sampling at k = 0.2 (every 5th frame) in about
  70 % of the clips that have one (`expected_visual_event_miss_rate`; tests/test_synth.py checks
  the number against frame_indices). The teacher (k = 1) never misses one.
- Clip length is a cost trade-off: Cnn14 costs ~0.8 CPU-s per clip plus ~0.17 CPU-s per second
  of audio (all five k of the demo together), Inception-v3 at 128 px ~30 ms per frame. Measured for
  180 clips (random weights, 2 threads): v1 (2.5-4 s) ~330-410 CPU-s, v2 at 8-12 s ~660 CPU-s
  (~5.5 min on 2 cores), v2 at 6-8 s ~500 CPU-s (~4 min, the demo's budget), so 6-8 s it is.
- The bang is 0.08-0.2 s: SimPF spectral pooling at k = 0.2 keeps the spectrogram's time
  modulations up to ~10 Hz (50 ms resolution), so the bang is blurred, not dropped; audio events
  have no frame-sampling miss rate.

Everything is a function of (seed, clip index): a `ClipSpec` is drawn first, then frames, audio
and captions are rendered from it. Same seed -> identical annotation bytes and identical MP4s.
Each clip's `ClipSpec` is stored in its annotation entry under "avkd" (the MSR-VTT loader ignores
extra fields), and the info block carries CORPUS_VERSION, so a v1 corpus is never mistaken for v2.
The attribute words below are the one source of truth for avkd.evaluation.attributes.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avkd.errors import DataError

TRAIN_VAL_FILE = "train_val_videodatainfo.json"
TEST_FILE = "test_videodatainfo.json"
GENERATOR = "avkd.data.synth"
CORPUS_VERSION = 2  # bump whenever the same (videos, seed) would give other clips or captions
CAPTIONS_PER_VIDEO = 20

# ---- attributes ------------------------------------------------------------------------------
COLOURS = {"red": (215, 40, 40), "green": (40, 180, 60), "blue": (45, 75, 225), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.07, "big": 0.14}  # radius as a fraction of the frame height
DRIFTS = ("left", "right", "up", "down", "none")  # rendering only: never captioned (see above)
BACKGROUNDS = {"dark": 28, "light": 222}  # grey level
SOUNDS = ("tone", "beeps", "noise", "silence")
SOUND_WEIGHTS = (0.3, 0.35, 0.2, 0.15)
PITCH_HZ = {"low": 220.0, "high": 1760.0}
BEEP_HZ = {"slow": 2.0, "fast": 8.0}  # beeps per second: the rhythm
FPS_CHOICES = (3, 4)
DURATION_S = (6.0, 8.0)  # uniform; MSR-VTT's clips are 10-30 s, the extraction budget caps ours (below)
SAMPLE_RATES = (32000, 44100, 48000)
NO_AUDIO_FRACTION = 0.05
VISUAL_EVENT_P = {None: 0.4, "flash": 0.3, "cross": 0.3}
VISUAL_EVENT_FRAMES = (1, 2)  # event length in frames, uniform
AUDIO_EVENT_P = 0.5  # of the clips with sound
AUDIO_EVENT_S = (0.08, 0.2)  # bang length in seconds, uniform
SPLIT_FRACTIONS = {"validate": 0.15, "test": 0.25}  # the rest (~60 %) is train


@dataclass
class ClipSpec:
    """Everything that decides one clip; frames, audio and captions are pure functions of it."""

    video_id: str
    split: str
    colour: str
    shape: str
    size: str
    count: int
    background: str
    sound: str  # tone | beeps | noise | silence (silence also for clips without an audio track)
    pitch: str | None  # low | high for tone/beeps
    rhythm: str | None  # slow | fast for beeps
    has_audio: bool
    visual_event: str | None  # flash | cross
    audio_event: str | None  # bang
    fps: int
    num_frames: int
    width: int
    height: int
    sample_rate: int
    channels: int
    # Rendering details (jitter) drawn once, so rendering needs no random state of its own.
    drift: str  # direction the objects drift in; not an attribute (mean-pooled features cannot see it)
    colour_rgb: tuple[int, int, int]
    background_rgb: tuple[int, int, int]
    start: float  # small shift of the objects' path, as a fraction of the frame
    event_frames: tuple[int, int]  # [first, last) frame of the visual event
    event_xy: tuple[float, float]  # centre of the cross, as fractions of width/height
    audio_event_s: tuple[float, float]  # [start, end) seconds of the bang
    tone_hz: float
    loudness: float
    noise_seed: int

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps


def sample_clip(seed: int, index: int, split: str, has_audio: bool) -> ClipSpec:
    """Clip `index`'s attributes, drawn from (seed, index) alone."""
    rng = np.random.default_rng([seed, CORPUS_VERSION, index])
    fps = int(rng.choice(FPS_CHOICES))
    num_frames = round(rng.uniform(*DURATION_S) * fps)
    duration = num_frames / fps
    sound = str(rng.choice(SOUNDS, p=SOUND_WEIGHTS)) if has_audio else "silence"
    background = str(rng.choice(list(BACKGROUNDS)))
    events = list(VISUAL_EVENT_P)
    visual_event = events[int(rng.choice(len(events), p=list(VISUAL_EVENT_P.values())))]
    audio_event = "bang" if sound != "silence" and rng.random() < AUDIO_EVENT_P else None
    event_len = int(rng.choice(VISUAL_EVENT_FRAMES))
    event_start = int(rng.integers(1, num_frames - event_len))  # never the first or the last frame
    bang_len = rng.uniform(*AUDIO_EVENT_S)
    bang_start = rng.uniform(0.1, 0.9) * (duration - bang_len)
    grey = BACKGROUNDS[background] + rng.integers(-8, 9, size=3)
    colour = str(rng.choice(list(COLOURS)))
    pitch = str(rng.choice(list(PITCH_HZ))) if sound in ("tone", "beeps") else None
    rhythm = str(rng.choice(list(BEEP_HZ))) if sound == "beeps" else None
    return ClipSpec(
        video_id=f"video{index}", split=split, colour=colour, shape=str(rng.choice(SHAPES)),
        size=str(rng.choice(list(SIZES))), count=int(rng.integers(1, 4)), background=background,
        sound=sound, pitch=pitch, rhythm=rhythm, has_audio=has_audio,
        visual_event=visual_event, audio_event=audio_event, fps=fps, num_frames=num_frames,
        width=int(rng.integers(72, 89)) * 2, height=int(rng.integers(56, 65)) * 2,
        sample_rate=int(rng.choice(SAMPLE_RATES)), channels=int(rng.integers(1, 3)) if has_audio else 0,
        drift=str(rng.choice(DRIFTS)),
        colour_rgb=tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in COLOURS[colour]),
        background_rgb=tuple(int(g) for g in grey), start=float(rng.uniform(-0.04, 0.04)),
        event_frames=(event_start, event_start + event_len),
        event_xy=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.25, 0.75))),
        audio_event_s=(round(bang_start, 3), round(bang_start + bang_len, 3)),
        tone_hz=round(PITCH_HZ[pitch] * rng.uniform(0.97, 1.03), 2) if pitch else 0.0,
        loudness=round(float(rng.uniform(0.15, 0.3)), 3), noise_seed=int(rng.integers(2**31)),
    )


def expected_visual_event_miss_rate(k: float, sampled: Callable[[int, float], list[int]]) -> float:
    """P(a clip's visual event lies in no frame a k-student decodes), from the generator's parameters.

    `sampled(num_frames, k)` gives the decoded frame numbers (avkd.features.sampling.frame_indices;
    passed in so the data layer does not import the feature layer). Exact: enumerates every frame
    rate, clip length, event length and start the generator can draw, with their probabilities
    (clip lengths: the uniform duration rounded to frames, weighted by the interval each one gets).
    """
    total = 0.0
    for fps in FPS_CHOICES:
        lo, hi = DURATION_S[0] * fps, DURATION_S[1] * fps
        for n in range(int(np.floor(lo + 0.5)), int(np.floor(hi + 0.5)) + 1):
            weight = (min(hi, n + 0.5) - max(lo, n - 0.5)) / (hi - lo)
            if weight <= 0:
                continue
            seen = set(sampled(n, k))
            for length in VISUAL_EVENT_FRAMES:
                starts = range(1, n - length)
                missed = sum(not seen.intersection(range(s, s + length)) for s in starts)
                total += weight * missed / len(starts) / len(VISUAL_EVENT_FRAMES) / len(FPS_CHOICES)
    return total


# ---- pictures --------------------------------------------------------------------------------

def _shape_mask(shape: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    if shape == "circle":
        return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
    if shape == "square":  # half-side 0.85 r: about the area of the circle
        return (np.abs(xx - cx) <= 0.85 * r) & (np.abs(yy - cy) <= 0.85 * r)
    top, bottom = cy - r, cy + 0.7 * r  # upward triangle, base half-width r
    rel = (yy - top) / (bottom - top)
    return (rel >= 0) & (rel <= 1) & (np.abs(xx - cx) <= rel * r)


def _object_centres(c: ClipSpec, t: float) -> list[tuple[float, float]]:
    """Centres at time t in [0, 1]: objects side by side across the direction of the (slow) drift."""
    w, h, r = c.width, c.height, SIZES[c.size] * c.height
    travel = {"right": 0.35 + 0.3 * t, "left": 0.65 - 0.3 * t, "down": 0.4 + 0.2 * t, "up": 0.6 - 0.2 * t,
              "none": 0.5}[c.drift] + c.start
    centres = []
    for i in range(c.count):
        across = (i + 1) / (c.count + 1)
        stagger = 0.0 if c.count == 1 else (0.6 * r if i % 2 else -0.6 * r)  # keeps neighbours apart
        if c.drift in ("up", "down"):
            centres.append((across * w, travel * h + stagger))
        else:
            centres.append((travel * w + stagger, across * h))
    return centres


def render_frames(c: ClipSpec) -> np.ndarray:
    """uint8 RGB frames (T, H, W, 3)."""
    yy, xx = np.mgrid[0 : c.height, 0 : c.width].astype(np.float32)
    # A faint vertical gradient so the background is not one flat colour.
    gradient = np.linspace(-10, 10, c.height, dtype=np.float32)[:, None, None]
    background = np.clip(np.array(c.background_rgb, np.float32) + gradient, 0, 255).astype(np.uint8)
    background = np.broadcast_to(background, (c.height, c.width, 3))
    r = SIZES[c.size] * c.height
    frames = np.empty((c.num_frames, c.height, c.width, 3), np.uint8)
    first, last = c.event_frames
    for f in range(c.num_frames):
        img = background.copy()
        for cx, cy in _object_centres(c, f / max(1, c.num_frames - 1)):
            img[_shape_mask(c.shape, xx, yy, cx, cy, r)] = c.colour_rgb
        if first <= f < last and c.visual_event == "flash":
            img = (0.3 * img + 0.7 * 255).astype(np.uint8)
        elif first <= f < last and c.visual_event == "cross":
            x0, y0 = c.event_xy[0] * c.width, c.event_xy[1] * c.height
            arm, half = 0.18 * c.height, max(1.5, 0.03 * c.height)
            cross = ((np.abs(xx - x0) <= half) & (np.abs(yy - y0) <= arm)) | (
                (np.abs(yy - y0) <= half) & (np.abs(xx - x0) <= arm))
            img[cross] = (250, 250, 250) if c.background == "dark" else (15, 15, 15)
        frames[f] = img
    return frames


# ---- sound -----------------------------------------------------------------------------------

def render_audio(c: ClipSpec) -> np.ndarray:
    """float32 (channels, samples) at c.sample_rate, exactly as long as the video."""
    n = round(c.duration_s * c.sample_rate)
    t = np.arange(n, dtype=np.float64) / c.sample_rate
    rng = np.random.default_rng(c.noise_seed)
    if c.sound == "tone":
        mono = c.loudness * np.sin(2 * np.pi * c.tone_hz * t)
    elif c.sound == "beeps":
        gate = np.clip(8 * np.sin(2 * np.pi * BEEP_HZ[c.rhythm] * t), 0, 1)  # on half of each period, soft edges
        mono = c.loudness * gate * np.sin(2 * np.pi * c.tone_hz * t)
    elif c.sound == "noise":
        mono = 0.5 * c.loudness * rng.standard_normal(n)
    else:
        mono = np.zeros(n)
    if c.audio_event == "bang":
        a, b = (round(s * c.sample_rate) for s in c.audio_event_s)
        b = min(b, n)
        mono[a:b] += 0.8 * rng.standard_normal(b - a) * np.exp(-np.linspace(0, 2, b - a))  # loud, decaying
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)  # 10 ms fades: no clicks at the ends
    mono = np.clip(mono * fade, -1, 1).astype(np.float32)
    # Stereo clips are quieter on the right, so averaging channels is not the same as taking one.
    return np.stack([mono, 0.7 * mono]) if c.channels == 2 else mono[None]


def write_mp4(path: str | Path, frames: np.ndarray, fps: int, audio: np.ndarray | None = None,
              sample_rate: int = 32000, faststart: bool = False) -> None:
    """H.264 video (+ AAC audio, float32 (channels, samples)) MP4 via PyAV, byte-identical for the same input.

    `faststart` puts the index first, as web videos (and MSR-VTT's) have it.
    """
    height, width = frames.shape[1:3]
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.thread_count = 1
        video.codec_context.gop_size = 2 * fps
        # mbtree off: with it, x264 read uninitialised memory here (the same frames encoded 12 times
        # in one process gave 4 different streams); one thread: output depends on thread count.
        video.options = {"preset": "veryfast", "crf": "20", "threads": "1", "x264-params": "mbtree=0"}
        sound = None
        if audio is not None:
            layout = "stereo" if audio.shape[0] == 2 else "mono"
            sound = out.add_stream("aac", rate=sample_rate, layout=layout)
            sound.bit_rate = 64000
            # The default "twoloop" coder and its extra tools were most of the generation time.
            sound.options = {"aac_coder": "fast", "aac_pns": "0", "aac_tns": "0", "aac_is": "0", "aac_ms": "0"}
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            for start in range(0, audio.shape[1], 1024):
                chunk = np.ascontiguousarray(audio[:, start : start + 1024], dtype=np.float32)
                frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
                frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
                out.mux(sound.encode(frame))
            out.mux(sound.encode())


# ---- captions --------------------------------------------------------------------------------
# The attribute words: the captioner draws from them, avkd.evaluation.attributes parses with them.
SHAPE_NOUNS = {"circle": ("circle", "ball", "dot", "disc"), "square": ("square", "box", "block"),
               "triangle": ("triangle",)}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "big": ("big", "large", "huge")}
COUNT_WORDS = {1: ("a", "one", "a single"), 2: ("two",), 3: ("three",)}
BACKGROUND_WORDS = {"dark": ("dark background", "black background", "dark backdrop", "black screen"),
                    "light": ("light background", "white background", "bright backdrop", "white screen")}
BACKGROUND_PREPS = ("on a", "against a")
PITCH_WORDS = {"low": ("low", "deep", "low pitched"), "high": ("high", "shrill", "high pitched")}
RHYTHM_WORDS = {"slow": ("slow", "sparse", "unhurried"), "fast": ("fast", "rapid", "hurried")}
# (noun, is plural); tone and beep nouns take the pitch (and rhythm) words in front.
SOUND_NOUNS = {"tone": (("tone", False), ("hum", False), ("note", False), ("drone", False)),
               "beeps": (("beeps", True), ("bleeps", True), ("pips", True), ("beeping", False)),
               "noise": (("noise", False), ("hiss", False), ("static", False), ("hissing", False))}
NOISE_NPS = (("static noise", False), ("a hiss", False), ("a loud hiss", False), ("crackling static", False),
             ("a hissing noise", False), ("steady noise", False))
SILENT_CLAUSES = ("there is no sound", "the video is silent", "nothing can be heard", "the clip has no sound")
SILENT_ADVERBIALS = ("in silence", "silently", "without any sound", "with no sound")
SILENCE_WORDS = ("silence", "silent", "silently", "mute", "muted")  # say "no sound" without a negator
EVENT_WORDS = {"flash": ("flash", "flashes", "flashing"), "cross": ("cross", "plus sign"),
               "bang": ("bang", "pop", "crash", "thud")}
EVENT_CLAUSES = {
    "flash": ("the screen flashes white", "there is a white flash", "a flash of light appears",
              "the picture briefly flashes"),
    "cross": ("a cross briefly appears", "a plus sign shows up", "a cross shows up", "a cross appears"),
    "bang": ("a bang is heard", "there is a sudden bang", "a pop sounds once", "a crash is heard", "a thud is heard"),
}
VERBS = (("is shown", "are shown"), ("appears", "appear"), ("can be seen", "can be seen"), ("is visible", "are visible"))


def plural_noun(noun: str) -> str:
    return noun + ("es" if noun.endswith("x") else "s")


class _Captioner:
    """Draws one caption at a time. Every caption names every visual attribute, the sound (or the
    silence) and every event the clip has; what varies is the wording, the order and the template."""

    def __init__(self, c: ClipSpec, rng: np.random.Generator):
        self.c, self.rng = c, rng

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def subject(self) -> tuple[str, bool]:
        c = self.c
        noun = self.pick(SHAPE_NOUNS[c.shape])
        plural = c.count > 1
        words = [self.pick(COUNT_WORDS[c.count]), self.pick(SIZE_WORDS[c.size]), c.colour]
        return " ".join([*words, plural_noun(noun) if plural else noun]), plural

    def verb(self, plural: bool) -> str:
        return self.pick(VERBS)[plural]

    def background(self) -> str:
        return f"{self.pick(BACKGROUND_PREPS)} {self.pick(BACKGROUND_WORDS[self.c.background])}"

    def sound(self) -> tuple[str, bool] | None:
        c = self.c
        if c.sound == "silence":
            return None
        if c.sound == "noise":
            return self.pick(NOISE_NPS)
        noun, plural = self.pick(SOUND_NOUNS[c.sound])
        words = [self.pick(RHYTHM_WORDS[c.rhythm])] if c.rhythm else []
        words.append(self.pick(PITCH_WORDS[c.pitch]))
        if self.rng.random() < 0.5:
            words.reverse()  # "fast high beeps" and "high fast beeps"
        return " ".join((["a"] if not plural else []) + words + [noun]), plural

    def sound_clause(self) -> str:
        snd = self.sound()
        if snd is None:
            return self.pick(SILENT_CLAUSES)
        text, plural = snd
        return self.pick([f"{text} {'play' if plural else 'plays'}", f"{text} can be heard", f"you can hear {text}",
                          f"there {'are' if plural else 'is'} {text}"])

    def sound_adverbial(self) -> str:
        snd = self.sound()
        if snd is None:
            return self.pick(SILENT_ADVERBIALS)
        text, plural = snd
        return self.pick([f"while {text} {'play' if plural else 'plays'}", f"with {text}",
                          f"as {text} {'play' if plural else 'plays'}", f"accompanied by {text}"])

    def main_clause(self) -> str:
        subj, plural = self.subject()
        template = self.pick("ABCDEFGH")
        if template == "A":
            return f"{subj} {self.verb(plural)} {self.background()} {self.sound_adverbial()}"
        if template == "B":
            return f"{subj} {self.background()} {self.sound_adverbial()}"
        if template == "C":
            snd = self.sound()
            if snd is None:
                return f"in a silent clip {subj} {self.verb(plural)} {self.background()}"
            return f"{snd[0]} {'play' if snd[1] else 'plays'} as {subj} {self.verb(plural)} {self.background()}"
        if template == "D":
            return f"{subj} {self.verb(plural)} {self.background()} and {self.sound_clause()}"
        if template == "E":
            intro = self.pick(("a video of", "an animation of", "a clip showing"))
            return f"{intro} {subj} {self.background()} {self.sound_adverbial()}"
        if template == "F":
            return f"a {self.pick(BACKGROUND_WORDS[self.c.background])} with {subj} {self.sound_adverbial()}"
        if template == "G":
            return f"{self.sound_clause()} while {subj} {self.verb(plural)} {self.background()}"
        return f"there {'are' if plural else 'is'} {subj} {self.background()} {self.sound_adverbial()}"

    def caption(self) -> str:
        events = [self.pick(EVENT_CLAUSES[e]) for e in (self.c.visual_event, self.c.audio_event) if e]
        if len(events) == 2 and self.rng.random() < 0.5:
            events.reverse()
        main = self.main_clause()
        if not events:
            return main
        if len(events) == 2:
            return f"{main}, {events[0]} and {events[1]}"
        # "A and B, and C" when the main clause has its own "and".
        return f"{main}{', and ' if ' and ' in main else ' and '}{events[0]}"


def make_captions(c: ClipSpec, seed: int, index: int, n: int = CAPTIONS_PER_VIDEO) -> list[str]:
    """n distinct paraphrases (distinct whenever the templates allow it)."""
    captioner = _Captioner(c, np.random.default_rng([seed, CORPUS_VERSION, index, 1]))
    captions: list[str] = []
    for _ in range(50 * n):
        text = captioner.caption()
        if text not in captions:
            captions.append(text)
        if len(captions) == n:
            break
    while len(captions) < n:
        captions.append(captioner.caption())
    return captions


# ---- the corpus ------------------------------------------------------------------------------

def _splits(videos: int) -> list[str]:
    """Contiguous blocks like MSR-VTT's own ids: train, then validate, then test (~60/15/25 %)."""
    n_val = max(1, round(SPLIT_FRACTIONS["validate"] * videos))
    n_test = max(1, round(SPLIT_FRACTIONS["test"] * videos))
    return ["train"] * (videos - n_val - n_test) + ["validate"] * n_val + ["test"] * n_test


def _params(videos: int, seed: int, corpus_version: int = CORPUS_VERSION) -> dict:
    """What decides a corpus: same params -> same bytes."""
    return {"videos": videos, "seed": seed, "corpus_version": corpus_version}


def _existing_params(out: Path) -> dict | None:
    """_params of a complete synthetic corpus in `out` (v1 corpora had no version: 1), else None."""
    try:
        info = json.loads((out / TRAIN_VAL_FILE).read_text())["info"]
        if info.get("generator") == GENERATOR and (out / TEST_FILE).is_file():
            return _params(info["videos"], info["seed"], info.get("corpus_version", 1))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _info(videos: int, seed: int) -> dict:
    return {"contributor": "avkd", "description": "avkd synthetic audio-visual caption corpus in MSR-VTT format",
            "generator": GENERATOR, "version": f"{CORPUS_VERSION}.0", **_params(videos, seed)}


def clip_specs(videos: int, seed: int) -> list[ClipSpec]:
    """Every clip's spec, in id order."""
    no_audio = set(np.random.default_rng([seed, 2**31]).choice(
        videos, size=max(1, round(NO_AUDIO_FRACTION * videos)), replace=False).tolist())
    return [sample_clip(seed, index, split, has_audio=index not in no_audio)
            for index, split in enumerate(_splits(videos))]


def annotations(videos: int, seed: int) -> dict[str, dict]:
    """{file name: MSR-VTT annotation dict} of the corpus; each video entry carries its ClipSpec under "avkd"."""
    files = {TRAIN_VAL_FILE: {"info": _info(videos, seed), "videos": [], "sentences": []},
             TEST_FILE: {"info": _info(videos, seed), "videos": [], "sentences": []}}
    sen_id = 0
    for index, c in enumerate(clip_specs(videos, seed)):
        ann = files[TEST_FILE if c.split == "test" else TRAIN_VAL_FILE]
        ann["videos"].append({"category": index % 20, "url": f"avkd-synth://seed{seed}/{c.video_id}",
                              "video_id": c.video_id, "start time": 0.0, "end time": round(c.duration_s, 3),
                              "split": c.split, "id": index, "avkd": asdict(c)})
        for caption in make_captions(c, seed, index):
            ann["sentences"].append({"caption": caption, "video_id": c.video_id, "sen_id": sen_id})
            sen_id += 1
    return files


def _build(folder: Path, videos: int, seed: int) -> None:
    (folder / "videos").mkdir(parents=True)
    for c in clip_specs(videos, seed):
        write_mp4(folder / "videos" / f"{c.video_id}.mp4", render_frames(c), c.fps,
                  render_audio(c) if c.has_audio else None, c.sample_rate)
    for name, ann in annotations(videos, seed).items():
        (folder / name).write_text(json.dumps(ann))


def generate(out: str | Path, videos: int = 180, seed: int = 0) -> Path:
    """Write the corpus to OUT (videos/<id>.mp4 + the two annotation files); return OUT.

    Built in a temporary folder next to OUT and renamed into place, so a killed run never leaves a
    half corpus that looks complete. If OUT already holds the corpus for (videos, seed, CORPUS_VERSION), nothing is done; a corpus of
    other parameters or of another version is refused (a DataError naming the folder), never mixed.
    """
    out = Path(out)
    if videos < 3:
        raise DataError(f"synthetic corpus: videos={videos}, need at least 3 (one per split)")
    if _existing_params(out) == _params(videos, seed):
        return out  # the common case, without taking the lock
    out.parent.mkdir(parents=True, exist_ok=True)
    # Two processes starting on a cold folder: the second waits here for the first, then finds the
    # corpus in place (the lock is on the parent folder: no lock file to leave behind).
    folder = os.open(out.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        return _generate_locked(out, videos, seed)
    finally:
        os.close(folder)  # releases the lock


def _generate_locked(out: Path, videos: int, seed: int) -> Path:
    existing = _existing_params(out)
    if existing == _params(videos, seed):
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = f"a synthetic corpus with {existing}" if existing else "other files"
        raise DataError(f"{out}: already holds {what}; remove it or choose another output folder "
                        f"for videos={videos}, seed={seed}, corpus_version={CORPUS_VERSION}")
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _build(partial, videos, seed)
        if out.exists():
            out.rmdir()  # empty (checked above)
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return out


def cmd_synth(args) -> int:
    """`python -m avkd data synth --out DIR --videos N --seed S`."""
    out = Path(args.out)
    already = _existing_params(out) == _params(args.videos, args.seed)
    t0 = time.time()
    generate(out, videos=args.videos, seed=args.seed)
    elapsed = time.time() - t0
    entries = [v for name in (TRAIN_VAL_FILE, TEST_FILE) for v in json.loads((out / name).read_text())["videos"]]
    counts = {s: sum(v["split"] == s for v in entries) for s in ("train", "validate", "test")}
    silent = sum(not v["avkd"]["has_audio"] for v in entries)
    state = "already there, nothing to do" if already else f"generated in {elapsed:.1f} s"
    print(f"synthetic corpus in {out}: {len(entries)} clips ({counts['train']} train / {counts['validate']} "
          f"validate / {counts['test']} test, {silent} without audio, seed {args.seed}); {state}")
    return 0
