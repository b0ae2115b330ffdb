"""A trial's inputs and results, and turning them into tensors: latents per split, caption pairs.

The sweep's trial (avkd/sweep/trial.py) builds TrialInputs from the files the driver wrote; tests
build them from arrays. Everything here is checked with errors naming the split and the video.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from avkd.data.vocab import BOS_ID, PAD_ID, Vocabulary
from avkd.errors import DataError

SPLITS = ("train", "validate", "test")


@dataclass
class Split:
    """Latents of ONE feature variant for one split: time-mean audio and visual vectors per video."""

    video_ids: list[str]
    audio: np.ndarray  # (N, Da) float32
    visual: np.ndarray  # (N, Dv) float32


@dataclass
class TrialInputs:
    vocab: Vocabulary
    captions: dict[str, list[list[str]]]  # video_id -> tokenized reference captions (all splits)
    references: dict[str, list[str]]  # video_id -> raw reference caption strings (for metrics)
    features: dict[str, Split]  # "train" | "validate" | "test" -> this trial's variant
    teacher_features: dict[str, Split] | None = None  # students: the teacher variant, same video order
    # Methods: the variant each extra guide (e.g. "audio", "mentor") was trained on, same video order.
    guide_features: dict[str, dict[str, Split]] = field(default_factory=dict)
    # Each test video's true attributes (corpus v2 stores them; None on MSR-VTT): attribute accuracy.
    attributes: dict[str, dict] | None = None


@dataclass
class TrialResult:
    test_metrics: dict[str, float]  # bleu_1..bleu_4, meteor, rouge_l, cider, [spice], score
    score_metrics: list[str]  # which metrics SCORE averages
    val_best: float  # best validation value of training.val_metric (what tuning optimises)
    best_epoch: int
    history: list[dict]  # per epoch: {"epoch", "train/loss", "train/<term>", "val/cider", ...}
    checkpoint: Path  # out_dir/best.pt (logged as the checkpoint/best.pt artifact)
    captions_path: Path | None  # out_dir/test_captions.json; None when the test split was not evaluated
    per_video_path: Path | None  # out_dir/per_video_scores.csv; idem
    decode_s: float  # wall time of decoding the test split (0 when not evaluated)
    # Further metrics to log as they are: test/decode_s_per_video, early exit ee/t0.9/score, ...
    extra_metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class TrialData:
    """Standardised tensors of one trial, on the device."""

    train: torch.Tensor
    validate: torch.Tensor
    test: torch.Tensor
    rows: torch.Tensor  # (P,) train video row of each caption pair
    seqs: torch.Tensor  # (P, T) <bos> caption <eos> <pad>..
    val_ids: list[str]
    teacher_train: torch.Tensor | None = None  # students: the teacher's standardised latents
    teacher_validate: torch.Tensor | None = None


def raw_latents(split: Split, name: str) -> np.ndarray:
    n = len(split.video_ids)
    if split.audio.shape[0] != n or split.visual.shape[0] != n:
        raise DataError(f"{name} split: {n} video ids but audio {split.audio.shape} and visual {split.visual.shape}")
    x = np.concatenate([split.audio, split.visual], axis=1).astype(np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise DataError(f"{name} split: video {split.video_ids[int(np.argmax(bad))]!r} has non-finite features")
    return x


def split_latents(features: dict[str, Split], what: str) -> dict[str, np.ndarray]:
    missing = [s for s in SPLITS if s not in features]
    if missing:
        raise DataError(f"{what}: no {missing[0]!r} split (have: {', '.join(features) or 'none'})")
    raw = {s: raw_latents(features[s], f"{what} {s}") for s in SPLITS}
    empty = [s for s in SPLITS if len(raw[s]) == 0]
    if empty:
        raise DataError(f"{what}: the {empty[0]} split has no videos")
    return raw


def same_videos(ours: dict[str, Split], theirs: dict[str, Split], what: str) -> None:
    for s in SPLITS:
        a, b = list(ours[s].video_ids), list(theirs[s].video_ids)
        if a != b:
            first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            raise DataError(
                f"{s} split: student and {what} features list different videos "
                f"(position {first}: {len(a)} vs {len(b)} videos)"
            )


def caption_pairs(
    split: Split, captions: dict[str, list[list[str]]], vocab: Vocabulary, max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every reference caption of every video -> (video row per pair (P,), sequences (P, T+2)).

    A sequence is <bos> w1 .. wn <eos> <pad>..: inputs are seq[:, :-1], targets seq[:, 1:].
    """
    rows, seqs = [], []
    for row, vid in enumerate(split.video_ids):
        for tokens in captions.get(vid, []):
            rows.append(row)
            seqs.append([BOS_ID] + vocab.encode(tokens, max_len))
    if not seqs:
        raise DataError("train split: no (video, caption) pairs to train on")
    width = max(len(s) for s in seqs)
    padded = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    for i, s in enumerate(seqs):
        padded[i, : len(s)] = torch.tensor(s)
    return torch.tensor(rows), padded


def references(split: Split, refs: dict[str, list[str]], name: str) -> dict[str, list[str]]:
    missing = [v for v in split.video_ids if not refs.get(v)]
    if missing:
        raise DataError(f"{name} split: video {missing[0]!r} has no reference captions ({len(missing)} such video(s))")
    return {v: refs[v] for v in split.video_ids}


def make_data(
    standardise, raw: dict[str, np.ndarray], inputs: TrialInputs, max_caption_len: int, device: torch.device
) -> TrialData:
    """Standardise every split with the model's train statistics; build the train caption pairs."""
    rows, seqs = caption_pairs(inputs.features["train"], inputs.captions, inputs.vocab, max_caption_len)
    with torch.no_grad():
        std = {s: standardise(torch.from_numpy(raw[s]).to(device)) for s in SPLITS}
    return TrialData(
        std["train"],
        std["validate"],
        std["test"],
        rows.to(device),
        seqs.to(device),
        list(inputs.features["validate"].video_ids),
    )


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch, numpy and random, and ask torch for deterministic kernels; the returned generator
    orders the training data. The one place trials seed themselves.

    warn_only: an operation without a deterministic kernel warns instead of failing the trial.
    CUBLAS_WORKSPACE_CONFIG makes cuBLAS deterministic on CUDA >= 10.2 (read when cuBLAS starts).
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
