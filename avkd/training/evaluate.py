"""After training: save the best model, decode the test split with beam search, score it.

Nothing is ever selected on test: the test split is decoded once, from the best checkpoint. With
early-exit heads the test split is also decoded at each threshold of model.early_exit (ee/t<t>/...).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

from avkd.clock import phase
from avkd.config import SweepConfig
from avkd.data.vocab import Vocabulary
from avkd.evaluation import meteor_service
from avkd.evaluation import metrics as M
from avkd.evaluation import score as S
from avkd.evaluation.attributes import attribute_accuracy
from avkd.models.captioner import Captioner, save_checkpoint
from avkd.models.decode import decode
from avkd.models.decoder import CaptionDecoder
from avkd.training.data import TrialData, TrialInputs, TrialResult, references
from avkd.training.loop import EarlyStop
from trackers import schema


def finish(
    model: Captioner,
    data: TrialData,
    inputs: TrialInputs,
    cfg: SweepConfig,
    stop: EarlyStop,
    history: list[dict],
    out_dir: Path,
    scorer: M.CaptionScorer | None,
    info: dict,
    evaluate_test: bool,
) -> TrialResult:
    """Save the best model; unless evaluate_test is False (tuning), decode and score the test split."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = {**info, "best_epoch": stop.best_epoch, "val_metric": cfg.training.val_metric, "val_best": stop.best}
    checkpoint = out_dir / Path(schema.ARTIFACT_CHECKPOINT).name
    save_checkpoint(checkpoint, model, inputs.vocab, info)
    if not evaluate_test:  # tuning trials: the test split stays unseen
        return TrialResult({}, [], stop.best, stop.best_epoch, history, checkpoint, None, None, 0.0)

    model.eval()
    dc = cfg.decoding
    with torch.no_grad(), phase("test_decode"):
        x = model.mlp(data.test) if model.mlp is not None else data.test
        decode(model.decoder, x[:4], dc.beam_size, dc.max_len, dc.length_penalty)  # warm-up: time steady state
        started = time.perf_counter()
        ids = decode(model.decoder, x, dc.beam_size, dc.max_len, dc.length_penalty)
        decode_s = time.perf_counter() - started
    test = inputs.features["test"]
    preds = {v: " ".join(inputs.vocab.decode(t)) for v, t in zip(test.video_ids, ids)}

    # METEOR on the sweep's one JVM when this trial runs in one (else this process's own)
    scorer = scorer or M.default_scorer(cfg.evaluation.spice_jars, meteor_via=meteor_service.meteor_score)
    refs = references(test, inputs.references, "test")
    with phase("test_metrics"):
        metrics, per_video = scorer.score(refs, preds)
    score, averaged = S.final_score(metrics)
    metrics["score"] = score
    metrics.update(attribute_metrics(preds, inputs.attributes, per_video))
    captions_path = out_dir / schema.ARTIFACT_CAPTIONS
    per_video_path = out_dir / schema.ARTIFACT_PER_VIDEO
    M.write_captions(captions_path, preds)
    M.write_per_video(per_video_path, preds, per_video)
    extra = {"test/decode_s_per_video": decode_s / len(test.video_ids)}
    if cfg.model.early_exit.enabled and len(model.decoder.exits):
        extra.update(early_exit_metrics(model.decoder, x, test.video_ids, refs, inputs.vocab, cfg, scorer))
    return TrialResult(
        metrics,
        averaged,
        stop.best,
        stop.best_epoch,
        history,
        checkpoint,
        captions_path,
        per_video_path,
        decode_s,
        extra,
    )


def attribute_metrics(
    preds: dict[str, str], truths: dict[str, dict] | None, per_video: dict[str, dict[str, float]]
) -> dict[str, float]:
    """Grounded attribute accuracy per group as attr/<group> (logged as test/attr/<group>), each video's
    added to `per_video` (so per_video_scores.csv carries it); nothing when the dataset stores no attributes."""
    result = attribute_accuracy(preds, truths)
    if result is None:
        return {}
    means, by_video = result
    for video, groups in by_video.items():
        per_video[video].update({f"{schema.ATTR_PREFIX}{g}": v for g, v in groups.items()})
    return {f"{schema.ATTR_PREFIX}{g}": v for g, v in means.items()}


def ee_key(threshold: float, name: str) -> str:
    """MLflow metric of an early-exit evaluation: ee/t0.9/score, ee/t0.9/decode_s_per_video, ..."""
    return f"ee/t{threshold:g}/{name}"


def early_exit_metrics(
    decoder: CaptionDecoder,
    latents: torch.Tensor,
    video_ids: list[str],
    refs: dict[str, list[str]],
    vocab: Vocabulary,
    cfg: SweepConfig,
    scorer: M.CaptionScorer,
) -> dict[str, float]:
    """Per confidence threshold: every test metric and SCORE, decoding seconds per video, where steps ended.

    exit_rate: share of decoding steps (beam rows) that ended before the last GRU layer;
    mean_layers: GRU layers run per step on average.
    """
    dc, out = cfg.decoding, {}
    for threshold in cfg.model.early_exit.thresholds:
        with torch.no_grad(), decoder.early_exit(threshold):
            started = time.perf_counter()
            ids = decode(decoder, latents, dc.beam_size, dc.max_len, dc.length_penalty)
            seconds = time.perf_counter() - started
            counts = list(decoder.exit_counts)
        preds = {v: " ".join(vocab.decode(t)) for v, t in zip(video_ids, ids)}
        metrics, _ = scorer.score(refs, preds)
        metrics["score"] = S.final_score(metrics)[0]
        out.update({ee_key(threshold, name): value for name, value in metrics.items()})
        steps = max(1, sum(counts))
        out[ee_key(threshold, "decode_s_per_video")] = seconds / len(video_ids)
        out[ee_key(threshold, "exit_rate")] = 1.0 - counts[-1] / steps
        out[ee_key(threshold, "mean_layers")] = sum((i + 1) * c for i, c in enumerate(counts)) / steps
    return out
