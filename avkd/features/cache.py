"""The feature cache shared by every trial and sweep (default cache/features/).

Layout (one small .npz per video and entry kind):
    visual/inception-<weights fp>-s<image size>-<layout>/<video key>.npz (layout: visual.INCEPTION_LAYOUT)
        per-FRAME Inception features (float16) keyed by absolute frame index, plus the frame count.
        A frame's feature does not depend on which other frames are selected (eval mode), and a
        student's frames are a subset of the teacher's, so every k and every max_frames reuses the
        teacher's frames: a new k costs no forward pass. float16 halves the disk (4 KB a frame);
        latents are always computed from the stored float16 values, so a cached and a fresh
        extraction give the same numbers.
    audio/<audio model>-<weights fp>-<front end>-sr<rate>-<pool>[-renorm][-t<time pool>]/k<k>/<video key>.npz
        the audio model's embedding at rate k (float32; cnn10 512-d, cnn14 2048-d): SimPF changes
        the conv body's input, so audio is computed and cached per (k, pool). `-renorm` marks
        features.simpf_renorm, `-tmean` the paper's mean over time (PANNs' own max+mean has no
        suffix, so caches written before these options stay valid). <front end>: audio.LOGMEL_FRONT_END,
        the log-mel implementation (a changed front end must not reuse another's embeddings).
The video key hashes the file's resolved path, size and mtime: an edited or replaced file is a
different video. Each entry also stores its full key text and is checked on read.

Writes are atomic (temp file in the same folder + os.replace): a killed run leaves at most a
`.tmp` file, which no reader opens. An unreadable or mismatching entry counts as a miss and is
rewritten. A write that fails (a full disk, a read-only folder) removes its temp file and is one
StorageError naming the entry and the cause, whatever the writer made of the OSError (torch.save
turns ENOSPC into "unexpected pos 704 vs 598").
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np

from avkd.config import AUDIO_MODELS, FeatureConfig
from avkd.errors import StorageError
from avkd.features.audio import LOGMEL_FRONT_END
from avkd.features.visual import INCEPTION_LAYOUT
from avkd.storage import os_cause

log = logging.getLogger(__name__)


def video_key(path: str | Path) -> str:
    """Content identity of a video file: hash of resolved path, size and mtime (ns)."""
    p = Path(path).resolve()
    st = p.stat()
    return hashlib.sha256(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]


class _KeepsWriteError:
    """A binary file whose write() remembers the OSError it raised: torch.save reports a failed write as
    RuntimeError("... unexpected pos ...") and drops the cause."""

    def __init__(self, file: BinaryIO):
        self.file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as err:
            self.error = err
            raise

    def __getattr__(self, name: str):  # tell, seek, flush ... as the file's
        return getattr(self.file, name)


def write_entry(path: Path, write: Callable[[BinaryIO], None], keep_existing: bool = False, fsync: bool = False):
    """write(file) into a temp file in path's folder, then publish it under `path` in one step: os.replace,
    or with `keep_existing` a hard link that leaves a file someone else wrote first in place (and in use).
    Any OSError on the way (however the writer reported it) is one StorageError naming `path` and the
    cause; the temp file is always removed, so nothing half-written is ever read."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise _write_failed(path, err) from None
    out = _KeepsWriteError(os.fdopen(fd, "wb"))
    try:
        with out.file:
            write(out)
            out.file.flush()
            if fsync:
                os.fsync(out.file.fileno())
        if not keep_existing:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
    except Exception as err:
        cause = out.error or (err if isinstance(err, OSError) else None)
        if cause is None:
            raise
        raise _write_failed(path, cause) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def _write_failed(path: Path, err: OSError) -> StorageError:
    return StorageError(f"{path}: cannot write to the feature cache: {os_cause(err)}")


def atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    """np.savez under `path`, atomically (write_entry): never a half-written entry."""
    write_entry(path, lambda f: np.savez(f, **arrays))


