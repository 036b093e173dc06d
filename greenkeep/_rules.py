"""
What follows an exit, decided without gevent, structlog or any supervisor state: OTP's
``do_restart`` and ``restart/2`` as plain functions, shared by `Supervisor` and `WorkerPool`.

`plan_exit` turns the facts of one exit into an `ExitPlan` (what kind of exit it was, what
happens next, whether the spec goes, whether the supervisor ends, how long a restart waits)
and the runtime carries the plan out; `plan_restart` says which siblings a strategy stops
and starts. The only state touched is what the caller passes in: the restart window, which
records the restart it allows. A pool's straight path (a crash that restarts at once while
its kind is being summarized) applies the same rules inline; a test checks that both agree.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Literal, TypeVar

from greenkeep._backoff import Backoff
from greenkeep._exits import ExitKind, classify
from greenkeep._intensity import RestartIntensity
from greenkeep._spec import Restart
from greenkeep._states import (
    AUTO_SHUTDOWN,
    DELAYED,
    FAILED,
    GAVE_UP,
    INTERRUPTED,
    RESTARTING,
    RUNNING,
    STOPPED,
    STOPPING,
    TERMINATED,
    ChildState,
    ChildStatus,
    StopReason,
)

__all__ = [
    "Action",
    "AutoShutdown",
    "AutoShutdownValue",
    "ExitPlan",
    "RestartPlan",
    "Strategy",
    "StrategyValue",
    "action_for",
    "child_state",
    "exit_kind",
    "next_attempt",
    "plan_exit",
    "plan_restart",
]

K = TypeVar("K")


class Strategy(str, enum.Enum):
    """Which siblings are restarted with a failed child (OTP's strategies)."""

    #: Only the failed child.
    ONE_FOR_ONE = "one_for_one"
    #: Every child: the others are stopped in reverse start order, then all are started in
    #: start order.
    ONE_FOR_ALL = "one_for_all"
    #: The failed child and every child started after it.
    REST_FOR_ONE = "rest_for_one"


#: The values of `Strategy`, which ``strategy=`` accepts as strings too.
StrategyValue = Literal["one_for_one", "one_for_all", "rest_for_one"]


class AutoShutdown(str, enum.Enum):
    """When the exit of *significant* children ends their supervisor (OTP 24)."""

    #: Never (the default); significant children are not allowed.
    NEVER = "never"
    #: As soon as any significant child exits on its own and is not restarted.
    ANY_SIGNIFICANT = "any_significant"
    #: Once every significant child has exited on its own and none runs.
    ALL_SIGNIFICANT = "all_significant"


#: The values of `AutoShutdown`, which ``auto_shutdown=`` accepts as strings too.
AutoShutdownValue = Literal["never", "any_significant", "all_significant"]


class Action(str, enum.Enum):
    """What follows one exit (the ``action`` key of ``child_exited``)."""

    RESTART = "restart"
    #: Not restarted; the spec stays (terminated, ``restart_child`` runs it again).
    KEEP = "keep"
    #: Not restarted; the spec is removed (a temporary child).
    DROP = "drop"
    #: The child was being stopped by its supervisor: nothing follows.
    NONE = "none"
    #: A ``KeyboardInterrupt``: the supervisor stops everything.
    STOP_SUPERVISOR = "stop_supervisor"
    #: The restart it called for exceeds the restart intensity: the supervisor gives up.
    GIVE_UP = "give_up"
    #: It failed before it was ready (children with ``ready_timeout``).
    START_FAILED = "start_failed"


def exit_kind(exc: BaseException | None, stop_requested: bool, heartbeat_killed: bool) -> ExitKind:
    """
    `classify`, then the heartbeat rule: a ``GreenletExit`` that greenkeep itself sent
    because the incarnation missed its heartbeat (*heartbeat_killed*) is
    `ExitKind.HEARTBEAT_MISSED`, not a normal exit.
    """
    kind = classify(exc, stop_requested)
    if heartbeat_killed and kind is ExitKind.NORMAL:
        return ExitKind.HEARTBEAT_MISSED
    return kind


def _table(restart: Restart, kind: ExitKind, stopping: bool) -> Action:
    # The restart table for a child that exited on its own, and the overrides.
    if kind is ExitKind.INTERRUPTED:
        return Action.STOP_SUPERVISOR
    if stopping:
        return Action.NONE
    if restart is Restart.TEMPORARY:
        return Action.DROP
    if kind is ExitKind.SHUTDOWN:
        return Action.KEEP
    if restart is Restart.PERMANENT or kind.is_abnormal:
        return Action.RESTART
    return Action.KEEP


#: The whole table, precomputed: (restart type, exit kind, being stopped) -> action.
_ACTIONS: Final = {
    (restart, kind, stopping): _table(restart, kind, stopping)
    for restart in Restart
    for kind in ExitKind
    for stopping in (False, True)
}


def action_for(restart: Restart, kind: ExitKind, stopping: bool) -> Action:
    """
    The restart table, with its two overrides.

    ======================  =======  ========  ==================================
    restart type            normal   shutdown  abnormal (and heartbeat missed)
    ======================  =======  ========  ==================================
    permanent               restart  keep      restart
    transient               keep     keep      restart
    temporary               drop     drop      drop
    ======================  =======  ========  ==================================

    A child its supervisor was stopping (*stopping*: it was being stopped, or the
    supervisor is ending) is never restarted (`Action.NONE`); a ``KeyboardInterrupt`` stops
    the supervisor (`Action.STOP_SUPERVISOR`) whatever else holds.
    """
    return _ACTIONS[restart, kind, stopping]


def next_attempt(previous: int, uptime: float, backoff: Backoff) -> int:
    """The backoff attempt of a restart after an incarnation that ran *uptime* seconds:
    one more than *previous*, or 1 again after a healthy run (``reset_after``)."""
    return 1 if uptime >= backoff.reset_after else previous + 1


@dataclass(frozen=True)
class ExitPlan:
    """
    What follows one exit.

    Attributes:
        kind: How the incarnation ended.
        action: What happens next.
        drop: Whether the spec is removed (a temporary child that is not restarted).
        end: Why the supervisor ends now (``"interrupted"``,
            ``"restart_intensity_exceeded"``, ``"auto_shutdown"``), or ``None``.
        delay: Seconds the restart waits (backoff); 0 for at once.
        attempt: The restart's backoff attempt; 0 without backoff.
    """

    kind: ExitKind
    action: Action
    drop: bool = False
    end: StopReason | None = None
    delay: float = 0.0
    attempt: int = 0


def plan_exit(
    restart: Restart,
    exc: BaseException | None,
    *,
    stop_requested: bool,
    heartbeat_killed: bool,
    stopping: bool,
    window: RestartIntensity,
    now: float,
    backoff: Backoff | None = None,
    attempt: int = 0,
    uptime: float = 0.0,
    uniform: Callable[[], float] | None = None,
    significant: bool = False,
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
    significant_running: Callable[[], bool] | None = None,
) -> ExitPlan:
    """
    Decide what follows one exit of a child's current incarnation.

    Args:
        restart: The child's restart type.
        exc: What it raised, ``None`` if it returned.
        stop_requested: Whether its supervisor asked it to stop before it exited.
        heartbeat_killed: Whether greenkeep killed it for missing its heartbeat.
        stopping: Whether it was being stopped, or its supervisor is ending.
        window: The supervisor's restart window; a restart is recorded in it at *now*.
        backoff, attempt, uptime: The child's backoff, its previous attempt and how long
            the incarnation ran; *uniform* draws the jitter (called only for a delayed
            restart).
        significant, auto_shutdown, significant_running: OTP's automatic shutdown; the
            callable says whether a significant child still runs (asked only for
            ``all_significant``).

    Without *backoff*, every restart is recorded in the window when it is decided, as OTP
    does; the one that exceeds the intensity becomes `Action.GIVE_UP`. With *backoff*, the
    window counts crash *sequences*: the restart that starts one (attempt 1: the child's
    first, or the first after an incarnation ran at least ``reset_after``) is recorded and
    may give up; a later attempt of the same sequence is only tallied (`RestartIntensity.
    tally`), never gives up, and its pace is bounded by the backoff's delays instead.
    """
    kind = exit_kind(exc, stop_requested, heartbeat_killed)
    action = _ACTIONS[restart, kind, stopping]
    drop = restart is Restart.TEMPORARY
    if action is Action.STOP_SUPERVISOR:
        return ExitPlan(kind, action, drop, INTERRUPTED)
    if action is not Action.RESTART:
        ends = significant and not stopping and _auto_ends(auto_shutdown, significant_running)
        return ExitPlan(kind, action, drop, AUTO_SHUTDOWN if ends else None)
    if backoff is None:
        if window.record(now):
            return ExitPlan(kind, Action.GIVE_UP, False, GAVE_UP)
        return ExitPlan(kind, action)
    attempt = next_attempt(attempt, uptime, backoff)
    if attempt == 1:  # a new crash sequence: it counts toward the intensity
        if window.record(now):
            return ExitPlan(kind, Action.GIVE_UP, False, GAVE_UP)
    else:
        window.tally()
    draw = uniform() if uniform is not None else 0.5
    return ExitPlan(kind, action, delay=backoff.delay(attempt, draw), attempt=attempt)


def _auto_ends(auto: AutoShutdown, significant_running: Callable[[], bool] | None) -> bool:
    # A significant child exited on its own and is not restarted: does its supervisor end?
    if auto is AutoShutdown.ANY_SIGNIFICANT:
        return True
    if auto is AutoShutdown.ALL_SIGNIFICANT:
        return significant_running is not None and not significant_running()
    return False


@dataclass(frozen=True)
class RestartPlan(Generic[K]):
    """
    What a strategy does about one failed child.

    Attributes:
        stop: Running siblings to stop first, in this order (reverse start order).
        drop: Affected temporary children: stopped (if running) and their specs removed.
        start: Children to start, in this order (start order); includes the failed child.
    """

    stop: tuple[K, ...]
    drop: tuple[K, ...]
    start: tuple[K, ...]


def plan_restart(
    strategy: Strategy,
    order: Sequence[K],
    failed: K,
    is_running: Callable[[K], bool],
    is_temporary: Callable[[K], bool],
) -> RestartPlan[K]:
    """
    Plan the restart of *failed* (which already exited and is to be restarted).

    Args:
        strategy: The supervisor's strategy.
        order: Every child id in start order, *failed* included.
        failed: The child that exited.
        is_running: Whether a sibling is running now.
        is_temporary: Whether a sibling is temporary (a temporary bystander is stopped and
            dropped, never restarted).

    The affected set is *failed* alone (one_for_one), every child (one_for_all), or *failed*
    and the children after it (rest_for_one). Affected running siblings are stopped in
    reverse start order; affected non-temporary children, running or not (as OTP), are
    started in start order.
    """
    if strategy is Strategy.ONE_FOR_ONE:
        return RestartPlan((), (), (failed,))
    index = order.index(failed)
    affected = list(order) if strategy is Strategy.ONE_FOR_ALL else list(order[index:])
    bystanders = [k for k in affected if k != failed]
    stop = tuple(k for k in reversed(bystanders) if is_running(k))
    drop = tuple(k for k in bystanders if is_temporary(k))
    dropped = set(drop)
    start = tuple(k for k in affected if k == failed or k not in dropped)
    return RestartPlan(stop, drop, start)


def child_state(status: ChildStatus, last_reason: str | None) -> ChildState:
    """A child's state as snapshots show it."""
    if status == TERMINATED:
        return FAILED if last_reason in ("abnormal", "heartbeat_missed") else STOPPED
    if status in (STOPPING, RUNNING):
        return RUNNING
    if status == DELAYED:
        return DELAYED
    return RESTARTING
