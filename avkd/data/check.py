"""`python -m avkd data check ROOT [--json OUT]`: validate a dataset folder before a sweep uses it.

Loads the annotations (a DataError, exit 2, only if they are unusable), probes every video file in a
thread pool, and prints per split: videos, captions, captions that needed Unicode normalisation
(NFKC, typographic apostrophes, casefold: see avkd/data/vocab.py), missing files, clips without audio
and undecodable files, then the problem videos with their reasons.
"""
from __future__ import annotations

import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from avkd.data.media import MediaInfo, probe
from avkd.data.msrvtt import SPLITS, load_msrvtt
from avkd.data.vocab import needs_normalization
from avkd.errors import MediaError

MAX_LISTED = 20  # problem videos printed; the rest is summarised as "... and N more"


def _probe(path: Path) -> MediaInfo | MediaError:
    try:
        return probe(path)
    except MediaError as err:
        return err


def check_dataset(root: str | Path, workers: int | None = None) -> dict:
    """Counts per split and the list of problems (annotation issues + undecodable files), as plain data."""
    dataset = load_msrvtt(root)
    with_file = [v for v in dataset.videos.values() if v.path is not None]
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # decord/PyAV release the GIL while decoding
        probed = dict(zip((v.video_id for v in with_file), pool.map(_probe, (v.path for v in with_file))))
    problems = [{"kind": i.kind, "video_id": i.video_id, "file": i.file, "reason": i.message} for i in dataset.issues]
    counts = {}
    for split in SPLITS:
        declared = [v for v in dataset.videos.values() if v.split == split]
        results = [probed[v.video_id] for v in declared if v.video_id in probed]
        counts[split] = {
            "videos": len(declared),
            "captions": sum(len(v.captions) for v in declared),
            "normalized": sum(needs_normalization(c) for v in declared for c in v.captions),
            "missing_files": sum(v.path is None for v in declared),
            "no_audio": sum(isinstance(r, MediaInfo) and not r.has_audio for r in results),
            "undecodable": sum(isinstance(r, MediaError) for r in results),
            "usable": sum(v.usable and isinstance(probed.get(v.video_id), MediaInfo) for v in declared),
            "duration_s": round(sum(r.duration_s for r in results if isinstance(r, MediaInfo)), 1),
        }
    for vid, result in sorted(probed.items()):
        if isinstance(result, MediaError):
            problems.append({"kind": "undecodable", "video_id": vid, "file": result.video, "reason": result.reason})
    no_audio = sorted(vid for vid, r in probed.items() if isinstance(r, MediaInfo) and not r.has_audio)
    return {"root": str(dataset.root), "fingerprint": dataset.fingerprint(), "splits": counts,
            "no_audio": no_audio, "problems": problems}


def print_report(report: dict, console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"dataset {report['root']}  (fingerprint {report['fingerprint']})", markup=False, soft_wrap=True)
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False)
    columns = {"videos": "videos", "captions": "captions", "normalized": "normed", "missing_files": "missing", "no_audio": "no audio",
               "undecodable": "undecodable", "usable": "usable", "duration_s": "seconds"}
    table.add_column("split")
    for header in columns.values():
        table.add_column(header, justify="right")
    for split, counts in report["splits"].items():
        table.add_row(split, *(str(counts[c]) for c in columns))
    console.print(table)
    if any(counts["normalized"] for counts in report["splits"].values()):
        console.print("normed: captions changed by Unicode normalisation (NFKC, typographic apostrophes, casefold)")
    problems = report["problems"]
    if not problems:
        console.print("no problems found")
        return
    console.print(f"{len(problems)} problem(s):")
    for p in problems[:MAX_LISTED]:
        console.print(f"  {p['kind']:<24} {p['video_id'] or '-':<14} {p['reason']}",
                      markup=False, highlight=False, soft_wrap=True)
    if len(problems) > MAX_LISTED:
        console.print(f"  ... and {len(problems) - MAX_LISTED} more")


def cmd_check(args) -> int:
    """Exit 0 even with problem videos (skipped downstream); DataError (exit 2) if the annotations are unusable."""
    # The report lists every annotation issue itself; the loader's warnings would only repeat them.
    # The level is restored afterwards: cmd_check also runs in-process (tests, other commands).
    loader_log = logging.getLogger("avkd.data.msrvtt")
    level = loader_log.level
    loader_log.setLevel(logging.ERROR)
    try:
        report = check_dataset(args.root)
    finally:
        loader_log.setLevel(level)
    print_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0
