"""One training loop that fits a declared Stage (stage.py), for any method.

    decoder stages   caption pairs, batched by length; the mapper trains along or runs frozen;
                     early stop on the validation captions' training.val_metric
    mapper stages    the mapper alone on video batches; early stop on the stage's validation loss

Every stage keeps its best epoch's weights. With model.early_exit the decoder's exit heads are
trained in every decoder stage through the `exit_ce` term.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from avkd.clock import phase
from avkd.config import LossTerm, SweepConfig
from avkd.data.vocab import PAD_ID, Vocabulary
from avkd.evaluation import metrics as M
from avkd.models.branches import ModalBranches
from avkd.models.captioner import Captioner
from avkd.models.decode import decode
from avkd.models.decoder import CaptionDecoder
from avkd.models.distill import DistillMLP
from avkd.training.data import TrialData
from avkd.training.guides import Guides
from avkd.training.losses import Objective, build_objective
from avkd.training.stage import DECODER, MAPPER, Stage
from trackers import schema

LogFn = Callable[[dict[str, float], int], None]


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


def pair_outputs(
    decoder: CaptionDecoder,
    mlp: DistillMLP | ModalBranches | None,
    latents: torch.Tensor,
    rows: torch.Tensor,
    seqs: torch.Tensor,
    teacher: torch.Tensor | None = None,
    guides: Guides | None = None,
    temperature: float | None = None,
) -> dict[str, torch.Tensor]:
    """A batch of (video row, caption) pairs -> the named tensors the loss terms read.

    latents: standardised latents of the split (rows index them); teacher: the standardised teacher
    latents (students only). The mapper, when given, runs once per distinct video of the batch.
    guides: the frozen guides' tensors for the same videos and captions.
    """
    videos, inverse = torch.unique(rows, return_inverse=True)
    x = student_input = latents[videos]
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
        out.update(guides.batch_outputs(videos, inverse, seqs[:, :-1], student_input))
    if temperature is not None:
        out["temperature"] = torch.tensor(temperature, device=seqs.device)
    return out


def mapper_outputs(
    mlp: DistillMLP | ModalBranches,
    latents: torch.Tensor,
    teacher: torch.Tensor,
    rows: torch.Tensor,
    temperature: float | None = None,
) -> dict[str, torch.Tensor]:
    """A mapper-only stage: the mapper alone, on a batch of videos."""
    x = latents[rows]
    out = dict(mlp.parts(x)) if isinstance(mlp, ModalBranches) else {"student_mapped": mlp(x)}
    out["teacher_latent"] = teacher[rows]
    if temperature is not None:
        out["temperature"] = torch.tensor(temperature, device=x.device)
    return out


def train_epoch(
    params: list[nn.Parameter],
    optimiser: torch.optim.Optimizer,
    batches: list[torch.Tensor],
    compute: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    objective: Objective,
    grad_clip: float,
    epoch: int,
) -> dict[str, float]:
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


def video_batches(n: int, batch_size: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """A shuffled pass over n items in batches."""
    order = torch.from_numpy(rng.permutation(n))
    return list(torch.split(order, batch_size))


def epoch_pairs(rows: np.ndarray, per_video: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """The caption pairs of one epoch: None (every pair), or a fresh random `per_video` of each video's pairs.

    rows: the video row of each pair. A video with fewer captions contributes all of them.
    """
    if per_video is None:
        return None  # (draws nothing from rng: training with every caption is as before the option)
    shuffled = rng.permutation(len(rows))
    by_video = shuffled[np.argsort(rows[shuffled], kind="stable")]  # each video's pairs, in random order
    grouped = rows[by_video]
    rank = np.arange(len(rows)) - np.searchsorted(grouped, grouped, side="left")  # place within its video
    return np.sort(by_video[rank < per_video])


def pair_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator, window: int = 16, pairs: np.ndarray | None = None
) -> list[torch.Tensor]:
    """A shuffled pass over caption pairs (`pairs`, default all), batched by similar length to waste less
    time on padding.

    Shuffle, sort each run of `window` batches by caption length, cut into batches, shuffle the batches.
    """
    order = rng.permutation(len(lengths)) if pairs is None else pairs[rng.permutation(len(pairs))]
    batches = []
    span = batch_size * window
    for start in range(0, len(order), span):
        run = order[start : start + span]
        run = run[np.argsort(lengths[run], kind="stable")]
        batches += [torch.from_numpy(run[i : i + batch_size]) for i in range(0, len(run), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


class EarlyStop:
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


def validate_captions(
    model: Captioner, data: TrialData, vocab: Vocabulary, scorer: M.ValidationScorer, max_len: int
) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        x = model.mlp(data.validate) if model.mlp is not None else data.validate
        ids = decode(model.decoder, x, beam_size=1, max_len=max_len)
    preds = {v: " ".join(vocab.decode(t)) for v, t in zip(data.val_ids, ids)}
    return {f"val/{k}": v for k, v in scorer.score(preds).items()}


def stage_objective(stage: Stage, cfg: SweepConfig) -> Objective:
    """The stage's terms, plus the exit heads' loss when the decoder trains and has them."""
    ee = cfg.model.early_exit
    extra = [LossTerm("exit_ce", ee.weight)] if ee.enabled and DECODER in stage.trains else []
    return build_objective(list(stage.terms) + extra, stage.where)


@dataclass
class Fit:
    """What every stage of one trial trains on and reports to; `history` collects every epoch's record."""

    model: Captioner
    data: TrialData
    cfg: SweepConfig
    vocab: Vocabulary
    val_scorer: M.ValidationScorer
    rng: np.random.Generator
    log: LogFn
    guides: Guides | None = None  # frozen guides the decoder stages' terms read (and their aggregation unit)
    history: list[dict] = field(default_factory=list)


