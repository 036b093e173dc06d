"""
Child specs: what to run, how to restart it, how to stop it.

Validation is eager and complete: a `ChildSpec` that exists is valid, and an invalid one
raises `InvalidSpecError` listing every bad field at construction.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final, Literal

from greenkeep._backoff import Backoff
from greenkeep._check import ID_ALLOWED, check_seconds, is_child_id
from greenkeep._errors import InvalidSpecError, SpecProblem
from greenkeep._reports import StopReport

__all__ = [
    "DEFAULT_SHUTDOWN",
    "ChildId",
    "ChildSpec",
    "Restart",
    "RestartValue",
    "Shutdown",
    "ShutdownPolicy",
    "ShutdownValue",
    "Subtree",
    "is_subtree",
    "validate_specs",
]

#: A child's id: a string or an integer, unique within its supervisor.
ChildId = str | int


class Subtree:
    """
    The base of `Supervisor` and `WorkerPool`: what makes an object a subtree, a valid
    child target that runs a supervisor of its own, and what its parent calls.

    Public for annotations and ``isinstance`` (``ChildSpec``'s *target* is a callable or a
    `Subtree`); greenkeep supports no subclasses but its own two.
    """

    __slots__ = ()

    def run(self) -> None:
        """Start, wait until it ends, and stop it on the way out."""
        raise NotImplementedError

    def stop(self, timeout: float | None = None, *, block: bool = True) -> StopReport:
        """Stop it (see `Supervisor.stop`)."""
        raise NotImplementedError

    @property
    def report(self) -> StopReport | None:
        """The report of its last stop, once that stop is over."""
        raise NotImplementedError

    def snapshot(self) -> dict[str, Any]:
        """Its snapshot (see `Supervisor.snapshot`)."""
        raise NotImplementedError


class Restart(str, enum.Enum):
    """When a child that exited on its own is restarted (OTP's restart types)."""

    #: Always restarted (the default; what the Go seed does).
    PERMANENT = "permanent"
    #: Restarted only after an abnormal exit.
    TRANSIENT = "transient"
    #: Never restarted; its spec is dropped when it exits.
    TEMPORARY = "temporary"


#: The values of `Restart`, which ``restart=`` accepts as strings too.
RestartValue = Literal["permanent", "transient", "temporary"]


class Shutdown(str, enum.Enum):
    """The shutdown policies that are not a number of seconds."""

    #: Send ``GreenletExit`` and do not wait.
    BRUTAL = "brutal"
    #: Wait as long as it takes (the default for a child that is itself a supervisor).
    INFINITY = "infinity"


#: The values of `Shutdown`, which ``shutdown=`` accepts as strings too (besides seconds).
ShutdownValue = Literal["brutal", "infinity"]


#: Seconds to wait for a child to stop, or a `Shutdown` policy.
ShutdownPolicy = float | Shutdown

#: A worker's default shutdown timeout, in seconds (OTP's 5000 ms).
DEFAULT_SHUTDOWN: Final = 5.0

_RESTART_ALLOWED = "one of 'permanent', 'transient', 'temporary'"
_SHUTDOWN_ALLOWED = "a number of seconds >= 0, 'brutal' or 'infinity'"


def _owner(child_id: object) -> str:
    return f"child {child_id!r}" if isinstance(child_id, (str, int)) else "child <invalid id>"


def _check_id(value: object, problems: list[SpecProblem], owner: str) -> None:
    if not is_child_id(value):
        problems.append(SpecProblem(owner, "id", ID_ALLOWED, value))
    elif isinstance(value, str) and not value:
        problems.append(SpecProblem(owner, "id", "a non-empty string", value))


def _normalise_restart(value: object, problems: list[SpecProblem], owner: str) -> Restart:
    if isinstance(value, Restart):
        return value
    if isinstance(value, str):
        try:
            return Restart(value)
        except ValueError:
            pass
    problems.append(SpecProblem(owner, "restart", _RESTART_ALLOWED, value))
    return Restart.PERMANENT


def _normalise_shutdown(
    value: object, problems: list[SpecProblem], owner: str, default: ShutdownPolicy
) -> ShutdownPolicy:
    if value is None:
        return default
    if isinstance(value, Shutdown):
        return value
    if isinstance(value, str):
        try:
            return Shutdown(value)
        except ValueError:
            pass
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
        if seconds == math.inf:
            return Shutdown.INFINITY
        if seconds >= 0:  # NaN and negatives fail this test
            return seconds
    problems.append(SpecProblem(owner, "shutdown", _SHUTDOWN_ALLOWED, value))
    return default


class ChildSpec:
    """
    How to run one child: what to call, when to restart it, how to stop it.

    Args:
        id: Unique within its supervisor; a non-empty str or an int.
        target: The callable the child runs, ``target(*args, **kwargs)``, in a greenlet of
            its own. A `Supervisor` instance is accepted too: the child then runs that
            supervisor (a supervision tree).
        args: Positional arguments for *target*.
        kwargs: Keyword arguments for *target*.
        restart: A `Restart` or its string value. Default ``"permanent"``.
        shutdown: Seconds to wait for the child to stop, ``"brutal"`` or ``"infinity"``
            (a `Shutdown`). Default: 5 s for a worker, ``"infinity"`` for a supervisor.
        significant: With the supervisor's *auto_shutdown*, whether this child's own exit
            can end the supervisor (OTP 24). Only transient and temporary children may be
            significant.
        heartbeat: ``None`` (default), or seconds > 0: the worker must call
            `greenkeep.beat` at least this often (the first deadline counts from its start);
            one that does not is killed and handled as a crash with reason
            ``heartbeat_missed``.
        backoff: ``None`` (default: restart at once) or a `Backoff`: delay restarts
            exponentially, with jitter, a cap and a reset after a healthy run. The
            supervisor's restart intensity then counts crash sequences: only a sequence's
            first restart (attempt 1) is recorded in its window.
        ready_timeout: ``None`` (default): the child does not signal readiness, and
            `Supervisor.start` starts the next child once this one has run up to its first
            yield. A number of seconds: the child calls `greenkeep.ready` once initialised,
            and `start` waits up to this long for it before starting the next child. A
            child that is a `Supervisor` signals it itself once its whole subtree has
            started; its default is ``math.inf``.

    Raises:
        InvalidSpecError: If any field is invalid; it lists every invalid field.

    Specs are immutable and compare equal field by field.
    """

    __slots__ = (
        "args",
        "backoff",
        "heartbeat",
        "id",
        "kwargs",
        "ready_timeout",
        "restart",
        "shutdown",
        "significant",
        "target",
    )

    id: ChildId
    target: Callable[..., object] | Subtree
    args: tuple[object, ...]
    kwargs: Mapping[str, object]
    restart: Restart
    shutdown: ShutdownPolicy
    significant: bool
    ready_timeout: float | None
    heartbeat: float | None
    backoff: Backoff | None

    def __init__(
        self,
        id: ChildId,
        target: Callable[..., object] | Subtree,
        args: Sequence[object] = (),
        kwargs: Mapping[str, object] | None = None,
        *,
        restart: Restart | RestartValue = Restart.PERMANENT,
        shutdown: float | Shutdown | ShutdownValue | None = None,
        significant: bool = False,
        ready_timeout: float | None = None,
        heartbeat: float | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        problems: list[SpecProblem] = []
        owner = _owner(id)
        _check_id(id, problems, owner)
        if not callable(target) and not is_subtree(target):
            problems.append(SpecProblem(owner, "target", "a callable or a Supervisor", target))
        args_t, kwargs_d = _arguments(owner, args, kwargs, problems)
        known = len(problems)
        restart_e = _normalise_restart(restart, problems, owner)
        restart_ok = len(problems) == known  # else restart_e is a stand-in, not the input
        default: ShutdownPolicy = Shutdown.INFINITY if is_subtree(target) else DEFAULT_SHUTDOWN
        shutdown_p = _normalise_shutdown(shutdown, problems, owner, default)
        _check_significant(owner, significant, restart_e if restart_ok else None, problems)
        ready = check_seconds(
            owner, "ready_timeout", ready_timeout, problems, positive=True, finite=False
        )
        beat = check_seconds(owner, "heartbeat", heartbeat, problems, positive=True)
        if backoff is not None and not isinstance(backoff, Backoff):
            problems.append(SpecProblem(owner, "backoff", "None or a greenkeep.Backoff", backoff))
        if problems:
            raise InvalidSpecError(problems)
        if ready is None and is_subtree(target):
            ready = math.inf  # a child supervisor is ready once its subtree has started
        values: dict[str, object] = {"id": id, "target": target, "args": args_t}
        values["kwargs"] = kwargs_d
        values.update(restart=restart_e, shutdown=shutdown_p, significant=significant)
        values.update(ready_timeout=ready, heartbeat=beat, backoff=backoff)
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def is_supervisor(self) -> bool:
        """Whether this child runs a supervisor (its default shutdown is ``"infinity"``)."""
        return is_subtree(self.target)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ChildSpec is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ChildSpec is immutable: cannot delete {name!r}")

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not ChildSpec:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.id, self.restart, self.shutdown))

    def __repr__(self) -> str:
        shutdown = self.shutdown.value if isinstance(self.shutdown, Shutdown) else self.shutdown
        target = getattr(self.target, "__qualname__", None) or repr(self.target)
        return (
            f"ChildSpec(id={self.id!r}, target={target}, args={self.args!r}, "
            f"kwargs={dict(self.kwargs)!r}, restart={self.restart.value!r}, "
            f"shutdown={shutdown!r}, significant={self.significant!r}, "
            f"ready_timeout={self.ready_timeout!r}, heartbeat={self.heartbeat!r}, "
            f"backoff={self.backoff!r})"
        )


