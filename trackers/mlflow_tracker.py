"""MLflow tracking for sweeps: where runs are stored, one RunLogger per run, resume helpers.

Everything goes through `MlflowClient` with explicit run ids (never the global fluent API), so a
RunLogger works the same in the driver and in Ray worker processes. The names of tags, metrics
and artifacts are the contract in trackers/schema.py.

Where things are stored:
- tracking URI: `cfg.tracking.uri` if set, else $MLFLOW_TRACKING_URI, else `sqlite:///<repo>/mlflow.db`
  (so a bare `mlflow ui` started at the repo root shows everything).
- artifacts, for a SQLite store: `<folder of the .db>/mlruns/artifacts/<experiment>/<run id>/artifacts`
  (for the default store that is `<repo>/mlruns/artifacts/...`), set explicitly when the experiment is
  created because MLflow's default (./mlartifacts) depends on the working directory.
"""

from __future__ import annotations

import fcntl
import functools
import getpass
import json
import logging
import os
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from avkd.errors import AvkdError
from trackers import schema

REPO_ROOT = Path(__file__).resolve().parent.parent

# MLflow's own HTTP retries default to ~4 minutes of backoff; shorten them (unless the user set them)
# so that _retry's RETRY_SECONDS bounds how long a tracking server may be away.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")

RETRY_SECONDS = 30.0  # give up on a transient MLflow error after this long
FLUSH_EVERY_S = 15.0  # buffered metrics are written at least this often (live curves in the UI)
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
MAX_TAG_CHARS = 8000  # MLflow's limit on a tag value
BATCH_PARAMS = 100  # MLflow's limit of params (or tags) per log_batch call
BATCH_METRICS = 1000  # MLflow's limit of metrics per log_batch call

# Substrings of errors worth retrying: a locked SQLite file, a tracking server that is restarting.
_TRANSIENT = (
    "database is locked",
    "connection refused",
    "connection reset",
    "connection aborted",
    "max retries exceeded",
    "remote end closed",
    "service unavailable",
    "bad gateway",
    "gateway timeout",
    "timed out",
    "too many requests",
    "temporarily unavailable",
)
# Errors no retry can fix, checked first: MLflow reports every SQLAlchemy OperationalError as
# TEMPORARILY_UNAVAILABLE, a read-only or full database included (issue 15: 30 s of retries per call).
_PERMANENT = {
    "readonly database": "read-only database (check file permissions)",
    "file is not a database": "not an SQLite database",
    "database disk image is malformed": "corrupt SQLite database",
    "database or disk is full": "disk full",
    "no space left on device": "disk full",
    "no such table": "not an MLflow database (no such table)",
    "permission denied": "permission denied",
    "unable to open database file": "cannot open the database file",
}


# ---- where runs are stored ---------------------------------------------------------------------


def resolve_tracking_uri(cfg_uri: str | None = None) -> str:
    """The tracking URI: the sweep file's, else $MLFLOW_TRACKING_URI, else sqlite:///<repo>/mlflow.db."""
    uri = cfg_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{REPO_ROOT / 'mlflow.db'}"
    if "://" not in uri and not uri.startswith("databricks"):
        raise AvkdError(f"tracking.uri: {uri!r} is not a URI (e.g. sqlite:///path/to/mlflow.db or http://host:5000)")
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///...` URI (relative paths are relative to the cwd, as MLflow does)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path).resolve()


@functools.lru_cache(maxsize=None)
def mlflow_client(uri: str) -> MlflowClient:
    """One client per URI per process. For SQLite, creating the store runs the schema migrations; a
    lock on the database's folder keeps several processes from migrating a fresh database at once."""
    db = sqlite_path(uri)
    if db is None:
        return _retry(f"open tracking store {uri}", MlflowClient, uri)
    db.parent.mkdir(parents=True, exist_ok=True)
    folder = os.open(db.parent, os.O_RDONLY)  # lock the database's folder: no lock file to leave behind
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        # Creating the client opens the store and runs any pending migrations, under the lock.
        return _retry(f"open tracking store {uri}", MlflowClient, uri)
    finally:
        os.close(folder)  # releases the lock


def _first_line(err: BaseException) -> str:
    text = str(getattr(err, "message", None) or err).strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def _error_chain(err: BaseException) -> list[str]:
    chain, seen = [], err
    while seen is not None and len(chain) < 5:
        chain.append(str(seen).lower())
        seen = seen.__cause__ or seen.__context__
    return chain


