"""`python -m avkd sweep sweeps/X.yaml`: the paper's whole study as one resumable, tracked sweep.

Order of work (data flows one way: media -> features -> trials -> MLflow -> reports):
  1. dataset: load (generate the synthetic corpus first if the sweep uses it and it is missing);
  2. MLflow: take the sweep's lock (one driver per sweep: avkd/sweep/lock.py), create DB + experiment
     here, before any worker (SQLite creation races), mark runs whose driver is provably gone as
     KILLED, open the sweep's parent run (a rerun continues it) with this driver's owner tags;
  3. features for the teacher and every k, from the shared cache (computed once);
  4. the Table II timing benchmark, alone on the machine (before Ray starts);
  5. Ray Tune trials: teachers + blind baselines, then the student grid k x loss x seed
     (or, with a `tune` section, one Optuna search per (k, loss) cell and a re-run of its best);
  6. Table I / Table II in the terminal and the report in reports/out/.
A rerun skips every trial whose config hash already has a FINISHED run, so a killed sweep
resumes where it stopped and a finished one reruns in seconds. SIGINT/SIGTERM stop the sweep in any
phase (avkd/sweep/interrupt.py): no further phase starts, the sweep run ends KILLED, exit 130/143.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from avkd.config import SweepConfig, config_hash, load_sweep
from avkd.errors import AvkdError
from avkd.sweep.plan import TUNE, SweepContext, TrialSpec, plan_trials
from avkd.sweep.trial import run_trial
from trackers import schema

REPO = Path(__file__).resolve().parents[2]
console = Console()


def _abs(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else (REPO / p)


# ---- the sweep ----------------------------------------------------------------------------------

@dataclass
class SweepOutcome:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # trial name -> reason
    not_run: dict[str, str] = field(default_factory=dict)  # trial name -> why (e.g. its teacher failed)
    killed: list[str] = field(default_factory=list)  # trials running when the sweep was interrupted
    never_started: list[str] = field(default_factory=list)  # trials an interrupt kept from starting
    interrupted: str = ""  # the signal that stopped the sweep ("SIGINT", "SIGTERM"), "" when it ran through
    exit_code: int = 0  # 128 + signal number when interrupted
    planned: list[str] = field(default_factory=list)  # every trial of the plan, in phase order


def _load_dataset(cfg: SweepConfig):
    from avkd.data.load import load_dataset

    return load_dataset(cfg)


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


def _weights_tags(tables: dict) -> dict[str, str]:
    """avkd.weights + avkd.weights_detail (schema.weights_tags), with one loud line unless all are pretrained."""
    tags = schema.weights_tags(next(iter(tables.values())).weights)
    if tags[schema.WEIGHTS] != "pretrained":
        console.print(f"[bold red]!! {tags[schema.WEIGHTS].upper()} backbone weights[/] ({tags[schema.WEIGHTS_DETAIL]}): "
                      f"no pretrained checkpoint for every backbone; runs are tagged {schema.WEIGHTS}="
                      f"{tags[schema.WEIGHTS]} and their numbers are not comparable to the paper.")
    return tags


def run_sweep(cfg: SweepConfig, sweep_file: str, build_report: bool = True,
              report_out: str = "reports/out", wait: bool = False) -> SweepOutcome:
    """The whole sweep. SIGINT/SIGTERM stop it within seconds in any phase (avkd/sweep/interrupt.py):
    the outcome then says what finished, what was killed and what never started, with exit_code 130/143."""
    from avkd.sweep.interrupt import Interrupts, SweepInterrupted

    t_start = time.time()
    outcome = SweepOutcome()
    with Interrupts(console):
        try:
            _sweep(cfg, sweep_file, outcome, build_report, report_out, wait)
        except SweepInterrupted as stop:
            outcome.interrupted, outcome.exit_code = str(stop), 128 + stop.signum
        _print_summary(outcome, time.time() - t_start)
    return outcome


def _sweep(cfg: SweepConfig, sweep_file: str, outcome: SweepOutcome, build_report: bool, report_out: str,
           wait: bool) -> None:
    from avkd import methods
    from avkd.sweep import interrupt
    from avkd.sweep.lock import HEARTBEAT_S, Owner, SweepLock
    from trackers import mlflow_tracker as mt

    methods.check(cfg, sweep_file)  # (cmd_sweep checked already; callers of run_sweep get the same check)
    # Pre-flight: an unwritable/full folder or a bad tracking store is one line now, not an hour in.
    from avkd.storage import check_sweep_folders
    from trackers.preflight import check_tracking_store
    check_sweep_folders({"feature cache": _abs(cfg.features.cache_dir), "runs folder": _abs(cfg.runs_dir)})
    uri = mt.resolve_tracking_uri(cfg.tracking.uri)
    check_tracking_store(uri)
    experiment = cfg.tracking.experiment or cfg.name
    # One driver per (tracking store, experiment, sweep): a second one refuses in one line (or waits).
    with SweepLock(uri, experiment, cfg.name) as lock:
        lock.acquire(wait=wait, on_wait=lambda text: console.print(f"[yellow]>> {text}[/]"))
        dataset = _load_dataset(cfg)
        dataset_fp = dataset.fingerprint()
        exp_id = mt.ensure_experiment(uri, experiment)
        stale = mt.mark_stale_runs(uri, exp_id)  # only runs whose driver is provably gone
        if stale:
            console.print(f"[yellow]>> {len(stale)} run(s) left RUNNING by an interrupted sweep were marked KILLED[/]")
        console.print(f"[bold]>> sweep[/] {cfg.name}: tracking {uri} (experiment '{experiment}')")
        plan = plan_trials(cfg, dataset_fp)
        outcome.planned = [s.name for specs in plan for s in specs]
        sweep_hash = config_hash({"config": cfg.to_dict(), "dataset": dataset_fp})
        parent, continued = mt.open_sweep_run(
            uri, exp_id, cfg.name, sweep_hash, params=cfg.flat(), owner=str(Owner.current()),
            tags={schema.GIT_COMMIT: mt.git_commit(), schema.DATASET_FINGERPRINT: dataset_fp})
        lock.describe(parent.run_id)
        console.print(f">> sweep run {parent.run_id}" + (" (continued)" if continued else ""))
        started_ms = int(time.time() * 1000)
        try:
            with mt.Heartbeat(uri, parent.run_id, HEARTBEAT_S), parent:
                _phases(cfg, sweep_file, dataset, dataset_fp, plan, parent, uri, exp_id, outcome)
        finally:
            with interrupt.deferred():
                _record_counts(outcome, uri, parent.run_id, started_ms)
        interrupt.check()  # a signal during the counts: no report
        # The report is built once the sweep run has ended, so its header shows the final status.
        if build_report:
            _report(uri, parent.run_id, report_out)


def _phases(cfg: SweepConfig, sweep_file: str, dataset, dataset_fp: str, plan, parent, uri: str, exp_id: str,
            outcome: SweepOutcome) -> None:
    """Features, timing, trials: each phase starts only if no signal arrived (interrupt.check())."""
    from avkd import methods
    from avkd.features.extract import extract_variants
    from avkd.sweep import interrupt
    from trackers import mlflow_tracker as mt

    work = _abs(cfg.runs_dir) / cfg.name
    parent.log_text(Path(sweep_file).read_text(), schema.ARTIFACT_SWEEP_FILE)
    parent.log_dict(cfg.to_dict(), schema.ARTIFACT_CONFIG)
    parent.log_dict({"issues": [i.__dict__ for i in dataset.issues]}, schema.ARTIFACT_DATASET_ISSUES)

    # 3. features (cached; computed once for every k before any trial)
    t0 = time.time()
    guide_ks = {g.k for key in cfg.grid.losses for g in methods.get(key).guide_trials(cfg)}
    ks = sorted({1.0, *cfg.grid.ks, *guide_ks})
    if os.environ.get("RAY_ADDRESS"):
        _ray_init()  # on a cluster, extraction runs as sharded Ray tasks (see features.shards)
        interrupt.reinstall()
    tables = extract_variants(dataset, cfg.features, ks)
    errors = {f"{k:g}": t.errors for k, t in tables.items()}
    parent.log_dict({"errors": errors, "no_audio": {f"{k:g}": t.no_audio for k, t in tables.items()}},
                    schema.ARTIFACT_EXTRACTION_ERRORS)
    weight_tags = _weights_tags(tables)
    parent.set_tags(weight_tags)
    weights = weight_tags[schema.WEIGHTS]
    parent.log_metrics({"time/features_s": time.time() - t0})
    inputs_file, latents = _write_trial_inputs(cfg, dataset, tables, work)

    # 4. Table II timing, with nothing else competing for the cores
    interrupt.check()
    if cfg.grid.timing.enabled:
        _timing(cfg, uri, exp_id, parent.run_id)

    # 5. trials
    interrupt.check()
    ctx = SweepContext(
        config=cfg.to_dict(), sweep_file=str(sweep_file), sweep_name=cfg.name,
        tracking_uri=uri, experiment_id=exp_id, parent_run_id=parent.run_id,
        inputs_file=str(inputs_file), latents=latents, trials_dir=str(work / "trials"),
        cpus_per_trial=cfg.resources.cpu, weights=weights, weights_detail=weight_tags[schema.WEIGHTS_DETAIL],
        dataset_fingerprint=dataset_fp,
        git_commit=mt.git_commit(), extraction_errors=errors,
    )
    teachers, guides, students = plan
    done = mt.finished_runs_by_hash(uri, exp_id, sweep=cfg.name)
    t0 = time.time()
    _ray_init()
    interrupt.reinstall()  # ray.init() replaced the SIGTERM handler with its own (a stack dump and abort)
    try:
        # Each phase runs the trials whose teacher and guides finished in the phases before.
        _run_phase("teachers", teachers, ctx, cfg, done, outcome)
        unusable = {s.config_hash for s in teachers if s.name in outcome.failed}
        _run_phase("mentors", _runnable(guides, unusable, outcome, "its teacher failed"), ctx, cfg, done, outcome)
        unusable |= {s.config_hash for s in guides if s.name in outcome.failed or s.name in outcome.not_run}
        runnable = _runnable(students, unusable, outcome, "its teacher or a guide (extra teacher, mentor) failed")
        if cfg.tune is not None:
            from avkd.sweep.tune import run_tuning

            run_tuning(cfg, runnable, ctx, done, outcome, _run_phase, console)
        else:
            _run_phase("students", runnable, ctx, cfg, done, outcome)
    finally:
        with interrupt.deferred():  # a signal now must not cut the clean-up short
            _ray_shutdown()  # every Ray process of this sweep ends here, trials included
            # Every trial has ended now; a run still RUNNING lost its worker (a lost node, an interrupt).
            orphans = mt.mark_stale_runs(uri, exp_id, parent_run_id=parent.run_id)
        if orphans:
            console.print(f"[yellow]>> {len(orphans)} trial run(s) whose worker ended were marked KILLED[/]")
    parent.log_metrics({"time/trials_s": time.time() - t0})
    if outcome.failed:
        parent.set_tags({schema.FAILED_TRIALS: ",".join(sorted(outcome.failed))[:5000]})
    interrupt.check()


def _record_counts(outcome: SweepOutcome, uri: str, parent_run_id: str, started_ms: int) -> None:
    """Sort the plan into finished / skipped / failed / killed / never started (from this invocation's
    trial runs in MLflow) and log the counts and outcome.json on the sweep run, whatever its status."""
    from avkd.sweep.interrupt import signal_received
    from trackers import mlflow_tracker as mt

    try:
        client = mt.mlflow_client(uri)
        run = client.get_run(parent_run_id)
        children = mt.search_all_runs(client, run.info.experiment_id,
                                      f"tags.`{schema.PARENT}` = '{parent_run_id}' and attributes.start_time >= {started_ms}")
        status = {r.info.run_name: r.info.status for r in children}
        accounted = {*outcome.finished, *outcome.skipped, *outcome.failed, *outcome.not_run}
        for name in outcome.planned:
            if name in accounted:
                continue
            if status.get(name) == "FINISHED":  # its run ended cleanly just before Tune stopped it
                outcome.finished.append(name)
            elif name in status:  # its run was open when the sweep stopped (now KILLED)
                outcome.killed.append(name)
            elif signal_received():
                outcome.never_started.append(name)
        counts = {"finished": len(outcome.finished), "skipped": len(outcome.skipped), "failed": len(outcome.failed),
                  "killed": len(outcome.killed), "not_started": len(outcome.never_started) + len(outcome.not_run)}
        from avkd.sweep.interrupt import received

        tags = [mt.RunTag(schema.INTERRUPTED, received())] if signal_received() else []
        client.log_batch(parent_run_id, tags=tags, metrics=[
            mt.Metric(schema.SWEEP_TRIAL_COUNTS[k], v, int(time.time() * 1000), 0) for k, v in counts.items()])
        client.log_dict(parent_run_id, {k: v for k, v in outcome.__dict__.items() if k != "planned"},
                        schema.ARTIFACT_OUTCOME)
    except Exception as err:  # noqa: BLE001 - the summary still prints; the sweep's own error matters more
        console.print(f"[yellow]>> could not record the trial counts on the sweep run: {err}[/]")


def _report(uri: str, sweep_run_id: str, report_out: str) -> None:
    from avkd.sweep.interrupt import SweepInterrupted
    from trackers import mlflow_tracker as mt

    try:
        from reports.build import build_report as _build

        out = _build(uri, sweep_run_id=sweep_run_id, out=str(_abs(report_out)))
        console.print(f"[bold]>> report[/]: {out}")
    except AvkdError as err:
        console.print(f"[red]report not built: {err}[/]")
    except SweepInterrupted as stop:
        client = mt.mlflow_client(uri)
        client.set_tag(sweep_run_id, schema.INTERRUPTED, str(stop))
        client.set_terminated(sweep_run_id, "KILLED")
        raise


def _timing(cfg: SweepConfig, uri: str, exp_id: str, parent_run_id: str) -> None:
    from avkd.features.bench import run_benchmark
    from trackers import mlflow_tracker as mt

    d = cfg.to_dict()
    t_hash = config_hash({"features": d["features"], "ks": cfg.grid.ks, "timing": d["grid"]["timing"],
                          "dataset": cfg.dataset.root, "role": "timing"})
    if t_hash in mt.finished_runs_by_hash(uri, exp_id, sweep=cfg.name):
        console.print(">> timing benchmark: already done for this configuration (skipped)")
        return
    warn_other_sweeps()
    console.print(f"[bold]>> timing benchmark[/] (Table II) on {cfg.grid.timing.videos} test videos")
    result = run_benchmark(cfg)
    mt.log_timing_run(cfg, result, parent_run_id=parent_run_id, uri=uri, config_hash=t_hash)


def warn_other_sweeps() -> None:
    """Table II measures time per video: other sweeps' trials on the same cores would inflate it."""
    from avkd.sweep.lock import other_sweeps_running

    for other in other_sweeps_running():
        console.print(f"[bold yellow]!! another sweep is running on this machine[/] ('{other.get('sweep', '?')}', "
                      f"pid {other.get('pid', '?')}): the Table II timings compete with it for the CPU and may be inflated")


