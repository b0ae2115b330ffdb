"""One trial (teacher, blind baseline, guide, student or tuning trial), as run inside a Ray worker.

The driver hands every trial the same read-only SweepContext plus the trial's own TrialSpec, both as
plain dicts (avkd/sweep/plan.py). Nothing is read from the driver's disk, so a trial runs on any node
of a cluster: its latent vectors and captions come from Ray's object store (avkd/sweep/inputs.py), the
checkpoints of its teacher and guides from the tracking store (avkd/sweep/checkpoints.py), and it
writes only into its own scratch folder in the node's temp dir (removed when it ends). It trains,
evaluates, and logs one nested MLflow run. The MLflow run is always closed in `finally` (inside
RunLogger), so one failed trial cannot break the sweep.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from avkd.clock import PhaseClock, phase
from avkd.config import SweepConfig, parse_sweep
from avkd.sweep.plan import BLIND, GUIDE, TUNE, SweepContext, TrialSpec
from trackers import schema


def apply_overrides(cfg: SweepConfig, overrides: dict[str, Any]) -> SweepConfig:
    """Tuning overrides (Optuna's suggestions) -> a re-validated config."""
    if not overrides:
        return cfg
    d = cfg.to_dict()
    if "mlp_h1" in overrides:
        d["distill"]["mlp"]["hidden"] = [int(overrides["mlp_h1"]), int(overrides["mlp_h2"])]
    if "mlp_dropout" in overrides:
        d["distill"]["mlp"]["dropout"] = float(overrides["mlp_dropout"])
    if "decoder_dropout" in overrides:
        d["model"]["dropout"] = float(overrides["decoder_dropout"])
    if "rep_weight" in overrides:
        for terms in d["distill"]["losses"].values():
            for term in terms:
                if term["name"].startswith("rep"):
                    term["weight"] = float(overrides["rep_weight"])
    return parse_sweep(d, "tuning overrides")


def trial_params(spec: TrialSpec, overrides: dict[str, Any], cfg: SweepConfig, sweep_cfg: SweepConfig) -> dict:
    """What a trial logs as MLflow params: what makes it differ from the sweep's other trials (role, k,
    method, seed, tuning overrides, and every config value that differs from the sweep's), so that the
    UI's compare view and parallel coordinates work on them. The full config is the config.yaml artifact."""
    params = {
        schema.PARAM_ROLE: spec.role,
        schema.PARAM_K: f"{spec.k:g}",
        schema.PARAM_METHOD: spec.method,
        schema.PARAM_SEED: spec.seed,
    }
    if spec.guide is not None:
        params[schema.PARAM_GUIDE] = spec.guide
    if spec.tuned or spec.role == TUNE:
        params[schema.PARAM_TUNED] = str(spec.tuned).lower()
    params.update({f"{schema.TUNE_PARAM_PREFIX}{k}": v for k, v in overrides.items()})
    sweep_values = sweep_cfg.flat()
    params.update({k: v for k, v in cfg.flat().items() if sweep_values.get(k) != v})
    return params


def load_trial_inputs(ctx: SweepContext, spec: TrialSpec):
    """TrialInputs of this trial from the sweep's inputs in Ray's object store (avkd/sweep/inputs.py)."""
    from avkd.sweep.inputs import fetch, trial_inputs

    # A trial with a teacher is distilled from it (k = 1 features); one without is trained on captions alone.
    return trial_inputs(
        fetch(ctx.inputs),
        spec.k,
        blind=BLIND in (spec.role, spec.tunes),
        with_teacher=spec.teacher is not None,
        guide_ks={g.name: g.k for g in spec.guides},
    )


def _fault_armed(spec: TrialSpec, kind: str) -> bool:
    """Fault injection for the reliability suite: AVKD_FAULT="<kind>:<trial name>[:<attempts>]".

    Kinds: `crash` (the trial raises once its MLflow run is open) and `nan` (its training diverges:
    the loss becomes NaN, which train.py's finite-loss guard turns into a FloatingPointError).
    Only active when the variable is set; `attempts` limits how many attempts fail (retry tests),
    counted with marker files in AVKD_FAULT_DIR.
    """
    fault = os.environ.get("AVKD_FAULT", "")
    if not fault:
        return False
    fault_kind, _, rest = fault.partition(":")
    name, _, attempts = rest.partition(":")
    if name != spec.name or fault_kind != kind:
        return False
    if attempts:
        marks = Path(os.environ.get("AVKD_FAULT_DIR", "/tmp")) / f"avkd-fault-{name}"
        n = int(marks.read_text()) if marks.exists() else 0
        if n >= int(attempts):
            return False
        marks.write_text(str(n + 1))
    return True


def _inject_fault(spec: TrialSpec, where: str) -> None:
    if _fault_armed(spec, where):
        raise RuntimeError(f"injected fault ({os.environ['AVKD_FAULT']})")


def run_trial(config: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
    """The Ray Tune function trainable. `config["trial"]` is the spec (a dict: the Ray boundary);
    tuning adds override keys. `ctx` is the SweepContext as a dict."""
    import torch

    from trackers.mlflow_tracker import RunLogger

    spec = TrialSpec.from_dict(config["trial"])
    ctx = SweepContext.from_dict(ctx)
    # Tuning: Optuna's suggestions arrive as top-level keys; a re-run of the best carries them in the spec.
    overrides = {**spec.overrides, **{k: v for k, v in config.items() if k != "trial"}}
    sweep_cfg = parse_sweep(ctx.config, ctx.sweep_file)
    cfg = apply_overrides(sweep_cfg, overrides)
    torch.set_num_threads(max(1, int(ctx.cpus_per_trial)))

    scratch = tempfile.TemporaryDirectory(prefix=f"avkd-trial-{spec.config_hash[:16]}-")  # on this node
    out_dir = Path(scratch.name)
    tags = {
        schema.ROLE: spec.role,
        schema.K: f"{spec.k:g}",
        schema.LOSS: spec.method,
        schema.SEED: str(spec.seed),
        schema.CONFIG_HASH: spec.config_hash,
        schema.SWEEP: ctx.sweep_name,
        schema.WEIGHTS: ctx.weights,
        schema.WEIGHTS_DETAIL: ctx.weights_detail,
        schema.DATASET_FINGERPRINT: ctx.dataset_fingerprint,
        schema.GIT_COMMIT: ctx.git_commit,
        schema.RUN_NAME: spec.name,
    }
    if spec.tuned:
        tags[schema.TUNED] = "true"
    if spec.role == GUIDE:
        tags[schema.GUIDE] = spec.guide
    reporting_to_tune = spec.role == TUNE
    started = time.time()
    clock = PhaseClock()  # the trial's breakdown: data, epochs, validation, test decoding and metrics, JVM starts
    with (
        scratch,
        clock,
        RunLogger(
            ctx.tracking_uri,
            ctx.experiment_id,
            spec.name,
            tags,
            params=trial_params(spec, overrides, cfg, sweep_cfg),
            parent_run_id=ctx.parent_run_id,
            system_metrics=True,
        ) as run,
    ):
        resolved = {"trial": spec.to_dict(), "overrides": overrides, "config": cfg.to_dict()}
        run.log_text(yaml.safe_dump(resolved, sort_keys=False), schema.ARTIFACT_CONFIG)
        errors = ctx.extraction_errors.get(f"{spec.k:g}", [])
        run.log_dict({"errors": errors}, schema.ARTIFACT_EXTRACTION_ERRORS)
        _inject_fault(spec, "crash")
        if _fault_armed(spec, "nan"):  # an infinite step size makes Adam's first update inf/NaN weights
            cfg.training.lr = math.inf

        val_key = f"{schema.VAL_PREFIX}{cfg.training.val_metric}"
        best_so_far = [float("-inf")]

        def log(metrics: dict[str, float], step: int) -> None:
            nan = sorted(k for k, v in metrics.items() if isinstance(v, float) and math.isnan(v))
            if nan:
                raise FloatingPointError(f"{spec.name}: NaN in {', '.join(nan)} at epoch {step}")
            run.log_metrics(metrics, step=step)
            if reporting_to_tune and val_key in metrics:
                # Per-epoch results let ASHA stop bad tuning trials early; Optuna reads val_best.
                from ray import tune

                best_so_far[0] = max(best_so_far[0], metrics[val_key])
                tune.report({"val_best": best_so_far[0], "epoch": step})

        with phase("data"):
            inputs = load_trial_inputs(ctx, spec)
        result = _train(cfg, ctx, spec, inputs, out_dir, log)
        final = {f"val/best_{cfg.training.val_metric}": result.val_best, schema.TRIAL_TIME_S: time.time() - started}
        if result.test_metrics:
            final.update({f"{schema.TEST_PREFIX}{k}": v for k, v in result.test_metrics.items()})
            final[schema.DECODE_S] = result.decode_s
            final.update(result.extra_metrics)  # test/decode_s_per_video, early exit's ee/t<t>/...
            run.set_tags({schema.SCORE_METRICS: ",".join(result.score_metrics)})
            run.log_artifact(result.captions_path)
            run.log_artifact(result.per_video_path)
        run.log_artifact(result.checkpoint, "checkpoint")
        run.log_metrics({**final, **clock.metrics()})
        run_id = run.run_id
    from ray import tune

    report = {
        "val_best": result.val_best,
        "run_id": run_id,
        "best_epoch": result.best_epoch,
        schema.TRIAL_TIME_S: time.time() - started,
        "test_score": result.test_metrics.get("score", float("nan")) if result.test_metrics else float("nan"),
    }
    tune.report(report)
    return report


def _train(cfg: SweepConfig, ctx: SweepContext, spec: TrialSpec, inputs, out_dir: Path, log):
    """A trial without a teacher is trained on captions alone (teacher, blind, extra teacher); one with a
    teacher by its method's stages (a student, a tuning trial, or a guide the method trains as a student)."""
    from avkd.training.runners import run_student, run_teacher

    if spec.teacher is None:
        return run_teacher(
            cfg, inputs, seed=spec.seed, out_dir=out_dir, log=log, blind=spec.role == BLIND, modality=spec.modality
        )
    from avkd.sweep.checkpoints import download_checkpoints

    needed = {"teacher": spec.teacher, **{f"guide-{g.name}": g.hash for g in spec.guides}}
    ckpts = download_checkpoints(ctx.tracking_uri, ctx.experiment_id, needed, out_dir / "learns-from")
    return run_student(
        cfg,
        inputs,
        spec.method,
        ckpts["teacher"],
        seed=spec.seed,
        out_dir=out_dir,
        log=log,
        evaluate_test=spec.role != TUNE,
        guide_checkpoints={g.name: ckpts[f"guide-{g.name}"] for g in spec.guides},
        guide=spec.guide,
    )
