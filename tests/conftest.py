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


TINY_CORPUS = {"videos": 12, "seed": 0}  # the parameters of `tiny_corpus`


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """A 12-clip synthetic corpus in MSR-VTT layout (real MP4 files), generated once per session."""
    from avkd.data.synth import generate

    return generate(tmp_path_factory.mktemp("corpus") / "synth", **TINY_CORPUS)


@pytest.fixture(scope="session")
def tiny_corpus_params() -> dict:
    """The (videos, seed) `tiny_corpus` was generated with."""
    return dict(TINY_CORPUS)


@pytest.fixture(scope="session")
def feature_cache_dir(tmp_path_factory) -> Path:
    """One feature/weights cache per session: every test extracting features reuses the same
    re-estimated random backbones instead of recomputing them per file."""
    return tmp_path_factory.getbasetemp() / "avkd-feature-cache"


def _merged(base: dict, overrides: dict) -> dict:
    out = dict(base)
    for key, value in overrides.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture(scope="session")
def tiny_config(tiny_corpus, feature_cache_dir):
    """tiny_config(**sections) -> a SweepConfig over `tiny_corpus`, CPU-sized (75 px frames, a 2-layer
    32/64 decoder, 2 epochs), with `sections` merged in key by key, e.g.
    tiny_config(grid={"ks": [0.2]}, training={"epochs": 4})."""
    from avkd.config import parse_sweep

    base = {
        "name": "tiny-test",
        "dataset": {"kind": "msrvtt", "root": str(tiny_corpus), "min_count": 1, "max_caption_len": 12},
        "features": {
            "image_size": 75,
            "batch_frames": 16,
            "batch_audio": 4,
            "workers": 1,
            "device": "cpu",
            "cache_dir": str(feature_cache_dir),
        },
        "model": {"embed_dim": 32, "hidden": 64, "layers": 2, "dropout": 0.1},
        "training": {"epochs": 2, "batch_size": 32, "lr": 0.005, "patience": 2},
        "distill": {"mlp": {"hidden": [64, 64]}, "rep_epochs": 2},
        "decoding": {"beam_size": 2, "max_len": 12},
        "grid": {"ks": [0.2, 0.6], "losses": ["rep", "rep+ce"], "seeds": [0]},
    }

    def make(**sections):
        return parse_sweep(_merged(base, sections), "tiny_config")

    return make


@pytest.fixture
def toy_latents():
    """A seeded toy batch for distillation losses: (student latents (6, 16), teacher latents (6, 12),
    caption rows (5,) indexing the 6 videos, token sequences (5, 5) with BOS 1, EOS 2, padding 0)."""
    import torch

    gen = torch.Generator().manual_seed(1)
    latents, teacher = torch.randn(6, 16, generator=gen), torch.randn(6, 12, generator=gen)
    rows = torch.tensor([0, 0, 2, 3, 5])
    seqs = torch.tensor([[1, 4, 5, 2, 0], [1, 6, 2, 0, 0], [1, 7, 8, 4, 2], [1, 5, 2, 0, 0], [1, 8, 2, 0, 0]])
    return latents, teacher, rows, seqs


@pytest.fixture
def repo_root() -> Path:
    return REPO


# CI (CI=true) replays the same Hypothesis examples on every run, so a red CI is reproducible;
# developers' runs stay random and keep finding new cases.
if os.environ.get("CI"):
    from hypothesis import settings

    settings.register_profile("ci", derandomize=True)
    settings.load_profile("ci")
