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

import dataclasses
import os
import shutil
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from avkd.clock import PhaseClock
from avkd.config import SweepConfig, config_hash
from avkd.errors import AvkdError
from avkd.evaluation import meteor_service
from avkd.sweep.cluster import trial_resources
from avkd.sweep.inputs import build_inputs, share
from avkd.sweep.plan import TUNE, SweepContext, TrialSpec, plan_trials
from avkd.sweep.trial import run_trial
from avkd.warn import WARN_DIR_ENV
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
    interrupted_in: str = ""  # the sweep phase it stopped in (corpus, features, trials_<phase>, report, ...)
    exit_code: int = 0  # 128 + signal number when interrupted
    planned: list[str] = field(default_factory=list)  # every trial of the plan, in phase order
    where: dict[str, Any] = field(default_factory=dict)  # the end summary's pointers (avkd.sweep.summary)


def _load_dataset(cfg: SweepConfig):
    from avkd.data.load import load_dataset

    return load_dataset(cfg)


def _stored_attributes(cfg: SweepConfig) -> dict[str, dict] | None:
    """The videos' stored attributes (grounded attribute accuracy); None when the dataset has none (MSR-VTT)."""
    from avkd.data.load import dataset_root
    from avkd.evaluation.attributes import load_attributes

    return load_attributes(dataset_root(cfg))


def _weights_tags(tables: dict) -> dict[str, str]:
    """avkd.weights + avkd.weights_detail (schema.weights_tags), with one loud line unless all are pretrained."""
    tags = schema.weights_tags(next(iter(tables.values())).weights)
    if tags[schema.WEIGHTS] != "pretrained":
        console.print(
            f"[bold red]!! {tags[schema.WEIGHTS].upper()} backbone weights[/] ({tags[schema.WEIGHTS_DETAIL]}): "
            f"no pretrained checkpoint for every backbone; runs are tagged {schema.WEIGHTS}="
            f"{tags[schema.WEIGHTS]} and their numbers are not comparable to the paper."
        )
    return tags


def run_sweep(
    cfg: SweepConfig,
    sweep_file: str,
    build_report: bool = True,
    report_out: str = "reports/out",
    overrides: dict[str, Any] | None = None,
    wait: bool = False,
) -> SweepOutcome:
    """The whole sweep. SIGINT/SIGTERM stop it within seconds in any phase (avkd/sweep/interrupt.py):
    the outcome then says what finished, what was killed and what never started, with exit_code 130/143."""
    from avkd.sweep.interrupt import Interrupts, SweepInterrupted
    from avkd.sweep.progress import SweepProgress

    global _view
    t_start = time.time()
    outcome = SweepOutcome()
    clock = PhaseClock()  # the sweep's breakdown (time/<phase>_s on the parent run, printed at the end)
    with Interrupts(console), SweepProgress(console) as _view:
        try:
            _sweep(cfg, sweep_file, outcome, build_report, report_out, overrides or {}, wait, clock)
        except SweepInterrupted as stop:
            outcome.interrupted, outcome.exit_code = str(stop), 128 + stop.signum
            outcome.interrupted_in = clock.raised_in if clock.raised is stop else ""
    _view = None
    _print_summary(outcome, time.time() - t_start)
    if clock.seconds:
        console.print(
            "[bold]>> where the time went[/] (time/<phase>_s on the sweep run):\n   " + "\n   ".join(clock.lines()),
            highlight=False,
        )
    if outcome.where and not outcome.interrupted:
        from avkd.sweep.summary import print_where_to_look

        print_where_to_look(console, **outcome.where)
    return outcome


_view = None  # the running sweep's progress view (avkd.sweep.progress), for _run_phase


def _progress_view():
    """The sweep's view; plain lines when a phase runs outside run_sweep (tests, other callers)."""
    from avkd.sweep.progress import SweepProgress

    return _view if _view is not None else SweepProgress(console, live=False)


