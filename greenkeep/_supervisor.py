"""
`Supervisor`: OTP's supervisor on greenlets (specs, strategies, the dynamic child API).

The lifecycle, the manager loop and bounded stopping live in `greenkeep._manager`.
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import gevent

from greenkeep._errors import (
    ChildAlreadyPresentError,
    ChildAlreadyStartedError,
    ChildNotFoundError,
    ChildRestartingError,
    ChildRunningError,
    ChildStartError,
    InvalidSpecError,
    SpecProblem,
)
from greenkeep._events import EventLogger, Subscriber
from greenkeep._exits import Decision, ExitKind, ExitRecord, classify, decide
from greenkeep._heartbeat import HeartbeatMonitor
from greenkeep._intensity import _Unlimited
from greenkeep._manager import Manager, Record, StartFailed, child_state
from greenkeep._reports import ChildCounts, ChildInfo
from greenkeep._spec import ChildId, ChildSpec, Restart, validate_specs
from greenkeep._strategy import AutoShutdown, Strategy, plan_restart
from greenkeep._worker import WAKE, spawn

__all__ = ["Supervisor"]

E = TypeVar("E")


class _Child(Record):
    """A supervisor's record of one child."""

    __slots__ = ("delayed_group", "last_exit", "spec")

    def __init__(
        self,
        spec: ChildSpec,
        supervisor: Supervisor,
        post: Callable[[Any], None],
        context: contextvars.Context,
    ) -> None:
        target = spec.target
        runnable: Callable[..., object] = target.run if isinstance(target, Manager) else target
        super().__init__(spec.id, supervisor, runnable, spec.args, spec.kwargs, post, context)
        self.spec = spec
        self.last_exit: ExitRecord | None = None
        self.delayed_group: list[ChildId] | None = None


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


