"""Feature extraction for the teacher (k=1) and the students (k<1): what the sweep driver calls.

Per video and variant k:
    visual latent = mean over frame_indices(N, k, max_frames) of Inception-v3 frame features
    audio latent  = PANNs embedding (features.audio_model: Cnn10 512-d or Cnn14 2048-d) of the log-mel
                    spectrogram time-pooled to ceil(k*T) frames (SimPF)
Pipeline: a thread pool of `workers` decodes videos ahead of the model (bounded prefetch; decoding
and resizing release the GIL); the main thread batches frames across videos (`batch_frames` per
Inception forward) and runs the audio model per clip. Everything goes through the FeatureCache, so a
variant already extracted costs no decoding and no forward pass. A video that cannot be decoded is
recorded in `errors` and skipped; the batch goes on.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn as nn
from rich.console import Console

from avkd.config import FeatureConfig, load_sweep
from avkd.data import media
from avkd.data.load import load_dataset
from avkd.errors import DataError, MediaError, StorageError
from avkd.features import audio as audio_mod
from avkd.features import visual as visual_mod
from avkd.features import weights as weights_mod
from avkd.features.cache import FeatureCache, VisualEntry, video_key
from avkd.features.latents import LatentTable
from avkd.features.sampling import frame_indices
from avkd.runtime import pick_device, start_ray, stop_ray

log = logging.getLogger(__name__)
console = Console(stderr=True)
REPO = Path(__file__).resolve().parents[2]

MAX_SIDE = 4096  # larger frames are refused (one 8K frame is ~100 MB decoded)
DECODE_CHUNK_BYTES = 64 << 20  # frames are decoded in chunks of about this many bytes
# BatchNorm re-estimation of random weights: a seeded sample of train videos (see weights.py).
CALIBRATION_VIDEOS = 16
CALIBRATION_FRAMES = 8  # per video, uniformly spaced
CALIBRATION_RECIPE = "v2"  # bump when the recipe changes: the cached re-estimated weights are keyed on it
# (v2: audio.logmel's torch.stft front end feeds the audio BN re-estimation)


def resolve(path: str | Path) -> Path:
    """Relative paths in a sweep file are relative to the repo root."""
    p = Path(path)
    return p if p.is_absolute() else REPO / p


# ---- the extractors (weights loaded once per process) ---------------------------------------------


@dataclass
class ExtractorWeights:
    """Which weights the extractors of a config have: all the feature cache's keys and the tables need."""

    audio_model: str  # features.audio_model: "cnn10" | "cnn14"
    status: dict[str, str]  # {"inception": "pretrained" | "random", <audio_model>: ...}
    fingerprints: dict[str, str]  # same keys

    def weights_info(self) -> dict[str, str]:
        fp = f"{self.fingerprints['inception']}-{self.fingerprints[self.audio_model]}"
        return {**self.status, "fingerprint": fp}


@dataclass
class Extractors:
    inception: nn.Module
    audio: nn.Module  # the PANNs model named audio_model
    audio_model: str  # features.audio_model: "cnn10" | "cnn14"
    status: dict[str, str]  # {"inception": "pretrained" | "random", <audio_model>: ...}
    fingerprints: dict[str, str]  # same keys
    device: torch.device

    @property
    def weights(self) -> ExtractorWeights:
        return ExtractorWeights(self.audio_model, self.status, self.fingerprints)

    def weights_info(self) -> dict[str, str]:
        return self.weights.weights_info()


_LOADED: dict[tuple, Extractors] = {}


class _WeightSources:
    """Where each extractor's weights of a config come from: the checkpoint, or the cached re-estimated
    file whose name encodes everything it depends on (seed, recipe, calibration sample, image size)."""

    def __init__(self, dataset, fcfg: FeatureConfig):
        self.dataset, self.fcfg, self.w = dataset, fcfg, fcfg.weights
        self.weights_dir = resolve(fcfg.cache_dir) / "weights"
        self._sample: list | None = None

    def calibration_sample(self) -> list:
        if self._sample is None:
            self._sample = _calibration_candidates(self.dataset, self.w.seed)
        return self._sample

    def _calib_id(self, kind: str) -> str:
        ids = [video_key(v.path) for v in self.calibration_sample()]
        blob = json.dumps([kind, CALIBRATION_RECIPE, CALIBRATION_VIDEOS, CALIBRATION_FRAMES, ids])
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def calibrated(self, kind: str) -> Path:
        if weights_mod.find_checkpoint(kind, self.w) is not None:
            return self.weights_dir / "unused"  # pretrained: nothing is re-estimated
        suffix = f"-s{self.fcfg.image_size}" if kind == "inception" else ""
        return self.weights_dir / f"{kind}-seed{self.w.seed}{suffix}-{self._calib_id(kind)}.pt"


