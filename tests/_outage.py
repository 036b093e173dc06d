"""
Test helpers for outages of an outside service, on a manual clock: a service that goes down
and comes back, and ways to move the clock and wait for the manager without sleeping.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gevent.event

from greenkeep import Supervisor, WorkerPool
from greenkeep._readiness import CHECK_EVERY
from greenkeep.testing import ManualClock

from _events import hub_turns, wait_until


class Service:
    """
    An outside service the workers use: while it is down, every incarnation fails at once
    (with *error*); while it is up, workers block (consume) until it goes down. Workers in
    *broken* fail whatever the service does (a bug).
    """

    def __init__(self, error: type[Exception] = ConnectionError) -> None:
        self.down = gevent.event.Event()
        self.error = error
        self.broken: set[int] = set()

    def consume(self, worker_id: int = 0, *_: object) -> None:
        if worker_id not in self.broken and not self.down.is_set():
            self.down.wait()  # consuming, until the connection breaks
        raise self.error("service unreachable")  # one raising line: one kind of crash


def sync(sup: Supervisor | WorkerPool) -> None:
    """A round trip through the manager: the timers due by now have run."""
    run: Any = sup._run
    run.call(lambda: None)


def settle(pool: WorkerPool) -> None:
    """Return once the manager has run the timers due by now, the workers it restarted have
    run (and failed at once, or block), and their exits are handled."""
    run: Any = pool._run
    for _ in range(2):
        sync(pool)
        hub_turns()
        wait_until(lambda: not run.mailbox.queue)


def step(clock: ManualClock, pool: WorkerPool, seconds: float = CHECK_EVERY) -> None:
    """Move the clock, then `settle`."""
    clock.advance(seconds)
    settle(pool)


def run_until(
    clock: ManualClock, pool: WorkerPool, condition: Callable[[], bool], limit: float
) -> float:
    """Step the clock until *condition* holds; return how long that took (clock seconds)."""
    started = clock()
    while not condition():
        assert clock() - started <= limit, f"not within {limit} s of clock time"
        step(clock, pool)
    return clock() - started
