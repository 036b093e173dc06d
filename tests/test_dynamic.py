"""OTP's dynamic child API in Python form, every error case with its own exception."""

from __future__ import annotations

import contextvars

import gevent
import gevent.event
import pytest

import greenkeep
from greenkeep import ChildSpec, Supervisor

from _events import DEADLINE, Events


def block_forever() -> None:
    gevent.event.Event().wait()


@pytest.fixture
def sup() -> Supervisor:
    s = Supervisor([ChildSpec("a", block_forever), ChildSpec("b", block_forever)], name="dyn")
    s.start()
    yield s
    s.stop(timeout=DEADLINE)


class TestHappyPaths:
    def test_start_child_appends_and_runs(self, sup: Supervisor) -> None:
        """start_child adds the child at the end of the start order and starts it."""
        info = sup.start_child(ChildSpec("c", block_forever))

        assert ("c", "running", 1) == (info.id, info.status, info.incarnation)
        assert ["a", "b", "c"] == [c.id for c in sup.which_children()]

    def test_terminate_keeps_spec_and_restart_child_runs_it_again(self, sup: Supervisor) -> None:
        """terminate_child keeps the spec; restart_child starts a new incarnation, uncounted."""
        terminated = sup.terminate_child("a")
        restarted = sup.restart_child("a")

        assert ("terminated", 1) == (terminated.status, terminated.incarnation)
        assert ("running", 2, 0) == (restarted.status, restarted.incarnation, restarted.restarts)
        assert ["a", "b"] == [c.id for c in sup.which_children()]

    def test_terminate_twice_is_harmless(self, sup: Supervisor) -> None:
        """Terminating a terminated child does nothing more."""
        sup.terminate_child("a")

        assert "terminated" == sup.terminate_child("a").status

    def test_delete_child_removes_the_spec(self, sup: Supervisor) -> None:
        """delete_child removes a terminated child's spec."""
        sup.terminate_child("b")
        sup.delete_child("b")

        assert ["a"] == [c.id for c in sup.which_children()]

    def test_get_child_spec_and_counts(self, sup: Supervisor) -> None:
        """get_child_spec returns the spec; count_children counts like OTP."""
        sup.terminate_child("b")

        assert "a" == sup.get_child_spec("a").id
        assert greenkeep.ChildCounts(specs=2, active=1, supervisors=0, workers=2) == (
            sup.count_children()
        )

    def test_start_child_inherits_the_callers_context(self, sup: Supervisor) -> None:
        """A dynamically started child runs in a copy of the caller's contextvars context."""
        var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
        seen = gevent.event.AsyncResult()
        var.set("from caller")

        sup.start_child(ChildSpec("c", lambda: seen.set(var.get())))

        assert "from caller" == seen.get(timeout=DEADLINE)


class TestErrors:
    def test_start_child_already_started(self, sup: Supervisor) -> None:
        """A running child's id: ChildAlreadyStartedError."""
        with pytest.raises(greenkeep.ChildAlreadyStartedError, match="already running"):
            sup.start_child(ChildSpec("a", block_forever))

    def test_start_child_already_present(self, sup: Supervisor) -> None:
        """A terminated child's id: ChildAlreadyPresentError, which says what to do."""
        sup.terminate_child("a")

        with pytest.raises(greenkeep.ChildAlreadyPresentError, match="restart_child"):
            sup.start_child(ChildSpec("a", block_forever))

    @pytest.mark.parametrize("method", ["restart_child", "delete_child"])
    def test_running(self, sup: Supervisor, method: str) -> None:
        """restart_child/delete_child on a running child: ChildRunningError."""
        with pytest.raises(greenkeep.ChildRunningError, match="terminate_child"):
            getattr(sup, method)("a")

    @pytest.mark.parametrize(
        "method", ["terminate_child", "restart_child", "delete_child", "get_child_spec"]
    )
    def test_not_found(self, sup: Supervisor, method: str) -> None:
        """An unknown id: ChildNotFoundError naming the supervisor and the id."""
        with pytest.raises(greenkeep.ChildNotFoundError) as info:
            getattr(sup, method)("nope")

        assert ("dyn", "nope") == (info.value.supervisor, info.value.child_id)

    @pytest.mark.parametrize("state", ["new", "stopped", "failed"])
    @pytest.mark.parametrize(
        "call",
        [
            lambda s: s.start_child(ChildSpec("x", block_forever)),
            lambda s: s.terminate_child("a"),
            lambda s: s.restart_child("a"),
            lambda s: s.delete_child("a"),
        ],
        ids=["start_child", "terminate_child", "restart_child", "delete_child"],
    )
    def test_not_running_raises_at_once(self, state: str, call: object) -> None:
        """Changes on a supervisor that is not running raise at once; introspection works."""
        target = _crash_after_yield if state == "failed" else block_forever
        sup = Supervisor([ChildSpec("a", target)], max_restarts=0)
        if state == "failed":
            sup.start()
            with pytest.raises(greenkeep.RestartIntensityExceeded):
                sup.join(timeout=DEADLINE)
        elif state == "stopped":
            sup.start()
            sup.stop()

        with pytest.raises(greenkeep.SupervisorNotRunningError) as info:
            call(sup)  # type: ignore[operator]

        assert state == info.value.state
        assert ["a"] == [c.id for c in sup.which_children()]

    def test_start_child_with_bad_spec(self, sup: Supervisor) -> None:
        """start_child(...) with something that is not a ChildSpec: InvalidSpecError."""
        with pytest.raises(greenkeep.InvalidSpecError, match="spec must be a ChildSpec"):
            sup.start_child("a")  # type: ignore[arg-type]

    def test_start_child_that_fails_while_starting_is_not_added(self, sup: Supervisor) -> None:
        """A child with ready_timeout that crashes before it is ready makes start_child
        raise, and is not kept."""
        with pytest.raises(greenkeep.ChildStartError, match="'c' exited while starting"):
            sup.start_child(ChildSpec("c", lambda: 1 / 0, ready_timeout=1.0))

        assert ["a", "b"] == [c.id for c in sup.which_children()]
        assert "running" == sup.state

    def test_blocking_call_from_a_subscriber_is_refused(self) -> None:
        """A subscriber (running in the manager) calling a blocking method gets a clear
        error instead of a deadlock."""
        seen = gevent.event.AsyncResult()
        holder: list[Supervisor] = []

        def subscriber(event: object) -> None:
            if holder and not seen.ready():
                try:
                    holder[0].terminate_child("a")
                except greenkeep.CalledFromManagerError as exc:
                    seen.set(exc)

        events = Events()
        sup = Supervisor([ChildSpec("a", _crash_after_yield)], subscribers=[subscriber, events])
        holder.append(sup)
        sup.start()

        assert isinstance(seen.get(timeout=DEADLINE), greenkeep.CalledFromManagerError)
        sup.stop()


def _crash_after_yield() -> None:
    gevent.sleep(0)
    raise ValueError("crash")
