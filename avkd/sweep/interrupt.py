"""Ctrl-C (SIGINT) and SIGTERM (a scheduler's pre-emption) during a sweep: stop honestly, within seconds.

The first signal is recorded and stops the sweep at once:
- outside Ray Tune (extraction, timing, report) the handler raises SweepInterrupted, a BaseException
  (like KeyboardInterrupt) that no `except Exception` in the code below swallows;
- inside `Tuner.fit()` an exception would land in Ray's native code (it comes out as a
  SystemError), so the handler records the signal, kills this driver's Ray workers (the trials and
  the sweep's METEOR service, avkd/evaluation/meteor_service.py) and their children (JVMs) at once,
  and `StopOnInterrupt` (a Tune stopper) ends the experiment at Tune's next step; fit() then returns
  within a second or two instead of waiting for each trial to wind down. Tune's own SIGINT handler
  is disabled (TUNE_DISABLE_SIGINT_HANDLER): it swallows the signal and lets fit() return as if the
  sweep had finished.
The driver then marks running trials KILLED, starts no further phase, ends the sweep run KILLED,
prints what finished, what was killed and what never started, and exits 128 + signal number.
A second signal forces: every child process of the driver is killed and the driver exits at once
(a rerun marks what it left RUNNING as KILLED: its owner is provably gone).
"""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)
RAY_SERVICES = ("Agent",)  # ray:: processes that are Ray's own services, not trial workers (DashboardAgent ...)


class SweepInterrupted(BaseException):
    """Raised in the driver's main thread by the first SIGINT/SIGTERM outside Ray Tune."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _children(pid: int) -> list[int]:
    """Every descendant of `pid` (from /proc), parents before their children."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_trial_workers() -> None:
    """SIGKILL the Ray worker processes this driver started (`ray::...`, not Ray's own agents) and
    everything they started: their subtrees are listed before any dies (a JVM would be re-parented)."""
    doomed = []
    for pid in _children(os.getpid()):
        cmd = _cmdline(pid)
        if cmd.startswith("ray::") and not any(s in cmd.split()[0] for s in RAY_SERVICES):
            doomed += [pid, *_children(pid)]
    for pid in doomed:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


class Interrupts:
    """Installs the SIGINT/SIGTERM handlers for the life of a sweep (a context manager)."""

    def __init__(self, console=None):
        self.signum: int | None = None
        self.in_ray = False  # inside Tuner.fit(): record only (StopOnInterrupt ends the experiment)
        self.console = console
        self._previous: dict[int, object] = {}

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:  # the second signal: force
            self._say(
                f"!! second {signal.Signals(signum).name}: forcing exit (runs left RUNNING are "
                "marked KILLED by the next run)"
            )
            for pid in reversed(_children(os.getpid())):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            os._exit(128 + signum)
        self.signum = signum
        self._say(f">> {self.name} received: stopping the sweep (press Ctrl-C again to force)")
        if not self.in_ray:
            raise SweepInterrupted(signum)
        kill_trial_workers()

    def check(self) -> None:
        """Raise SweepInterrupted if a signal arrived (between phases, after Tuner.fit())."""
        if self.signum is not None:
            raise SweepInterrupted(self.signum)

    def _say(self, text: str) -> None:
        try:
            (self.console.print if self.console else print)(text)
            sys.stdout.flush()
        except Exception:  # noqa: BLE001 - printing must never stop the handler
            pass

    def __enter__(self) -> "Interrupts":
        global _ACTIVE
        _ACTIVE = self
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def reinstall(self) -> None:
        """Take SIGTERM (and SIGINT) back: `ray.init()` installs a native SIGTERM handler in the driver
        that prints a stack dump and aborts (exit -6) instead of stopping the sweep."""
        for sig in SIGNALS:
            signal.signal(sig, self._handle)

    def __exit__(self, *exc) -> None:
        global _ACTIVE
        _ACTIVE = None
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def received() -> str:
    """The name of the signal the installed Interrupts recorded ("SIGINT", "SIGTERM"), or ""."""
    return _ACTIVE.name if _ACTIVE is not None else ""


def signal_received() -> bool:
    """Has the installed Interrupts recorded a signal? (what StopOnInterrupt asks, module-level so that
    the stopper holds no state and pickles with Tune's experiment state)"""
    return _ACTIVE is not None and _ACTIVE.signum is not None


_ACTIVE: Interrupts | None = None


@contextmanager
def deferred():
    """Signals are only recorded (and trial workers killed), not raised: around `Tuner.fit()` (an
    exception would land in Ray's native code; StopOnInterrupt ends the experiment) and around the
    clean-up after it (Ray shutdown, marking runs KILLED), which must run to the end."""
    if _ACTIVE is None:
        yield
        return
    _ACTIVE.in_ray = True
    try:
        yield
    finally:
        _ACTIVE.in_ray = False


def reinstall() -> None:
    """After `ray.init()`: make the installed Interrupts handle SIGINT/SIGTERM again (see Interrupts.reinstall)."""
    if _ACTIVE is not None:
        _ACTIVE.reinstall()


def check() -> None:
    """Raise SweepInterrupted if the installed Interrupts recorded a signal (a phase boundary)."""
    if _ACTIVE is not None:
        _ACTIVE.check()