def _permanent_cause(err: BaseException) -> str | None:
    return next((cause for text in _error_chain(err) for s, cause in _PERMANENT.items() if s in text), None)


def _is_transient(err: BaseException) -> bool:
    if _permanent_cause(err):
        return False
    if isinstance(err, MlflowException) and err.error_code == "TEMPORARILY_UNAVAILABLE":
        return True
    return any(s in text for text in _error_chain(err) for s in _TRANSIENT)


def _retry(what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call an MLflow function, retrying transient errors with backoff for up to RETRY_SECONDS.

    Any MLflow error (after the retries, or a permanent one) becomes a one-line AvkdError naming `what`.
    """
    deadline = time.monotonic() + RETRY_SECONDS
    delay = 0.1
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - classified below, never swallowed
            transient = _is_transient(err)
            if transient and time.monotonic() + delay < deadline:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if transient:
                raise AvkdError(
                    f"MLflow: {what} still failing after {RETRY_SECONDS:.0f} s: {_first_line(err)}"
                ) from err
            if _permanent_cause(err):
                raise AvkdError(f"MLflow: {what}: {_permanent_cause(err)} (not retried)") from err
            if isinstance(err, MlflowException):
                raise AvkdError(f"MLflow: {what}: {_first_line(err)}") from err
            raise


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "experiment"


def ensure_experiment(uri: str, name: str) -> str:
    """Create the tracking database and the experiment if needed; return the experiment id.

    Call it once in the driver before starting workers (concurrent creation of a fresh SQLite DB races).
    """
    client = mlflow_client(uri)
    exp = _retry(f"get experiment {name!r}", client.get_experiment_by_name, name)
    if exp is None:
        db = sqlite_path(uri)
        location = (db.parent / "mlruns" / "artifacts" / _safe_name(name)).as_uri() if db else None
        try:
            return _retry(
                f"create experiment {name!r}",
                client.create_experiment,
                name,
                artifact_location=location,
                tags=ui_experiment_tags(),
            )
        except AvkdError:
            exp = client.get_experiment_by_name(name)  # another process created it first
            if exp is None:
                raise
    if exp.lifecycle_stage != "active":
        raise AvkdError(
            f"MLflow experiment {name!r} is deleted in {uri}; restore it "
            f"(mlflow experiments restore --experiment-id {exp.experiment_id}) or choose another name"
        )
    for key, value in ui_experiment_tags().items():
        if exp.tags.get(key) != value:
            _retry(f"tag experiment {name!r}", client.set_experiment_tag, exp.experiment_id, key, value)
    return exp.experiment_id


def trials_view_state() -> dict:
    """The runs-table view of schema.TRIALS_VIEW_KEY, in the MLflow 3.17 web app's own view-state format.

    Sorting by a param (not by date) lists child runs flat instead of folded under their parent."""
    params = (schema.PARAM_ROLE, schema.PARAM_K, schema.PARAM_METHOD, schema.PARAM_SEED)
    return {
        "searchFilter": f"tags.`{schema.ROLE}` != 'sweep' and tags.`{schema.ROLE}` != 'timing'",
        "orderByKey": f"params.`{schema.PARAM_K}`",
        "orderByAsc": True,
        "startTime": "ALL",
        "lifecycleFilter": "Active",
        "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        "selectedColumns": [
            "attributes.`Run Name`",
            "attributes.`Duration`",
            *(f"params.`{p}`" for p in params),
            f"metrics.`{schema.TEST_SCORE}`",
            f"metrics.`{schema.TRIAL_TIME_S}`",
        ],
        "runsExpanded": {},
        "runsPinned": [],
        "runsHidden": [],
        "runsHiddenMode": "SHOW_ALL",
        "viewMaximized": False,
    }


def ui_experiment_tags() -> dict[str, str]:
    """Experiment tags for the MLflow UI: open on the classic runs table (schema.EXPERIMENT_KIND), and the
    saved trials view (schema.TRIALS_VIEW_KEY)."""
    return {
        schema.EXPERIMENT_KIND: schema.EXPERIMENT_KIND_RUNS,
        schema.SHARED_VIEW_TAG_PREFIX + schema.TRIALS_VIEW_KEY: json.dumps(trials_view_state()),
    }


def runs_url(ui_url: str, experiment_id: str, run_id: str | None = None) -> str:
    """A link into the MLflow UI's classic runs view (never its GenAI pages): one run, or the experiment's
    trials view (schema.TRIALS_VIEW_KEY)."""
    base = f"{ui_url.rstrip('/')}/#/experiments/{experiment_id}"
    if run_id:
        return f"{base}/runs/{run_id}?{schema.UI_RUNS_QUERY}"
    return f"{base}/runs?viewStateShareKey={schema.TRIALS_VIEW_KEY}&{schema.UI_RUNS_QUERY}"


def compare_url(ui_url: str, experiment_id: str, run_ids: list[str]) -> str:
    """The MLflow UI's compare page of these runs: parallel coordinates over their params (k, method, seed)."""
    from urllib.parse import quote

    runs, experiments = json.dumps(list(run_ids)), json.dumps([str(experiment_id)])
    return f"{ui_url.rstrip('/')}/#/compare-runs?runs={quote(runs)}&experiments={quote(experiments)}"


def git_commit() -> str:
    """Short hash of the repo's HEAD, with "+dirty" if tracked files changed; "unknown" outside git."""

    def git(*args: str) -> subprocess.CompletedProcess:
        # --no-optional-locks: `status` must not write the index while others work in the tree.
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=20
        )

    try:
        head = git("rev-parse", "--short", "HEAD")
        if head.returncode != 0:
            return "unknown"
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if status.returncode != 0 or status.stdout.strip() else "")


