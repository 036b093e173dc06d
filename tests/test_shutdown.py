"""
Bounded shutdown: cooperative stop signal first, then GreenletExit, each child within its
policy and the overall cap; children that outlive their bound are reported unstopped.

These tests are about real time (gevent cannot fake it): bounds are short and each test
waits for an outcome, never for a fixed time.
"""

from __future__ import annotations

import time

import gevent
import gevent.event
import gevent.queue
import pytest
from greenlet import getcurrent

import greenkeep
from greenkeep import ChildSpec, Supervisor

from _events import DEADLINE, Events, hub_turns, wait_until

SLACK = 0.5  # seconds of scheduling noise tolerated on top of a bound


def block_forever() -> None:
    gevent.event.Event().wait()


def swallow_greenlet_exit() -> None:
    while True:
        try:
            block_forever()
        except gevent.GreenletExit:
            continue


class Greenlets:
    """Records every worker greenlet a test's children ran in."""

    def __init__(self) -> None:
        self.seen: list[object] = []

    def wrap(self, fn):  # type: ignore[no-untyped-def]
        def target() -> None:
            self.seen.append(getcurrent())
            fn()

        return target

    def alive(self) -> list[object]:
        return [g for g in self.seen if not g.dead]  # type: ignore[attr-defined]


def test_stop_is_reverse_order_and_idempotent() -> None:
    """stop() stops children newest first; calling it again returns the same report."""
    events = Events()
    sup = Supervisor([ChildSpec(i, block_forever) for i in "abc"], subscribers=[events])
    sup.start()

    report = sup.stop()

    assert ["c", "b", "a"] == [e["child_id"] for e in events.of("child_exited")]
    assert report is sup.stop()
    assert ("shutdown", True, "stopped") == (report.reason, report.clean, sup.state)


def test_swallowed_greenlet_exit_is_reported_unstopped_within_its_bound() -> None:
    """A child that swallows GreenletExit is waited for its timeout, then reported."""
    events = Events()
    sup = Supervisor(
        [
            ChildSpec("ok", block_forever),
            ChildSpec("stubborn", swallow_greenlet_exit, shutdown=0.1),
        ],
        subscribers=[events],
        name="s",
    )
    sup.start()
    started = time.monotonic()

    report = sup.stop()

    elapsed = time.monotonic() - started
    assert 0.1 <= elapsed < 0.1 + SLACK
    [unstopped] = report.unstopped
    assert ("s", "stubborn", 1) == (unstopped.path, unstopped.child_id, unstopped.incarnation)
    assert 0.1 <= unstopped.waited < 0.1 + SLACK
    assert 1 == len(events.of("child_unstopped", child_id="stubborn"))
    assert "warning" == events.of("child_unstopped")[0]["level"]
    assert events.of("child_exited", child_id="ok", reason="shutdown")


def test_overall_cap_bounds_an_infinite_policy() -> None:
    """stop(timeout) caps even a child whose own policy is infinity."""
    sup = Supervisor([ChildSpec("stubborn", swallow_greenlet_exit, shutdown="infinity")])
    sup.start()
    started = time.monotonic()

    report = sup.stop(timeout=0.1)

    assert time.monotonic() - started < 0.1 + SLACK
    assert ["stubborn"] == [u.child_id for u in report.unstopped]


def test_brutal_does_not_wait() -> None:
    """A brutal child gets GreenletExit and no wait; a stubborn one is reported at once."""
    sup = Supervisor([ChildSpec("stubborn", swallow_greenlet_exit, shutdown="brutal")])
    sup.start()
    started = time.monotonic()

    report = sup.stop()

    assert time.monotonic() - started < SLACK
    assert ["stubborn"] == [u.child_id for u in report.unstopped]


