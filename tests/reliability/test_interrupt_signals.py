"""Reliability: the driver's signal handling (avkd/sweep/interrupt.py) in a real process, real signals.

Fast companions of test_interrupts.py (which interrupts whole sweeps): the first SIGINT/SIGTERM
raises SweepInterrupted at once outside Ray Tune; inside a deferred section (Tuner.fit, clean-up)
it is only recorded; a second signal forces an exit and takes the driver's child processes with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from . import sweep_helpers as H
from .conftest import PYTHON, REPO, cli_env

SCRIPT = """
import subprocess, sys, time
from avkd.sweep.interrupt import Interrupts, SweepInterrupted, deferred, signal_received
with Interrupts() as it:
    try:
        child = subprocess.Popen(["sleep", "300"])
        print("child", child.pid, flush=True)
        if sys.argv[1] == "deferred":
            with deferred():
                print("ready", flush=True)
                while True:
                    time.sleep(0.1)
                    if signal_received():
                        print("recorded", flush=True)
                        time.sleep(300)
        print("ready", flush=True)
        time.sleep(300)
    except SweepInterrupted as stop:
        child.kill()
        print("interrupted", stop, flush=True)
        sys.exit(128 + stop.signum)
"""


def _start(mode: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([PYTHON, "-c", SCRIPT, mode], cwd=REPO, env=cli_env(), stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline().split()[1])
    assert proc.stdout.readline().strip() == "ready"
    return proc, child


def _alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_first_signal_stops_at_once(sig):
    proc, _ = _start("plain")
    t0 = time.time()
    proc.send_signal(getattr(signal, sig))
    rc = proc.wait(timeout=20)
    out = proc.stdout.read()
    assert rc == 128 + getattr(signal, sig) and f"interrupted {sig}" in out, (rc, out)
    assert time.time() - t0 < 5


def test_deferred_records_and_second_signal_forces():
    proc, child = _start("deferred")
    try:
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip().endswith("(press Ctrl-C again to force)")
        assert proc.stdout.readline().strip() == "recorded"  # no exception inside the deferred section
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=20)
        assert rc == 130, rc
        deadline = time.time() + 5
        while _alive(child) and time.time() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the forced exit left the driver's child process running"
    finally:
        proc.kill()
        try:
            os.kill(child, signal.SIGKILL)
        except OSError:
            pass


AFTER_RAY = """
import os, signal, sys, time
from avkd.runtime import start_ray, stop_ray
from avkd.sweep.interrupt import Interrupts, SweepInterrupted, reinstall
with Interrupts() as it:
    try:
        start_ray()
        reinstall()
        stop_ray()  # what the driver does after the last trial phase, before the report
        print("ready", flush=True)
        time.sleep(120)
    except SweepInterrupted as stop:
        print("interrupted", stop, flush=True)
        sys.exit(3)
"""


def test_sigterm_after_ray_shutdown_is_still_handled():
    """ray.shutdown() resets SIGTERM to the default action in C (Python still lists its handler): the
    report phase, which runs after it, died of SIGTERM (exit -15) instead of stopping the sweep."""
    ray_tmp = H.ray_tmpdir()  # short: Ray's socket paths must stay under 108 characters
    proc = subprocess.Popen(
        [PYTHON, "-c", AFTER_RAY],
        cwd=REPO,
        env=H.sweep_env(ray_tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 3
        assert proc.stdout.read().strip().splitlines()[-1] == "interrupted SIGTERM"
    finally:
        H.stop_session(proc.pid, ray_tmp)
        H.remove_ray_tmp(ray_tmp)
