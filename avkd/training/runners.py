"""The runners of one trial: a teacher (or blind baseline, or single-modality extra teacher) and a student.

    run_teacher   latent -> decoder, L_CE with teacher forcing (k = 1 features)
    run_student   the stages a method (avkd/methods) declares, on compressed-input latents, learning
                  from the teacher and the method's guides; also a guide trained as a student (the
                  multi_stage mentor: guide="mentor")

Every stage early-stops on the *validate* split and keeps its best epoch; the test split is decoded
once from the best model (evaluate.py). Nothing is ever selected on test.
"""

from __future__ import annotations

from pathlib import Path

import torch

from avkd import methods as registry
from avkd.clock import phase
from avkd.config import LossTerm, SweepConfig
from avkd.errors import ConfigError, DataError
from avkd.evaluation import metrics as M
from avkd.methods.base import Method
from avkd.models.captioner import Captioner, latent_stats, load_checkpoint
from avkd.models.decoder import CaptionDecoder
from avkd.training.data import (
    TrialInputs,
    TrialResult,
    make_data,
    raw_latents,
    references,
    same_videos,
    seed_everything,
    split_latents,
)
from avkd.training.evaluate import finish
from avkd.training.guides import Guides
from avkd.training.loop import Fit, LogFn, fit_stage
from avkd.training.losses import LOSSES
from avkd.training.stage import DECODER, Stage
from trackers import schema


def _device(cfg: SweepConfig) -> torch.device:
    from avkd.runtime import pick_device  # the one device choice (checks that CUDA is really there)

    return pick_device(cfg.features.device)


def _new_decoder(cfg: SweepConfig, latent_dim: int, vocab_size: int) -> CaptionDecoder:
    mc = cfg.model
    return CaptionDecoder(
        latent_dim, vocab_size, mc.embed_dim, mc.hidden, mc.layers, mc.dropout, exit_heads=mc.early_exit.enabled
    )


def run_teacher(
    cfg: SweepConfig,
    inputs: TrialInputs,
    seed: int,
    out_dir: Path,
    log: LogFn,
    blind: bool = False,
    scorer: M.CaptionScorer | None = None,
    evaluate_test: bool = True,
    modality: str = "av",
) -> TrialResult:
    """Train the teacher (k = 1 features) with L_CE, or with blind=True the zero-latent baseline.

    modality "audio" / "visual": a single-modality teacher (multi_teacher's extra teachers), the
    other modality's latent zeroed. evaluate_test=False (tuning trials) skips the test split.
    """
    rng = seed_everything(seed)
    device = _device(cfg)
    with phase("data"):
        raw = split_latents(inputs.features, "teacher features")
        mean, std = latent_stats(raw["train"])
        decoder = _new_decoder(cfg, raw["train"].shape[1], len(inputs.vocab))
        audio_dim = inputs.features["train"].audio.shape[1]
        model = Captioner(decoder, mean, std, blind=blind, modality=modality, audio_dim=audio_dim).to(device)
        data = make_data(model.standardise, raw, inputs, cfg.dataset.max_caption_len, device)
    with phase("validation"):
        val_scorer = M.ValidationScorer(references(inputs.features["validate"], inputs.references, "validate"))
    fit = Fit(model, data, cfg, inputs.vocab, val_scorer, rng, log)
    stage = Stage(
        "teacher", frozenset({DECODER}), (LossTerm("ce", 1.0),), "teacher loss", "captions", cfg.training.epochs
    )
    stop = fit_stage(fit, stage)
    info = {"kind": "blind" if blind else "teacher", "mode": "ce", "seed": seed, "modality": modality}
    return finish(model, data, inputs, cfg, stop, fit.history, out_dir, scorer, info, evaluate_test)


