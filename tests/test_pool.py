"""WorkerPool: many identical workers, stable ids, incarnations, both restart modes."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
import gevent.local
import gevent.queue
import pytest
from greenlet import getcurrent
from structlog.testing import capture_logs

import greenkeep
from greenkeep import ChildSpec, Supervisor, WorkerPool
from greenkeep._run import BATCH
from greenkeep.testing import ManualClock

from _events import DEADLINE, Events, wait_until

MODES = ["fresh", "reuse"]


def block_forever(worker_id: int) -> None:
    gevent.event.Event().wait()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def pools() -> Iterator[list[WorkerPool]]:
    started: list[WorkerPool] = []
    yield started
    for pool in started:
        pool.stop(timeout=DEADLINE)


class Crashes:
    """Workers that block until told to crash, per worker id."""

    def __init__(self) -> None:
        self.queues: dict[int, gevent.queue.Queue[str]] = {}
        self.seen: list[tuple[int, int]] = []

    def target(self, worker_id: int) -> None:
        info = greenkeep.current()
        assert info is not None
        self.seen.append((worker_id, info.incarnation))
        raise ValueError(self.queues.setdefault(worker_id, gevent.queue.Queue()).get())

    def crash(self, worker_id: int, message: str = "boom") -> None:
        self.queues.setdefault(worker_id, gevent.queue.Queue()).put(message)


@pytest.mark.parametrize("mode", MODES)
class TestBasics:
    def test_ids_and_incarnations(
        self, mode: str, events: Events, pools: list[WorkerPool]
    ) -> None:
        """Workers get ids 0..size-1 as their first argument; a crash restarts that worker
        with the next incarnation, and its id stays."""
        crashes = Crashes()
        pool = WorkerPool(crashes.target, 3, mode=mode, subscribers=[events], name="p")
        pools.append(pool)
        pool.start()

        crashes.crash(1)
        restarted = events.wait("child_restarted", child_id=1)
        gevent.sleep(0)

        assert 2 == restarted["incarnation"]
        assert {(0, 1), (1, 1), (2, 1), (1, 2)} == set(crashes.seen)
        assert [1, 2, 1] == [w.incarnation for w in pool.which_children()]
        assert greenkeep.ChildCounts(1, 3, 0, 3) == pool.count_children()

    def test_current_inside_a_worker(self, mode: str, pools: list[WorkerPool]) -> None:
        """greenkeep.current() names the pool, the worker id and the incarnation."""
        seen = gevent.queue.Queue()

        def target(worker_id: int) -> None:
            seen.put(greenkeep.current())
            block_forever(worker_id)

        pool = WorkerPool(target, 1, mode=mode, name="p")
        pools.append(pool)
        pool.start()

        assert greenkeep.WorkerInfo("p", 0, 1) == seen.get(timeout=DEADLINE)

    def test_each_incarnation_gets_a_fresh_copy_of_the_start_context(
        self, mode: str, pools: list[WorkerPool]
    ) -> None:
        """Every incarnation sees the context captured at start, never what a dead
        incarnation set."""
        var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
        var.set("captured at start")

        seen = _seen_by_two_incarnations(var, mode, pools, lambda pool: pool.start())

        assert ("captured at start", "captured at start") == seen

    def test_an_incarnation_started_from_an_empty_context_never_sees_a_dead_ones(
        self, mode: str, pools: list[WorkerPool]
    ) -> None:
        """Started from an empty context, each incarnation starts from an empty one too,
        even when it runs in the greenlet of the one before it (reuse mode)."""
        var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")

        seen = _seen_by_two_incarnations(
            var, mode, pools, lambda pool: contextvars.Context().run(pool.start)
        )

        assert ("unset", "unset") == seen

    def test_handles_never_reach_another_incarnation(
        self, mode: str, events: Events, pools: list[WorkerPool]
    ) -> None:
        """A handle acts on its own incarnation only: once it ended, kill does nothing and
        join returns at once."""
        crashes = Crashes()
        pool = WorkerPool(crashes.target, 1, mode=mode, subscribers=[events])
        pools.append(pool)
        pool.start()
        old = pool.worker(0)
        crashes.crash(0)
        events.wait("child_restarted", child_id=0)

        old.kill()
        gevent.sleep(0)

        assert (False, True) == (old.alive, old.join(timeout=0))
        new = pool.worker(0)
        assert (2, True) == (new.incarnation, new.alive)
        new.kill()
        assert new.join(timeout=DEADLINE)
        assert "normal" == events.wait("child_exited", incarnation=2)["reason"]

    def test_stop_leaves_no_worker_running(self, mode: str) -> None:
        """After stop() no worker greenlet of the pool is alive."""
        greenlets: list[Any] = []

        def target(worker_id: int) -> None:
            greenlets.append(getcurrent())
            block_forever(worker_id)

        pool = WorkerPool(target, 50, mode=mode)
        pool.start()
        gevent.sleep(0)

        report = pool.stop()

        assert report.clean
        assert 50 == len(greenlets)
        assert all(g.dead for g in greenlets)
        assert {"terminated"} == {w.status for w in pool.which_children()}


class TestReuseSemantics:
    def test_identity_and_local_state(self, pools: list[WorkerPool]) -> None:
        """Reuse keeps the greenlet (and gevent.local state); fresh gives a new greenlet."""
        local = gevent.local.local()
        seen: dict[str, list[tuple[int, object]]] = {"fresh": [], "reuse": []}
        go = {m: gevent.event.Event() for m in MODES}

        def make(mode: str) -> Any:
            def target(worker_id: int) -> None:
                seen[mode].append((id(getcurrent()), getattr(local, "mark", None)))
                local.mark = "left by incarnation 1"
                if len(seen[mode]) == 1:
                    go[mode].wait()
                    raise ValueError("crash")
                block_forever(worker_id)

            return target

        for mode in MODES:
            pool = WorkerPool(make(mode), 1, mode=mode)
            pools.append(pool)
            pool.start()
            go[mode].set()
        while len(seen["fresh"]) < 2 or len(seen["reuse"]) < 2:
            gevent.sleep(0)

        (f1, _), (f2, fl2) = seen["fresh"]
        (r1, _), (r2, rl2) = seen["reuse"]
        assert f1 != f2 and fl2 is None
        assert r1 == r2 and rl2 == "left by incarnation 1"


class TestResize:
    @pytest.mark.parametrize("mode", MODES)
    def test_grow_and_shrink(self, mode: str, events: Events, pools: list[WorkerPool]) -> None:
        """Growing adds the next ids; shrinking stops the highest ids; the default budget
        follows the size."""
        pool = WorkerPool(block_forever, 4, mode=mode, subscribers=[events])
        pools.append(pool)
        pool.start()

        pool.resize(6)
        assert ([0, 1, 2, 3, 4, 5], 18) == (
            [w.id for w in pool.which_children()],
            pool.max_restarts,
        )
        pool.resize(2)

        stopped = [e["child_id"] for e in events.of("child_exited", reason="shutdown")]
        assert [5, 4, 3, 2] == stopped
        assert ([0, 1], 6) == ([w.id for w in pool.which_children()], pool.max_restarts)
        with pytest.raises(
            greenkeep.InvalidArgumentError, match=r"size must be an int in 0\.\.1,000,000"
        ):
            pool.resize(-1)


class TestIntensityAtScale:
    def test_ten_thousand_workers_budget(self, events: Events) -> None:
        """At 10,000 workers the default budget is 3 restarts per worker per window: three
        crashes of every worker are absorbed, the next one gives up."""
        clock = ManualClock()
        go = gevent.event.Event()
        rounds = {"n": 0}

        def target(worker_id: int) -> None:
            go.wait()
            raise ValueError("storm")

        pool = WorkerPool(target, 10_000, clock=clock, name="big")
        pool.start()
        assert 30_000 == pool.max_restarts
        go.set()

        with pytest.raises(greenkeep.RestartIntensityExceeded) as info:
            pool.join(timeout=30)
        rounds["n"] = sum(w.restarts for w in pool.which_children())

        assert 30_000 == rounds["n"]
        assert (30_000, 30_001) == (info.value.max_restarts, info.value.restarts)


class TestStormLogs:
    def test_counts_add_up_for_ten_thousand_crashes(self) -> None:
        """10,000 workers crashing once with one reason: one full crash line, summaries for
        the rest, and every crash counted."""
        go = gevent.event.Event()

        def target(worker_id: int) -> None:
            info = greenkeep.current()
            assert info is not None
            if info.incarnation == 1:
                go.wait()
                raise ValueError("same reason")
            block_forever(worker_id)

        with capture_logs() as logs:
            pool = WorkerPool(target, 10_000)
            pool.start()
            go.set()
            wait_until(lambda: sum(w.restarts for w in pool.which_children()) >= 10_000, 30)
            pool.stop()

        crashes = [e for e in logs if e["event"] == "child_exited" and e["reason"] == "abnormal"]
        summaries = [e for e in logs if e["event"] == "exits_summarized"]
        assert 1 == len(crashes)
        assert 10_000 == 1 + sum(s["count"] for s in summaries)
        assert 10_000 == summaries[-1]["total"]
        assert [10_000] == [e["total"] for e in logs if e["event"] == "storm_ended"]
        assert {"builtins"} != {s["error_type"] for s in summaries}
        assert {"ValueError"} == {s["error_type"] for s in summaries}
        assert all(s["location"].split("/")[-1].startswith("test_pool.py:") for s in summaries)
        assert all(s["sample_error"] == "ValueError: same reason" for s in summaries)

    def test_summaries_off_logs_every_crash(self) -> None:
        """log_summary_interval=None logs every crash in full."""
        go = gevent.event.Event()

        def target(worker_id: int) -> None:
            info = greenkeep.current()
            assert info is not None
            if info.incarnation == 1:
                go.wait()
                raise ValueError("same reason")
            block_forever(worker_id)

        with capture_logs() as logs:
            pool = WorkerPool(target, 100, log_summary_interval=None)
            pool.start()
            go.set()
            wait_until(lambda: sum(w.restarts for w in pool.which_children()) >= 100)
            pool.stop()

        crashes = [e for e in logs if e["event"] == "child_exited" and e["reason"] == "abnormal"]
        assert 100 == len(crashes)
        assert [] == [e for e in logs if e["event"] == "exits_summarized"]


class TestFairness:
    @pytest.mark.parametrize("mode", MODES)
    def test_server_keeps_running_and_requests_jump_the_backlog(self, mode: str) -> None:
        """While 10,000 workers crash in a loop, other greenlets keep running and a control
        request is served."""
        ticks = {"n": 0}
        stop = gevent.event.Event()

        def ticker() -> None:
            while not stop.is_set():
                ticks["n"] += 1
                gevent.sleep(0)

        runs = {"n": 0}

        def target(worker_id: int) -> None:
            runs["n"] += 1
            raise ValueError("loop")

        pool = WorkerPool(target, 10_000, mode=mode, max_restarts=greenkeep.UNLIMITED)
        pool.start()
        tick = gevent.spawn(ticker)
        # Let the crash loop build a backlog.
        wait_until(lambda: runs["n"] >= 30_000, 30)
        backlog = len(pool._run.mailbox.queue)  # type: ignore[union-attr]
        before = runs["n"]
        pool.resize(10_001)
        during = runs["n"] - before
        stop.set()
        tick.join()
        pool.stop()

        assert ticks["n"] > 10  # the rest of the process kept running (not starved)
        assert backlog > 2 * BATCH
        assert during <= 2 * BATCH  # served ahead of the backlog, not after it
        assert 10_001 == pool.size


class TestInTrees:
    def test_pool_is_a_child_and_escalates(self) -> None:
        """A pool under a supervisor: its give-up is a crash of that child."""
        events = Events()
        go = gevent.event.Event()

        def target(worker_id: int) -> None:
            go.wait()
            raise ValueError("pool worker crash")

        pool = WorkerPool(target, 2, max_restarts=0, name="workers", subscribers=[events])
        root = Supervisor(
            [ChildSpec("workers", pool)], max_restarts=0, name="root", subscribers=[events]
        )
        root.start()
        assert "running" == pool.state
        go.set()

        with pytest.raises(greenkeep.RestartIntensityExceeded):
            root.join(timeout=DEADLINE)
        assert ["root/workers", "root"] == [
            e["supervisor"] for e in events.of("restart_intensity_exceeded")
        ]


def test_validation_lists_every_problem() -> None:
    """Bad pool arguments are all reported at once, naming the pool."""
    with pytest.raises(greenkeep.InvalidSpecError) as info:
        WorkerPool("not callable", -1, mode="turbo", shutdown=-2, name="p")  # type: ignore[arg-type]

    fields = {p.field for p in info.value.problems}
    assert {"size", "mode", "target", "shutdown"} == fields
    assert {"pool 'p'"} == {p.owner for p in info.value.problems}


def _seen_by_two_incarnations(
    var: contextvars.ContextVar[str],
    mode: str,
    pools: list[WorkerPool],
    start: Callable[[WorkerPool], object],
) -> tuple[str, str]:
    """What *var* holds in a one-worker pool's first two incarnations, each of which sets
    it before crashing; *start* starts the pool (in the context it chooses)."""
    seen = gevent.queue.Queue()
    go = gevent.event.Event()

    def target(worker_id: int) -> None:
        seen.put(var.get())
        var.set("set by a dead incarnation")
        go.wait()
        raise ValueError("crash")

    pool = WorkerPool(target, 1, mode=mode)
    pools.append(pool)
    start(pool)
    first = seen.get(timeout=DEADLINE)
    go.set()
    return first, seen.get(timeout=DEADLINE)
