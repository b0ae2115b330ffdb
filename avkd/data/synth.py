"""The embedded synthetic audio-visual caption corpus, written in MSR-VTT layout.

Each clip shows 1-3 coloured shapes (colour, shape, size, count, motion, dark/light background) and
plays a sound only the audio can tell apart (low or high tone, steady or as fast beeps, noise,
silence). Some clips have a brief event in 10-20 % of the frames (a white flash, a cross popping
up) or of the audio (a short bang), so heavy down-sampling can miss it. ~5 % of the clips have no
audio track at all. The 20 captions per clip are paraphrases generated from those attributes, so a
model that sees the features can beat a blind one.

Everything is a function of (seed, clip index): a `ClipSpec` is drawn first, then frames, audio
and captions are rendered from it. Same seed -> identical annotation bytes and identical MP4s.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from avkd.errors import DataError

TRAIN_VAL_FILE = "train_val_videodatainfo.json"
TEST_FILE = "test_videodatainfo.json"
GENERATOR = "avkd.data.synth"
CAPTIONS_PER_VIDEO = 20

# ---- attributes ------------------------------------------------------------------------------
COLOURS = {"red": (215, 40, 40), "green": (40, 180, 60), "blue": (45, 75, 225), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.07, "big": 0.14}  # radius as a fraction of the frame height
MOTIONS = ("left", "right", "up", "down", "static")
BACKGROUNDS = {"dark": 28, "light": 222}  # grey level
SOUNDS = ("tone", "beeps", "noise", "silence")
SOUND_WEIGHTS = (0.3, 0.3, 0.25, 0.15)
PITCH_HZ = {"low": 220.0, "high": 1760.0}
BEEP_HZ = 8.0  # beeps per second
FPS_CHOICES = (8, 10, 12)
SAMPLE_RATES = (32000, 44100, 48000)
NO_AUDIO_FRACTION = 0.05
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
    motion: str
    background: str
    sound: str  # tone | beeps | noise | silence (silence also for clips without an audio track)
    pitch: str | None  # low | high for tone/beeps
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
    rng = np.random.default_rng([seed, index])
    fps = int(rng.choice(FPS_CHOICES))
    num_frames = int(round(rng.uniform(2.5, 4.0) * fps))
    duration = num_frames / fps
    sound = str(rng.choice(SOUNDS, p=SOUND_WEIGHTS)) if has_audio else "silence"
    background = str(rng.choice(list(BACKGROUNDS)))
    visual_event = [None, "flash", "cross"][int(rng.choice(3, p=[0.7, 0.15, 0.15]))]
    audio_event = "bang" if sound != "silence" and rng.random() < 0.2 else None
    event_len = max(2, round(rng.uniform(0.10, 0.20) * num_frames))
    event_start = int(rng.integers(round(0.15 * num_frames), num_frames - event_len - 1))
    bang_len = rng.uniform(0.10, 0.20) * duration
    bang_start = rng.uniform(0.15, 0.85 - 0.20) * duration
    grey = BACKGROUNDS[background] + rng.integers(-8, 9, size=3)
    colour = str(rng.choice(list(COLOURS)))
    pitch = str(rng.choice(list(PITCH_HZ))) if sound in ("tone", "beeps") else None
    return ClipSpec(
        video_id=f"video{index}", split=split, colour=colour, shape=str(rng.choice(SHAPES)),
        size=str(rng.choice(list(SIZES))), count=int(rng.integers(1, 4)), motion=str(rng.choice(MOTIONS)),
        background=background, sound=sound, pitch=pitch, has_audio=has_audio,
        visual_event=visual_event, audio_event=audio_event, fps=fps, num_frames=num_frames,
        width=int(rng.integers(72, 89)) * 2, height=int(rng.integers(56, 65)) * 2,
        sample_rate=int(rng.choice(SAMPLE_RATES)), channels=int(rng.integers(1, 3)) if has_audio else 0,
        colour_rgb=tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in COLOURS[colour]),
        background_rgb=tuple(int(g) for g in grey), start=float(rng.uniform(-0.04, 0.04)),
        event_frames=(event_start, event_start + event_len),
        event_xy=(float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.25, 0.75))),
        audio_event_s=(round(bang_start, 3), round(bang_start + bang_len, 3)),
        tone_hz=round(PITCH_HZ[pitch] * rng.uniform(0.97, 1.03), 2) if pitch else 0.0,
        loudness=round(float(rng.uniform(0.15, 0.3)), 3), noise_seed=int(rng.integers(2**31)),
    )


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
    """Centres at time t in [0, 1]: objects side by side across the direction of motion."""
    w, h, r = c.width, c.height, SIZES[c.size] * c.height
    travel = {"right": 0.22 + 0.56 * t, "left": 0.78 - 0.56 * t, "down": 0.25 + 0.5 * t, "up": 0.75 - 0.5 * t,
              "static": 0.5}[c.motion] + c.start
    centres = []
    for i in range(c.count):
        across = (i + 1) / (c.count + 1)
        stagger = 0.0 if c.count == 1 else (0.6 * r if i % 2 else -0.6 * r)  # keeps neighbours apart
        if c.motion in ("up", "down"):
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
        gate = np.clip(8 * np.sin(2 * np.pi * BEEP_HZ * t), 0, 1)  # on half of each period, soft edges
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
# (singular verb phrase, plural verb phrase, -ing form)
MOTION_PHRASES = {
    "left": [("moves to the left", "move to the left", "moving to the left"),
             ("slides left", "slide left", "sliding left"), ("drifts leftward", "drift leftward", "drifting leftward"),
             ("travels from right to left", "travel from right to left", "travelling from right to left")],
    "right": [("moves to the right", "move to the right", "moving to the right"),
              ("slides right", "slide right", "sliding right"),
              ("drifts rightward", "drift rightward", "drifting rightward"),
              ("travels from left to right", "travel from left to right", "travelling from left to right")],
    "up": [("moves up", "move up", "moving up"), ("rises", "rise", "rising"),
           ("floats upward", "float upward", "floating upward"),
           ("goes up the screen", "go up the screen", "going up the screen")],
    "down": [("moves down", "move down", "moving down"), ("falls", "fall", "falling"), ("sinks", "sink", "sinking"),
             ("drops toward the bottom", "drop toward the bottom", "dropping toward the bottom")],
    "static": [("stays still", "stay still", "staying still"), ("does not move", "do not move", "not moving"),
               ("sits in place", "sit in place", "sitting in place"),
               ("remains motionless", "remain motionless", "remaining motionless")],
}
NO_MOTION_PHRASES = [("is shown", "are shown", "being shown"), ("appears on screen", "appear on screen", "appearing")]
SHAPE_NOUNS = {"circle": ("circle", "ball", "dot", "disc"), "square": ("square", "box", "block"),
               "triangle": ("triangle",)}
SIZE_WORDS = {"small": ("small", "little", "tiny"), "big": ("big", "large", "huge")}
BACKGROUND_PP = {"dark": ("on a dark background", "on a black background", "against a dark backdrop",
                          "in front of a black background"),
                 "light": ("on a light background", "on a white background", "against a bright backdrop",
                           "in front of a white background")}
BACKGROUND_NP = {"dark": ("a dark background", "a black screen"), "light": ("a light background", "a white screen")}
# (noun phrase, is plural)
SOUND_NPS = {
    ("tone", "low"): [("a low tone", False), ("a deep hum", False), ("a low pitched hum", False),
                      ("a low humming sound", False), ("a deep droning tone", False)],
    ("tone", "high"): [("a high tone", False), ("a high pitched tone", False), ("a shrill whine", False),
                       ("a high pitched whistle", False), ("a sharp high note", False)],
    ("beeps", "low"): [("fast low beeps", True), ("rapid low pitched beeps", True), ("quick deep beeps", True),
                       ("a fast low beeping", False), ("a rapid deep beeping sound", False)],
    ("beeps", "high"): [("fast high beeps", True), ("rapid high pitched beeps", True), ("quick shrill beeps", True),
                        ("a fast high beeping", False), ("a rapid high pitched beeping sound", False)],
    ("noise", None): [("static noise", False), ("a hissing noise", False), ("white noise", False),
                      ("a loud hiss", False), ("crackling static", False)],
}
SILENT_CLAUSES = ("there is no sound", "the video is silent", "nothing can be heard", "the clip has no sound")
SILENT_ADVERBIALS = ("in silence", "silently", "without any sound", "with no sound")
EVENT_CLAUSES = {
    "flash": ("the screen flashes white for a moment", "there is a brief white flash",
              "a sudden flash of light appears", "the picture briefly flashes white"),
    "cross": ("a cross briefly appears", "a plus sign pops up for a moment",
              "a cross flashes on the screen for an instant", "for a moment a cross shows up"),
    "bang": ("a short bang can be heard", "there is a sudden bang at one point", "a brief burst of noise is heard",
             "a loud pop sounds once", "a quick crash is heard"),
}


class _Captioner:
    """Draws one caption at a time; which attributes a caption mentions is random, like people's."""

    def __init__(self, c: ClipSpec, rng: np.random.Generator):
        self.c, self.rng = c, rng

    def pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def subject(self) -> tuple[str, bool]:
        c, rng = self.c, self.rng
        noun = self.pick(SHAPE_NOUNS[c.shape])
        words = []
        if rng.random() < 0.5:
            words.append(self.pick(SIZE_WORDS[c.size]))
        if rng.random() < 0.85:
            words.append(c.colour)
        plural = c.count > 1
        if plural:
            noun = noun + ("es" if noun.endswith("x") else "s")
            det = {2: "two", 3: "three"}[c.count] if rng.random() < 0.9 else "some"
        else:
            det = "a" if rng.random() < 0.85 else "one"
        return " ".join([det, *words, noun]), plural

    def verb(self, plural: bool, form: str = "finite") -> str:
        phrases = MOTION_PHRASES[self.c.motion] if self.rng.random() < 0.85 else NO_MOTION_PHRASES
        singular, plural_form, ing = self.pick(phrases)
        return ing if form == "ing" else (plural_form if plural else singular)

    def background(self) -> str:
        return self.pick(BACKGROUND_PP[self.c.background])

    def sound(self) -> tuple[str, bool] | None:
        c = self.c
        return None if c.sound == "silence" else self.pick(SOUND_NPS[(c.sound, c.pitch)])

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
        return self.pick([f"while {text} {'play' if plural else 'plays'}", f"with {text} in the background",
                          f"as {text} {'play' if plural else 'plays'}", f"accompanied by {text}"])

    def main_clause(self) -> str:
        subj, plural = self.subject()
        template = self.pick("AABBBCCDEFFGHHIJJ")
        if template == "A":
            return f"{subj} {self.verb(plural)}"
        if template == "B":
            return f"{subj} {self.verb(plural)} {self.background()}"
        if template == "C":
            return f"{subj} {self.verb(plural)} {self.sound_adverbial()}"
        if template == "D":
            snd = self.sound()
            if snd is None:
                return f"in a silent clip {subj} {self.verb(plural)}"
            return f"{snd[0]} {'play' if snd[1] else 'plays'} as {subj} {self.verb(plural)}"
        if template == "E":
            return f"there {'are' if plural else 'is'} {subj} {self.background()}"
        if template == "F":
            intro = self.pick(("a video of", "an animation of", "a clip showing"))
            return f"{intro} {subj} {self.verb(plural, 'ing')}"
        if template == "G":
            return f"{self.pick(BACKGROUND_NP[self.c.background])} with {subj} {self.verb(plural, 'ing')}"
        if template == "H":
            return f"{subj} {self.verb(plural)} and {self.sound_clause()}"
        if template == "I":  # audio only
            return self.sound_clause()
        return f"{subj} {self.verb(plural)} {self.background()} {self.sound_adverbial()}"

    def caption(self) -> str:
        events = [self.pick(EVENT_CLAUSES[e]) for e in (self.c.visual_event, self.c.audio_event)
                  if e and self.rng.random() < 0.5]
        main = self.main_clause()
        if not events:
            return main
        if len(events) == 2:
            return f"{main}, {events[0]} and {events[1]}"
        # "A and B, and C" when the main clause has its own "and".
        return f"{main}{', and ' if ' and ' in main else ' and '}{events[0]}"


