"""Reproducibility: the tiny sweep (2 seeds, the modality rows, the new statistics) run twice from scratch
in two different folders on one machine gives identical test metrics and an identical summary.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.test_sweep_e2e import child_runs, run_sweep_cli, tiny_sweep_file


def _results(uri: str, folder: Path) -> tuple[dict[str, dict[str, float]], dict]:
    """{trial name: its test/ metrics} of the finished trials (decoding times aside), and the sweep's summary.json."""
    from mlflow.tracking import MlflowClient

    runs = child_runs(uri, "tiny")
    metrics = {
        r.info.run_name: {k: v for k, v in r.data.metrics.items() if k.startswith("test/") and "decode_s" not in k}
        for r in runs
        if r.data.tags.get("avkd.role") in ("teacher", "blind", "student", "guide") and r.info.status == "FINISHED"
    }
    sweep = next(r for r in runs if r.data.tags.get("avkd.role") == "sweep")
    path = MlflowClient(uri).download_artifacts(sweep.info.run_id, "summary.json", str(folder))
    return metrics, json.loads(Path(path).read_text())


@pytest.mark.slow
def test_tiny_sweep_twice_from_scratch_in_two_folders_gives_identical_test_metrics(tiny_corpus, tmp_path):
    results = []
    for name in ("first", "second"):
        folder = tmp_path / name
        corpus = shutil.copytree(tiny_corpus, folder / "corpus")  # same content, another path
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        sweep = tiny_sweep_file(folder, corpus, uri, seeds=[0, 1], timing={"enabled": False})
        proc = run_sweep_cli(sweep, folder, timeout=1800)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        results.append(_results(uri, folder))
    (first, first_summary), (second, second_summary) = results
    assert len(first) == 16, sorted(first)  # per seed: teacher, blind, audio-only, visual-only, 4 students
    assert all("test/score" in m for m in first.values())
    assert first == second  # exact equality, metric by metric
    assert first_summary == second_summary
    print(
        "identical test metrics of",
        len(first),
        "trials; e.g. teacher-s0 test/score =",
        first["teacher-s0"]["test/score"],
    )
