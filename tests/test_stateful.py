"""
A stateful property test: random crashes, returns, dynamic-API calls, stale exits and
clock advances, checked after every step against a small pure model of OTP's rules written
here (deliberately not greenkeep's own planner).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.queue
import pytest
from greenlet import getcurrent
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import greenkeep
from greenkeep import ChildSpec, Supervisor
from greenkeep.testing import ManualClock

from _events import Events

RESTARTS = ["permanent", "transient", "temporary"]


@dataclass
class ModelChild:
    id: str
    restart: str
    running: bool = True
    incarnation: int = 1


@dataclass
class Model:
    """OTP's supervisor rules, minimally."""

    strategy: str
    max_restarts: int
    period: float
    now: float = 0.0
    failed: bool = False
    children: list[ModelChild] = field(default_factory=list)
    restarts: list[float] = field(default_factory=list)

    def get(self, child_id: str) -> ModelChild | None:
        return next((c for c in self.children if c.id == child_id), None)

    def exit_on_its_own(self, child_id: str, abnormal: bool) -> tuple[str, list[str]]:
        """Apply an exit; return (outcome, children restarted in order)."""
        child = self.get(child_id)
        assert child is not None and child.running
        child.running = False
        if child.restart == "temporary":
            self.children.remove(child)
            return "dropped", []
        if child.restart == "transient" and not abnormal:
            return "kept", []
        self.restarts = [t for t in self.restarts if self.now - t <= self.period] + [self.now]
        if len(self.restarts) > self.max_restarts:
            self.failed = True
            for c in list(self.children):
                c.running = False
                if c.restart == "temporary":
                    self.children.remove(c)
            return "gave_up", []
        if self.strategy == "one_for_one":
            affected = [child]
        elif self.strategy == "one_for_all":
            affected = list(self.children)
        else:
            affected = self.children[self.children.index(child) :]
        for c in affected:
            if c is not child and c.restart == "temporary":
                self.children.remove(c)
        restarted = [c for c in affected if c in self.children]
        for c in restarted:
            c.running = True
            c.incarnation += 1
        return "restarted", [c.id for c in restarted]


class SupervisorMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sup: Supervisor | None = None
        self.model: Model | None = None
        self.commands: dict[str, gevent.queue.Queue[str]] = {}
        self.records: dict[str, Any] = {}
        self.events = Events()
        self.clock = ManualClock()
        self.next_id = 0

    def worker(self) -> None:
        info = greenkeep.current()
        assert info is not None
        child_id = str(info.child_id)
        self.records[child_id] = getcurrent().child  # type: ignore[attr-defined]
        command = self.commands[child_id].get()
        if command == "crash":
            raise ValueError(f"{child_id} crashed")

    def spec(self, restart: str) -> ChildSpec:
        child_id = f"c{self.next_id}"
        self.next_id += 1
        self.commands[child_id] = gevent.queue.Queue()
        return ChildSpec(child_id, self.worker, restart=restart)

    @initialize(
        strategy=st.sampled_from(["one_for_one", "one_for_all", "rest_for_one"]),
        restarts=st.lists(st.sampled_from(RESTARTS), min_size=1, max_size=4),
        max_restarts=st.integers(0, 4),
    )
    def start(self, strategy: str, restarts: list[str], max_restarts: int) -> None:
        specs = [self.spec(r) for r in restarts]
        self.model = Model(strategy, max_restarts, 5.0)
        self.model.children = [
            ModelChild(str(s.id), r) for s, r in zip(specs, restarts, strict=True)
        ]
        self.sup = Supervisor(
            specs,
            strategy=strategy,
            max_restarts=max_restarts,
            period=5.0,
            clock=self.clock,
            subscribers=[self.events],
            name="sm",
        )
        self.sup.start()

    def teardown(self) -> None:
        if self.sup is not None:
            self.sup.stop(timeout=5)

    # -- exits on their own

    def running_ids(self) -> list[str]:
        assert self.model is not None
        return [c.id for c in self.model.children if c.running] if not self.model.failed else []

    def exit_child(self, data: st.DataObject, abnormal: bool) -> None:
        assert self.model is not None
        child_id = data.draw(st.sampled_from(self.running_ids()))
        incarnation = self.model.get(child_id).incarnation  # type: ignore[union-attr]
        self.commands[child_id].put("crash" if abnormal else "return")
        outcome, restarted = self.model.exit_on_its_own(child_id, abnormal)
        if outcome == "gave_up":
            self.events.wait("supervisor_stopped")
        elif outcome == "restarted":
            last = self.model.get(restarted[-1])
            assert last is not None
            self.events.wait("child_restarted", child_id=last.id, incarnation=last.incarnation)
        else:
            self.events.wait("child_exited", child_id=child_id, incarnation=incarnation)

    @precondition(lambda self: self.running_ids())
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        self.exit_child(data, abnormal=True)

    @precondition(lambda self: self.running_ids())
    @rule(data=st.data())
    def return_(self, data: st.DataObject) -> None:
        self.exit_child(data, abnormal=False)

    @rule(seconds=st.sampled_from([0.5, 2.0, 5.0, 6.0]))
    def advance_clock(self, seconds: float) -> None:
        assert self.model is not None
        self.clock.advance(seconds)
        self.model.now += seconds

    @precondition(lambda self: any(c.incarnation > 1 for c in self.model.children))
    @rule(data=st.data())
    def stale_exit(self, data: st.DataObject) -> None:
        """An exit posted for an incarnation that was already replaced changes nothing."""
        assert self.model is not None
        candidates = [c for c in self.model.children if c.incarnation > 1]
        child = data.draw(st.sampled_from(candidates))
        record = self.records[child.id]
        stale = (record, child.incarnation - 1, ValueError("stale"))
        record.channel.notify(stale)  # as workers post
        if not self.model.failed:
            self.events.wait("exit_ignored", child_id=child.id)

    # -- the dynamic API

    def expect_not_running(self, call: Any) -> bool:
        assert self.model is not None
        if self.model.failed:
            with pytest.raises(greenkeep.SupervisorNotRunningError):
                call()
            return True
        return False

    @rule(restart=st.sampled_from(RESTARTS))
    def start_child(self, restart: str) -> None:
        assert self.sup is not None and self.model is not None
        spec = self.spec(restart)
        if self.expect_not_running(lambda: self.sup.start_child(spec)):  # type: ignore[union-attr]
            return
        self.sup.start_child(spec)
        self.model.children.append(ModelChild(str(spec.id), restart))

    def pick_id(self, data: st.DataObject) -> str:
        assert self.model is not None
        known = [c.id for c in self.model.children]
        return data.draw(st.sampled_from([*known, "missing"]))

    @rule(data=st.data())
    def terminate_child(self, data: st.DataObject) -> None:
        assert self.sup is not None and self.model is not None
        child_id = self.pick_id(data)
        if self.expect_not_running(lambda: self.sup.terminate_child(child_id)):  # type: ignore[union-attr]
            return
        child = self.model.get(child_id)
        if child is None:
            with pytest.raises(greenkeep.ChildNotFoundError):
                self.sup.terminate_child(child_id)
            return
        self.sup.terminate_child(child_id)
        child.running = False
        if child.restart == "temporary":
            self.model.children.remove(child)

    @rule(data=st.data())
    def restart_child(self, data: st.DataObject) -> None:
        assert self.sup is not None and self.model is not None
        child_id = self.pick_id(data)
        if self.expect_not_running(lambda: self.sup.restart_child(child_id)):  # type: ignore[union-attr]
            return
        child = self.model.get(child_id)
        if child is None:
            with pytest.raises(greenkeep.ChildNotFoundError):
                self.sup.restart_child(child_id)
        elif child.running:
            with pytest.raises(greenkeep.ChildRunningError):
                self.sup.restart_child(child_id)
        else:
            self.sup.restart_child(child_id)
            child.running = True
            child.incarnation += 1

    @rule(data=st.data())
    def delete_child(self, data: st.DataObject) -> None:
        assert self.sup is not None and self.model is not None
        child_id = self.pick_id(data)
        if self.expect_not_running(lambda: self.sup.delete_child(child_id)):  # type: ignore[union-attr]
            return
        child = self.model.get(child_id)
        if child is None:
            with pytest.raises(greenkeep.ChildNotFoundError):
                self.sup.delete_child(child_id)
        elif child.running:
            with pytest.raises(greenkeep.ChildRunningError):
                self.sup.delete_child(child_id)
        else:
            self.sup.delete_child(child_id)
            self.model.children.remove(child)

    # -- the check after every step

    @invariant()
    def matches_model(self) -> None:
        if self.sup is None or self.model is None:
            return
        expected = [(c.id, c.running, c.incarnation) for c in self.model.children]
        actual = [
            (str(c.id), c.status == "running", c.incarnation) for c in self.sup.which_children()
        ]

        assert expected == actual
        assert ("failed" if self.model.failed else "running") == self.sup.state


TestSupervisorMachine = SupervisorMachine.TestCase
TestSupervisorMachine.settings = settings(
    max_examples=60,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
