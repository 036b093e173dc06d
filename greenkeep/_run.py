"""
One run of a supervisor: what its manager greenlet owns from `start` until it has stopped,
and the one dispatch loop that reads its mailbox.

With nothing under way the loop drains exits in batches of `BATCH` and yields to the hub
between batches; while operations are under way (`greenkeep._ops`: a child's start, a stop,
a strategy's restart) it hands what it receives to the `Driver`. Requests from other
greenlets wait on the control deque and are served ahead of any backlog of exits. Starting,
stopping and the final drain all go through the loop; no exit is handled anywhere else.

Everything here runs in the manager greenlet, except the methods the façade
(`greenkeep._manager.SupervisorBase`) calls from its caller's greenlet: `launch`, `call`,
`request_stop`, and the fork hook (`after_fork`).

The restart path's invariants (each has a test, in ``test_invariants.py`` unless named):

- the batch drops its last item before it waits (a crash's exception pins the frames of the
  dead incarnation: ``test_crashed_incarnation_memory_is_freed``);
- exits deferred while an operation waits are handled afterwards in the order they were
  posted (`Mailbox.defer`);
- a pool retires the parked greenlets of a batch before it starts the next incarnations
  (`PoolRun.end_batch`): memory is given back first;
- an exit already posted keeps its reason (`Record.exited`: ``ran == -incarnation``), a stop
  request that comes after it cannot make it a shutdown
  (``test_child_returning_as_terminate_child_is_called``);
- `end` sets `Channel.halted` before anything else happens: a start or resume scheduled
  before the stop began never runs (``test_start_semantics.py``); after a fork, nothing of
  the parent's runs (``test_fork_isolation.py``).
"""

from __future__ import annotations

import abc
import contextvars
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from types import GeneratorType
from typing import Any, Final, TypeVar, cast

import gevent
import gevent.event
from greenlet import GreenletExit

from greenkeep import _blocking, _fork
from greenkeep._config import Config
from greenkeep._errors import (
    ChildStartError,
    RestartIntensityExceeded,
    SupervisorNotRunningError,
)
from greenkeep._events import Emitter, Reporter
from greenkeep._exits import ExitRecord
from greenkeep._intensity import RestartIntensity, UnlimitedType
from greenkeep._launch import kill, retire
from greenkeep._mailbox import Forked, Mailbox
from greenkeep._ops import Driver, Op, Request, StartFailed
from greenkeep._records import Record
from greenkeep._reports import StopReport
from greenkeep._snapshot import register_manager
from greenkeep._states import (
    FAILED,
    FORKED,
    GAVE_UP,
    MANAGER_CRASHED,
    NEW,
    RUNNING,
    SHUTDOWN,
    START_FAILED,
    STARTING,
    STOPPED,
    STOPPING,
    StopReason,
    SupervisorState,
)
from greenkeep._stopping import Stoppable, Stopper
from greenkeep._storm import CrashStorms
from greenkeep._timers import Timers

__all__ = ["BATCH", "Run"]

#: Exits handled per batch before the manager yields to the hub (fairness).
BATCH: Final = 256

#: A backlog longer than this, found on waking, was posted by a crash storm's first pass:
#: the manager lets the hub's turn that posted it end before it handles the first batch.
STORM_BACKLOG: Final = 4 * BATCH

#: The manager's pause between two batches of a backlog, in seconds: a timer this short
#: fires on the loop's next iteration, after timers and IO that were due.
_YIELD: Final = 1e-6

E = TypeVar("E")


