"""The Tune side of the sweep's progress view: a callback that advances the phase as trials end, and
the stopper that ends a Tune experiment once the driver received SIGINT/SIGTERM.

Its own module because it subclasses Ray's classes: it is imported only when a phase has trials to
run, so the rerun of a finished sweep never imports Ray. The callback pickles by reference (Ray
pickles the run config); the phase it advances stays in the driver.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper

from avkd.sweep.interrupt import signal_received
from avkd.sweep.progress import NullPhase

_PHASES: dict[int, Any] = {}  # TrialProgress pickles (Ray saves its run config) as a key into this


class TrialProgress(Callback):
    """Ray Tune callback: each finished or failed trial advances the phase, with its result as a note.
    (Tune's own progress table is off: RAY_AIR_NEW_OUTPUT=0, verbose=0.)"""

    def __init__(self, phase: Any):
        self._key = id(phase)
        _PHASES[self._key] = phase

    @property
    def phase(self) -> Any:
        return _PHASES.get(self._key, NullPhase())

    def __getstate__(self) -> dict:
        return {"_key": self._key}  # the phase (locks, a console) stays in the driver

    def on_trial_complete(self, iteration, trials, trial, **info):
        from avkd.sweep.plan import TrialSpec
        from trackers import schema

        r = trial.last_result or {}
        score = r.get("test_score", float("nan"))
        test = "" if score != score else f"test SCORE {score:.3f}, "  # tuning trials never see the test split
        took = f" ({r[schema.TRIAL_TIME_S]:.0f} s)" if schema.TRIAL_TIME_S in r else ""
        self.phase.advance(
            1,
            f"done {TrialSpec.from_dict(trial.config['trial']).name}: "
            f"{test}val {r.get('val_best', float('nan')):.3f}{took}",
        )

    def on_trial_error(self, iteration, trials, trial, **info):
        from avkd.sweep.plan import TrialSpec

        self.phase.advance(1, f"FAILED {TrialSpec.from_dict(trial.config['trial']).name}")


class StopOnInterrupt(Stopper):
    """Ends the whole Tune experiment once the driver has received SIGINT/SIGTERM (avkd.sweep.interrupt)."""

    def __call__(self, trial_id, result) -> bool:
        return signal_received()

    def stop_all(self) -> bool:
        return signal_received()
