"""`python -m avkd sweep FILE --dry-run`: the trial plan, and which trials MLflow already has FINISHED.

Starts no Ray, extracts nothing, generates no corpus and writes no run: it reads the dataset (when it
exists) for its fingerprint, which is part of every trial's identity, and the tracking store (when
it exists) for finished config hashes.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from avkd.config import SweepConfig
from avkd.sweep.plan import TrialSpec, plan_trials
from avkd.terminal import print_table


def _dataset_fingerprint(cfg: SweepConfig) -> str | None:
    """The dataset's fingerprint, or None when it does not exist yet (a synthetic corpus not generated)."""
    from avkd.data.load import dataset_root
    from avkd.data.msrvtt import load_msrvtt

    root = dataset_root(cfg)
    if not (root / "test_videodatainfo.json").exists():
        return None
    return load_msrvtt(root, max_videos=cfg.dataset.max_videos).fingerprint()


def _finished_hashes(cfg: SweepConfig) -> tuple[dict[str, str], str]:
    """config hash -> run id of FINISHED trials in the sweep's experiment; and where that was looked up."""
    from trackers import mlflow_tracker as mt

    uri = mt.resolve_tracking_uri(cfg.tracking.uri)
    db = mt.sqlite_path(uri)
    if db is not None and not db.is_file():
        return {}, f"{uri} (no database yet)"
    client = mt.mlflow_client(uri)
    name = cfg.tracking.experiment or cfg.name
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage != "active":
        return {}, f"{uri} (no experiment {name!r} yet)"
    return mt.finished_runs_by_hash(uri, exp.experiment_id), f"{uri}, experiment {name!r}"


def plan_rows(cfg: SweepConfig, dataset_fp: str, done: dict[str, str]) -> list[tuple[str, TrialSpec, str]]:
    """(phase, spec, status) for every planned trial; status "finished (run <id>)" or "would run"."""
    teachers, guides, students = plan_trials(cfg, dataset_fp)
    rows = []
    for phase, specs in (("teachers", teachers), ("mentors", guides), ("students", students)):
        for s in specs:
            status = f"finished (run {done[s.config_hash]})" if s.config_hash in done else "would run"
            rows.append((phase, s, status))
    return rows


def dry_run(cfg: SweepConfig, sweep_file: str, overrides: dict, console: Console | None = None) -> int:
    console = console or Console()
    fp = _dataset_fingerprint(cfg)
    done, where = _finished_hashes(cfg) if fp is not None else ({}, "(not read: the dataset does not exist yet)")
    rows = plan_rows(cfg, fp or "not-generated", done)
    table = Table(
        title=f"trial plan of {sweep_file}"
        + (" with " + " ".join(f"{k}={v}" for k, v in overrides.items()) if overrides else "")
    )
    for column in ("phase", "trial", "role", "k", "method", "seed", "config hash", "status"):
        table.add_column(column)
    for phase, s, status in rows:
        table.add_row(phase, s.name, s.role, f"{s.k:g}", s.method, str(s.seed), s.config_hash, status)
    print_table(console, table)
    would = sum(1 for *_, status in rows if status == "would run")
    console.print(f"{len(rows)} trials: {would} would run, {len(rows) - would} already FINISHED in {where}")
    if fp is None:
        console.print(
            f"dataset {cfg.dataset.root} does not exist yet: it is generated (or must be provided) "
            "when the sweep runs, so every trial would run"
        )
    if cfg.tune is not None:
        console.print(
            f"tune: each (k, loss) cell of the students is an Optuna search of {cfg.tune.num_samples} "
            "trials, then its best re-run for every seed"
        )
    if cfg.grid.timing.enabled:
        console.print(f"timing (Table II): {cfg.grid.timing.videos} test videos, unless already done")
    console.print("dry run: nothing was started or written")
    return 0
