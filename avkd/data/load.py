"""The one way to get a sweep's dataset: `load_dataset(cfg)` (driver, `avkd features`, `avkd bench`).

A synthetic corpus is generated first when its folder does not hold it yet (a no-op when it does;
a DataError naming the folder when it holds another corpus, so a changed `dataset.synth.videos` or
`seed` is never silently ignored). A real MSR-VTT folder must exist. Every failure is a DataError.
"""
from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from avkd.config import SweepConfig
from avkd.data.msrvtt import Dataset, load_msrvtt
from avkd.errors import DataError

REPO = Path(__file__).resolve().parents[2]
console = Console(stderr=True)


def dataset_root(cfg: SweepConfig) -> Path:
    """dataset.root; a relative path is relative to the repo root, like every path of a sweep file."""
    root = Path(cfg.dataset.root)
    return root if root.is_absolute() else REPO / root


def load_dataset(cfg: SweepConfig) -> Dataset:
    """The sweep's dataset (cfg.dataset), generating the synthetic corpus first when it is missing."""
    root = dataset_root(cfg)
    if cfg.dataset.kind == "synth":
        from avkd.data.synth import generate  # PyAV: only needed to write the corpus

        fresh = not (root / "test_videodatainfo.json").exists()
        if fresh:
            console.print(f"[bold]>> generating the synthetic corpus[/] ({cfg.dataset.synth.videos} clips) in {root}")
        started = time.time()
        generate(root, videos=cfg.dataset.synth.videos, seed=cfg.dataset.synth.seed)
        if fresh:
            console.print(f"   done in {time.time() - started:.1f} s")
    elif not root.exists():
        raise DataError(f"dataset.root: {root} does not exist (see README: 'Using a real MSR-VTT download')")
    return load_msrvtt(root, max_videos=cfg.dataset.max_videos)
