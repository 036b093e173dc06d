"""
`Supervisor`: OTP's supervisor on greenlets.

One manager greenlet per supervisor owns every piece of its state. Children post their exits
onto the manager's mailbox (see `greenkeep._worker`); public methods put a request on the
control deque, wake the manager and wait for its answer; introspection reads state directly
(greenlets are cooperative: between two switches the manager's state is consistent).
"""

from __future__ import annotations

import contextvars
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Final, TypeVar

import gevent
import gevent.event
import gevent.queue
from greenlet import GreenletExit
from greenlet import getcurrent as _getcurrent

from greenkeep._current import ready
from greenkeep._errors import (
    CalledFromManagerError,
    ChildAlreadyPresentError,
    ChildAlreadyStartedError,
    ChildNotFoundError,
    ChildRestartingError,
    ChildRunningError,
    ChildStartError,
    InvalidArgumentError,
    InvalidSpecError,
    RestartIntensityExceeded,
    SpecProblem,
    SupervisorAlreadyStartedError,
    SupervisorNotRunningError,
)
from greenkeep._events import Emitter, EventLogger, Subscriber
from greenkeep._exits import Decision, ExitKind, ExitRecord, classify, decide
from greenkeep._intensity import RestartIntensity, _Unlimited, intensity_problems
from greenkeep._render import error_text
from greenkeep._reports import ChildCounts, ChildInfo, StopReport, Unstopped
from greenkeep._spec import ChildId, ChildSpec, Restart, Shutdown, validate_specs
from greenkeep._strategy import AutoShutdown, Strategy, plan_restart
from greenkeep._worker import (
    WAKE as _WAKE,
)
from greenkeep._worker import (
    Runnable,
    WorkerGreenlet,
    current_worker,
    kill,
    spawn_fresh,
)

__all__ = ["Supervisor"]

#: Exits handled per batch before the manager yields to the hub (fairness).
BATCH: Final = 256


E = TypeVar("E")


class _Child(Runnable):
    """The manager's record of one child. Only the manager writes it (the worker: `ran`)."""

    __slots__ = (
        "abandoned",
        "awaiting_ready",
        "greenlet",
        "id",
        "incarnation",
        "last_exit",
        "ready_inc",
        "restarts",
        "spec",
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
        spec: ChildSpec,
        supervisor: Supervisor,
        post: Callable[[Any], None],
        context: contextvars.Context,
    ) -> None:
        self.spec = spec
        self.id = spec.id
        self.supervisor = supervisor
        self.target = spec.target.run if spec.is_supervisor else spec.target  # type: ignore[attr-defined]
        self.args = spec.args
        self.kwargs = spec.kwargs
        self.context = context
        self.post = post
        self.ran = 0
        self.incarnation = 0
        self.greenlet: WorkerGreenlet | None = None
        self.status = "terminated"
        self.stop_requested = False
        self.stop_event: gevent.event.Event | None = None
        self.stop_deadline: float | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.last_exit: ExitRecord | None = None
        self.awaiting_ready = False
        self.ready_inc = 0
        self.abandoned = 0
        self.sub_report: StopReport | None = None


class _Request:
    __slots__ = ("action", "fn", "result")

    def __init__(self, action: str, fn: Callable[[], object]) -> None:
        self.action = action
        self.fn = fn
        self.result: gevent.event.AsyncResult = gevent.event.AsyncResult()


class _StartFailed(Exception):
    def __init__(self, error: ChildStartError) -> None:
        super().__init__(str(error))
        self.error = error


def _check_timeout(owner: str, timeout: object) -> float | None:
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


def _enum_value(
    enum_type: type[E], value: object, owner: str, field: str, problems: list[SpecProblem]
) -> E | None:
    if isinstance(value, enum_type):
        return value
    try:
        return enum_type(value)  # type: ignore[call-arg]
    except (ValueError, TypeError):
        allowed = "one of " + ", ".join(repr(m.value) for m in enum_type)  # type: ignore[attr-defined]
        problems.append(SpecProblem(owner, field, allowed, value))
        return None


