"""Where a run's seconds go: named phases timed into one breakdown (logged as time/<phase>_s).

The sweep driver times its phases (corpus, features, timing, each trial phase, report) and every
trial times its own (data, epochs, validation, test decoding, test metrics, METEOR's JVM start).
Code deep inside a trial marks a phase with `phase("validation")`, which adds to the clock made
active by `with clock:` and does nothing without one, so the training code needs no clock argument.

Times are exclusive: a phase nested in another (METEOR's JVM start inside the test metrics) is
taken out of the enclosing one, so the phases of a breakdown add up to at most its total.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Iterator

from trackers.schema import phase_time_metric

_active: ContextVar["PhaseClock | None"] = ContextVar("avkd_phase_clock", default=None)


class PhaseClock:
    """Seconds per named phase, in the order phases were first seen, from creation to `total()`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.started = time.perf_counter()
        self._open: list[list] = []  # [name, seconds spent in nested phases] of the phases now running
        self.raised: BaseException | None = None  # the latest exception that left a phase ...
        self.raised_in = ""  # ... and the innermost phase it left (where an interrupt landed)
        self._token = None

    def __enter__(self) -> "PhaseClock":
        self._token = _active.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _active.reset(self._token)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        self._open.append([name, 0.0])
        try:
            yield
        except BaseException as err:
            if err is not self.raised:  # enclosing phases see the same exception: the innermost one names it
                self.raised, self.raised_in = err, name
            raise
        finally:
            _, nested = self._open.pop()
            spent = time.perf_counter() - t0
            self.add(name, spent - nested)
            if self._open:
                self._open[-1][1] += spent

    def add(self, name: str, seconds: float) -> None:
        """Add seconds measured elsewhere (e.g. a child process's own clock)."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def total(self) -> float:
        return time.perf_counter() - self.started

    def metrics(self) -> dict[str, float]:
        """{time/<phase>_s: seconds} for every phase, plus time/total_s since the clock was made."""
        return {**{phase_time_metric(n): s for n, s in self.seconds.items()}, phase_time_metric("total"): self.total()}

    def lines(self) -> list[str]:
        """The breakdown as aligned text lines: phase, seconds, share of the total."""
        total = max(self.total(), 1e-9)
        rows = [*self.seconds.items(), ("other", max(0.0, total - sum(self.seconds.values()))), ("total", total)]
        width = max(len(n) for n, _ in rows)
        return [f"{n:<{width}} {s:8.1f} s {100 * s / total:5.1f} %" for n, s in rows]


def active() -> PhaseClock | None:
    return _active.get()


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block into the active clock's `name` (nothing is timed without an active clock)."""
    clock = _active.get()
    if clock is None:
        yield
        return
    with clock.phase(name):
        yield
