"""The end of a sweep: where to look (MLflow UI, experiment, parent run, report) and the best student per k."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

from rich.console import Console

from trackers import mlflow_tracker as mt
from trackers import schema


def best_students(
    uri: str, experiment_id: str, student_hashes: list[str], parent_run_id: str | None = None
) -> dict[float, tuple[str, float, int]]:
    """k -> (method, mean test SCORE over seeds, number of seeds) of the best method at each k, over the
    most recent FINISHED run of each of the sweep's student config hashes (planned, or run by this parent:
    tuned students get their hash from the tuning)."""
    wanted = set(student_hashes)
    runs = mt.search_all_runs(
        mt.mlflow_client(uri),
        experiment_id,
        f"tags.`{schema.ROLE}` = 'student' and attributes.status = 'FINISHED'",
        ["attributes.start_time ASC"],
    )
    latest = {}
    for run in runs:  # oldest first: the latest run of a hash wins
        tags = run.data.tags
        ours = tags.get(schema.CONFIG_HASH) in wanted or (parent_run_id and tags.get(schema.PARENT) == parent_run_id)
        if ours and schema.TEST_SCORE in run.data.metrics:
            latest[tags[schema.CONFIG_HASH]] = run
    scores: dict[tuple[float, str], list[float]] = defaultdict(list)
    for run in latest.values():
        tags = run.data.tags
        scores[(float(tags[schema.K]), tags[schema.LOSS])].append(run.data.metrics[schema.TEST_SCORE])
    best: dict[float, tuple[str, float, int]] = {}
    for (k, method), values in sorted(scores.items()):
        mean = statistics.fmean(values)
        if k not in best or mean > best[k][1]:
            best[k] = (method, mean, len(values))
    return best


def print_where_to_look(
    console: Console,
    uri: str,
    experiment_id: str,
    experiment: str,
    parent_run_id: str,
    report: Path | None,
    student_hashes: list[str],
) -> None:
    db = mt.sqlite_path(uri)
    default_db = db is not None and db == (mt.REPO_ROOT / "mlflow.db").resolve()
    ui = "make ui" if default_db else f"mlflow ui --backend-store-uri {uri} --workers 1"
    console.print("[bold]>> where to look[/]")
    console.print(f"   MLflow UI:   {ui}   then {mt.runs_url('http://127.0.0.1:5000', experiment_id)}", soft_wrap=True)
    console.print(f"   experiment:  {experiment} (id {experiment_id}), tracking {uri}", soft_wrap=True)
    console.print(f"   parent run:  {parent_run_id}", soft_wrap=True)
    console.print(f"   report:      {report if report is not None else '(not built)'}", soft_wrap=True)
    best = best_students(uri, experiment_id, student_hashes, parent_run_id)
    if best:
        console.print("   best student per k (test SCORE, mean over seeds):")
        for k, (method, mean, n) in best.items():
            console.print(f"     k={k:g}: {method}  {mean:.4f}  (n={n})")
