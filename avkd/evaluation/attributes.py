"""Grounded attribute accuracy: does a generated caption state what is really in the clip?

For each caption the attribute words are found with the synthetic corpus's own word lists
(avkd.data.synth: one source of truth for what a colour, a sound or an event is called) and compared
with the clip's true attributes, stored in the annotation files under "avkd". Accuracy is reported
per group of attributes:

    visual_static  colour, shape, size, count, background      (seen in every frame)
    audio          sound kind, pitch (tone/beeps), rhythm (beeps)
    visual_event   the brief flash or cross, or none            (1-2 frames: k = 0.2 misses most)
    audio_event    the brief bang, or none

An attribute counts as right only when the caption states exactly its true value: a missing word,
a wrong one, or two contradicting ones are wrong. For events, "no event" is right only when the
caption claims none. A group's accuracy for one video is the share of its attributes that apply to
the clip (no pitch for noise, no rhythm for a tone) stated right; per-video results are kept so a
bootstrap can resample videos. Negations ("silent", "no sound", "without any beep", "no flash")
are not mentions; a denied sound claims silence.

A dataset without stored attributes (MSR-VTT) gives None: the columns are absent, not zero.
"""

from __future__ import annotations

import json
from pathlib import Path

from avkd.data import synth
from avkd.data.msrvtt import ANNOTATION_FILES
from avkd.data.vocab import tokenize_caption
from avkd.errors import DataError

GROUPS = {
    "visual_static": ("colour", "shape", "size", "count", "background"),
    "audio": ("sound", "pitch", "rhythm"),
    "visual_event": ("visual_event",),
    "audio_event": ("audio_event",),
}
EVENT_ATTRIBUTES = ("visual_event", "audio_event")
NEGATORS = {"no", "not", "without", "nothing", "never", "nor"}
DETERMINERS = {"a", "an", "any", "the", "single", "some"}
SOUND_WORDS = {"sound", "sounds", "audio"}  # "no sound": says silence without naming a kind


def _singular(noun: str) -> str:
    return noun.removesuffix("es") if noun.endswith("xes") else noun.removesuffix("s")


def _lexicon() -> dict[str, dict[object, tuple[str, ...]]]:
    """{attribute: {value: phrases}} built from the generator's lists (plural and singular nouns both)."""
    shapes = {s: tuple(w for n in nouns for w in (n, synth.plural_noun(n))) for s, nouns in synth.SHAPE_NOUNS.items()}
    sounds = {k: tuple({w for n, _ in nouns for w in (n, _singular(n))}) for k, nouns in synth.SOUND_NOUNS.items()}
    counts = {n: tuple(w for w in words if w != "a") for n, words in synth.COUNT_WORDS.items()}  # "a" alone: see below
    return {
        "colour": {c: (c,) for c in synth.COLOURS},
        "shape": shapes,
        "size": synth.SIZE_WORDS,
        "count": counts,
        "background": synth.BACKGROUND_WORDS,
        "sound": sounds,
        "pitch": synth.PITCH_WORDS,
        "rhythm": synth.RHYTHM_WORDS,
        "visual_event": {e: synth.EVENT_WORDS[e] for e in ("flash", "cross")},
        "audio_event": {"bang": synth.EVENT_WORDS["bang"]},
    }


LEXICON = _lexicon()
# Words that may stand between a negator and what it denies: "without any loud high beeps".
MODIFIERS = (
    DETERMINERS
    | {
        t
        for a in ("colour", "size", "pitch", "rhythm")
        for phrases in LEXICON[a].values()
        for p in phrases
        for t in p.split()
    }
    | {"loud", "sudden", "brief", "short", "white"}
)


def _find(tokens: list[str], phrase: str) -> list[int]:
    """Start positions of `phrase` (one or more words) in `tokens`."""
    words = phrase.split()
    return [i for i in range(len(tokens) - len(words) + 1) if tokens[i : i + len(words)] == words]


def _negated(tokens: list[str], pos: int) -> bool:
    """Is the word at `pos` denied: a negator before it with only determiners/adjectives between?"""
    i = pos - 1
    while i >= 0 and tokens[i] in MODIFIERS and tokens[i] not in NEGATORS:
        i -= 1
    return i >= 0 and tokens[i] in NEGATORS


