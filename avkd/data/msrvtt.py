"""MSR-VTT loader: the two official annotation files + one <video_id>.mp4 per video.

Layout of ROOT:
  train_val_videodatainfo.json, test_videodatainfo.json   {"info", "videos": [...], "sentences": [...]}
  videos/ or TrainValVideo/ + TestVideo/                   <video_id>.mp4

Unusable annotations (malformed JSON, a missing file or key, wrong types, a video id that would
escape the folder) raise DataError with one line naming the file and key. Problems with single
videos (unknown split, duplicate id, caption without video, video without captions, missing .mp4)
become `DataIssue`s, are logged as warnings, and keep that video out of its split.

A video declared in more than one split (`split_conflict`) is test-set leakage waiting to happen:
it goes to its most held-out split (test, then validate, then train), never to training when any
annotation holds it out, and the issue names the id and every file that declares it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from avkd.data.vocab import TOKENIZER_VERSION, Vocabulary, tokenize_caption
from avkd.errors import DataError

log = logging.getLogger(__name__)

ANNOTATION_FILES = ("train_val_videodatainfo.json", "test_videodatainfo.json")
VIDEO_FOLDERS = ("videos", "TrainValVideo", "TestVideo")  # searched in this order for each video
SPLITS = ("train", "validate", "test")
HELD_OUT_ORDER = ("test", "validate", "train")  # a video declared in several splits goes to the first
_WARNINGS_PER_KIND = 20  # beyond this, one summary line per kind instead of one line per video


@dataclass
class Video:
    video_id: str
    split: str
    path: Path | None  # None: no <video_id>.mp4 was found
    captions: list[str]
    tokens: list[list[str]]  # tokenize_caption of each caption

    @property
    def usable(self) -> bool:
        return self.split in SPLITS and self.path is not None and bool(self.captions)


@dataclass
class DataIssue:
    # unknown_split | duplicate_video | caption_without_video | video_without_captions | missing_video_file
    # | empty_caption | split_conflict
    kind: str
    video_id: str | None
    file: str
    message: str


@dataclass
class Dataset:
    root: Path
    videos: dict[str, Video]  # every declared video, usable or not
    issues: list[DataIssue] = field(default_factory=list)

    def split(self, name: str) -> list[Video]:
        """The usable videos of a split (file found, at least one caption), in natural id order."""
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r} (known: {', '.join(SPLITS)})")
        return sorted((v for v in self.videos.values() if v.split == name and v.usable),
                      key=lambda v: _natural_key(v.video_id))

    def fingerprint(self) -> str:
        """Short stable hash of the annotation files, each usable video file's content and the tokeniser version.

        Content, not mtime: the same corpus generated in two folders (or copied) has one identity, so
        finished trials are recognised; the tokeniser version, because a caption tokenised another
        way is another training set.
        """
        h = hashlib.sha256(f"tokenizer={TOKENIZER_VERSION}\n".encode())
        for name in ANNOTATION_FILES:
            h.update(name.encode() + b"\0" + (self.root / name).read_bytes() + b"\0")
        for split in SPLITS:
            for v in self.split(split):
                digest = hashlib.sha256(v.path.read_bytes()).hexdigest()
                h.update(f"{split}/{v.video_id}/{v.path.name}/{digest}\n".encode())
        return h.hexdigest()[:16]

    def build_vocab(self, min_count: int) -> Vocabulary:
        """Vocabulary of the train split's captions only (the test split must not leak into it)."""
        return Vocabulary.build((t for v in self.split("train") for t in v.tokens), min_count=min_count)