class Supervisor:
    """
    Keeps child greenlets alive by Erlang/OTP's rules.

    Args:
        children: `ChildSpec` list, started in this order and stopped in reverse.
        strategy: ``"one_for_one"`` (default), ``"one_for_all"`` or ``"rest_for_one"``
            (a `Strategy`).
        max_restarts: Restart budget: more than this many restarts within *period* seconds
            and the supervisor gives up. Default 3 (Elixir's; OTP's is 1). `UNLIMITED`
            disables the rule (for benchmarks).
        period: The budget's sliding window in seconds. Default 5.
        name: Used in every event and error. Default ``"supervisor"``.
        auto_shutdown: ``"never"`` (default), ``"any_significant"`` or ``"all_significant"``
            (an `AutoShutdown`): when significant children's exits end the supervisor.
        logger: A structlog logger to log events to; default
            ``structlog.get_logger("greenkeep")``, resolved at `start`.
        subscribers: Callables that receive every event as a dict (see the README).
        clock: Seconds as a float, for the restart window; default ``time.monotonic``.
            Tests pass a `greenkeep.testing.ManualClock`.

    Raises:
        InvalidSpecError: Listing every invalid argument; nothing was started.

    The lifecycle is gevent's: `start`, `join`, `stop`, or ``with Supervisor(...) as sup:``.
    """

    _greenkeep_is_supervisor: Final = True

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int | _Unlimited = 3,
        period: float = 5.0,
        name: str = "supervisor",
        auto_shutdown: AutoShutdown | str = AutoShutdown.NEVER,
        logger: EventLogger | None = None,
        subscribers: Iterable[Subscriber] = (),
        clock: Callable[[], float] | None = None,
    ) -> None:
        problems: list[SpecProblem] = []
        owner = f"supervisor {name!r}" if isinstance(name, str) else "supervisor"
        if not isinstance(name, str) or not name or "/" in name:
            problems.append(SpecProblem(owner, "name", "a non-empty str without '/'", name))
        strategy_e = _enum_value(Strategy, strategy, owner, "strategy", problems)
        auto_e = _enum_value(AutoShutdown, auto_shutdown, owner, "auto_shutdown", problems)
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
        specs: list[ChildSpec] = []
        try:
            specs = validate_specs(owner, children)
        except InvalidSpecError as exc:
            problems.extend(exc.problems)
        if auto_e is not None:
            problems.extend(self._significance_problems(owner, specs, auto_e))
        if problems:
            raise InvalidSpecError(problems)
        assert strategy_e is not None and auto_e is not None
        self._name: str = name
        self._path = name
        self._strategy: Strategy = strategy_e
        self._auto_shutdown: AutoShutdown = auto_e
        self._max_restarts = max_restarts
        self._period = float(period)
        self._logger = logger
        self._subscribers = subscribers_t
        self._clock: Callable[[], float] = clock if clock is not None else time.monotonic
        self._specs: list[ChildSpec] = specs
        self._state = "new"
        self._children: dict[ChildId, _Child] = {}
        self._mailbox: gevent.queue.SimpleQueue = gevent.queue.SimpleQueue()
        self._control: deque[_Request] = deque()
        self._deferred: deque[Any] = deque()
        self._intensity = RestartIntensity(max_restarts, self._period)
        self._emit: Emitter | None = None  # resolved in start()
        self._manager: gevent.Greenlet | None = None
        self._done = gevent.event.Event()
        self._started: gevent.event.AsyncResult | None = None
        self._error: RestartIntensityExceeded | None = None
        self._report: StopReport | None = None
        self._end_reason: str | None = None
        self._stop_deadline: float | None = None
        self._unstopped: list[Unstopped] = []
        self._context = contextvars.copy_context()

    @staticmethod
    def _significance_problems(
        owner: str, specs: Sequence[ChildSpec], auto: AutoShutdown
    ) -> list[SpecProblem]:
        if auto is not AutoShutdown.NEVER:
            return []
        return [
            SpecProblem(
                owner,
                f"children[{i}].significant",
                "False when auto_shutdown is 'never' (as in OTP)",
                True,
            )
            for i, spec in enumerate(specs)
            if spec.significant
        ]

    # ------------------------------------------------------------------ introspection

    @property
    def name(self) -> str:
        """The supervisor's name."""
        return self._name

    @property
    def path(self) -> str:
        """The supervisor's path in its tree, e.g. ``"root/db"`` (its name at the root)."""
        return self._path

    @property
    def state(self) -> str:
        """``"new"``, ``"starting"``, ``"running"``, ``"stopping"``, ``"stopped"`` or
        ``"failed"``."""
        return self._state

    @property
    def strategy(self) -> Strategy:
        """The restart strategy."""
        return self._strategy

    @property
    def error(self) -> RestartIntensityExceeded | None:
        """Why it gave up, once it has (``None`` otherwise)."""
        return self._error

    def which_children(self) -> list[ChildInfo]:
        """
        Every child in start order, running or not. Never blocks; works in every state
        (after a stop it shows how the children ended).
        """
        if self._state != "new":
            return [self._info(child) for child in self._children.values()]
        return [
            ChildInfo(
                spec.id,
                "terminated",
                0,
                0,
                spec.restart.value,
                "supervisor" if spec.is_supervisor else "worker",
                None,
            )
            for spec in self._specs
        ]

    def count_children(self) -> ChildCounts:
        """OTP's ``count_children``. Never blocks."""
        infos = self.which_children()
        supervisors = sum(1 for i in infos if i.type == "supervisor")
        return ChildCounts(
            specs=len(infos),
            active=sum(1 for i in infos if i.status == "running"),
            supervisors=supervisors,
            workers=len(infos) - supervisors,
        )

    def get_child_spec(self, child_id: ChildId) -> ChildSpec:
        """
        The spec of *child_id*. Never blocks.

        Raises:
            ChildNotFoundError: If no child has this id.
        """
        child = self._children.get(child_id)
        if child is not None:
            return child.spec
        if self._state == "new":
            for spec in self._specs:
                if spec.id == child_id:
                    return spec
        raise ChildNotFoundError(self._name, child_id)

    @staticmethod
    def _info(child: _Child) -> ChildInfo:
        spec = child.spec
        return ChildInfo(
            child.id,
            child.status,
            child.incarnation,
            child.restarts,
            spec.restart.value,
            "supervisor" if spec.is_supervisor else "worker",
            child.last_exit,
        )

    def __repr__(self) -> str:
        return (
            f"<Supervisor {self._path!r} {self._state} strategy={self._strategy.value} "
            f"children={len(self._children) or len(self._specs)}>"
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """
        Start the manager and the children, in spec order, and return once they are
        started (each ready, or run up to its first yield).

        A supervisor that stopped or gave up can be started again: it starts afresh from
        its specs (as they are now), with an empty restart window.

        Blocks the calling greenlet (never the hub's loop) while children start.

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
        self._started = started = gevent.event.AsyncResult()
        self._manager = gevent.spawn(self._main)
        self._manager.name = f"greenkeep.manager[{self._path}]"
        started.get()

    def _reset(self) -> None:
        self._children = {}
        self._mailbox = gevent.queue.SimpleQueue()
        self._control = deque()
        self._deferred = deque()
        self._intensity = RestartIntensity(self._max_restarts, self._period)
        self._done = gevent.event.Event()
        self._error = None
        self._report = None
        self._end_reason = None
        self._stop_deadline = None
        self._unstopped = []

    def join(self, timeout: float | None = None) -> bool:
        """
        Wait until the supervisor has ended (stopped, or gave up).

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            ``True`` if it has ended, ``False`` if *timeout* passed first.

        Raises:
            RestartIntensityExceeded: On every call once it has given up.
            SupervisorNotRunningError: If it was never started.
        """
        timeout = _check_timeout(f"supervisor {self._name!r}.join()", timeout)
        if self._state == "new":
            raise SupervisorNotRunningError(self._name, self._state, "be joined")
        ended = self._done.wait(timeout)
        if ended and self._error is not None:
            raise self._error.with_traceback(None)
        return bool(ended)

    def stop(self, timeout: float | None = None) -> StopReport:
        """
        Stop every child in reverse start order, then the manager; return what happened.

        Each child first gets its stop signal (`greenkeep.stop_signal`), then
        ``GreenletExit``, and is waited for according to its shutdown policy. *timeout*
        caps the whole stop on top of that. A child that does not stop in time is reported
        in `StopReport.unstopped` and as a ``child_unstopped`` event; no child is restarted
        or started once the stop has begun.

        Idempotent: on a stopped or failed supervisor it returns the earlier report at once,
        on a never-started one an empty report.

        Called from inside one of this supervisor's own children, it requests the stop and
        then raises ``GreenletExit`` in the caller (let it propagate): the caller is one of
        the children being stopped, so it cannot wait for the stop to finish. Called from
        the manager greenlet itself (a subscriber), it schedules the stop and returns a
        report with ``complete=False``.

        Args:
            timeout: Overall cap in seconds; ``None`` means each child's own policy.
        """
        cap = _check_timeout(f"supervisor {self._name!r}.stop()", timeout)
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
        self._mailbox.put_nowait(_WAKE)
        current = _getcurrent()
        if current is self._manager:
            return StopReport(self._path, self._end_reason, (), complete=False)
        worker = current_worker()
        if worker is not None and worker.child.supervisor is self:
            raise GreenletExit
        self._done.wait()
        assert self._report is not None
        return self._report

    def run(self) -> None:
        """
        Start, wait until the supervisor ends, and stop it on the way out.

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

    def __enter__(self) -> Supervisor:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ dynamic children

    def start_child(self, spec: ChildSpec) -> ChildInfo:
        """
        Add *spec* at the end of the start order and start it (waiting as `start` does).

        Raises:
            ChildAlreadyStartedError: A running child has this id.
            ChildAlreadyPresentError: A terminated child with this id is kept.
            ChildStartError: It exited abnormally before it was ready; it is not added.
            SupervisorNotRunningError: The supervisor is not running.
            InvalidSpecError: *spec* is not a `ChildSpec`, or is significant under
                ``auto_shutdown="never"``.
        """
        owner = f"supervisor {self._name!r}.start_child()"
        if not isinstance(spec, ChildSpec):
            raise InvalidSpecError([SpecProblem(owner, "spec", "a ChildSpec", spec)])
        problems = self._significance_problems(owner, [spec], self._auto_shutdown)
        if problems:
            raise InvalidSpecError(problems)
        context = contextvars.copy_context()
        return self._call("start a child", lambda: self._do_start_child(spec, context))

    def terminate_child(self, child_id: ChildId) -> ChildInfo:
        """
        Stop *child_id* (by its shutdown policy) and keep its spec; a pending restart is
        cancelled. Returns how it ended. Terminating a terminated child does nothing.

        Raises:
            ChildNotFoundError: No child has this id.
            SupervisorNotRunningError: The supervisor is not running.
        """
        return self._call("terminate a child", lambda: self._do_terminate_child(child_id))

    def restart_child(self, child_id: ChildId) -> ChildInfo:
        """
        Start a terminated child again (a manual restart: it does not count toward the
        restart intensity).

        Raises:
            ChildNotFoundError: No child has this id.
            ChildRunningError: It is running.
            ChildRestartingError: A restart of it is pending.
            ChildStartError: It exited abnormally before it was ready.
            SupervisorNotRunningError: The supervisor is not running.
        """
        return self._call("restart a child", lambda: self._do_restart_child(child_id))

    def delete_child(self, child_id: ChildId) -> None:
        """
        Remove a terminated child's spec.

        Raises:
            ChildNotFoundError: No child has this id.
            ChildRunningError: It is running.
            ChildRestartingError: A restart of it is pending.
            SupervisorNotRunningError: The supervisor is not running.
        """
        self._call("delete a child", lambda: self._do_delete_child(child_id))

    def _call(self, action: str, fn: Callable[[], E]) -> E:
        if self._state != "running" or self._end_reason is not None:
            state = "stopping" if self._state == "running" else self._state
            raise SupervisorNotRunningError(self._name, state, action)
        if _getcurrent() is self._manager:
            raise CalledFromManagerError(self._name, action)
        request = _Request(action, fn)
        self._control.append(request)
        self._mailbox.put_nowait(_WAKE)
        return request.result.get()  # type: ignore[no-any-return]

    # ================================================================== the manager
    # Everything below runs in the manager greenlet only.

    def _main(self) -> None:
        emit = self._emit
        assert emit is not None and self._started is not None
        try:
            try:
                for spec in self._specs:
                    self._add_and_start(spec, self._context)
                    if self._end_reason is not None:
                        break
            except _StartFailed as failure:
                self._end_reason = "start_failed"
                self._stop_all()
                self._finish("stopped")
                self._started.set_exception(failure.error)
                return
            self._state = "running"
            emit.emit(
                "info",
                "supervisor_started",
                strategy=self._strategy.value,
                children=len(self._children),
                max_restarts=self._intensity.max_restarts
                if not isinstance(self._intensity.max_restarts, _Unlimited)
                else "unlimited",
                period=self._period,
            )
            self._started.set(None)
            self._loop()
        except GreenletExit:
            # Someone killed the manager: stop the children as for stop().
            if self._end_reason is None:
                self._end_reason = "shutdown"
        except BaseException as exc:
            self._end_reason = "manager_crashed"
            emit.emit("critical", "supervisor_crashed", error=error_text(exc), exc_info=exc)
        if self._state != "stopped" and self._state != "failed":
            self._state = "stopping"
            try:
                self._stop_all()
            finally:
                self._finish("failed" if self._error is not None else "stopped")
        if not self._started.ready():
            self._started.set(None)

    def _finish(self, state: str) -> None:
        # Record exits that arrived while stopping (late exits of unstopped children).
        while self._deferred:
            self._on_exit(*self._deferred.popleft())
        while self._mailbox.qsize():
            item = self._mailbox.get_nowait()
            if item is not _WAKE:
                self._on_exit(*item)
        item = None
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
        assert self._emit is not None
        self._emit.emit(level, "supervisor_stopped", reason=reason, unstopped=len(self._unstopped))
        while self._control:
            self._control.popleft().result.set_exception(
                SupervisorNotRunningError(self._name, state, "serve this request")
            )
        self._done.set()

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
                on_exit(*deferred.popleft())
                continue
            item = mailbox.get()
            handled = 0
            while True:
                if item is not _WAKE:
                    on_exit(*item)
                handled += 1
                if (
                    control  # requests go ahead of the backlog
                    or self._end_reason is not None
                    or handled >= BATCH
                    or not mailbox.qsize()
                ):
                    break
                item = mailbox.get_nowait()
            item = None  # drop the last exit (its exception pins frames) before blocking
            if handled >= BATCH:
                gevent.sleep(0)  # a backlog: let the rest of the process run

    def _serve(self, request: _Request) -> None:
        try:
            value = request.fn()
        except _StartFailed as failure:
            request.result.set_exception(failure.error)
        except Exception as exc:
            request.result.set_exception(exc)
        else:
            request.result.set(value)

    # ------------------------------------------------------------------ exits

    def _on_exit(self, child: _Child, incarnation: int, exc: BaseException | None) -> None:
        """Handle one posted exit (the hot path)."""
        if child.incarnation != incarnation or child.greenlet is None:
            if child.abandoned == incarnation and child.abandoned:
                self._late_exit(child, incarnation, exc)
            else:  # stale: that incarnation was already accounted for
                assert self._emit is not None
                self._emit.emit(
                    "debug", "exit_ignored", child_id=child.id, incarnation=incarnation
                )
            return
        # stop_requested is only set while the greenlet is alive, so an exit counts as a
        # shutdown only if the request came first; an exit that raced a request keeps its own
        # reason but is not restarted (status "stopping").
        kind = classify(exc, child.stop_requested)
        child.greenlet = None
        now = self._clock()
        spec = child.spec
        if child.status == "stopping" or self._end_reason is not None:
            decision = Decision.DROP if spec.restart is Restart.TEMPORARY else Decision.KEEP
            action = "none"
        else:
            decision = decide(spec.restart, kind)
            action = decision.value
        if kind is ExitKind.INTERRUPTED:
            decision = Decision.DROP if spec.restart is Restart.TEMPORARY else Decision.KEEP
            action = "stop_supervisor"
        exceeded = decision is Decision.RESTART and self._intensity.record(now)
        if exceeded:
            action = "give_up"
        child.last_exit = ExitRecord.of(child.id, incarnation, kind, exc, now, exceeded)
        assert self._emit is not None
        self._emit_exit(child, incarnation, kind, exc, action)
        if kind is ExitKind.INTERRUPTED and self._end_reason is None:
            self._end_reason = "interrupted"
        if exceeded:
            self._give_up(child, exc)
        elif decision is Decision.RESTART:
            self._restart(child)
        else:
            self._not_restarted(child, decision)

    def _emit_exit(
        self,
        child: _Child,
        incarnation: int,
        kind: ExitKind,
        exc: BaseException | None,
        action: str,
    ) -> None:
        assert self._emit is not None
        if exc is None or not (kind.is_abnormal or kind is ExitKind.INTERRUPTED):
            self._emit.emit(
                "info",
                "child_exited",
                child_id=child.id,
                incarnation=incarnation,
                reason=kind.value,
                restart=child.spec.restart.value,
                action=action,
            )
        else:
            self._emit.emit(
                "error" if kind.is_abnormal else "warning",
                "child_exited",
                child_id=child.id,
                incarnation=incarnation,
                reason=kind.value,
                restart=child.spec.restart.value,
                action=action,
                error=error_text(exc),
                exc_info=exc,
            )

    def _late_exit(self, child: _Child, incarnation: int, exc: BaseException | None) -> None:
        # An unstopped incarnation we stopped waiting for has ended after all.
        child.abandoned = 0
        kind = classify(exc, True)
        assert self._emit is not None
        self._emit.emit(
            "info",
            "child_exited",
            child_id=child.id,
            incarnation=incarnation,
            reason=kind.value,
            restart=child.spec.restart.value,
            action="none",
            late=True,
        )

    def _not_restarted(self, child: _Child, decision: Decision) -> None:
        if child.status == "stopping":
            return  # _shutdown_child decides what it becomes
        child.status = "terminated"
        if decision is Decision.DROP:
            self._children.pop(child.id, None)
        if (
            child.spec.significant
            and self._auto_shutdown is not AutoShutdown.NEVER
            and not child.stop_requested
            and self._end_reason is None
        ):
            if self._auto_shutdown is AutoShutdown.ANY_SIGNIFICANT or not any(
                c.spec.significant and c.greenlet is not None for c in self._children.values()
            ):
                self._end_reason = "auto_shutdown"

    def _give_up(self, child: _Child, exc: BaseException | None) -> None:
        assert child.last_exit is not None and self._emit is not None
        in_window = self._intensity.in_window
        self._error = RestartIntensityExceeded(
            self._path,
            self._intensity.max_restarts,  # type: ignore[arg-type]
            self._period,
            in_window if in_window is not None else 0,
            child.last_exit,
        )
        child.status = "terminated"
        self._emit.emit(
            "critical",
            "restart_intensity_exceeded",
            child_id=child.id,
            incarnation=child.last_exit.incarnation,
            reason=child.last_exit.reason,
            error=child.last_exit.error,
            max_restarts=self._intensity.max_restarts,
            period=self._period,
            restarts_in_period=in_window,
        )
        self._end_reason = "restart_intensity_exceeded"

    # ------------------------------------------------------------------ starting

    def _spawn(self, child: _Child) -> None:
        child.incarnation += 1
        child.stop_requested = False
        child.stop_event = None
        child.stop_deadline = None
        child.sub_report = None
        child.started_at = self._clock()
        child.status = "running"
        child.greenlet = spawn_fresh(child, child.incarnation)

    def _restart(self, child: _Child) -> None:
        assert self._emit is not None
        if self._strategy is Strategy.ONE_FOR_ONE:
            child.restarts += 1
            self._spawn(child)
            self._emit.emit(
                "info",
                "child_restarted",
                child_id=child.id,
                incarnation=child.incarnation,
                restarts_in_period=self._intensity.in_window,
            )
            return
        children = self._children
        plan = plan_restart(
            self._strategy,
            list(children),
            child.id,
            lambda k: children[k].greenlet is not None,
            lambda k: children[k].spec.restart is Restart.TEMPORARY,
        )
        for key in plan.start:
            children[key].status = "restarting"
        for key in plan.stop:
            sibling = children[key]
            self._shutdown_child(sibling, self._stop_deadline)
        for key in plan.drop:
            children.pop(key, None)
        for key in plan.start:
            sibling = children[key]
            if self._end_reason is not None:
                break  # a stop arrived mid-restart: start nothing more
            sibling.restarts += 1
            self._spawn(sibling)
            self._emit.emit(
                "info",
                "child_restarted",
                child_id=sibling.id,
                incarnation=sibling.incarnation,
                restarts_in_period=self._intensity.in_window,
            )
        for key in plan.start:
            sibling = children.get(key)
            if sibling is not None and sibling.status == "restarting":
                sibling.status = "terminated"

    def _add_and_start(self, spec: ChildSpec, context: contextvars.Context) -> _Child:
        child = _Child(spec, self, self._mailbox.put_nowait, context)
        self._children[spec.id] = child
        try:
            self._start_synchronously(child)
        except _StartFailed:
            self._children.pop(spec.id, None)
            raise
        return child

    def _start_synchronously(self, child: _Child) -> None:
        """Start *child* and wait until it is ready (or has run up to its first yield)."""
        timeout = child.spec.ready_timeout
        self._spawn(child)
        incarnation = child.incarnation
        assert self._emit is not None
        self._emit.emit("info", "child_started", child_id=child.id, incarnation=incarnation)
        if timeout is None:
            gevent.sleep(0)  # its start callback was queued first: it runs until it yields
            deadline: float | None = time.monotonic()
        else:
            child.awaiting_ready = True
            deadline = None if timeout == math.inf else time.monotonic() + timeout
        try:
            while True:
                if child.ready_inc == incarnation and timeout is not None:
                    return
                item = self._next_event(deadline)
                if item is None:  # no exit of it: it is running (or timed out waiting)
                    if timeout is None:
                        return
                    self._shutdown_child(child, None)
                    raise _StartFailed(ChildStartError(self._path, child.id, None))
                if item is _WAKE:
                    continue
                other, other_inc, exc = item
                if other is not child or other_inc != incarnation:
                    self._deferred.append(item)
                    continue
                kind = classify(exc, child.stop_requested)
                if kind.is_abnormal:
                    child.greenlet = None
                    child.status = "terminated"
                    record = ExitRecord.of(child.id, incarnation, kind, exc, self._clock(), True)
                    child.last_exit = record
                    self._emit_exit(child, incarnation, kind, exc, "start_failed")
                    raise _StartFailed(ChildStartError(self._path, child.id, record))
                self._on_exit(other, other_inc, exc)
                return
        finally:
            child.awaiting_ready = False

    def _next_event(self, deadline: float | None) -> Any:
        """The next mailbox item, or ``None`` once *deadline* (monotonic) has passed."""
        mailbox = self._mailbox
        if deadline is None:
            return mailbox.get()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            try:
                return mailbox.get_nowait()
            except gevent.queue.Empty:
                return None
        try:
            return mailbox.get(timeout=remaining)
        except gevent.queue.Empty:
            return None

    # ------------------------------------------------------------------ stopping

    def _stop_all(self) -> None:
        for child in reversed(list(self._children.values())):
            if child.greenlet is not None:
                self._shutdown_child(child, self._stop_deadline)
            elif child.status == "restarting":
                child.status = "terminated"

    def _shutdown_child(self, child: _Child, cap: float | None) -> None:
        """
        Stop one running child: stop signal, then ``GreenletExit``, waiting by its policy
        (and at most until *cap*, a monotonic deadline). Reports it unstopped if it outlives
        its bound.
        """
        greenlet = child.greenlet
        if greenlet is None:
            return
        previous = child.status
        child.status = "stopping"
        try:
            self._stop_greenlet(child, greenlet, cap)
        finally:
            if previous == "restarting":
                child.status = "restarting"
            else:
                child.status = "terminated"
                if child.spec.restart is Restart.TEMPORARY:
                    self._children.pop(child.id, None)

    def _stop_greenlet(self, child: _Child, greenlet: WorkerGreenlet, cap: float | None) -> None:
        policy = child.spec.shutdown
        started = time.monotonic()
        if not greenlet.dead:  # else its own exit is already posted: it keeps its reason
            child.stop_requested = True
        if policy is Shutdown.BRUTAL:
            deadline: float | None = started
        elif policy is Shutdown.INFINITY:
            deadline = None
        else:
            assert isinstance(policy, float)
            deadline = started + policy
        if cap is not None:
            deadline = cap if deadline is None else min(deadline, cap)
        child.stop_deadline = deadline
        cooperative = child.stop_event is not None and policy is not Shutdown.BRUTAL
        if child.stop_event is not None:
            child.stop_event.set()
        if not cooperative:
            kill(greenlet)
        if policy is Shutdown.BRUTAL:
            gevent.sleep(0)  # let the kill land
        if self._await_exit(child, deadline):
            return
        if cooperative:
            kill(greenlet)
            gevent.sleep(0)
            if self._await_exit(child, time.monotonic()):
                return
        waited = time.monotonic() - started
        child.abandoned = child.incarnation
        child.greenlet = None
        self._unstopped.append(Unstopped(self._path, child.id, child.incarnation, waited))
        assert self._emit is not None
        self._emit.emit(
            "warning",
            "child_unstopped",
            child_id=child.id,
            incarnation=child.incarnation,
            waited=round(waited, 6),
            shutdown=policy.value if isinstance(policy, Shutdown) else policy,
        )

    def _await_exit(self, child: _Child, deadline: float | None) -> bool:
        """Handle events until *child*'s current incarnation has exited (True) or *deadline*
        passed (False). Other children's exits are deferred to the main loop."""
        incarnation = child.incarnation
        for index, item in enumerate(self._deferred):
            if item[0] is child and item[1] == incarnation:
                del self._deferred[index]
                self._on_exit(*item)
                break
        while child.greenlet is not None and child.incarnation == incarnation:
            cap = self._stop_deadline  # a stop(timeout) issued meanwhile tightens the wait
            if cap is not None and (deadline is None or cap < deadline):
                deadline = cap
            item = self._next_event(deadline)
            if item is None:
                return False
            if item is _WAKE:
                continue
            if item[0] is child and item[1] == incarnation:
                self._on_exit(*item)
            else:
                self._deferred.append(item)
        self._collect_sub_report(child)
        return True

    def _collect_sub_report(self, child: _Child) -> None:
        report = child.sub_report
        if report is not None and report.unstopped:
            self._unstopped.extend(report.unstopped)
        child.sub_report = None

    # ------------------------------------------------------------------ dynamic API bodies

    def _do_start_child(self, spec: ChildSpec, context: contextvars.Context) -> ChildInfo:
        existing = self._children.get(spec.id)
        if existing is not None:
            if existing.greenlet is not None:
                raise ChildAlreadyStartedError(self._name, spec.id)
            raise ChildAlreadyPresentError(self._name, spec.id)
        child = self._add_and_start(spec, context)
        return self._info(child)

    def _find(self, child_id: ChildId) -> _Child:
        child = self._children.get(child_id)
        if child is None:
            raise ChildNotFoundError(self._name, child_id)
        return child

    def _do_terminate_child(self, child_id: ChildId) -> ChildInfo:
        child = self._find(child_id)
        if child.greenlet is not None:
            self._shutdown_child(child, None)
        child.status = "terminated"
        if child.spec.restart is Restart.TEMPORARY:
            self._children.pop(child.id, None)
        return self._info(child)

    def _do_restart_child(self, child_id: ChildId) -> ChildInfo:
        child = self._find(child_id)
        if child.greenlet is not None:
            raise ChildRunningError(self._name, child_id, "restarted")
        if child.status == "restarting":
            raise ChildRestartingError(self._name, child_id, "restarted")
        try:
            self._start_synchronously(child)
        except _StartFailed:
            child.status = "terminated"
            raise
        return self._info(child)

    def _do_delete_child(self, child_id: ChildId) -> None:
        child = self._find(child_id)
        if child.greenlet is not None:
            raise ChildRunningError(self._name, child_id, "deleted")
        if child.status == "restarting":
            raise ChildRestartingError(self._name, child_id, "deleted")
        del self._children[child_id]
