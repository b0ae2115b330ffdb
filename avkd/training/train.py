"""Training of one trial: the teacher (or blind baseline) and the distilled students.

    teacher   latent -> decoder, L_CE with teacher forcing                         run_teacher
    rep       stage 1: MLP alone on L_rep; stage 2: MLP frozen, decoder on L_CE    run_student(mode="rep")
    rep+ce    MLP and decoder together on CE + w * L_rep                          run_student(mode="rep+ce")
    <other>   joint training on the terms of distill.losses[<other>]               run_student(mode=...)
    methods   fused_to_modal / multi_teacher / multi_stage: the same joint loop, plus the pieces of
              avkd/training/methods.py (per-modality branches, frozen guides, aggregation unit)
    guides    extra teachers (run_teacher(modality=...)) and the multi_stage mentor (run_mentor)

With model.early_exit the decoder has exit heads, trained in every stage through the `exit_ce` term,
and the test split is also decoded at each early-exit threshold.

Every stage early-stops on the *validate* split (CIDEr or BLEU-4 of greedy captions; L_rep for
stage 1 of `rep`) and keeps the best epoch. The test split is decoded once, with beam search, from
the best checkpoint, and scored with the full metric set. Nothing is ever selected on test.
"""
from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from avkd.config import LossTerm, SweepConfig
from avkd.data.vocab import BOS_ID, PAD_ID, Vocabulary
from avkd.errors import ConfigError, DataError
from avkd.evaluation import metrics as M
from avkd.models.branches import ModalBranches
from avkd.models.decoder import CaptionDecoder
from avkd.models.distill import DistillMLP
from avkd.training import methods
from avkd.training.decode import decode
from avkd.training.losses import Objective, build_objective
from trackers import schema

LogFn = Callable[[dict[str, float], int], None]


# ---- inputs and results ----------------------------------------------------------------------

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


# ---- the model of a trial ----------------------------------------------------------------------

class Captioner(nn.Module):
    """raw latent -> standardise (train statistics) -> [distillation MLP] -> decoder.

    The teacher and blind baseline have no MLP; the blind baseline replaces every latent with zeros,
    an audio-only (visual-only) teacher the visual (audio) part. `mlp` is a DistillMLP, or the
    per-modality ModalBranches of fused_to_modal. `frozen` names submodules no stage trains
    (multi_teacher's shared encoder).
    """

    def __init__(self, decoder: CaptionDecoder, mean: torch.Tensor, std: torch.Tensor,
                 mlp: DistillMLP | ModalBranches | None = None, blind: bool = False,
                 modality: str = "av", audio_dim: int | None = None):
        super().__init__()
        if modality not in ("av", "audio", "visual") or (modality != "av" and audio_dim is None):
            raise ValueError(f"modality {modality!r}: expected av, or audio / visual with audio_dim")
        self.decoder, self.mlp, self.blind = decoder, mlp, blind
        self.modality, self.audio_dim = modality, audio_dim
        self.frozen: tuple[str, ...] = ()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float())

    def standardise(self, raw: torch.Tensor) -> torch.Tensor:
        if self.blind:
            return torch.zeros_like(raw)
        x = (raw - self.mean) / self.std
        if self.modality == "audio":
            x = torch.cat([x[:, : self.audio_dim], torch.zeros_like(x[:, self.audio_dim :])], dim=1)
        elif self.modality == "visual":
            x = torch.cat([torch.zeros_like(x[:, : self.audio_dim]), x[:, self.audio_dim :]], dim=1)
        return x

    def decoder_input(self, raw: torch.Tensor) -> torch.Tensor:
        x = self.standardise(raw)
        return self.mlp(x) if self.mlp is not None else x

    @torch.no_grad()
    def caption(self, audio: np.ndarray, visual: np.ndarray, vocab: Vocabulary, beam_size: int = 3,
                max_len: int = 20, length_penalty: float = 0.0) -> list[str]:
        """Captions for (N, Da) audio and (N, Dv) visual latents (inference on any device)."""
        self.eval()
        raw = torch.from_numpy(np.concatenate([audio, visual], axis=1)).float().to(self.mean.device)
        ids = decode(self.decoder, self.decoder_input(raw), beam_size, max_len, length_penalty)
        return [" ".join(vocab.decode(t)) for t in ids]


