"""Table II: seconds per video of audio-visual feature extraction, teacher vs. each student k.

Per video and variant, in one process with `torch.set_num_threads(threads)` and no feature cache:
    decode   = open once, decode the variant's frames and the audio            (media.decode_clip)
    extract  = resize + Inception-v3 on the frames + mean, log-mel + SimPF + Cnn10/Cnn14 (features.audio_model)
    e2e      = decode + extract
    e2e CPU  = the CPU seconds (all threads of this process, time.process_time) spent on the same e2e:
               an extra column, not a replacement. Other processes on a shared machine inflate wall
               time a lot (their time slices count) and CPU time little, so the CPU ratio is the steadier
               student/teacher comparison there; on a quiet machine the two ratios agree.
Every variant pays per video the same fixed costs whatever its k: opening the file, decoding the whole
audio track (the student pools the log-mel, not the waveform), the log-mel front end, and a per-forward
cost in Inception (weights reordered for oneDNN on every call); frames decoded from short GOPs cost
more per frame for a sparse student than for the teacher's consecutive frames.
Videos are a seeded random sample of the *test* split, after `warmup` untimed videos. Each video
runs every variant back to back, in an order rotated per video, so drifting machine load (other
processes on a shared machine) spreads over all variants instead of biasing one.

`python -m avkd.features.bench --sweep X.yaml --throughput` measures the extraction pipeline's
visual throughput against the bare Inception forward at the same batch size (is decoding hidden?).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from avkd.config import SweepConfig, load_sweep
from avkd.data import media
from avkd.data.load import load_dataset
from avkd.errors import AvkdError, MediaError
from avkd.features import audio as audio_mod
from avkd.features import visual as visual_mod
from avkd.features.extract import Extractors, extract_variants, get_extractors
from avkd.features.sampling import frame_indices

console = Console()


def _sync(ext: Extractors) -> None:
    if ext.device.type == "cuda":
        torch.cuda.synchronize(ext.device)


@torch.inference_mode()
def time_variant(ext: Extractors, path: Path, k: float, fcfg) -> dict:
    """Decode and extract one video at rate k; seconds of each phase and the frames used."""
    c0, t0 = time.process_time(), time.perf_counter()
    clip = media.decode_clip(path, lambda n: frame_indices(n, k, fcfg.max_frames), fcfg.sample_rate)
    wave = clip.audio
    t1 = time.perf_counter()
    x = visual_mod.resize_frames(clip.frames, fcfg.image_size)
    visual = visual_mod.embed_frames(ext.inception, x, fcfg.batch_frames).mean(0)
    _sync(ext)
    t2 = time.perf_counter()
    inputs = audio_mod.pooled_inputs(
        ext.audio, torch.from_numpy(wave).to(ext.device), [k], fcfg.audio_pool, str(path), fcfg.simpf_renorm
    )
    audio = audio_mod.embed_inputs(ext.audio, inputs, 1, fcfg.audio_time_pool)[0]
    _sync(ext)
    t3, c3 = time.perf_counter(), time.process_time()
    assert visual.shape == (visual_mod.FEATURE_DIM,) and audio.shape == (
        audio_mod.BACKBONES[ext.audio_model].embed_dim,
    )
    return {
        "decode_s": t1 - t0,
        "extract_s": t3 - t1,
        "e2e_s": t3 - t0,
        "e2e_cpu_s": c3 - c0,
        "visual_s": t2 - t1,
        "audio_s": t3 - t2,
        "frames": len(clip.frames),
        "audio_frames": int(inputs[0].shape[-2]),
    }


def _test_sample(dataset, n: int, seed: int) -> list:
    videos = sorted(dataset.split("test"), key=lambda v: v.video_id)
    if not videos:
        raise AvkdError(f"{dataset.root}: the test split has no usable videos to time")
    return random.Random(seed).sample(videos, min(n, len(videos)))


def run_benchmark(cfg: SweepConfig, videos: int | None = None) -> dict:
    """Time the teacher and every k in cfg.grid.ks; see the module doc for what is measured."""
    timing, fcfg = cfg.grid.timing, cfg.features
    n = videos or timing.videos
    dataset = load_dataset(cfg)
    ext = get_extractors(dataset, fcfg)  # weights (and re-estimated BN) are ready before timing starts
    ks = sorted({1.0, *cfg.grid.ks}, reverse=True)
    sample = _test_sample(dataset, n + timing.warmup, timing.seed)
    # With too few test videos the warm-up reuses timed videos (the first run of a clip is not timed then).
    warm, timed = (
        (sample[: timing.warmup], sample[timing.warmup :]) if len(sample) > n else (sample[: timing.warmup], sample)
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(timing.threads)
    runs: dict[float, list[dict]] = {k: [] for k in ks}
    failed: list[dict] = []
    try:
        for v in warm:
            for k in ks:
                try:
                    time_variant(ext, v.path, k, fcfg)
                except MediaError:
                    break
        for i, v in enumerate(timed):
            order = ks[i % len(ks) :] + ks[: i % len(ks)]
            try:
                measured = {k: time_variant(ext, v.path, k, fcfg) for k in order}
            except MediaError as err:
                failed.append({"video_id": v.video_id, "path": str(v.path), "reason": err.reason})
                continue
            for k in ks:
                runs[k].append(measured[k])
    finally:
        torch.set_num_threads(threads)
    if not runs[1.0]:
        raise AvkdError(f"timing: none of the {len(timed)} sampled test videos could be decoded")
    return _summarise(runs, ext, fcfg, timing.threads, failed)


def _summarise(runs: dict[float, list[dict]], ext: Extractors, fcfg, threads: int, failed: list[dict]) -> dict:
    def stats(k: float, key: str) -> tuple[float, float]:
        xs = [r[key] for r in runs[k]]
        return statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0

    teacher_extract, teacher_e2e = stats(1.0, "extract_s")[0], stats(1.0, "e2e_s")[0]
    teacher_cpu = stats(1.0, "e2e_cpu_s")[0]
    variants = []
    for k in sorted(runs, reverse=True):
        (em, es), (tm, ts) = stats(k, "extract_s"), stats(k, "e2e_s")
        variants.append(
            {
                "k": k,
                "name": "teacher" if k >= 1.0 else f"student k={k:g}",
                "extract_mean_s": em,
                "extract_std_s": es,
                "e2e_mean_s": tm,
                "e2e_std_s": ts,
                "decode_mean_s": stats(k, "decode_s")[0],
                "visual_mean_s": stats(k, "visual_s")[0],
                "audio_mean_s": stats(k, "audio_s")[0],
                # medians resist the spikes of a shared machine; the means are what Table II reports
                "extract_median_s": statistics.median(r["extract_s"] for r in runs[k]),
                "e2e_median_s": statistics.median(r["e2e_s"] for r in runs[k]),
                "extract_reduction_pct": 100.0 * (1.0 - em / teacher_extract),
                "e2e_reduction_pct": 100.0 * (1.0 - tm / teacher_e2e),
                "e2e_cpu_mean_s": stats(k, "e2e_cpu_s")[0],
                "e2e_cpu_reduction_pct": 100.0 * (1.0 - stats(k, "e2e_cpu_s")[0] / teacher_cpu),
                "frames_mean": stats(k, "frames")[0],
                "audio_frames_mean": stats(k, "audio_frames")[0],
            }
        )
    return {
        "videos": len(runs[1.0]),
        "threads": threads,
        "device": str(ext.device),
        "weights": ext.weights_info(),
        "audio_model": ext.audio_model,
        "audio_time_pool": fcfg.audio_time_pool,
        "image_size": fcfg.image_size,
        "batch_frames": fcfg.batch_frames,
        "failed": failed,
        "variants": variants,
    }


def print_table(result: dict) -> None:
    audio = result.get("audio_model", "cnn14")  # results written before the choice existed were Cnn14
    table = Table(
        title=f"Table II: feature extraction time per video ({result['videos']} test videos, "
        f"{result['threads']} threads, {result['device']}, {result['image_size']} px, "
        f"Inception-v3 + {audio_mod.LABELS[audio]}, weights inception="
        f"{result['weights'].get('inception')} {audio}={result['weights'].get(audio)})"
    )
    cpu = all("e2e_cpu_mean_s" in v for v in result["variants"])  # results written before the column lack it
    columns = ("network", "frames", "audio frames", "extract (s)", "diff %", "end-to-end (s)", "diff %")
    for col in columns + (("e2e CPU (s)", "diff %") if cpu else ()):
        table.add_column(col, justify="left" if col == "network" else "right")
    for v in sorted(result["variants"], key=lambda v: v["k"]):
        extra = (f"{v['e2e_cpu_mean_s']:.3f}", f"{v['e2e_cpu_reduction_pct']:.1f}") if cpu else ()
        table.add_row(
            v["name"],
            f"{v['frames_mean']:.1f}",
            f"{v['audio_frames_mean']:.0f}",
            f"{v['extract_mean_s']:.3f} ± {v['extract_std_s']:.3f}",
            f"{v['extract_reduction_pct']:.1f}",
            f"{v['e2e_mean_s']:.3f} ± {v['e2e_std_s']:.3f}",
            f"{v['e2e_reduction_pct']:.1f}",
            *extra,
        )
    console.print(table)
    for f in result.get("failed", []):
        console.print(f"[red]not timed[/] {f['video_id']} ({f['path']}): {f['reason']}")


def cmd_bench(args) -> dict:
    """Table II timing: run, print, write --json. Returns the result (avkd.sweep.timing logs it to MLflow)."""
    cfg = load_sweep(args.sweep)
    result = run_benchmark(cfg, args.videos)
    print_table(result)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    return result


# ---- is decoding hidden behind the model? ---------------------------------------------------------


@torch.inference_mode()
def measure_throughput(cfg: SweepConfig, videos: int | None = None, repeats: int = 3) -> dict:
    """Frames/s of the extraction pipeline's visual part vs. the bare Inception forward, same batch size.

    pipeline: extract_variants (teacher only; audio already cached, visual entries deleted before each
    run) over `videos` train videos: decoding threads + cross-video batching + forwards.
    bare: the same frames, decoded and resized beforehand, through embed_frames in the same batches.
    The two alternate `repeats` times and the fastest of each counts (a shared machine adds noise)."""
    import tempfile
    from dataclasses import replace

    fcfg = cfg.features
    dataset = load_dataset(cfg)
    ids = [v.video_id for v in dataset.split("train")][: videos or 24]
    ext = get_extractors(dataset, fcfg)
    frames = []
    for vid in ids:
        path = dataset.videos[vid].path
        idx = frame_indices(media.probe(path).num_frames, 1.0, fcfg.max_frames)
        frames.append(visual_mod.resize_frames(media.read_frames(path, idx), fcfg.image_size))
    x = torch.cat(frames)
    pipeline, bare = [], []
    with tempfile.TemporaryDirectory(prefix="avkd-throughput-") as tmp:
        tmp_cfg = replace(fcfg, cache_dir=tmp)
        extract_variants(dataset, tmp_cfg, [], video_ids=ids, progress=False, extractors=ext)  # warm-up, caches audio
        for _ in range(repeats):
            for entry in (Path(tmp) / "visual").rglob("*.npz"):
                entry.unlink()  # visual misses, audio hits: the timed work is decoding + Inception
            t0 = time.perf_counter()
            extract_variants(dataset, tmp_cfg, [], video_ids=ids, progress=False, extractors=ext)
            pipeline.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            visual_mod.embed_frames(ext.inception, x, fcfg.batch_frames)
            _sync(ext)
            bare.append(time.perf_counter() - t0)
    p_fps, b_fps = len(x) / min(pipeline), len(x) / min(bare)
    return {
        "videos": len(ids),
        "frames": len(x),
        "batch_frames": fcfg.batch_frames,
        "workers": fcfg.workers,
        "image_size": fcfg.image_size,
        "threads": torch.get_num_threads(),
        "pipeline_fps": p_fps,
        "bare_forward_fps": b_fps,
        "ratio": p_fps / b_fps,
        "pipeline_s": pipeline,
        "bare_s": bare,
    }


# ---- what does the audio backbone cost? -------------------------------------------------------------


@torch.inference_mode()
def compare_audio_models(cfg: SweepConfig, videos: int | None = None, ks: tuple[float, ...] = (1.0, 0.2)) -> dict:
    """Seconds per clip of log-mel + SimPF + conv body for every audio model, on the same test clips.

    The audio is decoded once beforehand (not timed); the models get seeded random weights (same
    cost as pretrained); each clip runs every (model, k) back to back in an order rotated per clip,
    after one untimed warm-up clip, with torch.set_num_threads(grid.timing.threads)."""
    timing, fcfg = cfg.grid.timing, cfg.features
    dataset = load_dataset(cfg)
    sample = _test_sample(dataset, (videos or timing.videos) + 1, timing.seed)
    waves = []
    for v in sample:
        try:
            wave, has_audio = media.read_audio(v.path, fcfg.sample_rate)
        except MediaError:
            continue
        if has_audio and len(wave):
            waves.append(torch.from_numpy(wave))
    if len(waves) < 2:
        raise AvkdError("audio model timing: fewer than 2 sampled test videos have decodable audio")
    models = {name: audio_mod.new_audio_model(name) for name in audio_mod.BACKBONES}
    runs = [(name, k) for name in models for k in ks]
    seconds: dict[tuple[str, float], list[float]] = {run: [] for run in runs}
    threads = torch.get_num_threads()
    torch.set_num_threads(timing.threads)
    try:
        for i, wave in enumerate(waves):
            for name, k in runs[i % len(runs) :] + runs[: i % len(runs)]:
                t0 = time.perf_counter()
                inputs = audio_mod.pooled_inputs(models[name], wave, [k], fcfg.audio_pool, renorm=fcfg.simpf_renorm)
                audio_mod.embed_inputs(models[name], inputs, 1, fcfg.audio_time_pool)
                if i > 0:  # clip 0 warms up
                    seconds[(name, k)].append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    rows = [
        {
            "audio_model": name,
            "k": k,
            "mean_s": statistics.fmean(seconds[(name, k)]),
            "median_s": statistics.median(seconds[(name, k)]),
            "params_m": sum(p.numel() for p in models[name].parameters()) / 1e6,
        }
        for name, k in runs
    ]
    return {
        "clips": len(waves) - 1,
        "threads": timing.threads,
        "clip_s_mean": statistics.fmean(len(w) / fcfg.sample_rate for w in waves[1:]),
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m avkd.features.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sweep", required=True)
    p.add_argument("--videos", type=int, default=None)
    p.add_argument("--throughput", action="store_true", help="pipeline vs bare-forward visual throughput")
    p.add_argument("--audio-models", action="store_true", help="seconds per clip of each audio model (Cnn10, Cnn14)")
    p.add_argument("--json", default=None)
    p.add_argument("--no-mlflow", action="store_true")
    args = p.parse_args(argv)
    try:
        if args.audio_models:
            r = compare_audio_models(load_sweep(args.sweep), args.videos)
            for row in r["rows"]:
                console.print(
                    f"{audio_mod.LABELS[row['audio_model']]} ({row['params_m']:.1f} M params) k={row['k']:g}: "
                    f"{1000 * row['mean_s']:.1f} ms per clip (median {1000 * row['median_s']:.1f})"
                )
            console.print(f"{r['clips']} test clips of {r['clip_s_mean']:.1f} s on average, {r['threads']} threads")
            if args.json:
                Path(args.json).write_text(json.dumps(r, indent=2))
            return 0
        if not args.throughput:
            cmd_bench(args)  # (no MLflow here: `python -m avkd bench` logs the timing run)
            return 0
        cfg = load_sweep(args.sweep)
        torch.set_num_threads(cfg.grid.timing.threads)
        r = measure_throughput(cfg, args.videos)
        console.print(
            f"visual throughput over {r['frames']} frames of {r['videos']} videos, batch {r['batch_frames']}, "
            f"{r['image_size']} px, {r['workers']} decoding workers, {r['threads']} threads: pipeline "
            f"{r['pipeline_fps']:.1f} frames/s vs bare forward {r['bare_forward_fps']:.1f} frames/s "
            f"= {100 * r['ratio']:.1f} %"
        )
        if args.json:
            Path(args.json).write_text(json.dumps(r, indent=2))
        return 0
    except AvkdError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