def read_npz(path: Path, key: str) -> dict[str, np.ndarray] | None:
    """The arrays of an entry, or None when missing, unreadable, truncated or written under another key."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        log.warning("%s: unreadable cache entry (%s): recomputing", path, type(err).__name__)
        return None
    if str(arrays.get("key", "")) != key:
        log.warning("%s: cache entry written for another key: recomputing", path)
        return None
    return arrays


@dataclass
class VisualEntry:
    num_frames: int
    indices: np.ndarray  # (n,) int64, sorted absolute frame numbers
    features: np.ndarray  # (n, 2048) float16 (Inception-v3)

    def lookup(self, wanted: list[int]) -> np.ndarray | None:
        """Features of `wanted` frames, or None if any is missing."""
        pos = np.searchsorted(self.indices, wanted)
        if np.any(pos >= len(self.indices)) or not np.array_equal(self.indices[pos], wanted):
            return None
        return self.features[pos]

    def merged(self, indices: list[int], features: np.ndarray) -> "VisualEntry":
        """This entry plus new frames (a new frame replaces an old one with the same index)."""
        new = np.asarray(indices, np.int64)
        keep = ~np.isin(self.indices, new)
        all_idx = np.concatenate([self.indices[keep], new])
        all_feat = np.concatenate([self.features[keep], features.astype(np.float16)])
        order = np.argsort(all_idx, kind="stable")
        return VisualEntry(self.num_frames, all_idx[order], all_feat[order])


class FeatureCache:
    """Per-video cache entries for one set of extractor weights and settings."""

    def __init__(
        self,
        root: str | Path,
        inception_fp: str,
        audio_fp: str,
        image_size: int,
        sample_rate: int,
        audio_pool: str,
        audio_model: str = "cnn14",
        audio_time_pool: str = "panns",
        simpf_renorm: bool = False,
    ):
        if audio_model not in AUDIO_MODELS:
            raise ValueError(f"unknown audio model {audio_model!r} (known: {', '.join(AUDIO_MODELS)})")
        self.root = Path(root)
        self.visual_tag = f"inception-{inception_fp}-s{image_size}-{INCEPTION_LAYOUT}"
        self.audio_tag = (
            f"{audio_model}-{audio_fp}-{LOGMEL_FRONT_END}-sr{sample_rate}-{audio_pool}"
            + ("-renorm" if simpf_renorm else "")
            + ("" if audio_time_pool == "panns" else f"-t{audio_time_pool}")
        )

    @classmethod
    def for_config(cls, root: str | Path, fingerprints: dict[str, str], fcfg: FeatureConfig) -> "FeatureCache":
        """The cache of a feature config, given its extractors' fingerprints ({"inception": .., <audio model>: ..})."""
        return cls(
            root,
            fingerprints["inception"],
            fingerprints[fcfg.audio_model],
            fcfg.image_size,
            fcfg.sample_rate,
            fcfg.audio_pool,
            fcfg.audio_model,
            fcfg.audio_time_pool,
            fcfg.simpf_renorm,
        )

    # ---- visual: per-frame features ----------------------------------------------------------
    def visual_path(self, vkey: str) -> Path:
        return self.root / "visual" / self.visual_tag / f"{vkey}.npz"

    def load_visual(self, vkey: str) -> VisualEntry | None:
        data = read_npz(self.visual_path(vkey), f"{self.visual_tag}/{vkey}")
        if data is None:
            return None
        return VisualEntry(int(data["num_frames"]), data["indices"].astype(np.int64), data["features"])

    def save_visual(self, vkey: str, entry: VisualEntry) -> None:
        atomic_savez(
            self.visual_path(vkey),
            key=np.array(f"{self.visual_tag}/{vkey}"),
            num_frames=np.array(entry.num_frames),
            indices=entry.indices,
            features=entry.features.astype(np.float16),
        )

    # ---- audio: one embedding per k ------------------------------------------------------------
    def audio_path(self, vkey: str, k: float) -> Path:
        return self.root / "audio" / self.audio_tag / f"k{k:g}" / f"{vkey}.npz"

    def load_audio(self, vkey: str, k: float) -> tuple[np.ndarray, bool, int] | None:
        """(embedding (D,) float32, clip had audio, log-mel frames fed to the conv body) or None."""
        data = read_npz(self.audio_path(vkey, k), f"{self.audio_tag}/k{k:g}/{vkey}")
        if data is None:
            return None
        return data["embedding"], bool(data["has_audio"]), int(data["frames"])

    def save_audio(self, vkey: str, k: float, embedding: np.ndarray, has_audio: bool, frames: int) -> None:
        atomic_savez(
            self.audio_path(vkey, k),
            key=np.array(f"{self.audio_tag}/k{k:g}/{vkey}"),
            embedding=np.asarray(embedding, np.float32),
            has_audio=np.array(has_audio),
            frames=np.array(frames),
        )
