"""
Bad input gets a clear error at the call that received it, and nothing already running is
touched: one test per way hostile input got through before (ids that match by value only,
bools for ints, unhashable ids, an unbounded pool size, a float window edge).
"""

from __future__ import annotations

import math
from typing import Any

import gevent
import gevent.queue
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import greenkeep
from greenkeep import ChildSpec, Supervisor, WorkerPool
from greenkeep.testing import ManualClock

from _events import DEADLINE, Events


def idle() -> None:
    gevent.sleep(3600)


def states(sup: Supervisor) -> list[tuple[object, str, int]]:
    return [(c.id, c.status, c.incarnation) for c in sup.which_children()]


@pytest.fixture
def running() -> Any:
    sup = Supervisor([ChildSpec(1, idle), ChildSpec("b", idle)], name="s")
    sup.start()
    yield sup
    sup.stop(timeout=DEADLINE)


@pytest.mark.parametrize("bad", [1.5, "3", math.inf, math.nan, True, -1])
@pytest.mark.parametrize("kind", ["supervisor", "pool"])
def test_a_bad_budget_is_named_not_a_type_error(bad: object, kind: str) -> None:
    """``max_restarts=1.5``, ``"3"``, inf or NaN: an InvalidSpecError naming max_restarts
    (it was a raw TypeError from building the window)."""

    def build() -> object:
        if kind == "supervisor":
            return Supervisor([ChildSpec("a", idle)], max_restarts=bad)  # type: ignore[arg-type]
        return WorkerPool(lambda i: None, 2, max_restarts=bad)  # type: ignore[arg-type]

    with pytest.raises(greenkeep.InvalidSpecError) as info:
        build()

    assert ["max_restarts"] == [p.field for p in info.value.problems]


@pytest.mark.parametrize("bad", [True, False, 1.0, 0.0, ["b"], {}, None, b"b", (1,)])
@pytest.mark.parametrize("method", ["terminate_child", "restart_child", "delete_child"])
def test_a_value_that_cannot_be_an_id_touches_no_child(
    running: Supervisor, method: str, bad: object
) -> None:
    """``terminate_child(True)`` and ``terminate_child(1.0)`` terminated child ``1``; an
    unhashable id raised a bare TypeError. Now: InvalidArgumentError naming child_id, and
    every child as it was."""
    before = states(running)

    with pytest.raises(greenkeep.InvalidArgumentError) as info:
        getattr(running, method)(bad)

    assert "child_id" == info.value.field
    assert f".{method}()" in info.value.owner
    assert before == states(running)


@pytest.mark.parametrize("bad", [True, 1.0, ["b"], {}])
def test_get_child_spec_matches_ids_exactly(running: Supervisor, bad: object) -> None:
    """``get_child_spec(True)`` returned child 1's spec; before a start too."""
    with pytest.raises(greenkeep.InvalidArgumentError):
        running.get_child_spec(bad)  # type: ignore[arg-type]
    new = Supervisor([ChildSpec(1, idle)])
    with pytest.raises(greenkeep.InvalidArgumentError):
        new.get_child_spec(bad)  # type: ignore[arg-type]

    assert 1 == running.get_child_spec(1).id
    assert 1 == new.get_child_spec(1).id


def test_a_pool_worker_is_an_int_not_a_bool() -> None:
    """``pool.worker(True)`` returned worker 1."""
    pool = WorkerPool(lambda i: idle(), 3, name="p")
    pool.start()
    try:
        with pytest.raises(greenkeep.InvalidArgumentError) as info:
            pool.worker(True)
        assert "worker_id" == info.value.field
        assert 1 == pool.worker(1).worker_id
    finally:
        pool.stop(timeout=DEADLINE)


def test_a_manual_clock_moves_by_numbers_not_bools() -> None:
    """``ManualClock.advance(True)`` moved the clock one second; a bad value now leaves it
    where it was."""
    clock = ManualClock(2.0)
    for bad in (True, "1", -1.0, math.nan, math.inf):
        with pytest.raises(greenkeep.InvalidArgumentError) as info:
            clock.advance(bad)  # type: ignore[arg-type]
        assert "seconds" == info.value.field
    with pytest.raises(greenkeep.InvalidArgumentError):
        ManualClock(True)

    assert 2.0 == clock()