def _load_teacher(path: Path, inputs: TrialInputs, device: torch.device) -> Captioner:
    teacher, vocab, _ = load_checkpoint(path, str(device))
    if teacher.blind or teacher.mlp is not None or teacher.modality != "av":
        raise DataError(f"{path}: not a teacher checkpoint (blind baseline, student or single-modality)")
    if vocab.words != inputs.vocab.words:
        raise DataError(f"{path}: its vocabulary differs from this trial's ({len(vocab)} vs {len(inputs.vocab)} words)")
    return teacher


def _load_guide(path: Path, inputs: TrialInputs, device: torch.device, what: str) -> Captioner:
    model, vocab, _ = load_checkpoint(path, str(device))
    if vocab.words != inputs.vocab.words:
        raise DataError(
            f"{path}: the {what}'s vocabulary differs from this trial's ({len(vocab)} vs {len(inputs.vocab)} words)"
        )
    return model


def _reads(stages: list[Stage]) -> set[str]:
    return set().union(*(LOSSES[t.name].inputs for s in stages for t in s.terms if t.name in LOSSES))


def build_guides(
    method: Method,
    cfg: SweepConfig,
    stages: list[Stage],
    names: list[str],
    models: dict[str, Captioner],
    latents: dict[str, torch.Tensor],
    in_dim: int,
    student: bool,
) -> Guides | None:
    """The guides the stages' terms read: which logits, and the aggregation unit (None: they read none)."""
    reads = _reads(stages)
    logits_of = [n for n in names if f"{n}_logits" in reads]
    aggregation = None
    if reads & {"aggregate_logits", "aggregate_log_weights"}:
        aggregation = method.aggregation(cfg, names, in_dim) if student else None
        if aggregation is None:  # (avkd.methods.check rejects this when the sweep file is loaded)
            raise ConfigError(
                f"{stages[0].where}: the aggregate_* terms need an aggregation unit, which "
                f"{method.key!r} does not have here"
            )
        aggregation = aggregation.to(latents["teacher"].device)
    if not logits_of and aggregation is None:
        return None
    return Guides(models, latents, logits_of, aggregation)


