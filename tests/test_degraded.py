"""
Readiness apart from liveness: a running pool whose workers keep failing is ``degraded``
(and so is every supervisor above it), says so in events, snapshots and the status API, and
stops being so once its workers run again. Every scenario runs on a manual clock.
"""

from __future__ import annotations

from typing import Any

import gevent
import gevent.event
import gevent.queue
import pytest
from structlog.testing import capture_logs

import greenkeep
from greenkeep import UNLIMITED, Backoff, ChildSpec, Supervisor, WorkerPool
from greenkeep._readiness import CHECK_EVERY, DEGRADED_AFTER, RECOVERED_AFTER
from greenkeep._status import Samples, View, summary
from greenkeep.testing import ManualClock

from _events import DEADLINE, Events, wait_until
from _outage import Service, run_until, settle, step


def recommended_pool(service: Service, clock: ManualClock, size: int, **kwargs: Any) -> WorkerPool:
    return WorkerPool(
        service.consume,
        size,
        backoff=Backoff.for_outside_service(),
        clock=clock,
        name="consumers",
        **kwargs,
    )


class TestWithBackoff:
    def test_a_bug_crash_loop_is_degraded_within_seconds_and_never_gives_up(self) -> None:
        """Every incarnation raises TypeError at once: with the recommended configuration
        the pool is degraded within 10 s (about DEGRADED_AFTER), says so once
        (pool_degraded, warning), and stays degraded and running for a minute."""
        clock = ManualClock()
        service = Service(TypeError)
        events = Events()
        pool = recommended_pool(service, clock, 20, subscribers=[events])
        service.down.set()
        pool.start()
        try:
            took = run_until(clock, pool, lambda: pool.degraded, limit=10.0)
            for _ in range(240):  # a minute
                step(clock, pool)
                assert pool.degraded and "running" == pool.state

            assert took <= DEGRADED_AFTER + 2 * CHECK_EVERY
            [degraded] = events.of("pool_degraded")
            assert ("warning", "consumers", 20, 20, 1.0, "delayed_restarts") == (
                degraded["level"],
                degraded["supervisor"],
                degraded["failing"],
                degraded["size"],
                degraded["share"],
                degraded["basis"],
            )
            assert DEGRADED_AFTER <= degraded["failing_for"] <= took + CHECK_EVERY
            assert [] == events.of("pool_recovered")
            assert [] == events.of("restart_intensity_exceeded")
            assert 20 == pool.failing
            snapshot = pool.snapshot()
            assert (True, 20) == (snapshot["degraded"], snapshot["failing"])
        finally:
            pool.stop(timeout=DEADLINE)
        assert not pool.degraded and 0 == pool.failing  # stopped: nothing is degraded

    def test_it_recovers_within_a_second_once_the_workers_run_again(self) -> None:
        """After an outage, the service comes back: every worker runs again within
        max_delay * (1 + jitter), and the pool stops being degraded within a second of
        that (pool_recovered, info, with how long it was degraded)."""
        clock = ManualClock()
        service = Service()
        events = Events()
        size = 20
        pool = recommended_pool(service, clock, size, subscribers=[events])
        pool.start()
        try:
            service.down.set()
            run_until(clock, pool, lambda: pool.degraded, limit=10.0)
            became = clock()
            run_until(clock, pool, lambda: clock() >= 30.0, limit=40.0)

            service.down.clear()
            backoff = Backoff.for_outside_service()
            back = run_until(
                clock,
                pool,
                lambda: pool.count_children().active == size,
                limit=backoff.max_delay * (1 + backoff.jitter) + CHECK_EVERY,
            )
            ready = run_until(clock, pool, lambda: not pool.degraded, limit=1.0)

            assert ready <= RECOVERED_AFTER + CHECK_EVERY
            assert back <= backoff.max_delay * (1 + backoff.jitter) + CHECK_EVERY
            [recovered] = events.of("pool_recovered")
            assert ("info", size) == (recovered["level"], recovered["size"])
            assert recovered["failing"] < size // 2  # fewer than half failing, at most
            assert 30.0 - became <= recovered["degraded_for"] <= clock() - became
            run_until(clock, pool, lambda: pool.failing == 0, limit=RECOVERED_AFTER)
        finally:
            pool.stop(timeout=DEADLINE)

    def test_the_events_are_logged_at_their_documented_levels(self) -> None:
        """pool_degraded (warning) and pool_recovered (info) reach the log, at the levels
        greenkeep.EVENT_LEVELS lists, with the pool's path bound."""
        clock = ManualClock()
        service = Service()
        with capture_logs() as logs:
            pool = recommended_pool(service, clock, 2)
            pool.start()
            try:
                service.down.set()
                run_until(clock, pool, lambda: pool.degraded, limit=10.0)
                service.down.clear()
                run_until(clock, pool, lambda: not pool.degraded, limit=10.0)
            finally:
                pool.stop(timeout=DEADLINE)

        readiness = [e for e in logs if e["event"] in ("pool_degraded", "pool_recovered")]
        assert [("pool_degraded", "warning"), ("pool_recovered", "info")] == [
            (e["event"], e["log_level"]) for e in readiness
        ]
        for entry in readiness:
            assert entry["log_level"] in greenkeep.EVENT_LEVELS[entry["event"]]
            assert "consumers" == entry["supervisor"]

    def test_fewer_than_half_failing_is_not_degraded(self) -> None:
        """Four of ten workers crash forever: failing says 4, the pool is never degraded;
        a fifth makes it so."""
        clock = ManualClock()
        service = Service(TypeError)
        service.broken = {0, 1, 2, 3}
        events = Events()
        pool = recommended_pool(service, clock, 10, subscribers=[events])
        pool.start()
        try:
            for _ in range(40):
                step(clock, pool)
                assert not pool.degraded
            assert 4 == pool.failing

            service.broken.add(4)
            pool.worker(4).kill()  # its next incarnation fails too
            run_until(clock, pool, lambda: pool.degraded, limit=5.0)
            assert 5 == events.of("pool_degraded")[0]["failing"]
        finally:
            pool.stop(timeout=DEADLINE)

    def test_an_outage_shorter_than_a_second_is_not_degraded(self) -> None:
        """Every worker crashes for half a second, then works (its restart after 0.7 s):
        never degraded, as a worker counts only while it waits for its restart, and nothing
        is failing once they have run RECOVERED_AFTER."""
        clock = ManualClock()
        service = Service()
        events = Events()
        pool = recommended_pool(service, clock, 10, subscribers=[events], random=lambda: 0.5)
        pool.start()
        try:
            service.down.set()
            settle(pool)
            for _ in range(10):  # restarts after 0.1, 0.3, then 0.7 s
                step(clock, pool, 0.05)
            service.down.clear()
            for _ in range(60):
                step(clock, pool, 0.05)
                assert not pool.degraded

            assert (10, 0) == (pool.count_children().active, pool.failing)
            assert [] == events.of("pool_degraded")
        finally:
            pool.stop(timeout=DEADLINE)

    def test_shrinking_the_pool_forgets_its_failing_workers(self) -> None:
        """The failing workers are the highest ids; shrinking removes them: the pool
        recovers at its next check."""
        clock = ManualClock()
        service = Service(TypeError)
        service.broken = set(range(5, 10))
        pool = recommended_pool(service, clock, 10)
        pool.start()
        try:
            run_until(clock, pool, lambda: pool.degraded, limit=5.0)
            pool.resize(5)
            step(clock, pool)
            assert (False, 0) == (pool.degraded, pool.failing)
        finally:
            pool.stop(timeout=DEADLINE)

    def test_the_checks_stop_once_nothing_is_failing(self) -> None:
        """An idle pool arms no readiness check (its manager is not woken for nothing)."""
        clock = ManualClock()
        service = Service()
        pool = recommended_pool(service, clock, 4, random=lambda: 0.5)
        pool.start()
        try:
            service.down.set()
            run_until(clock, pool, lambda: pool.degraded, limit=5.0)
            service.down.clear()
            run_until(clock, pool, lambda: not pool.degraded, limit=10.0)
            step(clock, pool)
            run: Any = pool._run
            assert run.timers.check_at is None
        finally:
            pool.stop(timeout=DEADLINE)