class Run(abc.ABC):
    """
    The state of one run and its manager's loop; `SupervisorRun` and `PoolRun` add the
    children, the exit handler (the hot path) and the operations.

    Attributes (read by the façade and by introspection):
        state, error, report: Where the run is, why it gave up, how it stopped.
        done: Set once its stop is over (children reported unstopped may still run: the
            state stays ``stopping`` until they have ended).
    """

    def __init__(self, config: Config, path: str, context: contextvars.Context) -> None:
        self.config = config
        self.path = path
        self.context = context
        self.clock = config.clock
        self.state: SupervisorState = NEW
        self.mailbox = Mailbox(path)
        self.channel = self.mailbox.channel
        self.control: deque[Request] = deque()
        self.intensity = RestartIntensity(self.budget(), config.period)
        self.emitter = Emitter(path, config.logger, config.subscribers, wake=self.channel.nudge)
        self.reporter = Reporter(self.emitter, CrashStorms(config.log_summary_interval))
        self.stopper = Stopper(
            mailbox=self.mailbox,
            reporter=self.reporter,
            path=path,
            policy_of=self.policy_of,
            subtree_of=self.subtree_of,
            cap=lambda: self.stop_cap,
            abandon=self.abandon,
        )
        self.driver = Driver(self.mailbox, self.handle_exit, self.end_batch, lambda: self.stop_cap)
        self.timers = Timers(self.clock, self.reporter.storms)
        self.monitors = self.timers.monitors
        self.done = gevent.event.Event()
        self.started: gevent.event.AsyncResult[None] = gevent.event.AsyncResult()
        self.error: RestartIntensityExceeded | None = None
        self.report: StopReport | None = None
        self.end_reason: StopReason | None = None
        self.stop_cap: float | None = None
        self.retirees: list[Any] = []  # parked greenlets of finished incarnations
        self.zombies = 0  # incarnations reported unstopped that still run
        self.forked = False
        self.manager: gevent.Greenlet[[], None] | None = None
        self._start_error: ChildStartError | None = None
        self._stop_pushed = False
        #: How many of the stopper's unstopped entries came before the run's stop began.
        self._unstopped_before_stop: int | None = None
        self._settling = False

    #: Takes a run of straight-path exits off the head of the queue in bulk (see
    #: `PoolRun.drain`): ``drain(queue, handled, most) -> handled``; ``None`` if the run has
    #: no such path.
    drain: Callable[[deque[Any], int, int], int] | None = None

    def budget(self) -> int | UnlimitedType:
        """The restart budget this run starts with."""
        return self.config.max_restarts

    # ------------------------------------------------------------------ from the façade

    def launch(self) -> None:
        """From the caller of ``start()``: spawn the manager; return once it has started
        (raises what made the start fail)."""
        self.state = STARTING
        _blocking.install()
        _fork.track(self, self.after_fork)
        register = getattr(self.clock, "register_waker", None)
        if callable(register):  # a manual clock: wake the manager when it moves
            register(weakref.WeakMethod(self.channel.nudge))
        self.hub = hub = gevent.get_hub()
        self.manager = manager = gevent.Greenlet(self._main)
        manager.name = f"greenkeep.manager[{self.path}]"
        register_manager(manager)
        self.mailbox.open(hub, manager)
        self.channel.on_blocked = self.reporter.loop_blocked
        manager.start()
        self.started.get()

    def call(self, fn: Callable[[], E | Op]) -> E:
        """From another greenlet: run *fn* in the manager, ahead of any backlog of exits;
        return its result (an operation's, once it has ended)."""
        request = Request(fn)
        self.control.append(request)
        self.channel.nudge()
        return cast(E, request.result.get())

    def request_stop(self, timeout: float | None) -> None:
        """From any greenlet: end the run, within *timeout* seconds from now if given (the
        tightest deadline asked for wins). Never blocks."""
        if timeout is not None:
            deadline = time.monotonic() + timeout
            if self.stop_cap is None or deadline < self.stop_cap:
                self.stop_cap = deadline
                self.stopper.tighten(deadline)
        self.end(SHUTDOWN)
        self.channel.nudge()

    def end(self, reason: StopReason) -> None:
        """The run ends (the first reason given is kept): nothing starts any more."""
        if self.end_reason is None:
            self.end_reason = reason
            self.channel.halted = True

    # ------------------------------------------------------------------ hooks

    @abc.abstractmethod
    def start_op(self) -> Op: ...

    @abc.abstractmethod
    def stop_op(self) -> Op: ...

    @abc.abstractmethod
    def handle_exit(self, record: Any, incarnation: int, payload: Any) -> Op | None: ...

    @abc.abstractmethod
    def restart_due(self, record: Any) -> None: ...

    @abc.abstractmethod
    def records(self) -> Iterable[Record]: ...

    @abc.abstractmethod
    def started_fields(self) -> dict[str, object]: ...

    @abc.abstractmethod
    def policy_of(self, record: Any) -> Any: ...

    @abc.abstractmethod
    def disown(self) -> int:
        """In a forked child: make every worker greenlet inert; return how many ran."""

    def subtree_of(self, record: Any) -> Stoppable | None:
        return None

    def check(self, now: float) -> None:  # noqa: B027 (a hook: only pools have a check)
        """The periodic check (`Timers.check_at`) is due: a pool's readiness."""

    def degraded(self) -> bool:
        """Whether this run is degraded (a pool's readiness; a supervisor's comes from its
        subtree, see `SupervisorBase.degraded`)."""
        return False

    def abandon(self, record: Record) -> None:
        """*record*'s incarnation was reported unstopped: stop tracking it as running."""
        if record.abandoned is None:
            record.abandoned = {}
        record.abandoned[record.incarnation] = record.greenlet
        record.greenlet = None
        self.zombies += 1

    def end_batch(self) -> None:
        """After each batch of exits: retire the finished greenlets (one callback)."""
        if self.retirees:
            retire(self.retirees)
            self.retirees = []

    # ------------------------------------------------------------------ the manager

    def _main(self) -> None:
        try:
            try:
                self.driver.push(self.start_op(), self._start_done)
                self._loop()
            except (GreenletExit, Forked):
                if self.forked:
                    return  # a copy in a forked child: after_fork finished it
                self.end(SHUTDOWN)  # someone killed the manager: stop as for stop()
                self._recover()
            except BaseException as exc:  # a bug here must not go unreported
                self.reporter.crashed(exc)
                self.end(MANAGER_CRASHED)
                self._recover()
        except Forked:
            return
        except BaseException:  # the recovery failed too: end without waiting for anyone
            if not self.done.is_set():
                self.end(MANAGER_CRASHED)
                for record in self.records():
                    if record.greenlet is not None:
                        kill(record.greenlet)
                self.zombies = 0
                self._finish()

    def _recover(self) -> None:
        # Stop the children through the loop again, from a clean slate of operations.
        self.driver.close()
        self._loop()

    def _start_done(self, error: BaseException | None, _: object) -> None:
        if isinstance(error, StartFailed):
            self.end(START_FAILED)
            self._start_error = error.error  # raised by start() once the rest is stopped
        elif error is not None:
            raise error
        elif self.end_reason is None:
            # Every child has started: it runs. start() returns once the exits that came
            # during the start are handled too (it raises if it gave up meanwhile).
            self.state = RUNNING
            limit = self.intensity.max_restarts
            self.reporter.started(
                **self.started_fields(),
                max_restarts="unlimited" if isinstance(limit, UnlimitedType) else limit,
                period=self.config.period,
            )
            self._settling = True

    def _loop(self) -> None:
        # The one dispatch loop. The batch, the hot path, is inline: a call per item or per
        # batch would be a measurable share of a restart in reuse mode (about 4 us here).
        mailbox = self.mailbox
        queue = mailbox.queue
        control = self.control
        handle = self.handle_exit
        drain = self.drain
        driver = self.driver
        _tuple = tuple
        while True:
            if self.emitter.reports:
                self.emitter.report()
            if driver.tasks:
                self._step_operation()
            elif self.end_reason is not None:
                if self._step_ending():
                    return
            elif control:
                self._serve(control.popleft())
            elif mailbox.deferred:
                item = mailbox.undefer()
                if item is not None:
                    driver.push(handle(*item))
                    item = None
                    self.end_batch()
            elif self._settling:
                self._settling = False
                self.started.set(None)
            else:
                item = mailbox.receive(self.timers.deadline())
                if item is None:
                    self._run_timers()
                    continue
                self.channel.posted = 0
                queue.appendleft(item)  # the batch takes it from the queue like the rest
                item = None
                if len(queue) > STORM_BACKLOG:
                    # A crash storm's first pass posted this in one turn of the hub: let
                    # that turn end (timers, IO, the rest of the process) before the first
                    # batch and its restarts, which would otherwise lengthen it.
                    gevent.sleep(_YIELD)
                handled = 0
                # The batch straight from the queue's deque: runs of straight-path exits in
                # bulk (`drain`), the others one by one; a request, a stop or an operation
                # ends it (requests are served ahead of a backlog).
                while (
                    queue
                    and handled < BATCH
                    and not control
                    and not driver.tasks
                    and self.end_reason is None
                ):
                    if drain is not None:
                        handled = drain(queue, handled, BATCH)
                        if not queue or handled >= BATCH or self.end_reason is not None:
                            break
                    item = queue.popleft()
                    if type(item) is _tuple:
                        op = handle(*item)
                        if op is not None:
                            driver.push(op)
                    handled += 1
                item = None  # drop the last exit (its exception pins frames) before waiting
                self.end_batch()
                self._run_timers(due_only=True)
                if handled >= BATCH:
                    # A backlog: let the rest of the process run. Not sleep(0), which only
                    # queues a callback and would run again before timers and IO get a turn;
                    # a (tiny) timer waits for the loop's next iteration.
                    gevent.sleep(_YIELD)

    def _step_operation(self) -> None:
        deadline, exclusive = self.driver.deadline()
        if not exclusive:  # a pool's operation: timers (heartbeats, summaries) go on
            timer = self.timers.deadline()
            if timer is not None and (deadline is None or timer < deadline):
                deadline = timer
        item = self.mailbox.receive(deadline)
        if item is None:
            if not self.driver.timed_out() and not exclusive:
                self._run_timers()
        else:
            self.driver.route(item)

    def _step_ending(self) -> bool:
        # Stopping: the stop operation first, then what is left in the mailbox (no restarts
        # now), then the report; then, while children reported unstopped still run, their
        # late exits. Returns True once the run is over.
        mailbox = self.mailbox
        item = None
        if not self._stop_pushed:
            self._stop_pushed = True
            self._unstopped_before_stop = len(self.stopper.unstopped)
            self.state = STOPPING
            self.driver.push(self.stop_op())
        elif mailbox.deferred or mailbox.queue:
            item = mailbox.undefer() if mailbox.deferred else mailbox.queue.popleft()
        elif self.report is None:
            self._finish()
        elif self.zombies > 0:
            item = mailbox.receive(None)
        else:
            self.state = FAILED if self.error is not None else STOPPED
            _fork.forget(self)
            return True
        if type(item) is tuple:
            self.handle_exit(*item)
            item = None
            self.end_batch()
        return False

    def _serve(self, request: Request) -> None:
        try:
            result = request.fn()
        except Exception as exc:  # the caller gets it
            request.done(exc, None)
            return
        if isinstance(result, GeneratorType):
            self.driver.push(cast(Op, result), request.done)
        else:
            request.done(None, result)

    # ------------------------------------------------------------------ timers

    def _run_timers(self, due_only: bool = False) -> None:
        due = self.timers.fire(self.end_reason is not None, due_only)
        if due is None:
            return
        if due.summaries:
            self.reporter.summaries(due.now)
        for record, interval in due.missed:
            self._heartbeat_missed(record, interval)
        if due.check:  # first: a worker whose restart is due now still waits for it
            self.check(due.now)
        for record in due.restarts:
            self.restart_due(record)
        self.end_batch()

    def _heartbeat_missed(self, record: Record, interval: float) -> None:
        """*record* has not beaten for *interval*: kill it; its exit is a heartbeat miss."""
        greenlet = record.greenlet
        if greenlet is None or record.status != RUNNING:
            return
        record.hb_missed = record.incarnation
        self.reporter.heartbeat_missed(record.id, record.incarnation, interval)
        kill(greenlet)

    # ------------------------------------------------------------------ endings

    def give_up(self, record: ExitRecord) -> None:
        """The restart this exit called for exceeds the intensity: end the run."""
        in_window = self.intensity.in_window
        limit = self.intensity.max_restarts
        assert not isinstance(limit, UnlimitedType)
        period = self.config.period
        self.error = RestartIntensityExceeded(self.path, limit, period, in_window or 0, record)
        self.reporter.gave_up(record, limit, period, in_window)
        self.end(GAVE_UP)

    def late_exit(self, record: Record, incarnation: int, reason: str) -> None:
        """An exit of an incarnation that was already accounted for, or abandoned."""
        abandoned = record.abandoned
        if abandoned is not None and incarnation in abandoned:
            greenlet = abandoned.pop(incarnation)
            if not abandoned:
                record.abandoned = None
            if greenlet is not None:
                self.retirees.append(greenlet)
            self.zombies -= 1
            self._forget_unstopped(record, incarnation)
            self.reporter.late_exit(record.id, incarnation, reason)
        else:
            self.reporter.exit_ignored(record.id, incarnation)

    def _forget_unstopped(self, record: Record, incarnation: int) -> None:
        # An incarnation given up on before the run's stop (terminate_child, a strategy's
        # restart) that has ended since is not in the stop's report: the report lists what
        # still runs, and what outlived the stop itself.
        unstopped = self.stopper.unstopped
        before = self._unstopped_before_stop
        for i in range(len(unstopped) if before is None else before):
            entry = unstopped[i]
            if (entry.path, entry.child_id, entry.incarnation) == (
                self.path,
                record.id,
                incarnation,
            ):
                del unstopped[i]
                if before is not None:
                    self._unstopped_before_stop = before - 1
                return

    def _finish(self) -> None:
        self.reporter.summaries(self.clock(), flush=True)
        reason = self.end_reason or SHUTDOWN
        self.report = StopReport(self.path, reason, tuple(self.stopper.unstopped))
        final: SupervisorState = FAILED if self.error is not None else STOPPED
        self.reporter.stopped(reason, len(self.stopper.unstopped))
        self._fail_requests(final)
        if not self.started.ready():
            failure = self._start_error or self.error
            if failure is not None:
                self.started.set_exception(failure)
            else:
                self.started.set(None)
        if not self.zombies:
            self.state = final
            _fork.forget(self)  # else a fork must still disown the children that run on
        self.done.set()  # the stop is over; the state says "stopping" while zombies run

    def _fail_requests(self, state: SupervisorState) -> None:
        while self.control:
            self.control.popleft().result.set_exception(
                SupervisorNotRunningError(self.config.name, state, "serve this request")
            )

    def after_fork(self) -> None:
        """In a forked child process, synchronously right after the fork: this run belongs
        to the parent. No worker of it ever runs here, and introspection says so."""
        if self.state in (NEW, STOPPED, FAILED) and not self.zombies:
            return
        self.forked = True
        self.channel.halted = self.channel.forked = True
        alive = self.disown()
        self.end_reason = self.end_reason or FORKED
        self.state = STOPPED
        self.report = StopReport(self.path, FORKED)
        self._fail_requests(STOPPED)
        if not self.started.ready():
            self.started.set(None)
        self.done.set()
        gevent.get_hub().loop.run_callback(self.reporter.forked, alive)
