"""
The restart path's implicit invariants, pinned down before the runtime moves around them.

Each test names one invariant the runtime relies on without saying so in its types:

- deferral order: exits that arrive while the manager waits for another child's stop are
  handled once that wait is over, in the order they were posted;
- retire before start: in a fresh-mode storm, the parked greenlet of a finished incarnation
  ends before the worker's next incarnation runs (its memory is given back first);
- an exit already posted keeps its reason: see
  ``test_shutdown.py::test_child_returning_as_terminate_child_is_called``;
- dropping references so frames can be freed: see
  ``test_robustness.py::test_crashed_incarnation_memory_is_freed``; and, while a pool's
  crash kind is being summarized, every crash of it is freed in its worker, the first of
  each summary period included;
- the fork checks: see ``test_fork.py`` and ``test_fork_isolation.py``.
"""

from __future__ import annotations

from typing import Any

import gevent
import gevent.event
import pytest
from greenlet import getcurrent
from structlog.testing import capture_logs

import greenkeep
import greenkeep._mailbox
from greenkeep import ChildSpec, Supervisor, WorkerPool
from greenkeep.testing import ManualClock

from _events import DEADLINE, Events, hub_turns, wait_until


def test_exits_deferred_during_a_stop_are_handled_afterwards_in_posting_order() -> None:
    """While terminate_child waits for a slow child, two other children crash (b, then a):
    their exits are handled after the slow child's, b before a."""
    events = Events()
    asked = gevent.event.Event()
    release = gevent.event.Event()
    crash = {"a": gevent.event.Event(), "b": gevent.event.Event()}

    def slow() -> None:
        signal = greenkeep.stop_signal()
        signal.wait()
        asked.set()
        release.wait()

    def crasher(name: str) -> None:
        info = greenkeep.current()
        assert info is not None
        if info.incarnation == 1:
            crash[name].wait()
            raise ValueError(name)
        gevent.event.Event().wait()

    sup = Supervisor(
        [
            ChildSpec("slow", slow, shutdown=DEADLINE),
            ChildSpec("a", crasher, args=("a",)),
            ChildSpec("b", crasher, args=("b",)),
        ],
        subscribers=[events],
    )
    sup.start()
    try:
        terminating = gevent.spawn(sup.terminate_child, "slow")
        assert asked.wait(DEADLINE)
        crash["b"].set()
        hub_turns()
        crash["a"].set()
        hub_turns()
        release.set()
        terminating.get(timeout=DEADLINE)
        events.wait("child_restarted", child_id="a")

        exited = [e["child_id"] for e in events.of("child_exited")]

        assert ["slow", "b", "a"] == exited
    finally:
        sup.stop(timeout=DEADLINE)


def test_fresh_storm_retires_the_parked_greenlet_before_the_next_incarnation() -> None:
    """In a storm of more crashes than a fresh pool lets end at once, every worker's second
    incarnation starts after the greenlet of its first one has ended."""
    size = 1_000
    gate = gevent.event.Event()
    first: dict[int, object] = {}
    predecessor_dead: dict[int, bool] = {}

    def worker(worker_id: int) -> None:
        info = greenkeep.current()
        assert info is not None
        if info.incarnation == 1:
            first[worker_id] = getcurrent()
            gate.wait()
            raise ValueError("storm")
        previous = first[worker_id]
        predecessor_dead[worker_id] = bool(getattr(previous, "dead", False))
        gevent.event.Event().wait()

    pool = WorkerPool(worker, size, max_restarts=greenkeep.UNLIMITED, name="storm")
    pool.start()
    try:
        wait_until(lambda: len(first) == size)
        gate.set()
        wait_until(lambda: len(predecessor_dead) == size)

        late = sorted(w for w, dead in predecessor_dead.items() if not dead)

        assert [] == late
    finally:
        pool.stop(timeout=DEADLINE)


