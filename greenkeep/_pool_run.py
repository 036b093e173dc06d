"""
One run of a `WorkerPool`: its workers, the restart path (the hot path), resizing and
stopping. Everything here runs in the manager greenlet.

Per crash the manager does O(1) work: the worker's record is found through the exit itself,
the restart window keeps only the last ``max_restarts + 1`` timestamps, crash-storm damping is
one dict lookup (or none: a worker whose kind is being summarized posts its storm), and
nothing scans the workers. One loop callback per batch starts (fresh mode) or resumes
(reuse mode) every worker restarted in it, after the finished greenlets were retired.
"""

from __future__ import annotations

import contextvars
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import gevent
import gevent.event
from greenlet import getcurrent as _getcurrent

from greenkeep._config import Config
from greenkeep._exits import ABNORMAL_KINDS, REASON, ExitKind, ExitRecord, classify
from greenkeep._heartbeat import HeartbeatMonitor
from greenkeep._intensity import UnlimitedType
from greenkeep._launch import create, resume, spare, start, start_now, start_spare
from greenkeep._ops import Op
from greenkeep._readiness import CHECK_EVERY, Readiness
from greenkeep._records import Record
from greenkeep._render import error_text
from greenkeep._rules import Action, plan_exit
from greenkeep._run import Run
from greenkeep._spec import ChildSpec, Restart, ShutdownPolicy
from greenkeep._states import DELAYED, RUNNING, STOPPING, TERMINATED
from greenkeep._storm import Storm, describe
from greenkeep._worker import WorkerGreenlet, disown, run_worker

try:
    from greenkeep import _speedups
except ImportError:  # pragma: no cover - only where the C speedup could not be built
    _speedups = None  # type: ignore[assignment]

__all__ = ["RESTARTS_PER_WORKER", "PoolRun", "Worker"]

#: The default restart budget of a pool, per worker and window.
RESTARTS_PER_WORKER = 3


class Worker(Record):
    """A pool's record of one worker slot."""

    __slots__ = ("fail_epoch", "fail_long", "fail_stalled", "last_reason", "live", "waiters")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.live = 0  # the incarnation running now, 0 if none
        self.last_reason: str | None = None
        self.waiters: dict[int, gevent.event.Event] | None = None
        self.fail_epoch = 0  # its failing episode (greenkeep._readiness), 0 if not failing
        self.fail_long = False  # failing for longer than DEGRADED_AFTER
        self.fail_stalled = False  # ... and counted as waiting for its restart


def _crash_record(worker_id: int, incarnation: int, exc: Any, now: float) -> ExitRecord:
    # The rendered crash that made the pool give up (a posted storm keeps its kind only).
    if type(exc) is Storm:
        name = describe(exc.kind, exc.code)[0]
        error = f"{name} (message not kept)"
        return ExitRecord(worker_id, incarnation, "abnormal", error, None, now)
    return ExitRecord.of(worker_id, incarnation, ExitKind.ABNORMAL, exc, now, True)


def _is_straight(item: Any) -> bool:
    """Whether a mailbox item takes `PoolRun.drain`'s straight path: a crash posted as its
    announced storm by its worker's live incarnation, no stop requested, nobody waiting for
    it, status RUNNING."""
    if type(item) is not tuple or len(item) != 3:
        return False
    worker, incarnation, storm = item
    return (
        type(storm) is Storm
        and type(worker) is Worker
        and bool(storm.announced)
        and worker.waiters is None
        and worker.status is RUNNING
        and worker.live == incarnation
        and not worker.stop_requested
    )


