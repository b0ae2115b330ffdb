"""Shared fixtures. Everything a test writes goes under pytest's tmp_path (the system temp dir)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tests run on 2 cores next to other work: keep BLAS/torch thread pools small and predictable.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see avkd/__init__.py
# Hypothesis keeps its example database in the temp dir, not in the repo.
os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "avkd-hypothesis"))


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A 12-clip synthetic corpus in MSR-VTT layout (real MP4 files), generated once per session."""
    from avkd.data.synth import generate

    return generate(tmp_path_factory.mktemp("corpus") / "synth", videos=12, seed=0)


@pytest.fixture
def repo_root() -> Path:
    return REPO

# CI (CI=true) replays the same Hypothesis examples on every run, so a red CI is reproducible;
# developers' runs stay random and keep finding new cases.
if os.environ.get("CI"):
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True)
    settings.load_profile("ci")
