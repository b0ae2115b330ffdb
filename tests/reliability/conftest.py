"""Fixtures of the reliability suite: the bad-media zoo (written once per session) and the sweep files."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

from .media_zoo import ZooClip, build_zoo

REPO = Path(__file__).resolve().parents[2]
# Hypothesis keeps a cache folder (.hypothesis/ in the working directory by default): keep it in the temp dir.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "avkd-hypothesis"))
SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))


@pytest.fixture(scope="session")
def zoo(tmp_path_factory) -> tuple[Path, dict[str, ZooClip]]:
    """(dataset root in MSR-VTT layout, {video_id: ZooClip}) of good, odd and broken files."""
    root = tmp_path_factory.mktemp("zoo") / "msrvtt_zoo"
    return root, build_zoo(root)


def cli_env(**extra: str) -> dict[str, str]:
    """Environment for `python -m avkd` run in a temp folder: the repo importable, wide output, few threads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AVKD_"))}
    env.update(PYTHONPATH=str(REPO), COLUMNS="200", OMP_NUM_THREADS="1", **extra)
    return env


PYTHON = sys.executable