def _straight_run_py(
    queue: deque[Any],
    handled: int,
    bound: int,
    now: float,
    reuse: bool,
    resumes: list[Any],
    starts: list[Any],
    retirees: list[Any],
    hub: Any,
    run: Any,
) -> int:
    """
    Restart the straight-path crashes (`_is_straight`) at the head of *queue* until the
    count *handled* reaches *bound* or the queue is empty; return the new count. The first
    other item stays at the head. A worker restarted: reason "abnormal", incarnation and
    live one more, restarts one more, started at *now*, no stop event; in *reuse* mode its
    greenlet goes to *resumes*, else a new `WorkerGreenlet` ``(run, hub)`` for the new
    incarnation to *starts* (the old one, if parked, to *retirees*). Runs in the manager,
    never blocks, emits nothing. `greenkeep._speedups.straight_run` does the same in C.
    """
    popleft = queue.popleft
    while handled < bound and queue:
        item = popleft()
        if not _is_straight(item):
            queue.appendleft(item)  # (in its place: the batch handles it next)
            break
        worker, incarnation, _ = item
        handled += 1
        worker.last_reason = "abnormal"
        incarnation += 1
        worker.incarnation = worker.live = incarnation
        worker.restarts += 1
        worker.started_at = now
        worker.stop_event = None
        if reuse:
            resumes.append(worker.greenlet)
        else:
            old = worker.greenlet
            if old:  # parked (a storm): retire it; one that ended is simply dropped
                retirees.append(old)
            # `create`, inline (no heartbeat on this path: no beat flag to set)
            worker.greenlet = greenlet = WorkerGreenlet(run, hub)
            greenlet.child = worker
            greenlet.incarnation = incarnation
            starts.append(greenlet)
    return handled


#: `PoolRun.drain`'s restarts in bulk: the compiled `greenkeep._speedups.straight_run`, or
#: `_straight_run_py` where the optional C speedup was not built.
_straight_run: Callable[..., int] = _straight_run_py
if _speedups is not None:  # pragma: no branch - built wherever a C compiler is at hand
    _speedups.configure(Worker, WorkerGreenlet, Storm, RUNNING, "abnormal")
    _straight_run = _speedups.straight_run


