"""
What every supervisor shares, `Supervisor` and `WorkerPool` alike: the gevent-style
lifecycle, the manager greenlet and its loop, requests, and bounded stopping.

One manager greenlet per supervisor owns all its state. Children post their exits onto the
manager's mailbox (see `greenkeep._worker`); public methods that change something put a
request on the control deque, wake the manager and wait for its answer; introspection reads
state directly (greenlets are cooperative: between two switches the state is consistent).
`stop` only raises a flag the manager checks at every safe point.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import heapq
import math
import os
import random
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, ClassVar, Final, TypeVar, cast

import gevent
import gevent.event
import gevent.queue
from greenlet import GreenletExit
from greenlet import getcurrent as _getcurrent

from greenkeep import _blocking, _fork
from greenkeep._backoff import Backoff
from greenkeep._current import ready
from greenkeep._errors import (
    CalledFromManagerError,
    ChildStartError,
    InvalidArgumentError,
    RestartIntensityExceeded,
    SpecProblem,
    SupervisorAlreadyStartedError,
    SupervisorNotRunningError,
)
from greenkeep._events import Emitter, EventLogger, Subscriber
from greenkeep._exits import ABNORMAL_KINDS, REASON, ExitKind, ExitRecord, classify
from greenkeep._heartbeat import HeartbeatMonitor
from greenkeep._intensity import RestartIntensity, _Unlimited, intensity_problems
from greenkeep._render import error_text
from greenkeep._reports import StopReport, Unstopped
from greenkeep._spec import Shutdown, ShutdownPolicy
from greenkeep._storm import CrashStorms, crash_kind
from greenkeep._worker import WAKE, Runnable, WorkerGreenlet, current_worker, kill, retire

__all__ = ["BATCH", "Manager", "Record", "StartFailed", "check_timeout", "child_state"]

#: Exits handled per batch before the manager yields to the hub (fairness).
BATCH: Final = 256

#: The manager's pause between two batches of a backlog, in seconds: a timer this short
#: fires on the loop's next iteration, after timers and IO that were due.
_YIELD: Final = 1e-6

#: Timers this close (in clock seconds) to due are run (floating-point sums of a manual
#: clock's steps land a hair before the tick they were meant to reach).
_TIMER_SLACK: Final = 1e-9

E = TypeVar("E")


class Record(Runnable):
    """The manager's record of one child or pool worker. Only the manager writes it, except
    `ran` (the worker) and `ready_inc` / `stop_event` (`greenkeep.ready`, `stop_signal`)."""

    id: Any

    __slots__ = (
        "abandoned",
        "abandoned_greenlet",
        "awaiting_ready",
        "backoff_attempt",
        "delay_seq",
        "greenlet",
        "hb_missed",
        "id",
        "incarnation",
        "ready_inc",
        "restarts",
        "started_at",
        "status",
        "stop_deadline",
        "stop_event",
        "stop_requested",
        "sub_report",
        "supervisor",
    )

    def __init__(
        self,
        child_id: object,
        supervisor: Manager,
        target: Callable[..., object],
        args: tuple[object, ...],
        kwargs: Any,
        post: Callable[[Any], None],
        context: contextvars.Context,
    ) -> None:
        self.id = child_id
        self.supervisor = supervisor
        self.target = target
        self.args = args
        self.kwargs = kwargs
        self.context = context
        self.post = post
        self.pulse = supervisor._pulse
        self.reusable = False
        self.damped = None
        self.ran = 0
        self.incarnation = 0
        self.greenlet: WorkerGreenlet | None = None
        self.status = "terminated"
        self.stop_requested = False
        self.stop_event: gevent.event.Event | None = None
        self.stop_deadline: float | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.awaiting_ready = False
        self.ready_inc = 0
        self.abandoned = 0
        self.abandoned_greenlet: WorkerGreenlet | None = None
        self.sub_report: StopReport | None = None
        self.hb_missed = 0  # the incarnation killed for missing its heartbeat
        self.backoff_attempt = 0
        self.delay_seq = 0


def child_state(status: str, last_reason: str | None) -> str:
    """A child's state as snapshots show it."""
    if status == "terminated":
        return "failed" if last_reason in ("abnormal", "heartbeat_missed") else "stopped"
    if status == "stopping":
        return "running"
    return status


def _nothing() -> None:
    return None


class _Request:
    __slots__ = ("fn", "result")

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn
        self.result: gevent.event.AsyncResult[Any] = gevent.event.AsyncResult()


class StartFailed(Exception):
    """Raised inside the manager when a child fails while starting."""

    def __init__(self, error: ChildStartError) -> None:
        super().__init__(str(error))
        self.error = error