def fit_stage(fit: Fit, stage: Stage) -> EarlyStop:
    """Fit one declared stage; epochs are numbered on from the previous stages' (fit.history)."""
    objective = stage_objective(stage, fit.cfg)
    if DECODER in stage.trains:
        return fit_decoder(fit, objective, MAPPER in stage.trains, stage.epochs, stage.temperature)
    return fit_mapper(fit, objective, stage.epochs, stage.temperature)


def fit_decoder(
    fit: Fit, objective: Objective, train_mlp: bool, epochs: int, temperature: float | None = None
) -> EarlyStop:
    """Train the decoder (and the mapper when train_mlp) on caption pairs; early stop on the validate split.

    fit.guides: frozen guide models whose outputs the loss terms read; their aggregation unit, if
    any, is trained along (decoder stages only: a mapper-only stage has no captions to read).
    """
    model, data, guides, tc = fit.model, fit.data, fit.guides, fit.cfg.training
    params = set_trainable(model, decoder=True, mlp=train_mlp)
    if guides is not None:
        params += list(guides.parameters())
    optimiser = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    latents, mlp, teacher = data.train, model.mlp, data.teacher_train
    if model.mlp is not None and not train_mlp:
        with torch.no_grad():  # frozen mapper (eval mode): map the split once instead of every batch
            latents, mlp, teacher = model.mlp(data.train), None, None
    lengths = (data.seqs != PAD_ID).sum(1).cpu().numpy()
    rows = data.rows.cpu().numpy()
    stop = EarlyStop(tc.patience)
    first = len(fit.history) + 1
    for epoch in range(first, first + epochs):
        set_trainable(model, decoder=True, mlp=train_mlp)
        started = time.perf_counter()
        with phase("epochs"):
            pairs = epoch_pairs(rows, tc.captions_per_video, fit.rng)
            record = train_epoch(
                params,
                optimiser,
                pair_batches(lengths, tc.batch_size, fit.rng, pairs=pairs),
                lambda i: pair_outputs(
                    model.decoder, mlp, latents, data.rows[i], data.seqs[i], teacher, guides, temperature
                ),
                objective,
                tc.grad_clip,
                epoch,
            )
        record[schema.EPOCH_S] = time.perf_counter() - started
        if guides is not None:
            record.update(guides.epoch_metrics())
        with phase("validation"):
            record.update(validate_captions(model, data, fit.vocab, fit.val_scorer, fit.cfg.decoding.max_len))
        if train_mlp and data.teacher_validate is not None:
            with torch.no_grad():
                record["val/rep_l1"] = float((model.mlp(data.validate) - data.teacher_validate).abs().mean())
        fit.log(record, epoch)
        fit.history.append({"epoch": epoch, **record})
        if stop.update(record[f"val/{tc.val_metric}"], epoch, model):
            break
    model.load_state_dict(stop.state)
    return stop


def fit_mapper(fit: Fit, objective: Objective, epochs: int, temperature: float | None = None) -> EarlyStop:
    """The mapper alone on its terms (decoder frozen); early stop on their validation value."""
    model, data, tc = fit.model, fit.data, fit.cfg.training
    params = set_trainable(model, decoder=False, mlp=True)
    optimiser = torch.optim.Adam(params, lr=tc.lr, weight_decay=tc.weight_decay)
    stop = EarlyStop(tc.patience)
    first = len(fit.history) + 1
    for epoch in range(first, first + epochs):
        set_trainable(model, decoder=False, mlp=True)
        started = time.perf_counter()
        batches = video_batches(len(data.train), tc.batch_size, fit.rng)
        with phase("epochs"):
            record = train_epoch(
                params,
                optimiser,
                batches,
                lambda rows: mapper_outputs(model.mlp, data.train, data.teacher_train, rows, temperature),
                objective,
                tc.grad_clip,
                epoch,
            )
        record[schema.EPOCH_S] = time.perf_counter() - started
        model.mlp.eval()
        with torch.no_grad():
            all_rows = torch.arange(len(data.validate))
            total, parts = objective(
                mapper_outputs(model.mlp, data.validate, data.teacher_validate, all_rows, temperature)
            )
        record.update({"val/loss": float(total), **{f"val/{k}": v for k, v in parts.items()}})
        fit.log(record, epoch)
        fit.history.append({"epoch": epoch, **record})
        if stop.update(-float(total), epoch, model):  # lower loss is better
            break
    model.load_state_dict(stop.state)
    return stop