class PoolRun(Run):
    """
    One run of a `WorkerPool`.

    Attributes:
        workers: The worker records, by worker id.
        size: How many workers it has (resizing changes it).
        active: How many workers run an incarnation now.
    """

    def __init__(
        self,
        config: Config,
        path: str,
        context: contextvars.Context,
        spec: ChildSpec,
        size: int,
        reuse: bool,
        scaled_budget: bool,
    ) -> None:
        self.size = size
        self.scaled_budget = scaled_budget
        super().__init__(config, path, context)
        self.spec = spec
        self.restart_type = spec.restart
        self.restart_value = spec.restart.value
        self.reuse = reuse
        self.limited = not isinstance(self.intensity.max_restarts, UnlimitedType)
        # The straight path of handle_exit: a crash restarts at once, storms are summarized.
        self.fast = (
            spec.restart is not Restart.TEMPORARY
            and spec.heartbeat is None
            and spec.backoff is None
            and config.log_summary_interval is not None
        )
        self.backoff = spec.backoff
        self.storm_of = self.reporter.storms.by_kind  # the straight path reads it directly
        self.workers: list[Worker] = []
        self.resumes: list[Any] = []  # parked greenlets to run their next incarnation
        self.starts: list[Any] = []  # new greenlets to start
        self.active = 0
        self.damp_limited = False  # whether each batch re-checks the budget's room
        self.spare: Any = None  # fresh mode: a greenlet started ahead, for an isolated restart
        self.monitor: HeartbeatMonitor | None = None
        if spec.heartbeat is not None:
            self.monitor = HeartbeatMonitor(spec.heartbeat, self.clock())
            self.monitors.append(self.monitor)
        #: Whether it is degraded (greenkeep._readiness): with a backoff, by its waiting
        #: workers; without, by its crash rate.
        self.readiness = Readiness(spec.backoff is None, size)
        self.crash_count = 0  # crashes restarted at once (read with damping off)

    def budget(self) -> int | UnlimitedType:
        if self.scaled_budget:
            return max(RESTARTS_PER_WORKER, RESTARTS_PER_WORKER * self.size)
        return self.config.max_restarts

    def records(self) -> Iterator[Record]:
        return iter(list(self.workers))

    def started_fields(self) -> dict[str, object]:
        mode = "reuse" if self.reuse else "fresh"
        return {"strategy": "simple_one_for_one", "children": self.size, "mode": mode}

    def policy_of(self, record: Record) -> ShutdownPolicy:
        return self.spec.shutdown

    def start_op(self) -> Op:
        self.hub = gevent.get_hub()
        # Crashes of a kind being summarized may be posted as their storm alone, unless
        # subscribers want every exception; with a finite budget, only while it has room.
        damp = self.fast and not self.emitter.has_subscribers
        self.damp_limited = damp and self.limited
        self.channel.damped = self.storm_of if damp else None
        if not self.reuse:
            self.spare = spare(self.hub)
        self._add_workers(self.size)
        self.end_batch()
        yield from ()

    def _add_workers(self, count: int) -> None:
        channel = self.channel
        spec = self.spec
        monitor = self.monitor
        starts = self.starts
        now = self.clock()
        first = len(self.workers)
        for worker_id in range(first, first + count):
            args = (worker_id, *spec.args)
            record = Worker(worker_id, spec.target, args, spec.kwargs, channel, self.context)
            self.workers.append(record)
            record.reusable = self.reuse
            record.incarnation = record.live = 1
            record.status = RUNNING
            record.started_at = now
            record.greenlet = greenlet = create(record, 1, self.hub)
            starts.append(greenlet)
            if monitor is not None:
                monitor.started(record)
        self.active += count

    # ------------------------------------------------------------------ exits

    def handle_exit(self, worker: Worker, incarnation: int, exc: Any) -> None:
        """
        Handle one posted exit: the hot path, O(1). *exc* is what the incarnation raised,
        ``None`` if it returned, or the `Storm` of its kind (the worker counted itself in).

        A crash that restarts at once while its kind is being summarized takes the straight
        path below: `plan_exit`'s rules for that case, inline (a `plan_exit` call measured
        1.5 us here, about half of a whole reuse-mode restart at 2.8 us; ``test_rules.py``
        checks that both agree). Everything else goes through `_general`. Kept in one
        function on purpose: each call or attribute lookup is a visible share of a restart.
        """
        if (
            self.fast
            and exc is not None
            and worker.live == incarnation
            and not worker.stop_requested
            and worker.waiters is None
            and worker.status is RUNNING
            and self.end_reason is None
        ):
            storm = None
            if type(exc) is Storm:  # a crash the worker posted as its storm (counted)
                storm = exc
            elif isinstance(exc, Exception):
                tb = exc.__traceback__
                if tb is not None:
                    while tb.tb_next is not None:  # greenkeep._storm.crash_site, inlined
                        tb = tb.tb_next
                    storm = self.storm_of.get((type(exc), id(tb.tb_frame.f_code), tb.tb_lasti))
                    tb = None
                    if storm is not None and not storm.announced:
                        storm = None  # the first of a storm its worker opened: log it
            if storm is not None:
                now = self.clock()
                if not storm.announced:  # (its first crash never reached the log)
                    self.reporter.storms.announce(storm, now)
                if self.intensity.record(now):  # (UNLIMITED: only counted)
                    self._give_up_now(worker, incarnation, exc, now)  # the budget ran out
                    return
                worker.last_reason = "abnormal"
                if storm is not exc:
                    storm.count += 1  # (counts are summed into the total at each summary)
                    if storm.sample is None:
                        storm.sample = (worker.id, incarnation, error_text(exc))
                reporter = self.reporter
                if self.emitter.has_subscribers:
                    reporter.summarized_exit(worker.id, incarnation, self.restart_value, exc)
                incarnation += 1
                worker.incarnation = worker.live = incarnation
                worker.restarts += 1
                worker.started_at = now
                worker.stop_event = None
                if self.reuse:
                    self.resumes.append(worker.greenlet)
                else:
                    if worker.greenlet is not None:
                        self.retirees.append(worker.greenlet)
                    worker.greenlet = greenlet = create(worker, incarnation, self.hub)
                    self.starts.append(greenlet)
                if self.emitter.has_subscribers:
                    in_window = self.intensity.in_window
                    reporter.restarted(worker.id, incarnation, in_window, logged=False)
                return
        self._general(worker, incarnation, exc)

    def drain(self, queue: deque[Any], handled: int, most: int) -> int:
        """
        The batch's straight path in bulk: take, from the head of *queue*, the exits that
        `handle_exit`'s straight path would restart without a word (crashes posted as their
        storm, the worker counted in: no event, no log), until *most* items are handled
        in all; return the new count. Stops at the first other item, leaving it queued,
        and after a give-up. Runs in the manager; never blocks, emits nothing, so nothing
        else can run meanwhile: the run's restarts are decided at one clock reading and
        recorded in the window together (`RestartIntensity.record_many`). The restarts
        are `_straight_run`'s (compiled where the C speedup is built); the budget and the
        give-up are decided here. ``test_rules.py`` checks that it agrees with `plan_exit`,
        with either.
        """
        if not self.fast or self.emitter.has_subscribers or self.end_reason is not None:
            return handled
        now = self.clock()  # the run's restarts share one reading (nothing runs meanwhile)
        intensity = self.intensity
        first = handled  # the count before this run: the run's restarts are handled - first
        # The count at which the next restart would exceed the budget (most, if it cannot).
        room = intensity.room(now) if self.limited else None
        full = most if room is None or first + room >= most else first + room
        handled = _straight_run(
            queue,
            handled,
            full,
            now,
            self.reuse,
            self.resumes,
            self.starts,
            self.retirees,
            self.hub,
            run_worker,
        )
        if full <= handled < most and queue and _is_straight(queue[0]):
            # The next straight-path crash exceeds the budget: give up.
            worker, incarnation, storm = queue.popleft()
            intensity.record_many(now, handled - first + 1)
            self._give_up_now(worker, incarnation, storm, now)
            return handled + 1
        if handled > first:
            intensity.record_many(now, handled - first)
        return handled

    def _give_up_now(self, worker: Worker, incarnation: int, exc: Any, now: float) -> None:
        worker.live = 0
        self.active -= 1
        worker.last_reason = "abnormal"
        self._not_restarted(worker, incarnation, ExitKind.ABNORMAL, exc, Action.GIVE_UP, now)
        self.give_up(_crash_record(worker.id, incarnation, exc, now))

    def _general(self, worker: Worker, incarnation: int, exc: Any) -> None:
        """Every exit the straight path of `handle_exit` does not take."""
        if worker.live != incarnation:
            self.late_exit(worker, incarnation, REASON[classify(exc, True)])
            return
        worker.live = 0
        self.active -= 1
        if self.monitor is not None:
            self.monitor.ended(worker)
        now = self.clock()
        plan = plan_exit(
            self.restart_type,
            exc,
            stop_requested=worker.stop_requested,
            heartbeat_killed=worker.hb_missed == incarnation,
            stopping=worker.status is not RUNNING or self.end_reason is not None,
            window=self.intensity,
            now=now,
            backoff=self.backoff,
            attempt=worker.backoff_attempt,
            uptime=now - worker.started_at,
            uniform=self.config.random,
        )
        kind = plan.kind
        worker.last_reason = REASON[kind]
        if worker.waiters is not None and incarnation in worker.waiters:
            worker.waiters.pop(incarnation).set()
        if plan.end is not None and plan.action is not Action.GIVE_UP:
            self.end(plan.end)
        if plan.action is not Action.RESTART:
            self.readiness.forget(worker)  # nothing to wait for
            self._not_restarted(worker, incarnation, kind, exc, plan.action, now)
            if plan.action is Action.GIVE_UP:
                self.give_up(_crash_record(worker.id, incarnation, exc, now))
            return
        logged = self.reporter.child_exited(
            worker.id, incarnation, kind, exc, "restart", self.restart_value, now, routine="debug"
        )
        if self.backoff is not None:
            worker.backoff_attempt = plan.attempt
            if not self.reuse:  # its parked greenlet retires; a new one comes after the delay
                self._park_or_drop(worker)
            worker.status = DELAYED
            worker.delay_logged = logged  # its restart is logged (or summarized) alike
            self.timers.delay(worker, now + plan.delay)
            self.readiness.delayed(worker, now)
            self._watch(now)
            self.reporter.restart_delayed(worker.id, incarnation, plan.delay, plan.attempt, logged)
            return
        if kind in ABNORMAL_KINDS:
            self.crash_count += 1
            self._watch(now)
        incarnation = self._relaunch(worker, now)
        level = "info" if kind in ABNORMAL_KINDS else "debug"
        in_window = self.intensity.in_window
        self.reporter.restarted(worker.id, incarnation, in_window, level=level, logged=logged)

    def _relaunch(self, worker: Worker, now: float) -> int:
        """Run *worker*'s next incarnation; return its number."""
        incarnation = worker.incarnation + 1
        worker.incarnation = worker.live = incarnation
        worker.restarts += 1
        worker.started_at = now
        worker.stop_event = None
        worker.stop_requested = False
        worker.status = RUNNING
        self.active += 1
        if self.reuse:
            self.resumes.append(worker.greenlet)
        else:
            if worker.greenlet is not None:
                self.retirees.append(worker.greenlet)  # the parked, finished one
            worker.greenlet = greenlet = create(worker, incarnation, self.hub)
            self.starts.append(greenlet)
        if self.monitor is not None:
            self.monitor.started(worker)
        return incarnation

    def restart_due(self, record: Worker) -> None:
        if record.status != DELAYED:
            return  # cancelled (stop, shrink)
        now = self.clock()
        incarnation = self._relaunch(record, now)
        self.readiness.relaunched(record, now)
        in_window = self.intensity.in_window
        self.reporter.restarted(record.id, incarnation, in_window, logged=record.delay_logged)

    # ------------------------------------------------------------------ readiness

    def _crashes(self) -> int:
        # The pool's crashes so far: every crash is counted in its storm (the straight path
        # and the workers count theirs there); with damping off, here.
        storms = self.reporter.storms
        return storms.crashes() if storms.interval is not None else self.crash_count

    def _watch(self, now: float) -> None:
        """Something may make the pool degraded: check periodically from now on."""
        readiness = self.readiness
        if readiness.by_crash_rate and not readiness.sampling:
            readiness.watch(now, self._crashes())
        if self.timers.check_at is None:
            self.timers.check_at = now + CHECK_EVERY

    def check(self, now: float) -> None:
        """The periodic readiness check: report a change, and go on while needed (without
        backoff: also while a storm of crashes is under way, whose crashes the straight
        path restarts without a word to the readiness)."""
        readiness = self.readiness
        crashes = self._crashes() if readiness.by_crash_rate else 0
        change = readiness.check(now, self.size, crashes)
        if change is not None:
            basis = "crash_rate" if readiness.by_crash_rate else "delayed_restarts"
            if change.degraded:
                self.reporter.pool_degraded(change.failing, self.size, now - change.since, basis)
            else:
                self.reporter.pool_recovered(change.failing, self.size, now - change.since)
        if readiness.needs_checks() or (readiness.by_crash_rate and self.reporter.storms.by_kind):
            self.timers.check_at = now + CHECK_EVERY
        else:
            readiness.idle()

    def degraded(self) -> bool:
        return self.readiness.degraded

    def _not_restarted(
        self,
        worker: Worker,
        incarnation: int,
        kind: ExitKind,
        exc: Any,
        action: Action,
        now: float,
    ) -> None:
        # Workers the pool stops itself (stop, shrink) are counted in supervisor_stopped and
        # pool_resized, not logged one by one; subscribers still see each.
        self.reporter.child_exited(
            worker.id,
            incarnation,
            kind,
            exc,
            action.value,
            self.restart_value,
            now,
            routine="debug",
            damp=action is not Action.GIVE_UP,
            quiet=kind is ExitKind.SHUTDOWN,
        )
        self._park_or_drop(worker)
        if worker.status != STOPPING:
            worker.status = TERMINATED

    def _park_or_drop(self, worker: Worker) -> None:
        # The incarnation ended and will not be followed: its parked greenlet retires.
        if worker.greenlet is not None:
            self.retirees.append(worker.greenlet)
        worker.greenlet = None

    def end_batch(self) -> None:
        super().end_batch()  # retire finished greenlets first: their memory is freed
        if self.damp_limited:
            # A crash may be posted as its storm alone only while the budget cannot run
            # out on one: each live worker has at most one exit in flight.
            headroom = self.intensity.headroom
            self.channel.damped = (
                self.storm_of if headroom is not None and headroom > self.active else None
            )
        starts, resumes = self.starts, self.resumes
        if not starts and not resumes:
            return
        self.starts, self.resumes = [], []
        if self.end_reason is not None:  # decided in the last batch, never to run now
            for greenlet in starts + resumes:
                self._cancel(greenlet.child)
                self.retirees.append(greenlet)  # a never-started one is simply dropped
            super().end_batch()
            return
        if (
            len(starts) + len(resumes) == 1
            and not self.mailbox.queue
            and _getcurrent() is self.manager
        ):
            # An isolated restart: no loop turn to wait, and (fresh mode) a spare greenlet
            # that has already run, so no new greenlet's first run on the way either.
            if starts and self.spare:  # started (waiting for work), not dead
                greenlet, self.spare = self.spare, spare(self.hub)
                worker = starts[0].child
                worker.greenlet = greenlet
                if self.monitor is not None:  # its beats land on this greenlet now
                    self.monitor.started(worker)
                start_spare(greenlet, worker, worker.incarnation)
            else:
                start_now((starts or resumes)[0])
            return
        if starts:
            start(starts)
        if resumes:
            resume(resumes)

    def _cancel(self, worker: Worker) -> None:
        # A decided restart that will not run: the worker has nothing live.
        if worker.live:
            worker.live = 0
            self.active -= 1
        worker.status = TERMINATED
        worker.greenlet = None

    # ------------------------------------------------------------------ stopping, resizing

    def stop_op(self) -> Op:
        if self.spare is not None:
            self.retirees.append(self.spare)
            self.spare = None
        self.end_batch()  # cancels the restarts the last batch decided
        yield from self._stop_workers(self.workers)

    def _stop_workers(self, workers: list[Worker]) -> Op:
        # Cancel their pending (backoff) restarts, stop the live ones together (others go
        # on restarting meanwhile: a pool's stop is not exclusive).
        for worker in workers:
            self.readiness.forget(worker)
            if worker.status == DELAYED:
                self.timers.cancel(worker)
                worker.status = TERMINATED
                self._park_or_drop(worker)
        running = [w for w in workers if w.live]
        for worker in running:
            worker.status = STOPPING
        yield from self.stopper.together(running, exclusive=False)
        for worker in running:
            worker.status = TERMINATED

    def resize(self, size: int) -> Op:
        """`WorkerPool.resize`'s work, as an operation."""
        current = len(self.workers)
        if size > current:
            self.size = size
            self.intensity = self.intensity.resized(self.budget())
            self.readiness.resized(size)
            self._add_workers(size - current)
            self.end_batch()
        elif size < current:
            yield from self._stop_workers(self.workers[size:][::-1])  # newest slots first
            del self.workers[size:]
            self.size = size
            self.intensity = self.intensity.resized(self.budget())
            self.readiness.resized(size)
        self.reporter.resized(size, current)

    def abandon(self, record: Record) -> None:
        super().abandon(record)
        assert isinstance(record, Worker)
        if record.live:
            record.live = 0
            self.active -= 1

    def disown(self) -> int:
        greenlets = []
        for worker in self.workers:
            greenlets += [worker.greenlet, *(worker.abandoned or {}).values()]
            worker.greenlet = worker.abandoned = None
            worker.live = 0
            worker.status = TERMINATED
        self.active = 0
        return disown(greenlets)