def _sweep(
    cfg: SweepConfig,
    sweep_file: str,
    outcome: SweepOutcome,
    build_report: bool,
    report_out: str,
    overrides: dict[str, Any],
    wait: bool,
    clock: PhaseClock,
) -> None:
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
        with clock.phase("corpus"):
            dataset = _load_dataset(cfg)
            dataset_fp = dataset.fingerprint()
        extraction_nodes = None
        if os.environ.get("RAY_ADDRESS"):  # a cluster: one tracking server for all nodes, each node checked
            from avkd.sweep.cluster import check_cluster

            _ray_init()
            extraction_nodes = check_cluster(uri, dataset, console)
        with clock.phase("tracking"):  # opening the store (schema check), stale runs, the sweep run
            exp_id = mt.ensure_experiment(uri, experiment)
            stale = mt.mark_stale_runs(uri, exp_id)  # only runs whose driver is provably gone
        if stale:
            console.print(f"[yellow]>> {len(stale)} run(s) left RUNNING by an interrupted sweep were marked KILLED[/]")
        console.print(f"[bold]>> sweep[/] {cfg.name}: tracking {uri} (experiment '{experiment}')")
        plan = plan_trials(cfg, dataset_fp)
        outcome.planned = [s.name for specs in plan for s in specs]
        sweep_hash = config_hash({"config": cfg.to_dict(), "dataset": dataset_fp})
        tags = {schema.GIT_COMMIT: mt.git_commit(), schema.DATASET_FINGERPRINT: dataset_fp}
        if overrides:
            tags[schema.OVERRIDES] = "; ".join(f"{k}={v}" for k, v in overrides.items())
        with clock.phase("tracking"):
            parent, continued = mt.open_sweep_run(
                uri, exp_id, cfg.name, sweep_hash, params=cfg.flat(), owner=str(Owner.current()), tags=tags
            )
        lock.describe(parent.run_id)
        console.print(f">> sweep run {parent.run_id}" + (" (continued)" if continued else ""))
        started_ms = int(time.time() * 1000)
        try:
            with mt.Heartbeat(uri, parent.run_id, HEARTBEAT_S), parent:
                if overrides:
                    parent.log_dict(overrides, schema.ARTIFACT_OVERRIDES)
                students = _phases(
                    cfg, sweep_file, dataset, dataset_fp, plan, parent, uri, exp_id, outcome, clock, extraction_nodes
                )
                parent.log_metrics(clock.metrics())
        finally:
            with interrupt.deferred():
                _record_counts(outcome, uri, parent.run_id, started_ms)
        interrupt.check()  # a signal during the counts: no report
        # The summary and the report come once the sweep run has ended, so its header shows the final status.
        with clock.phase("report"):
            report_path = _report(uri, parent.run_id, report_out, build_report)
        outcome.where = {
            "uri": uri,
            "experiment_id": exp_id,
            "experiment": experiment,
            "parent_run_id": parent.run_id,
            "report": report_path,
            "student_hashes": [s.config_hash for s in students],
        }


