"""`python -m avkd sweep sweeps/X.yaml`: the paper's whole study as one resumable, tracked sweep.

Order of work (data flows one way: media -> features -> trials -> MLflow -> reports):
  1. dataset: load (generate the synthetic corpus first if the sweep uses it and it is missing);
  2. MLflow: create DB + experiment here, before any worker (SQLite creation races), mark runs
     left RUNNING by a killed driver as KILLED, open the parent run of this invocation;
  3. features for the teacher and every k, from the shared cache (computed once);
  4. the Table II timing benchmark, alone on the machine (before Ray starts);
  5. Ray Tune trials: teachers + blind baselines, then the student grid k x loss x seed
     (or, with a `tune` section, one Optuna search per (k, loss) cell and a re-run of its best);
  6. Table I / Table II in the terminal and the report in reports/out/.
A rerun skips every trial whose config hash already has a FINISHED run, so a killed sweep
resumes where it stopped and a finished one reruns in seconds.
"""
from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from avkd.config import SweepConfig, config_hash, load_sweep
from avkd.errors import AvkdError
from avkd.sweep.trial import run_trial, trial_name
from trackers import schema

REPO = Path(__file__).resolve().parents[2]
console = Console()


def _abs(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else (REPO / p)


# ---- trial identities ---------------------------------------------------------------------------

def _trial_config_parts(cfg: SweepConfig, dataset_fp: str) -> dict[str, Any]:
    """What determines a teacher's result. Batch sizes/devices/paths of extraction do not."""
    d = cfg.to_dict()
    feats = {k: v for k, v in d["features"].items() if k not in ("device", "workers", "batch_frames", "batch_audio", "cache_dir")}
    data = {k: v for k, v in d["dataset"].items() if k not in ("root", "synth")}
    # Early exit off: hashed as before the option existed, so earlier finished trials stay finished.
    model = {k: v for k, v in d["model"].items() if k != "early_exit" or v["enabled"]}
    return {"dataset": data, "dataset_fingerprint": dataset_fp, "features": feats, "model": model,
            "training": d["training"], "decoding": d["decoding"], "evaluation": d["evaluation"]}


def plan_trials(cfg: SweepConfig, dataset_fp: str) -> tuple[list[dict], list[dict]]:
    """-> (teacher-phase specs, student-phase specs). Each spec is a small JSON-able dict.

    Methods add guide trials (avkd.role "guide", avkd/training/methods.py): extra teachers join the
    teacher phase; a mentor leads the student phase (run_sweep runs it before the students).
    """
    from avkd.training import methods  # torch: imported only once a sweep really starts

    base = _trial_config_parts(cfg, dataset_fp)
    first, second = [], []
    for seed in cfg.grid.seeds:
        t_hash = config_hash({**base, "role": "teacher", "seed": seed})
        first.append({"role": "teacher", "k": 1.0, "loss": "ce", "seed": seed, "config_hash": t_hash})
        if cfg.grid.blind:
            first.append({"role": "blind", "k": 1.0, "loss": "ce", "seed": seed,
                          "config_hash": config_hash({**base, "role": "blind", "seed": seed})})
        extra_teachers, mentors = methods.guide_trials(cfg, base, seed, t_hash, config_hash)
        first += extra_teachers
        second += mentors
        for k in cfg.grid.ks:
            for loss in cfg.grid.losses:
                d = methods.student_distill_config(cfg, loss)
                identity = {**base, "distill": d, "role": "student", "k": k, "loss": loss, "seed": seed, "teacher": t_hash}
                spec = {"role": "student", "k": float(k), "loss": loss, "seed": seed, "teacher_hash": t_hash}
                guides = methods.student_guides(cfg, loss, extra_teachers + mentors)
                if guides:  # (rep / rep+ce have none: their hash is what it always was)
                    spec["guides"] = guides
                    identity["guides"] = {name: g["hash"] for name, g in guides.items()}
                second.append({**spec, "config_hash": config_hash(identity)})
    return first, second


def _needs(spec: dict) -> set[str]:
    """Config hashes of the trials a trial learns from (its teacher, its guides)."""
    needs = {g["hash"] for g in spec.get("guides", {}).values()}
    return needs | {spec["teacher_hash"]} if "teacher_hash" in spec else needs


# ---- the sweep ----------------------------------------------------------------------------------

@dataclass
class SweepOutcome:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # trial name -> reason
    not_run: dict[str, str] = field(default_factory=dict)  # trial name -> why (e.g. its teacher failed)


def _load_dataset(cfg: SweepConfig):
    from avkd.data.msrvtt import load_msrvtt

    root = _abs(cfg.dataset.root)
    if cfg.dataset.kind == "synth":
        from avkd.data.synth import generate

        # A no-op when root already holds the corpus of these parameters; a DataError naming the
        # folder when it holds another one (a changed synth.videos/seed is never silently ignored).
        fresh = not (root / "test_videodatainfo.json").exists()
        if fresh:
            console.print(f"[bold]>> generating the synthetic corpus[/] ({cfg.dataset.synth.videos} clips) in {root}")
        t0 = time.time()
        generate(root, videos=cfg.dataset.synth.videos, seed=cfg.dataset.synth.seed)
        if fresh:
            console.print(f"   done in {time.time() - t0:.1f} s")
    elif not root.exists():
        raise AvkdError(f"dataset.root: {root} does not exist (see README: 'Using a real MSR-VTT download')")
    return load_msrvtt(root, max_videos=cfg.dataset.max_videos)


def _write_trial_inputs(cfg: SweepConfig, dataset, tables: dict, work: Path) -> tuple[Path, dict[str, str]]:
    """Captions + vocab + per-split video lists (only videos with features in every variant), and latent files."""
    bad = set()
    for table in tables.values():
        bad |= {e["video_id"] for e in table.errors}
    have = set.intersection(*(set(t.video_ids) for t in tables.values()))
    splits = {s: [v.video_id for v in dataset.split(s) if v.video_id in have and v.video_id not in bad]
              for s in ("train", "validate", "test")}
    for s, vids in splits.items():
        if not vids:
            raise AvkdError(f"dataset split '{s}' has no videos with features (see the extraction errors above)")
    vocab = dataset.build_vocab(cfg.dataset.min_count)
    keep = set().union(*splits.values())
    meta = {"vocab": vocab.words, "splits": splits,
            "videos": {v.video_id: {"captions": v.captions, "tokens": v.tokens}
                       for v in dataset.videos.values() if v.video_id in keep}}
    work.mkdir(parents=True, exist_ok=True)
    inputs = work / "inputs.json"
    tmp = inputs.with_suffix(".tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, inputs)
    latents = {}
    for k, table in tables.items():
        path = work / f"latents-k{k:g}.npz"
        table.save(path)
        latents[f"{k:g}"] = str(path)
    return inputs, latents


def _weights_tag(tables: dict) -> str:
    w = next(iter(tables.values())).weights
    return "pretrained" if w.get("inception") == "pretrained" and w.get("cnn14") == "pretrained" else "random"


def run_sweep(cfg: SweepConfig, sweep_file: str, build_report: bool = True,
              report_out: str = "reports/out") -> SweepOutcome:
    from avkd.features.extract import extract_variants
    from avkd.training import methods
    from trackers import mlflow_tracker as mt

    t_start = time.time()
    # Pre-flight: an unwritable/full folder or a bad tracking store is one line now, not an hour in.
    from avkd.storage import check_sweep_folders
    from trackers.preflight import check_tracking_store
    check_sweep_folders({"feature cache": _abs(cfg.features.cache_dir), "runs folder": _abs(cfg.runs_dir)})
    check_tracking_store(mt.resolve_tracking_uri(cfg.tracking.uri))
    dataset = _load_dataset(cfg)
    dataset_fp = dataset.fingerprint()
    uri = mt.resolve_tracking_uri(cfg.tracking.uri)
    experiment = cfg.tracking.experiment or cfg.name
    exp_id = mt.ensure_experiment(uri, experiment)
    stale = mt.mark_stale_runs(uri, exp_id)
    if stale:
        console.print(f"[yellow]>> {len(stale)} run(s) left RUNNING by an interrupted sweep were marked KILLED[/]")
    console.print(f"[bold]>> sweep[/] {cfg.name}: tracking {uri} (experiment '{experiment}')")

    work = _abs(cfg.runs_dir) / cfg.name
    parent = mt.RunLogger(uri, exp_id, f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
                          tags={schema.ROLE: "sweep", schema.SWEEP: cfg.name, schema.GIT_COMMIT: mt.git_commit(),
                                schema.DATASET_FINGERPRINT: dataset_fp},
                          params=cfg.flat())
    outcome = SweepOutcome()
    with parent:
        parent.log_text(Path(sweep_file).read_text(), "sweep.yaml")
        parent.log_dict(cfg.to_dict(), schema.ARTIFACT_CONFIG)
        parent.log_dict({"issues": [i.__dict__ for i in dataset.issues]}, "dataset_issues.json")

        # 3. features (cached; computed once for every k before any trial)
        t0 = time.time()
        ks = sorted({1.0, *cfg.grid.ks, *methods.feature_ks(cfg)})
        if os.environ.get("RAY_ADDRESS"):
            _ray_init()  # on a cluster, extraction runs as sharded Ray tasks (see features.shards)
        tables = extract_variants(dataset, cfg.features, ks)
        errors = {f"{k:g}": t.errors for k, t in tables.items()}
        parent.log_dict({"errors": errors, "no_audio": {f"{k:g}": t.no_audio for k, t in tables.items()}},
                        schema.ARTIFACT_EXTRACTION_ERRORS)
        weights = _weights_tag(tables)
        parent.set_tags({schema.WEIGHTS: weights})
        if weights == "random":
            console.print("[bold red]!! RANDOM backbone weights[/]: no pretrained Inception-v3 / Cnn14 checkpoint was found; "
                          "runs are tagged avkd.weights=random and their numbers are not comparable to the paper.")
        parent.log_metrics({"time/features_s": time.time() - t0})
        inputs_file, latents = _write_trial_inputs(cfg, dataset, tables, work)

        # 4. Table II timing, with nothing else competing for the cores
        if cfg.grid.timing.enabled:
            _timing(cfg, uri, exp_id, parent.run_id)

        # 5. trials
        ctx = {
            "config": cfg.to_dict(), "sweep_file": str(sweep_file), "sweep_name": cfg.name,
            "tracking_uri": uri, "experiment_id": exp_id, "parent_run_id": parent.run_id,
            "inputs_file": str(inputs_file), "latents": latents, "trials_dir": str(work / "trials"),
            "cpus_per_trial": cfg.resources.cpu, "weights": weights, "dataset_fingerprint": dataset_fp,
            "git_commit": mt.git_commit(), "extraction_errors": errors,
        }
        first, second = plan_trials(cfg, dataset_fp)
        done = mt.finished_runs_by_hash(uri, exp_id)
        t0 = time.time()
        _ray_init()
        try:
            _run_phase("teachers", first, ctx, cfg, done, outcome)
            failed_teachers = {s["config_hash"] for s in first if trial_name(s) in outcome.failed}
            mentors = [s for s in second if s["role"] == "guide"]
            for s in [s for s in mentors if _needs(s) & failed_teachers]:
                outcome.not_run[trial_name(s)] = "its teacher failed"
            _run_phase("mentors", [s for s in mentors if not _needs(s) & failed_teachers], ctx, cfg, done, outcome)
            failed_teachers |= {s["config_hash"] for s in mentors
                                if trial_name(s) in outcome.failed or trial_name(s) in outcome.not_run}
            runnable = []
            for s in second:
                if s["role"] == "guide":
                    continue
                if _needs(s) & failed_teachers:
                    outcome.not_run[trial_name(s)] = "its teacher or a guide (extra teacher, mentor) failed"
                else:
                    runnable.append(s)
            if cfg.tune is not None:
                from avkd.sweep.tune import run_tuning

                run_tuning(cfg, runnable, ctx, done, outcome, _run_phase, console)
            else:
                _run_phase("students", runnable, ctx, cfg, done, outcome)
        finally:
            _ray_shutdown()
        # Every trial has ended now; a run still RUNNING lost its worker (e.g. its node) mid-trial.
        orphans = mt.mark_stale_runs(uri, exp_id, parent_run_id=parent.run_id)
        if orphans:
            console.print(f"[yellow]>> {len(orphans)} trial run(s) whose worker died were marked KILLED[/]")
        parent.log_metrics({"time/trials_s": time.time() - t0, "trials/finished": len(outcome.finished),
                            "trials/skipped": len(outcome.skipped), "trials/failed": len(outcome.failed)})
        parent.log_dict(outcome.__dict__, "outcome.json")

        # 6. tables and report
        if build_report:
            try:
                from reports.build import build_report as _build

                out = _build(uri, sweep_run_id=parent.run_id, out=str(_abs(report_out)))
                console.print(f"[bold]>> report[/]: {out}")
            except AvkdError as err:
                console.print(f"[red]report not built: {err}[/]")
        if outcome.failed:
            parent.set_tags({schema.FAILED_TRIALS: ",".join(sorted(outcome.failed))[:5000]})
    _print_summary(outcome, time.time() - t_start)
    return outcome


def _timing(cfg: SweepConfig, uri: str, exp_id: str, parent_run_id: str) -> None:
    from avkd.features.bench import run_benchmark
    from trackers import mlflow_tracker as mt

    d = cfg.to_dict()
    t_hash = config_hash({"features": d["features"], "ks": cfg.grid.ks, "timing": d["grid"]["timing"],
                          "dataset": cfg.dataset.root, "role": "timing"})
    if t_hash in mt.finished_runs_by_hash(uri, exp_id):
        console.print(">> timing benchmark: already done for this configuration (skipped)")
        return
    console.print(f"[bold]>> timing benchmark[/] (Table II) on {cfg.grid.timing.videos} test videos")
    result = run_benchmark(cfg)
    mt.log_timing_run(cfg, result, parent_run_id=parent_run_id, uri=uri, config_hash=t_hash)


def _ray_init() -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # local single-user cluster: no token files
    address = os.environ.get("RAY_ADDRESS")
    # Without RAY_ADDRESS always a fresh local instance: address=None would join whatever cluster
    # `ray start` (or ray.cluster_utils) last recorded in <ray temp>/ray_current_cluster.
    ray.init(address=address or "local", include_dashboard=False, log_to_driver=True,
             configure_logging=True, logging_level="ERROR",
             **({} if address else {"num_cpus": os.cpu_count()}))


def _ray_shutdown() -> None:
    import ray

    if ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):
        ray.shutdown()


def _ray_trial_name(trial) -> str:
    return f"{trial_name(trial.config['trial'])}-{trial.trial_id}"


def _run_phase(phase: str, specs: list[dict], ctx: dict, cfg: SweepConfig, done: dict[str, str],
               outcome: SweepOutcome, search: dict | None = None) -> Any:
    """Run `specs` as one Ray Tune experiment (skipping finished hashes). Returns the ResultGrid."""
    from ray import tune

    from avkd.sweep.progress import TrialProgress

    todo = []
    for s in specs:
        if s["config_hash"] in done and s["role"] != "tune":
            outcome.skipped.append(trial_name(s))
        else:
            todo.append(s)
    if len(todo) < len(specs):
        console.print(f">> {phase}: {len(specs) - len(todo)} trial(s) already FINISHED in MLflow (skipped)")
    if not todo and search is None:
        return None
    console.print(f"[bold]>> {phase}[/]: {len(todo) if search is None else search['num_samples']} trial(s) "
                  f"on Ray ({cfg.resources.cpu:g} CPU, {cfg.resources.gpu:g} GPU each, "
                  f"{cfg.resources.max_concurrent_trials} at a time)")
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx),
                                    {"cpu": cfg.resources.cpu, "gpu": cfg.resources.gpu})
    if search is None:
        param_space = {"trial": tune.grid_search(todo)}
        tune_config = tune.TuneConfig(max_concurrent_trials=cfg.resources.max_concurrent_trials, reuse_actors=True,
                                      trial_name_creator=_ray_trial_name, trial_dirname_creator=_ray_trial_name)
        total = len(todo)
    else:
        param_space = {"trial": todo[0], **search["space"]}
        tune_config = tune.TuneConfig(max_concurrent_trials=cfg.resources.max_concurrent_trials,
                                      search_alg=search["search_alg"], scheduler=search.get("scheduler"),
                                      num_samples=search["num_samples"], metric="val_best", mode="max",
                                      reuse_actors=True, trial_name_creator=_ray_trial_name,
                                      trial_dirname_creator=_ray_trial_name)
        total = search["num_samples"]
    storage = _abs(cfg.runs_dir) / "ray"
    storage.mkdir(parents=True, exist_ok=True)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=f"{cfg.name}-{phase}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(storage),
            failure_config=tune.FailureConfig(max_failures=cfg.resources.max_failures),
            verbose=0,
            callbacks=[TrialProgress(total)],
        ),
    )
    grid = tuner.fit()
    for result in grid:
        spec = result.config["trial"] if result.config else None
        if spec is None:
            continue
        name = trial_name(spec)
        if result.error is not None:
            outcome.failed[name] = str(result.error).strip().splitlines()[-1][:500]
        elif spec["role"] != "tune":
            outcome.finished.append(name)
    return grid


