"""
one_for_all and rest_for_one on a live supervisor, at every position of the failing
child, with every kind of bystander; and escalation through a three-level tree.
"""

from __future__ import annotations

import gevent
import gevent.event
import gevent.queue
import pytest

import greenkeep
import greenkeep.testing
from greenkeep import ChildSpec, Supervisor

from _events import DEADLINE, Events, hub_turns

IDS = ["a", "b", "c", "d"]


def block_forever() -> None:
    gevent.event.Event().wait()


class Crashable:
    """Children that block until told to crash, one trigger queue per child id."""

    def __init__(self) -> None:
        self.triggers: dict[object, gevent.queue.Queue[str]] = {}

    def target(self) -> None:
        info = greenkeep.current()
        assert info is not None
        queue = self.triggers.setdefault(info.child_id, gevent.queue.Queue())
        raise ValueError(queue.get())

    def crash(self, child_id: str) -> None:
        self.triggers.setdefault(child_id, gevent.queue.Queue()).put(f"{child_id} crashed")


def expected(
    strategy: str, failed: str, restart_of: dict[str, str]
) -> tuple[list[str], list[str], list[str]]:
    """(stopped in order, restarted in order, dropped) by OTP's rules, written out by hand."""
    index = IDS.index(failed)
    affected = IDS if strategy == "one_for_all" else IDS[index:]
    bystanders = [i for i in affected if i != failed]
    stopped = list(reversed(bystanders))
    dropped = [i for i in bystanders if restart_of[i] == "temporary"]
    restarted = [i for i in affected if i not in dropped]
    return stopped, restarted, dropped


@pytest.mark.parametrize("strategy", ["one_for_all", "rest_for_one"])
@pytest.mark.parametrize("failed", ["a", "b", "d"], ids=["first", "middle", "last"])
@pytest.mark.parametrize("bystander_restart", ["permanent", "transient", "temporary", "mixed"])
def test_strategy_stops_and_restarts_in_otp_order(
    strategy: str, failed: str, bystander_restart: str
) -> None:
    """Affected bystanders stop newest first and restart oldest first; temporary ones are
    dropped; one restart is counted for the whole failure."""
    kinds = ["permanent", "transient", "temporary"]
    restart_of = {
        i: (kinds[n % 3] if bystander_restart == "mixed" else bystander_restart)
        for n, i in enumerate(IDS)
    }
    restart_of[failed] = "permanent"
    crash = Crashable()
    events = Events()
    sup = Supervisor(
        [ChildSpec(i, crash.target, restart=restart_of[i]) for i in IDS],
        strategy=strategy,
        max_restarts=1,
        subscribers=[events],
    )
    sup.start()

    crash.crash(failed)
    events.wait("child_exited", child_id=failed)
    stop_order, restart_order, dropped = expected(strategy, failed, restart_of)
    for child_id in restart_order:
        events.wait("child_restarted", child_id=child_id)

    stopped = [e["child_id"] for e in events.of("child_exited", reason="shutdown")]
    restarted = [e["child_id"] for e in events.of("child_restarted")]
    assert stop_order == stopped
    assert restart_order == restarted
    assert {1} == {e["restarts_in_period"] for e in events.of("child_restarted")}
    assert [i for i in IDS if i not in dropped] == [c.id for c in sup.which_children()]
    assert all(c.status == "running" for c in sup.which_children())
    assert "running" == sup.state
    sup.stop()


def test_unaffected_children_keep_running_under_rest_for_one() -> None:
    """Children started before the failed one keep their incarnation under rest_for_one."""
    crash = Crashable()
    events = Events()
    sup = Supervisor(
        [ChildSpec(i, crash.target) for i in IDS], strategy="rest_for_one", subscribers=[events]
    )
    sup.start()

    crash.crash("c")
    events.wait("child_restarted", child_id="d")

    assert {"a": 1, "b": 1, "c": 2, "d": 2} == {c.id: c.incarnation for c in sup.which_children()}
    sup.stop()


def statuses(sup: Supervisor, ids: list[str]) -> dict[str, str]:
    return {c.id: c.status for c in sup.which_children() if c.id in ids}  # type: ignore[misc]


