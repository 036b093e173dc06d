"""
What every supervisor shares, `Supervisor` and `WorkerPool` alike: the gevent-style
lifecycle, the manager greenlet and its one dispatch loop.

One manager greenlet per supervisor owns all its state. Children post their exits onto the
manager's mailbox (see `greenkeep._worker`); public methods that change something put a
request on the control deque, wake the manager and wait for its answer; introspection reads
state directly (greenlets are cooperative: between two switches the state is consistent).

The loop is the one place that reads the mailbox. With nothing under way it drains exits in
batches of `BATCH` and yields to the hub between batches; while an operation is under way
(see `greenkeep._ops`: a start, a stop, a strategy's restart) it routes each item to the
handler, defers it, or resumes the operation. Starting, stopping and the final drain all go
through it.
"""

from __future__ import annotations

import contextvars
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from types import GeneratorType, TracebackType
from typing import Any, ClassVar, Final, TypeVar, cast

import gevent
import gevent.event
from greenlet import GreenletExit
from greenlet import getcurrent as _getcurrent

from greenkeep import _blocking, _fork
from greenkeep._check import check_timeout
from greenkeep._config import Config
from greenkeep._current import current, ready
from greenkeep._errors import (
    CalledFromManagerError,
    ChildStartError,
    RestartIntensityExceeded,
    SupervisorAlreadyStartedError,
    SupervisorNotRunningError,
)
from greenkeep._events import Emitter, Reporter
from greenkeep._exits import ExitRecord
from greenkeep._heartbeat import HeartbeatMonitor
from greenkeep._intensity import RestartIntensity, _Unlimited
from greenkeep._mailbox import Forked, Mailbox
from greenkeep._ops import Op, Task, Wait
from greenkeep._records import Record
from greenkeep._reports import StopReport
from greenkeep._snapshot import register_manager
from greenkeep._spec import Subtree
from greenkeep._states import (
    FAILED,
    NEW,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    SupervisorState,
)
from greenkeep._stopping import Stopper
from greenkeep._storm import CrashStorms
from greenkeep._timers import TIMER_SLACK, Timers
from greenkeep._worker import WAKE, current_worker, kill, retire

__all__ = ["BATCH", "Manager", "StartFailed"]

#: Exits handled per batch before the manager yields to the hub (fairness).
BATCH: Final = 256

#: The manager's pause between two batches of a backlog, in seconds: a timer this short
#: fires on the loop's next iteration, after timers and IO that were due.
_YIELD: Final = 1e-6

E = TypeVar("E")


class StartFailed(Exception):
    """Raised inside the manager when a child fails while starting."""

    def __init__(self, error: ChildStartError) -> None:
        super().__init__(str(error))
        self.error = error


class _Request:
    __slots__ = ("fn", "result")

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn
        self.result: gevent.event.AsyncResult[Any] = gevent.event.AsyncResult()


