"""Who runs a sweep: the owner identity of a driver process and the one-driver-per-sweep lock.

Rules (README, "Concurrency and interrupts"):
- A sweep is identified by (tracking store, experiment, sweep name): one driver at a time. The lock
  is an flock on <temp dir>/avkd-sweeps/<hash>.lock; the kernel releases it when the driver dies
  (even by kill -9), so a crashed driver never blocks the next one. The file holds the owner as
  JSON, so a refusal can name the live driver (host, pid, sweep run id).
- An owner is (host, pid, process start time): the start time tells a live driver from a new
  process that got the same pid. A run is stale only when its owner is provably gone: same host and
  that process no longer exists, or (another host) its heartbeat is older than HEARTBEAT_STALE_S.
- `other_sweeps_running()` lists the other live drivers on this machine (the Table II timing warns
  when there are any: their trials compete for the same cores).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from avkd.errors import AvkdError

HEARTBEAT_S = 30.0  # a live driver refreshes its sweep run's heartbeat tag this often
HEARTBEAT_STALE_S = 600.0  # a heartbeat older than this (from another host) means its driver is gone
WAIT_POLL_S = 2.0


def lock_folder() -> Path:
    return Path(tempfile.gettempdir()) / "avkd-sweeps"


def _process_start(pid: int) -> int | None:
    """Start time of a process in clock ticks after boot (/proc/<pid>/stat field 22); None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: int  # process start time (clock ticks after boot), tells a reused pid apart

    @classmethod
    def current(cls) -> "Owner":
        return cls(socket.gethostname(), os.getpid(), _process_start(os.getpid()) or 0)

    @classmethod
    def parse(cls, text: str | None) -> "Owner | None":
        """From the tag text "host:pid:started"; None for missing or malformed text."""
        try:
            host, pid, started = (text or "").rsplit(":", 2)
            return cls(host, int(pid), int(started))
        except ValueError:
            return None

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}:{self.started}"

    def alive(self) -> bool | None:
        """True/False on this host (the process exists with the same start time); None on another host."""
        if self.host != socket.gethostname():
            return None
        return _process_start(self.pid) == self.started


def owner_gone(owner_text: str | None, heartbeat: str | None, now: float | None = None) -> bool:
    """Is the driver behind a sweep run provably gone? (see the module docstring)"""
    owner = Owner.parse(owner_text)
    alive = owner.alive() if owner else None
    if alive is not None:
        return not alive
    try:
        beat = float(heartbeat or "")
    except ValueError:
        return False  # no owner we can check and no heartbeat: not provably gone
    return (now or time.time()) - beat > HEARTBEAT_STALE_S


def _lock_path(key: str) -> Path:
    return lock_folder() / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.lock"


class SweepLock:
    """The one-driver-per-sweep lock (an flock held for the life of the driver process)."""

    def __init__(self, uri: str, experiment: str, sweep: str):
        self.key = f"{uri}|{experiment}|{sweep}"
        self.sweep, self.uri = sweep, uri
        self.path = _lock_path(self.key)
        self._fd: int | None = None

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self, wait: bool = False, on_wait=None) -> None:
        """Take the lock, or raise AvkdError naming the live driver (wait=True: wait for it instead)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        told = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    os.close(fd)
                    raise AvkdError(self.refusal()) from None
                if not told and on_wait:
                    on_wait(self.refusal(waiting=True))
                told = True
                time.sleep(WAIT_POLL_S)
        self._fd = fd
        self.describe()

    def describe(self, run_id: str | None = None) -> None:
        """Write who holds the lock (and, once known, the sweep run id) into the lock file."""
        if self._fd is None:
            return
        info = {**asdict(Owner.current()), "sweep": self.sweep, "uri": self.uri, "run_id": run_id, "since": time.time()}
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, json.dumps(info).encode(), 0)

    def refusal(self, waiting: bool = False) -> str:
        h = self.holder()
        who = (
            f"host {h.get('host', '?')}, pid {h.get('pid', '?')}, sweep run {h.get('run_id') or '(not yet opened)'}"
            if h
            else "a driver that has not yet written its details"
        )
        if waiting:
            return f"sweep '{self.sweep}' is running ({who}); waiting for it to end (--wait)"
        return (
            f"sweep '{self.sweep}' is already running against {self.uri} ({who}); "
            f"wait for it, stop it, or rerun with --wait"
        )

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock; the file stays (harmless)
            self._fd = None

    def __enter__(self) -> "SweepLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def other_sweeps_running() -> list[dict]:
    """The live sweep drivers on this machine other than this process (their lock files' contents)."""
    found = []
    folder = lock_folder()
    for path in sorted(folder.glob("*.lock")) if folder.is_dir() else []:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # free: nobody holds it
            fcntl.flock(fd, fcntl.LOCK_UN)
            continue
        except BlockingIOError:
            pass
        finally:
            os.close(fd)
        try:
            info = json.loads(path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if info.get("pid") != os.getpid():
            found.append(info)
    return found