def latent_stats(latents: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean/std of the train split (random-weight backbones give badly scaled features)."""
    mean = latents.mean(axis=0)
    std = latents.std(axis=0)
    std[std < 1e-6] = 1.0  # a constant dimension only gets centred (to 0), not blown up
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


def save_checkpoint(path: Path, model: Captioner, vocab: Vocabulary, info: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "format": "avkd-captioner-1",
        "decoder_config": model.decoder.config,
        "decoder_state": model.decoder.state_dict(),
        "mlp_kind": type(model.mlp).__name__ if model.mlp is not None else None,
        "mlp_config": model.mlp.config if model.mlp is not None else None,
        "mlp_state": model.mlp.state_dict() if model.mlp is not None else None,
        "mean": model.mean.cpu(), "std": model.std.cpu(), "blind": model.blind,
        "modality": model.modality, "audio_dim": model.audio_dim,
        "vocab": list(vocab.words),
        "info": info,
    }, path)


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[Captioner, Vocabulary, dict]:
    """A saved trial model -> (Captioner in eval mode, its vocabulary, info dict)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such checkpoint")
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # torch raises many types for a corrupt file
        raise DataError(f"{path}: unreadable checkpoint ({type(err).__name__}: {str(err)[:120]})") from None
    if not isinstance(ck, dict) or ck.get("format") != "avkd-captioner-1":
        raise DataError(f"{path}: not an avkd caption-model checkpoint")
    decoder = CaptionDecoder(**ck["decoder_config"])
    decoder.load_state_dict(ck["decoder_state"])
    mlp = None
    if ck["mlp_config"] is not None:
        kind = {"DistillMLP": DistillMLP, "ModalBranches": ModalBranches}[ck.get("mlp_kind") or "DistillMLP"]
        mlp = kind(**ck["mlp_config"])
        mlp.load_state_dict(ck["mlp_state"])
    model = Captioner(decoder, ck["mean"], ck["std"], mlp, ck["blind"], ck.get("modality", "av"),
                      ck.get("audio_dim")).to(device).eval()
    return model, Vocabulary(ck["vocab"]), ck["info"]


# ---- data ------------------------------------------------------------------------------------

def _raw_latents(split: Split, name: str) -> np.ndarray:
    n = len(split.video_ids)
    if split.audio.shape[0] != n or split.visual.shape[0] != n:
        raise DataError(f"{name} split: {n} video ids but audio {split.audio.shape} and visual {split.visual.shape}")
    x = np.concatenate([split.audio, split.visual], axis=1).astype(np.float32)
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        raise DataError(f"{name} split: video {split.video_ids[int(np.argmax(bad))]!r} has non-finite features")
    return x


def caption_pairs(split: Split, captions: dict[str, list[list[str]]], vocab: Vocabulary,
                  max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
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


def _references(split: Split, refs: dict[str, list[str]], name: str) -> dict[str, list[str]]:
    missing = [v for v in split.video_ids if not refs.get(v)]
    if missing:
        raise DataError(f"{name} split: video {missing[0]!r} has no reference captions "
                        f"({len(missing)} such video(s))")
    return {v: refs[v] for v in split.video_ids}


def _device(cfg: SweepConfig) -> torch.device:
    want = cfg.features.device
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(want)


def seed_everything(seed: int) -> np.random.Generator:
    """Seed torch, numpy and random; the returned generator orders the training data."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


# ---- one training step (shared by every stage; the tests check its gradient flow) --------------

def set_trainable(model: Captioner, decoder: bool, mlp: bool) -> list[nn.Parameter]:
    """Freeze/unfreeze the parts for a stage; frozen parts run in eval mode. Returns the trained params.

    Submodules named in model.frozen (e.g. a shared encoder) stay frozen in every stage.
    """
    parts = [(model.decoder, decoder)] + ([(model.mlp, mlp)] if model.mlp is not None else [])
    params = []
    for module, on in parts:
        module.train(on)
        for p in module.parameters():
            p.requires_grad_(on)
        if on:
            params += list(module.parameters())
    for name in model.frozen:
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(False)
    return [p for p in params if p.requires_grad]


def pair_outputs(decoder: CaptionDecoder, mlp: DistillMLP | ModalBranches | None, latents: torch.Tensor,
                 rows: torch.Tensor, seqs: torch.Tensor, teacher: torch.Tensor | None = None,
                 guides: "methods.Guides | None" = None) -> dict[str, torch.Tensor]:
    """A batch of (video row, caption) pairs -> the named tensors the loss terms read.

    latents: standardised latents of the split (rows index them); teacher: the standardised teacher
    latents (students only). The MLP, when given, runs once per distinct video of the batch.
    guides (methods): the frozen guides' tensors for the same videos and captions.
    """
    videos, inverse = torch.unique(rows, return_inverse=True)
    x = latents[videos]
    out: dict[str, torch.Tensor] = {}
    if mlp is not None:
        out.update(mlp.parts(x) if isinstance(mlp, ModalBranches) else {"student_mapped": mlp(x)})
        x = out["student_mapped"]
        if teacher is not None:
            out["teacher_latent"] = teacher[videos]
    seqs = seqs[:, : int((seqs != PAD_ID).sum(1).max())]  # trim padding to this batch's longest caption
    if len(decoder.exits):  # early exit: every exit head's logits too
        *exits, out["logits"] = decoder.forward_all(x[inverse], seqs[:, :-1])
        out["exit_logits"] = torch.stack(exits)
    else:
        out["logits"] = decoder(x[inverse], seqs[:, :-1])
    out["targets"] = seqs[:, 1:]
    if guides is not None:
        out.update(guides.batch_outputs(videos, inverse, seqs[:, :-1]))
    return out


def mapper_outputs(mlp: DistillMLP, latents: torch.Tensor, teacher: torch.Tensor,
                   rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Stage 1 of `rep`: the MLP alone, on a batch of videos."""
    return {"student_mapped": mlp(latents[rows]), "teacher_latent": teacher[rows]}


def _train_epoch(params: list[nn.Parameter], optimiser: torch.optim.Optimizer, batches: list[torch.Tensor],
                 compute: Callable[[torch.Tensor], dict[str, torch.Tensor]], objective: Objective,
                 grad_clip: float, epoch: int) -> dict[str, float]:
    """One pass over index batches: mean train/loss and train/<term> (weighted by batch size).

    A non-finite loss raises FloatingPointError naming the epoch (a diverged trial stops at once
    instead of training on NaN weights until early stopping).
    """
    sums: dict[str, float] = {}
    count = 0
    for i, batch in enumerate(batches, 1):
        total, parts = objective(compute(batch))
        if not torch.isfinite(total):
            raise FloatingPointError(f"training loss is {total.item()} at epoch {epoch} (batch {i} of {len(batches)})")
        optimiser.zero_grad(set_to_none=True)
        total.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(params, grad_clip)
        optimiser.step()
        n = len(batch)
        count += n
        for k, v in {"loss": float(total.detach()), **parts}.items():
            sums[k] = sums.get(k, 0.0) + v * n
    return {f"train/{k}": v / count for k, v in sums.items()}


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """A shuffled pass over n items in batches."""
    order = torch.from_numpy(rng.permutation(n))
    return list(torch.split(order, batch_size))


def _pair_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator, window: int = 16
                  ) -> list[torch.Tensor]:
    """A shuffled pass over caption pairs, batched by similar length to waste less time on padding.

    Shuffle, sort each run of `window` batches by caption length, cut into batches, shuffle the batches.
    """
    order = rng.permutation(len(lengths))
    batches = []
    span = batch_size * window
    for start in range(0, len(order), span):
        run = order[start : start + span]
        run = run[np.argsort(lengths[run], kind="stable")]
        batches += [torch.from_numpy(run[i : i + batch_size]) for i in range(0, len(run), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class _EarlyStop:
    """Keeps the best state (by a value to maximise) and says when patience has run out."""

    def __init__(self, patience: int):
        self.patience, self.best, self.best_epoch, self.state, self.bad = patience, -math.inf, 0, None, 0

    def update(self, value: float, epoch: int, model: nn.Module) -> bool:
        """Record an epoch's value; True when training should stop."""
        if value > self.best or self.state is None:
            self.best, self.best_epoch, self.bad = value, epoch, 0
            self.state = copy.deepcopy(model.state_dict())
        else:
            self.bad += 1
        return self.bad >= self.patience


# ---- stages ----------------------------------------------------------------------------------

@dataclass
class _Data:
    """Standardised tensors of one trial, on the device."""
    train: torch.Tensor
    validate: torch.Tensor
    test: torch.Tensor
    rows: torch.Tensor  # (P,) train video row of each caption pair
    seqs: torch.Tensor  # (P, T) <bos> caption <eos> <pad>..
    val_ids: list[str]
    teacher_train: torch.Tensor | None = None
    teacher_validate: torch.Tensor | None = None


def _validate_captions(model: Captioner, data: _Data, vocab: Vocabulary, scorer: M.ValidationScorer,
                       max_len: int) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        x = model.mlp(data.validate) if model.mlp is not None else data.validate
        ids = decode(model.decoder, x, beam_size=1, max_len=max_len)
    preds = {v: " ".join(vocab.decode(t)) for v, t in zip(data.val_ids, ids)}
    return {f"val/{k}": v for k, v in scorer.score(preds).items()}


def fit_decoder(model: Captioner, data: _Data, objective: Objective, train_mlp: bool, cfg: SweepConfig,
                vocab: Vocabulary, val_scorer: M.ValidationScorer, rng: np.random.Generator, log: LogFn,
                history: list[dict], first_epoch: int = 1, guides: "methods.Guides | None" = None) -> _EarlyStop:
    """Train the decoder (and the MLP when train_mlp) on caption pairs; early stop on the validate split.

    guides (methods, joint training only): frozen guide models whose outputs the loss terms read;
    their aggregation unit, if any, is trained along.
    """
    tc = cfg.training
    params = set_trainable(model, decoder=True, mlp=train_mlp)
    if guides is not None:
        params += list(guides.parameters())
    optimiser = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    latents, mlp, teacher = data.train, model.mlp, data.teacher_train
    if model.mlp is not None and not train_mlp:
        with torch.no_grad():  # frozen MLP (eval mode): map the split once instead of every batch
            latents, mlp, teacher = model.mlp(data.train), None, None
    lengths = (data.seqs != PAD_ID).sum(1).cpu().numpy()
    stop = _EarlyStop(tc.patience)
    for epoch in range(first_epoch, first_epoch + tc.epochs):
        set_trainable(model, decoder=True, mlp=train_mlp)
        started = time.perf_counter()
        record = _train_epoch(params, optimiser, _pair_batches(lengths, tc.batch_size, rng),
                              lambda i: pair_outputs(model.decoder, mlp, latents, data.rows[i], data.seqs[i], teacher,
                                                     guides), objective, tc.grad_clip, epoch)
        record["train/epoch_s"] = time.perf_counter() - started
        if guides is not None:
            record.update(guides.epoch_metrics())
        record.update(_validate_captions(model, data, vocab, val_scorer, cfg.decoding.max_len))
        if train_mlp and data.teacher_validate is not None:
            with torch.no_grad():
                record["val/rep_l1"] = float((model.mlp(data.validate) - data.teacher_validate).abs().mean())
        log(record, epoch)
        history.append({"epoch": epoch, **record})
        if stop.update(record[f"val/{tc.val_metric}"], epoch, model):
            break
    model.load_state_dict(stop.state)
    return stop


def fit_mapper(model: Captioner, data: _Data, objective: Objective, cfg: SweepConfig,
               rng: np.random.Generator, log: LogFn, history: list[dict]) -> _EarlyStop:
    """Stage 1 of `rep`: the MLP alone on L_rep (decoder frozen); early stop on validation L_rep."""
    params = set_trainable(model, decoder=False, mlp=True)
    optimiser = torch.optim.Adam(params, lr=cfg.training.lr, weight_decay=cfg.training.weight_decay)
    stop = _EarlyStop(cfg.training.patience)
    for epoch in range(1, cfg.distill.rep_epochs + 1):
        set_trainable(model, decoder=False, mlp=True)
        started = time.perf_counter()
        batches = _batches(len(data.train), cfg.training.batch_size, rng)
        record = _train_epoch(params, optimiser, batches,
                              lambda rows: mapper_outputs(model.mlp, data.train, data.teacher_train, rows),
                              objective, cfg.training.grad_clip, epoch)
        record["train/epoch_s"] = time.perf_counter() - started
        model.mlp.eval()
        with torch.no_grad():
            all_rows = torch.arange(len(data.validate))
            total, parts = objective(mapper_outputs(model.mlp, data.validate, data.teacher_validate, all_rows))
        record.update({"val/loss": float(total), **{f"val/{k}": v for k, v in parts.items()}})
        log(record, epoch)
        history.append({"epoch": epoch, **record})
        if stop.update(-float(total), epoch, model):  # lower L_rep is better
            break
    model.load_state_dict(stop.state)
    return stop


# ---- trials ----------------------------------------------------------------------------------

SPLITS = ("train", "validate", "test")


def _split_latents(features: dict[str, Split], what: str) -> dict[str, np.ndarray]:
    missing = [s for s in SPLITS if s not in features]
    if missing:
        raise DataError(f"{what}: no {missing[0]!r} split (have: {', '.join(features) or 'none'})")
    raw = {s: _raw_latents(features[s], f"{what} {s}") for s in SPLITS}
    empty = [s for s in SPLITS if len(raw[s]) == 0]
    if empty:
        raise DataError(f"{what}: the {empty[0]} split has no videos")
    return raw


def _make_data(model: Captioner, raw: dict[str, np.ndarray], inputs: TrialInputs, cfg: SweepConfig,
               device: torch.device) -> _Data:
    rows, seqs = caption_pairs(inputs.features["train"], inputs.captions, inputs.vocab, cfg.dataset.max_caption_len)
    with torch.no_grad():
        std = {s: model.standardise(torch.from_numpy(raw[s]).to(device)) for s in SPLITS}
    return _Data(std["train"], std["validate"], std["test"], rows.to(device), seqs.to(device),
                 list(inputs.features["validate"].video_ids))


def _finish(model: Captioner, data: _Data, inputs: TrialInputs, cfg: SweepConfig, stop: _EarlyStop,
            history: list[dict], out_dir: Path, scorer: M.CaptionScorer | None, info: dict,
            evaluate_test: bool) -> TrialResult:
    """Save the best model, decode the test split with beam search and score it with every metric.

    With early-exit heads, the test split is also decoded and scored at each threshold (ee/t<t>/...).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {**info, "best_epoch": stop.best_epoch, "val_metric": cfg.training.val_metric, "val_best": stop.best}
    checkpoint = out_dir / Path(schema.ARTIFACT_CHECKPOINT).name
    save_checkpoint(checkpoint, model, inputs.vocab, info)
    if not evaluate_test:  # tuning trials: the test split stays unseen
        return TrialResult({}, [], stop.best, stop.best_epoch, history, checkpoint, None, None, 0.0)

    model.eval()
    dc = cfg.decoding
    with torch.no_grad():
        x = model.mlp(data.test) if model.mlp is not None else data.test
        decode(model.decoder, x[:4], dc.beam_size, dc.max_len, dc.length_penalty)  # warm-up: time steady state
        started = time.perf_counter()
        ids = decode(model.decoder, x, dc.beam_size, dc.max_len, dc.length_penalty)
        decode_s = time.perf_counter() - started
    test = inputs.features["test"]
    preds = {v: " ".join(inputs.vocab.decode(t)) for v, t in zip(test.video_ids, ids)}

    scorer = scorer or M.default_scorer(cfg.evaluation.spice_jars)
    refs = _references(test, inputs.references, "test")
    metrics, per_video = scorer.score(refs, preds)
    score, averaged = M.final_score(metrics)
    metrics["score"] = score
    captions_path = out_dir / schema.ARTIFACT_CAPTIONS
    per_video_path = out_dir / schema.ARTIFACT_PER_VIDEO
    M.write_captions(captions_path, preds)
    M.write_per_video(per_video_path, preds, per_video)
    extra = {"test/decode_s_per_video": decode_s / len(test.video_ids)}
    if cfg.model.early_exit.enabled and len(model.decoder.exits):
        extra.update(methods.early_exit_metrics(model.decoder, x, test.video_ids, refs, inputs.vocab, cfg, scorer))
    return TrialResult(metrics, averaged, stop.best, stop.best_epoch, history, checkpoint, captions_path,
                       per_video_path, decode_s, extra)


def _new_decoder(cfg: SweepConfig, latent_dim: int, vocab_size: int) -> CaptionDecoder:
    mc = cfg.model
    return CaptionDecoder(latent_dim, vocab_size, mc.embed_dim, mc.hidden, mc.layers, mc.dropout,
                          exit_heads=mc.early_exit.enabled)


def _decoder_objective(terms: list[LossTerm], cfg: SweepConfig, where: str) -> Objective:
    """The terms of a decoder-training stage, plus the exit heads' loss when the decoder has them."""
    ee = cfg.model.early_exit
    return build_objective(terms + ([LossTerm("exit_ce", ee.weight)] if ee.enabled else []), where)


def run_teacher(cfg: SweepConfig, inputs: TrialInputs, seed: int, out_dir: Path, log: LogFn,
                blind: bool = False, scorer: M.CaptionScorer | None = None,
                evaluate_test: bool = True, modality: str = "av") -> TrialResult:
    """Train the teacher (k = 1 features) with L_CE, or with blind=True the zero-latent baseline.

    modality "audio" / "visual": a single-modality teacher (multi_teacher's extra teachers), the
    other modality's latent zeroed. evaluate_test=False (tuning trials) skips decoding and scoring
    the test split.
    """
    rng = seed_everything(seed)
    device = _device(cfg)
    raw = _split_latents(inputs.features, "teacher features")
    mean, std = latent_stats(raw["train"])
    decoder = _new_decoder(cfg, raw["train"].shape[1], len(inputs.vocab))
    audio_dim = inputs.features["train"].audio.shape[1]
    model = Captioner(decoder, mean, std, blind=blind, modality=modality, audio_dim=audio_dim).to(device)
    data = _make_data(model, raw, inputs, cfg, device)
    val_scorer = M.ValidationScorer(_references(inputs.features["validate"], inputs.references, "validate"))
    history: list[dict] = []
    stop = fit_decoder(model, data, _decoder_objective([LossTerm("ce", 1.0)], cfg, "teacher loss"), False, cfg,
                       inputs.vocab, val_scorer, rng, log, history)
    info = {"kind": "blind" if blind else "teacher", "mode": "ce", "seed": seed, "modality": modality}
    return _finish(model, data, inputs, cfg, stop, history, out_dir, scorer, info, evaluate_test)


def _load_guide(path: Path, inputs: TrialInputs, device: torch.device, what: str) -> Captioner:
    model, vocab, _ = load_checkpoint(path, str(device))
    if vocab.words != inputs.vocab.words:
        raise DataError(f"{path}: the {what}'s vocabulary differs from this trial's ({len(vocab)} vs "
                        f"{len(inputs.vocab)} words)")
    return model


def _same_videos(ours: dict[str, Split], theirs: dict[str, Split], what: str) -> None:
    for s in SPLITS:
        a, b = list(ours[s].video_ids), list(theirs[s].video_ids)
        if a != b:
            first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            raise DataError(f"{s} split: student and {what} features list different videos "
                            f"(position {first}: {len(a)} vs {len(b)} videos)")


def run_student(cfg: SweepConfig, inputs: TrialInputs, mode: str, teacher_checkpoint: Path, seed: int,
                out_dir: Path, log: LogFn, scorer: M.CaptionScorer | None = None,
                evaluate_test: bool = True, guide_checkpoints: dict[str, Path] | None = None) -> TrialResult:
    """Train a student on compressed-input latents, distilled from the teacher's latents.

    mode "rep": stage 1 fits the MLP alone on distill.losses["rep"] (L_rep) for up to rep_epochs,
    stage 2 freezes it and trains the decoder on its outputs with L_CE. Any other mode trains MLP
    and decoder jointly on the weighted terms of distill.losses[mode] ("rep+ce": L_CE + w * L_rep).
    L_rep compares MLP(student latent) with the teacher latent, each standardised with its own
    train statistics (the teacher's are those stored in its checkpoint).

    A mode named after a method (avkd/training/methods.py) adds that method's pieces; its extra
    guides (multi_teacher's extra teachers, multi_stage's mentor) come from `guide_checkpoints`
    (name -> best.pt) and inputs.guide_features (name -> the variant each was trained on).

    With distill.init_from_teacher (default) the student decoder starts from the teacher's best
    weights: the MLP output lives in the teacher's latent space, which that decoder already reads.
    evaluate_test=False (tuning trials) skips decoding and scoring the test split.
    """
    if mode not in cfg.distill.losses:
        raise ConfigError(f"distill.losses: no entry for student mode {mode!r} (known: {', '.join(cfg.distill.losses)})")
    return _train_student(cfg, inputs, mode, cfg.distill.losses[mode], f"distill.losses.{mode}", teacher_checkpoint,
                          seed, out_dir, log, scorer, evaluate_test, guide_checkpoints or {})


def run_mentor(cfg: SweepConfig, inputs: TrialInputs, teacher_checkpoint: Path, seed: int, out_dir: Path,
               log: LogFn, scorer: M.CaptionScorer | None = None, evaluate_test: bool = True) -> TrialResult:
    """multi_stage's mentor: a student at k = mentor_k trained on distill.methods.multi_stage.mentor_losses."""
    return _train_student(cfg, inputs, "mentor", cfg.distill.methods.multi_stage.mentor_losses,
                          "distill.methods.multi_stage.mentor_losses", teacher_checkpoint, seed, out_dir, log,
                          scorer, evaluate_test, {})


def _train_student(cfg: SweepConfig, inputs: TrialInputs, mode: str, terms: list[LossTerm], where: str,
                   teacher_checkpoint: Path, seed: int, out_dir: Path, log: LogFn,
                   scorer: M.CaptionScorer | None, evaluate_test: bool,
                   guide_checkpoints: dict[str, Path]) -> TrialResult:
    if inputs.teacher_features is None:
        raise DataError(f"student {mode!r}: TrialInputs.teacher_features is missing (the targets of L_rep)")
    rng = seed_everything(seed)
    device = _device(cfg)
    teacher, teacher_vocab, _ = load_checkpoint(teacher_checkpoint, str(device))
    if teacher.blind or teacher.mlp is not None or teacher.modality != "av":
        raise DataError(f"{teacher_checkpoint}: not a teacher checkpoint (blind baseline, student or single-modality)")
    if teacher_vocab.words != inputs.vocab.words:
        raise DataError(f"{teacher_checkpoint}: its vocabulary differs from this trial's ({len(teacher_vocab)} vs "
                        f"{len(inputs.vocab)} words)")
    raw = _split_latents(inputs.features, f"student {mode!r} features")
    teacher_raw = _split_latents(inputs.teacher_features, "teacher features")
    _same_videos(inputs.features, inputs.teacher_features, "teacher")

    mc, dc = cfg.model, cfg.distill
    teacher_dim = teacher.decoder.config["latent_dim"]
    decoder = _new_decoder(cfg, teacher_dim, len(inputs.vocab))
    if dc.init_from_teacher:
        for key in ("embed_dim", "hidden", "layers", "exit_heads"):
            if decoder.config[key] != teacher.decoder.config.get(key, False):
                raise ConfigError(f"distill.init_from_teacher: model.{key} is {decoder.config[key]} but the teacher's "
                                  f"is {teacher.decoder.config.get(key, False)} ({teacher_checkpoint})")
        decoder.load_state_dict(teacher.decoder.state_dict())
    audio_dim = inputs.features["train"].audio.shape[1]
    mlp = methods.make_mapper(mode, audio_dim, raw["train"].shape[1] - audio_dim, teacher_dim, dc.mlp)
    mean, std = latent_stats(raw["train"])
    model = Captioner(decoder, mean, std, mlp).to(device)
    data = _make_data(model, raw, inputs, cfg, device)
    with torch.no_grad():
        data.teacher_train = teacher.standardise(torch.from_numpy(teacher_raw["train"]).to(device))
        data.teacher_validate = teacher.standardise(torch.from_numpy(teacher_raw["validate"]).to(device))
    val_scorer = M.ValidationScorer(_references(inputs.features["validate"], inputs.references, "validate"))

    # Methods: frozen guides (the teacher, extra teachers, the mentor) and their aggregation unit.
    guide_models = {"teacher": teacher}
    guide_latents = {"teacher": data.teacher_train}
    for name in methods.guide_names(cfg, mode):
        if name not in guide_checkpoints or name not in inputs.guide_features:
            raise DataError(f"student {mode!r}: guide {name!r} is missing (its checkpoint and features are needed)")
        guide_models[name] = _load_guide(Path(guide_checkpoints[name]), inputs, device, f"guide {name!r}")
        _same_videos(inputs.features, inputs.guide_features[name], f"guide {name!r}")
        guide_raw = _raw_latents(inputs.guide_features[name]["train"], f"guide {name!r} train")
        with torch.no_grad():
            guide_latents[name] = guide_models[name].decoder_input(torch.from_numpy(guide_raw).to(device))
    guides = methods.build_guides(cfg, mode, terms, guide_models, guide_latents, where)
    shared = methods.shared_encoder(cfg, mode)
    if shared is not None:  # multi_teacher: the student's encoder is a frozen copy of one teacher's
        methods.share_encoder(model, guide_models[shared])

    history: list[dict] = []
    if mode == "rep":
        fit_mapper(model, data, build_objective(terms, where), cfg, rng, log, history)
        ce = _decoder_objective([LossTerm("ce", 1.0)], cfg, "rep stage 2 loss")
        stop = fit_decoder(model, data, ce, False, cfg, inputs.vocab, val_scorer, rng, log, history,
                           first_epoch=len(history) + 1)
    else:
        stop = fit_decoder(model, data, _decoder_objective(terms, cfg, where), True, cfg,
                           inputs.vocab, val_scorer, rng, log, history, guides=guides)
    info = {"kind": "mentor" if mode == "mentor" else "student", "mode": mode, "seed": seed,
            "teacher_checkpoint": str(teacher_checkpoint),
            "guides": {name: str(path) for name, path in guide_checkpoints.items()}}
    if guides is not None and guides.aggregation is not None:
        info["aggregate_weights"] = guides.aggregation.named_weights()
    return _finish(model, data, inputs, cfg, stop, history, out_dir, scorer, info, evaluate_test)