class TestWithoutBackoff:
    @pytest.mark.parametrize("summary_interval", [1.0, None])
    def test_a_crash_rate_of_half_the_workers_a_second_is_degraded(
        self, summary_interval: float | None
    ) -> None:
        """No backoff: the crashes of the last second stand for failing workers. Every
        worker crashing four times a second (restarted at once, on the pool's straight
        path while damping is on) makes the pool degraded about a second later; once the
        crashes stop, it recovers within the window."""
        clock = ManualClock()
        commands: dict[int, gevent.queue.Queue[str]] = {}
        events = Events()
        size = 8

        def worker(worker_id: int) -> None:
            if commands.setdefault(worker_id, gevent.queue.Queue()).get() == "crash":
                raise RuntimeError("crash")

        pool = WorkerPool(
            worker,
            size,
            max_restarts=UNLIMITED,
            clock=clock,
            log_summary_interval=summary_interval,
            subscribers=[events],
            name="p",
        )
        pool.start()
        try:

            def crash_all() -> None:
                restarted = len(events.of("child_restarted"))
                for worker_id in range(size):
                    commands.setdefault(worker_id, gevent.queue.Queue()).put("crash")
                wait_until(lambda: len(events.of("child_restarted")) == restarted + size)

            crashing = 0.0
            while not pool.degraded:
                assert crashing <= 2.0
                crash_all()
                step(clock, pool)
                crashing += CHECK_EVERY
            assert crashing >= DEGRADED_AFTER
            assert size == pool.failing
            [degraded] = events.of("pool_degraded")
            assert (size, "crash_rate") == (degraded["failing"], degraded["basis"])

            quiet = run_until(clock, pool, lambda: not pool.degraded, limit=2.0)
            assert quiet <= 1.0 + CHECK_EVERY
            assert 1 == len(events.of("pool_recovered"))
        finally:
            pool.stop(timeout=DEADLINE)

    def test_the_zero_configuration_pool_gives_up_rather_than_degrade(self) -> None:
        """A crash loop under the default budget gives up in a fraction of a second: not
        running, so not degraded either (liveness says it all)."""
        service = Service()
        service.down.set()
        pool = WorkerPool(service.consume, 10, name="p")
        with pytest.raises(greenkeep.RestartIntensityExceeded):  # noqa: PT012 (either call)
            pool.start()  # gives up while starting, or right after
            pool.join(timeout=DEADLINE)
        assert ("failed", False) == (pool.state, pool.degraded)
        pool.stop(timeout=DEADLINE)


