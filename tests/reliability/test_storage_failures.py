"""Reliability: storage failures end a sweep with one line naming the path and the real cause.

Each case runs the real CLI (`python -m avkd sweep` on a copy of sweeps/tiny.yaml) as a process against
a real broken store: a read-only file system, a SQLite write lock held by another process, garbage
bytes, a non-MLflow SQLite file, a closed port, a full disk. Held: exit code 2, exactly one line on
stderr (`error: <path>: <cause>`), no traceback, and a failure within seconds (before features,
trials or Ray). The full-disk and read-only cases need a small tmpfs (`mount -t tmpfs`, root); where
the machine does not allow it they are skipped with the reason. Also here: MLflow errors that no
retry can fix are not retried, a cache entry (or torch.save of calibrated weights) whose write hit a
full disk is one line and never trusted, a disk that fills up during extraction, and permission
denied (as root: in a child without CAP_DAC_OVERRIDE, since root ignores permission bits).
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from . import sweep_helpers as H
from .conftest import PYTHON, REPO, cli_env

FAIL_WITHIN_S = 45  # interpreter + torch/mlflow imports on a busy 2-core machine; the checks take < 6 s


# ---- fixtures: tmpfs mounts, a valid MLflow database ---------------------------------------------


class Tmpfs:
    """A small tmpfs mounted at `path` (unmounted at teardown), which can be filled or made read-only."""

    def __init__(self, path: Path, size: str = "2m"):
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {proc.stderr.strip()}")

    def fill(self) -> None:
        """Write a filler file until the file system says ENOSPC."""
        with open(self.path / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass

    def read_only(self) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(self.path)], check=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)


@pytest.fixture
def tmpfs(tmp_path):
    mounts: list[Tmpfs] = []

    def mount(name: str = "mnt", size: str = "2m") -> Tmpfs:
        mounts.append(Tmpfs(tmp_path / name, size))
        return mounts[-1]

    yield mount
    for m in mounts:
        m.unmount()


def make_mlflow_db(db: Path) -> None:
    """A real MLflow SQLite store with the sweep's experiment (created by MLflow in a child process)."""
    code = (
        "import sys; from trackers import mlflow_tracker as mt; "
        "mt.ensure_experiment('sqlite:///' + sys.argv[1], 'tiny')"
    )
    subprocess.run([PYTHON, "-c", code, str(db)], cwd=REPO, env=cli_env(), check=True, capture_output=True, timeout=120)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def run_cli_sweep(tmp: Path, corpus: Path, uri: str, **paths: Path) -> tuple[int, list[str], str, float]:
    """(exit code, stderr lines, stdout, seconds) of `python -m avkd sweep` on a tiny.yaml copy."""
    sweep = H.write_sweep(tmp, corpus, uri, cache_dir=paths.get("cache_dir"))
    if "runs_dir" in paths:
        sweep.write_text(sweep.read_text().replace(f"runs_dir: {tmp / 'runs'}", f"runs_dir: {paths['runs_dir']}"))
    ray_tmp = H.ray_tmpdir()
    t0 = time.time()
    proc = subprocess.run(
        [PYTHON, "-m", "avkd", "sweep", str(sweep), "--report-out", str(tmp / "reports")],
        cwd=REPO,
        env=H.sweep_env(ray_tmp),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    seconds = time.time() - t0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    print(f"exit {proc.returncode} after {seconds:.1f} s; stderr: {lines}")
    return proc.returncode, lines, proc.stdout, seconds


def assert_one_line(result, *expected: str) -> str:
    rc, lines, stdout, seconds = result
    assert rc == 2, (rc, lines[-20:], stdout[-2000:])
    assert len(lines) == 1, lines[-20:]
    line = lines[0]
    assert line.startswith("error: ") and "Traceback" not in line
    for text in expected:
        assert text in line, line
    assert seconds < FAIL_WITHIN_S, seconds
    assert ">> sweep" not in stdout  # it stopped before the sweep run, features, Ray or any trial
    return line


# ---- the cases: each sets up a broken store and says what the one line must contain ----------------
# setup(tmp_path, tmpfs, cleanup) -> (tracking URI, {"cache_dir"/"runs_dir": folder}, [expected texts])


def _read_only_db(tmp, tmpfs, cleanup):
    mnt = tmpfs("ro", size="8m")
    db = mnt.path / "mlflow.db"
    make_mlflow_db(db)
    mnt.read_only()
    return f"sqlite:///{db}", {}, [f"{db}: read-only database", "file system is read-only"]


def _locked_db(tmp, tmpfs, cleanup):
    db = tmp / "mlflow.db"
    make_mlflow_db(db)
    # Another process holds SQLite's write lock (a hung writer, or `sqlite3 mlflow.db` + BEGIN EXCLUSIVE).
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sqlite3, sys, time; c = sqlite3.connect(sys.argv[1], isolation_level=None); "
                "c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); time.sleep(600)"
            ),
            str(db),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    cleanup.append(lambda: (holder.kill(), holder.wait()))
    assert holder.stdout.readline().strip() == "locked"
    return f"sqlite:///{db}", {}, [f"{db}: database is locked by another process"]


