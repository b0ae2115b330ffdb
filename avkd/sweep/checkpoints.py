"""How a student or guide gets the checkpoints of the trials it learns from: from the tracking store.

Every teacher and guide trial logs its best model as the `checkpoint/best.pt` artifact of its
FINISHED run. A trial that learns from it downloads that artifact into its own scratch folder, on
whatever node it runs: no node reads another node's disk (with an `mlflow server` serving artifacts,
the bytes travel over HTTP). A rerun that skipped the teacher (already FINISHED) finds it the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

from avkd.errors import DataError
from trackers import mlflow_tracker as mt
from trackers import schema


def finished_run_of(uri: str, experiment_id: str, config_hash: str) -> str | None:
    """The run id of the most recent FINISHED trial run with this config hash (None: there is none)."""
    client = mt.mlflow_client(uri)
    runs = mt.search_all_runs(
        client,
        experiment_id,
        f"tags.`{schema.CONFIG_HASH}` = '{config_hash}' and attributes.status = 'FINISHED'",
        ["attributes.start_time DESC"],
    )
    runs = [r for r in runs if schema.PARENT in r.data.tags]  # trial runs (children of a sweep run)
    return runs[0].info.run_id if runs else None


def download_checkpoints(uri: str, experiment_id: str, needed: dict[str, str], dest: Path) -> dict[str, Path]:
    """{name: config hash} of the trials to learn from -> {name: local best.pt}, downloaded into dest/<name>/.

    A trial without a FINISHED run, or whose run has no checkpoint artifact, is one DataError line."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    client = mt.mlflow_client(uri)
    paths = {}
    for name, config_hash in needed.items():
        run_id = finished_run_of(uri, experiment_id, config_hash)
        if run_id is None:
            raise DataError(
                f"{name} (config {config_hash}): no FINISHED run in the tracking store {uri} "
                "to take its checkpoint from"
            )
        folder = dest / name
        folder.mkdir(parents=True, exist_ok=True)
        local = mt._retry(
            f"download {schema.ARTIFACT_CHECKPOINT} of run {run_id}",
            client.download_artifacts,
            run_id,
            schema.ARTIFACT_CHECKPOINT,
            str(folder),
        )
        if not Path(local).is_file():
            raise DataError(f"{name}: run {run_id} has no {schema.ARTIFACT_CHECKPOINT} artifact")
        paths[name] = Path(local)
    return paths