def known_weights(dataset, fcfg: FeatureConfig) -> ExtractorWeights | None:
    """The extractors' weights identity without building them (weights.known), or None when some
    extractor must be built to know it (first run, a changed checkpoint or re-estimated file)."""
    sources = _WeightSources(dataset, fcfg)
    found = {
        kind: weights_mod.known(kind, fcfg.weights, sources.calibrated(kind))
        for kind in ("inception", fcfg.audio_model)
    }
    if any(v is None for v in found.values()):
        return None
    return ExtractorWeights(
        fcfg.audio_model, {kind: v[0] for kind, v in found.items()}, {kind: v[1] for kind, v in found.items()}
    )


def get_extractors(dataset, fcfg: FeatureConfig) -> Extractors:
    """Inception-v3 + the audio model for this config (pretrained, or seeded random with re-estimated BN), cached per process."""
    w = fcfg.weights
    name = fcfg.audio_model
    key = (
        fcfg.image_size,
        w.require_pretrained,
        w.inception,
        name,
        getattr(w, name),
        w.seed,
        fcfg.device,
        str(resolve(fcfg.cache_dir)),
        str(getattr(dataset, "root", "")),
    )
    if key in _LOADED:
        return _LOADED[key]
    device = pick_device(fcfg.device)  # avkd.runtime: the one device choice
    sources = _WeightSources(dataset, fcfg)
    inception, inc_status, inc_fp = weights_mod.prepare(
        "inception",
        visual_mod.new_inception,
        w,
        sources.calibrated("inception"),
        lambda model: _calibrate_inception(model, sources.calibration_sample(), fcfg.image_size, fcfg.batch_frames),
    )
    audio, audio_status, audio_fp = weights_mod.prepare(
        name,
        lambda: audio_mod.new_audio_model(name),
        w,
        sources.calibrated(name),
        lambda model: _calibrate_audio(model, sources.calibration_sample(), fcfg.sample_rate),
    )
    ext = Extractors(
        inception.to(device),
        audio.to(device),
        name,
        {"inception": inc_status, name: audio_status},
        {"inception": inc_fp, name: audio_fp},
        device,
    )
    _LOADED[key] = ext
    return ext


def _calibration_candidates(dataset, seed: int) -> list:
    """A seeded sample of train videos for the BN re-estimation (which takes the first usable ones).

    Ordered by a hash of (seed, video id) rather than a shuffle of the whole list, so adding or
    removing other videos rarely changes the sample (and with it the weights and every cache key)."""
    train = [v for v in dataset.split("train") if v.path is not None and Path(v.path).is_file()]
    if not train:
        raise DataError(
            f"{getattr(dataset, 'root', 'dataset')}: no train video files to re-estimate the "
            "BatchNorm statistics of random extractor weights"
        )
    train.sort(key=lambda v: hashlib.sha256(f"{seed}:{v.video_id}".encode()).hexdigest())
    return train[: 2 * CALIBRATION_VIDEOS]


def _calibrate_inception(model: nn.Module, videos: list, image_size: int, batch: int) -> None:
    frames, used = [], 0
    for v in videos:
        if used == CALIBRATION_VIDEOS:
            break
        try:
            n = media.probe(v.path).num_frames
            frames.append(
                visual_mod.resize_frames(
                    media.read_frames(v.path, frame_indices(n, 1.0, CALIBRATION_FRAMES)), image_size
                )
            )
            used += 1
        except MediaError:
            continue
    if not frames:
        raise DataError("no decodable train video to re-estimate Inception-v3's BatchNorm statistics")
    x = torch.cat(frames)
    device = next(model.parameters()).device
    for i in range(0, len(x), min(batch, 32)):
        model(visual_mod.normalize(x[i : i + min(batch, 32)].to(device)))


