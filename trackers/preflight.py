"""Pre-flight check of the tracking store: one StorageError line naming the path or URI and the cause.

Run before any expensive work. Without it, MLflow reports every SQLAlchemy OperationalError as
"temporarily unavailable" (a read-only file included), so a bad store surfaced after minutes of
retries as hundreds of lines ending in SQLAlchemy's autoflush hint.

SQLite (`sqlite:///path/mlflow.db`): the folder must be writable with room to grow; an existing file
must start with SQLite's header, hold MLflow's tables (or none yet), and accept a write transaction
within LOCK_WAIT_S (a write is tried and rolled back: that is the only honest test of read-only
files, folders SQLite cannot put its journal in, and a full disk). HTTP: the server must answer
/health within SERVER_TIMEOUT_S.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

from avkd.errors import StorageError
from avkd.storage import check_folder
from trackers.mlflow_tracker import sqlite_path

LOCK_WAIT_S = 5.0  # a write lock held longer than this at start-up is not a normal MLflow write
SERVER_TIMEOUT_S = 5.0
SQLITE_HEADER = b"SQLite format 3\x00"
MLFLOW_TABLES = ("experiments", "runs", "alembic_version")


def check_tracking_store(uri: str) -> None:
    """Raise StorageError (one line) if the tracking store at `uri` cannot take this sweep's runs."""
    db = sqlite_path(uri)
    if db is not None:
        check_sqlite_store(db)
    elif uri.startswith(("http://", "https://")):
        check_server(uri)


def check_sqlite_store(db: Path, lock_wait_s: float = LOCK_WAIT_S) -> None:
    if db.exists():
        _check_sqlite_file(db, lock_wait_s)  # first: its message names the file and what is wrong with it
    check_folder(db.parent, "tracking database")  # room to grow (and, for a new file, a writable folder)


def _check_sqlite_file(db: Path, lock_wait_s: float) -> None:
    if not db.is_file():
        raise StorageError(f"{db}: the tracking database is not a file")
    try:
        with open(db, "rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as err:
        raise StorageError(f"{db}: cannot read the tracking database ({err.strerror})") from None
    if header and header != SQLITE_HEADER:
        raise StorageError(
            f"{db}: not an SQLite database (corrupt or another format); move it away "
            "or set tracking.uri to another file"
        )
    try:
        conn = sqlite3.connect(f"{db.as_uri()}?mode=rw", uri=True, timeout=lock_wait_s, isolation_level=None)
    except sqlite3.Error as err:
        raise StorageError(f"{db}: cannot open the tracking database ({_sqlite_cause(db, err, lock_wait_s)})") from None
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        missing = [t for t in MLFLOW_TABLES if t not in tables]
        if tables and missing:
            raise StorageError(
                f"{db}: an SQLite database but not MLflow's (no table {missing[0]!r}; it has "
                f"{', '.join(sorted(tables)[:5])}); set tracking.uri to another file"
            )
        # A real write, rolled back: needs the write lock, a writable file, a journal next to it, disk space.
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("CREATE TABLE avkd_preflight_probe (x BLOB)")
        conn.execute("INSERT INTO avkd_preflight_probe VALUES (zeroblob(65536))")
        conn.execute("ROLLBACK")
    except sqlite3.Error as err:
        raise StorageError(f"{db}: {_sqlite_cause(db, err, lock_wait_s)}") from None
    finally:
        conn.close()


def _sqlite_cause(db: Path, err: sqlite3.Error, lock_wait_s: float) -> str:
    """The real cause of an SQLite error on `db`, in words a user can act on."""
    text = str(err).lower()
    if "readonly" in text or "read-only" in text:
        if os.statvfs(db.parent).f_flag & os.ST_RDONLY:
            return "read-only database (the file system is read-only)"
        if not os.access(db.parent, os.W_OK):
            return "read-only database (its folder is not writable: SQLite needs a journal file next to it)"
        return "read-only database (check file permissions)"
    if "locked" in text or "busy" in text:
        return (
            f"database is locked by another process (no write lock within {lock_wait_s:.0f} s); "
            "close the program holding it or retry"
        )
    if "full" in text:
        return "disk full (database or disk is full)"
    if "not a database" in text or "malformed" in text:
        return f"not a usable SQLite database ({err}); move it away or set tracking.uri to another file"
    if "unable to open" in text:
        return "cannot open the database file (permissions of the file or its folder)"
    return f"SQLite error: {err}"


def check_server(uri: str, timeout_s: float = SERVER_TIMEOUT_S) -> None:
    """An MLflow server answers GET /health; any HTTP answer counts as reachable (auth is MLflow's job)."""
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s):
            return
    except urllib.error.HTTPError:
        return
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, ConnectionRefusedError):
            cause = "connection refused: is `mlflow server` running there?"
        elif isinstance(reason, TimeoutError) or "timed out" in str(reason):
            cause = f"no answer within {timeout_s:.0f} s"
        else:
            cause = str(getattr(reason, "strerror", None) or reason)
        raise StorageError(f"{uri}: tracking server unreachable ({cause})") from None