def test_every_crash_of_a_summarized_kind_is_posted_as_its_storm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once a pool's crash kind is being summarized, each crash of it reaches the manager as
    its storm, its exception already freed, in the round after a summary too (that round's
    first crash renders the period's sample in its worker), and from the second crash of the
    storm's very first round on. Posted in full, such a round held every worker's exception,
    traceback and frames at once."""
    size = 10
    posted: list[str] = []

    class Recording(greenkeep._mailbox._Queue):  # type: ignore[name-defined, misc]
        def put_nowait(self, item: Any) -> None:
            if type(item) is tuple:
                posted.append(type(item[2]).__name__)
            super().put_nowait(item)

    monkeypatch.setattr(greenkeep._mailbox, "_Queue", Recording)
    go = [gevent.event.Event()]

    def worker(worker_id: int) -> None:
        go[0].wait()
        raise ValueError("storm")

    def crash_round() -> list[str]:
        before = len(posted)
        released, go[0] = go[0], gevent.event.Event()
        released.set()
        wait_until(lambda: len(posted) == before + size)
        return posted[before:]

    clock = ManualClock()
    pool = WorkerPool(worker, size, max_restarts=greenkeep.UNLIMITED, clock=clock, name="p")
    with capture_logs() as logs:
        pool.start()
        try:
            first = crash_round()  # the storm starts
            second = crash_round()
            clock.advance(1.0)  # a summary: the storm's sample is reset
            wait_until(lambda: any(e["event"] == "exits_summarized" for e in logs))
            third = crash_round()
            clock.advance(1.0)
            wait_until(lambda: sum(e["event"] == "exits_summarized" for e in logs) == 2)
        finally:
            pool.stop(timeout=DEADLINE)

    summaries = [e for e in logs if e["event"] == "exits_summarized"]
    # In the first round, all in one pass of the hub: the first crash opens the storm, in
    # full, and the others are counted in and posted as the storm at once.
    assert ["ValueError"] + ["Storm"] * (size - 1) == first
    assert (["Storm"] * size, ["Storm"] * size) == (second, third)
    exited = [e for e in logs if e["event"] == "child_exited"]
    assert 1 == len(exited), exited  # the first crash, in full; the others summarized
    assert (2 * size - 1, size) == (summaries[0]["count"], summaries[1]["count"])
    assert (size, 3) == (summaries[1]["count"], summaries[1]["sample_incarnation"])
    assert "ValueError: storm" == summaries[1]["sample_error"]


@pytest.mark.parametrize("mode", ["fresh", "reuse"])
def test_a_crash_after_its_storm_ended_opens_a_new_one_logged_in_full(mode: str) -> None:
    """A worker keeps the storm of its last crash for the next one of the same kind (a
    crash loop skips the lookup): once that storm has ended, the same crash again is the
    first of a new storm, logged in full, and its storm's summaries count it anew."""
    go = [gevent.event.Event()]
    crashed = [0]

    def worker(worker_id: int) -> None:
        go[0].wait()
        crashed[0] += 1
        raise ValueError("again")

    def crash() -> None:
        before = crashed[0]
        released, go[0] = go[0], gevent.event.Event()
        released.set()
        wait_until(lambda: crashed[0] == before + 1)
        hub_turns()

    clock = ManualClock()
    pool = WorkerPool(
        worker, 1, mode=mode, max_restarts=greenkeep.UNLIMITED, clock=clock, name="p"
    )
    with capture_logs() as logs:
        pool.start()
        try:
            crash()  # logged in full: the storm starts
            crash()  # summarized
            clock.advance(1.0)
            wait_until(lambda: any(e["event"] == "exits_summarized" for e in logs))
            clock.advance(1.0)  # a whole period without a crash: the storm ends
            wait_until(lambda: any(e["event"] == "storm_ended" for e in logs))
            crash()  # the same crash, from the same worker: a new storm
            crash()
            clock.advance(1.0)
            wait_until(lambda: sum(e["event"] == "exits_summarized" for e in logs) == 2)
        finally:
            pool.stop(timeout=DEADLINE)
    exited = [e for e in logs if e["event"] == "child_exited"]
    summaries = [e for e in logs if e["event"] == "exits_summarized"]
    assert 2 == len(exited), exited
    assert [1, 1] == [s["count"] for s in summaries]
    assert [2, 2] == [s["total"] for s in summaries]


@pytest.mark.parametrize("mode", ["fresh", "reuse"])
@pytest.mark.parametrize("max_restarts", [greenkeep.UNLIMITED, 10**9])
def test_the_pools_restart_count_counts_every_restart(mode: str, max_restarts: Any) -> None:
    """snapshot()'s ``restarts`` counts every restart, those of the straight and bulk
    paths (storms) included, with or without a budget."""
    size, rounds = 4, 5
    go = [gevent.event.Event()]
    crashed = [0]

    def worker(worker_id: int) -> None:
        go[0].wait()
        crashed[0] += 1
        raise ValueError("loop")

    pool = WorkerPool(worker, size, mode=mode, max_restarts=max_restarts, name="p")
    pool.start()
    try:
        for k in range(1, rounds + 1):
            released, go[0] = go[0], gevent.event.Event()
            released.set()
            wait_until(lambda k=k: crashed[0] == k * size)
            wait_until(lambda k=k: sum(w.restarts for w in pool.which_children()) == k * size)
        assert size * rounds == pool.snapshot()["restarts"]
    finally:
        pool.stop(timeout=DEADLINE)