def test_non_yielding_child_is_bounded_by_its_next_yield() -> None:
    """A child busy without yielding delays the stop until it yields, and no longer."""
    events = Events()

    def busy_when_stopped() -> None:
        try:
            block_forever()
        except gevent.GreenletExit:
            end = time.monotonic() + 0.3
            while time.monotonic() < end:  # cleanup that never yields
                pass

    sup = Supervisor([ChildSpec("busy", busy_when_stopped, shutdown=0.05)], subscribers=[events])
    sup.start()
    started = time.monotonic()

    report = sup.stop()

    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 0.3 + SLACK
    exits = events.of("child_exited", child_id="busy")
    assert report.unstopped or exits, "stopped or reported unstopped"
    if report.unstopped:
        assert report.unstopped[0].waited >= 0.3


def test_cooperative_child_finishes_its_work_on_the_stop_signal() -> None:
    """A worker that asked for its stop signal gets it first and can finish cleanly."""
    done = []

    def consumer() -> None:
        signal = greenkeep.stop_signal()
        signal.wait()
        done.append("acknowledged in-flight work")

    sup = Supervisor([ChildSpec("c", consumer, shutdown=1.0)])
    sup.start()

    report = sup.stop()

    assert ["acknowledged in-flight work"] == done
    assert report.clean
    assert "shutdown" == sup.which_children()[0].last_exit.reason


def test_cooperative_child_that_ignores_the_signal_gets_greenlet_exit() -> None:
    """A worker that asked for the signal but does not act on it is interrupted once its
    timeout has passed, within the same bound."""
    interrupted = []

    def ignores_signal() -> None:
        greenkeep.stop_signal()
        try:
            block_forever()
        except gevent.GreenletExit:
            interrupted.append(True)
            raise

    sup = Supervisor([ChildSpec("c", ignores_signal, shutdown=0.1)])
    sup.start()
    started = time.monotonic()

    report = sup.stop()

    assert 0.1 <= time.monotonic() - started < 0.1 + SLACK
    assert [True] == interrupted
    assert report.clean


def test_child_that_exits_on_its_own_while_being_stopped() -> None:
    """A child that ends by itself while its stop is pending is recorded with its own
    error and counted as stopped."""

    def slow_cleanup_then_crash() -> None:
        try:
            block_forever()
        except gevent.GreenletExit:
            gevent.sleep(0.01)
            raise ValueError("cleanup crashed") from None

    sup = Supervisor([ChildSpec("c", slow_cleanup_then_crash, shutdown=1.0)])
    sup.start()

    report = sup.stop()

    record = sup.which_children()[0].last_exit
    assert ("shutdown", "ValueError: cleanup crashed") == (record.reason, record.error)
    assert report.clean


def test_stop_during_one_for_all_restart_starts_nothing() -> None:
    """A stop issued while one_for_all is stopping bystanders aborts the restart: nothing
    is started again, and stop() returns within its bound."""
    events = Events()
    greenlets = Greenlets()
    crash = gevent.event.Event()
    in_cleanup = gevent.event.Event()

    def crasher() -> None:
        crash.wait()
        raise ValueError("boom")

    def slow_to_stop() -> None:
        try:
            block_forever()
        except gevent.GreenletExit:
            in_cleanup.set()
            gevent.sleep(0.2)

    sup = Supervisor(
        [
            ChildSpec("a", greenlets.wrap(block_forever)),
            ChildSpec("b", greenlets.wrap(crasher)),
            ChildSpec("c", greenlets.wrap(slow_to_stop), shutdown=2.0),
        ],
        strategy="one_for_all",
        subscribers=[events],
    )
    sup.start()
    crash.set()
    in_cleanup.wait(timeout=DEADLINE)
    started = time.monotonic()

    report = sup.stop(timeout=1.0)

    assert time.monotonic() - started < 1.0 + SLACK
    assert [] == events.of("child_restarted")
    assert [] == greenlets.alive()
    assert report.clean
    assert {"terminated"} == {c.status for c in sup.which_children()}


