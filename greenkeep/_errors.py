"""
Every exception greenkeep raises.

All of them derive from `GreenkeepError`. Each keeps the parts of its message as attributes,
so programs never have to parse the text.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from greenkeep._exits import ExitRecord
from greenkeep._render import safe_repr

__all__ = [
    "CalledFromManagerError",
    "ChildAlreadyPresentError",
    "ChildAlreadyStartedError",
    "ChildError",
    "ChildNotFoundError",
    "ChildRestartingError",
    "ChildRunningError",
    "ChildStartError",
    "GreenkeepError",
    "InvalidArgumentError",
    "InvalidSpecError",
    "RestartIntensityExceeded",
    "SpecProblem",
    "SupervisorAlreadyStartedError",
    "SupervisorNotRunningError",
]


class GreenkeepError(Exception):
    """Base class of every error greenkeep raises. Every one pickles (its constructor's
    arguments are kept), so errors cross process boundaries intact."""

    _init_args: tuple[Any, ...]
    _init_kwargs: dict[str, Any]

    def __new__(cls, *args: Any, **kwargs: Any) -> GreenkeepError:
        self = super().__new__(cls, *args)
        self._init_args = args
        self._init_kwargs = kwargs
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        if self._init_kwargs:
            return (functools.partial(type(self), **self._init_kwargs), self._init_args)
        return (type(self), self._init_args)


@dataclass(frozen=True)
class SpecProblem:
    """
    One invalid field of a child spec or supervisor configuration.

    Attributes:
        owner: What holds the field, e.g. ``"child 'db'"`` or ``"supervisor 'root'"``.
        field: The field's name, e.g. ``"shutdown"``.
        allowed: What the field accepts, in words.
        got: The value that arrived.
    """

    owner: str
    field: str
    allowed: str
    got: object

    def __str__(self) -> str:
        return f"{self.owner}: {self.field} must be {self.allowed} (got {safe_repr(self.got)})"


class InvalidSpecError(GreenkeepError, ValueError):
    """
    A child spec or supervisor configuration is invalid; nothing was started or changed.

    Validation is complete: *problems* lists every invalid field, not only the first.
    `owner`, `field`, `allowed` and `got` repeat the first problem for convenience.
    """

    problems: tuple[SpecProblem, ...]

    def __init__(self, problems: Sequence[SpecProblem]) -> None:
        if not problems:
            raise ValueError("InvalidSpecError needs at least one problem")
        self.problems = tuple(problems)
        lines = [str(p) for p in self.problems]
        if len(lines) == 1:
            message = lines[0]
        else:
            message = f"{len(lines)} invalid fields:\n" + "\n".join(f"  - {x}" for x in lines)
        super().__init__(message)

    @property
    def owner(self) -> str:
        return self.problems[0].owner

    @property
    def field(self) -> str:
        return self.problems[0].field

    @property
    def allowed(self) -> str:
        return self.problems[0].allowed

    @property
    def got(self) -> object:
        return self.problems[0].got


class SupervisorNotRunningError(GreenkeepError, RuntimeError):
    """
    A call that needs a running supervisor reached one that is not running.

    Attributes:
        supervisor: The supervisor's name.
        state: Its state when the call arrived (``"new"``, ``"stopping"``, ``"stopped"``,
            ``"failed"``).
    """

    def __init__(self, supervisor: str, state: str, action: str) -> None:
        self.supervisor = supervisor
        self.state = state
        hint = {
            "new": "call start() first",
            "starting": "wait for start() to return",
            "stopping": "it is shutting down; start() it again after stop() returns",
            "stopped": "call start() to run it again",
            "failed": "it gave up (see join()); call start() to run it again",
        }.get(state, "")
        super().__init__(
            f"supervisor {supervisor!r} is {state}, so it cannot {action}"
            + (f": {hint}" if hint else "")
        )


class SupervisorAlreadyStartedError(GreenkeepError, RuntimeError):
    """`start()` was called on a supervisor that is already running."""

    def __init__(self, supervisor: str, state: str) -> None:
        self.supervisor = supervisor
        self.state = state
        super().__init__(
            f"supervisor {supervisor!r} is already {state}; call stop() before starting it again"
        )


class RestartIntensityExceeded(GreenkeepError, RuntimeError):
    """
    A supervisor restarted its children more than *max_restarts* times within *period*
    seconds and gave up: it stopped all its children and ended.

    `Supervisor.join` raises it on every call after the give-up; a parent supervisor sees it
    as an abnormal exit of this supervisor (escalation).

    Attributes:
        supervisor: The name of the supervisor that gave up.
        max_restarts: Its restart budget.
        period: The length of its window, in seconds.
        restarts: How many restarts the window held when it gave up.
        last_crash: The exit that exceeded the budget (a rendered `ExitRecord`; never a live
            exception).
    """

    def __init__(
        self,
        supervisor: str,
        max_restarts: int,
        period: float,
        restarts: int,
        last_crash: ExitRecord,
    ) -> None:
        self.supervisor = supervisor
        self.max_restarts = max_restarts
        self.period = period
        self.restarts = restarts
        self.last_crash = last_crash
        super().__init__(
            f"supervisor {supervisor!r} gave up: more than {max_restarts} restart(s) within "
            f"{period:g} s (last exit: child {last_crash.child_id!r} incarnation "
            f"{last_crash.incarnation}, {last_crash.reason}: {last_crash.error or 'no error'})"
        )


class InvalidArgumentError(GreenkeepError, ValueError):
    """
    A method received an argument it cannot use; nothing was changed.

    Attributes:
        owner: The call, e.g. ``"Supervisor 'root'.stop()"``.
        field: The argument's name.
        allowed: What it accepts, in words.
        got: What arrived.
    """

    def __init__(self, owner: str, field: str, allowed: str, got: object) -> None:
        self.owner = owner
        self.field = field
        self.allowed = allowed
        self.got = got
        super().__init__(f"{owner}: {field} must be {allowed} (got {safe_repr(got)})")


class ChildStartError(GreenkeepError, RuntimeError):
    """
    A child failed while starting during `Supervisor.start` (or `start_child`): it exited
    abnormally before it was ready, or did not signal readiness in time. The children that
    had already started were stopped again, in reverse start order.

    Attributes:
        supervisor: The supervisor's name.
        child_id: The child that failed.
        exit: Its rendered exit, or ``None`` if it timed out before signalling readiness.
    """

    def __init__(self, supervisor: str, child_id: object, exit: ExitRecord | None) -> None:
        self.supervisor = supervisor
        self.child_id = child_id
        self.exit = exit
        what = (
            "did not signal readiness in time"
            if exit is None
            else f"exited while starting ({exit.reason}: {exit.error or 'returned'})"
        )
        super().__init__(f"supervisor {supervisor!r}: child {child_id!r} {what}")


class CalledFromManagerError(GreenkeepError, RuntimeError):
    """
    A blocking supervisor method was called from that supervisor's own manager greenlet
    (from a subscriber or a logger processor), where waiting would deadlock.
    """

    def __init__(self, supervisor: str, action: str) -> None:
        self.supervisor = supervisor
        super().__init__(
            f"supervisor {supervisor!r}: {action} was called from the supervisor's own manager "
            "greenlet (a subscriber or log processor), where it would wait for itself; call it "
            "from another greenlet instead, e.g. gevent.spawn(...)"
        )


class ChildError(GreenkeepError, LookupError):
    """Base of the dynamic child API's errors; carries the supervisor and child id."""

    def __init__(self, supervisor: str, child_id: object, message: str) -> None:
        self.supervisor = supervisor
        self.child_id = child_id
        super().__init__(f"supervisor {supervisor!r}: child {child_id!r} {message}")