def _garbage_db(tmp, tmpfs, cleanup):
    db = tmp / "mlflow.db"
    db.write_bytes(np.random.default_rng(0).bytes(200_000))
    return f"sqlite:///{db}", {}, [f"{db}: not an SQLite database"]


def _json_db(tmp, tmpfs, cleanup):
    db = tmp / "mlflow.db"
    db.write_text('{"experiments": []}\n')  # e.g. a JSON export saved under the wrong name
    return f"sqlite:///{db}", {}, [f"{db}: not an SQLite database"]


def _foreign_sqlite_db(tmp, tmpfs, cleanup):
    db = tmp / "mlflow.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE songs (title TEXT)")
    return f"sqlite:///{db}", {}, [f"{db}: an SQLite database but not MLflow's", "no table 'experiments'"]


def _corrupt_pages_db(tmp, tmpfs, cleanup):
    """A valid SQLite header and first page, garbage behind it."""
    db = tmp / "mlflow.db"
    make_mlflow_db(db)
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    data[page:] = np.random.default_rng(1).bytes(len(data) - page)
    db.write_bytes(bytes(data))
    return f"sqlite:///{db}", {}, [f"{db}: not a usable SQLite database", "malformed"]


def _unreachable_server(tmp, tmpfs, cleanup):
    uri = f"http://127.0.0.1:{closed_port()}"
    return uri, {}, [f"{uri}: tracking server unreachable (connection refused"]


def _full(where: str):
    def setup(tmp, tmpfs, cleanup):
        mnt = tmpfs("full")
        mnt.fill()
        if where == "cache_dir":
            return (
                f"sqlite:///{tmp / 'mlflow.db'}",
                {where: mnt.path / "cache"},
                [f"{mnt.path / 'cache'}: disk full for the feature cache"],
            )
        if where == "runs_dir":
            return (
                f"sqlite:///{tmp / 'mlflow.db'}",
                {where: mnt.path / "runs"},
                [f"{mnt.path / 'runs'}: disk full for the runs folder"],
            )
        return f"sqlite:///{mnt.path / 'mlflow.db'}", {}, [f"{mnt.path}: disk full for the tracking database"]

    return setup


def _full_under_existing_db(tmp, tmpfs, cleanup):
    mnt = tmpfs("full", size="4m")
    db = mnt.path / "mlflow.db"
    make_mlflow_db(db)
    mnt.fill()
    return f"sqlite:///{db}", {}, [f"{db}: disk full"]


def _read_only_runs_folder(tmp, tmpfs, cleanup):
    mnt = tmpfs("ro")
    (mnt.path / "runs").mkdir()
    mnt.read_only()
    return (
        f"sqlite:///{tmp / 'mlflow.db'}",
        {"runs_dir": mnt.path / "runs"},
        [f"{mnt.path / 'runs'}: the runs folder is on a read-only file system"],
    )


CASES = {
    "read-only mlflow.db": _read_only_db,
    "locked mlflow.db": _locked_db,
    "garbage mlflow.db": _garbage_db,
    "non-SQLite mlflow.db": _json_db,
    "SQLite file of another program": _foreign_sqlite_db,
    "corrupt pages behind a valid header": _corrupt_pages_db,
    "unreachable tracking server": _unreachable_server,
    "full disk: feature cache": _full("cache_dir"),
    "full disk: runs folder": _full("runs_dir"),
    "full disk: new tracking DB": _full("db"),
    "full disk: existing tracking DB": _full_under_existing_db,
    "read-only runs folder": _read_only_runs_folder,
}


@pytest.fixture
def broken_store(request, tmp_path, tmpfs):
    cleanup: list = []
    yield CASES[request.param](tmp_path, tmpfs, cleanup)
    for undo in cleanup:
        undo()