def _calibrate_audio(model: nn.Module, videos: list, sample_rate: int) -> None:
    """BN re-estimation of a PANNs model; its BN layers all sit before the pooling over time, so the
    result does not depend on features.audio_time_pool."""
    used = 0
    device = next(model.parameters()).device
    for v in videos:
        if used == CALIBRATION_VIDEOS:
            break
        try:
            wave, has_audio = media.read_audio(v.path, sample_rate)
        except MediaError:
            continue
        if not has_audio or len(wave) == 0:
            continue  # silence would pull bn0's statistics to -100 dB
        audio_mod.conv_body(
            model, audio_mod.pooled_inputs(model, torch.from_numpy(wave).to(device), [1.0], "spectral")[0]
        )
        used += 1
    if used == 0:
        raise DataError(f"no train video with audio to re-estimate {type(model).__name__}'s BatchNorm statistics")


# ---- one video -------------------------------------------------------------------------------------


@dataclass
class _Job:
    """One video's work: what the cache already has, what to decode, what the models produce."""

    video_id: str
    path: Path
    vkey: str
    visual: VisualEntry | None  # cached per-frame features (None: nothing cached)
    audio: dict[float, tuple[np.ndarray, bool, int]]  # k -> cached (embedding, has_audio, frames)
    missing_audio: list[float]  # ks whose audio embedding must be computed
    new_idx: list[int] | None = None  # frames to run through Inception (None: probe to find out)
    num_frames: int = 0
    frames: torch.Tensor | None = None  # uint8 (len(new_idx), 3, S, S), decoded in a worker
    wave: np.ndarray | None = None
    has_audio: bool = True
    error: str | None = None
    outputs: list[torch.Tensor] = field(default_factory=list)  # Inception features of `frames`, in order
    rows_taken: int = 0


def _plan(video_id: str, path: Path, cache: FeatureCache, ks: list[float], fcfg: FeatureConfig, rebuild: bool) -> _Job:
    vkey = video_key(path)
    entry = None if rebuild else cache.load_visual(vkey)
    cached_audio = {} if rebuild else {k: a for k in ks if (a := cache.load_audio(vkey, k)) is not None}
    job = _Job(video_id, path, vkey, entry, cached_audio, [k for k in ks if k not in cached_audio])
    if entry is not None:
        job.num_frames = entry.num_frames
        have = set(entry.indices.tolist())
        job.new_idx = [i for i in frame_indices(entry.num_frames, 1.0, fcfg.max_frames) if i not in have]
    return job


