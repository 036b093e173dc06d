"""
Workers that depend on an outside service that goes down: backoff and the restart budget
designed together (a crash sequence counts once), and delayed restarts summarized in storms
like immediate ones. Every outage runs on a manual clock.
"""

from __future__ import annotations

from typing import Any

import gevent
import gevent.event
import pytest

import greenkeep
from greenkeep import Backoff, ChildSpec, Supervisor, WorkerPool
from greenkeep.testing import ManualClock

from _events import DEADLINE, Events, wait_until


class Service:
    """An outside service the workers use: while it is down, every incarnation fails at
    once with ``ConnectionError``; while it is up, workers block (consume) until it goes
    down."""

    def __init__(self) -> None:
        self.down = gevent.event.Event()

    def consume(self, *_: object) -> None:
        if not self.down.is_set():
            self.down.wait()  # consuming, until the connection breaks
        raise ConnectionError("service unreachable")


def sync(sup: Supervisor | WorkerPool) -> None:
    """A round trip through the manager: the timers due by now have run."""
    run: Any = sup._run
    run.call(lambda: None)


def advance(clock: ManualClock, pool: WorkerPool, seconds: float, *, crashing: bool) -> None:
    """Move the clock by *seconds*; return once the manager has run what was due and (while
    the workers crash) every restarted worker has crashed again and waits."""
    clock.advance(seconds)
    sync(pool)
    if crashing:
        wait_until(lambda: pool.count_children().active == 0)


class TestTheBudgetCountsSequences:
    @pytest.mark.parametrize("mode", ["fresh", "reuse"])
    def test_a_pool_with_default_backoff_and_budget_survives_a_long_outage(
        self, mode: str
    ) -> None:
        """A pool with Backoff() and its default budget (3 per worker) lives through a 60 s
        outage in which every incarnation crashes at once (each worker's crash sequence is
        counted once), then every worker runs again within max_delay * (1 + jitter)."""
        clock = ManualClock()
        service = Service()
        events = Events()
        size = 20
        pool = WorkerPool(
            service.consume,
            size,
            mode=mode,
            backoff=Backoff(),
            clock=clock,
            name="consumers",
            subscribers=[events],
        )
        pool.start()
        try:
            service.down.set()
            wait_until(lambda: pool.count_children().active == 0)
            for _ in range(120):  # 60 s
                advance(clock, pool, 0.5, crashing=True)

            assert "running" == pool.state
            assert [] == events.of("restart_intensity_exceeded")
            attempts = [e["attempt"] for e in events.of("child_restart_delayed")]
            assert size == attempts.count(1)  # one sequence per worker ...
            assert len(attempts) >= 8 * size  # ... of many attempts
            assert len(attempts) == pool.snapshot()["restarts"]  # every restart is counted

            service.down.clear()
            waited = 0.0
            while pool.count_children().active < size and waited < 40.0:
                advance(clock, pool, 0.5, crashing=False)
                waited += 0.5

            assert size == pool.count_children().active
            assert waited <= Backoff().max_delay * (1 + Backoff().jitter) + 0.5
            assert "running" == pool.state
        finally:
            pool.stop(timeout=DEADLINE)

    def test_a_pool_without_backoff_gives_up_as_otp_does(self) -> None:
        """The zero-configuration pool in the same outage gives up: its budget (3 restarts
        per worker within 5 s) is spent at once, and the restart past it gives up."""
        service = Service()
        events = Events()
        size = 20
        pool = WorkerPool(service.consume, size, name="consumers", subscribers=[events])
        pool.start()
        try:
            service.down.set()

            with pytest.raises(greenkeep.RestartIntensityExceeded):
                pool.join(timeout=DEADLINE)
            assert 3 * size == len(events.of("child_restarted"))
            [exceeded] = events.of("restart_intensity_exceeded")
            assert (3 * size, 3 * size + 1) == (
                exceeded["max_restarts"],
                exceeded["restarts_in_period"],
            )
        finally:
            pool.stop(timeout=DEADLINE)

    def test_a_supervisor_child_with_backoff_survives_a_long_outage(self) -> None:
        """A Supervisor child with Backoff() under the default intensity (3 in 5 s) lives
        through a 60 s outage; the same child without backoff gives up on the fourth
        restart."""
        clock = ManualClock()
        service = Service()
        events = Events()
        sup = Supervisor(
            [ChildSpec("db", service.consume, backoff=Backoff())],
            clock=clock,
            random=lambda: 0.5,  # no jitter: the events' (rounded) delays are exact
            name="app",
            subscribers=[events],
        )
        sup.start()
        try:
            service.down.set()
            for _ in range(60):
                delayed = events.wait("child_restart_delayed", child_id="db")
                clock.advance(delayed["delay"])
                events.wait("child_restarted", child_id="db")
            assert "running" == sup.state
            assert 60 == delayed["attempt"]  # one sequence of 60 attempts
            assert [] == events.of("restart_intensity_exceeded")
        finally:
            sup.stop(timeout=DEADLINE)

        bare = Supervisor([ChildSpec("db", service.consume)], name="bare")
        bare.start()
        with pytest.raises(greenkeep.RestartIntensityExceeded):
            bare.join(timeout=DEADLINE)
        bare.stop(timeout=DEADLINE)

    def test_the_recommended_backoff(self) -> None:
        """Backoff.for_outside_service(): the defaults with max_delay 5 s, so a worker has
        tried again at most 5.5 s after the service is back; reset_after is at least the
        default period, so the default budget never runs out on an outage."""
        backoff = Backoff.for_outside_service()

        assert Backoff(max_delay=5.0) == backoff
        assert backoff is not Backoff.for_outside_service()
        assert 5.5 == pytest.approx(backoff.max_delay * (1 + backoff.jitter))
        assert backoff.reset_after >= 5.0