def _print_summary(outcome: SweepOutcome, seconds: float) -> None:
    console.print(f"[bold]>> sweep finished in {seconds / 60:.1f} min[/]: {len(outcome.finished)} trial(s) run, "
                  f"{len(outcome.skipped)} skipped (already finished), {len(outcome.failed)} failed")
    for name, why in sorted(outcome.failed.items()):
        console.print(f"   [red]FAILED[/] {name}: {why}")
    for name, why in sorted(outcome.not_run.items()):
        console.print(f"   [yellow]not run[/] {name}: {why}")


def check_loss_names(cfg: SweepConfig, source: str) -> None:
    """Unknown loss names fail here, before any work, not mid-sweep inside a trial."""
    from avkd.errors import ConfigError
    from avkd.training.losses import LOSSES

    for mode in cfg.grid.losses:
        for i, term in enumerate(cfg.distill.losses[mode]):
            if term.name not in LOSSES:
                raise ConfigError(f"{source}: distill.losses.{mode}[{i}].name: unknown loss {term.name!r} "
                                  f"(known: {', '.join(sorted(LOSSES))})")


def cmd_sweep(args) -> int:
    cfg = load_sweep(args.sweep)
    check_loss_names(cfg, args.sweep)
    if not os.isatty(1):
        os.environ.setdefault("COLUMNS", "160")  # rich tables in logs: wide enough to read
    # Ray Tune's own console output (experiment banners, TensorBoard hints) is off: we print one
    # line per trial instead (see _Progress).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        outcome = run_sweep(cfg, args.sweep, build_report=not args.no_report, report_out=args.report_out)
    except AvkdError:
        raise
    except Exception:
        traceback.print_exc()
        return 1
    return 1 if (outcome.failed or outcome.not_run) else 0
