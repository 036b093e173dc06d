"""Plain, immutable results that supervisors hand back: stop reports and child listings."""

from __future__ import annotations

from dataclasses import dataclass

from greenkeep._exits import ExitRecord
from greenkeep._states import StopReason

__all__ = ["ChildCounts", "ChildInfo", "StopReport", "Unstopped"]


@dataclass(frozen=True)
class Unstopped:
    """
    A child that did not stop within its bound (it swallowed ``GreenletExit``, or did not
    yield in time). greenkeep cannot force-kill a greenlet; it stopped waiting and moved on.

    Attributes:
        path: The supervisor's path in its tree, e.g. ``"root/db"``.
        child_id: The child's id.
        incarnation: The incarnation that did not stop.
        waited: Seconds greenkeep waited for it.
    """

    path: str
    child_id: object
    incarnation: int
    waited: float


@dataclass(frozen=True)
class StopReport:
    """
    What `Supervisor.stop` did.

    Attributes:
        supervisor: The supervisor's path.
        reason: Why it ended: ``"shutdown"`` (stop was called), ``"restart_intensity_exceeded"``,
            ``"auto_shutdown"``, ``"interrupted"`` (a worker raised ``KeyboardInterrupt``),
            ``"start_failed"``, ``"manager_crashed"``, ``"forked"`` (in a forked child
            process), or ``"not_started"``.
        unstopped: Children (here or in child supervisors, with their supervisor's path)
            that did not stop in time.
        complete: ``False`` when the stop was requested, not waited for (``block=False``,
            or `stop` called from the supervisor's own manager greenlet: a subscriber).
    """

    supervisor: str
    reason: StopReason
    unstopped: tuple[Unstopped, ...] = ()
    complete: bool = True

    @property
    def clean(self) -> bool:
        """Whether every child stopped within its bound."""
        return self.complete and not self.unstopped


@dataclass(frozen=True)
class ChildInfo:
    """
    One child as `Supervisor.which_children` sees it.

    Attributes:
        id: The child's id.
        status: ``"running"``, ``"restarting"`` (being restarted by a strategy),
            or ``"terminated"`` (not running; its spec is kept).
        incarnation: Its current (or last) incarnation; 0 if it never ran.
        restarts: How many times greenkeep restarted it.
        restart: Its restart type (``"permanent"``, ...).
        type: ``"worker"`` or ``"supervisor"``.
        last_exit: Its last exit, rendered, or ``None``.
    """

    id: object
    status: str
    incarnation: int
    restarts: int
    restart: str
    type: str
    last_exit: ExitRecord | None


@dataclass(frozen=True)
class ChildCounts:
    """OTP's ``count_children``: specs, running children, supervisors and workers."""

    specs: int
    active: int
    supervisors: int
    workers: int