class Supervisor(Manager):
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
        clock: Seconds as a float, for the restart window and log summaries; default
            ``time.monotonic``. Tests pass a `greenkeep.testing.ManualClock`.
        log_summary_interval: Crash-storm damping: after the first crash of a kind (type
            and raising line), further ones are summarized at most once per this many
            seconds. ``None`` logs every crash in full. Default 1.0.
        random: Uniform numbers in [0, 1) for backoff jitter; default ``random.random``.

    Raises:
        InvalidSpecError: Listing every invalid argument; nothing was started.

    The lifecycle is gevent's: `start`, `join`, `stop`, or ``with Supervisor(...) as sup:``.
    """

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
        log_summary_interval: float | None = 1.0,
        random: Callable[[], float] | None = None,
    ) -> None:
        problems: list[SpecProblem] = []
        super().__init__(
            random_source=random,
            name=name,
            max_restarts=max_restarts,
            period=period,
            logger=logger,
            subscribers=subscribers,
            clock=clock,
            log_summary_interval=log_summary_interval,
            problems=problems,
        )
        owner = self._owner
        strategy_e = _enum_value(Strategy, strategy, owner, "strategy", problems)
        auto_e = _enum_value(AutoShutdown, auto_shutdown, owner, "auto_shutdown", problems)
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
        self._strategy: Strategy = strategy_e
        self._auto_shutdown: AutoShutdown = auto_e
        self._specs: list[ChildSpec] = specs
        self._children: dict[ChildId, _Child] = {}

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

    def _reset(self) -> None:
        super()._reset()
        self._children = {}
        self._monitor_of: dict[float, HeartbeatMonitor] = {}

    def _monitor_for(self, interval: float) -> HeartbeatMonitor:
        monitor = self._monitor_of.get(interval)
        if monitor is None:
            monitor = self._monitor_of[interval] = HeartbeatMonitor(interval, self._clock())
            self._monitors.append(monitor)
        return monitor

    # ------------------------------------------------------------------ introspection

    @property
    def strategy(self) -> Strategy:
        """The restart strategy."""
        return self._strategy

    def which_children(self) -> list[ChildInfo]:
        """
        Every child in start order, running or not. Never blocks; works in every state
        (after a stop it shows how the children ended; before a start, the specs).
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

    def _snapshot_fields(self) -> dict[str, Any]:
        return {"strategy": self._strategy.value}

    def _snapshot_children(self, now: float) -> list[dict[str, Any]]:
        children = []
        for child in self._children.values():
            reason = None if child.last_exit is None else child.last_exit.reason
            entry: dict[str, Any] = {
                "id": child.id,
                "type": "supervisor" if child.spec.is_supervisor else "worker",
                "state": child_state(child.status, reason),
                "incarnation": child.incarnation,
                "restarts": child.restarts,
                "uptime": round(now - child.started_at, 6) if child.greenlet is not None else None,
                "last_exit": reason,
            }
            target = child.spec.target
            if isinstance(target, Manager):
                entry["supervisor"] = target.snapshot()
            children.append(entry)
        if self._state == "new":
            return [
                {
                    "id": spec.id,
                    "type": "supervisor" if spec.is_supervisor else "worker",
                    "state": "stopped",
                    "incarnation": 0,
                    "restarts": 0,
                    "uptime": None,
                    "last_exit": None,
                }
                for spec in self._specs
            ]
        return children

    def __repr__(self) -> str:
        return (
            f"<Supervisor {self._path!r} {self._state} strategy={self._strategy.value} "
            f"children={len(self._children) or len(self._specs)}>"
        )

    # ------------------------------------------------------------------ dynamic children

    def start_child(self, spec: ChildSpec) -> ChildInfo:
        """
        Add *spec* at the end of the start order and start it (waiting as `start` does).
        The child runs in a copy of the caller's ``contextvars`` context.

        Raises:
            ChildAlreadyStartedError: A running child has this id.
            ChildAlreadyPresentError: A terminated child with this id is kept.
            ChildStartError: It exited abnormally before it was ready; it is not added.
            SupervisorNotRunningError: The supervisor is not running.
            InvalidSpecError: *spec* is not a `ChildSpec`, or is significant under
                ``auto_shutdown="never"``.
        """
        owner = f"{self._owner}.start_child()"
        if not isinstance(spec, ChildSpec):
            raise InvalidSpecError([SpecProblem(owner, "spec", "a ChildSpec", spec)])
        problems = self._significance_problems(owner, [spec], self._auto_shutdown)
        if problems:
            raise InvalidSpecError(problems)
        context = contextvars.copy_context()
        return self._call("start a child", lambda: self._do_start_child(spec, context))

    def terminate_child(self, child_id: ChildId) -> ChildInfo:
        """
        Stop *child_id* (by its shutdown policy) and keep its spec (a temporary child's is
        dropped). Returns how it ended. Terminating a terminated child does nothing.

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

    # ================================================================== the manager
    # Everything below runs in the manager greenlet only.

    def _records(self) -> list[Record]:
        return list(self._children.values())

    def _started_fields(self) -> dict[str, object]:
        return {"strategy": self._strategy.value, "children": len(self._children)}

    def _start_children(self) -> None:
        for spec in self._specs:
            self._add_and_start(spec, self._context, keep_on_failure=True)
            if self._end_reason is not None:
                break

    def _on_exit(self, child: _Child, incarnation: int, exc: BaseException | None) -> None:
        """Handle one posted exit."""
        if child.incarnation != incarnation or child.greenlet is None:
            self._ignored_exit(child, incarnation, exc)
            return
        # stop_requested is only set while the greenlet is alive, so an exit counts as a
        # shutdown only if the request came first; an exit that raced a request keeps its own
        # reason but is not restarted (status "stopping").
        kind = classify(exc, child.stop_requested)
        self._retirees.append(child.greenlet)  # it parked after posting: let it end
        spec = child.spec
        if spec.heartbeat is not None:
            self._monitor_of[spec.heartbeat].ended(child)
            if child.hb_missed == incarnation and kind is ExitKind.NORMAL:
                kind = ExitKind.HEARTBEAT_MISSED  # our GreenletExit, not someone else's
        child.greenlet = None
        now = self._clock()
        if kind is ExitKind.INTERRUPTED:
            decision = Decision.DROP if spec.restart is Restart.TEMPORARY else Decision.KEEP
            action = "stop_supervisor"
        elif child.status == "stopping" or self._end_reason is not None:
            decision = Decision.DROP if spec.restart is Restart.TEMPORARY else Decision.KEEP
            action = "none"
        else:
            decision = decide(spec.restart, kind)
            action = decision.value
        exceeded = decision is Decision.RESTART and self._intensity.record(now)
        if exceeded:
            action = "give_up"
        child.last_exit = ExitRecord.of(child.id, incarnation, kind, exc, now, exceeded)
        logged = self._log_exit(child, incarnation, kind, exc, action, spec.restart.value)
        self._collect_sub_report(child)
        if kind is ExitKind.INTERRUPTED and self._end_reason is None:
            self._end_reason = "interrupted"
        if exceeded:
            child.status = "terminated"
            self._give_up(child, child.last_exit)
        elif decision is Decision.RESTART:
            self._restart(child, logged)
        else:
            self._not_restarted(child, decision)

    def _not_restarted(self, child: _Child, decision: Decision) -> None:
        if child.status == "stopping":
            return  # _shutdown_child decides what it becomes
        child.status = "terminated"
        if decision is Decision.DROP:
            self._children.pop(child.id, None)
        if (
            child.spec.significant
            and self._auto_shutdown is not AutoShutdown.NEVER
            and self._end_reason is None
            and (
                self._auto_shutdown is AutoShutdown.ANY_SIGNIFICANT
                or not any(
                    c.spec.significant and c.greenlet is not None for c in self._children.values()
                )
            )
        ):
            self._end_reason = "auto_shutdown"

    def _spawn(self, child: _Child) -> None:
        child.incarnation += 1
        child.stop_requested = False
        child.stop_event = None
        child.stop_deadline = None
        child.sub_report = None
        child.started_at = self._clock()
        child.status = "running"
        child.hb_missed = 0
        child.greenlet = spawn(child, child.incarnation)
        if child.spec.heartbeat is not None:
            self._monitor_of[child.spec.heartbeat].started(child)

    def _log_restarted(self, child: _Child, logged: bool = True) -> None:
        fields = {
            "child_id": child.id,
            "incarnation": child.incarnation,
            "restarts_in_period": self._intensity.in_window,
        }
        if logged:
            self._emit.emit("info", "child_restarted", **fields)
        elif self._emit.has_subscribers:  # damped in the log, counted by the summary
            self._emit.deliver("info", "child_restarted", {**fields, "summarized": True})

    def _restart(self, child: _Child, logged: bool) -> None:
        backoff = child.spec.backoff
        delay, attempt = 0.0, 0
        if backoff is not None:
            attempt = self._backoff_attempt(child, backoff, self._clock())
            delay = backoff.delay(attempt, self._random())
        if self._strategy is Strategy.ONE_FOR_ONE:
            if backoff is not None:
                child.delayed_group = None
                self._schedule_restart(child, delay, attempt)
                return
            child.restarts += 1
            self._spawn(child)
            self._log_restarted(child, logged)
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
            self._shutdown_child(children[key], self._stop_deadline)
        for key in plan.drop:
            children.pop(key, None)
        if backoff is not None and self._end_reason is None:
            for key in plan.start:
                children[key].status = "delayed"
            child.delayed_group = list(plan.start)
            self._schedule_restart(child, delay, attempt)
            return
        self._start_group(list(plan.start))

    def _start_group(self, keys: list[ChildId]) -> None:
        children = self._children
        for key in keys:
            sibling = children.get(key)
            if sibling is None or sibling.status not in ("restarting", "delayed"):
                continue
            if self._end_reason is not None:
                break  # a stop arrived mid-restart: start nothing more
            sibling.restarts += 1
            self._spawn(sibling)
            self._log_restarted(sibling)
        for key in keys:
            sibling = children.get(key)
            if sibling is not None and sibling.status in ("restarting", "delayed"):
                sibling.status = "terminated"

    def _restart_delayed(self, record: Record) -> None:
        assert isinstance(record, _Child)
        group = record.delayed_group
        record.delayed_group = None
        self._start_group(group if group is not None else [record.id])

    def _add_and_start(
        self, spec: ChildSpec, context: contextvars.Context, keep_on_failure: bool = False
    ) -> _Child:
        child = _Child(spec, self, self._mailbox.put_nowait, context)
        if spec.heartbeat is not None:
            self._monitor_for(spec.heartbeat)  # created with the first child that needs it
        self._children[spec.id] = child
        try:
            self._start_synchronously(child)
        except StartFailed:
            if not keep_on_failure:  # start_child: OTP does not add a child that failed
                self._children.pop(spec.id, None)
            raise
        return child

    def _start_synchronously(self, child: _Child) -> None:
        """Start *child* and wait until it is ready (or has run up to its first yield)."""
        timeout = child.spec.ready_timeout
        self._spawn(child)
        incarnation = child.incarnation
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
                    raise StartFailed(ChildStartError(self._path, child.id, None))
                if item is WAKE:
                    continue
                other, other_inc, exc = item
                if other is not child or other_inc != incarnation:
                    self._defer(item)
                    continue
                kind = classify(exc, child.stop_requested)
                if kind.is_abnormal:
                    self._retirees.append(child.greenlet)
                    child.greenlet = None
                    child.status = "terminated"
                    record = ExitRecord.of(child.id, incarnation, kind, exc, self._clock(), True)
                    child.last_exit = record
                    self._log_exit(child, incarnation, kind, exc, "start_failed", "")
                    raise StartFailed(ChildStartError(self._path, child.id, record))
                self._on_exit(other, other_inc, exc)
                return
        finally:
            child.awaiting_ready = False

    # ------------------------------------------------------------------ stopping

    def _stop_all(self) -> None:
        for child in reversed(list(self._children.values())):
            if child.greenlet is not None:
                self._shutdown_child(child, self._stop_deadline)
            elif child.status in ("restarting", "delayed"):
                child.status = "terminated"  # a pending (delayed) restart is cancelled

    def _shutdown_child(self, child: _Child, cap: float | None) -> None:
        """Stop one running child by its policy (and *cap*); report it if it outlives it."""
        if child.greenlet is None:
            return
        previous = child.status
        child.status = "stopping"
        try:
            self._stop_records([child], lambda r: child.spec.shutdown, cap)
        finally:
            if previous == "restarting":
                child.status = "restarting"
            else:
                child.status = "terminated"
                if child.spec.restart is Restart.TEMPORARY:
                    self._children.pop(child.id, None)

    # ------------------------------------------------------------------ dynamic API bodies

    def _do_start_child(self, spec: ChildSpec, context: contextvars.Context) -> ChildInfo:
        existing = self._children.get(spec.id)
        if existing is not None:
            if existing.greenlet is not None:
                raise ChildAlreadyStartedError(self._name, spec.id)
            raise ChildAlreadyPresentError(self._name, spec.id)
        return self._info(self._add_and_start(spec, context))

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
        if child.status in ("restarting", "delayed"):
            raise ChildRestartingError(self._name, child_id, "restarted")
        try:
            self._start_synchronously(child)
        except StartFailed:
            child.status = "terminated"
            raise
        return self._info(child)

    def _do_delete_child(self, child_id: ChildId) -> None:
        child = self._find(child_id)
        if child.greenlet is not None:
            raise ChildRunningError(self._name, child_id, "deleted")
        if child.status in ("restarting", "delayed"):
            raise ChildRestartingError(self._name, child_id, "deleted")
        del self._children[child_id]
