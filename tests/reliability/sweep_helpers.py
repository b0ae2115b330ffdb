"""Helpers of the fault-injection tests: a tiny sweep file in a temp folder, the real CLI in its own
process group, polling, and the end-state checks (MLflow runs, feature cache, leftover processes).

Each sweep gets a private Ray temp folder (RAY_TMPDIR): its Ray processes can be told apart from
anyone else's on the machine, and `ray.init()` can never find (and join) another person's cluster.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from .conftest import PYTHON, REPO, cli_env

TINY = REPO / "sweeps" / "tiny.yaml"
EXPERIMENT = "tiny"
TRIAL_ROLES = ("teacher", "blind", "student")
TEST_METRICS = ("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider", "score")


# ---- the sweep file and its process -------------------------------------------------------------


def write_sweep(
    tmp: Path, corpus: Path, uri: str | None, cache_dir: Path | None = None, resources: dict | None = None, **grid
) -> Path:
    """sweeps/tiny.yaml pointed at tmp (cache, runs, tracking), with grid/resources overrides.

    The Table II timing benchmark is off unless grid says otherwise: no case here is about it.
    """
    d = yaml.safe_load(TINY.read_text())
    d["dataset"]["root"] = str(corpus)
    d["features"]["cache_dir"] = str(cache_dir or tmp / "cache")
    d["runs_dir"] = str(tmp / "runs")
    d["tracking"] = {"uri": uri}
    d["grid"]["timing"] = {**d["grid"]["timing"], "enabled": False}
    d["grid"].update(grid)
    d["resources"].update(resources or {})
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


_WARM_CACHE: dict[str, Path] = {}


def warm_cache(corpus: Path, tmp_path_factory) -> Path:
    """The feature cache of the 12-clip corpus at tiny.yaml's settings (k = 1, 0.2, 0.6), extracted
    once per test session with `python -m avkd features` (about 40 s on 2 cores)."""
    key = str(corpus)
    if key not in _WARM_CACHE:
        tmp = tmp_path_factory.mktemp("warm-cache")
        sweep = write_sweep(tmp, corpus, f"sqlite:///{tmp / 'unused.db'}")
        proc = subprocess.run(
            [PYTHON, "-m", "avkd", "features", "--sweep", str(sweep)],
            cwd=REPO,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        _WARM_CACHE[key] = tmp / "cache"
    return _WARM_CACHE[key]


def copy_cache(source: Path, dest: Path) -> Path:
    """A test's own copy of a cache, as hard links: entries are replaced atomically, never edited in
    place, so a test cannot change the shared files (and 400 MB of calibrated weights cost no disk)."""
    shutil.copytree(source, dest, copy_function=os.link)
    return dest


def ray_tmpdir() -> Path:
    """A private, short Ray temp folder (Ray's socket paths must stay under 108 characters)."""
    return Path(tempfile.mkdtemp(prefix="avkd-ray-"))


def sweep_env(ray_tmp: Path, **extra: str) -> dict[str, str]:
    """cli_env plus a private Ray temp folder; RAY_ADDRESS only when given in `extra`."""
    env = cli_env(RAY_TMPDIR=str(ray_tmp))
    env.pop("RAY_ADDRESS", None)
    env.update(extra)
    return env


@dataclass
class Sweep:
    """A `python -m avkd sweep` process started in its own session (so its leftovers can be found)."""

    proc: subprocess.Popen
    log: Path
    started: float

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """kill -9 of the driver alone (not its group): what an OOM killer or a lost login does."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


def start_sweep(sweep: Path, tmp: Path, env: dict[str, str], name: str = "sweep") -> Sweep:
    log = tmp / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [PYTHON, "-m", "avkd", "sweep", str(sweep), "--report-out", str(tmp / "reports")],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Sweep(proc, log, time.time())


def run_sweep(
    sweep: Path, tmp: Path, env: dict[str, str], name: str = "sweep", timeout: float = 400
) -> tuple[int, str, float]:
    """Run a sweep to the end: (exit code, its output, seconds)."""
    s = start_sweep(sweep, tmp, env, name)
    try:
        rc = s.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_session(s.proc.pid)
        raise AssertionError(f"sweep did not finish in {timeout} s:\n{s.output()[-3000:]}") from None
    return rc, s.output(), time.time() - s.started


def wait_until(
    what: str, check: Callable[[], object], sweep: Sweep | None = None, timeout: float = 300, every: float = 0.5
):
    """Poll `check` until it returns something truthy; fail if the sweep exits first or time runs out."""
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if sweep is not None and sweep.proc.poll() is not None:
            raise AssertionError(f"the sweep exited ({sweep.proc.returncode}) before {what}:\n{sweep.output()[-3000:]}")
        if time.time() > deadline:
            raise AssertionError(f"no {what} within {timeout} s:\n{sweep.output()[-3000:] if sweep else ''}")
        time.sleep(every)


# ---- processes ------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(session id, CPU seconds used) of a live process, None if it is gone or a zombie."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[3]), (int(fields[11]) + int(fields[12])) / ticks


def _cmdline(pid: int) -> str:
    """The command line; for a process that is exiting (empty cmdline), its [name]."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        return cmd or f"[{Path(f'/proc/{pid}/comm').read_text().strip()}]"
    except OSError:
        return "[gone]"


def leftover_processes(session: int, ray_tmp: Path | None = None) -> dict[int, str]:
    """Live processes of a session, or whose command line names the Ray temp folder: pid -> command."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        stat = _proc_stat(int(entry.name))
        if stat is None:
            continue
        cmd = _cmdline(int(entry.name))
        if stat[0] == session or (ray_tmp is not None and str(ray_tmp) in cmd):
            found[int(entry.name)] = cmd[:160]
    return found


def cpu_seconds(pids) -> dict[int, float]:
    """CPU seconds used so far by each pid still alive."""
    out = {}
    for pid in pids:
        stat = _proc_stat(pid)
        if stat is not None:
            out[pid] = stat[1]
    return out


def kill_pids(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop_session(session: int, ray_tmp: Path | None = None) -> None:
    """SIGKILL everything a test started under `session` (and Ray processes of its temp folder)."""
    try:
        os.killpg(session, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    kill_pids(leftover_processes(session, ray_tmp))


def remove_ray_tmp(ray_tmp: Path) -> None:
    shutil.rmtree(ray_tmp, ignore_errors=True)


# ---- end-state checks -------------------------------------------------------------------------------


def all_runs(uri: str, experiment: str = EXPERIMENT) -> list:
    """Every run of the experiment, safe to poll while a sweep writes: [] until the driver has
    created the SQLite file (a second process migrating a fresh DB at once breaks the driver's
    migration), the DB folder lock while opening it, and the tracker's retries ("database is locked")."""
    from trackers import mlflow_tracker as mt

    db = mt.sqlite_path(uri)
    if db is not None and not db.exists():
        return []
    client = mt.mlflow_client(uri)
    exp = mt._retry(f"get experiment {experiment}", client.get_experiment_by_name, experiment)
    return [] if exp is None else mt.search_all_runs(client, exp.experiment_id)


def trial_runs(uri: str, experiment: str = EXPERIMENT) -> list:
    return [r for r in all_runs(uri, experiment) if r.data.tags.get("avkd.role") in TRIAL_ROLES]


def runs_by_config(runs) -> dict[str, list]:
    """config hash -> its trial runs."""
    out: dict[str, list] = {}
    for r in runs:
        out.setdefault(r.data.tags["avkd.config_hash"], []).append(r)
    return out


def finished_ids(uri: str) -> dict[str, str]:
    """run name -> run id of each FINISHED trial run (one per name, checked)."""
    out = {}
    for r in trial_runs(uri):
        if r.info.status == "FINISHED":
            assert r.info.run_name not in out, f"two FINISHED runs named {r.info.run_name}"
            out[r.info.run_name] = r.info.run_id
    return out


def check_one_finished_per_config(uri: str, expected: int) -> dict[str, list]:
    """Exactly one FINISHED run per config, with every test/* metric; no run left RUNNING.

    Returns config hash -> runs, for further checks."""
    runs = trial_runs(uri)
    by_config = runs_by_config(runs)
    assert len(by_config) == expected, f"{len(by_config)} configs in MLflow, expected {expected}"
    for h, rs in by_config.items():
        finished = [r for r in rs if r.info.status == "FINISHED"]
        names = sorted(f"{r.info.run_name}:{r.info.status}" for r in rs)
        assert len(finished) == 1, f"config {h}: {len(finished)} FINISHED runs ({names})"
        missing = [m for m in TEST_METRICS if f"test/{m}" not in finished[0].data.metrics]
        assert not missing, f"{finished[0].info.run_name}: no test/{missing[0]}"
    running = [r.info.run_name for r in all_runs(uri) if r.info.status == "RUNNING"]
    assert not running, f"runs still RUNNING: {running}"
    return by_config


def artifact_names(uri: str, run_id: str) -> list[str]:
    from mlflow.tracking import MlflowClient

    return [a.path for a in MlflowClient(uri).list_artifacts(run_id)]


def artifact_text(uri: str, run_id: str, name: str) -> str:
    """A run's text artifact, downloaded from its artifact store into a temp folder."""
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as folder:
        return Path(MlflowClient(uri).download_artifacts(run_id, name, folder)).read_text()


def corrupt_cache_entries(cache_dir: Path) -> list[str]:
    """Every entry of the feature cache that does not load, as relative paths: each .npz (features,
    every array read) and each .pt (BatchNorm-calibrated backbone weights)."""
    import torch

    bad = []
    for path in sorted([*cache_dir.rglob("*.npz"), *cache_dir.rglob("*.pt")]):
        try:
            if path.suffix == ".pt":
                torch.load(path, map_location="cpu", weights_only=True)
                continue
            with np.load(path, allow_pickle=False) as data:
                for name in data.files:
                    data[name]
        except Exception as err:  # noqa: BLE001 - any failure is what this check reports
            bad.append(f"{path.relative_to(cache_dir)} ({type(err).__name__})")
    return bad


def cache_entry_count(cache_dir: Path) -> int:
    return sum(1 for _ in cache_dir.rglob("*.npz")) if cache_dir.exists() else 0


# ---- a real MLflow tracking server -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` on 127.0.0.1 (1 worker, no job execution: ~5 s to start, ~0.5 GB), in its own
    process group so that a kill reaches its workers too. The database and artifacts live in `folder`."""

    def __init__(self, folder: Path):
        self.folder, self.port = folder, free_port()
        self.proc: subprocess.Popen | None = None
        self.log = open(folder / "mlflow-server.log", "ab")

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 90) -> float:
        """Start and wait until /health answers; return the seconds that took."""
        started = time.time()
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{self.folder / 'server.db'}",
                "--artifacts-destination",
                str(self.folder / "artifacts"),
            ],
            cwd=self.folder,
            stdout=self.log,
            stderr=self.log,
            start_new_session=True,
            env={**cli_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        while True:
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return time.time() - started
            except OSError:
                pass
            if self.proc.poll() is not None or time.time() - started > timeout:
                text = (self.folder / "mlflow-server.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"mlflow server did not become healthy:\n{text}")
            time.sleep(0.3)

    def kill(self) -> None:
        """SIGKILL the server and its workers: a crash, not a shutdown."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM the group (SIGKILL after 20 s); safe to call when it is already gone."""
        if self.proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                    self.proc.wait(timeout=20)
                    break
                except ProcessLookupError:
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.log.close()