def _phases(
    cfg: SweepConfig,
    sweep_file: str,
    dataset,
    dataset_fp: str,
    plan,
    parent,
    uri: str,
    exp_id: str,
    outcome: SweepOutcome,
    clock: PhaseClock,
    extraction_nodes,
) -> list[TrialSpec]:
    """Features, timing, trials: each phase starts only if no signal arrived (interrupt.check()).
    Returns the student specs that ran (tuning may re-plan them)."""
    from avkd import methods
    from avkd.sweep import interrupt
    from trackers import mlflow_tracker as mt

    work = _abs(cfg.runs_dir) / cfg.name
    parent.log_text(Path(sweep_file).read_text(), schema.ARTIFACT_SWEEP_FILE)
    parent.log_dict(cfg.to_dict(), schema.ARTIFACT_CONFIG)
    parent.log_dict({"issues": [i.__dict__ for i in dataset.issues]}, schema.ARTIFACT_DATASET_ISSUES)

    # 3. features (cached; computed once for every k before any trial)
    guide_ks = {g.k for key in cfg.grid.losses for g in methods.get(key).guide_trials(cfg)}
    ks = sorted({1.0, *cfg.grid.ks, *guide_ks})
    # on a cluster (Ray started above), extraction runs as sharded Ray tasks (see features.shards)
    with clock.phase("features"), _view.phase("features", unit="videos") as phase:
        from avkd.features.extract import extract_variants  # its imports (torch) are the phase's time

        tables = extract_variants(dataset, cfg.features, ks, nodes=extraction_nodes, reporter=phase)
    errors = {f"{k:g}": t.errors for k, t in tables.items()}
    parent.log_dict(
        {"errors": errors, "no_audio": {f"{k:g}": t.no_audio for k, t in tables.items()}},
        schema.ARTIFACT_EXTRACTION_ERRORS,
    )
    weight_tags = _weights_tags(tables)
    parent.set_tags(weight_tags)
    sweep_inputs = build_inputs(dataset, cfg.dataset.min_count, tables, _stored_attributes(cfg))

    # 4. Table II timing, with nothing else competing for the cores
    interrupt.check()
    if cfg.grid.timing.enabled:
        with clock.phase("timing"), _view.phase("timing (Table II)"):
            _timing(cfg, uri, exp_id, parent.run_id)

    # 5. trials (Ray starts only when a phase has a trial to run: the rerun of a finished sweep starts none)
    interrupt.check()
    ctx = SweepContext(
        config=cfg.to_dict(),
        sweep_file=str(sweep_file),
        sweep_name=cfg.name,
        tracking_uri=uri,
        experiment_id=exp_id,
        parent_run_id=parent.run_id,
        inputs=sweep_inputs,
        trials_dir=str(work / "trials"),
        cpus_per_trial=cfg.resources.cpu,
        weights=weight_tags[schema.WEIGHTS],
        weights_detail=weight_tags[schema.WEIGHTS_DETAIL],
        dataset_fingerprint=dataset_fp,
        git_commit=mt.git_commit(),
        extraction_errors=errors,
    )
    teachers, guides, students = plan
    done = mt.finished_runs_by_hash(uri, exp_id, sweep=cfg.name)
    t0 = time.time()
    timed_phase = _timed(clock, _run_phase)
    try:
        if cfg.tune is not None:  # fair tuning: the teacher and blind baseline get the students' budget first
            from avkd.sweep.tune import tune_references

            tuned = tune_references(cfg, teachers, ctx, done, outcome, timed_phase, console)
            teachers, guides, students = plan_trials(cfg, dataset_fp, tuned)
        # Each phase runs the trials whose teacher and guides finished in the phases before.
        timed_phase("teachers", teachers, ctx, cfg, done, outcome)
        unusable = {s.config_hash for s in teachers if s.name in outcome.failed}
        timed_phase("mentors", _runnable(guides, unusable, outcome, "its teacher failed"), ctx, cfg, done, outcome)
        unusable |= {s.config_hash for s in guides if s.name in outcome.failed or s.name in outcome.not_run}
        runnable = _runnable(students, unusable, outcome, "its teacher or a guide (extra teacher, mentor) failed")
        if cfg.tune is not None:
            from avkd.sweep.tune import run_tuning

            run_tuning(cfg, runnable, ctx, done, outcome, timed_phase, console)
        else:
            timed_phase("students", runnable, ctx, cfg, done, outcome)
    finally:
        with interrupt.deferred(), clock.phase("ray_stop"):  # a signal now must not cut the clean-up short
            _ray_shutdown()  # every Ray process of this sweep ends here, trials included
            # Every trial has ended now; a run still RUNNING lost its worker (a lost node, an interrupt).
            orphans = mt.mark_stale_runs(uri, exp_id, parent_run_id=parent.run_id)
        if orphans:
            console.print(f"[yellow]>> {len(orphans)} trial run(s) whose worker ended were marked KILLED[/]")
    parent.log_metrics({schema.SWEEP_TRIALS_S: time.time() - t0})
    if outcome.failed:
        parent.set_tags({schema.FAILED_TRIALS: ",".join(sorted(outcome.failed))[:5000]})
    interrupt.check()
    return students


