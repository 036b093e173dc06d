"""
One run of a `Supervisor`: its children, what follows each exit (the rules of
`greenkeep._rules`, carried out), the strategies' restarts, ordered start and stop, and the
bodies of the dynamic child API. Everything here runs in the manager greenlet.
"""

from __future__ import annotations

import contextvars
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from greenkeep._config import Config
from greenkeep._errors import (
    ChildAlreadyPresentError,
    ChildAlreadyStartedError,
    ChildNotFoundError,
    ChildRestartingError,
    ChildRunningError,
    ChildStartError,
)
from greenkeep._exits import REASON, ExitRecord, classify
from greenkeep._heartbeat import HeartbeatMonitor
from greenkeep._launch import spawn
from greenkeep._ops import Op, StartFailed, Wait
from greenkeep._records import Record
from greenkeep._reports import ChildInfo
from greenkeep._rules import Action, AutoShutdown, ExitPlan, Strategy, plan_exit, plan_restart
from greenkeep._run import Run
from greenkeep._spec import ChildId, ChildSpec, Restart, ShutdownPolicy, Subtree, is_subtree
from greenkeep._states import DELAYED, RESTARTING, RUNNING, STOPPING, TERMINATED, ChildStatus
from greenkeep._worker import Channel, disown

__all__ = ["Child", "SupervisorRun"]


class Child(Record):
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
        """The child as `Supervisor.which_children` shows it."""
        spec = self.spec
        kind = "supervisor" if spec.is_supervisor else "worker"
        restart = spec.restart.value
        return ChildInfo(
            self.id, self.status, self.incarnation, self.restarts, restart, kind, self.last_exit
        )