def test_a_pool_size_has_a_documented_bound() -> None:
    """``WorkerPool(f, 10**9)`` was accepted (a budget of 3,000,000,000 restarts, and a
    start that would create a billion greenlets); so was ``resize(10**9)``."""
    with pytest.raises(greenkeep.InvalidSpecError) as info:
        WorkerPool(lambda i: None, 10**9)
    assert ["size"] == [p.field for p in info.value.problems]
    assert "1,000,000" in str(info.value)
    WorkerPool(lambda i: None, greenkeep.MAX_POOL_SIZE)  # the bound itself is allowed

    pool = WorkerPool(lambda i: idle(), 2, name="p")
    pool.start()
    try:
        with pytest.raises(greenkeep.InvalidArgumentError):
            pool.resize(greenkeep.MAX_POOL_SIZE + 1)
        assert 2 == pool.size
        assert ["running", "running"] == [c.status for c in pool.which_children()]
    finally:
        pool.stop(timeout=DEADLINE)


def test_a_pools_worker_before_start_says_start_first() -> None:
    """``pool.worker(0)`` before ``start()`` said ``worker_id must be an int in 0..-1``."""
    pool = WorkerPool(lambda i: None, 3, name="p")

    with pytest.raises(greenkeep.SupervisorNotRunningError, match=r"call start\(\) first"):
        pool.worker(0)


# ---------------------------------------------------------------------- the window's edge


class Crasher:
    """One child that crashes each time it is told to."""

    def __init__(self) -> None:
        self.go: gevent.queue.Queue[None] = gevent.queue.Queue()

    def target(self) -> None:
        self.go.get()
        raise ValueError("crash")


def gives_up_at_the_edge(start: float, period: float) -> bool:
    """Crashes at *start*, *start* and *start + period* (the clock advanced by *period*),
    with ``max_restarts=2``: whether the supervisor gave up (the documented edge says the
    first two restarts are still in the window at the third, so it must)."""
    clock = ManualClock(start)
    crasher = Crasher()
    events = Events()
    sup = Supervisor(
        [ChildSpec("c", crasher.target)],
        max_restarts=2,
        period=period,
        clock=clock,
        subscribers=[events],
        logger=None,
        name="edge",
    )
    sup.start()
    try:
        for advance in (0.0, 0.0, period):
            clock.advance(advance)
            crasher.go.put(None)
            exited = events.wait("child_exited", child_id="c")
            if exited["action"] == "give_up":
                return True
        return False
    finally:
        sup.stop(timeout=DEADLINE)


def test_a_restart_exactly_period_old_counts_in_floats_too() -> None:
    """Clock at 0.4, ``period=0.7``, crashes at 0.4, 0.4 and 1.1: ``1.1 - 0.4`` is
    0.7000000000000001, and the supervisor did not give up."""
    assert gives_up_at_the_edge(0.4, 0.7)


@settings(max_examples=40, deadline=None)
@given(
    start=st.floats(0, 1e9, allow_nan=False) | st.sampled_from([0.1, 0.4, 1.7e9 + 0.3]),
    period=st.sampled_from([0.2, 0.7, 1.1, 5.0, 60.0]) | st.floats(0.001, 1000.0),
)
def test_the_windows_edge_holds_for_any_start(start: float, period: float) -> None:
    """Over random clock readings (8% to 77% of them failed before, ``period=5.0``
    included), a restart exactly *period* old still counts."""
    assert gives_up_at_the_edge(start, period)


@pytest.mark.parametrize("kind", ["supervisor", "pool"])
def test_a_budget_beyond_a_deques_count_starts(kind: str) -> None:
    """``max_restarts=2**63 - 1`` was accepted, and then ``start()`` raised a raw
    OverflowError (found by tests/test_hostile_inputs.py)."""
    huge = 2**63 - 1
    sup: Supervisor | WorkerPool = (
        Supervisor([ChildSpec("a", idle)], max_restarts=huge, name="s")
        if kind == "supervisor"
        else WorkerPool(lambda i: idle(), 2, max_restarts=huge, name="p")
    )
    sup.start()
    try:
        assert "running" == sup.state
    finally:
        sup.stop(timeout=DEADLINE)