def _record_counts(outcome: SweepOutcome, uri: str, parent_run_id: str, started_ms: int) -> None:
    """Sort the plan into finished / skipped / failed / killed / never started (from this invocation's
    trial runs in MLflow) and tag the counts and log outcome.json on the sweep run, whatever its status."""
    from avkd.sweep.interrupt import received, signal_received
    from trackers import mlflow_tracker as mt

    try:
        client = mt.mlflow_client(uri)
        run = client.get_run(parent_run_id)
        children = mt.search_all_runs(
            client,
            run.info.experiment_id,
            f"tags.`{schema.PARENT}` = '{parent_run_id}' and attributes.start_time >= {started_ms}",
        )
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
        counts = {
            "finished": len(outcome.finished),
            "skipped": len(outcome.skipped),
            "failed": len(outcome.failed),
            "killed": len(outcome.killed),
            "not_started": len(outcome.never_started) + len(outcome.not_run),
        }
        tags = [mt.RunTag(schema.SWEEP_TRIAL_COUNTS[k], str(v)) for k, v in counts.items()]  # counts: tags, not series
        if signal_received():
            tags.append(mt.RunTag(schema.INTERRUPTED, received()))
        client.log_batch(parent_run_id, tags=tags)
        client.log_dict(
            parent_run_id,
            {k: v for k, v in outcome.__dict__.items() if k not in ("planned", "where")},
            schema.ARTIFACT_OUTCOME,
        )
    except Exception as err:  # noqa: BLE001 - the summary still prints; the sweep's own error matters more
        console.print(f"[yellow]>> could not record the trial counts on the sweep run: {err}[/]")


def _report(uri: str, sweep_run_id: str, report_out: str, build_report: bool) -> Path | None:
    """summary.json (Table I's intervals: the numbers a notebook reads) on the sweep run, then the report."""
    from avkd.sweep.interrupt import SweepInterrupted
    from trackers import mlflow_tracker as mt

    try:
        from reports.build import load_report, write_report

        report = load_report(uri, sweep_run_id=sweep_run_id)
        mt.mlflow_client(uri).log_dict(sweep_run_id, report.table1.summary, schema.ARTIFACT_SUMMARY)
        return write_report(report, out=str(_abs(report_out))) if build_report else None
    except AvkdError as err:
        console.print(f"[red]summary/report not built: {err}[/]")
    except SweepInterrupted as stop:
        client = mt.mlflow_client(uri)
        client.set_tag(sweep_run_id, schema.INTERRUPTED, str(stop))
        client.set_terminated(sweep_run_id, "KILLED")
        raise
    return None


def _timed(clock: PhaseClock, run_phase):
    """run_phase timed into the clock as trials_<phase> (teachers, students, each tuning cell ...)."""

    def timed(phase: str, *args, **kwargs):
        with clock.phase(f"trials_{phase}"):
            return run_phase(phase, *args, **kwargs)

    return timed


def _timing(cfg: SweepConfig, uri: str, exp_id: str, parent_run_id: str) -> None:
    from avkd.features.bench import run_benchmark
    from trackers import mlflow_tracker as mt

    d = cfg.to_dict()
    t_hash = config_hash(
        {
            "features": d["features"],
            "ks": cfg.grid.ks,
            "timing": d["grid"]["timing"],
            "dataset": cfg.dataset.root,
            "role": "timing",
        }
    )
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
        console.print(
            f"[bold yellow]!! another sweep is running on this machine[/] ('{other.get('sweep', '?')}', "
            f"pid {other.get('pid', '?')}): the Table II timings compete with it for the CPU and may be inflated"
        )


