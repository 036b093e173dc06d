"""
Start semantics: a child without ready_timeout that crashes before its first yield is an
ordinary crash (restarted by the restart table, counted by the intensity), a supervisor that
gives up while starting says so from start(), and nothing starts once a stop has begun.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

import gevent
import gevent.event
import pytest

import greenkeep
from greenkeep import ChildSpec, Supervisor

from _events import DEADLINE, Events, wait_until


def block_forever() -> None:
    gevent.event.Event().wait()


def crash_at_once() -> None:
    raise ConnectionError("cannot connect")


def crash_first_run(log: list[str] | None = None, name: str = "c") -> Callable[[], None]:
    """A child whose first incarnation raises before it ever yields; later ones run."""

    def target() -> None:
        info = greenkeep.current()
        assert info is not None
        if log is not None:
            log.append(f"{name}{info.incarnation} runs")
        if info.incarnation == 1:
            raise ConnectionError("not yet")
        block_forever()

    return target


class TestCrashBeforeTheFirstYield:
    def test_a_crash_while_starting_is_restarted(self) -> None:
        """A child that raises before its first yield during start() is an abnormal exit
        that is restarted: start() returns and the next incarnation runs."""
        events = Events()
        sup = Supervisor(
            [ChildSpec("c", crash_first_run())], subscribers=[events], name="app", max_restarts=1
        )
        try:
            sup.start()
            restarted = events.wait("child_restarted", child_id="c")
            [child] = sup.which_children()
        finally:
            sup.stop(timeout=DEADLINE)

        [exited] = events.of("child_exited", child_id="c", incarnation=1)
        assert ("abnormal", "restart") == (exited["reason"], exited["action"])
        assert (2, 1) == (restarted["incarnation"], restarted["restarts_in_period"])
        assert ("running", 2) == (child.status, child.incarnation)

    def test_children_still_start_in_order(self) -> None:
        """The next child's body runs only after the previous one ended (here: crashed before
        its first yield); the crashed one is restarted."""
        log: list[str] = []
        events = Events()

        def second() -> None:
            log.append("b1 runs")
            gevent.sleep(0)
            log.append("b1 resumed")
            block_forever()

        sup = Supervisor(
            [ChildSpec("a", crash_first_run(log, "a")), ChildSpec("b", second)],
            subscribers=[events],
        )
        try:
            sup.start()
            events.wait("child_restarted", child_id="a")
            wait_until(lambda: "a2 runs" in log)
            statuses = [c.status for c in sup.which_children()]
        finally:
            sup.stop(timeout=DEADLINE)

        assert log.index("a1 runs") < log.index("b1 runs")
        assert ["running", "running"] == statuses

    def test_start_child_that_crashes_at_once_is_restarted(self) -> None:
        """start_child() of a child that raises before its first yield returns normally, and
        the child is restarted."""
        events = Events()
        with Supervisor([ChildSpec("a", block_forever)], subscribers=[events]) as sup:
            info = sup.start_child(ChildSpec("c", crash_first_run()))
            restarted = events.wait("child_restarted", child_id="c")
            child = sup.which_children()[-1]

        assert "c" == info.id
        [exited] = events.of("child_exited", child_id="c", incarnation=1)
        assert ("abnormal", "restart") == (exited["reason"], exited["action"])
        assert 2 == restarted["incarnation"]
        assert ("c", "running", 2) == (child.id, child.status, child.incarnation)

    def test_a_temporary_start_child_that_crashes_at_once_is_dropped(self) -> None:
        """start_child() of a temporary child that raises at once returns a ChildInfo; the
        spec is dropped, as for any exit of a temporary child."""
        with Supervisor([ChildSpec("a", block_forever)]) as sup:
            info = sup.start_child(ChildSpec("t", crash_at_once, restart="temporary"))
            ids = [c.id for c in sup.which_children()]
            with pytest.raises(greenkeep.ChildNotFoundError):
                sup.get_child_spec("t")

        assert (greenkeep.ChildInfo, "t") == (type(info), info.id)
        assert ["a"] == ids


class TestGivingUpWhileStarting:
    def test_start_raises_restart_intensity_exceeded(self) -> None:
        """A child that crashes at once under max_restarts=0: start() raises
        RestartIntensityExceeded, the state is "failed" and join() raises the same error."""
        sup = Supervisor([ChildSpec("c", crash_at_once)], max_restarts=0, name="app")

        with pytest.raises(greenkeep.RestartIntensityExceeded) as started:
            sup.start()
        with pytest.raises(greenkeep.RestartIntensityExceeded) as joined:
            sup.join(timeout=DEADLINE)

        assert "failed" == sup.state
        assert str(started.value) == str(joined.value)
        record = started.value.last_crash
        assert ("c", 1, "ConnectionError: cannot connect") == (
            record.child_id,
            record.incarnation,
            record.error,
        )
        assert "restart_intensity_exceeded" == sup.stop().reason

    def test_crashes_while_starting_count_toward_the_intensity(self) -> None:
        """Every crash before the first yield counts: max_restarts=2 allows two restarts of
        a child that always crashes at once, and the third crash gives up."""
        events = Events()
        sup = Supervisor(
            [ChildSpec("c", crash_at_once)], max_restarts=2, subscribers=[events], name="app"
        )

        # Whether start() returns before the restarted incarnations crash is not specified;
        # if it does not, it raises the give-up itself.
        with contextlib.suppress(greenkeep.RestartIntensityExceeded):
            sup.start()
        with pytest.raises(greenkeep.RestartIntensityExceeded) as info:
            sup.join(timeout=DEADLINE)

        assert [2, 3] == [e["incarnation"] for e in events.of("child_restarted")]
        assert (3, 2) == (info.value.last_crash.incarnation, info.value.max_restarts)


class TestReadyTimeoutStillFailsTheStart:
    @pytest.mark.parametrize("how", ["crashes", "times_out"])
    def test_a_child_with_ready_timeout_that_fails_is_a_start_error(self, how: str) -> None:
        """After a child without ready_timeout that crashed at once (restarted), a child
        with ready_timeout that crashes or is not ready in time still fails start() with
        ChildStartError naming it."""
        target = crash_at_once if how == "crashes" else block_forever
        timeout = DEADLINE if how == "crashes" else 0.05
        sup = Supervisor(
            [
                ChildSpec("cache", crash_first_run()),
                ChildSpec("db", target, ready_timeout=timeout),
            ],
            name="app",
        )

        with pytest.raises(greenkeep.ChildStartError) as info:
            sup.start()

        assert ("app", "db") == (info.value.supervisor, info.value.child_id)
        assert ("stopped", "start_failed") == (sup.state, sup.stop().reason)


class TestNothingStartsOnceAStopHasBegun:
    def test_stop_from_a_subscriber_on_child_restarted_runs_no_new_incarnation(self) -> None:
        """A subscriber that calls stop() on the first child_restarted: the body of the
        restarted incarnation never runs, not even up to its first yield."""
        ran: list[int] = []
        go = gevent.event.Event()
        holder: list[Supervisor] = []

        def child() -> None:
            info = greenkeep.current()
            assert info is not None
            ran.append(info.incarnation)
            if info.incarnation == 1:
                go.wait()
                raise ValueError("crash")
            block_forever()

        def stop_on_restart(event: Mapping[str, Any]) -> None:
            if event["event"] == "child_restarted":
                holder[0].stop()

        sup = Supervisor([ChildSpec("c", child)], subscribers=[stop_on_restart])
        holder.append(sup)
        sup.start()
        go.set()
        ended = sup.join(timeout=DEADLINE)
        gevent.sleep(0)  # anything already scheduled would run now

        assert [1] == ran
        assert (True, "shutdown") == (ended, sup.stop(timeout=DEADLINE).reason)