def check_timeout(owner: str, timeout: object) -> float | None:
    """Validate a ``timeout`` argument: ``None`` or seconds >= 0."""
    if timeout is None:
        return None
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float))
        or math.isnan(timeout)
        or timeout < 0
    ):
        raise InvalidArgumentError(owner, "timeout", "None or a number of seconds >= 0", timeout)
    return float(timeout)


def policy_deadline(policy: ShutdownPolicy, start: float, cap: float | None) -> float | None:
    """The monotonic deadline for stopping a child under *policy*, capped by *cap*."""
    if policy is Shutdown.BRUTAL:
        deadline: float | None = start
    elif policy is Shutdown.INFINITY:
        deadline = None
    else:
        assert isinstance(policy, float)
        deadline = start + policy
    if cap is not None:
        deadline = cap if deadline is None else min(deadline, cap)
    return deadline


class Manager:
    """
    Base of `Supervisor` and `WorkerPool`: lifecycle, manager loop, bounded stopping.

    Subclasses implement `_start_children`, `_on_exit` (the hot path), `_stop_all` and
    `_started_fields`.
    """

    _greenkeep_is_supervisor: Final = True
    _kind: ClassVar[str] = "supervisor"

    def __init__(
        self,
        *,
        name: str,
        max_restarts: int | _Unlimited,
        period: float,
        logger: EventLogger | None,
        subscribers: Iterable[Subscriber],
        clock: Callable[[], float] | None,
        log_summary_interval: float | None,
        problems: list[SpecProblem],
        random_source: Callable[[], float] | None = None,
    ) -> None:
        owner = f"{self._kind} {name!r}" if isinstance(name, str) else self._kind
        if not isinstance(name, str) or not name or "/" in name:
            problems.append(SpecProblem(owner, "name", "a non-empty str without '/'", name))
        for field, allowed, got in intensity_problems(max_restarts, period):
            problems.append(SpecProblem(owner, field, allowed, got))
        if clock is not None and not callable(clock):
            problems.append(
                SpecProblem(owner, "clock", "None or a callable returning seconds", clock)
            )
        if logger is not None and not all(
            callable(getattr(logger, m, None)) for m in ("bind", "info", "error", "critical")
        ):
            problems.append(SpecProblem(owner, "logger", "None or a structlog logger", logger))
        subscribers_t: tuple[Subscriber, ...] = ()
        if isinstance(subscribers, (str, bytes)) or not isinstance(subscribers, Iterable):
            problems.append(
                SpecProblem(owner, "subscribers", "an iterable of callables", subscribers)
            )
        else:
            subscribers_t = tuple(subscribers)
            for i, sub in enumerate(subscribers_t):
                if not callable(sub):
                    problems.append(SpecProblem(owner, f"subscribers[{i}]", "a callable", sub))
        if log_summary_interval is not None and (
            isinstance(log_summary_interval, bool)
            or not isinstance(log_summary_interval, (int, float))
            or not math.isfinite(log_summary_interval)
            or log_summary_interval <= 0
        ):
            problems.append(
                SpecProblem(
                    owner,
                    "log_summary_interval",
                    "None or a finite number of seconds > 0",
                    log_summary_interval,
                )
            )
        if random_source is not None and not callable(random_source):
            problems.append(
                SpecProblem(owner, "random", "None or a callable returning [0, 1)", random_source)
            )
        self._random: Callable[[], float] = (
            random_source if random_source is not None else random.random
        )
        self._owner = owner
        self._name: str = name
        self._path: str = name
        self._max_restarts = max_restarts
        self._period = float(period) if isinstance(period, (int, float)) else 0.0
        self._logger = logger
        self._subscribers = subscribers_t
        self._clock: Callable[[], float] = clock if clock is not None else time.monotonic
        self._log_summary_interval = (
            None if log_summary_interval is None else float(log_summary_interval)
        )
        self._state = "new"
        self._forked = False  # set in a child process that inherited this supervisor
        self._emit: Emitter = Emitter(self._path, None, ())  # replaced in start()
        self._manager: gevent.Greenlet[[], None] | None = None
        self._context = contextvars.copy_context()
        self._reset()

    def _reset(self) -> None:
        self._mailbox: gevent.queue.SimpleQueue[Any] = gevent.queue.SimpleQueue()
        self._control: deque[_Request] = deque()
        self._deferred: deque[Any] = deque()  # records, in the order their exits arrived
        self._deferred_of: dict[Any, deque[Any]] = {}  # record -> its deferred exits
        self._intensity = RestartIntensity(self._max_restarts, self._period)
        self._storms = CrashStorms(self._log_summary_interval)
        self._done = gevent.event.Event()
        self._started: gevent.event.AsyncResult[None] = gevent.event.AsyncResult()
        self._error: RestartIntensityExceeded | None = None
        self._report: StopReport | None = None
        self._end_reason: str | None = None
        self._stop_deadline: float | None = None
        self._unstopped: list[Unstopped] = []
        self._retirees: list[Any] = []  # parked greenlets of finished incarnations
        # [exits posted since the manager last took a batch, "the manager is parked: wake
        # it", how to wake it]: shared with the workers (see greenkeep._worker).
        self._pulse: list[Any] = [0, 0, _nothing]
        self._parked = False
        self._monitors: list[HeartbeatMonitor] = []
        self._delayed: list[tuple[float, int, Record]] = []
        self._seq = 0

    # ------------------------------------------------------------------ introspection

    @property
    def name(self) -> str:
        """The name given at construction."""
        return self._name

    @property
    def path(self) -> str:
        """The path in its tree, e.g. ``"root/db"`` (its name at the root)."""
        return self._path

    @property
    def state(self) -> str:
        """``"new"``, ``"starting"``, ``"running"``, ``"stopping"``, ``"stopped"`` or
        ``"failed"``."""
        return self._state

    @property
    def error(self) -> RestartIntensityExceeded | None:
        """Why it gave up, once it has (``None`` otherwise)."""
        return self._error

    def snapshot(self) -> dict[str, Any]:
        """
        A JSON-serialisable view of this supervisor and, recursively, of its children:
        state, restart window, and per child its state (``running``, ``restarting``,
        ``delayed``, ``stopped``, ``failed``), incarnation, restart count, uptime and last
        exit reason. Never blocks; works in every state. O(children).
        """
        now = self._clock()
        limit = self._intensity.max_restarts
        snap: dict[str, Any] = {
            "name": self._name,
            "path": self._path,
            "kind": self._kind,
            "state": self._state,
            "max_restarts": "unlimited" if isinstance(limit, _Unlimited) else limit,
            "period": self._period,
            "restarts_in_period": self._intensity.in_period(now),
            "restarts": self._intensity.total,
            "error": None if self._error is None else str(self._error),
        }
        snap.update(self._snapshot_fields())
        snap["children"] = self._snapshot_children(now)
        return snap

    def _snapshot_fields(self) -> dict[str, Any]:
        return {}

    def _snapshot_children(self, now: float) -> list[dict[str, Any]]:
        raise NotImplementedError

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """
        Start the manager and the children, and return once they are started.

        Something that stopped or gave up can be started again: it starts afresh from its
        specs, with an empty restart window. Blocks the calling greenlet (never the hub).

        Raises:
            SupervisorAlreadyStartedError: If it is already starting or running.
            ChildStartError: If a child exited abnormally before it was ready (or was not
                ready in time); the children already started were stopped in reverse order.
        """
        if self._state in ("starting", "running", "stopping"):
            raise SupervisorAlreadyStartedError(self._name, self._state)
        self._reset()
        self._state = "starting"
        self._context = contextvars.copy_context()
        self._emit = Emitter(self._path, self._logger, self._subscribers)
        _blocking.install()
        _fork.track(self)
        register = getattr(self._clock, "register_waker", None)
        if callable(register):  # a manual clock: wake the manager when it moves
            register(weakref.WeakMethod(self._wake))
        started = self._started
        self._hub = hub = gevent.get_hub()
        self._pulse[2] = functools.partial(hub.loop.run_callback, self._resume)
        self._manager = gevent.spawn(self._main)
        self._manager.name = f"greenkeep.manager[{self._path}]"
        started.get()

    def join(self, timeout: float | None = None) -> bool:
        """
        Wait until it has ended (stopped, or gave up).

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            ``True`` if it has ended, ``False`` if *timeout* passed first.

        Raises:
            RestartIntensityExceeded: On every call once it has given up.
            SupervisorNotRunningError: If it was never started.
        """
        timeout = check_timeout(f"{self._owner}.join()", timeout)
        if self._state == "new":
            raise SupervisorNotRunningError(self._name, self._state, "be joined")
        ended = self._done.wait(timeout)
        if ended and self._error is not None:
            raise self._error.with_traceback(None)
        return bool(ended)

    def stop(self, timeout: float | None = None) -> StopReport:
        """
        Stop every child (newest first), then the manager; return what happened.

        Each child first gets its stop signal (`greenkeep.stop_signal`), then
        ``GreenletExit``, and is waited for according to its shutdown policy; *timeout* caps
        the whole stop on top of that. A child that does not stop in time is reported in
        `StopReport.unstopped` and as a ``child_unstopped`` event. Nothing is restarted or
        started once the stop has begun.

        Idempotent: once stopped or failed it returns the earlier report at once; never
        started, an empty report.

        Called from inside one of its own children, it requests the stop and then raises
        ``GreenletExit`` in the caller (let it propagate): the caller is one of the children
        being stopped, so it cannot wait for the stop to finish. Called from the manager
        greenlet itself (a subscriber), it schedules the stop and returns a report with
        ``complete=False``.

        Args:
            timeout: Overall cap in seconds; ``None`` means each child's own policy.
        """
        cap = check_timeout(f"{self._owner}.stop()", timeout)
        if self._state == "new":
            return StopReport(self._path, "not_started")
        if self._state in ("stopped", "failed"):
            assert self._report is not None
            return self._report
        if cap is not None:
            deadline = time.monotonic() + cap
            if self._stop_deadline is None or deadline < self._stop_deadline:
                self._stop_deadline = deadline
        if self._end_reason is None:
            self._end_reason = "shutdown"
        self._mailbox.put_nowait(WAKE)
        self._poke()
        if _getcurrent() is self._manager:
            return StopReport(self._path, self._end_reason, (), complete=False)
        worker = current_worker()
        if worker is not None and worker.child.supervisor is self:
            raise GreenletExit
        self._done.wait()
        assert self._report is not None
        return self._report

    def run(self) -> None:
        """
        Start, wait until it ends, and stop it on the way out (even when interrupted).

        This is what a supervisor does as a child of another supervisor, and what a
        program whose main job is this supervisor calls.

        Raises:
            RestartIntensityExceeded: If it gave up.
            ChildStartError: If it could not start.
        """
        if self._state in ("starting", "running", "stopping"):
            raise SupervisorAlreadyStartedError(self._name, self._state)
        worker = current_worker()
        parent = getattr(worker.child, "supervisor", None) if worker is not None else None
        self._path = f"{parent.path}/{self._name}" if parent is not None else self._name
        try:
            self.start()
            if worker is not None:
                ready()
            self.join()
        finally:
            cap = None
            if worker is not None and worker.child.stop_deadline is not None:
                cap = max(0.0, worker.child.stop_deadline - time.monotonic())
            report = self.stop(cap)
            if worker is not None:
                worker.child.sub_report = report

    def __enter__(self: E) -> E:
        self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, action: str, fn: Callable[[], E]) -> E:
        """Run *fn* in the manager (ahead of any exit backlog) and return its result."""
        if self._state != "running" or self._end_reason is not None:
            state = "stopping" if self._state == "running" else self._state
            raise SupervisorNotRunningError(self._name, state, action)
        if _getcurrent() is self._manager:
            raise CalledFromManagerError(self._name, action)
        request = _Request(fn)
        self._control.append(request)
        self._mailbox.put_nowait(WAKE)
        self._poke()
        return cast(E, request.result.get())

    # ================================================================== the manager
    # Everything below runs in the manager greenlet only.

    def _start_children(self) -> None:
        raise NotImplementedError

    def _on_exit(self, child: Any, incarnation: int, exc: BaseException | None) -> None:
        raise NotImplementedError

    def _stop_all(self) -> None:
        raise NotImplementedError

    def _started_fields(self) -> dict[str, object]:
        raise NotImplementedError

    def _end_batch(self) -> None:
        """Called after each batch of exits: retire the finished greenlets (one callback).
        The pool also starts and resumes workers here."""
        if self._retirees:
            retire(self._retirees)
            self._retirees = []

    def _main(self) -> None:
        emit = self._emit
        started = self._started
        try:
            try:
                self._start_children()
            except StartFailed as failure:
                self._end_reason = "start_failed"
                self._stop_all()
                self._finish("stopped")
                started.set_exception(failure.error)
                return
            self._state = "running"
            limit = self._intensity.max_restarts
            emit.emit(
                "info",
                "supervisor_started",
                **self._started_fields(),
                max_restarts="unlimited" if isinstance(limit, _Unlimited) else limit,
                period=self._period,
            )
            started.set(None)
            self._loop()
        except GreenletExit:
            if self._forked:
                return  # a copy in a forked child: _disown_after_fork finished it
            # Someone killed the manager: stop the children as for stop().
            if self._end_reason is None:
                self._end_reason = "shutdown"
        except BaseException as exc:  # a bug here must not go unreported
            self._end_reason = "manager_crashed"
            emit.emit("critical", "supervisor_crashed", error=error_text(exc), exc_info=exc)
        if self._state not in ("stopped", "failed"):
            self._state = "stopping"
            try:
                self._stop_all()
            finally:
                self._finish("failed" if self._error is not None else "stopped")
        if not started.ready():
            started.set(None)

    def _loop(self) -> None:
        mailbox = self._mailbox
        deferred = self._deferred
        control = self._control
        on_exit = self._on_exit
        while self._end_reason is None:
            if control:
                self._serve(control.popleft())
                continue
            if deferred:
                item = self._undefer()
                if item is not None:
                    on_exit(*item)
                    item = None
                    self._end_batch()
                continue
            wake_at = self._next_wakeup()
            if wake_at is None:
                item = self._next_event(None)
            else:
                now = self._clock()
                if wake_at - now <= _TIMER_SLACK:
                    self._run_timers(now)
                    continue
                # A positive timeout: if nothing is queued, this always yields to the hub.
                item = self._next_event(time.monotonic() + (wake_at - now))
                if item is None:
                    self._run_timers(self._clock())
                    continue
            self._pulse[0] = 0
            if item is not WAKE:
                on_exit(*item)
            handled = 1
            # The rest of the batch straight from the queue's deque (the manager is its only
            # consumer, and an unbounded queue has no blocked producers to wake).
            queue = mailbox.queue
            while queue and handled < BATCH and not control and self._end_reason is None:
                item = queue.popleft()
                if item is not WAKE:
                    on_exit(*item)
                handled += 1
            item = None  # drop the last exit (its exception pins frames) before blocking
            self._end_batch()
            wake_at = self._next_wakeup()
            if wake_at is not None:
                now = self._clock()
                if now + _TIMER_SLACK >= wake_at:
                    self._run_timers(now)
            if handled >= BATCH:
                # A backlog: let the rest of the process run. Not sleep(0), which only
                # queues a callback and would run again before timers and IO get a turn;
                # a (tiny) timer waits for the loop's next iteration.
                gevent.sleep(_YIELD)

    # ------------------------------------------------------------------ timers

    def _next_wakeup(self) -> float | None:
        """The earliest clock time something is due: a storm summary, a heartbeat tick, a
        delayed restart. ``None`` if nothing is."""
        due = self._storms.next_due
        for monitor in self._monitors:
            if monitor.watched and (due is None or monitor.next_tick < due):
                due = monitor.next_tick
        if self._delayed and (due is None or self._delayed[0][0] < due):
            due = self._delayed[0][0]
        return due

    def _run_timers(self, now: float) -> None:
        now += _TIMER_SLACK  # clock readings that differ by rounding only count as due
        storms = self._storms
        if storms.next_due is not None and now >= storms.next_due:
            self._flush_storms(False)
        for monitor in self._monitors:
            if monitor.watched and now >= monitor.next_tick:
                for record in monitor.tick(now):
                    self._heartbeat_missed(record, monitor.interval)
        delayed = self._delayed
        while delayed and delayed[0][0] <= now and self._end_reason is None:
            _, seq, record = heapq.heappop(delayed)
            if record.delay_seq == seq:
                self._restart_delayed(record)
        self._end_batch()

    def _heartbeat_missed(self, record: Record, interval: float) -> None:
        """*record* has not beaten for *interval*: kill it; its exit is a heartbeat miss."""
        greenlet = record.greenlet
        if greenlet is None or record.status != "running":
            return
        record.hb_missed = record.incarnation
        self._emit.emit(
            "warning",
            "heartbeat_missed",
            child_id=record.id,
            incarnation=record.incarnation,
            interval=interval,
        )
        kill(greenlet)

    def _schedule_restart(
        self, record: Record, delay: float, attempt: int, logged: bool = True
    ) -> None:
        """Restart *record* after *delay* clock seconds (backoff); it shows as ``delayed``.
        *logged* ``False``: its crash was damped in the log, so is this event."""
        self._seq += 1
        record.delay_seq = self._seq
        record.status = "delayed"
        heapq.heappush(self._delayed, (self._clock() + delay, self._seq, record))
        fields = {
            "child_id": record.id,
            "incarnation": record.incarnation,
            "delay": round(delay, 6),
            "attempt": attempt,
        }
        if logged:
            self._emit.emit("info", "child_restart_delayed", **fields)
        elif self._emit.has_subscribers:
            self._emit.deliver("info", "child_restart_delayed", {**fields, "summarized": True})

    def _restart_delayed(self, record: Record) -> None:
        """Hook: a delayed restart of *record* is due."""
        raise NotImplementedError

    def _backoff_attempt(self, record: Record, backoff: Backoff, now: float) -> int:
        """The attempt number of *record*'s next restart under *backoff*."""
        if now - record.started_at >= backoff.reset_after:
            record.backoff_attempt = 0
        record.backoff_attempt += 1
        return record.backoff_attempt

    def _records(self) -> list[Record]:
        """Every child record (for disowning after a fork)."""
        raise NotImplementedError

    def _disown_after_fork(self) -> None:
        """In a forked child: this supervisor belongs to the parent. Stop pretending."""
        if self._state not in ("starting", "running", "stopping"):
            return
        self._forked = True
        self._end_reason = "forked"
        self._state = "stopped"
        self._report = StopReport(self._path, "forked")
        gevent.get_hub().loop.run_callback(self._kill_after_fork)

    def _kill_after_fork(self) -> None:
        # A hub callback in the forked child: kill the inherited greenlets, say so once.
        killed = 0
        for record in self._records():
            greenlet = record.greenlet
            record.greenlet = None
            record.status = "terminated"
            if greenlet is not None and not greenlet.dead:
                # We are in the hub: throw now, ahead of anything that could resume it.
                with contextlib.suppress(BaseException):
                    greenlet.throw(GreenletExit)
                killed += 1
        manager = self._manager
        if manager is not None and not manager.dead:
            manager.kill(block=False)
        self._emit.emit("warning", "supervisor_forked", pid=os.getpid(), workers=killed)
        while self._control:
            self._control.popleft().result.set_exception(
                SupervisorNotRunningError(self._name, "stopped", "serve this request")
            )
        self._done.set()

    def _wake(self) -> None:
        """Wake the manager (a request, a stop, readiness, a manual clock moving)."""
        if self._state in ("starting", "running", "stopping"):
            self._mailbox.put_nowait(WAKE)
            self._poke()

    def _defer(self, item: Any) -> None:
        """Keep an exit for the main loop (it arrived while waiting for another). Indexed
        by record, so waiting for one child's exit never scans the others'."""
        record = item[0]
        items = self._deferred_of.get(record)
        if items is None:
            items = self._deferred_of[record] = deque()
        items.append(item)
        self._deferred.append(record)

    def _undefer(self) -> Any:
        """The oldest deferred exit, or ``None`` if it was already taken by a wait."""
        record = self._deferred.popleft()
        items = self._deferred_of.get(record)
        if not items:
            self._deferred_of.pop(record, None)
            return None
        item = items.popleft()
        if not items:
            del self._deferred_of[record]
        return item

    def _serve(self, request: _Request) -> None:
        try:
            value = request.fn()
        except StartFailed as failure:
            request.result.set_exception(failure.error)
        except Exception as exc:  # the caller gets it
            request.result.set_exception(exc)
        else:
            request.result.set(value)

    def _next_event(self, deadline: float | None) -> Any:
        """The next mailbox item, or ``None`` once *deadline* (monotonic) has passed (at or
        past it: only what is already queued). Waits by parking the manager (`_park`)."""
        queue = self._mailbox.queue
        while not queue:
            if deadline is None:
                self._park(None)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._park(remaining)
        return queue.popleft()

    def _park(self, timeout: float | None) -> None:
        """
        Wait, in the manager, until something is posted (or *timeout* seconds pass).

        The manager does not wait in ``mailbox.get()``: waking a queue's getter costs gevent
        a callback and a waiter of its own. It parks in the hub instead, and whoever posts
        while it is parked (`_poke`, or a worker's inline check of ``pulse``) schedules
        `_resume`: one loop callback, and the queue's puts stay cheap.
        """
        if self._mailbox.queue:
            return
        timer = None
        if timeout is not None:
            timer = self._hub.loop.timer(max(timeout, 0.0))
            timer.start(self._resume)
        self._parked = True
        self._pulse[1] = 1
        try:
            self._hub.switch()
        finally:
            self._parked = False
            self._pulse[1] = 0
            if timer is not None:
                timer.close()

    def _resume(self) -> None:
        # A hub callback (or timer): switch back into the manager if it is still parked.
        if self._parked:
            self._parked = False
            assert self._manager is not None
            self._manager.switch()

    def _poke(self) -> None:
        """After posting: wake the manager if it is parked (at most one wake-up queued)."""
        pulse = self._pulse
        if pulse[1]:
            pulse[1] = 0
            pulse[2]()

    def _finish(self, state: str) -> None:
        # Record exits that arrived while stopping (late exits of unstopped children).
        while self._deferred:
            item = self._undefer()
            if item is not None:
                self._on_exit(*item)
        queue = self._mailbox.queue
        while queue:
            item = queue.popleft()
            if item is not WAKE:
                self._on_exit(*item)
        item = None
        self._end_batch()
        self._flush_storms(True)
        reason = self._end_reason or "shutdown"
        self._report = StopReport(self._path, reason, tuple(self._unstopped))
        self._state = state
        level = (
            "info"
            if reason in ("shutdown", "auto_shutdown")
            else "critical"
            if reason == "manager_crashed"
            else "error"
        )
        self._emit.emit(level, "supervisor_stopped", reason=reason, unstopped=len(self._unstopped))
        _fork.forget(self)
        while self._control:
            self._control.popleft().result.set_exception(
                SupervisorNotRunningError(self._name, state, "serve this request")
            )
        self._done.set()

    # ------------------------------------------------------------------ exit events

    def _log_exit(
        self,
        child: Record,
        incarnation: int,
        kind: ExitKind,
        exc: BaseException | None,
        action: str,
        restart: str,
        routine: str = "info",
        damp: bool = True,
    ) -> bool:
        """
        Log ``child_exited``; a crash is damped by the storm filter. Returns whether it was
        logged in full (its ``child_restarted`` should be logged too).

        *routine* is the level of non-crash exits (pools log them at ``debug``); *damp*
        ``False`` logs a crash in full without consulting the storm filter (the caller did).
        """
        emit = self._emit
        reason = REASON[kind]
        if kind is ExitKind.HEARTBEAT_MISSED:
            return self._log_heartbeat_exit(child, incarnation, action, restart, damp)
        if exc is None or (kind not in ABNORMAL_KINDS and kind is not ExitKind.INTERRUPTED):
            emit.emit(
                routine,
                "child_exited",
                child_id=child.id,
                incarnation=incarnation,
                reason=reason,
                restart=restart,
                action=action,
            )
            return True
        storms = self._storms
        if damp and storms.interval is not None and kind is not ExitKind.INTERRUPTED:
            verdict = storms.admit_crash(exc, self._clock())
            if verdict != 1:
                if verdict == 2:
                    storms.sample(crash_kind(exc), child.id, incarnation, error_text(exc))
                if emit.has_subscribers:
                    emit.deliver(
                        "error",
                        "child_exited",
                        {
                            "child_id": child.id,
                            "incarnation": incarnation,
                            "reason": reason,
                            "restart": restart,
                            "action": action,
                            "error": error_text(exc),
                            "exc_info": exc,
                            "summarized": True,
                        },
                    )
                return False
        emit.emit(
            "error" if kind in ABNORMAL_KINDS else "warning",
            "child_exited",
            child_id=child.id,
            incarnation=incarnation,
            reason=reason,
            restart=restart,
            action=action,
            error=error_text(exc),
            exc_info=exc,
        )
        return True

    def _log_heartbeat_exit(
        self, child: Record, incarnation: int, action: str, restart: str, damp: bool
    ) -> bool:
        # Killed by greenkeep for missing its heartbeat: the reason says so, and there is no
        # exception of the worker's own to attach.
        fields: dict[str, Any] = {
            "child_id": child.id,
            "incarnation": incarnation,
            "reason": "heartbeat_missed",
            "restart": restart,
            "action": action,
            "error": "heartbeat missed",
        }
        storms = self._storms
        if damp and storms.interval is not None:
            kind_key = (ExitKind, 0, 0)  # one storm kind for every heartbeat miss
            if not storms.admit(kind_key, self._clock()):
                if storms.needs_sample(kind_key):
                    storms.sample(kind_key, child.id, incarnation, "heartbeat missed")
                if self._emit.has_subscribers:
                    self._emit.deliver("error", "child_exited", {**fields, "summarized": True})
                return False
        self._emit.emit("error", "child_exited", **fields)
        return True

    def _flush_storms(self, flush: bool) -> None:
        for summary in self._storms.due(self._clock(), flush):
            self._emit.emit(
                "warning",
                "exits_summarized",
                error_type=summary.error_type,
                location=summary.location,
                count=summary.count,
                total=summary.total,
                sample_child_id=summary.sample_child_id,
                sample_incarnation=summary.sample_incarnation,
                sample_error=summary.sample_error,
                storm_ended=summary.ended,
                interval=self._storms.interval,
            )

    def _ignored_exit(self, child: Record, incarnation: int, exc: BaseException | None) -> None:
        """An exit of an incarnation that was already accounted for (or abandoned)."""
        if child.abandoned and child.abandoned == incarnation:
            # An unstopped incarnation we stopped waiting for has ended after all.
            child.abandoned = 0
            if child.abandoned_greenlet is not None:
                self._retirees.append(child.abandoned_greenlet)
                child.abandoned_greenlet = None
            self._emit.emit(
                "info",
                "child_exited",
                child_id=child.id,
                incarnation=incarnation,
                reason=REASON[classify(exc, True)],
                restart="",
                action="none",
                late=True,
            )
        else:
            self._emit.emit("debug", "exit_ignored", child_id=child.id, incarnation=incarnation)

    def _give_up(self, child: Record, record: ExitRecord) -> None:
        in_window = self._intensity.in_window
        self._error = RestartIntensityExceeded(
            self._path,
            self._intensity.max_restarts,  # type: ignore[arg-type]
            self._period,
            in_window if in_window is not None else 0,
            record,
        )
        self._emit.emit(
            "critical",
            "restart_intensity_exceeded",
            child_id=child.id,
            incarnation=record.incarnation,
            reason=record.reason,
            error=record.error,
            max_restarts=self._intensity.max_restarts,
            period=self._period,
            restarts_in_period=in_window,
        )
        self._end_reason = "restart_intensity_exceeded"

    # ------------------------------------------------------------------ stopping

    def _request_stop(self, child: Record, cap: float | None, policy: ShutdownPolicy) -> bool:
        """Ask one running child to stop; return whether it gets a cooperative phase."""
        greenlet = child.greenlet
        assert greenlet is not None
        if not greenlet.dead and child.ran != -child.incarnation:
            # Not exited yet (else its own exit is already posted, and keeps its reason).
            child.stop_requested = True
        child.stop_deadline = policy_deadline(policy, time.monotonic(), cap)
        event = child.stop_event
        if event is not None:
            event.set()
        cooperative = event is not None and policy is not Shutdown.BRUTAL
        if not cooperative:
            kill(greenlet)
        return cooperative

    def _stop_records(
        self,
        records: Sequence[Record],
        policy_of: Callable[[Record], ShutdownPolicy],
        cap: float | None,
    ) -> None:
        """
        Stop *records* together: stop signals (and ``GreenletExit`` where there is no
        cooperative phase) go to all at once, then each is waited for until its own
        deadline. Children that outlive their bound are reported unstopped.
        """
        started = time.monotonic()
        pending: dict[Record, int] = {}
        cooperative: list[Record] = []
        for record in records:
            if record.greenlet is None:
                continue
            if self._request_stop(record, cap, policy_of(record)):
                cooperative.append(record)
            pending[record] = record.incarnation
        if any(policy_of(r) is Shutdown.BRUTAL for r in pending):
            gevent.sleep(0)  # let the kills land
        self._await_exits(pending, lambda r: r.stop_deadline)
        if cooperative:
            late = [r for r in cooperative if r in pending]
            for record in late:
                assert record.greenlet is not None
                kill(record.greenlet)
            if late:
                gevent.sleep(0)
                now = time.monotonic()
                self._await_exits(pending, lambda r: now)
        for record, incarnation in pending.items():
            self._abandon(record, incarnation, time.monotonic() - started, policy_of(record))

    def _await_exits(
        self, pending: dict[Record, int], deadline_of: Callable[[Record], float | None]
    ) -> None:
        """
        Handle exits until every record in *pending* has exited (and is removed from it) or
        the latest of their deadlines (capped by a stop's overall deadline) has passed.
        Exits of other children are deferred to the main loop. O(len(pending) + exits).
        """
        deferred_of = self._deferred_of
        if deferred_of:
            for record in list(pending):
                items = deferred_of.get(record)
                if items:
                    for item in [i for i in items if i[1] == pending[record]]:
                        items.remove(item)  # its entry in the order queue is skipped later
                        self._on_exit(*item)
        for record in [r for r, inc in pending.items() if not self._running(r, inc)]:
            del pending[record]
        try:
            self._await_loop(pending, deadline_of)
        finally:
            self._end_batch()  # retire what exited

    def _await_loop(
        self, pending: dict[Record, int], deadline_of: Callable[[Record], float | None]
    ) -> None:
        latest = self._latest_deadline(pending, deadline_of)
        while pending:
            item = self._next_event(latest)  # at or past the deadline: only what is queued
            if item is None:
                return
            if item is WAKE:  # perhaps a stop(timeout) that tightens the wait
                latest = self._latest_deadline(pending, deadline_of)
                continue
            record = item[0]
            if pending.get(record) == item[1]:
                self._on_exit(*item)
                if not self._running(record, item[1]):
                    del pending[record]
            else:
                self._defer(item)
            item = None

    def _latest_deadline(
        self, pending: dict[Record, int], deadline_of: Callable[[Record], float | None]
    ) -> float | None:
        cap = self._stop_deadline
        latest: float | None = time.monotonic()
        for record in pending:
            deadline = deadline_of(record)
            if cap is not None:
                deadline = cap if deadline is None else min(deadline, cap)
            if deadline is None:
                return None
            if deadline > latest:  # type: ignore[operator]
                latest = deadline
        return latest

    @staticmethod
    def _running(record: Record, incarnation: int) -> bool:
        return record.greenlet is not None and record.incarnation == incarnation

    def _abandon(
        self, record: Record, incarnation: int, waited: float, policy: ShutdownPolicy
    ) -> None:
        record.abandoned = incarnation
        record.abandoned_greenlet = record.greenlet
        record.greenlet = None
        self._abandoned(record)
        self._unstopped.append(Unstopped(self._path, record.id, incarnation, waited))
        self._emit.emit(
            "warning",
            "child_unstopped",
            child_id=record.id,
            incarnation=incarnation,
            waited=round(waited, 6),
            shutdown=policy.value if isinstance(policy, Shutdown) else policy,
        )

    def _abandoned(self, record: Record) -> None:
        """Hook: *record*'s incarnation was given up on (unstopped)."""

    def _collect_sub_report(self, record: Record) -> None:
        report = record.sub_report
        if report is not None and report.unstopped:
            self._unstopped.extend(report.unstopped)
        record.sub_report = None
