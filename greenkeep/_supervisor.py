"""
`Supervisor`: OTP's supervisor on greenlets (specs, strategies, the dynamic child API).

The lifecycle and the manager loop live in `greenkeep._manager`, what follows an exit in
`greenkeep._rules`, bounded stopping in `greenkeep._stopping`.
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from greenkeep._check import check_choice
from greenkeep._config import make_config
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
from greenkeep._exits import REASON, ExitRecord, classify
from greenkeep._heartbeat import HeartbeatMonitor
from greenkeep._intensity import _Unlimited
from greenkeep._manager import Manager, StartFailed
from greenkeep._ops import Op, Wait
from greenkeep._records import Record
from greenkeep._reports import ChildCounts, ChildInfo
from greenkeep._rules import (
    Action,
    AutoShutdown,
    ExitPlan,
    Strategy,
    child_state,
    plan_exit,
    plan_restart,
)
from greenkeep._snapshot import charged
from greenkeep._spec import (
    ChildId,
    ChildSpec,
    Restart,
    ShutdownPolicy,
    is_subtree,
    validate_specs,
)
from greenkeep._states import DELAYED, NEW, RESTARTING, RUNNING, STOPPING, TERMINATED
from greenkeep._stopping import Stoppable
from greenkeep._worker import Channel, disown, spawn

__all__ = ["Supervisor"]


class _Child(Record):
    """A supervisor's record of one child."""

    __slots__ = ("delayed_group", "last_exit", "spec")

    def __init__(self, spec: ChildSpec, channel: Channel, context: contextvars.Context) -> None:
        target: Any = spec.target
        runnable: Callable[..., object] = target.run if is_subtree(target) else target
        super().__init__(spec.id, runnable, spec.args, spec.kwargs, channel, context)
        self.spec = spec
        self.last_exit: ExitRecord | None = None
        self.delayed_group: list[ChildId] | None = None

    def info(self) -> ChildInfo:
        spec = self.spec
        kind = "supervisor" if spec.is_supervisor else "worker"
        return ChildInfo(
            self.id,
            self.status,
            self.incarnation,
            self.restarts,
            spec.restart.value,
            kind,
            self.last_exit,
        )


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
        clock: Seconds as a float, for the restart window, backoff, heartbeats and log
            summaries; default ``time.monotonic``. Tests pass a
            `greenkeep.testing.ManualClock`. Stopping and ``ready_timeout`` always wait in
            real time (gevent has no virtual time).
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
        config = make_config(
            "supervisor",
            problems,
            name=name,
            max_restarts=max_restarts,
            period=period,
            logger=logger,
            subscribers=subscribers,
            clock=clock,
            log_summary_interval=log_summary_interval,
            random_source=random,
        )
        owner = config.owner
        strategy_e = check_choice(Strategy, strategy, owner, "strategy", problems)
        auto_e = check_choice(AutoShutdown, auto_shutdown, owner, "auto_shutdown", problems)
        specs: list[ChildSpec] = []
        try:
            specs = validate_specs(owner, children)
        except InvalidSpecError as exc:
            problems.extend(exc.problems)
        if auto_e is not None:
            problems.extend(_significance_problems(owner, specs, auto_e))
        if problems:
            raise InvalidSpecError(problems)
        assert strategy_e is not None and auto_e is not None
        self._strategy: Strategy = strategy_e
        self._auto_shutdown: AutoShutdown = auto_e
        self._specs: list[ChildSpec] = specs
        super().__init__(config)

    def _reset(self) -> None:
        super()._reset()
        self._children: dict[ChildId, _Child] = {}
        self._monitor_of: dict[float, HeartbeatMonitor] = {}
        self._active = 0

    # ------------------------------------------------------------------ introspection

    @property
    def strategy(self) -> Strategy:
        """The restart strategy."""
        return self._strategy

    def which_children(self) -> list[ChildInfo]:
        """
        Every child in start order, running or not. Works in every state (after a stop it
        shows how the children ended; before a start, the specs). Never waits for the
        manager; over many children it yields afterwards (see `snapshot`).
        """
        if self._state == NEW:
            return [
                _Child(spec, self._mailbox.channel, self._context).info() for spec in self._specs
            ]
        return charged(lambda: [child.info() for child in self._children.values()])

    def count_children(self) -> ChildCounts:
        """OTP's ``count_children``. O(1); never blocks."""
        if self._state == NEW:
            specs = self._specs
            supervisors = sum(1 for spec in specs if spec.is_supervisor)
            return ChildCounts(len(specs), 0, supervisors, len(specs) - supervisors)
        children = self._children.values()
        supervisors = sum(1 for child in children if child.spec.is_supervisor)
        return ChildCounts(
            len(self._children), self._active, supervisors, len(self._children) - supervisors
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
        if self._state == NEW:
            for spec in self._specs:
                if spec.id == child_id:
                    return spec
        raise ChildNotFoundError(self._name, child_id)

    def snapshot(self) -> dict[str, Any]:
        """
        A JSON-serialisable view of this supervisor and, recursively, of its children:
        state, restart window, delivery counters (``events``), and per child its state
        (``running``, ``restarting``, ``delayed``, ``stopped``, ``failed``), incarnation,
        restart count, uptime and last exit reason. Works in every state; never waits for
        the manager. O(children): a call that worked for more than a millisecond yields
        afterwards for twice as long, so polling it cannot starve the server.
        """
        return charged(self._build_snapshot)

    def _build_snapshot(self) -> dict[str, Any]:
        now = self._config.clock()
        snap = self._header(now)
        snap["strategy"] = self._strategy.value
        if self._state == NEW:
            children = [_Child(spec, self._mailbox.channel, self._context) for spec in self._specs]
        else:
            children = list(self._children.values())
        snap["children"] = [self._entry(child, now) for child in children]
        return snap

    @staticmethod
    def _entry(child: _Child, now: float) -> dict[str, Any]:
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
        if isinstance(target, Manager) and child.incarnation:
            entry["supervisor"] = target.snapshot()
        return entry

    def __repr__(self) -> str:
        return (
            f"<Supervisor {self._path!r} {self._state} strategy={self._strategy.value} "
            f"children={len(self._children) or len(self._specs)}>"
        )

    # ------------------------------------------------------------------ dynamic children

    def start_child(self, spec: ChildSpec) -> ChildInfo:
        """
        Add *spec* at the end of the start order and start it (waiting as `start` does).
        The child runs in a copy of the caller's ``contextvars`` context. A child that exits
        at once is handled like any exit (a temporary one is then gone).

        Raises:
            ChildAlreadyStartedError: A running child has this id.
            ChildAlreadyPresentError: A terminated child with this id is kept.
            ChildStartError: It failed before it was ready (``ready_timeout``); not added.
            SupervisorNotRunningError: The supervisor is not running.
            InvalidSpecError: *spec* is not a `ChildSpec`, or is significant under
                ``auto_shutdown="never"``.
        """
        owner = f"{self._owner}.start_child()"
        if not isinstance(spec, ChildSpec):
            raise InvalidSpecError([SpecProblem(owner, "spec", "a ChildSpec", spec)])
        problems = _significance_problems(owner, [spec], self._auto_shutdown)
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
            ChildStartError: It failed before it was ready (``ready_timeout``).
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

    def _records(self) -> Iterator[Record]:
        return iter(list(self._children.values()))

    def _started_fields(self) -> dict[str, object]:
        return {"strategy": self._strategy.value, "children": len(self._children)}

    def _policy_of(self, record: _Child) -> ShutdownPolicy:
        return record.spec.shutdown

    def _subtree_of(self, record: _Child) -> Stoppable | None:
        target = record.spec.target
        return target if isinstance(target, Manager) else None

    def _start_op(self) -> Op:
        for spec in self._specs:
            if self._end_reason is not None:
                return  # a stop arrived while starting: start nothing more
            yield from self._start_one(self._add(spec, self._context))

    def _add(self, spec: ChildSpec, context: contextvars.Context) -> _Child:
        child = _Child(spec, self._mailbox.channel, context)
        if spec.heartbeat is not None and spec.heartbeat not in self._monitor_of:
            monitor = HeartbeatMonitor(spec.heartbeat, self._config.clock())
            self._monitor_of[spec.heartbeat] = monitor
            self._monitors.append(monitor)
        self._children[spec.id] = child
        return child

    def _spawn(self, child: _Child) -> None:
        child.incarnation += 1
        child.stop_requested = False
        child.stop_event = None
        child.started_at = self._config.clock()
        child.status = RUNNING
        child.hb_missed = 0
        child.greenlet = spawn(child, child.incarnation)
        self._active += 1
        if child.spec.heartbeat is not None:
            self._monitor_of[child.spec.heartbeat].started(child)

    def _start_one(self, child: _Child) -> Op:
        """
        Start *child* in order: without ``ready_timeout`` it counts as started once it ran
        up to its first yield (or ended: its exit is then handled like any other); with it,
        once it called `greenkeep.ready`, and failing or timing out before is a start
        failure (`StartFailed`).
        """
        self._spawn(child)
        incarnation = child.incarnation
        self._reporter.child_started(child.id, incarnation)
        timeout = child.spec.ready_timeout
        if timeout is None:
            yield Wait(marker=self._mailbox.turn_marker(), allow=child)
            return
        deadline = None if timeout == math.inf else time.monotonic() + timeout
        child.awaiting_ready = True
        try:
            outcome = yield Wait(ready=(child, incarnation), capture=child, deadline=deadline)
        finally:
            child.awaiting_ready = False
        if outcome is True:
            return
        if outcome is False:  # not ready in time
            if self._end_reason is not None:
                return  # stopping anyway: the stop deals with it
            yield from self._stop_child(child)
            raise StartFailed(ChildStartError(self._path, child.id, None))
        _, exit_incarnation, exc = outcome  # it exited before it was ready
        kind = classify(exc, child.stop_requested)
        if not kind.is_abnormal or exit_incarnation != incarnation:
            op = self._handle_exit(*outcome)
            if op is not None:
                yield from op
            return
        self._retirees.append(child.greenlet)
        child.greenlet = None
        child.status = TERMINATED
        self._active -= 1
        now = self._config.clock()
        child.last_exit = ExitRecord.of(child.id, incarnation, kind, exc, now, True)
        self._reporter.child_exited(
            child.id, incarnation, kind, exc, Action.START_FAILED.value, "", now, damp=False
        )
        raise StartFailed(ChildStartError(self._path, child.id, child.last_exit))

    def _handle_exit(self, child: _Child, incarnation: int, exc: Any) -> Op | None:
        """Handle one posted exit by the rules (`greenkeep._rules.plan_exit`)."""
        if child.incarnation != incarnation or child.greenlet is None:
            self._late_exit(child, incarnation, REASON[classify(exc, True)])
            return None
        self._retirees.append(child.greenlet)  # it parked after posting: let it end
        child.greenlet = None
        self._active -= 1
        spec = child.spec
        if spec.heartbeat is not None:
            self._monitor_of[spec.heartbeat].ended(child)
        now = self._config.clock()
        plan = plan_exit(
            spec.restart,
            exc,
            stop_requested=child.stop_requested,
            heartbeat_killed=child.hb_missed == incarnation,
            stopping=child.status == STOPPING or self._end_reason is not None,
            window=self._intensity,
            now=now,
            backoff=spec.backoff,
            attempt=child.backoff_attempt,
            uptime=now - child.started_at,
            uniform=self._config.random,
            significant=spec.significant,
            auto_shutdown=self._auto_shutdown,
            significant_running=self._significant_running,
        )
        gave_up = plan.action is Action.GIVE_UP
        child.last_exit = ExitRecord.of(child.id, incarnation, plan.kind, exc, now, gave_up)
        logged = self._reporter.child_exited(
            child.id, incarnation, plan.kind, exc, plan.action.value, spec.restart.value, now
        )
        self._collect_subtree(child)
        if gave_up:
            child.status = TERMINATED
            self._give_up(child.last_exit)
            return None
        if plan.end is not None:
            self._end(plan.end)
        if plan.action is Action.RESTART:
            return self._restart(child, plan, logged)
        if child.status != STOPPING:  # else the stop that is under way decides
            child.status = TERMINATED
            if plan.drop:
                self._children.pop(child.id, None)
        return None

    def _significant_running(self) -> bool:
        return any(c.spec.significant and c.greenlet is not None for c in self._children.values())

    def _collect_subtree(self, child: _Child) -> None:
        # A child supervisor that ended hands up what it could not stop.
        target = child.spec.target
        if isinstance(target, Manager):
            report = target.report
            if report is not None and report.unstopped:
                self._stopper.unstopped.extend(report.unstopped)

    def _restart(self, child: _Child, plan: ExitPlan, logged: bool) -> Op | None:
        if plan.attempt:
            child.backoff_attempt = plan.attempt
        if self._strategy is Strategy.ONE_FOR_ONE:
            if child.spec.backoff is not None:
                child.delayed_group = None
                self._delay(child, plan, logged)
                return None
            child.restarts += 1
            self._spawn(child)
            self._reporter.restarted(
                child.id, child.incarnation, self._intensity.in_window, logged=logged
            )
            return None
        return self._group_restart(child, plan, logged)

    def _group_restart(self, child: _Child, plan: ExitPlan, logged: bool) -> Op:
        """one_for_all / rest_for_one: stop the affected siblings newest first, drop the
        temporary ones, start the rest in order (after the failed child's delay, if any)."""
        children = self._children
        group = plan_restart(
            self._strategy,
            list(children),
            child.id,
            lambda k: children[k].greenlet is not None,
            lambda k: children[k].spec.restart is Restart.TEMPORARY,
        )
        for key in group.start:
            children[key].status = RESTARTING
        for key in group.stop:
            yield from self._stop_child(children[key])
        for key in group.drop:
            children.pop(key, None)
        if child.spec.backoff is not None and self._end_reason is None:
            for key in group.start:
                children[key].status = DELAYED
            child.delayed_group = list(group.start)
            self._delay(child, plan, logged)
            return
        self._start_group(list(group.start))

    def _delay(self, child: _Child, plan: ExitPlan, logged: bool) -> None:
        child.status = DELAYED
        self._timers.delay(child, self._config.clock() + plan.delay)
        self._reporter.restart_delayed(
            child.id, child.incarnation, plan.delay, plan.attempt, logged
        )

    def _start_group(self, keys: list[ChildId]) -> None:
        children = self._children
        for key in keys:
            sibling = children.get(key)
            if sibling is None or sibling.status not in (RESTARTING, DELAYED):
                continue
            if self._end_reason is not None:
                break  # a stop arrived mid-restart: start nothing more
            sibling.restarts += 1
            self._spawn(sibling)
            self._reporter.restarted(sibling.id, sibling.incarnation, self._intensity.in_window)
        for key in keys:
            sibling = children.get(key)
            if sibling is not None and sibling.status in (RESTARTING, DELAYED):
                sibling.status = TERMINATED

    def _restart_due(self, record: _Child) -> None:
        group = record.delayed_group
        record.delayed_group = None
        self._start_group(group if group is not None else [record.id])

    # ------------------------------------------------------------------ stopping

    def _stop_op(self) -> Op:
        running = []
        for child in reversed(list(self._children.values())):
            if child.greenlet is not None:
                child.status = STOPPING
                running.append(child)
            elif child.status in (RESTARTING, DELAYED):
                self._timers.cancel(child)
                child.status = TERMINATED  # a pending (delayed) restart is cancelled
        yield from self._stopper.in_order(running)
        for child in running:
            self._stopped(child, TERMINATED)

    def _stop_child(self, child: _Child) -> Op:
        """Stop one running child by its policy; report it if it outlives it."""
        if child.greenlet is None:
            return
        previous = child.status
        child.status = STOPPING
        yield from self._stopper.together((child,))
        self._stopped(child, RESTARTING if previous == RESTARTING else TERMINATED)

    def _stopped(self, child: _Child, status: Any) -> None:
        child.status = status
        if status == TERMINATED and child.spec.restart is Restart.TEMPORARY:
            self._children.pop(child.id, None)

    def _abandon(self, record: Record) -> None:
        super()._abandon(record)
        self._active -= 1

    def _disown(self) -> int:
        greenlets = []
        for child in self._children.values():
            greenlets += [child.greenlet, child.abandoned_greenlet]
            child.greenlet = child.abandoned_greenlet = None
            child.status = TERMINATED
        self._active = 0
        return disown(greenlets)

    # ------------------------------------------------------------------ dynamic API bodies

    def _do_start_child(self, spec: ChildSpec, context: contextvars.Context) -> Op:
        existing = self._children.get(spec.id)
        if existing is not None:
            if existing.greenlet is not None:
                raise ChildAlreadyStartedError(self._name, spec.id)
            raise ChildAlreadyPresentError(self._name, spec.id)
        child = self._add(spec, context)
        try:
            yield from self._start_one(child)
        except StartFailed:
            self._children.pop(spec.id, None)  # OTP does not add a child that failed
            raise
        return child.info()

    def _find(self, child_id: ChildId) -> _Child:
        child = self._children.get(child_id)
        if child is None:
            raise ChildNotFoundError(self._name, child_id)
        return child

    def _do_terminate_child(self, child_id: ChildId) -> Op:
        child = self._find(child_id)
        self._timers.cancel(child)
        if child.greenlet is not None:
            yield from self._stop_child(child)
        self._stopped(child, TERMINATED)
        return child.info()

    def _do_restart_child(self, child_id: ChildId) -> Op:
        child = self._find(child_id)
        if child.greenlet is not None:
            raise ChildRunningError(self._name, child_id, "restarted")
        if child.status in (RESTARTING, DELAYED):
            raise ChildRestartingError(self._name, child_id, "restarted")
        try:
            yield from self._start_one(child)
        except StartFailed:
            child.status = TERMINATED
            raise
        return child.info()

    def _do_delete_child(self, child_id: ChildId) -> None:
        child = self._find(child_id)
        if child.greenlet is not None:
            raise ChildRunningError(self._name, child_id, "deleted")
        if child.status in (RESTARTING, DELAYED):
            raise ChildRestartingError(self._name, child_id, "deleted")
        del self._children[child_id]


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
