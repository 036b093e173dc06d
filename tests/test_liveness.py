"""
Heartbeats and backoff, driven by a manual clock: stuck workers are killed after their
deadline, beating ones never are; delays follow the documented sequence.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import gevent
import gevent.event
import gevent.queue
import pytest

import greenkeep
from greenkeep import Backoff, ChildSpec, Supervisor, WorkerPool
from greenkeep.testing import ManualClock

from _events import DEADLINE, Events


def settle(sup: Supervisor) -> None:
    """Round-trip a request through the manager: everything it was woken for has run."""
    with contextlib.suppress(greenkeep.ChildNotFoundError, greenkeep.SupervisorNotRunningError):
        sup.terminate_child("__settle__")


def block_forever(*_: Any) -> None:
    gevent.event.Event().wait()


class Beater:
    """A worker that beats whenever the test says so."""

    def __init__(self) -> None:
        self.commands: gevent.queue.Queue[str] = gevent.queue.Queue()
        self.beats = 0

    def target(self) -> None:
        while True:
            self.commands.get()
            greenkeep.beat()
            self.beats += 1

    def beat(self) -> None:
        self.commands.put("beat")
        while not self.commands.empty():
            gevent.sleep(0)


class TestHeartbeat:
    def test_stuck_worker_is_restarted_after_its_deadline(self) -> None:
        """A worker that never beats is killed once its interval has passed with no beat,
        logged as heartbeat_missed (not a crash), and restarted."""
        clock = ManualClock()
        events = Events()
        sup = Supervisor(
            [ChildSpec("stuck", block_forever, heartbeat=1.0)],
            clock=clock,
            subscribers=[events],
        )
        sup.start()

        for _ in range(2):  # at 0.5 s and 1.0 s it is not late yet
            clock.advance(0.5)
            settle(sup)
            assert [] == events.of("heartbeat_missed")
        clock.advance(0.5)  # checked every half interval: caught by 1.5 intervals at most

        missed = events.wait("heartbeat_missed", child_id="stuck")
        exited = events.wait("child_exited", child_id="stuck")
        events.wait("child_restarted", child_id="stuck")
        assert (1, 1.0) == (missed["incarnation"], missed["interval"])
        assert ("heartbeat_missed", "restart", "error") == (
            exited["reason"],
            exited["action"],
            exited["level"],
        )
        assert "heartbeat_missed" == sup.which_children()[0].last_exit.reason
        sup.stop()

    def test_a_beating_worker_is_never_killed(self) -> None:
        """Beats more often than the interval keep a worker alive indefinitely."""
        clock = ManualClock()
        events = Events()
        beater = Beater()
        sup = Supervisor(
            [ChildSpec("beater", beater.target, heartbeat=1.0)],
            clock=clock,
            subscribers=[events],
        )
        sup.start()

        for _ in range(40):
            beater.beat()
            clock.advance(0.3)
            settle(sup)

        assert 40 == beater.beats
        assert [] == events.of("heartbeat_missed")
        assert 1 == sup.which_children()[0].incarnation
        sup.stop()

    def test_missed_heartbeats_count_toward_intensity(self) -> None:
        """A heartbeat miss is a restart like a crash: it counts toward the budget."""
        clock = ManualClock()
        sup = Supervisor(
            [ChildSpec("stuck", block_forever, heartbeat=1.0)], clock=clock, max_restarts=1
        )
        sup.start()

        for _ in range(8):  # two misses, 1.5 intervals each at most
            clock.advance(0.5)
            if sup.state == "running":
                settle(sup)

        with pytest.raises(greenkeep.RestartIntensityExceeded) as info:
            sup.join(timeout=DEADLINE)
        assert "heartbeat_missed" == info.value.last_crash.reason

    def test_beat_outside_a_worker_is_a_no_op(self) -> None:
        """Library code may beat unconditionally."""
        greenkeep.beat()
        greenkeep.heartbeat()()

        assert greenkeep.current() is None

    def test_a_previous_incarnations_beat_counts_for_nothing(self) -> None:
        """`heartbeat()` is bound to the incarnation that asked: once that one has been
        replaced, calling it does not keep the next incarnation alive."""
        clock = ManualClock()
        events = Events()
        stale: list[Any] = []
        crash = gevent.event.Event()

        def target() -> None:
            if not stale:
                stale.append(greenkeep.heartbeat())
                crash.wait()
                raise ValueError("first incarnation")
            block_forever()  # the second never beats itself

        sup = Supervisor(
            [ChildSpec("w", target, heartbeat=1.0)], clock=clock, subscribers=[events]
        )
        sup.start()
        crash.set()
        events.wait("child_restarted", child_id="w")
        for _ in range(3):
            stale[0]()  # the first incarnation's beat
            clock.advance(0.5)
            settle(sup)

        missed = events.wait("heartbeat_missed", child_id="w")
        assert 2 == missed["incarnation"]
        sup.stop()

    def test_a_beat_handed_to_another_greenlet_keeps_its_incarnation_alive(self) -> None:
        """`heartbeat()`'s callable beats for the incarnation that asked for it from any
        greenlet: a worker that waits while a helper beats on its behalf is not killed,
        and `greenkeep.beat()` in the helper (not a worker) does nothing."""
        clock = ManualClock()
        events = Events()
        beats: gevent.queue.Queue[str] = gevent.queue.Queue()
        helpers: list[gevent.Greenlet[Any, Any]] = []

        def helper(beat: Any) -> None:
            while True:
                if beats.get() == "bound":
                    beat()
                else:
                    greenkeep.beat()  # the helper's own greenlet: not a worker

        def target() -> None:
            helpers.append(gevent.spawn(helper, greenkeep.heartbeat()))
            block_forever()

        sup = Supervisor(
            [ChildSpec("w", target, heartbeat=1.0)], clock=clock, subscribers=[events]
        )
        sup.start()
        gevent.sleep(0)
        for _ in range(6):  # three intervals, a delegated beat every half interval
            beats.put("bound")
            gevent.sleep(0)
            clock.advance(0.5)
            settle(sup)
        assert [] == events.of("heartbeat_missed")
        for _ in range(3):  # the module-level beat from the helper keeps nothing alive
            beats.put("module")
            gevent.sleep(0)
            clock.advance(0.5)
            settle(sup)

        assert 1 == events.wait("heartbeat_missed", child_id="w")["incarnation"]
        sup.stop()
        gevent.killall(helpers)

    @pytest.mark.parametrize("mode", ["fresh", "reuse"])
    def test_pool_kills_only_the_stuck_workers(self, mode: str) -> None:
        """In a pool, only the workers that stopped beating are restarted."""
        clock = ManualClock()
        events = Events()
        tick = gevent.event.Event()

        def target(worker_id: int) -> None:
            beat = greenkeep.heartbeat()
            if worker_id % 2:
                block_forever()
            while True:
                tick.wait()
                beat()
                gevent.sleep(0)

        pool = WorkerPool(target, 20, mode=mode, heartbeat=1.0, clock=clock, subscribers=[events])
        pool.start()
        gevent.sleep(0)

        for _ in range(4):
            tick.set()
            gevent.sleep(0)
            tick.clear()
            clock.advance(0.5)
            pool.resize(20)  # a round trip through the manager

        missed = sorted({e["child_id"] for e in events.of("heartbeat_missed")})
        assert list(range(1, 20, 2)) == missed
        assert all(w.incarnation == 1 for w in pool.which_children() if w.id % 2 == 0)
        pool.stop()

    @pytest.mark.parametrize("mode", ["fresh", "reuse"])
    def test_restarted_workers_keep_beating_into_the_right_greenlet(self, mode: str) -> None:
        """A crashed worker's next incarnation (in fresh mode: a new greenlet, or the spare
        started ahead for an isolated restart) beats and is not killed; nor is anyone else."""
        clock = ManualClock()
        events = Events()
        tick = gevent.event.Event()
        crash = gevent.queue.Queue()

        def target(worker_id: int) -> None:
            beat = greenkeep.heartbeat()
            while True:
                tick.wait()
                beat()
                if worker_id == 0 and not crash.empty():
                    raise ValueError(crash.get())
                gevent.sleep(0)

        pool = WorkerPool(target, 4, mode=mode, heartbeat=1.0, clock=clock, subscribers=[events])
        pool.start()
        for round_ in range(12):
            if round_ in (2, 6):
                crash.put("boom")  # an isolated crash and restart of worker 0
            tick.set()
            gevent.sleep(0)
            tick.clear()
            if round_ in (2, 6):
                events.wait("child_restarted", child_id=0)
            clock.advance(0.5)
            pool.resize(4)  # a round trip through the manager: the tick has run

        assert [] == events.of("heartbeat_missed")
        assert "running" == pool.state
        assert [3, 1, 1, 1] == [w.incarnation for w in pool.which_children()]
        pool.stop()


class TestBackoff:
    def crasher(self, commands: gevent.queue.Queue[str]) -> Any:
        def target() -> None:
            if commands.get() == "crash":
                raise ValueError("dependency down")
            block_forever()

        return target

    def test_delays_follow_the_documented_sequence_with_a_cap(self) -> None:
        """Delays grow by factor from initial up to max_delay; jitter is applied to each."""
        clock = ManualClock()
        events = Events()
        commands: gevent.queue.Queue[str] = gevent.queue.Queue()
        backoff = Backoff(initial=1.0, factor=2.0, max_delay=5.0, jitter=0.5, reset_after=100)
        uniforms = iter([0.5, 0.5, 1.0, 0.0, 0.5, 0.5])
        sup = Supervisor(
            [ChildSpec("c", self.crasher(commands), backoff=backoff)],
            clock=clock,
            max_restarts=100,
            subscribers=[events],
            random=lambda: next(uniforms),
        )
        sup.start()
        delays = []

        for attempt in range(1, 6):
            commands.put("crash")
            delayed = events.wait("child_restart_delayed", child_id="c")
            delays.append(delayed["delay"])
            assert "delayed" == sup.which_children()[0].status
            assert attempt == delayed["attempt"]
            clock.advance(delayed["delay"])
            events.wait("child_restarted", child_id="c")

        # base 1, 2, 4, 5 (cap), 5; jitter factor 1 + 0.5 * (2u - 1): 1, 1, 1.5, 0.5, 1
        assert [1.0, 2.0, 6.0, 2.5, 5.0] == delays
        sup.stop()

    def test_a_healthy_run_resets_the_sequence(self) -> None:
        """An incarnation that ran reset_after seconds restarts after `initial` again."""
        clock = ManualClock()
        events = Events()
        commands: gevent.queue.Queue[str] = gevent.queue.Queue()
        backoff = Backoff(initial=1.0, factor=3.0, max_delay=60, jitter=0.0, reset_after=10)
        sup = Supervisor(
            [ChildSpec("c", self.crasher(commands), backoff=backoff)],
            clock=clock,
            max_restarts=100,
            subscribers=[events],
        )
        sup.start()
        delays = []

        for healthy in (0, 0, 0, 10, 0):
            clock.advance(healthy)
            commands.put("crash")
            delayed = events.wait("child_restart_delayed", child_id="c")
            delays.append(delayed["delay"])
            clock.advance(delayed["delay"])
            events.wait("child_restarted", child_id="c")

        assert [1.0, 3.0, 9.0, 1.0, 3.0] == delays
        sup.stop()

    def test_stop_during_a_pending_delay_does_not_wait(self) -> None:
        """stop() cancels a pending delayed restart at once."""
        events = Events()
        commands: gevent.queue.Queue[str] = gevent.queue.Queue()
        sup = Supervisor(
            [ChildSpec("c", self.crasher(commands), backoff=Backoff(initial=60, max_delay=60))],
            subscribers=[events],
        )
        sup.start()
        commands.put("crash")
        events.wait("child_restart_delayed", child_id="c")
        started = time.monotonic()

        report = sup.stop()

        assert time.monotonic() - started < 1.0
        assert report.clean
        assert "terminated" == sup.which_children()[0].status
        assert [] == events.of("child_restarted")

    def test_a_pool_stop_with_a_delayed_restart_due_waits_without_spinning(self) -> None:
        """A pool stopped while a cancelled delayed restart is past due, and a worker
        outlives its bound, returns at the bound, having waited (not looped) meanwhile."""
        clock = ManualClock()

        def work(worker_id: int) -> None:
            if worker_id == 0:
                raise ValueError("dependency down")
            while True:
                with contextlib.suppress(gevent.GreenletExit):
                    gevent.sleep(1)

        backoff = Backoff(initial=1.0, jitter=0)
        pool = WorkerPool(work, 2, backoff=backoff, clock=clock, max_restarts=100, shutdown=0.3)
        pool.start()
        wait_until = time.monotonic() + DEADLINE
        while pool.which_children()[0].status != "delayed" and time.monotonic() < wait_until:
            gevent.sleep(0.001)
        clock.advance(5.0)  # the delayed restart is past due when the stop cancels it
        cpu = time.process_time()

        report = pool.stop(timeout=DEADLINE)

        assert [1] == [u.child_id for u in report.unstopped]
        assert time.process_time() - cpu < 0.2  # it waited for the 0.3 s bound

    def test_terminate_child_cancels_and_restart_child_refuses_while_delayed(self) -> None:
        """A delayed child cannot be restarted or deleted by hand (ChildRestartingError);
        terminate_child cancels its pending restart."""
        clock = ManualClock()
        events = Events()
        commands: gevent.queue.Queue[str] = gevent.queue.Queue()
        sup = Supervisor(
            [ChildSpec("c", self.crasher(commands), backoff=Backoff(initial=5, max_delay=5))],
            clock=clock,
            subscribers=[events],
        )
        sup.start()
        commands.put("crash")
        events.wait("child_restart_delayed", child_id="c")

        with pytest.raises(greenkeep.ChildRestartingError, match="terminate_child"):
            sup.restart_child("c")
        with pytest.raises(greenkeep.ChildRestartingError):
            sup.delete_child("c")
        sup.terminate_child("c")
        clock.advance(10)
        settle(sup)

        assert "terminated" == sup.which_children()[0].status
        assert [] == events.of("child_restarted")
        sup.stop()

    def test_pool_backoff_and_snapshot(self) -> None:
        """Pool workers back off too, and snapshots show them as delayed."""
        clock = ManualClock()
        events = Events()
        go = gevent.event.Event()

        def target(worker_id: int) -> None:
            go.wait()
            raise ValueError("down")

        pool = WorkerPool(
            target,
            3,
            backoff=Backoff(initial=2, jitter=0),
            clock=clock,
            subscribers=[events],
            max_restarts=100,
        )
        pool.start()
        go.set()
        for worker_id in range(3):
            events.wait("child_restart_delayed", child_id=worker_id)

        assert {"delayed"} == {c["state"] for c in pool.snapshot()["children"]}
        go.clear()
        clock.advance(2)
        for worker_id in range(3):
            events.wait("child_restarted", child_id=worker_id, incarnation=2)
        pool.stop()

    def test_backoff_validation(self) -> None:
        """Invalid backoff settings are all reported."""
        with pytest.raises(greenkeep.InvalidSpecError) as info:
            Backoff(initial=0, factor=0.5, max_delay=-1, jitter=1.5, reset_after=float("nan"))

        assert {"initial", "factor", "max_delay", "jitter", "reset_after"} == {
            p.field for p in info.value.problems
        }
