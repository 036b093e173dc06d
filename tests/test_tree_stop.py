"""
A subtree whose time runs out: a sub-supervisor's stop gets the deadline its parent gives
it, shared by all its children; at the deadline whoever is still alive gets GreenletExit and
one more hub turn, and whoever survives that is reported unstopped with its full path.

Real time (gevent cannot fake it): the sub-supervisor's shutdown is 0.3 s, and the tests
wait for outcomes, never for a fixed time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import gevent
import gevent.event
import pytest

import greenkeep._stopping
from greenkeep import ChildSpec, StopReport, Supervisor

from _events import DEADLINE, Events, wait_until

SHUTDOWN = 0.3  # the sub-supervisor's shutdown policy, in seconds


@dataclass
class Tree:
    root: Supervisor
    sub: Supervisor
    events: Events  # the sub-supervisor's
    polite_ended: gevent.event.Event
    stubborn_done: gevent.event.Event  # set by the test: the stubborn child may end now


@pytest.fixture
def tree() -> Iterator[Tree]:
    """root -> sub (shutdown=0.3) -> [polite, stubborn], started; the stubborn child is
    always let go, and the tree stopped, at the end."""
    polite_ended = gevent.event.Event()
    done = gevent.event.Event()

    def polite() -> None:
        try:
            gevent.event.Event().wait()  # blocks forever, dies on GreenletExit
        finally:
            polite_ended.set()

    def stubborn() -> None:
        while not done.is_set():
            try:
                done.wait()
            except gevent.GreenletExit:
                continue  # swallows every stop

    events = Events()
    sub = Supervisor(
        [ChildSpec("polite", polite), ChildSpec("stubborn", stubborn)],
        name="sub",
        subscribers=[events],
    )
    root = Supervisor([ChildSpec("sub", sub, shutdown=SHUTDOWN)], name="root")
    root.start()
    try:
        yield Tree(root, sub, events, polite_ended, done)
    finally:
        done.set()
        root.stop(timeout=DEADLINE)
        sub.join(timeout=DEADLINE)


def stop_root(tree: Tree) -> tuple[StopReport, float]:
    started = time.monotonic()
    report = tree.root.stop()
    return report, time.monotonic() - started


def test_the_stubborn_grandchild_is_reported_with_its_full_path(tree: Tree) -> None:
    """root.stop() returns after about the subtree's 0.3 s, naming the grandchild that did
    not stop by its path ("root/sub", "stubborn"); the sub-supervisor reported in time."""
    report, took = stop_root(tree)

    assert 0.2 <= took < 1.0
    assert [("root/sub", "stubborn")] == [(u.path, u.child_id) for u in report.unstopped]


def test_the_polite_grandchild_is_stopped_within_the_deadline(tree: Tree) -> None:
    """The polite grandchild is dead when root.stop() returns and is never reported
    unstopped."""
    stop_root(tree)
    polite_dead = tree.polite_ended.is_set()
    tree.stubborn_done.set()
    tree.sub.join(timeout=DEADLINE)

    assert polite_dead
    assert [] == tree.events.of("child_unstopped", child_id="polite")


def test_the_subtree_is_stopping_until_its_stubborn_child_ends(tree: Tree) -> None:
    """While the unstopped grandchild still runs, the sub-supervisor is "stopping" (its stop
    is over: join() returns at once); it is "stopped" once that child ends."""
    stop_root(tree)
    while_running = tree.sub.state
    joined = tree.sub.join(timeout=0)
    tree.stubborn_done.set()
    wait_until(lambda: tree.sub.state != "stopping")

    assert ("stopping", True) == (while_running, joined)
    assert "stopped" == tree.sub.state
    assert tree.events.of("child_exited", child_id="stubborn", late=True)


def test_a_subtree_whose_deadline_is_its_parents_still_hands_its_report_up(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no margin at all (``REPORT_MARGIN = 0``: the sub-supervisor's deadline is its
    parent's, as when a loaded loop runs both timers in the same turn), the sub-supervisor
    still hands its report up: its parent gives a subtree past its deadline a few more hub
    turns (no time) before it gives up on it."""
    monkeypatch.setattr(greenkeep._stopping, "REPORT_MARGIN", 0.0)

    report, took = stop_root(tree)

    assert took < 1.0
    assert [("root/sub", "stubborn")] == [(u.path, u.child_id) for u in report.unstopped]