class TestSupervisors:
    def test_a_supervisor_is_degraded_while_a_pool_in_its_subtree_is(self) -> None:
        """root > db > consumers: while the pool is degraded, so are db and root, in their
        snapshots and in the status API; a sibling pool that is fine is not."""
        clock = ManualClock()
        service = Service(TypeError)
        consumers = recommended_pool(service, clock, 4)
        fine = WorkerPool(Service().consume, 2, name="fine", clock=clock)
        db = Supervisor([ChildSpec("consumers", consumers)], name="db", clock=clock)
        root = Supervisor([ChildSpec("db", db), ChildSpec("fine", fine)], name="root", clock=clock)
        assert not root.degraded  # not started
        root.start()
        try:
            assert not root.degraded
            service.down.set()  # the consumers' connections break
            run_until(clock, consumers, lambda: consumers.degraded, limit=5.0)

            assert (True, True, True, False) == (
                root.degraded,
                db.degraded,
                consumers.degraded,
                fine.degraded,
            )
            snapshot = root.snapshot()
            nested = snapshot["children"][0]["supervisor"]
            assert (True, True) == (snapshot["degraded"], nested["degraded"])
            pool_snapshot = nested["children"][0]["supervisor"]
            assert (True, 4) == (pool_snapshot["degraded"], pool_snapshot["failing"])
            assert (False, 0) == (
                snapshot["children"][1]["supervisor"]["degraded"],
                snapshot["children"][1]["supervisor"]["failing"],
            )
            tree = summary(root, View(Samples(), False, 0.0))["root"]
            assert True is tree["degraded"]
            api_pool = tree["children"][0]["supervisor"]["children"][0]["supervisor"]
            assert (True, 4) == (api_pool["degraded"], api_pool["failing"])

            service.down.clear()
            run_until(clock, consumers, lambda: not root.degraded, limit=10.0)
            assert (False, False) == (db.degraded, consumers.degraded)
        finally:
            root.stop(timeout=DEADLINE)