def parse_caption(caption: str) -> dict[str, set]:
    """{attribute: the set of values the caption asserts} (empty: not mentioned)."""
    tokens = tokenize_caption(caption)
    found: dict[str, set] = {a: set() for a in LEXICON}
    denied_sound = any(_negated(tokens, i) for w in SOUND_WORDS for i in _find(tokens, w))
    for attribute, values in LEXICON.items():
        for value, phrases in values.items():
            for phrase in phrases:
                for pos in _find(tokens, phrase):
                    if not _negated(tokens, pos):
                        found[attribute].add(value)
                    elif attribute == "sound":
                        denied_sound = True
    if not found["count"] and found["shape"]:  # "a red circle": a singular noun is one object
        nouns = {t for t in tokens for s in found["shape"] for n in synth.SHAPE_NOUNS[s] if t == n}
        plurals = {t for t in tokens for s in found["shape"] for n in synth.SHAPE_NOUNS[s] if t == synth.plural_noun(n)}
        if nouns and not plurals:
            found["count"].add(1)
    silent_phrases = (*synth.SILENT_CLAUSES, *synth.SILENT_ADVERBIALS, *synth.SILENCE_WORDS)
    if any(_find(tokens, p) for p in silent_phrases) or (denied_sound and not found["sound"]):
        found["sound"].add("silence")
    return found


def true_values(attrs: dict) -> dict[str, object]:
    """The scored attributes of one clip's stored spec (None: does not apply, or no event)."""
    return {a: attrs[a] for group in GROUPS.values() for a in group}


def score_caption(caption: str, attrs: dict) -> dict[str, float]:
    """{group: share of the clip's applicable attributes the caption states right} for one video."""
    found, truth = parse_caption(caption), true_values(attrs)
    scores = {}
    for group, attributes in GROUPS.items():
        right = []
        for a in attributes:
            if a in EVENT_ATTRIBUTES:
                right.append(found[a] == ({truth[a]} if truth[a] else set()))
            elif truth[a] is not None:
                right.append(found[a] == {truth[a]})
        scores[group] = sum(right) / len(right)
    return scores


def attribute_accuracy(
    preds: dict[str, str], truths: dict[str, dict] | None
) -> tuple[dict[str, float], dict[str, dict[str, float]]] | None:
    """(mean accuracy per group, {video: accuracy per group}) of predicted captions; None without truths."""
    if not truths:
        return None
    unknown = [v for v in preds if v not in truths]
    if unknown:
        raise DataError(
            f"attribute accuracy: video {unknown[0]!r} has no stored attributes ({len(unknown)} such video(s))"
        )
    if not preds:
        raise DataError("attribute accuracy: no predicted captions")
    per_video = {v: score_caption(caption, truths[v]) for v, caption in preds.items()}
    means = {g: sum(s[g] for s in per_video.values()) / len(per_video) for g in GROUPS}
    return means, per_video


def load_attributes(root: str | Path) -> dict[str, dict] | None:
    """{video: stored attributes} from a dataset's annotation files; None when it stores none (MSR-VTT)."""
    out: dict[str, dict] = {}
    needed = {a for group in GROUPS.values() for a in group}
    for name in ANNOTATION_FILES:
        path = Path(root) / name
        try:
            videos = json.loads(path.read_text(encoding="utf-8"))["videos"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DataError(f"{path}: cannot read the video list ({type(err).__name__}: {err})") from None
        for v in videos:
            attrs = v.get("avkd") if isinstance(v, dict) else None
            if attrs is None:
                continue
            missing = sorted(needed - set(attrs)) if isinstance(attrs, dict) else sorted(needed)
            if missing:
                raise DataError(
                    f"{path}: video {v.get('video_id')!r}: stored attributes lack {', '.join(missing)} "
                    f"(a corpus older than version {synth.CORPUS_VERSION}? regenerate it)"
                )
            out[v["video_id"]] = attrs
    return out or None


def oracle_caption(attrs: dict, audio: bool = True, events: bool = True) -> str:
    """A caption written from the true attributes with each list's first wording (no paraphrase drawn).

    audio=False: says nothing about the sound (what a model deaf to audio could at best say);
    events=False: says nothing about brief events (what a model that missed them could say).
    """
    count, noun = attrs["count"], synth.SHAPE_NOUNS[attrs["shape"]][0]
    words = [
        synth.COUNT_WORDS[count][0],
        synth.SIZE_WORDS[attrs["size"]][0],
        attrs["colour"],
        synth.plural_noun(noun) if count > 1 else noun,
        f"{synth.BACKGROUND_PREPS[0]} {synth.BACKGROUND_WORDS[attrs['background']][0]}",
    ]
    if audio:
        words.append(_oracle_sound(attrs))
    clauses = [synth.EVENT_CLAUSES[attrs[e]][0] for e in EVENT_ATTRIBUTES if attrs[e]] if events else []
    return " and ".join([" ".join(words), *clauses])


def _oracle_sound(attrs: dict) -> str:
    if attrs["sound"] == "silence":
        return synth.SILENT_ADVERBIALS[0]
    if attrs["sound"] == "noise":
        return f"with {synth.NOISE_NPS[0][0]}"
    noun, plural = synth.SOUND_NOUNS[attrs["sound"]][0]
    adjectives = ([synth.RHYTHM_WORDS[attrs["rhythm"]][0]] if attrs["rhythm"] else []) + [
        synth.PITCH_WORDS[attrs["pitch"]][0]
    ]
    return " ".join(["with"] + ([] if plural else ["a"]) + adjectives + [noun])
