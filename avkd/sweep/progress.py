"""Console progress of Ray Tune trials (one line per finished or failed trial) and the interrupt stopper.

A module of its own so that the driver imports Ray only when trials start (a bad sweep file is
reported before any heavy import), and so the callback class pickles by reference (Ray pickles it).
"""
from __future__ import annotations

from ray.tune import Callback
from ray.tune.stopper import Stopper
from rich.console import Console

from avkd.sweep.interrupt import signal_received
from avkd.sweep.plan import TrialSpec

console = Console()


class TrialProgress(Callback):
    """Tune's own progress table is off (RAY_AIR_NEW_OUTPUT=0, verbose=0); this prints instead."""

    def __init__(self, total: int):
        self.total, self.n = total, 0

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.n += 1
        r = trial.last_result or {}
        score = r.get("test_score", float("nan"))
        test = "" if score != score else f"test SCORE {score:.3f}, "  # tuning trials never see the test split
        took = f" ({r['trial_time_s']:.0f} s)" if "trial_time_s" in r else ""
        console.print(f"   [green]done[/] {self.n}/{self.total} {TrialSpec.from_dict(trial.config['trial']).name}: "
                      f"{test}val {r.get('val_best', float('nan')):.3f}{took}")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.n += 1
        console.print(f"   [red]FAILED[/] {self.n}/{self.total} {TrialSpec.from_dict(trial.config['trial']).name}")


class StopOnInterrupt(Stopper):
    """Ends the whole Tune experiment once the driver has received SIGINT/SIGTERM (avkd.sweep.interrupt)."""

    def __call__(self, trial_id, result) -> bool:
        return signal_received()

    def stop_all(self) -> bool:
        return signal_received()