def _ray_init() -> None:
    from avkd.runtime import start_ray

    start_ray()


def _ray_shutdown() -> None:
    from avkd.runtime import stop_ray

    stop_ray()


def _runnable(specs: list[TrialSpec], unusable: set[str], outcome: SweepOutcome, why: str) -> list[TrialSpec]:
    """The specs that need none of the `unusable` trials; the others are recorded as not run."""
    runnable = []
    for s in specs:
        if s.needs & unusable:
            outcome.not_run[s.name] = why
        else:
            runnable.append(s)
    return runnable


def _ray_trial_name(trial) -> str:
    return f"{TrialSpec.from_dict(trial.config['trial']).name}-{trial.trial_id}"


def _run_phase(phase: str, specs: list[TrialSpec], ctx: SweepContext, cfg: SweepConfig, done: dict[str, str],
               outcome: SweepOutcome, search: dict | None = None) -> Any:
    """Run `specs` as one Ray Tune experiment (skipping finished hashes). Returns the ResultGrid."""
    from ray import tune

    from avkd.sweep import interrupt
    from avkd.sweep.progress import StopOnInterrupt, TrialProgress

    interrupt.check()  # no phase starts after a signal
    todo = []
    for s in specs:
        if s.config_hash in done and s.role != TUNE:
            outcome.skipped.append(s.name)
        else:
            todo.append(s)
    if len(todo) < len(specs):
        console.print(f">> {phase}: {len(specs) - len(todo)} trial(s) already FINISHED in MLflow (skipped)")
    if not todo and search is None:
        return None
    console.print(f"[bold]>> {phase}[/]: {len(todo) if search is None else search['num_samples']} trial(s) "
                  f"on Ray ({cfg.resources.cpu:g} CPU, {cfg.resources.gpu:g} GPU each, "
                  f"{cfg.resources.max_concurrent_trials} at a time)")
    # The Ray boundary: specs and context cross it as plain dicts.
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx.to_dict()),
                                    {"cpu": cfg.resources.cpu, "gpu": cfg.resources.gpu})
    if search is None:
        param_space = {"trial": tune.grid_search([s.to_dict() for s in todo])}
        tune_config = tune.TuneConfig(max_concurrent_trials=cfg.resources.max_concurrent_trials, reuse_actors=True,
                                      trial_name_creator=_ray_trial_name, trial_dirname_creator=_ray_trial_name)
        total = len(todo)
    else:
        param_space = {"trial": todo[0].to_dict(), **search["space"]}
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
            stop=StopOnInterrupt(),
        ),
    )
    with interrupt.deferred():  # Tune's loop must not be interrupted by an exception: it stops by itself
        grid = tuner.fit()
    interrupted = interrupt.signal_received()
    for result in grid:
        if not result.config:
            continue
        spec = TrialSpec.from_dict(result.config["trial"])
        name = spec.name
        # Finished means the trial's final report (with its MLflow run id) arrived: a trial that was
        # stopped, never ran, or errored because of an interrupt is never counted as finished.
        if result.error is not None and not interrupted:
            outcome.failed[name] = str(result.error).strip().splitlines()[-1][:500]
        elif spec.role != TUNE and result.error is None and "run_id" in (result.metrics or {}):
            outcome.finished.append(name)
    interrupt.check()
    return grid


