"""Pre-flight checks of the folders a sweep writes to: each problem is one StorageError line, up front.

A full disk found an hour into a sweep costs the hour and ends in whatever error the writer raised
(torch's "unexpected pos", Ray's EOFError); a read-only or full folder found here costs a second.
Each folder is created if needed, its file system must be writable and have MIN_FREE_MB free, and a
small probe file is really written (and fsynced) and removed: that also catches permissions, quotas
and read-only mounts that free-space numbers do not show.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from avkd.errors import StorageError

# What each folder needs at least to start; far below a real sweep's needs, far above a full disk.
MIN_FREE_MB = {"feature cache": 64, "runs folder": 64, "dataset folder": 64, "tracking database": 16}
PROBE_BYTES = 64 * 1024

_CAUSES = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def os_cause(err: OSError) -> str:
    """A short, real cause for an OSError: 'disk full (...)', 'permission denied', else its strerror."""
    return _CAUSES.get(err.errno, err.strerror or str(err))


def check_folder(folder: Path, what: str, min_free_mb: int | None = None) -> None:
    """`folder` exists (created if needed), is writable, and has `min_free_mb` free; else a StorageError."""
    min_free_mb = MIN_FREE_MB.get(what, 16) if min_free_mb is None else min_free_mb
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StorageError(f"{folder}: cannot create the {what} ({os_cause(err)})") from None
    if not folder.is_dir():
        raise StorageError(f"{folder}: the {what} is not a folder")
    stat = os.statvfs(folder)
    if stat.f_flag & os.ST_RDONLY:
        raise StorageError(f"{folder}: the {what} is on a read-only file system")
    free_mb = stat.f_bavail * stat.f_frsize / 2**20
    if free_mb < min_free_mb:
        raise StorageError(
            f"{folder}: disk full for the {what} ({free_mb:.1f} MiB free, at least {min_free_mb} MiB needed)"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".avkd-probe-") as probe:
            probe.write(b"\0" * PROBE_BYTES)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        raise StorageError(f"{folder}: cannot write to the {what} ({os_cause(err)})") from None


def check_sweep_folders(folders: dict[str, Path]) -> None:
    """check_folder for each {what: folder}, in order; the first problem raises."""
    for what, folder in folders.items():
        check_folder(folder, what)