def _natural_key(video_id: str) -> tuple:
    """'video9' < 'video10': digits compare as numbers."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", video_id))


def _check_video_id(video_id: str, where: str) -> None:
    """Ids become file names: reject anything that could point outside the video folder."""
    if (not video_id or video_id in (".", "..") or "/" in video_id or "\\" in video_id or ".." in video_id
            or "\0" in video_id or Path(video_id).is_absolute() or re.match(r"^[A-Za-z]:", video_id)):
        raise DataError(f"{where}: video_id {video_id!r} is not a plain file name (it could escape the data folder)")


def _read_annotations(path: Path) -> tuple[list[dict], list[dict]]:
    """The validated `videos` and `sentences` lists of one annotation file."""
    if not path.is_file():
        raise DataError(f"{path}: annotation file not found (an MSR-VTT root holds {' and '.join(ANNOTATION_FILES)})")
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: malformed JSON at line {err.lineno}, column {err.colno}: {err.msg}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: the top level must be an object with 'videos' and 'sentences', "
                        f"got {type(data).__name__}")
    lists = []
    for key, fields in (("videos", ("video_id", "split")), ("sentences", ("video_id", "caption"))):
        if key not in data:
            raise DataError(f"{path}: missing key '{key}'")
        entries = data[key]
        if not isinstance(entries, list):
            raise DataError(f"{path}: '{key}' must be a list, got {type(entries).__name__}")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise DataError(f"{path}: {key}[{i}] must be an object, got {type(entry).__name__}")
            for name in fields:
                if name not in entry:
                    raise DataError(f"{path}: {key}[{i}]: missing key '{name}'")
                if not isinstance(entry[name], str):
                    raise DataError(f"{path}: {key}[{i}].{name} must be a string, got {type(entry[name]).__name__} "
                                    f"{entry[name]!r}"[:300])
            _check_video_id(entry["video_id"], f"{path}: {key}[{i}]")
        lists.append(entries)
    return lists[0], lists[1]


def _resolve_split(vid: str, declared: list[tuple[str, str]], issues: list[DataIssue]) -> tuple[str, str]:
    """(split, file) for a video from all its declarations; reports repeats and conflicts as issues."""
    if len(declared) == 1:
        return declared[0][1], declared[0][0]
    splits = {split for _, split in declared}
    where = "; ".join(f"{split} in {file}" for file, split in declared)
    if len(splits) == 1:
        issues.append(DataIssue("duplicate_video", vid, declared[1][0],
                                f"{vid} is declared {len(declared)} times ({where}); kept once"))
        return declared[0][1], declared[0][0]
    known = [s for s in HELD_OUT_ORDER if s in splits]
    split = known[0] if known else declared[0][1]
    file = next(f for f, s in declared if s == split)
    files = sorted({f for f, _ in declared})
    never_trained = ", never used for training" if split != "train" else ""
    issues.append(DataIssue("split_conflict", vid, ", ".join(files), f"{vid} is declared in more than one split "
                            f"({where}); kept in {split} only{never_trained}"))
    return split, file


def _video_files(root: Path) -> dict[str, Path]:
    """<video_id> -> path of <video_id>.mp4, from the first folder of VIDEO_FOLDERS that has it."""
    found: dict[str, Path] = {}
    for folder in VIDEO_FOLDERS:
        if (root / folder).is_dir():
            for entry in sorted((root / folder).iterdir()):
                if entry.suffix == ".mp4" and entry.stem not in found and entry.is_file():
                    found[entry.stem] = entry
    return found


def load_msrvtt(root: str | Path, max_videos: int | None = None) -> Dataset:
    """Read ROOT's annotations and find the video files; `max_videos` keeps the first N usable videos per split."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder")
    issues: list[DataIssue] = []
    videos: dict[str, Video] = {}
    declared_in: dict[str, str] = {}
    captions: dict[str, list[str]] = {}
    files = _video_files(root)
    searched = [f for f in VIDEO_FOLDERS if (root / f).is_dir()] or list(VIDEO_FOLDERS)
    annotations = {root / name: _read_annotations(root / name) for name in ANNOTATION_FILES}
    declarations: dict[str, list[tuple[str, str]]] = {}  # video id -> [(file, split), ...] in reading order
    for path, (entries, _) in annotations.items():
        for entry in entries:
            declarations.setdefault(entry["video_id"], []).append((str(path), entry["split"]))
    for vid, declared in declarations.items():
        split, path = _resolve_split(vid, declared, issues)
        declared_in[vid] = path
        videos[vid] = Video(vid, split, files.get(vid), [], [])
        if split not in SPLITS:
            issues.append(DataIssue("unknown_split", vid, path,
                                    f"{vid} has split {split!r} (known: {', '.join(SPLITS)}); excluded"))
    for path, (_, sentences) in annotations.items():
        orphans: dict[str, int] = {}
        for i, sentence in enumerate(sentences):
            vid = sentence["video_id"]
            if vid not in videos:
                orphans[vid] = orphans.get(vid, 0) + 1
            elif not tokenize_caption(sentence["caption"]):
                issues.append(DataIssue("empty_caption", vid, str(path),
                                        f"sentences[{i}] of {vid} has no words ({sentence['caption']!r}); dropped"))
            else:
                captions.setdefault(vid, []).append(sentence["caption"])
        for vid, n in orphans.items():
            issues.append(DataIssue("caption_without_video", vid, str(path),
                                    f"{n} caption(s) for {vid}, which is in no 'videos' list; ignored"))
    for vid, video in videos.items():
        video.captions = captions.get(vid, [])
        video.tokens = [tokenize_caption(c) for c in video.captions]
        if not video.captions:
            issues.append(DataIssue("video_without_captions", vid, declared_in[vid],
                                    f"{vid} has no captions; excluded"))
        if video.path is None:
            expected = root / searched[0] / f"{vid}.mp4"
            issues.append(DataIssue("missing_video_file", vid, str(expected),
                                    f"{vid}.mp4 not found in {', '.join(searched)} under {root}; excluded"))
    dataset = Dataset(root, videos, issues)
    if max_videos is not None:
        keep = {v.video_id for split in SPLITS for v in dataset.split(split)[:max_videos]}
        dataset.videos = {vid: v for vid, v in videos.items() if vid in keep}
    _log_issues(issues, root)
    return dataset


def _log_issues(issues: list[DataIssue], root: Path) -> None:
    shown: dict[str, int] = {}
    for issue in issues:
        shown[issue.kind] = shown.get(issue.kind, 0) + 1
        if shown[issue.kind] <= _WARNINGS_PER_KIND:
            log.warning("%s: %s: %s", issue.file, issue.kind, issue.message)
    for kind, n in shown.items():
        if n > _WARNINGS_PER_KIND:
            log.warning("%s: ... and %d more %s issues (see Dataset.issues or `python -m avkd data check`)",
                        root, n - _WARNINGS_PER_KIND, kind)