def test_child_returning_as_terminate_child_is_called() -> None:
    """A child that returns on its own just as terminate_child runs keeps its real exit
    reason and is not restarted."""
    events = Events()
    release = gevent.event.Event()

    def returns_when_released() -> None:
        release.wait()

    sup = Supervisor([ChildSpec("c", returns_when_released)], subscribers=[events])
    sup.start()
    release.set()  # the child wakes (and returns) before the manager serves the request

    info = sup.terminate_child("c")

    assert ("terminated", "normal") == (info.status, info.last_exit.reason)
    assert [] == events.of("child_restarted")
    sup.stop()


def test_stop_from_inside_a_child() -> None:
    """A child calling stop() on its own supervisor ends itself with GreenletExit; the
    supervisor stops everything."""
    stopped = gevent.event.Event()
    go = gevent.event.Event()

    def stopper() -> None:
        go.wait()
        try:
            holder[0].stop()
        except gevent.GreenletExit:
            stopped.set()
            raise

    holder: list[Supervisor] = []
    sup = Supervisor([ChildSpec("a", block_forever), ChildSpec("stopper", stopper)])
    holder.append(sup)
    sup.start()
    go.set()

    assert sup.join(timeout=DEADLINE)
    assert stopped.is_set()
    assert "stopped" == sup.state


def test_concurrent_stops_share_one_report() -> None:
    """stop() from several greenlets at once: one shutdown, the same report for all."""
    sup = Supervisor([ChildSpec(i, block_forever) for i in "abc"])
    sup.start()

    jobs = [gevent.spawn(sup.stop) for _ in range(5)]
    gevent.joinall(jobs, timeout=DEADLINE)

    reports = {id(j.value) for j in jobs}
    assert 1 == len(reports)


def test_no_worker_runs_after_stop() -> None:
    """After stop() returns, no worker of the supervisor runs or starts."""
    greenlets = Greenlets()

    def flappy() -> None:
        gevent.sleep(0.001)
        raise ValueError("flap")

    sup = Supervisor(
        [ChildSpec(i, greenlets.wrap(flappy)) for i in range(5)], max_restarts=greenkeep.UNLIMITED
    )
    sup.start()
    wait_until(lambda: len(greenlets.seen) >= 50)  # it has flapped for a while
    sup.stop()
    count = len(greenlets.seen)
    hub_turns()  # anything scheduled before stop() returned would run now

    assert [] == greenlets.alive()
    assert count == len(greenlets.seen)


def test_stop_timeout_is_validated() -> None:
    """stop(timeout=...) rejects negative and NaN timeouts with a clear error."""
    sup = Supervisor([])
    sup.start()

    with pytest.raises(greenkeep.InvalidArgumentError, match="timeout must be None or"):
        sup.stop(timeout=-1)
    with pytest.raises(greenkeep.InvalidArgumentError):
        sup.stop(timeout=float("nan"))
    assert "running" == sup.state
    sup.stop()


def test_stop_without_blocking_requests_the_stop_and_report_follows() -> None:
    """stop(block=False) returns at once with an incomplete report; join() then waits for
    the stop, and report is the final report (None before the stop is over)."""
    signal_seen = gevent.event.Event()
    release = gevent.event.Event()

    def slow_to_stop() -> None:
        greenkeep.stop_signal().wait()
        signal_seen.set()
        release.wait()

    sup = Supervisor([ChildSpec("c", slow_to_stop, shutdown=DEADLINE)])
    sup.start()

    requested = sup.stop(block=False)
    signal_seen.wait(DEADLINE)
    before = sup.report
    release.set()
    sup.join(timeout=DEADLINE)

    assert (False, "shutdown") == (requested.complete, requested.reason)
    assert before is None
    assert sup.report is not None and sup.report.clean
    assert sup.report is sup.stop()


def test_brutal_never_sets_the_stop_signal() -> None:
    """A brutal stop sends GreenletExit without setting the stop signal, so a child that
    waits on its signal never runs its graceful path."""
    ran: list[str] = []

    def graceful() -> None:
        if greenkeep.stop_signal().wait():
            ran.append("graceful")

    sup = Supervisor([ChildSpec("c", graceful, shutdown="brutal")])
    sup.start()

    report = sup.stop()

    assert [] == ran
    assert report.clean