class SupervisorRun(Run):
    """
    One run of a `Supervisor`.

    Attributes:
        children: The children by id, in start order.
        active: How many children run an incarnation now.
        supervisors: How many children are supervisors.
    """

    def __init__(
        self,
        config: Config,
        path: str,
        context: contextvars.Context,
        specs: Sequence[ChildSpec],
        strategy: Strategy,
        auto_shutdown: AutoShutdown,
    ) -> None:
        super().__init__(config, path, context)
        self.specs = list(specs)
        self.strategy = strategy
        self.auto_shutdown = auto_shutdown
        self.children: dict[ChildId, Child] = {}
        self.monitor_of: dict[float, HeartbeatMonitor] = {}
        self.active = 0
        self.supervisors = 0

    def records(self) -> Iterator[Record]:
        return iter(list(self.children.values()))

    def started_fields(self) -> dict[str, object]:
        return {"strategy": self.strategy.value, "children": len(self.children)}

    def policy_of(self, record: Child) -> ShutdownPolicy:
        return record.spec.shutdown

    def subtree_of(self, record: Child) -> Subtree | None:
        target = record.spec.target
        return target if is_subtree(target) else None  # type: ignore[return-value]

    # ------------------------------------------------------------------ starting

    def start_op(self) -> Op:
        for spec in self.specs:
            if self.end_reason is not None:
                return  # a stop arrived while starting: start nothing more
            yield from self.start_one(self.add(spec, self.context))

    def add(self, spec: ChildSpec, context: contextvars.Context) -> Child:
        """Add a child (not started) at the end of the start order."""
        child = Child(spec, self.channel, context)
        if spec.heartbeat is not None and spec.heartbeat not in self.monitor_of:
            monitor = HeartbeatMonitor(spec.heartbeat, self.clock())
            self.monitor_of[spec.heartbeat] = monitor
            self.monitors.append(monitor)
        self.children[spec.id] = child
        self.supervisors += spec.is_supervisor
        return child

    def remove(self, child_id: ChildId) -> None:
        """Drop a child's spec (if it is still there)."""
        child = self.children.pop(child_id, None)
        if child is not None:
            self.supervisors -= child.spec.is_supervisor

    def _spawn(self, child: Child) -> None:
        child.incarnation += 1
        child.stop_requested = False
        child.stop_event = None
        child.started_at = self.clock()
        child.status = RUNNING
        child.hb_missed = 0
        child.greenlet = spawn(child, child.incarnation)
        self.active += 1
        if child.spec.heartbeat is not None:
            self.monitor_of[child.spec.heartbeat].started(child)

    def start_one(self, child: Child) -> Op:
        """
        Start *child* in order: without ``ready_timeout`` it counts as started once it ran
        up to its first yield (or ended: its exit is then handled like any other, before the
        next child starts); with it, once it called `greenkeep.ready`, and failing or timing
        out before that is a start failure (`StartFailed`).
        """
        self._spawn(child)
        incarnation = child.incarnation
        self.reporter.child_started(child.id, incarnation)
        timeout = child.spec.ready_timeout
        if timeout is None:
            yield Wait(marker=self.mailbox.turn_marker(), allow=child)
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
            if self.end_reason is not None:
                return  # stopping anyway: the stop deals with it
            yield from self._stop_child(child)
            raise StartFailed(ChildStartError(self.path, child.id, None))
        _, exit_incarnation, exc = outcome  # it exited before it was ready
        kind = classify(exc, child.stop_requested)
        if not kind.is_abnormal or exit_incarnation != incarnation:
            op = self.handle_exit(*outcome)
            if op is not None:
                yield from op
            return
        self._start_failed(child, incarnation, exc)

    def _start_failed(self, child: Child, incarnation: int, exc: BaseException) -> None:
        self.retirees.append(child.greenlet)
        child.greenlet = None
        child.status = TERMINATED
        self.active -= 1
        now = self.clock()
        kind = classify(exc, False)
        child.last_exit = ExitRecord.of(child.id, incarnation, kind, exc, now, True)
        action = Action.START_FAILED.value
        self.reporter.child_exited(child.id, incarnation, kind, exc, action, "", now, damp=False)
        raise StartFailed(ChildStartError(self.path, child.id, child.last_exit))

    # ------------------------------------------------------------------ exits

    def handle_exit(self, child: Child, incarnation: int, exc: Any) -> Op | None:
        """Handle one posted exit by the rules (`greenkeep._rules.plan_exit`)."""
        if child.incarnation != incarnation or child.greenlet is None:
            self.late_exit(child, incarnation, REASON[classify(exc, True)])
            return None
        self.retirees.append(child.greenlet)  # it parked after posting: let it end
        child.greenlet = None
        self.active -= 1
        spec = child.spec
        if spec.heartbeat is not None:
            self.monitor_of[spec.heartbeat].ended(child)
        now = self.clock()
        plan = plan_exit(
            spec.restart,
            exc,
            stop_requested=child.stop_requested,
            heartbeat_killed=child.hb_missed == incarnation,
            stopping=child.status == STOPPING or self.end_reason is not None,
            window=self.intensity,
            now=now,
            backoff=spec.backoff,
            attempt=child.backoff_attempt,
            uptime=now - child.started_at,
            uniform=self.config.random,
            significant=spec.significant,
            auto_shutdown=self.auto_shutdown,
            significant_running=self._significant_running,
        )
        gave_up = plan.action is Action.GIVE_UP
        child.last_exit = ExitRecord.of(child.id, incarnation, plan.kind, exc, now, gave_up)
        action, restart = plan.action.value, spec.restart.value
        logged = self.reporter.child_exited(
            child.id, incarnation, plan.kind, exc, action, restart, now
        )
        self._collect_subtree(child)
        if gave_up:
            child.status = TERMINATED
            self.give_up(child.last_exit)
            return None
        if plan.end is not None:
            self.end(plan.end)
        if plan.action is Action.RESTART:
            return self._restart(child, plan, logged)
        if child.status != STOPPING:  # else the stop that is under way decides
            child.status = TERMINATED
            if plan.drop:
                self.remove(child.id)
        return None

    def _significant_running(self) -> bool:
        return any(c.spec.significant and c.greenlet is not None for c in self.children.values())

    def _collect_subtree(self, child: Child) -> None:
        # A child supervisor that ended hands up what it could not stop.
        target = child.spec.target
        if is_subtree(target):
            report = target.report  # type: ignore[union-attr]
            if report is not None and report.unstopped:
                self.stopper.unstopped.extend(report.unstopped)

    def _restart(self, child: Child, plan: ExitPlan, logged: bool) -> Op | None:
        if plan.attempt:
            child.backoff_attempt = plan.attempt
        if self.strategy is Strategy.ONE_FOR_ONE:
            if child.spec.backoff is not None:
                child.delayed_group = None
                self._delay(child, plan, logged)
                return None
            child.restarts += 1
            self._spawn(child)
            in_window = self.intensity.in_window
            self.reporter.restarted(child.id, child.incarnation, in_window, logged=logged)
            return None
        return self._group_restart(child, plan, logged)

    def _group_restart(self, child: Child, plan: ExitPlan, logged: bool) -> Op:
        """one_for_all / rest_for_one: stop the affected siblings newest first, drop the
        temporary ones, start the rest in order (after the failed child's delay, if any)."""
        children = self.children
        group = plan_restart(
            self.strategy,
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
            self.remove(key)
        if child.spec.backoff is not None and self.end_reason is None:
            for key in group.start:
                children[key].status = DELAYED
            child.delayed_group = list(group.start)
            self._delay(child, plan, logged)
            return
        self._start_group(list(group.start))

    def _delay(self, child: Child, plan: ExitPlan, logged: bool) -> None:
        child.status = DELAYED
        child.delay_logged = logged  # its restart is logged (or summarized) alike
        self.timers.delay(child, self.clock() + plan.delay)
        self.reporter.restart_delayed(
            child.id, child.incarnation, plan.delay, plan.attempt, logged
        )

    def _start_group(self, keys: list[ChildId], damped: Child | None = None) -> None:
        # *damped*: the failed child of a delayed restart whose exit was summarized (a
        # storm of its kind): its restart is summarized too.
        children = self.children
        for key in keys:
            sibling = children.get(key)
            if sibling is None or sibling.status not in (RESTARTING, DELAYED):
                continue
            if self.end_reason is not None:
                break  # a stop arrived mid-restart: start nothing more
            sibling.restarts += 1
            self._spawn(sibling)
            in_window = self.intensity.in_window
            logged = sibling is not damped
            self.reporter.restarted(sibling.id, sibling.incarnation, in_window, logged=logged)
        for key in keys:
            sibling = children.get(key)
            if sibling is not None and sibling.status in (RESTARTING, DELAYED):
                sibling.status = TERMINATED

    def restart_due(self, record: Child) -> None:
        group = record.delayed_group
        record.delayed_group = None
        damped = None if record.delay_logged else record
        self._start_group(group if group is not None else [record.id], damped)

    # ------------------------------------------------------------------ stopping

    def stop_op(self) -> Op:
        running = []
        for child in reversed(list(self.children.values())):
            if child.greenlet is not None:
                child.status = STOPPING
                running.append(child)
            elif child.status in (RESTARTING, DELAYED):
                self.timers.cancel(child)
                child.status = TERMINATED  # a pending (delayed) restart is cancelled
        yield from self.stopper.in_order(running)
        for child in running:
            self._stopped(child, TERMINATED)

    def _stop_child(self, child: Child) -> Op:
        """Stop one running child by its policy; report it if it outlives it."""
        if child.greenlet is None:
            return
        previous = child.status
        child.status = STOPPING
        yield from self.stopper.together((child,))
        self._stopped(child, RESTARTING if previous == RESTARTING else TERMINATED)

    def _stopped(self, child: Child, status: ChildStatus) -> None:
        child.status = status
        if status == TERMINATED and child.spec.restart is Restart.TEMPORARY:
            self.remove(child.id)

    def abandon(self, record: Record) -> None:
        super().abandon(record)
        self.active -= 1

    def disown(self) -> int:
        greenlets = []
        for child in self.children.values():
            greenlets += [child.greenlet, *(child.abandoned or {}).values()]
            child.greenlet = child.abandoned = None
            child.status = TERMINATED
        self.active = 0
        return disown(greenlets)

    # ------------------------------------------------------------------ dynamic API bodies

    def start_child(self, spec: ChildSpec, context: contextvars.Context) -> Op:
        """`Supervisor.start_child`'s work, as an operation."""
        existing = self.children.get(spec.id)
        if existing is not None:
            if existing.greenlet is not None:
                raise ChildAlreadyStartedError(self.config.name, spec.id)
            raise ChildAlreadyPresentError(self.config.name, spec.id)
        child = self.add(spec, context)
        try:
            yield from self.start_one(child)
        except StartFailed:
            self.remove(spec.id)  # OTP does not add a child that failed
            raise
        return child.info()

    def find(self, child_id: ChildId) -> Child:
        """The child with this id (raises `ChildNotFoundError`)."""
        child = self.children.get(child_id)
        if child is None:
            raise ChildNotFoundError(self.config.name, child_id)
        return child

    def terminate_child(self, child_id: ChildId) -> Op:
        """`Supervisor.terminate_child`'s work, as an operation. Terminating a child whose
        delayed restart would also start its later siblings (rest_for_one, one_for_all)
        leaves them terminated with it, as OTP does."""
        child = self.find(child_id)
        self.timers.cancel(child)
        group, child.delayed_group = child.delayed_group, None
        for key in group or ():
            sibling = self.children.get(key)
            if sibling is not None and sibling is not child and sibling.status == DELAYED:
                self._stopped(sibling, TERMINATED)
        if child.greenlet is not None:
            yield from self._stop_child(child)
        self._stopped(child, TERMINATED)
        return child.info()

    def restart_child(self, child_id: ChildId) -> Op:
        """`Supervisor.restart_child`'s work, as an operation."""
        child = self._restartable(child_id, "restarted")
        try:
            yield from self.start_one(child)
        except StartFailed:
            child.status = TERMINATED
            raise
        return child.info()

    def delete_child(self, child_id: ChildId) -> None:
        """`Supervisor.delete_child`'s work."""
        self._restartable(child_id, "deleted")
        self.remove(child_id)

    def _restartable(self, child_id: ChildId, action: str) -> Child:
        child = self.find(child_id)
        if child.greenlet is not None:
            raise ChildRunningError(self.config.name, child_id, action)
        if child.status in (RESTARTING, DELAYED):
            raise ChildRestartingError(self.config.name, child_id, action)
        return child
