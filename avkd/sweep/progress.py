"""What a person watching a sweep sees: one live view in a terminal, plain progress lines in a log.

In a terminal: one rich live display for the whole sweep (the phase, done/total, elapsed, ETA), with
every other line printed above it. Not a terminal (a log file, CI): no live display and no ANSI
escapes; a plain line when a phase starts, when a unit of it finishes, and at least every
PLAIN_EVERY_S seconds while a long phase runs (feature extraction, the timing benchmark, trials), e.g.

    [progress 00:03:10] features: 96/180 (53%), 1m05s elapsed, ETA 0m58s

No Ray here: the Tune callback and stopper that feed this view live in avkd/sweep/tune_callbacks.py,
imported only when a phase has trials to run (the rerun of a finished sweep never imports Ray).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from rich.console import Console

PLAIN_EVERY_S = float(os.environ.get("AVKD_PROGRESS_EVERY_S", "30"))  # heartbeat of the plain lines


def is_terminal() -> bool:
    return sys.stdout.isatty()


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


class Phase:
    """One phase of the sweep: `advance()` as units finish (videos, trials); what the view shows."""

    def __init__(self, view: "SweepProgress", name: str, total: int | None, unit: str):
        self.view, self.name, self.total, self.unit = view, name, total, unit
        self.done = 0
        self.started = time.monotonic()
        self._counted_from = 0  # units that were already done (cache hits) do not count in the rate
        self._rate_started = self.started

    def set_total(self, total: int) -> None:
        self.total = total
        self.view._update(self)

    def skip(self, n: int) -> None:
        """`n` units that needed no work (cached, already finished): done, but not in the ETA's rate."""
        self.done += n
        self._counted_from = self.done
        self._rate_started = time.monotonic()
        self.view._update(self)

    def advance(self, n: int = 1, note: str = "") -> None:
        self.done += n
        self.view._update(self, note)

    def eta_s(self) -> float | None:
        worked = self.done - self._counted_from
        if not self.total or worked <= 0:
            return None
        rate = worked / max(1e-9, time.monotonic() - self._rate_started)
        return (self.total - self.done) / rate

    def line(self) -> str:
        """The plain progress line: phase, done/total, elapsed, ETA."""
        elapsed = time.monotonic() - self.started
        if self.total:
            eta = self.eta_s()
            count = f"{self.done}/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%)"
            return f"{self.name}: {count}, {_clock(elapsed)} elapsed" + (
                f", ETA {_clock(eta)}" if eta is not None else ""
            )
        return f"{self.name}: running, {_clock(elapsed)} elapsed"

    def __enter__(self) -> "Phase":
        return self

    def __exit__(self, *exc) -> None:
        self.view._end(self, failed=exc[0] is not None)


class SweepProgress:
    """The sweep's progress view; `with SweepProgress(console) as view:` then `with view.phase(...) as p:`."""

    def __init__(self, console: Console, live: bool | None = None, every_s: float = PLAIN_EVERY_S):
        self.console = console
        self.live = is_terminal() if live is None else live
        self.every_s = every_s
        self.t0 = time.monotonic()
        self.current: Phase | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._progress = None
        self._tasks: dict[str, Any] = {}
        self._last_plain = 0.0

    # -- lifecycle --
    def __enter__(self) -> "SweepProgress":
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self._progress.__enter__()
        else:
            self._heartbeat = threading.Thread(target=self._beat, name="avkd-progress", daemon=True)
            self._heartbeat.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=2)

    def phase(self, name: str, total: int | None = None, unit: str = "") -> Phase:
        p = Phase(self, name, total, unit)
        with self._lock:
            self.current = p
        if self._progress is not None:
            self._tasks[name] = self._progress.add_task(name, total=total, unit=unit)
        else:
            self._plain(f"{name}: started" + (f" ({total} {unit})" if total else ""))
        return p

    # -- output --
    def _plain(self, text: str) -> None:
        self._last_plain = time.monotonic()
        stamp = _clock(time.monotonic() - self.t0)
        self.console.print(f"[progress {stamp}] {text}", markup=False, highlight=False, soft_wrap=True)

    def _update(self, p: Phase, note: str = "") -> None:
        if self._progress is not None:
            task = self._tasks.get(p.name)
            if task is not None:
                self._progress.update(task, completed=p.done, total=p.total)
            if note:
                self.console.print(note)
        elif note or (p.total and (p.done >= p.total or time.monotonic() - self._last_plain >= self.every_s / 3)):
            self._plain(p.line() + (f" - {note}" if note else ""))  # counts alone: throttled, not one per video

    def _end(self, p: Phase, failed: bool) -> None:
        with self._lock:
            if self.current is p:
                self.current = None
        if self._progress is not None:
            task = self._tasks.get(p.name)
            if task is not None:
                self._progress.update(task, total=p.total or p.done or 1, completed=p.total or p.done or 1)
        else:
            self._plain(f"{p.name}: {'stopped' if failed else 'done'} in {_clock(time.monotonic() - p.started)}")

    def _beat(self) -> None:
        """Not a terminal: the current phase's line every `every_s` seconds (long phases are never silent)."""
        while not self._stop.wait(self.every_s):
            with self._lock:
                p = self.current
            if p is not None:
                self._plain(p.line())


class NullPhase:
    """A phase that shows nothing (callers outside a sweep)."""

    def set_total(self, total: int) -> None: ...
    def skip(self, n: int) -> None: ...
    def advance(self, n: int = 1, note: str = "") -> None: ...
