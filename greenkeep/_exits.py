"""
How a child exited: the classification of every exit, and the rendered record of one.

Pure, no gevent. What follows an exit (the restart table and the rest) is in
`greenkeep._rules`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from greenlet import GreenletExit

from greenkeep._render import error_text, render_traceback

__all__ = ["ABNORMAL_KINDS", "REASON", "ExitKind", "ExitRecord", "classify"]


class ExitKind(str, enum.Enum):
    """
    Why an incarnation ended (the ``reason`` key of ``child_exited``).

    ``HEARTBEAT_MISSED`` is an abnormal exit that greenkeep caused itself: the worker missed
    its heartbeat deadline and was killed.
    """

    NORMAL = "normal"
    SHUTDOWN = "shutdown"
    ABNORMAL = "abnormal"
    HEARTBEAT_MISSED = "heartbeat_missed"
    INTERRUPTED = "interrupted"

    @property
    def is_abnormal(self) -> bool:
        return self is ExitKind.ABNORMAL or self is ExitKind.HEARTBEAT_MISSED


# Module-level names: classify runs on every exit, and a global is cheaper than an enum
# member's attribute lookup.
_NORMAL = ExitKind.NORMAL
_SHUTDOWN = ExitKind.SHUTDOWN
_ABNORMAL = ExitKind.ABNORMAL
_INTERRUPTED = ExitKind.INTERRUPTED


def classify(exc: BaseException | None, stop_requested: bool) -> ExitKind:
    """
    Classify one exit of one incarnation.

    Args:
        exc: What the incarnation raised, or ``None`` if it returned.
        stop_requested: Whether its supervisor had asked it to stop (stop, terminate,
            strategy restart) before it exited.

    A ``KeyboardInterrupt`` is `INTERRUPTED` whatever else holds (it always stops the
    supervisor). Otherwise an exit after a stop request is `SHUTDOWN`, whatever it raised or
    returned, so a child that swallowed ``GreenletExit`` and returned later is a shutdown
    too. ``GreenletExit`` from anyone else is `NORMAL` (gevent treats it as success).
    ``SystemExit`` with code ``0`` or ``None`` is `NORMAL`, any other code `ABNORMAL`.
    Every other exception is `ABNORMAL`.
    """
    if exc is None:
        return _SHUTDOWN if stop_requested else _NORMAL
    if isinstance(exc, KeyboardInterrupt):
        return _INTERRUPTED
    if stop_requested:
        return _SHUTDOWN
    if isinstance(exc, GreenletExit):
        return _NORMAL
    if isinstance(exc, SystemExit):
        return _NORMAL if exc.code in (0, None) else _ABNORMAL
    return _ABNORMAL


#: The ``reason`` string of each kind (``.value`` of an enum member is slow on the hot path).
REASON: Final[dict[ExitKind, str]] = {kind: kind.value for kind in ExitKind}
#: The kinds that are crashes.
ABNORMAL_KINDS: Final = frozenset({ExitKind.ABNORMAL, ExitKind.HEARTBEAT_MISSED})


@dataclass(frozen=True)
class ExitRecord:
    """
    The rendered, inert record of one exit: safe to keep forever, pins no frames.

    Attributes:
        child_id: The child (or pool worker) that exited.
        incarnation: Which incarnation it was (1 for the first run).
        reason: The `ExitKind` value, e.g. ``"abnormal"``.
        error: ``"Type: message"`` (message bounded) or ``None`` for a plain return.
        traceback: The formatted traceback (bounded) when greenkeep rendered one, else
            ``None``.
        at: The supervisor clock's reading when greenkeep handled the exit.
    """

    child_id: object
    incarnation: int
    reason: str
    error: str | None
    traceback: str | None = None
    at: float = 0.0

    @classmethod
    def of(
        cls,
        child_id: object,
        incarnation: int,
        kind: ExitKind,
        exc: BaseException | None,
        at: float,
        with_traceback: bool = False,
    ) -> ExitRecord:
        """Render *exc* (if any) into a record; never keeps *exc* itself."""
        if kind is ExitKind.HEARTBEAT_MISSED:  # greenkeep's own kill: no traceback of interest
            return cls(child_id, incarnation, kind.value, "heartbeat missed", None, at)
        if exc is None:
            return cls(child_id, incarnation, kind.value, None, None, at)
        tb = render_traceback(exc) if with_traceback else None
        return cls(child_id, incarnation, kind.value, error_text(exc), tb, at)