def _ray_init() -> None:
    from avkd.runtime import start_ray
    from avkd.sweep import interrupt

    start_ray()
    interrupt.reinstall()  # ray.init() replaced the SIGTERM handler with its own (a stack dump and abort)


def _ray_shutdown() -> None:
    from avkd.runtime import stop_ray

    _SHARED.clear()
    meteor_service.stop()  # also on a $RAY_ADDRESS cluster, which stop_ray leaves running (no-op when never started)
    if "ray" in sys.modules:  # never imported: never started (a finished sweep's rerun imports no Ray)
        stop_ray()


_SHARED: dict[int, Any] = {}  # id(SweepInputs) -> its ObjectRef while Ray is up


def _shared(ctx: SweepContext) -> SweepContext:
    """The context with its inputs in Ray's object store (put once per Ray session, on first use)."""
    from avkd.sweep.inputs import SweepInputs

    if not isinstance(ctx.inputs, SweepInputs):
        return ctx
    if id(ctx.inputs) not in _SHARED:
        _SHARED[id(ctx.inputs)] = share(ctx.inputs)
    return dataclasses.replace(ctx, inputs=_SHARED[id(ctx.inputs)])


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


def _run_phase(
    phase: str,
    specs: list[TrialSpec],
    ctx: SweepContext,
    cfg: SweepConfig,
    done: dict[str, str],
    outcome: SweepOutcome,
    search: dict | None = None,
) -> Any:
    """Run `specs` as one Ray Tune experiment (skipping finished hashes). Returns the ResultGrid."""
    from avkd.sweep import interrupt

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
    from ray import tune  # (seconds to import: only when the phase has trials to run)

    _ray_init()  # here, not before the phases: the rerun of a finished sweep starts no Ray at all
    meteor_service.start()  # one METEOR JVM for the sweep, loading while the first trials train
    ctx = _shared(ctx)  # the inputs go into Ray's object store once, on the first phase that runs
    console.print(
        f"[bold]>> {phase}[/]: {len(todo) if search is None else search['num_samples']} trial(s) "
        f"on Ray ({cfg.resources.cpu:g} CPU, {cfg.resources.gpu:g} GPU each, "
        f"{cfg.resources.max_concurrent_trials} at a time)"
    )
    # The Ray boundary: specs and context cross it as plain dicts.
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, ctx=ctx.to_dict()), trial_resources(cfg.resources.cpu, cfg.resources.gpu)
    )
    if search is None:
        param_space = {"trial": tune.grid_search([s.to_dict() for s in todo])}
        tune_config = tune.TuneConfig(
            max_concurrent_trials=cfg.resources.max_concurrent_trials,
            reuse_actors=True,
            trial_name_creator=_ray_trial_name,
            trial_dirname_creator=_ray_trial_name,
        )
        total = len(todo)
    else:
        param_space = {"trial": todo[0].to_dict(), **search["space"]}
        tune_config = tune.TuneConfig(
            max_concurrent_trials=cfg.resources.max_concurrent_trials,
            search_alg=search["search_alg"],
            scheduler=search.get("scheduler"),
            num_samples=search["num_samples"],
            metric="val_best",
            mode="max",
            reuse_actors=True,
            trial_name_creator=_ray_trial_name,
            trial_dirname_creator=_ray_trial_name,
        )
        total = search["num_samples"]
    storage = _abs(cfg.runs_dir) / "ray"
    storage.mkdir(parents=True, exist_ok=True)
    with _progress_view().phase(phase, total, "trials") as progress:
        tuner = _tuner(trainable, param_space, tune_config, cfg, phase, storage, progress)
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


def _tuner(trainable, param_space: dict, tune_config, cfg: SweepConfig, phase: str, storage: Path, progress):
    from ray import tune

    from avkd.sweep.tune_callbacks import StopOnInterrupt, TrialProgress

    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=f"{cfg.name}-{phase}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(storage),
            failure_config=tune.FailureConfig(max_failures=cfg.resources.max_failures),
            verbose=0,
            callbacks=[TrialProgress(progress)],
            stop=StopOnInterrupt(),
        ),
    )


