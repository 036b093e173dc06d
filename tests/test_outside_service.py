"""
Workers that depend on an outside service that goes down: backoff and the restart budget
designed together (a crash sequence counts once), and delayed restarts summarized in storms
like immediate ones. Every outage runs on a manual clock.
"""

from __future__ import annotations

import pytest
from structlog.testing import capture_logs

import greenkeep
from greenkeep import Backoff, ChildSpec, Supervisor, WorkerPool
from greenkeep.testing import ManualClock

from _events import DEADLINE, Events, wait_until
from _outage import Service, sync


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


class TestDelayedRestartsAreSummarized:
    def test_a_backoff_crash_storm_logs_per_period_not_per_restart(self) -> None:
        """50 workers with a backoff crashing for 10 summary periods (1,000 restarts): the
        log has the first crash of the kind in full (with its delay and its restart), then
        one exits_summarized per period; subscribers get every exit, delay and restart."""
        clock = ManualClock()
        service = Service()
        events = Events()
        size, periods, rounds_per_period = 50, 10, 2
        with capture_logs() as logs:
            pool = WorkerPool(
                service.consume,
                size,
                backoff=Backoff(initial=0.5, factor=1.0, max_delay=0.5, jitter=0.0),
                clock=clock,
                name="consumers",
                subscribers=[events],
            )
            pool.start()
            try:
                service.down.set()
                wait_until(lambda: pool.count_children().active == 0)
                for _ in range(periods * rounds_per_period):
                    advance(clock, pool, 0.5, crashing=True)
                lines = len(logs)
            finally:
                pool.stop(timeout=DEADLINE)

        restarts = periods * rounds_per_period * size
        assert restarts == len(events.of("child_restarted"))
        assert restarts + size == len(events.of("child_exited", action="restart"))
        assert restarts + size == len(events.of("child_restart_delayed"))
        assert restarts == sum(e["count"] for e in events.of("exits_summarized")) - (size - 1)
        names = [e["event"] for e in logs]
        assert 1 == names.count("child_restarted")  # the first crash's, in full
        assert 1 == names.count("child_restart_delayed")
        assert 1 == names.count("child_exited")  # the first crash
        assert periods - 1 <= names.count("exits_summarized") <= periods + 1
        assert lines <= 3 * periods + 10  # O(periods), not O(restarts)

    def test_a_crash_logged_in_full_has_its_delayed_restart_logged_in_full(self) -> None:
        """Outside a storm (damping off, or the first crash of a kind), a delayed restart's
        child_restart_delayed and child_restarted are logged, as before."""
        clock = ManualClock()
        service = Service()
        with capture_logs() as logs:
            sup = Supervisor(
                [
                    ChildSpec(
                        "db", service.consume, backoff=Backoff(initial=1.0, factor=1, jitter=0)
                    )
                ],
                clock=clock,
                log_summary_interval=None,
                max_restarts=10,
                name="app",
            )
            sup.start()
            try:
                service.down.set()
                for _ in range(3):
                    wait_until(lambda: sup.which_children()[0].status == "delayed")
                    clock.advance(1.0)
                    sync(sup)
                wait_until(lambda: sup.which_children()[0].status == "delayed")
            finally:
                sup.stop(timeout=DEADLINE)

        names = [e["event"] for e in logs]
        assert (4, 4, 3) == (
            names.count("child_exited"),
            names.count("child_restart_delayed"),
            names.count("child_restarted"),
        )

    def test_a_supervisor_childs_delayed_restarts_are_summarized_too(self) -> None:
        """A Supervisor child with a backoff in a crash loop: after the first crash of the
        kind, its delays and restarts reach subscribers only, as its exits do."""
        clock = ManualClock()
        service = Service()
        events = Events()
        with capture_logs() as logs:
            sup = Supervisor(
                [ChildSpec("db", service.consume, backoff=Backoff(initial=0.2, factor=1))],
                clock=clock,
                random=lambda: 0.5,
                name="app",
                subscribers=[events],
            )
            sup.start()
            try:
                service.down.set()
                for _ in range(5):  # within one summary interval of the first crash
                    clock.advance(events.wait("child_restart_delayed")["delay"])
                    events.wait("child_restarted")
                events.wait("child_restart_delayed")
            finally:
                sup.stop(timeout=DEADLINE)

        names = [e["event"] for e in logs]
        assert (1, 1, 1) == tuple(
            names.count(n) for n in ("child_exited", "child_restart_delayed", "child_restarted")
        )
        assert [True] * 4 == [e.get("summarized") for e in events.of("child_restarted")[1:]]
        assert 6 == len(events.of("child_restart_delayed"))
