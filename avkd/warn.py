"""Warnings a person reads once per sweep, not once per process.

A sweep runs in several processes (the driver, Ray trial workers, extraction shards) that all load
the same scorers and backbones, so a per-process "once" prints the same line many times. The driver
sets AVKD_WARN_DIR to a fresh folder; every process claims a warning there with an exclusive create
before printing it, so the first one prints and the others stay quiet. Without the variable (a single
command, a test) it is once per process.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

WARN_DIR_ENV = "AVKD_WARN_DIR"
_seen: set[str] = set()


def _claim(message: str) -> bool:
    """True for the first process of this sweep to claim `message` (always True without a warn folder)."""
    folder = os.environ.get(WARN_DIR_ENV)
    if not folder:
        return True
    marker = Path(folder) / hashlib.sha1(message.encode()).hexdigest()[:20]
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    except OSError:
        return True  # the folder is gone (the sweep ended): better twice than never
    return True


def warn_once(message: str, prefix: str = "warning: ", seen: set[str] | None = None) -> bool:
    """Print `prefix + message` to stderr unless this sweep already printed it; True when printed.

    `seen`: the process's memory of printed messages (default: this module's; a caller may keep its own)."""
    seen = _seen if seen is None else seen
    if message in seen:
        return False
    seen.add(message)
    if not _claim(message):
        return False
    print(prefix + message, file=sys.stderr, flush=True)
    return True