def _arguments(
    owner: str, args: object, kwargs: object, problems: list[SpecProblem]
) -> tuple[tuple[object, ...], Mapping[str, object]]:
    args_t: tuple[object, ...] = ()
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence):
        problems.append(SpecProblem(owner, "args", "a tuple or list", args))
    else:
        args_t = tuple(args)
    kwargs_d: Mapping[str, object] = MappingProxyType({})
    if isinstance(kwargs, Mapping) and all(isinstance(k, str) for k in kwargs):
        kwargs_d = MappingProxyType(dict(kwargs))
    elif kwargs is not None:
        problems.append(SpecProblem(owner, "kwargs", "a mapping with str keys", kwargs))
    return args_t, kwargs_d


def _check_significant(
    owner: str, significant: object, restart: Restart | None, problems: list[SpecProblem]
) -> None:
    if not isinstance(significant, bool):
        problems.append(SpecProblem(owner, "significant", "True or False", significant))
    elif significant and restart is Restart.PERMANENT:
        allowed = (
            "False for a permanent child (only transient and temporary children can be "
            "significant, as in OTP)"
        )
        problems.append(SpecProblem(owner, "significant", allowed, significant))


def is_subtree(target: object) -> bool:
    """Whether *target* is a greenkeep supervisor or pool."""
    return isinstance(target, Subtree)


def validate_specs(owner: str, children: object) -> list[ChildSpec]:
    """
    Check a supervisor's *children* argument as a whole: a sequence of `ChildSpec` with
    unique ids. Returns them as a list.

    Raises:
        InvalidSpecError: Listing every item that is not a `ChildSpec` and every duplicate id.
    """
    problems: list[SpecProblem] = []
    if isinstance(children, (str, bytes, Mapping)) or not isinstance(children, Sequence):
        raise InvalidSpecError([SpecProblem(owner, "children", "a list of ChildSpec", children)])
    seen: dict[object, int] = {}
    specs: list[ChildSpec] = []
    for index, item in enumerate(children):
        if not isinstance(item, ChildSpec):
            problems.append(SpecProblem(owner, f"children[{index}]", "a ChildSpec", item))
            continue
        if item.id in seen:
            problems.append(
                SpecProblem(
                    owner,
                    f"children[{index}].id",
                    f"unique (children[{seen[item.id]}] already has this id)",
                    item.id,
                )
            )
            continue
        seen[item.id] = index
        specs.append(item)
    if problems:
        raise InvalidSpecError(problems)
    return specs
