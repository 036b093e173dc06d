"""
Operations: what the manager does that takes time (starting a child up to its first yield
or its readiness, stopping children within their bounds, a strategy's restart), written as
generators that yield a `Wait` and are resumed by the manager's one dispatch loop.

An operation never reads the mailbox itself: the loop does, handles every exit with the same
handler, and resumes the operation once what it waits for has happened (or its deadline has
passed). That is what keeps exit handling from re-entering itself. An exclusive operation
(OTP's synchronous ``terminate_children``, a child's start) has the exits of other children
deferred until it ends; a pool's operations are not exclusive, so its other workers keep
restarting meanwhile.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

from greenkeep._records import Record

__all__ = ["Op", "Task", "Wait"]


class Wait:
    """
    What a suspended operation waits for. It is resumed with ``True`` once one of its
    conditions holds, ``False`` once *deadline* has passed first, and with the exit itself
    when an exit of *capture* arrives.

    Attributes:
        pending: Records whose current incarnations must exit (each is removed once its
            exit was handled): holds once it is empty.
        marker: A `Mailbox.turn_marker`: holds once it arrived.
        ready: (record, incarnation): holds once that incarnation called `greenkeep.ready`.
        capture: Exits of this record are sent into the operation instead of being handled.
        allow: Exits of this record are handled, never deferred.
        deadline: A ``time.monotonic`` deadline, or ``None``.
        capped: Whether a stop's overall deadline caps *deadline* (not for the one hub
            turn a stop gives the children it has just killed).
        exclusive: Whether exits of other records are deferred until the operation ends.
    """

    __slots__ = (
        "allow",
        "capped",
        "capture",
        "deadline",
        "exclusive",
        "marker",
        "pending",
        "ready",
    )

    def __init__(
        self,
        *,
        pending: dict[Record, int] | None = None,
        marker: object = None,
        ready: tuple[Record, int] | None = None,
        capture: Record | None = None,
        allow: Record | None = None,
        deadline: float | None = None,
        capped: bool = True,
        exclusive: bool = True,
    ) -> None:
        self.pending = pending
        self.capped = capped
        self.marker = marker
        self.ready = ready
        self.capture = capture
        self.allow = allow
        self.deadline = deadline
        self.exclusive = exclusive

    def holds(self, markers: set[object]) -> bool:
        """Whether one of its conditions holds (an arrived marker is consumed)."""
        if self.pending is not None and not self.pending:
            return True
        marker = self.marker
        if marker is not None and marker in markers:
            markers.discard(marker)
            return True
        if self.ready is not None:
            record, incarnation = self.ready
            return record.ready_inc == incarnation
        return False

    def expired(self, cap: float | None) -> bool:
        """Whether its deadline (capped by *cap*) has passed."""
        deadline = self.due(cap)
        return deadline is not None and time.monotonic() >= deadline

    def due(self, cap: float | None) -> float | None:
        """Its deadline, capped by *cap* (a stop's overall deadline)."""
        deadline = self.deadline
        if self.capped and cap is not None and (deadline is None or cap < deadline):
            return cap
        return deadline

    def wants(self, record: Record) -> bool:
        """Whether an exit of *record* is to be handled now rather than deferred."""
        if not self.exclusive or record is self.allow:
            return True
        pending = self.pending
        return pending is not None and record in pending

    def handled(self, record: Record) -> None:
        """After an exit of *record* was handled: it no longer runs the awaited incarnation."""
        pending = self.pending
        if pending is not None and record in pending:
            incarnation = pending[record]
            if record.incarnation != incarnation or record.greenlet is None:
                del pending[record]


#: An operation: a generator that yields `Wait` s and is sent their outcome.
Op = Generator[Wait, Any, Any]


class Task:
    """An operation under way, with what it waits for and whom to tell when it ends."""

    __slots__ = ("done", "op", "wait")

    def __init__(self, op: Op, done: Callable[[BaseException | None, Any], None] | None):
        self.op = op
        self.done = done
        self.wait: Wait | None = None
