"""
The restart rules of the README, cell by cell, on a live supervisor: how each exit is
classified, what each restart type does with it, and restart intensity at its edges.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import gevent
import gevent.event
import gevent.queue
import pytest
from greenlet import getcurrent

import greenkeep
from greenkeep import ChildSpec, Supervisor
from greenkeep.testing import ManualClock

from _events import DEADLINE, Events


def block_forever() -> None:
    gevent.event.Event().wait()


def scripted(*first: Callable[[], object]) -> Callable[[], object]:
    """
    A target whose incarnation *k* yields once (so it has started), then runs
    ``first[k-1]``; later incarnations block forever.
    """

    def target() -> object:
        info = greenkeep.current()
        assert info is not None
        if info.incarnation <= len(first):
            gevent.sleep(0)
            return first[info.incarnation - 1]()
        block_forever()
        return None

    return target


def raise_(exc: BaseException) -> Callable[[], object]:
    def fn() -> object:
        raise exc

    return fn


def returns() -> object:
    return "done"


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def run_sup(events: Events) -> Iterator[Callable[..., Supervisor]]:
    """Start a supervisor with the *events* subscriber; stop it after the test."""
    started: list[Supervisor] = []

    def make(children: list[ChildSpec], **kwargs: object) -> Supervisor:
        kwargs.setdefault("subscribers", [events])
        sup = Supervisor(children, **kwargs)  # type: ignore[arg-type]
        sup.start()
        started.append(sup)
        return sup

    yield make
    for sup in started:
        sup.stop(timeout=DEADLINE)


EXITS_ON_ITS_OWN = {
    "normal (return)": (returns, "normal"),
    "normal (SystemExit(0))": (raise_(SystemExit(0)), "normal"),
    "normal (SystemExit())": (raise_(SystemExit()), "normal"),
    "abnormal (ValueError)": (raise_(ValueError("boom")), "abnormal"),
    "abnormal (gevent.Timeout)": (raise_(gevent.Timeout()), "abnormal"),
    "abnormal (BaseException)": (raise_(BaseException("odd")), "abnormal"),
    "abnormal (SystemExit(3))": (raise_(SystemExit(3)), "abnormal"),
}

EXPECTED_ACTION = {
    ("permanent", "normal"): "restart",
    ("permanent", "abnormal"): "restart",
    ("transient", "normal"): "keep",
    ("transient", "abnormal"): "restart",
    ("temporary", "normal"): "drop",
    ("temporary", "abnormal"): "drop",
}


class TestExitsOnItsOwn:
    @pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
    @pytest.mark.parametrize("case", sorted(EXITS_ON_ITS_OWN))
    def test_table_cell(
        self, run_sup: Callable[..., Supervisor], events: Events, restart: str, case: str
    ) -> None:
        """Each way of exiting on its own is classified and acted on as the README says."""
        behaviour, reason = EXITS_ON_ITS_OWN[case]
        sup = run_sup([ChildSpec("c", scripted(behaviour), restart=restart)])

        exited = events.wait("child_exited", child_id="c")

        action = EXPECTED_ACTION[(restart, reason)]
        assert (reason, action) == (exited["reason"], exited["action"])
        children = {c.id: c for c in sup.which_children()}
        if action == "restart":
            restarted = events.wait("child_restarted", child_id="c")
            assert 2 == restarted["incarnation"]
            assert "running" == children["c"].status
        elif action == "keep":
            assert ("terminated", 1) == (children["c"].status, children["c"].incarnation)
        else:
            assert "c" not in children
        assert reason == sup.which_children()[0].last_exit.reason if children else True

    @pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
    def test_foreign_greenlet_exit_is_normal(
        self, run_sup: Callable[..., Supervisor], events: Events, restart: str
    ) -> None:
        """A GreenletExit sent by someone other than the supervisor is a normal exit."""
        greenlets: gevent.queue.Queue[object] = gevent.queue.Queue()

        def target() -> None:
            greenlets.put(getcurrent())
            block_forever()

        run_sup([ChildSpec("c", target, restart=restart)])
        gevent.kill(greenlets.get(timeout=DEADLINE))

        exited = events.wait("child_exited", child_id="c")

        assert "normal" == exited["reason"]
        assert EXPECTED_ACTION[(restart, "normal")] == exited["action"]


class TestExitsAfterStopRequest:
    @pytest.mark.parametrize("restart", ["permanent", "transient", "temporary"])
    def test_terminate_is_shutdown_and_never_restarts(
        self, run_sup: Callable[..., Supervisor], events: Events, restart: str
    ) -> None:
        """An exit the supervisor asked for is a shutdown: never restarted; a temporary
        child's spec is dropped, the others' kept."""
        sup = run_sup([ChildSpec("c", block_forever, restart=restart)])

        sup.terminate_child("c")

        exited = events.wait("child_exited", child_id="c")
        assert ("shutdown", "none") == (exited["reason"], exited["action"])
        children = {c.id: c for c in sup.which_children()}
        if restart == "temporary":
            assert {} == children
        else:
            assert ("terminated", 1) == (children["c"].status, children["c"].incarnation)
        assert [] == events.of("child_restarted")

    def test_child_that_raises_while_stopping_is_shutdown_with_its_error(
        self, run_sup: Callable[..., Supervisor], events: Events
    ) -> None:
        """A child whose cleanup raises while being stopped is stopped all the same; its
        real error is recorded."""

        def target() -> None:
            try:
                block_forever()
            finally:
                raise RuntimeError("cleanup failed")

        sup = run_sup([ChildSpec("c", target)])

        info = sup.terminate_child("c")

        assert "shutdown" == info.last_exit.reason
        assert "RuntimeError: cleanup failed" == info.last_exit.error
        assert "terminated" == info.status

    def test_swallowed_greenlet_exit_then_return_is_shutdown(
        self, run_sup: Callable[..., Supervisor], events: Events
    ) -> None:
        """A child that swallows GreenletExit and returns later still exited by shutdown."""
        release = gevent.event.Event()

        def target() -> None:
            try:
                block_forever()
            except gevent.GreenletExit:
                release.wait()

        sup = run_sup([ChildSpec("c", target, shutdown=5.0)])
        gevent.spawn_later(0, release.set)

        info = sup.terminate_child("c")

        assert "shutdown" == info.last_exit.reason


class TestKeyboardInterrupt:
    def test_reaches_main_and_stops_everything_in_order(self, events: Events) -> None:
        """A worker's KeyboardInterrupt reaches the main greenlet; the supervisor stops all
        children in reverse start order and restarts nothing."""
        go = gevent.event.Event()

        def interrupter() -> None:
            go.wait()
            raise KeyboardInterrupt

        sup = Supervisor(
            [
                ChildSpec("a", block_forever),
                ChildSpec("b", interrupter),
                ChildSpec("c", block_forever),
            ],
            subscribers=[events],
        )
        sup.start()
        go.set()

        with pytest.raises(KeyboardInterrupt):
            sup.join(timeout=DEADLINE)
        sup.join(timeout=DEADLINE)

        exited = [(e["child_id"], e["reason"]) for e in events.of("child_exited")]
        assert [("b", "interrupted"), ("c", "shutdown"), ("a", "shutdown")] == exited
        assert [] == events.of("child_restarted")
        assert "interrupted" == sup.stop().reason
        assert "stopped" == sup.state


class TestIntensity:
    def crasher(self, triggers: dict[str, gevent.queue.Queue[str]]) -> Callable[[], None]:
        def target() -> None:
            info = greenkeep.current()
            assert info is not None
            raise ValueError(triggers[str(info.child_id)].get())

        return target

    def make(
        self, run_sup: Callable[..., Supervisor], ids: list[str], **kwargs: object
    ) -> tuple[Supervisor, dict[str, gevent.queue.Queue[str]], ManualClock]:
        triggers: dict[str, gevent.queue.Queue[str]] = {i: gevent.queue.Queue() for i in ids}
        clock = ManualClock()
        sup = run_sup([ChildSpec(i, self.crasher(triggers)) for i in ids], clock=clock, **kwargs)
        return sup, triggers, clock

    def test_exactly_max_restarts_allowed(
        self, run_sup: Callable[..., Supervisor], events: Events
    ) -> None:
        """max_restarts restarts within the period are allowed; the supervisor runs on."""
        sup, triggers, clock = self.make(run_sup, ["a"], max_restarts=3, period=5.0)

        for n in range(3):
            clock.advance(1.0)
            triggers["a"].put(f"crash {n}")
            events.wait("child_restarted", child_id="a")

        assert "running" == sup.state
        assert [1, 2, 3] == [e["restarts_in_period"] for e in events.of("child_restarted")]

    def test_one_more_gives_up(self, run_sup: Callable[..., Supervisor], events: Events) -> None:
        """The restart after max_restarts within the period makes the supervisor give up,
        and join() raises an error with the name, the window and the last crash."""
        sup, triggers, clock = self.make(run_sup, ["a"], max_restarts=2, period=5.0, name="s")

        for n in range(3):
            clock.advance(1.0)
            triggers["a"].put(f"crash {n}")
        events.wait("restart_intensity_exceeded")

        with pytest.raises(greenkeep.RestartIntensityExceeded) as info:
            sup.join(timeout=DEADLINE)
        with pytest.raises(greenkeep.RestartIntensityExceeded):
            sup.join()  # on every call
        error = info.value
        assert ("s", 2, 5.0, 3) == (
            error.supervisor,
            error.max_restarts,
            error.period,
            error.restarts,
        )
        assert ("a", 3, "abnormal", "ValueError: crash 2") == (
            error.last_crash.child_id,
            error.last_crash.incarnation,
            error.last_crash.reason,
            error.last_crash.error,
        )
        assert "ValueError: crash 2" in (error.last_crash.traceback or "")
        assert "failed" == sup.state

    def test_old_restarts_are_forgotten(
        self, run_sup: Callable[..., Supervisor], events: Events
    ) -> None:
        """Restarts older than the period no longer count."""
        sup, triggers, clock = self.make(run_sup, ["a"], max_restarts=2, period=5.0)

        for n in range(6):
            clock.advance(2.6)  # two restarts never fall within one 5 s window... plus one
            triggers["a"].put(f"crash {n}")
            events.wait("child_restarted", child_id="a")

        assert "running" == sup.state

    def test_window_edge_is_inclusive(
        self, run_sup: Callable[..., Supervisor], events: Events
    ) -> None:
        """A restart exactly `period` seconds old still counts (as in OTP)."""
        sup, triggers, clock = self.make(run_sup, ["a"], max_restarts=1, period=5.0)

        triggers["a"].put("first")
        events.wait("child_restarted", child_id="a")
        clock.advance(5.0)
        triggers["a"].put("second")

        exceeded = events.wait("restart_intensity_exceeded")

        assert 2 == exceeded["restarts_in_period"]
        with pytest.raises(greenkeep.RestartIntensityExceeded):
            sup.join(timeout=DEADLINE)

    def test_giving_up_stops_children_in_reverse_start_order(
        self, run_sup: Callable[..., Supervisor], events: Events
    ) -> None:
        """On giving up, the remaining children are stopped newest first."""
        sup, triggers, _ = self.make(run_sup, ["a", "b", "c", "d"], max_restarts=0)

        triggers["b"].put("boom")
        events.wait("supervisor_stopped")

        stopped = [e["child_id"] for e in events.of("child_exited", reason="shutdown")]
        assert ["d", "c", "a"] == stopped
        assert "failed" == sup.state

    def test_unlimited_never_gives_up(
        self, run_sup: Callable[..., Supervisor], events: Events
    ) -> None:
        """max_restarts=UNLIMITED keeps restarting and reports no window."""
        sup, triggers, _ = self.make(run_sup, ["a"], max_restarts=greenkeep.UNLIMITED)

        for n in range(50):
            triggers["a"].put(f"crash {n}")
            events.wait("child_restarted", child_id="a")

        assert "running" == sup.state
        assert {None} == {e["restarts_in_period"] for e in events.of("child_restarted")}