def _print_summary(outcome: SweepOutcome, seconds: float) -> None:
    if outcome.interrupted:
        console.print(
            f"[bold red]>> sweep interrupted ({outcome.interrupted}) after {seconds / 60:.1f} min[/]: "
            f"{len(outcome.finished)} trial(s) finished, {len(outcome.skipped)} skipped (already finished), "
            f"{len(outcome.killed)} killed, {len(outcome.never_started)} never started, "
            f"{len(outcome.failed)} failed; rerun the same command to resume"
        )
        if outcome.interrupted_in:
            unwritten = (
                "; the report was not written (the rerun writes it)" if outcome.interrupted_in == "report" else ""
            )
            console.print(f"   stopped in the {outcome.interrupted_in} phase{unwritten}")
        for label, names in (
            ("finished", outcome.finished),
            ("killed", outcome.killed),
            ("never started", outcome.never_started),
        ):
            if names:
                console.print(f"   {label}: {', '.join(names)}")
    else:
        console.print(
            f"[bold]>> sweep finished in {seconds / 60:.1f} min[/]: {len(outcome.finished)} trial(s) run, "
            f"{len(outcome.skipped)} skipped (already finished), {len(outcome.failed)} failed"
        )
    for name, why in sorted(outcome.failed.items()):
        console.print(f"   [red]FAILED[/] {name}: {why}")
    for name, why in sorted(outcome.not_run.items()):
        console.print(f"   [yellow]not run[/] {name}: {why}")


def check_loss_names(cfg: SweepConfig, source: str) -> None:
    """Unknown methods and loss terms a method cannot feed fail here, before any work, not inside a trial."""
    from avkd import methods

    methods.check(cfg, source)


def cmd_sweep(args) -> int:
    from avkd.config import load_sweep_with_overrides

    cfg, overrides = load_sweep_with_overrides(args.sweep, getattr(args, "overrides", None) or [])
    check_loss_names(cfg, args.sweep)
    if getattr(args, "dry_run", False):
        from avkd.sweep.dryrun import dry_run

        return dry_run(cfg, args.sweep, overrides, console)
    _set_output_env(args)
    try:
        outcome = run_sweep(
            cfg,
            args.sweep,
            build_report=not args.no_report,
            report_out=args.report_out,
            overrides=overrides,
            wait=getattr(args, "wait", False),
        )
    except AvkdError:
        raise
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        shutil.rmtree(os.environ.pop(WARN_DIR_ENV, ""), ignore_errors=True)
    if outcome.interrupted:
        # Everything is closed (runs ended, Ray shut down); skip the interpreter's finalisers, which
        # wait ~10 s on Ray's native core worker after an interrupted Tune run.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(outcome.exit_code)
    return 1 if (outcome.failed or outcome.not_run) else 0


def _set_output_env(args) -> None:
    """What every process of the sweep inherits: plain output outside a terminal, warnings once per sweep,
    the command line as MLflow's source name."""
    import shlex
    import tempfile

    from trackers.mlflow_tracker import SOURCE_NAME_ENV

    if not os.isatty(1):
        os.environ.setdefault("COLUMNS", "160")  # rich tables in logs: wide enough to read
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")  # Ray's worker-line prefixes: no ANSI colours in a log
    # Ray Tune's own console output (experiment banners, TensorBoard hints) is off: the sweep's
    # progress view (avkd.sweep.progress) shows trials instead.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ[WARN_DIR_ENV] = tempfile.mkdtemp(prefix="avkd-warn-")
    # MLflow's Source column shows the last path component: the sweep file (and the overrides).
    os.environ[SOURCE_NAME_ENV] = "python -m avkd sweep " + shlex.join([args.sweep, *(args.overrides or [])])
