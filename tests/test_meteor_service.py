"""The sweep's one METEOR JVM (avkd/evaluation/meteor_service.py), on real Ray and real pycocoevalcap + Java:
the same numbers as in-process, its start reported once, a dead service is one warning and the trial's own
JVM, and stop() leaves no actor or JVM behind."""

import os
import signal
import time
from pathlib import Path

import pytest

from avkd.evaluation import meteor_service
from avkd.evaluation import metrics as M

REFS = {
    "v1": ["A man is playing a guitar.", "Someone plays the guitar!"],
    "v2": ["A dog runs in the park", "The brown dog is running."],
    "v3": ["Two people are cooking food in a kitchen"],
}
PREDS = {"v1": "a man plays guitar", "v2": "a dog is running in a park", "v3": "a woman is cooking"}

pytestmark = pytest.mark.slow  # a Ray start and two METEOR JVMs: ~40 s on 2 cores


@pytest.fixture(scope="module")
def ray_session():
    import ray

    from avkd.runtime import start_ray, stop_ray

    if ray.is_initialized() or os.environ.get("RAY_ADDRESS"):
        pytest.skip("needs a fresh local Ray instance of its own")
    start_ray()
    yield ray
    meteor_service.stop()
    stop_ray()


def _in_a_worker(ray):
    """What a trial does, as a Ray task: score with the sweep's METEOR under its own clock. (Defined in
    here so that Ray ships the function by value: workers cannot import a test module.)"""

    def score(refs, preds):
        import contextlib
        import io

        from avkd.clock import PhaseClock
        from avkd.evaluation import meteor_service
        from avkd.evaluation import metrics as M

        clock, err = PhaseClock(), io.StringIO()
        with clock, contextlib.redirect_stderr(err):
            metrics, per_video = M.CaptionScorer(meteor_via=meteor_service.meteor_score).score(refs, preds)
        return metrics, per_video, clock.seconds, M._meteor is not None, err.getvalue()

    return ray.remote(num_cpus=1)(score)


def _pids_of(actor) -> tuple[int, list[int]]:
    """(the actor's process, its children: the JVM)."""
    pid = meteor_service_pid(actor)
    kids = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _ppid(int(p.name)) == pid]
    return pid, kids


def meteor_service_pid(actor) -> int:
    import ray

    return ray.get(actor.__ray_call__.remote(lambda self: os.getpid()))


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_trials_score_on_the_service_with_in_process_numbers(ray_session):
    ray = ray_session
    expected, expected_per_video = M.CaptionScorer().score(REFS, PREDS)  # this process's own JVM
    meteor_service.start()
    meteor_service.start()  # idempotent: still one service
    in_worker = _in_a_worker(ray)

    metrics, per_video, phases, own_jvm, _ = ray.get(in_worker.remote(REFS, PREDS))
    assert metrics == expected and per_video == expected_per_video  # identical, not approximately
    assert not own_jvm  # the worker started no JVM of its own
    assert phases["meteor_start"] > 1.0  # the service's JVM start, reported to its first caller ...
    _, _, phases, _, _ = ray.get(in_worker.remote(REFS, PREDS))
    assert "meteor_start" not in phases  # ... and to no one after

    other = {"v1": "a dog plays guitar in a park", "v2": "a brown dog", "v3": "people cook food"}
    assert ray.get(in_worker.remote(REFS, other))[0] == M.CaptionScorer().score(REFS, other)[0]


def test_stop_ends_the_actor_and_its_jvm(ray_session):
    meteor_service._handles.clear()
    meteor_service.start()
    actor = meteor_service._service
    assert meteor_service.meteor_score(*_tokenised())[0] > 0  # the JVM is up
    pid, kids = _pids_of(actor)
    assert kids and all("java" in Path(f"/proc/{k}/cmdline").read_text() for k in kids)
    meteor_service.stop()
    deadline = time.time() + 20
    while any(_alive(p) for p in (pid, *kids)) and time.time() < deadline:
        time.sleep(0.2)
    assert not any(_alive(p) for p in (pid, *kids)), "the service or its JVM outlived stop()"
    assert meteor_service._service is None


def test_a_dead_service_is_one_warning_then_the_own_jvm(ray_session, capsys):
    ray = ray_session
    meteor_service.start()
    name = meteor_service.service_name()
    os.kill(meteor_service_pid(ray.get_actor(name)), signal.SIGKILL)  # it crashes while the sweep runs on
    time.sleep(1)
    expected = M.meteor_in_process(*_tokenised())
    assert meteor_service.meteor_score(*_tokenised()) == expected
    assert meteor_service.meteor_score(*_tokenised()) == expected
    err = capsys.readouterr().err
    assert err.count("METEOR service") == 1 and name in err and "own JVM" in err
    meteor_service.stop()  # stopping a dead service is quiet
    meteor_service._dead.clear()
    meteor_service._handles.clear()


def test_a_trial_that_finds_no_service_says_so_once(ray_session):
    ray = ray_session
    meteor_service.stop()  # (none runs)
    metrics, _, phases, own_jvm, warned = ray.get(_in_a_worker(ray).remote(REFS, PREDS))
    assert metrics == M.CaptionScorer().score(REFS, PREDS)[0]
    assert own_jvm and phases["meteor_start"] > 1.0  # the worker paid its own JVM start, and says so
    assert warned.count("METEOR service") == 1 and "own JVM" in warned


def _tokenised():
    gts = M.ptb_tokenize_refs(REFS)
    res = M.ptb_tokenize({v: [PREDS[v]] for v in REFS})
    return gts, res
