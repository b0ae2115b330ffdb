"""METEOR for a whole sweep from ONE JVM: a named Ray actor that owns it, shared by every trial.

METEOR's JVM takes ~7-12 s of CPU to start. In-process (avkd/evaluation/metrics.py) that is paid once
per process, and Ray Tune's trial workers are new processes in every trial phase, so a sweep paid it
once per worker per phase. Here the driver starts one `MeteorService` actor when its first trial
phase starts (the JVM loads while the first trials train) and kills it when Ray stops, interrupts
included; trials find it by name and send it their tokenised captions.

- The name carries the Ray job id, which the driver and all of its workers share: each sweep (driver)
  finds its own service, also on a shared cluster.
- The actor is not detached: the driver owns it, so it also dies with a driver killed by SIGKILL, and
  the JVM, whose stdin is the actor's pipe, ends on that pipe's end of file.
- It runs METEOR with metrics.py's own code (`metrics.meteor_in_process`), one call at a time (one
  JVM, one stdin protocol): the same inputs give the same numbers as in-process.
- Outside Ray (`avkd evaluate`, tests) or without a service, METEOR runs in-process as before.
- A service that died is one warning, then this process scores with its own JVM; an error of METEOR
  itself fails the trial with METEOR's line, as in-process.
- The JVM start (the clock's meteor_start phase) is reported to the first trial the service answers
  after it started: that trial's time/meteor_start_s is what the sweep paid, once. It ran in the
  service's process, alongside training, not in that trial's wall time.
"""

from __future__ import annotations

import sys

from avkd.clock import PhaseClock, active
from avkd.errors import AvkdError
from avkd.evaluation import metrics as M

NAME_PREFIX = "avkd-meteor-"
START_PHASE = "meteor_start"  # the PhaseClock phase metrics.py times the JVM start into
STOP_TIMEOUT_S = 10.0

_service = None  # the driver's handle (it owns the actor)
_handles: dict[str, object] = {}  # a worker's looked-up handle per service name
_dead: set[str] = set()  # services this process found dead (it uses its own JVM from then on)


class MeteorService:
    """The actor: one METEOR JVM (metrics.py's in-process one, in this actor's process)."""

    def __init__(self) -> None:
        self.clock = PhaseClock()  # the JVM start(s) this actor paid, not yet reported to a trial
        with self.clock:
            M.meteor_in_process({"_": ["a"]}, {"_": ["a"]})  # start the JVM now, not at the first trial

    def score(self, gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float], float]:
        """(corpus METEOR, per-video METEOR, JVM start seconds not yet reported)."""
        with self.clock:
            score, scores = M.meteor_in_process(gts, res)
        start_s = self.clock.seconds.pop(START_PHASE, 0.0)
        return score, scores, start_s

    def close(self) -> None:
        M.close_meteor()


def service_name() -> str:
    """This Ray job's service name (the driver and its workers share the job id)."""
    import ray

    return NAME_PREFIX + ray.get_runtime_context().get_job_id()


def start() -> None:
    """Driver: start this sweep's service unless it runs already (returns at once; the JVM loads meanwhile)."""
    global _service
    import ray

    if _service is None:
        actor = ray.remote(num_cpus=0, max_restarts=0, max_concurrency=1)(MeteorService)
        _service = actor.options(name=service_name()).remote()


def stop() -> None:
    """Driver: close the JVM and kill the service (also when it is dead already: never raises)."""
    global _service
    if _service is None:
        return
    import ray

    service, _service = _service, None
    try:
        ray.get(service.close.remote(), timeout=STOP_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - dead, killed by an interrupt, or stuck: the kill below ends it
        pass
    try:
        ray.kill(service, no_restart=True)
    except Exception:  # noqa: BLE001 - gone with its node or Ray already
        pass


def _find_service():
    """This process's handle on its sweep's service, or None (not a Ray process, no service, found dead)."""
    ray = sys.modules.get("ray")  # never import Ray for it: outside Ray METEOR runs in-process
    if ray is None or not ray.is_initialized():
        return None
    name = service_name()
    if name in _dead:
        return None
    if name not in _handles:
        try:
            _handles[name] = ray.get_actor(name)
        except ValueError:
            # A Ray worker is a sweep's trial, whose driver started a service: it is gone. (A driver
            # process, e.g. a test, may just have started none.)
            if ray.get_runtime_context().worker.mode == ray.WORKER_MODE:
                _gone(name, "not found")
            return None
    return _handles[name]


def _gone(name: str, why: str) -> None:
    from avkd.warn import warn_once

    _dead.add(name)
    warn_once(f"the sweep's METEOR service ({name}) is gone ({why}): trials score METEOR with their own JVM")


def meteor_score(gts: dict[str, list[str]], res: dict[str, list[str]]) -> tuple[float, list[float]]:
    """METEOR of tokenised captions: on the sweep's service when there is one, else in this process."""
    service = _find_service()
    if service is None:
        return M.meteor_in_process(gts, res)
    import ray
    from ray.exceptions import RayActorError, RayTaskError

    try:
        score, scores, start_s = ray.get(service.score.remote(gts, res))
    except RayTaskError as err:  # METEOR itself failed (its JVM is dropped and restarts on the next call)
        raise AvkdError(f"METEOR service: {err.cause}") from None
    except RayActorError as err:
        _gone(service_name(), type(err).__name__)
        return M.meteor_in_process(gts, res)
    clock = active()
    if clock is not None and start_s:
        clock.add(START_PHASE, start_s)
    return score, scores
