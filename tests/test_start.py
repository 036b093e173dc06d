"""Ordered, synchronous start (OTP's init acknowledgement) and significant children."""

from __future__ import annotations

import gevent
import gevent.event
import pytest

import greenkeep
from greenkeep import ChildSpec, Supervisor

from _events import DEADLINE, Events


def block_forever() -> None:
    gevent.event.Event().wait()


class TestOrderedStart:
    def test_next_child_starts_only_after_the_previous_is_ready(self) -> None:
        """A child that signals readiness holds back the next one until it is ready."""
        log: list[str] = []
        release = gevent.event.Event()

        def slow_init() -> None:
            log.append("a: init begins")
            release.wait()
            log.append("a: ready")
            greenkeep.ready()
            block_forever()

        def second() -> None:
            log.append("b: started")
            block_forever()

        sup = Supervisor(
            [ChildSpec("a", slow_init, ready_timeout=DEADLINE), ChildSpec("b", second)]
        )
        gevent.spawn_later(0, lambda: (log.append("released"), release.set()))

        sup.start()

        assert ["a: init begins", "released", "a: ready", "b: started"] == log
        sup.stop()

    def test_children_that_do_not_signal_start_once_they_yield(self) -> None:
        """Without ready_timeout, the next child starts once the previous one first yields."""
        log: list[str] = []

        def child(name: str) -> None:
            log.append(f"{name} runs")
            gevent.sleep(0)
            log.append(f"{name} resumed")
            block_forever()

        sup = Supervisor([ChildSpec(n, child, (n,)) for n in "ab"])
        sup.start()

        assert ["a runs", "a resumed", "b runs", "b resumed"] == log
        sup.stop()

    def test_failure_while_starting_stops_the_started_ones_in_reverse(self) -> None:
        """A child with ready_timeout that fails before it is ready fails start() cleanly:
        the error names the child, and the children already started are stopped newest
        first."""
        events = Events()

        def broken() -> None:
            raise ConnectionError("database unreachable")

        sup = Supervisor(
            [
                ChildSpec("a", block_forever),
                ChildSpec("b", block_forever),
                ChildSpec("db", broken, ready_timeout=1.0),
                ChildSpec("never", block_forever),
            ],
            subscribers=[events],
            name="app",
        )

        with pytest.raises(greenkeep.ChildStartError) as info:
            sup.start()

        assert ("app", "db") == (info.value.supervisor, info.value.child_id)
        assert "ConnectionError: database unreachable" == info.value.exit.error
        stopped = [e["child_id"] for e in events.of("child_exited", reason="shutdown")]
        assert ["b", "a"] == stopped
        assert [] == events.of("child_started", child_id="never")
        assert ("stopped", "start_failed") == (sup.state, sup.stop().reason)

    def test_not_ready_in_time_fails_start(self) -> None:
        """A child that does not signal readiness within ready_timeout fails start()."""
        sup = Supervisor([ChildSpec("slow", block_forever, ready_timeout=0.05)])

        with pytest.raises(greenkeep.ChildStartError, match="did not signal readiness"):
            sup.start()
        assert "terminated" == sup.which_children()[0].status

    def test_supervisor_can_start_again_after_a_failed_start(self) -> None:
        """A supervisor whose start failed (a child with ready_timeout crashed before it was
        ready) can be started again."""
        attempts = []

        def flaky() -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise ConnectionError("first try")
            greenkeep.ready()
            block_forever()

        sup = Supervisor([ChildSpec("c", flaky, ready_timeout=1.0)])
        with pytest.raises(greenkeep.ChildStartError):
            sup.start()

        sup.start()

        assert "running" == sup.state
        sup.stop()

    def test_ready_outside_a_worker_is_a_no_op(self) -> None:
        """greenkeep.ready() outside a worker does nothing (library code may call it)."""
        greenkeep.ready()

        assert greenkeep.current() is None
        assert not greenkeep.stop_signal().is_set()


class TestSignificant:
    def finite(self) -> None:
        gevent.sleep(0)

    @pytest.mark.parametrize("restart", ["transient", "temporary"])
    def test_any_significant(self, restart: str) -> None:
        """any_significant: one significant child ending on its own ends the supervisor."""
        go = gevent.event.Event()

        def job() -> None:
            go.wait()

        sup = Supervisor(
            [
                ChildSpec("job", job, restart=restart, significant=True),
                ChildSpec("other", block_forever),
            ],
            auto_shutdown="any_significant",
        )
        sup.start()
        go.set()

        assert sup.join(timeout=DEADLINE)
        assert "auto_shutdown" == sup.stop().reason

    def test_all_significant_waits_for_all(self) -> None:
        """all_significant: the supervisor ends once every significant child has ended."""
        events = Events()
        done = {n: gevent.event.Event() for n in "ab"}

        def job(name: str) -> None:
            done[name].wait()

        sup = Supervisor(
            [ChildSpec(n, job, (n,), restart="transient", significant=True) for n in "ab"],
            auto_shutdown="all_significant",
            subscribers=[events],
        )
        sup.start()
        done["a"].set()
        events.wait("child_exited", child_id="a")

        assert "running" == sup.state
        done["b"].set()
        assert sup.join(timeout=DEADLINE)
        assert "auto_shutdown" == sup.stop().reason

    def test_terminating_a_significant_child_does_not_shut_down(self) -> None:
        """A significant child the supervisor stops itself does not trigger auto shutdown."""
        sup = Supervisor(
            [ChildSpec("job", block_forever, restart="transient", significant=True)],
            auto_shutdown="any_significant",
        )
        sup.start()

        sup.terminate_child("job")

        assert "running" == sup.state
        sup.stop()

    def test_bad_combinations_are_rejected(self) -> None:
        """OTP's validation: significant needs auto_shutdown, and not a permanent child."""
        with pytest.raises(greenkeep.InvalidSpecError, match="auto_shutdown is 'never'"):
            Supervisor([ChildSpec("a", block_forever, restart="transient", significant=True)])
        with pytest.raises(greenkeep.InvalidSpecError, match="permanent"):
            ChildSpec("a", block_forever, significant=True)
        with pytest.raises(greenkeep.InvalidSpecError, match="auto_shutdown"):
            Supervisor([], auto_shutdown="sometimes")