def make_captions(c: ClipSpec, seed: int, index: int, n: int = CAPTIONS_PER_VIDEO) -> list[str]:
    """n distinct paraphrases (distinct whenever the templates allow it)."""
    captioner = _Captioner(c, np.random.default_rng([seed, index, 1]))
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


def _existing_params(out: Path) -> dict | None:
    """(videos, seed) of a complete synthetic corpus in `out`, else None."""
    try:
        info = json.loads((out / TRAIN_VAL_FILE).read_text())["info"]
        if info.get("generator") == GENERATOR and (out / TEST_FILE).is_file():
            return {"videos": info["videos"], "seed": info["seed"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _info(videos: int, seed: int) -> dict:
    return {"contributor": "avkd", "description": "avkd synthetic audio-visual caption corpus in MSR-VTT format",
            "generator": GENERATOR, "version": "1.0", "videos": videos, "seed": seed}


def _build(folder: Path, videos: int, seed: int) -> None:
    (folder / "videos").mkdir(parents=True)
    splits = _splits(videos)
    no_audio = set(np.random.default_rng([seed, 2**31]).choice(
        videos, size=max(1, round(NO_AUDIO_FRACTION * videos)), replace=False).tolist())
    files = {TRAIN_VAL_FILE: {"info": _info(videos, seed), "videos": [], "sentences": []},
             TEST_FILE: {"info": _info(videos, seed), "videos": [], "sentences": []}}
    sen_id = 0
    for index, split in enumerate(splits):
        c = sample_clip(seed, index, split, has_audio=index not in no_audio)
        write_mp4(folder / "videos" / f"{c.video_id}.mp4", render_frames(c), c.fps,
                  render_audio(c) if c.has_audio else None, c.sample_rate)
        ann = files[TEST_FILE if split == "test" else TRAIN_VAL_FILE]
        ann["videos"].append({"category": index % 20, "url": f"avkd-synth://seed{seed}/{c.video_id}",
                              "video_id": c.video_id, "start time": 0.0, "end time": round(c.duration_s, 3),
                              "split": split, "id": index, "avkd": asdict(c)})
        for caption in make_captions(c, seed, index):
            ann["sentences"].append({"caption": caption, "video_id": c.video_id, "sen_id": sen_id})
            sen_id += 1
    for name, ann in files.items():
        (folder / name).write_text(json.dumps(ann))


def generate(out: str | Path, videos: int = 180, seed: int = 0) -> Path:
    """Write the corpus to OUT (videos/<id>.mp4 + the two annotation files); return OUT.

    Built in a temporary folder next to OUT and renamed into place, so a killed run never leaves a
    half corpus that looks complete. If OUT already holds the corpus for (videos, seed), nothing is done.
    """
    out = Path(out)
    if videos < 3:
        raise DataError(f"synthetic corpus: videos={videos}, need at least 3 (one per split)")
    existing = _existing_params(out)
    if existing == {"videos": videos, "seed": seed}:
        return out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        what = f"a synthetic corpus with {existing}" if existing else "other files"
        raise DataError(f"{out}: already holds {what}; remove it or choose another output folder "
                        f"for videos={videos}, seed={seed}")
    out.parent.mkdir(parents=True, exist_ok=True)
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
    already = _existing_params(out) == {"videos": args.videos, "seed": args.seed}
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