def _print_summary(outcome: SweepOutcome, seconds: float) -> None:
    if outcome.interrupted:
        console.print(f"[bold red]>> sweep interrupted ({outcome.interrupted}) after {seconds / 60:.1f} min[/]: "
                      f"{len(outcome.finished)} trial(s) finished, {len(outcome.skipped)} skipped (already finished), "
                      f"{len(outcome.killed)} killed, {len(outcome.never_started)} never started, "
                      f"{len(outcome.failed)} failed; rerun the same command to resume")
        for label, names in (("finished", outcome.finished), ("killed", outcome.killed),
                             ("never started", outcome.never_started)):
            if names:
                console.print(f"   {label}: {', '.join(names)}")
    else:
        console.print(f"[bold]>> sweep finished in {seconds / 60:.1f} min[/]: {len(outcome.finished)} trial(s) run, "
                      f"{len(outcome.skipped)} skipped (already finished), {len(outcome.failed)} failed")
    for name, why in sorted(outcome.failed.items()):
        console.print(f"   [red]FAILED[/] {name}: {why}")
    for name, why in sorted(outcome.not_run.items()):
        console.print(f"   [yellow]not run[/] {name}: {why}")


def check_loss_names(cfg: SweepConfig, source: str) -> None:
    """Unknown methods and loss terms a method cannot feed fail here, before any work, not inside a trial."""
    from avkd import methods

    methods.check(cfg, source)


def cmd_sweep(args) -> int:
    cfg = load_sweep(args.sweep)
    check_loss_names(cfg, args.sweep)
    if not os.isatty(1):
        os.environ.setdefault("COLUMNS", "160")  # rich tables in logs: wide enough to read
    # Ray Tune's own console output (experiment banners, TensorBoard hints) is off: we print one
    # line per trial instead (see _Progress).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        outcome = run_sweep(cfg, args.sweep, build_report=not args.no_report, report_out=args.report_out,
                            wait=getattr(args, "wait", False))
    except AvkdError:
        raise
    except Exception:
        traceback.print_exc()
        return 1
    if outcome.interrupted:
        # Everything is closed (runs ended, Ray shut down); skip the interpreter's finalisers, which
        # wait ~10 s on Ray's native core worker after an interrupted Tune run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(outcome.exit_code)
    return 1 if (outcome.failed or outcome.not_run) else 0