def _decode(job: _Job, fcfg: FeatureConfig) -> _Job:
    """Worker thread: open the video once, decode the missing frames (resized, uint8) and, if needed, the audio."""
    try:
        with media.OpenClip(job.path) as clip:
            info = clip.info
            if job.new_idx is None or job.new_idx:
                if info.width > MAX_SIDE or info.height > MAX_SIDE:
                    raise MediaError(
                        str(job.path), f"resolution {info.width}x{info.height} is larger than {MAX_SIDE} px"
                    )
                job.num_frames = info.num_frames
                if job.new_idx is None:
                    # every student frame is one of the teacher's: decode those once for all ks
                    job.new_idx = frame_indices(info.num_frames, 1.0, fcfg.max_frames)
                chunk = max(1, DECODE_CHUNK_BYTES // (info.width * info.height * 3))
                parts = [
                    visual_mod.resize_frames(clip.frames(job.new_idx[i : i + chunk]), fcfg.image_size)
                    for i in range(0, len(job.new_idx), chunk)
                ]
                job.frames = torch.cat(parts)
            if job.missing_audio:
                job.wave, job.has_audio = clip.audio(fcfg.sample_rate)
    except MediaError as err:
        job.error = err.reason
    except Exception as err:  # one odd file must not stop the batch: record why and go on
        job.error = f"{type(err).__name__}: {err}"[:300]
    return job


def _prefetch(pool: ThreadPoolExecutor, jobs: list[_Job], fcfg: FeatureConfig, depth: int) -> Iterator[_Job]:
    """Decoded jobs in order, with at most `depth` videos decoding or decoded ahead of the consumer."""
    pending: deque = deque()
    it = iter(jobs)
    for job in it:
        pending.append(pool.submit(_decode, job, fcfg))
        if len(pending) >= depth:
            break
    while pending:
        done = pending.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            pending.append(pool.submit(_decode, nxt, fcfg))
        yield done


class _FrameBatcher:
    """Collects frames across videos and runs Inception on full batches of `batch` frames."""

    def __init__(self, ext: Extractors, batch: int):
        self.ext, self.batch = ext, batch
        self.queue: deque[_Job] = deque()
        self.rows = 0
        self.forwards = 0

    def add(self, job: _Job) -> list[_Job]:
        self.queue.append(job)
        self.rows += len(job.frames) - job.rows_taken
        finished = []
        while self.rows >= self.batch:
            finished += self._run(self.batch)
        return finished

    def flush(self) -> list[_Job]:
        return self._run(self.rows) if self.rows else []

    @torch.inference_mode()
    def _run(self, n: int) -> list[_Job]:
        parts, owners = [], []
        while n > 0:
            job = self.queue[0]
            take = min(n, len(job.frames) - job.rows_taken)
            parts.append(job.frames[job.rows_taken : job.rows_taken + take])
            owners.append((job, take))
            job.rows_taken += take
            n -= take
            self.rows -= take
            if job.rows_taken == len(job.frames):
                self.queue.popleft()
        feats = visual_mod.embed_frames(self.ext.inception, torch.cat(parts), self.batch)
        self.forwards += 1
        finished, start = [], 0
        for job, take in owners:
            job.outputs.append(feats[start : start + take])
            start += take
            if job.rows_taken == len(job.frames) and sum(len(o) for o in job.outputs) == len(job.frames):
                finished.append(job)
        return finished


@torch.inference_mode()
def _audio_embeddings(ext: Extractors, job: _Job, fcfg: FeatureConfig) -> None:
    """The audio model at every missing k for one decoded clip (one log-mel, pooled per k)."""
    wave = torch.from_numpy(job.wave).to(ext.device)
    inputs = audio_mod.pooled_inputs(
        ext.audio, wave, job.missing_audio, fcfg.audio_pool, job.video_id, fcfg.simpf_renorm
    )
    embs = audio_mod.embed_inputs(ext.audio, inputs, fcfg.batch_audio, fcfg.audio_time_pool)
    for k, x, e in zip(job.missing_audio, inputs, embs):
        job.audio[k] = (e.float().cpu().numpy(), job.has_audio, int(x.shape[-2]))


# ---- many videos, many variants ---------------------------------------------------------------------


def extract_variants(
    dataset,
    fcfg: FeatureConfig,
    ks: Iterable[float],
    video_ids: list[str] | None = None,
    progress: bool = True,
    rebuild: bool = False,
    extractors: Extractors | None = None,
    nodes: list[str] | None = None,
    reporter=None,
) -> dict[float, LatentTable]:
    """Latent tables for the teacher (k=1.0, always included) and every k, from/into the shared cache.

    `video_ids`: default every usable video of every split. `rebuild`: ignore existing cache entries
    and overwrite them. `extractors`: already loaded models (default: get_extractors(dataset, fcfg)).
    `reporter`: the caller's progress (set_total/skip/advance, e.g. a sweep's phase) instead of the bar.
    With Ray initialised (or features.shards >= 2) the videos to extract are split over Ray tasks
    (see _extract_sharded; `nodes`: the Ray nodes they may run on); their features are saved into
    this process's cache and the tables assembled from it."""
    ks_all = sorted({1.0, *(float(k) for k in ks)}, reverse=True)
    if video_ids is None:  # every usable video (file found, captioned) of every split
        video_ids = [v.video_id for split in ("train", "validate", "test") for v in dataset.split(split)]
    ids = list(dict.fromkeys(video_ids))
    # The cache's keys need only the weights' identity: a rerun whose features are all cached builds
    # no model (weights.known); the extractors are built as soon as one video needs them.
    ext = extractors
    weights = ext.weights if ext is not None else known_weights(dataset, fcfg)
    if weights is None:
        ext = get_extractors(dataset, fcfg)
        weights = ext.weights
    t0 = time.time()
    cache, done, todo, errors = _plan_all(ids, dataset, weights, ks_all, fcfg, rebuild)
    if todo and ext is None:
        ext = get_extractors(dataset, fcfg)
        if ext.weights != weights:  # the remembered identity was stale: plan against the real one
            weights = ext.weights
            cache, done, todo, errors = _plan_all(ids, dataset, weights, ks_all, fcfg, rebuild)
    cached = len(done)
    shards = shard_count(fcfg, len(todo))
    with _ProgressBar(progress and reporter is None, len(ids), reporter) as bar:
        bar.skip(len(done) + len(errors))
        if shards > 1:
            _extract_sharded(fcfg, ks_all, todo, ext, shards, cache, done, errors, bar, nodes)
            how = f"in {shards} Ray shards"
        else:
            forwards = _extract_here(todo, ext, cache, fcfg, done, errors, bar)
            how = f"{forwards} Inception batches"

    tables = _tables(ids, done, errors, ks_all, fcfg, weights)
    _print_summary(len(ids), cached, len(todo), errors, tables[1.0].no_audio, time.time() - t0, how)
    return tables


def _plan_all(ids: list[str], dataset, weights: ExtractorWeights, ks: list[float], fcfg: FeatureConfig, rebuild: bool):
    """(cache, done, todo, errors): each video's cached entries under `weights`, and what is missing."""
    cache = FeatureCache.for_config(resolve(fcfg.cache_dir), weights.fingerprints, fcfg)
    errors: dict[str, dict] = {}
    done: dict[str, _Job] = {}
    todo: list[_Job] = []
    for vid in ids:
        video = dataset.videos.get(vid)
        path = Path(video.path) if video is not None and video.path is not None else None
        if video is None or path is None or not path.is_file():
            why = "not in the dataset" if video is None else "video file not found"
            errors[vid] = {"video_id": vid, "path": str(path) if path else None, "reason": why}
            continue
        job = _plan(vid, path, cache, ks, fcfg, rebuild)
        if job.new_idx == [] and not job.missing_audio:
            done[vid] = job
        else:
            todo.append(job)
    return cache, done, todo, errors


def _extract_here(
    todo: list[_Job],
    ext: Extractors,
    cache: FeatureCache,
    fcfg: FeatureConfig,
    done: dict[str, _Job],
    errors: dict[str, dict],
    bar: "_ProgressBar",
) -> int:
    """Decode (worker threads) and run the models (this thread) for `todo`; fills done/errors. Inception forwards."""
    batcher = _FrameBatcher(ext, fcfg.batch_frames)

    def finish(job: _Job) -> None:
        feats = torch.cat(job.outputs).numpy().astype(np.float16) if job.outputs else None
        job.frames, job.outputs = None, []
        bar.advance()
        if (feats is not None and not np.isfinite(feats).all()) or not all(
            np.isfinite(job.audio[k][0]).all() for k in job.missing_audio
        ):
            errors[job.video_id] = {
                "video_id": job.video_id,
                "path": str(job.path),
                "reason": "the extractors gave non-finite features (not cached)",
            }
            return
        if feats is not None:
            base = job.visual or VisualEntry(
                job.num_frames, np.zeros(0, np.int64), np.zeros((0, visual_mod.FEATURE_DIM), np.float16)
            )
            job.visual = base.merged(job.new_idx, feats)
            cache.save_visual(job.vkey, job.visual)
        for k in job.missing_audio:
            cache.save_audio(job.vkey, k, *job.audio[k])
        done[job.video_id] = job

    with ThreadPoolExecutor(max_workers=fcfg.workers, thread_name_prefix="avkd-decode") as pool:
        for job in _prefetch(pool, todo, fcfg, depth=2 * fcfg.workers):
            if job.error is not None:
                errors[job.video_id] = {"video_id": job.video_id, "path": str(job.path), "reason": job.error}
                bar.advance()
                continue
            if job.missing_audio:
                _audio_embeddings(ext, job, fcfg)
                job.wave = None
            if job.frames is None or not len(job.frames):
                finish(job)
            else:
                for finished in batcher.add(job):
                    finish(finished)
        for finished in batcher.flush():
            finish(finished)
    return batcher.forwards


# ---- sharded over a Ray cluster ----------------------------------------------------------------------


def shard_count(fcfg: FeatureConfig, videos: int) -> int:
    """How many Ray tasks extract `videos` videos: 1 (here, no Ray) unless features.shards >= 2, or
    features.shards == 0 and Ray is initialised (then one per cluster GPU, else per cluster CPU)."""
    if videos < 2 or fcfg.shards == 1:
        return 1
    if fcfg.shards >= 2:
        return min(fcfg.shards, videos)
    ray = sys.modules.get("ray")  # not imported: this process has no Ray cluster
    if ray is None or not ray.is_initialized():
        return 1
    resources = ray.cluster_resources()
    return max(1, min(int(resources.get("GPU", 0)) or int(resources.get("CPU", 1)), videos))


def _extract_sharded(
    fcfg: FeatureConfig,
    ks: list[float],
    todo: list[_Job],
    ext: Extractors,
    shards: int,
    cache: FeatureCache,
    done: dict[str, _Job],
    errors: dict[str, dict],
    bar: "_ProgressBar",
    nodes: list[str] | None = None,
) -> None:
    """Split `todo` over `shards` Ray tasks; each returns its features, which are saved into this
    process's cache and the tables assembled from it.

    No shared folder: the extractors (with BatchNorm re-estimated for random weights) travel to the
    tasks through Ray's object store, and the features come back as task results. Only the video
    files must be readable by the node a task runs on: `nodes` (Ray node ids, e.g. those whose
    pre-flight read the dataset, avkd.sweep.cluster) pins the tasks to them, round robin."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    started_ray = start_ray()  # features.shards asked for it: join RAY_ADDRESS's cluster, else start a local one
    try:
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        task = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1, max_retries=1)(_extract_shard)
        shard_cfg = dataclasses.replace(fcfg, shards=1)  # a shard extracts in its own process, never re-shards
        groups = [todo[i::shards] for i in range(shards)]
        where = f", on {len(nodes)} node(s) that read the dataset" if nodes else ""
        console.print(
            f"features: {len(todo)} videos in {shards} Ray shards ({'1 GPU' if gpus else '1 CPU'} each{where})"
        )
        ext_ref = ray.put(ext)
        pending = {}
        for i, group in enumerate(groups):
            options = (
                {"scheduling_strategy": NodeAffinitySchedulingStrategy(nodes[i % len(nodes)], soft=False)}
                if nodes
                else {}
            )
            pending[task.options(**options).remote(ext_ref, shard_cfg, group)] = group
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            group = pending.pop(ready[0])
            try:
                features, shard_errors = ray.get(ready[0])
                for e in shard_errors:
                    errors[e["video_id"]] = e
                features.save_into(cache)
            except StorageError:  # the driver's cache cannot take them (a full disk): no later shard could
                raise
            except Exception as err:  # a shard that crashed or was lost: its videos are reported, the rest go on
                reason = f"its extraction shard failed: {type(err).__name__}: {str(err).strip().splitlines()[-1][:200]}"
                for job in group:
                    errors[job.video_id] = {"video_id": job.video_id, "path": str(job.path), "reason": reason}
            for _ in group:
                bar.advance()
    finally:
        if started_ray:
            stop_ray()
    # Assemble from the cache: every video a shard finished is complete there (no decoding, no forward).
    for job in todo:
        if job.video_id in errors:
            continue
        again = _plan(job.video_id, job.path, cache, ks, fcfg, rebuild=False)
        if again.new_idx == [] and not again.missing_audio:
            done[job.video_id] = again
        else:
            errors[job.video_id] = {
                "video_id": job.video_id,
                "path": str(job.path),
                "reason": "not in the feature cache after its shard returned",
            }


@dataclass
class ShardFeatures:
    """What a shard computed, in the cache's own terms, to be saved by the driver (FeatureCache's
    save_visual / save_audio signatures: the shard's extraction code writes here instead of a cache)."""

    visual: dict[str, VisualEntry] = field(default_factory=dict)  # video key -> merged per-frame features
    audio: list[tuple] = field(default_factory=list)  # (video key, k, embedding, has_audio, frames)

    def save_visual(self, vkey: str, entry: VisualEntry) -> None:
        self.visual[vkey] = entry

    def save_audio(self, vkey: str, k: float, embedding: np.ndarray, has_audio: bool, frames: int) -> None:
        self.audio.append((vkey, k, embedding, has_audio, frames))

    def save_into(self, cache: FeatureCache) -> None:
        for vkey, entry in self.visual.items():
            cache.save_visual(vkey, entry)
        for row in self.audio:
            cache.save_audio(*row)


def _extract_shard(ext: Extractors, fcfg: FeatureConfig, todo: list[_Job]) -> tuple[ShardFeatures, list[dict]]:
    """One Ray task: extract `todo` (planned against the driver's cache) with the driver's extractors,
    on this node's device; returns the features and the errors. Writes nothing on this node."""
    device = pick_device(fcfg.device)
    ext = dataclasses.replace(ext, inception=ext.inception.to(device), audio=ext.audio.to(device), device=device)
    features, done, errors = ShardFeatures(), {}, {}
    with _ProgressBar(False, len(todo)) as bar:
        _extract_here(todo, ext, features, fcfg, done, errors, bar)
    return features, list(errors.values())


def _tables(ids, done, errors, ks, fcfg, weights: ExtractorWeights) -> dict[float, LatentTable]:
    tables = {}
    ok = [vid for vid in ids if vid in done and vid not in errors]
    for k in sorted(ks):
        vis, aud, no_audio = [], [], []
        for vid in ok:
            job = done[vid]
            idx = frame_indices(job.visual.num_frames, k, fcfg.max_frames)
            vis.append(job.visual.lookup(idx).astype(np.float32).mean(axis=0))
            emb, has_audio, _ = job.audio[k]
            aud.append(emb)
            if not has_audio:
                no_audio.append(vid)
        audio_dim = audio_mod.BACKBONES[weights.audio_model].embed_dim
        tables[k] = LatentTable(
            k=k,
            pool=fcfg.audio_pool,
            video_ids=list(ok),
            audio=np.stack(aud).astype(np.float32) if aud else np.zeros((0, audio_dim), np.float32),
            visual=np.stack(vis).astype(np.float32) if vis else np.zeros((0, visual_mod.FEATURE_DIM), np.float32),
            no_audio=no_audio,
            errors=[errors[v] for v in ids if v in errors],
            weights=weights.weights_info(),
        )
    return tables


class _ProgressBar:
    """rich progress bar with the extraction rate (cache hits are counted done but not in the rate)."""

    def __init__(self, enabled: bool, total: int, reporter=None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("features"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self.total, self.extracted, self.t0 = total, 0, time.time()
        self.reporter = reporter  # a sweep's progress view gets the counts instead
        if reporter is not None:
            reporter.set_total(total)

    def __enter__(self) -> "_ProgressBar":
        self.progress.__enter__()
        self.task = self.progress.add_task("features", total=self.total, rate="")
        return self

    def skip(self, n: int) -> None:
        self.progress.update(self.task, advance=n)
        if self.reporter is not None:
            self.reporter.skip(n)

    def advance(self) -> None:
        self.extracted += 1
        rate = self.extracted / max(1e-9, time.time() - self.t0)
        self.progress.update(self.task, advance=1, rate=f"{rate:.2f} videos/s")
        if self.reporter is not None:
            self.reporter.advance(1)

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)


def _print_summary(
    total: int, cached: int, decoded: int, errors: dict, no_audio: list, seconds: float, how: str
) -> None:
    console.print(
        f"features: {total} videos: {cached} complete in the cache, {decoded} decoded "
        f"({how}), {len(no_audio)} without audio (silence used), "
        f"{len(errors)} failed; {seconds:.1f} s"
    )
    for e in list(errors.values())[:10]:
        console.print(f"  [red]skipped[/] {e['video_id']} ({e['path']}): {e['reason']}")
    if len(errors) > 10:
        console.print(f"  ... and {len(errors) - 10} more (see the extraction errors artifact)")


# ---- CLI -----------------------------------------------------------------------------------------------


def cmd_features(args) -> int:
    """`python -m avkd features --sweep X.yaml [--rebuild]`."""
    cfg = load_sweep(args.sweep)
    dataset = load_dataset(cfg)
    tables = extract_variants(dataset, cfg.features, cfg.grid.ks, rebuild=args.rebuild)
    out = resolve(cfg.features.cache_dir) / "tables" / cfg.name
    for k, table in sorted(tables.items()):
        table.save(out / f"latents-k{k:g}.npz")
    t = tables[1.0]
    print(
        f"{len(t.video_ids)} videos x {len(tables)} variants (k = {', '.join(f'{k:g}' for k in sorted(tables))}); "
        f"weights {t.weights}; tables in {out}"
    )
    return 0