@pytest.mark.parametrize("broken_store", list(CASES), indirect=True)
def test_preflight_names_path_and_cause(broken_store, tmp_path):
    """The checks the sweep runs first, in-process: one line, within seconds, nothing written."""
    from avkd.errors import StorageError
    from avkd.storage import check_sweep_folders
    from trackers.preflight import LOCK_WAIT_S, check_tracking_store

    uri, paths, expected = broken_store
    folders = {
        "feature cache": paths.get("cache_dir", tmp_path / "cache"),
        "runs folder": paths.get("runs_dir", tmp_path / "runs"),
    }
    t0 = time.time()
    with pytest.raises(StorageError) as err:
        check_sweep_folders(folders)
        check_tracking_store(uri)
    seconds = time.time() - t0
    print(f"{err.value}  [{seconds:.2f} s]")
    assert "\n" not in str(err.value)
    for text in expected:
        assert text in str(err.value)
    assert seconds < LOCK_WAIT_S + 3


@pytest.mark.slow
@pytest.mark.parametrize("broken_store", list(CASES), indirect=True)
def test_sweep_cli_fails_in_one_line(broken_store, tiny_corpus, tmp_path):
    uri, paths, expected = broken_store
    line = assert_one_line(run_cli_sweep(tmp_path, tiny_corpus, uri, **paths), *expected)
    assert line.count(uri.removeprefix("sqlite:///")) <= 1


# ---- no retries of permanent errors; nothing half-written trusted --------------------------------


def test_permanent_mlflow_errors_are_not_retried(tmp_path, tmpfs):
    """Past the pre-flight (the store turns read-only mid-sweep): the tracker gives up at once, in one
    line, instead of retrying 'temporarily unavailable' for RETRY_SECONDS."""
    from avkd.errors import AvkdError
    from trackers import mlflow_tracker as mt

    mnt = tmpfs("ro", size="8m")
    uri = f"sqlite:///{mnt.path / 'mlflow.db'}"
    make_mlflow_db(mnt.path / "mlflow.db")
    mnt.read_only()  # (not possible while this process holds the file open for writing)
    exp_id = mt.ensure_experiment(uri, "tiny")  # reads still work
    t0 = time.time()
    with pytest.raises(AvkdError, match=r"read-only database \(check file permissions\) \(not retried\)") as err:
        mt.RunLogger(uri, exp_id, "after-remount", tags={})
    assert time.time() - t0 < 5 < mt.RETRY_SECONDS
    assert "\n" not in str(err.value)
    assert not mt._is_transient(sqlite3.OperationalError("database or disk is full"))
    assert not mt._is_transient(sqlite3.OperationalError("no such table: experiments"))
    assert mt._is_transient(sqlite3.OperationalError("database is locked"))  # a busy writer: retried


def test_cache_entry_whose_write_hits_a_full_disk_is_never_trusted(tmpfs):
    from avkd.errors import StorageError
    from avkd.features.cache import atomic_savez, read_npz

    mnt = tmpfs("cache", size="2m")
    entry = mnt.path / "visual" / "entry.npz"
    atomic_savez(entry, key=np.array("k1"), a=np.arange(3))
    big = np.random.default_rng(0).random(1_000_000)  # 8 MB: cannot fit
    with pytest.raises(StorageError) as err:
        atomic_savez(entry, key=np.array("k1"), a=big)
    assert str(err.value) == f"{entry}: cannot write to the feature cache: disk full (no space left on device)"
    assert read_npz(entry, "k1")["a"].tolist() == [0, 1, 2]  # the old entry, intact
    assert sorted(p.name for p in entry.parent.iterdir()) == ["entry.npz"]  # no temp file left
    fresh = mnt.path / "visual" / "fresh.npz"
    with pytest.raises(StorageError, match="no space left on device"):
        atomic_savez(fresh, key=np.array("k2"), a=big)
    assert not fresh.exists() and read_npz(fresh, "k2") is None  # never a half-written entry


def test_calibrated_weights_on_a_full_disk_name_the_file_not_unexpected_pos(tmpfs):
    """torch.save on a full disk raises RuntimeError('[enforce fail ...] unexpected pos 704 vs 598'); the
    cache's writer keeps the OSError under it: one line with the file and the cause, no file left."""
    import torch

    from avkd.errors import StorageError
    from avkd.features.weights import _load_cached, save_first_writer_wins

    mnt = tmpfs("weights", size="2m")
    path = mnt.path / "weights" / "inception-seed0-test.pt"
    state = {"w": torch.randn(1_000_000)}  # 4 MB
    with pytest.raises(StorageError) as err:
        save_first_writer_wins(state, path)
    assert str(err.value) == f"{path}: cannot write to the feature cache: disk full (no space left on device)"
    assert list(path.parent.iterdir()) == []  # neither the weights nor a temp file
    assert _load_cached(path) is None  # so the next run re-estimates them
    small = {"w": torch.arange(4.0)}
    save_first_writer_wins(small, path)  # room for these: written, and readable
    assert torch.equal(_load_cached(path)["w"], small["w"])