class Manager(Subtree):
    """
    Base of `Supervisor` and `WorkerPool`: the lifecycle and the manager loop.

    Subclasses provide the operations (`_start_op`, `_stop_op`), the exit handler (the
    hot path), `_restart_due` (a delayed restart), `_records` and the snapshot parts.
    """

    _kind: ClassVar[str] = "supervisor"

    def __init__(self, config: Config) -> None:
        self._config = config
        self._name = config.name
        self._path = config.name
        self._owner = config.owner
        self._state: SupervisorState = NEW
        self._forked = False
        self._manager: gevent.Greenlet[[], None] | None = None
        self._context = contextvars.copy_context()
        self._reset()

    def _reset(self) -> None:
        config = self._config
        self._mailbox = Mailbox(self._path)
        self._control: deque[_Request] = deque()
        self._intensity = RestartIntensity(self._max_restarts(), config.period)
        self._emitter = Emitter(
            self._path, config.logger, config.subscribers, wake=self._mailbox.channel.nudge
        )
        self._reporter = Reporter(self._emitter, CrashStorms(config.log_summary_interval))
        self._stopper = Stopper(
            mailbox=self._mailbox,
            reporter=self._reporter,
            path=self._path,
            policy_of=self._policy_of,
            subtree_of=self._subtree_of,
            cap=lambda: self._stop_cap,
            abandon=self._abandon,
        )
        self._timers = Timers()
        self._monitors: list[HeartbeatMonitor] = []
        self._tasks: list[Task] = []
        self._markers: set[object] = set()
        self._done = gevent.event.Event()
        self._started: gevent.event.AsyncResult[None] = gevent.event.AsyncResult()
        self._error: RestartIntensityExceeded | None = None
        self._report: StopReport | None = None
        self._end_reason: str | None = None
        self._stop_cap: float | None = None
        self._stop_pushed = False
        self._settling = False
        self._break = False  # ends the current batch (a stop, an operation)
        self._retirees: list[Any] = []  # parked greenlets of finished incarnations
        self._zombies = 0  # incarnations reported unstopped that still run
        self._start_error: ChildStartError | None = None

    def _max_restarts(self) -> int | _Unlimited:
        return self._config.max_restarts

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
    def state(self) -> SupervisorState:
        """``"new"``, ``"starting"``, ``"running"``, ``"stopping"`` (also while children
        reported unstopped still run), ``"stopped"`` or ``"failed"``."""
        return self._state

    @property
    def error(self) -> RestartIntensityExceeded | None:
        """Why it gave up, once it has (``None`` otherwise)."""
        return self._error

    @property
    def report(self) -> StopReport | None:
        """The report of its last stop once that stop is over (``None`` before)."""
        return self._report

    def snapshot(self) -> dict[str, Any]:
        raise NotImplementedError

    def _header(self, now: float) -> dict[str, Any]:
        limit = self._intensity.max_restarts
        return {
            "name": self._name,
            "path": self._path,
            "kind": self._kind,
            "state": self._state,
            "max_restarts": "unlimited" if isinstance(limit, _Unlimited) else limit,
            "period": self._config.period,
            "restarts_in_period": self._intensity.in_period(now),
            "restarts": self._intensity.total,
            "error": None if self._error is None else str(self._error),
            "events": self._emitter.stats(),
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """
        Start the manager and the children, and return once they are started.

        Children start in order: each runs up to its first yield (or until it calls
        `greenkeep.ready`, with ``ready_timeout``) before the next one starts. Something that
        stopped or gave up can be started again, afresh from its specs. Blocks the calling
        greenlet (never the hub).

        Raises:
            SupervisorAlreadyStartedError: If it is starting, running or stopping (also
                while a child it reported unstopped still runs).
            ChildStartError: If a child with ``ready_timeout`` failed or was not ready in
                time; the children already started were stopped in reverse order.
            RestartIntensityExceeded: If it gave up before it had started.
        """
        if self._state in (STARTING, RUNNING, STOPPING):
            raise SupervisorAlreadyStartedError(self._name, self._state)
        self._reset()
        self._state = STARTING
        self._context = contextvars.copy_context()
        _blocking.install()
        _fork.track(self, self._after_fork)
        clock = self._config.clock
        register = getattr(clock, "register_waker", None)
        if callable(register):  # a manual clock: wake the manager when it moves
            register(weakref.WeakMethod(self._mailbox.channel.nudge))
        started = self._started
        self._hub = hub = gevent.get_hub()
        self._manager = manager = gevent.Greenlet(self._main)
        manager.name = f"greenkeep.manager[{self._path}]"
        register_manager(manager)
        self._mailbox.open(hub, manager)
        self._mailbox.channel.on_blocked = self._reporter.loop_blocked
        manager.start()
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
        if self._state == NEW:
            raise SupervisorNotRunningError(self._name, self._state, "be joined")
        ended = self._done.wait(timeout)
        if ended and self._error is not None:
            raise self._error.with_traceback(None)
        return bool(ended)

    def stop(self, timeout: float | None = None, *, block: bool = True) -> StopReport:
        """
        Stop every child, then the manager; return what happened.

        Each child first gets its stop signal (`greenkeep.stop_signal`), then
        ``GreenletExit``, and is waited for according to its shutdown policy; *timeout* caps
        the whole stop on top of that, and a child supervisor shares its own deadline with
        its whole subtree. A child that does not stop in time is reported in
        `StopReport.unstopped` (with its supervisor's path) and as ``child_unstopped``.
        Nothing is restarted or started once the stop has begun.

        Idempotent: once stopped or failed it returns the earlier report at once; never
        started, an empty report. With *block* false it requests the stop and returns at
        once (a report with ``complete=False`` until it is over). Called from inside one of
        its own children, it requests the stop and raises ``GreenletExit`` in the caller
        (let it propagate). Called from its own manager greenlet (a subscriber), it does not
        wait either.

        Args:
            timeout: Overall cap in seconds; ``None`` means each child's own policy.
        """
        cap = check_timeout(f"{self._owner}.stop()", timeout)
        if self._state == NEW:
            return StopReport(self._path, "not_started")
        if self._report is not None:
            return self._report
        if cap is not None:
            deadline = time.monotonic() + cap
            if self._stop_cap is None or deadline < self._stop_cap:
                self._stop_cap = deadline
                self._stopper.tighten(deadline)
        self._end("shutdown")
        self._mailbox.channel.nudge()
        reason = self._end_reason or "shutdown"
        if not block or _getcurrent() is self._manager:
            return StopReport(self._path, reason, (), complete=False)
        worker = current_worker()
        if worker is not None and worker.child.channel is self._mailbox.channel:
            raise GreenletExit
        self._done.wait()
        assert self._report is not None
        return self._report

    def run(self) -> None:
        """
        Start, wait until it ends, and stop it on the way out (even when interrupted).

        This is what a supervisor does as a child of another supervisor (it then takes its
        path from its parent and signals readiness once started), and what a program whose
        main job is this supervisor calls.

        Raises:
            RestartIntensityExceeded: If it gave up.
            ChildStartError: If it could not start.
        """
        if self._state in (STARTING, RUNNING, STOPPING):
            raise SupervisorAlreadyStartedError(self._name, self._state)
        parent = current()
        self._path = self._name if parent is None else f"{parent.supervisor}/{self._name}"
        try:
            self.start()
            ready()
            self.join()
        finally:
            self.stop()

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

    def _call(self, action: str, fn: Callable[[], E | Op]) -> E:
        """Run *fn* in the manager (ahead of any exit backlog); return its result (an
        operation's, once it ends)."""
        if self._state != RUNNING or self._end_reason is not None:
            state = STOPPING if self._state == RUNNING else self._state
            raise SupervisorNotRunningError(self._name, state, action)
        if _getcurrent() is self._manager:
            raise CalledFromManagerError(self._name, action)
        request = _Request(fn)
        self._control.append(request)
        self._mailbox.channel.nudge()
        return cast(E, request.result.get())

    # ================================================================== the manager
    # Everything below runs in the manager greenlet only.

    def _start_op(self) -> Op:
        raise NotImplementedError

    def _stop_op(self) -> Op:
        raise NotImplementedError

    def _handle_exit(self, record: Any, incarnation: int, payload: Any) -> Op | None:
        raise NotImplementedError

    def _restart_due(self, record: Any) -> None:
        raise NotImplementedError

    def _records(self) -> Iterable[Record]:
        raise NotImplementedError

    def _started_fields(self) -> dict[str, object]:
        raise NotImplementedError

    def _policy_of(self, record: Any) -> Any:
        raise NotImplementedError

    def _subtree_of(self, record: Any) -> Any:
        return None

    def _abandon(self, record: Record) -> None:
        """*record*'s incarnation was reported unstopped: stop tracking it as running."""
        record.abandoned = record.incarnation
        record.abandoned_greenlet = record.greenlet
        record.greenlet = None
        self._zombies += 1

    def _end_batch(self) -> None:
        """After each batch of exits: retire the finished greenlets (one callback)."""
        if self._retirees:
            retire(self._retirees)
            self._retirees = []

    def _end(self, reason: str) -> None:
        """The supervisor ends (the first reason given is kept): nothing starts any more."""
        if self._end_reason is None:
            self._end_reason = reason
            self._mailbox.channel.halted = True
            self._break = True

    def _main(self) -> None:
        try:
            try:
                self._push(self._start_op(), self._start_done)
                self._loop()
            except (GreenletExit, Forked):
                if self._forked:
                    return  # a copy in a forked child: _after_fork finished it
                self._end("shutdown")  # someone killed the manager: stop as for stop()
                self._recover()
            except BaseException as exc:  # a bug here must not go unreported
                self._reporter.crashed(exc)
                self._end("manager_crashed")
                self._recover()
        except Forked:
            return
        except BaseException:  # the recovery failed too: end without waiting for anyone
            if not self._done.is_set():
                self._end("manager_crashed")
                for record in self._records():
                    if record.greenlet is not None:
                        kill(record.greenlet)
                self._zombies = 0
                self._finish()

    def _recover(self) -> None:
        # Stop the children through the loop again, from a clean slate of operations.
        for task in reversed(self._tasks):
            task.op.close()
        self._tasks.clear()
        self._loop()

    def _start_done(self, error: BaseException | None, _: object) -> None:
        if isinstance(error, StartFailed):
            self._end("start_failed")
            self._start_error = error.error  # raised by start() once the rest is stopped
        elif error is not None:
            raise error
        elif self._end_reason is None:
            # Every child has started: it runs. start() returns once the exits that came
            # during the start are handled too (it raises if it gave up meanwhile).
            self._state = RUNNING
            limit = self._intensity.max_restarts
            self._reporter.started(
                **self._started_fields(),
                max_restarts="unlimited" if isinstance(limit, _Unlimited) else limit,
                period=self._config.period,
            )
            self._settling = True

    def _loop(self) -> None:
        mailbox = self._mailbox
        queue = mailbox.queue
        control = self._control
        handle = self._handle_exit
        emitter = self._emitter
        channel = mailbox.channel
        _tuple = tuple
        while True:
            if emitter.reports:
                emitter.report()
            if self._tasks:
                self._wait_for_task()
                continue
            if self._end_reason is not None:
                if not self._stop_pushed:
                    self._stop_pushed = True
                    self._state = STOPPING
                    self._push(self._stop_op())
                elif mailbox.deferred or queue:
                    item = mailbox.undefer() if mailbox.deferred else queue.popleft()
                    if type(item) is _tuple:
                        handle(*item)
                    item = None
                    self._end_batch()
                else:
                    self._finish()
                    return
                continue
            if control:
                self._serve(control.popleft())
                continue
            if mailbox.deferred:
                item = mailbox.undefer()
                if item is not None:
                    self._pushed(handle(*item))
                    item = None
                    self._end_batch()
                continue
            if self._settling:
                self._settled()
                continue
            item = mailbox.receive(self._timer_deadline())
            if item is None:
                self._run_timers()
                continue
            channel.posted = 0
            self._break = False
            if type(item) is _tuple:
                op = handle(*item)
                if op is not None:
                    self._push(op)
            handled = 1
            # The rest of the batch straight from the queue's deque; a control request (or
            # an operation, a stop) ends it: requests are served ahead of a backlog.
            while queue and handled < BATCH and not self._break and not control:
                item = queue.popleft()
                if type(item) is _tuple:
                    op = handle(*item)
                    if op is not None:
                        self._push(op)
                handled += 1
            item = None  # drop the last exit (its exception pins frames) before blocking
            self._end_batch()
            self._run_timers(due_only=True)
            if handled >= BATCH:
                # A backlog: let the rest of the process run. Not sleep(0), which only
                # queues a callback and would run again before timers and IO get a turn;
                # a (tiny) timer waits for the loop's next iteration.
                gevent.sleep(_YIELD)

    # ------------------------------------------------------------------ operations

    def _pushed(self, op: Op | None) -> None:
        if op is not None:
            self._push(op)

    def _push(
        self, op: Op, done: Callable[[BaseException | None, Any], None] | None = None
    ) -> None:
        """Start an operation; it runs until it waits (it may end at once)."""
        task = Task(op, done)
        self._tasks.append(task)
        self._break = True
        self._advance(task, None)

    def _advance(self, task: Task, value: object) -> None:
        # Resume *task* with *value*; go on while what it waits for already holds. When it
        # ends, the task below it (if any) is checked in turn.
        while True:
            try:
                wait = task.op.send(value)
            except StopIteration as stop:
                self._finished(task, None, stop.value)
            except (GreenletExit, Forked):
                raise
            except BaseException as exc:
                if task.done is None:
                    raise
                self._finished(task, exc, None)
            else:
                task.wait = wait
                value = self._already(task, wait, installed=True)
                if value is None:
                    return
                continue
            if not self._tasks:
                return
            task = self._tasks[-1]
            assert task.wait is not None
            value = self._already(task, task.wait, installed=True)  # what came meanwhile
            if value is None:
                return

    def _finished(self, task: Task, error: BaseException | None, value: object) -> None:
        self._tasks.remove(task)
        if task.done is not None:
            task.done(error, value)

    def _already(self, task: Task, wait: Wait, installed: bool = False) -> object:
        """
        What to resume *task* with now (``None``: it has to wait). When the wait was just
        *installed*, exits deferred earlier that it is about are taken first (once: the
        deferred exits are indexed by record, so this is O(len(pending))).
        """
        mailbox = self._mailbox
        if installed and wait.capture is not None:
            taken = mailbox.take(wait.capture)
            if taken:
                for item in taken[1:]:
                    mailbox.defer(item)
                return taken[0]
        if installed and wait.pending and mailbox.deferred:
            for record in list(wait.pending):
                for item in mailbox.take(record):
                    self._pushed(self._handle_exit(*item))
                    wait.handled(record)
            self._end_batch()
        if wait.holds(self._markers):
            return True
        if wait.expired(self._stop_cap):
            return False
        return None

    def _wait_for_task(self) -> None:
        task = self._tasks[-1]
        wait = task.wait
        assert wait is not None
        deadline = wait.due(self._stop_cap)
        if not wait.exclusive:
            deadline = _earliest(deadline, self._timer_deadline())
        item = self._mailbox.receive(deadline)
        if item is None:
            if wait.expired(self._stop_cap):
                self._advance(task, False)
            elif not wait.exclusive:
                self._run_timers()
            return
        self._route(task, wait, item)

    def _route(self, task: Task, wait: Wait, item: Any) -> None:
        if type(item) is tuple:
            record = item[0]
            if record is wait.capture:
                self._advance(task, item)
                return
            if not wait.wants(record):
                self._mailbox.defer(item)
                return
            op = self._handle_exit(*item)
            for each in self._tasks:
                if each.wait is not None:
                    each.wait.handled(record)
            self._end_batch()
            if op is not None:
                self._push(op)
                return
        elif item is not WAKE:
            self._markers.add(item)
        item = None
        top = self._tasks[-1] if self._tasks else None
        if top is not None and top.wait is not None:
            value = self._already(top, top.wait)
            if value is not None:
                self._advance(top, value)

    def _serve(self, request: _Request) -> None:
        def done(error: BaseException | None, value: object) -> None:
            if isinstance(error, StartFailed):
                request.result.set_exception(error.error)
            elif error is not None:
                request.result.set_exception(error)
            else:
                request.result.set(value)

        try:
            result = request.fn()
        except Exception as exc:  # the caller gets it
            done(exc, None)
            return
        if isinstance(result, GeneratorType):
            self._push(cast(Op, result), done)
        else:
            done(None, result)

    # ------------------------------------------------------------------ timers

    def _timer_deadline(self) -> float | None:
        """The monotonic time the next clock timer is due (``None``: nothing is)."""
        due = self._timers.next_due(self._reporter.storms, self._monitors)
        if due is None:
            return None
        clock = self._config.clock
        return time.monotonic() + (due - clock())

    def _run_timers(self, due_only: bool = False) -> None:
        clock = self._config.clock
        now = clock()
        due = self._timers.next_due(self._reporter.storms, self._monitors)
        if due is None or (due_only and now + TIMER_SLACK < due):
            return
        storms = self._reporter.storms
        if storms.next_due is not None and now + TIMER_SLACK >= storms.next_due:
            self._reporter.summaries(now)
        for monitor in self._monitors:
            if monitor.watched and now + TIMER_SLACK >= monitor.next_tick:
                for record in monitor.tick(now):
                    self._heartbeat_missed(record, monitor.interval)
        if self._end_reason is None:
            for record in self._timers.due_restarts(now):
                self._restart_due(record)
        self._end_batch()

    def _heartbeat_missed(self, record: Record, interval: float) -> None:
        """*record* has not beaten for *interval*: kill it; its exit is a heartbeat miss."""
        greenlet = record.greenlet
        if greenlet is None or record.status != RUNNING:
            return
        record.hb_missed = record.incarnation
        self._reporter.heartbeat_missed(record.id, record.incarnation, interval)
        kill(greenlet)

    # ------------------------------------------------------------------ endings

    def _settled(self) -> None:
        # The start and the exits that came with it are handled: start() returns.
        self._settling = False
        self._started.set(None)

    def _give_up(self, record: ExitRecord) -> None:
        in_window = self._intensity.in_window
        limit = self._intensity.max_restarts
        assert not isinstance(limit, _Unlimited)
        self._error = RestartIntensityExceeded(
            self._path, limit, self._config.period, in_window or 0, record
        )
        self._reporter.gave_up(record, limit, self._config.period, in_window)
        self._end("restart_intensity_exceeded")

    def _late_exit(self, record: Record, incarnation: int, reason: str) -> None:
        """An exit of an incarnation that was already accounted for, or abandoned."""
        if record.abandoned and record.abandoned == incarnation:
            record.abandoned = 0
            if record.abandoned_greenlet is not None:
                self._retirees.append(record.abandoned_greenlet)
                record.abandoned_greenlet = None
            self._zombies -= 1
            self._reporter.late_exit(record.id, incarnation, reason)
        else:
            self._reporter.exit_ignored(record.id, incarnation)

    def _finish(self) -> None:
        self._reporter.summaries(self._config.clock(), flush=True)
        reason = self._end_reason or "shutdown"
        self._report = StopReport(self._path, reason, tuple(self._stopper.unstopped))
        final: SupervisorState = FAILED if self._error is not None else STOPPED
        self._reporter.stopped(reason, len(self._stopper.unstopped))
        _fork.forget(self)
        while self._control:
            self._control.popleft().result.set_exception(
                SupervisorNotRunningError(self._name, final, "serve this request")
            )
        if not self._started.ready():
            failure = self._start_error or self._error
            if failure is not None:
                self._started.set_exception(failure)
            else:
                self._started.set(None)
        if not self._zombies:
            self._state = final
            self._done.set()
            return
        self._done.set()  # the stop is over; the state says "stopping" while they run
        self._linger()
        self._state = final

    def _linger(self) -> None:
        # Stopped, but children reported unstopped still run: handle their late exits
        # until the last one has ended.
        handle = self._handle_exit
        while self._zombies > 0:
            item = self._mailbox.receive(None)
            if type(item) is tuple:
                handle(*item)
            item = None
            self._end_batch()

    def _after_fork(self) -> None:
        """In a forked child process (synchronously, right after the fork): this run belongs
        to the parent. No worker of it ever runs here, and introspection says so."""
        if self._state in (NEW, STOPPED, FAILED) and not self._zombies:
            return
        self._forked = True
        channel = self._mailbox.channel
        channel.halted = channel.forked = True
        alive = self._disown()
        self._end_reason = self._end_reason or "forked"
        self._state = STOPPED
        self._report = StopReport(self._path, "forked")
        while self._control:
            self._control.popleft().result.set_exception(
                SupervisorNotRunningError(self._name, STOPPED, "serve this request")
            )
        if not self._started.ready():
            self._started.set(None)
        self._done.set()
        gevent.get_hub().loop.run_callback(self._reporter.forked, alive)

    def _disown(self) -> int:
        raise NotImplementedError


def _earliest(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)