class ChildNotFoundError(ChildError):
    """No child has this id (OTP ``not_found``)."""

    def __init__(self, supervisor: str, child_id: object) -> None:
        super().__init__(
            supervisor,
            child_id,
            "does not exist; which_children() lists the ids it has, start_child() adds one",
        )


class ChildAlreadyStartedError(ChildError):
    """`start_child` with the id of a running child (OTP ``already_started``)."""

    def __init__(self, supervisor: str, child_id: object) -> None:
        super().__init__(
            supervisor,
            child_id,
            "is already running; use a new id, or terminate_child() and delete_child() first",
        )


class ChildAlreadyPresentError(ChildError):
    """`start_child` with the id of a terminated child whose spec is kept (OTP
    ``already_present``)."""

    def __init__(self, supervisor: str, child_id: object) -> None:
        super().__init__(
            supervisor,
            child_id,
            "is already present (terminated, spec kept); restart_child() runs it again, "
            "delete_child() removes it",
        )


class ChildRunningError(ChildError):
    """`restart_child` or `delete_child` on a running child (OTP ``running``)."""

    def __init__(self, supervisor: str, child_id: object, action: str) -> None:
        super().__init__(
            supervisor,
            child_id,
            f"is running, so it cannot be {action}; call terminate_child() first",
        )


class ChildRestartingError(ChildError):
    """`restart_child` or `delete_child` on a child whose restart is pending (OTP
    ``restarting``), e.g. during a backoff delay."""

    def __init__(self, supervisor: str, child_id: object, action: str) -> None:
        super().__init__(
            supervisor,
            child_id,
            f"has a restart pending, so it cannot be {action}; call terminate_child() to "
            "cancel the pending restart first",
        )