PERMISSION_CHECKS = """
import sys
from pathlib import Path
from avkd.errors import StorageError
from avkd.storage import check_folder
from trackers.preflight import check_tracking_store
d = Path(sys.argv[1])
for check in (
    lambda: check_folder(d / "cache", "feature cache"),
    lambda: check_folder(d / "cache" / "new", "runs folder"),
    lambda: check_tracking_store(f"sqlite:///{d / 'mlflow.db'}"),
    lambda: check_tracking_store(f"sqlite:///{d / 'closed' / 'mlflow.db'}"),
):
    try:
        check()
        print("no error")
    except StorageError as err:
        print(err)
"""


def test_permission_denied_is_one_line_per_path(tmp_path):
    """Folders and a tracking DB the user may not write (mode 555 / 444). Root ignores permission bits
    (CAP_DAC_OVERRIDE), so as root the checks run in a child without that capability (`setpriv
    --bounding-set`): what any other user gets."""
    prefix = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root, which ignores permission bits, and setpriv is not installed")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    make_mlflow_db(tmp_path / "mlflow.db")
    (tmp_path / "cache").mkdir()
    (tmp_path / "closed").mkdir()
    for name, mode in (("cache", 0o555), ("closed", 0o555), ("mlflow.db", 0o444)):
        (tmp_path / name).chmod(mode)
    try:
        proc = subprocess.run(
            [*prefix, PYTHON, "-c", PERMISSION_CHECKS, str(tmp_path)],
            cwd=REPO,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        for name in ("cache", "closed", "mlflow.db"):
            (tmp_path / name).chmod(0o755)
    if prefix and proc.returncode != 0 and "setpriv" in proc.stderr:
        pytest.skip(f"cannot drop CAP_DAC_OVERRIDE here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [
        f"{tmp_path / 'cache'}: cannot write to the feature cache (permission denied)",
        f"{tmp_path / 'cache' / 'new'}: cannot create the runs folder (permission denied)",
        f"{tmp_path / 'mlflow.db'}: read-only database (check file permissions)",
        f"{tmp_path / 'closed'}: cannot write to the tracking database (permission denied)",
    ]


@pytest.mark.slow
def test_full_disk_during_feature_extraction_is_one_line(tiny_corpus, tmp_path, tmpfs):
    """The cache's disk fills up after the pre-flight passed: 80 MiB is enough to start (64 MiB) but not
    for the re-estimated Inception weights (87 MB) that extraction writes first. Held: exit 2, the last
    stderr line the only error (the file, "no space left on device"), no traceback or torch message,
    the sweep run FAILED (not left RUNNING), nothing left in the cache; with room again the same cache
    is filled and its entries are all sound."""
    mnt = tmpfs("cache", size="80m")
    cache = mnt.path / "cache"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    rc, lines, stdout, seconds = run_cli_sweep(tmp_path, tiny_corpus, uri, cache_dir=cache)
    assert rc == 2, (lines[-20:], stdout[-2000:])
    assert ">> sweep run" in stdout, stdout[-2000:]  # past the pre-flight: the disk filled during the sweep
    assert [line for line in lines if line.startswith("error: ")] == [lines[-1]], lines[-20:]
    assert lines[-1].startswith(f"error: {cache}/"), lines[-1]
    assert lines[-1].endswith(": cannot write to the feature cache: disk full (no space left on device)"), lines[-1]
    everything = "\n".join(lines) + stdout
    assert "Traceback" not in everything and "unexpected pos" not in everything, everything[-3000:]
    assert [r.info.status for r in H.all_runs(uri)] == ["FAILED"]
    assert [p for p in cache.rglob("*") if p.is_file()] == []

    subprocess.run(["mount", "-o", "remount,size=1g", str(mnt.path)], check=True)
    proc = subprocess.run(
        [PYTHON, "-m", "avkd", "features", "--sweep", str(tmp_path / "tiny.yaml")],
        cwd=REPO,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert H.cache_entry_count(cache) > 0 and H.corrupt_cache_entries(cache) == []