@functools.lru_cache(maxsize=1)
def _git_head() -> str:
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", "-C", str(REPO_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


SOURCE_NAME_ENV = "AVKD_SOURCE_NAME"  # the driver's command line, inherited by Ray workers


def source_name() -> str:
    """What started the runs, for MLflow's Source column: the driver's command line (e.g.
    "python -m avkd sweep sweeps/demo.yaml"); a Ray worker reads it from the environment it inherited."""
    if os.environ.get(SOURCE_NAME_ENV):
        return os.environ[SOURCE_NAME_ENV]
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    return " ".join(argv)


def standard_tags() -> dict[str, str]:
    """MLflow's own tags (source, user, git commit): what its UI shows in the Source and User columns."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    tags = {schema.SOURCE_NAME: source_name(), schema.SOURCE_TYPE: "LOCAL", schema.USER: user}
    if _git_head():
        tags[schema.SOURCE_GIT_COMMIT] = _git_head()
    return tags


def _system_metrics_monitor(uri: str, run_id: str):
    """MLflow's system-metrics monitor (system/cpu_utilization_percentage, system/system_memory_usage_megabytes,
    system/gpu_* when NVML sees a GPU), sampling every 5 s; None when psutil is missing (one warning)."""
    try:
        import psutil  # noqa: F401 - MLflow's CPU and memory monitors need it
    except ImportError:
        from avkd.warn import warn_once

        warn_once("psutil is not installed: trial runs log no system metrics (pip install psutil)")
        return None
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no "started monitoring" per trial
    monitor = SystemMetricsMonitor(run_id, sampling_interval=5, resume_logging=True, tracking_uri=uri)
    monitor.start()
    return monitor


def _finish_monitor(monitor) -> None:
    """Stop the monitor; its last samples go in before the run ends. MLflow publishes a sample only once a
    whole sampling interval has passed, so a run shorter than that (a 1-epoch trial, a cached rerun of a
    fast one) would log no system metrics at all: its first collected sample is published here."""
    monitor.finish()
    if getattr(monitor, "_logging_step", 1) != 0:
        return
    try:
        sample = monitor.aggregate_metrics()
        if sample:
            monitor.publish_metrics(sample)
            monitor.mlflow_logger.flush()
    except Exception as err:  # noqa: BLE001 - system metrics are a convenience: never fail the run for them
        logging.getLogger(__name__).debug("system metrics: last sample not logged (%s)", err)


# ---- one run ------------------------------------------------------------------------------------


def _param_value(value: Any) -> str:
    text = str(value)
    if len(text) > MAX_PARAM_CHARS:
        marker = "...[truncated]"
        text = text[: MAX_PARAM_CHARS - len(marker)] + marker
    return text


def _param_key(key: Any) -> str:
    """MLflow keys allow only alphanumerics and _ - . space : / ; e.g. `distill.losses.rep+ce` -> `distill.losses.rep_ce`."""
    return re.sub(r"[^\w\-. :/]", "_", str(key))


def _chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class RunLogger:
    """One MLflow run. As a context manager it always ends the run: FINISHED on a normal exit,
    FAILED on an exception (with traceback.txt logged), KILLED on KeyboardInterrupt.

    Metrics are buffered and written in batches (at flush()/close(), every FLUSH_EVERY_S seconds, or
    when 1000 are waiting), so tracking costs a few tens of ms per flush, not per metric.
    `run_id=` re-attaches to an existing run (e.g. a retried trial) and sets it RUNNING again.
    """

    def __init__(
        self,
        uri: str,
        experiment_id: str,
        run_name: str,
        tags: dict,
        params: dict | None = None,
        parent_run_id: str | None = None,
        run_id: str | None = None,
        system_metrics: bool = False,
    ):
        self.uri = uri
        self.client = mlflow_client(uri)
        self.overhead_s = 0.0  # seconds spent in MLflow calls, to check tracking stays cheap
        self._metrics: list[Metric] = []
        self._last_flush = time.monotonic()
        self._closed = False
        self._monitor = None
        tags = {**standard_tags(), **{k: v for k, v in dict(tags).items() if v is not None}}
        if parent_run_id:
            tags[schema.PARENT] = parent_run_id
        if run_id is None:
            run = self._call(
                f"create run {run_name!r}",
                self.client.create_run,
                experiment_id,
                tags={k: str(v)[:MAX_TAG_CHARS] for k, v in tags.items()},
                run_name=run_name,
            )
            self.run_id: str = run.info.run_id
            logged_params: dict[str, str] = {}
        else:
            run = self._call(f"get run {run_id}", self.client.get_run, run_id)
            self.run_id = run.info.run_id
            logged_params = dict(run.data.params)  # already logged: skip (MLflow params are write-once)
            self._call(f"reopen run {run_id}", self.client.update_run, run_id, status="RUNNING")
            self.set_tags(tags)
        self.experiment_id = run.info.experiment_id
        try:
            if params:
                self.log_params(
                    {k: v for k, v in params.items() if logged_params.get(_param_key(k)) != _param_value(v)}
                )
        except BaseException:
            self.close("FAILED")
            raise
        if system_metrics:
            self._monitor = _system_metrics_monitor(uri, self.run_id)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return _retry(what, fn, *args, **kwargs)
        finally:
            self.overhead_s += time.perf_counter() - start

    # -- logging --
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Buffer metrics (written at the next flush)."""
        now_ms = int(time.time() * 1000)
        for key, value in metrics.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise AvkdError(f"run {self.run_id}: metric {key!r} = {value!r} is not a number") from None
            self._metrics.append(Metric(key, number, now_ms, int(step or 0)))
        if len(self._metrics) >= BATCH_METRICS or time.monotonic() - self._last_flush > FLUSH_EVERY_S:
            self.flush()

    def flush(self) -> None:
        """Write buffered metrics now (in batches of 1000)."""
        while self._metrics:
            batch = self._metrics[:BATCH_METRICS]
            self._call(f"log metrics to run {self.run_id}", self.client.log_batch, self.run_id, metrics=batch)
            del self._metrics[: len(batch)]  # only after the write succeeded: a failure loses nothing
        self._last_flush = time.monotonic()

    def log_params(self, params: dict) -> None:
        """Log params, 100 per call. Values over 6000 chars are truncated; characters MLflow forbids in
        keys become "_" (`distill.losses.rep+ce` -> `distill.losses.rep_ce`)."""
        items = [Param(_param_key(k), _param_value(v)) for k, v in params.items()]
        for batch in _chunks(items, BATCH_PARAMS):
            self._call(f"log params to run {self.run_id}", self.client.log_batch, self.run_id, params=batch)

    def set_tags(self, tags: dict) -> None:
        items = [RunTag(str(k), str(v)[:MAX_TAG_CHARS]) for k, v in tags.items() if v is not None]
        for batch in _chunks(items, BATCH_PARAMS):
            self._call(f"set tags on run {self.run_id}", self.client.log_batch, self.run_id, tags=batch)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a file (or a whole folder) into the run's artifacts."""
        path = Path(path)
        if not path.exists():
            raise AvkdError(f"{path}: no such file to log as an artifact of run {self.run_id}")
        fn = self.client.log_artifacts if path.is_dir() else self.client.log_artifact
        self._call(f"log artifact {path.name} to run {self.run_id}", fn, self.run_id, str(path), artifact_path)

    def log_dict(self, obj: Any, artifact_file: str) -> None:
        """Save a dict as JSON (or YAML for .yaml/.yml names) in the run's artifacts."""
        self._call(f"log {artifact_file} to run {self.run_id}", self.client.log_dict, self.run_id, obj, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self._call(f"log {artifact_file} to run {self.run_id}", self.client.log_text, self.run_id, text, artifact_file)

    # -- ending --
    def close(self, status: str = "FINISHED") -> None:
        """Flush and end the run with `status` (FINISHED | FAILED | KILLED). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._monitor is not None:
            _finish_monitor(self._monitor)
        try:
            self.flush()
        except BaseException:
            status = "FAILED" if status == "FINISHED" else status  # metrics were lost: not a clean finish
            raise
        finally:
            self._call(f"end run {self.run_id}", self.client.set_terminated, self.run_id, status)

    def __enter__(self) -> "RunLogger":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.close("FINISHED")
            return False
        if issubclass(exc_type, Exception):
            status = "FAILED"
            try:
                text = "".join(traceback.format_exception(exc_type, exc, tb))
                self.log_text(text, schema.ARTIFACT_TRACEBACK)
                self.set_tags({schema.ERROR: f"{exc_type.__name__}: {_first_line(exc)}"[:500]})
            except Exception:  # noqa: BLE001 - the trial's own error is the one to report
                pass
        else:  # KeyboardInterrupt, SystemExit: stopped from outside
            status = "KILLED"
        try:
            self.close(status)
        except Exception:  # noqa: BLE001 - never hide the original exception behind a logging one
            pass
        return False


# ---- queries used by the driver to resume ---------------------------------------------------------


def search_all_runs(
    client: MlflowClient, experiment_id: str, filter_string: str = "", order_by: list[str] | None = None
) -> list:
    """Every active run of an experiment matching `filter_string` (all result pages)."""
    runs, token = [], None
    while True:
        page = _retry(
            f"search runs of experiment {experiment_id}",
            client.search_runs,
            [experiment_id],
            filter_string,
            ViewType.ACTIVE_ONLY,
            1000,
            order_by,
            token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def finished_runs_by_hash(uri: str, experiment_id: str, sweep: str | None = None) -> dict[str, str]:
    """avkd.config_hash -> run id of the most recent FINISHED child run with that hash.

    With `sweep`, only runs of that sweep (tag avkd.sweep): another sweep in the same experiment keeps
    its checkpoints in its own folder, so its trials cannot stand in for ours."""
    where = "attributes.status = 'FINISHED'" + (f" and tags.`{schema.SWEEP}` = '{sweep}'" if sweep else "")
    runs = search_all_runs(mlflow_client(uri), experiment_id, where, ["attributes.start_time ASC"])
    out: dict[str, str] = {}
    for run in runs:  # oldest first: a later run with the same hash wins
        tags = run.data.tags
        if schema.CONFIG_HASH in tags and schema.PARENT in tags:
            out[tags[schema.CONFIG_HASH]] = run.info.run_id
    return out


def _sweep_run_gone(run) -> bool:
    """Is the driver of a RUNNING sweep run provably gone? Its owner tag (host:pid:start) on this host,
    else its heartbeat (a run without either counts from its start time: older drivers wrote neither)."""
    from avkd.sweep.lock import owner_gone

    tags = run.data.tags
    beat = tags.get(schema.HEARTBEAT)
    if schema.OWNER not in tags and beat is None:
        beat = str((run.info.start_time or 0) / 1000)
    return owner_gone(tags.get(schema.OWNER), beat)


def mark_stale_runs(
    uri: str, experiment_id: str, keep: tuple[str, ...] = (), parent_run_id: str | None = None
) -> list[str]:
    """End as KILLED the RUNNING runs whose driver is provably gone (all but `keep`); return their ids.

    Stale: a sweep run whose owner is gone (see _sweep_run_gone), and a child run (trial, timing)
    whose parent is stale, ended, or missing. The live runs of another driver, and runs that belong
    to no sweep, are never touched. With `parent_run_id`, every RUNNING child of that run: what a
    sweep calls once its own trials have ended (workers that died, a lost node, an interrupt).
    """
    client = mlflow_client(uri)
    where = "attributes.status = 'RUNNING'"
    if parent_run_id:
        where += f" and tags.`{schema.PARENT}` = '{parent_run_id}'"
        stale = [r.info.run_id for r in search_all_runs(client, experiment_id, where) if r.info.run_id not in keep]
    else:
        running = [r for r in search_all_runs(client, experiment_id, where) if r.info.run_id not in keep]
        live_sweeps = {
            r.info.run_id for r in running if r.data.tags.get(schema.ROLE) == "sweep" and not _sweep_run_gone(r)
        }
        live_sweeps |= set(keep)
        stale = [
            r.info.run_id
            for r in running
            if (r.data.tags.get(schema.ROLE) == "sweep" and r.info.run_id not in live_sweeps)
            or (schema.PARENT in r.data.tags and r.data.tags[schema.PARENT] not in live_sweeps)
        ]
    for run_id in stale:
        _retry(f"mark run {run_id} KILLED", client.set_terminated, run_id, "KILLED")
    return stale


# ---- the sweep run: one per sweep, continued by reruns ----------------------------------------------


def find_sweep_run(uri: str, experiment_id: str, sweep: str, sweep_hash: str):
    """The most recent sweep run of (sweep name, sweep config hash), or None."""
    where = (
        f"tags.`{schema.ROLE}` = 'sweep' and tags.`{schema.SWEEP}` = '{sweep}' "
        f"and tags.`{schema.SWEEP_HASH}` = '{sweep_hash}'"
    )
    runs = search_all_runs(mlflow_client(uri), experiment_id, where, ["attributes.start_time DESC"])
    return runs[0] if runs else None


def open_sweep_run(
    uri: str, experiment_id: str, sweep: str, sweep_hash: str, tags: dict, params: dict, owner: str
) -> tuple["RunLogger", bool]:
    """(the sweep's parent run, RUNNING with this driver's owner tags; True if it was continued).

    A rerun or resume continues the sweep's existing run (found by name + sweep hash), so the UI and
    the report keep pointing at the run that owns the trials and no empty parents pile up. A run whose
    driver is still alive (another host sharing the tracking server) is refused in one line."""
    existing = find_sweep_run(uri, experiment_id, sweep, sweep_hash)
    if existing is not None and existing.info.status == "RUNNING" and not _sweep_run_gone(existing):
        t = existing.data.tags
        raise AvkdError(
            f"sweep '{sweep}' is already running: run {existing.info.run_id} owned by "
            f"{t.get(schema.OWNER, 'an unknown driver')} (heartbeat {t.get(schema.HEARTBEAT, '-')})"
        )
    tags = {
        **tags,
        schema.ROLE: "sweep",
        schema.SWEEP: sweep,
        schema.SWEEP_HASH: sweep_hash,
        schema.OWNER: owner,
        schema.HEARTBEAT: f"{time.time():.0f}",
    }
    name = f"sweep-{sweep}"
    run_id = existing.info.run_id if existing is not None else None
    if existing is not None and schema.INTERRUPTED in existing.data.tags:  # this invocation is not (yet) interrupted
        _retry(f"delete tag of run {run_id}", mlflow_client(uri).delete_tag, run_id, schema.INTERRUPTED)
    return RunLogger(uri, experiment_id, name, tags, params, run_id=run_id), existing is not None


class Heartbeat:
    """Refreshes a sweep run's heartbeat tag every `every` seconds from a daemon thread, so that a
    driver on another host can tell a live sweep from one whose machine vanished."""

    def __init__(self, uri: str, run_id: str, every: float):
        import threading

        self.uri, self.run_id, self.every = uri, run_id, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="avkd-heartbeat", daemon=True)

    def _beat(self) -> None:
        client = mlflow_client(self.uri)
        while not self._stop.wait(self.every):
            try:
                client.set_tag(self.run_id, schema.HEARTBEAT, f"{time.time():.0f}")
            except Exception:  # noqa: BLE001 - a missed beat is harmless; the sweep's own calls report errors
                pass

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()


def count_trial_runs(uri: str, parent_run_id: str) -> dict[str, int]:
    """Status -> number of trial runs (teacher, blind, guide, student) under a sweep run."""
    client = mlflow_client(uri)
    run = _retry(f"get run {parent_run_id}", client.get_run, parent_run_id)
    counts: dict[str, int] = {}
    for r in search_all_runs(client, run.info.experiment_id, f"tags.`{schema.PARENT}` = '{parent_run_id}'"):
        if r.data.tags.get(schema.ROLE) in (*schema.TRIAL_ROLES, "guide"):
            counts[r.info.status] = counts.get(r.info.status, 0) + 1
    return counts


# ---- Table II timing runs -------------------------------------------------------------------------

_TIMING_KEYS = ("k", "extract_mean_s", "extract_std_s", "e2e_mean_s", "e2e_std_s")


def log_timing_run(
    cfg: Any, result: dict, parent_run_id: str | None = None, uri: str | None = None, config_hash: str | None = None
) -> str:
    """Log a Table II benchmark (avkd.features.bench.run_benchmark's result) as a timing run; return its id.

    Metrics (schema.TIMING_METRICS): time/extract_s, time/extract_std_s (extraction seconds per video) and
    time/e2e_s, time/e2e_std_s (decoding included), one point per variant at step = schema.timing_step(k)
    (k 0.2 -> 20, the teacher -> 100), so MLflow plots them against k; the whole result is timing.json.
    `config_hash` (tag avkd.config_hash) lets a resumed sweep find it with finished_runs_by_hash.
    """
    for key in ("variants", "weights"):
        if key not in result:
            raise AvkdError(f"timing result: missing key {key!r}")
    points: dict[int, dict[str, float]] = {}  # step -> metrics
    for i, variant in enumerate(result["variants"]):
        missing = [key for key in _TIMING_KEYS if key not in variant]
        if missing:
            raise AvkdError(f"timing result: variants[{i}]: missing {', '.join(missing)}")
        points[schema.timing_step(float(variant["k"]))] = {
            schema.TIMING_EXTRACT_S: variant["extract_mean_s"],
            schema.TIMING_EXTRACT_STD_S: variant["extract_std_s"],
            schema.TIMING_E2E_S: variant["e2e_mean_s"],
            schema.TIMING_E2E_STD_S: variant["e2e_std_s"],
        }
        if "e2e_cpu_mean_s" in variant:  # results written before the CPU column lack it
            points[schema.timing_step(float(variant["k"]))][schema.TIMING_E2E_CPU_S] = variant["e2e_cpu_mean_s"]

    uri = resolve_tracking_uri(uri or cfg.tracking.uri)
    if parent_run_id:  # the timing run goes next to its sweep
        experiment_id = _retry(f"get run {parent_run_id}", mlflow_client(uri).get_run, parent_run_id).info.experiment_id
    else:
        experiment_id = ensure_experiment(uri, cfg.tracking.experiment or cfg.name)
    tags = {
        schema.ROLE: "timing",
        schema.SWEEP: cfg.name,
        **schema.weights_tags(result["weights"]),
        schema.GIT_COMMIT: git_commit(),
        schema.CONFIG_HASH: config_hash,  # None: not set
    }
    params = dict(cfg.flat())
    for param in (schema.BENCH_VIDEOS, schema.BENCH_THREADS, schema.BENCH_DEVICE, schema.BENCH_IMAGE_SIZE):
        key = param.removeprefix("bench.")
        if key in result:
            params[param] = result[key]
    if "fingerprint" in result["weights"]:
        params[schema.BENCH_WEIGHTS_FINGERPRINT] = result["weights"]["fingerprint"]
    with RunLogger(uri, experiment_id, f"timing-{cfg.name}", tags, params, parent_run_id=parent_run_id) as run:
        for step, metrics in sorted(points.items()):
            run.log_metrics(metrics, step=step)
        run.log_dict(json.loads(json.dumps(result, default=str)), schema.ARTIFACT_TIMING)
    return run.run_id


def timing_values(client: MlflowClient, run: Any) -> dict[float, dict[tuple[bool, bool], float]]:
    """A timing run's Table II numbers: k -> {(end_to_end, std): seconds per video}.

    Reads the per-step metrics (schema.TIMING_METRICS at step timing_step(k)); timing runs logged before
    that scheme (k inside the name, schema.parse_time_metric) are read too."""
    values: dict[float, dict[tuple[bool, bool], float]] = {}
    for kind, key in schema.TIMING_METRICS.items():
        if key not in run.data.metrics:
            continue
        for m in _retry(f"read {key} of run {run.info.run_id}", client.get_metric_history, run.info.run_id, key):
            values.setdefault(schema.timing_step_k(m.step), {})[kind] = m.value
    for key, value in run.data.metrics.items():
        parsed = schema.parse_time_metric(key)
        if parsed:
            k, e2e, std = parsed
            values.setdefault(k, {}).setdefault((e2e, std), value)
    return values