def run_student(
    cfg: SweepConfig,
    inputs: TrialInputs,
    method: str,
    teacher_checkpoint: Path,
    seed: int,
    out_dir: Path,
    log: LogFn,
    scorer: M.CaptionScorer | None = None,
    evaluate_test: bool = True,
    guide_checkpoints: dict[str, Path] | None = None,
    guide: str | None = None,
) -> TrialResult:
    """Train a student on compressed-input latents by the stages of `method`, distilled from the teacher.

    The mapper (the method's; the paper's MLP by default) maps the student's standardised latent
    into the teacher's latent space (the teacher's standardised by the statistics in its checkpoint).
    The method's guides (extra teachers, a mentor) come from `guide_checkpoints` (name -> best.pt)
    and inputs.guide_features (name -> the variant each was trained on). guide: train the method's
    guide of that name instead (e.g. multi_stage's "mentor"), by its own stages.

    With distill.init_from_teacher (default; a method may override it: Method.starts_from_teacher) the
    student decoder starts from the teacher's best weights: the mapper output lives in the teacher's
    latent space, which that decoder already reads.
    evaluate_test=False (tuning trials) skips decoding and scoring the test split.
    """
    m = registry.get(method)
    what = f"student {method!r}" if guide is None else f"guide {guide!r} of {method!r}"
    if inputs.teacher_features is None:
        raise DataError(f"{what}: TrialInputs.teacher_features is missing (the teacher's latents)")
    guide_checkpoints = guide_checkpoints or {}
    rng = seed_everything(seed)
    device = _device(cfg)
    teacher = _load_teacher(Path(teacher_checkpoint), inputs, device)
    raw = split_latents(inputs.features, f"{what} features")
    teacher_raw = split_latents(inputs.teacher_features, "teacher features")
    same_videos(inputs.features, inputs.teacher_features, "teacher")

    teacher_dim = teacher.decoder.config["latent_dim"]
    decoder = _new_decoder(cfg, teacher_dim, len(inputs.vocab))
    if m.starts_from_teacher(cfg):
        for key in ("embed_dim", "hidden", "layers", "exit_heads"):
            if decoder.config[key] != teacher.decoder.config.get(key, False):
                raise ConfigError(
                    f"distill.init_from_teacher: model.{key} is {decoder.config[key]} but the teacher's "
                    f"is {teacher.decoder.config.get(key, False)} ({teacher_checkpoint})"
                )
        decoder.load_state_dict(teacher.decoder.state_dict())
    audio_dim = inputs.features["train"].audio.shape[1]
    mapper = m.mapper(cfg, audio_dim, raw["train"].shape[1] - audio_dim, teacher_dim)
    mean, std = latent_stats(raw["train"])
    model = Captioner(decoder, mean, std, mapper).to(device)
    with phase("data"):
        data = make_data(model.standardise, raw, inputs, cfg.dataset.max_caption_len, device)
        with torch.no_grad():
            data.teacher_train = teacher.standardise(torch.from_numpy(teacher_raw["train"]).to(device))
            data.teacher_validate = teacher.standardise(torch.from_numpy(teacher_raw["validate"]).to(device))
    with phase("validation"):
        val_scorer = M.ValidationScorer(references(inputs.features["validate"], inputs.references, "validate"))

    # Frozen guides (the teacher, and the method's extra teachers / mentor) and their aggregation unit.
    names = m.guides(cfg, guide)
    models, latents = {"teacher": teacher}, {"teacher": data.teacher_train}
    for name in names[1:]:
        if name not in guide_checkpoints or name not in inputs.guide_features:
            raise DataError(f"{what}: guide {name!r} is missing (its checkpoint and features are needed)")
        models[name] = _load_guide(Path(guide_checkpoints[name]), inputs, device, f"guide {name!r}")
        same_videos(inputs.features, inputs.guide_features[name], f"guide {name!r}")
        guide_raw = raw_latents(inputs.guide_features[name]["train"], f"guide {name!r} train")
        with torch.no_grad():
            latents[name] = models[name].decoder_input(torch.from_numpy(guide_raw).to(device))
    stages = m.stages(cfg, guide)
    guides = build_guides(m, cfg, stages, names, models, latents, data.train.shape[1], guide is None)
    shared = m.shared_encoder(cfg) if guide is None else None
    if shared is not None:  # the student's latent projections become a frozen copy of that guide's
        share_encoder(model, models[shared])

    fit = Fit(model, data, cfg, inputs.vocab, val_scorer, rng, log, guides)
    stop = None
    for number, stage in enumerate(stages, 1):  # declared stages, in order; the last one's best epoch is the result
        if len(stages) > 1:  # each stage's curves apart in the tracker (train/stage1/loss ...), never one jumping curve
            fit.log = _stage_log(log, number)
        stop = fit_stage(fit, stage)
    info = {
        "kind": "student" if guide is None else guide,
        "mode": method,
        "seed": seed,
        "teacher_checkpoint": str(teacher_checkpoint),
        "guides": {name: str(path) for name, path in guide_checkpoints.items()},
    }
    if guides is not None and guides.aggregation is not None:
        info["aggregate_weights"] = guides.aggregation.named_weights()
    return finish(model, data, inputs, cfg, stop, fit.history, out_dir, scorer, info, evaluate_test)


def _stage_log(log: LogFn, stage: int) -> LogFn:
    """The trial's log with train/<x> renamed train/stage<n>/<x> (schema.train_stage_metric)."""
    return lambda record, step: log({schema.train_stage_metric(stage, k): v for k, v in record.items()}, step)


def share_encoder(model: Captioner, guide: Captioner) -> None:
    """EMTM's shared encoder: the student's latent projections become a frozen copy of the guide's."""
    for name in ("latent_to_hidden", "latent_to_input"):
        getattr(model.decoder, name).load_state_dict(getattr(guide.decoder, name).state_dict())
    model.frozen = ("decoder.latent_to_hidden", "decoder.latent_to_input")