@pytest.mark.parametrize("strategy", ["rest_for_one", "one_for_all"])
def test_terminating_a_child_whose_group_restart_waits_leaves_the_group_terminated(
    strategy: str,
) -> None:
    """Over c1, c2 (with a `Backoff`) and c3: c2 crashes and the group restart waits for
    its delay; ``terminate_child("c2")`` meanwhile leaves the siblings the restart would
    have started terminated with it, as OTP does, and nothing starts when the delay ends
    (c3 was left "delayed" for ever, and in an earlier version started anyway)."""
    clock = greenkeep.testing.ManualClock()
    crashable = Crashable()
    events = Events()
    backoff = greenkeep.Backoff(initial=1.0, jitter=0.0)
    sup = Supervisor(
        [
            ChildSpec("c1", block_forever),
            ChildSpec("c2", crashable.target, backoff=backoff),
            ChildSpec("c3", block_forever),
        ],
        strategy=strategy,
        clock=clock,
        subscribers=[events],
        name="s",
    )
    sup.start()
    try:
        crashable.crash("c2")
        events.wait("child_restart_delayed", child_id="c2")
        group = ["c1", "c2", "c3"] if strategy == "one_for_all" else ["c2", "c3"]
        assert dict.fromkeys(group, "delayed") == statuses(sup, group)

        sup.terminate_child("c2")
        clock.advance(5.0)  # past the delay: the manager runs its timers ...
        hub_turns(5)
        sup.terminate_child("c2")  # ... and this call waits for the manager's next turn

        assert dict.fromkeys(group, "terminated") == statuses(sup, group)
        assert [] == events.of("child_restarted")
    finally:
        sup.stop(timeout=DEADLINE)


class TestEscalation:
    def test_three_levels(self) -> None:
        """A leaf that gives up is a crash of its parent's child, up to the root, which
        gives up too; each level logs its own give-up."""
        events = Events()
        crash = Crashable()
        leaf = Supervisor(
            [ChildSpec("w", crash.target)], name="leaf", max_restarts=0, subscribers=[events]
        )
        mid = Supervisor(
            [ChildSpec("leaf", leaf)], name="mid", max_restarts=0, subscribers=[events]
        )
        root = Supervisor(
            [ChildSpec("mid", mid), ChildSpec("other", block_forever)],
            name="root",
            max_restarts=0,
            subscribers=[events],
        )
        root.start()

        crash.crash("w")

        with pytest.raises(greenkeep.RestartIntensityExceeded) as info:
            root.join(timeout=DEADLINE)
        gave_up = [e["supervisor"] for e in events.of("restart_intensity_exceeded")]
        assert ["root/mid/leaf", "root/mid", "root"] == gave_up
        assert ("root", "mid") == (info.value.supervisor, info.value.last_crash.child_id)
        assert "RestartIntensityExceeded" in (info.value.last_crash.error or "")
        assert ("failed", "failed", "failed") == (leaf.state, mid.state, root.state)

    def test_parent_restarts_a_child_supervisor_that_gave_up(self) -> None:
        """A parent with budget left restarts the child supervisor from its specs."""
        events = Events()
        crash = Crashable()
        leaf = Supervisor(
            [ChildSpec("w", crash.target)], name="leaf", max_restarts=0, subscribers=[events]
        )
        root = Supervisor(
            [ChildSpec("leaf", leaf)], name="root", max_restarts=3, subscribers=[events]
        )
        root.start()

        crash.crash("w")
        events.wait("child_restarted", supervisor="root", child_id="leaf")
        events.wait("supervisor_started", supervisor="root/leaf")

        assert "running" == leaf.state
        assert "supervisor" == root.which_children()[0].type
        root.stop()
        assert "stopped" == leaf.state

    def test_stopping_the_root_stops_the_tree_bottom_up(self) -> None:
        """stop() on the root stops every level, leaves first, and reports no unstopped."""
        events = Events()
        leaf = Supervisor([ChildSpec("w", block_forever)], name="leaf", subscribers=[events])
        root = Supervisor(
            [ChildSpec("leaf", leaf), ChildSpec("x", block_forever)],
            name="root",
            subscribers=[events],
        )
        root.start()

        report = root.stop()

        stopped = [(e["supervisor"], e["child_id"]) for e in events.of("child_exited")]
        assert [("root", "x"), ("root/leaf", "w"), ("root", "leaf")] == stopped
        assert report.clean
