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

import gevent.event
from greenlet import GreenletExit

from greenkeep._errors import ChildStartError
from greenkeep._mailbox import Forked, Mailbox
from greenkeep._records import Record
from greenkeep._worker import WAKE

__all__ = ["Driver", "Op", "Request", "StartFailed", "Task", "Wait", "capped"]


def capped(deadline: float | None, cap: float | None) -> float | None:
    """The one cap rule: *deadline*, or *cap* (a stop's overall deadline) if that comes
    first; ``None`` is no deadline at all."""
    if cap is not None and (deadline is None or cap < deadline):
        return cap
    return deadline


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
        return capped(self.deadline, cap) if self.capped else self.deadline

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


class StartFailed(Exception):
    """Raised by an operation when a child fails while starting (``ready_timeout``)."""

    def __init__(self, error: ChildStartError) -> None:
        super().__init__(str(error))
        self.error = error


class Request:
    """A request another greenlet made of the manager, and where its answer goes."""

    __slots__ = ("fn", "result")

    def __init__(self, fn: Callable[[], object]) -> None:
        self.fn = fn
        self.result: gevent.event.AsyncResult[Any] = gevent.event.AsyncResult()

    def done(self, error: BaseException | None, value: object) -> None:
        """Answer the caller: *value*, or raise *error* there (a start failure's own)."""
        if isinstance(error, StartFailed):
            self.result.set_exception(error.error)
        elif error is not None:
            self.result.set_exception(error)
        else:
            self.result.set(value)


#: An operation: a generator that yields `Wait` s and is sent their outcome.
Op = Generator[Wait, Any, Any]


class Task:
    """An operation under way, with what it waits for and whom to tell when it ends."""

    __slots__ = ("done", "op", "wait")

    def __init__(self, op: Op, done: Callable[[BaseException | None, Any], None] | None):
        self.op = op
        self.done = done
        self.wait: Wait | None = None


class Driver:
    """
    The operations under way in one run, innermost last, and how the dispatch loop hands
    them what it receives. An operation started while another waits (a strategy's restart
    set off by an exit handled during a start) runs to its end first.

    Args:
        mailbox: The run's mailbox (deferred exits, turn markers arrive through it).
        handle: The run's exit handler; it may return an operation to start.
        end_batch: Called after exits were handled (retire, start, resume).
        cap: The overall deadline of a stop under way, or ``None``.
    """

    __slots__ = ("_cap", "_end_batch", "_handle", "_mailbox", "markers", "tasks")

    def __init__(
        self,
        mailbox: Mailbox,
        handle: Callable[[Any, int, Any], Op | None],
        end_batch: Callable[[], None],
        cap: Callable[[], float | None],
    ) -> None:
        self._mailbox = mailbox
        self._handle = handle
        self._end_batch = end_batch
        self._cap = cap
        #: The operations under way, innermost last (empty: none).
        self.tasks: list[Task] = []
        #: Turn markers that arrived and no wait has consumed yet.
        self.markers: set[object] = set()

    def push(
        self, op: Op | None, done: Callable[[BaseException | None, Any], None] | None = None
    ) -> None:
        """Start an operation (``None``: there is none); it runs until it waits (it may end
        at once). *done* gets its error or result; without one, an error propagates (a bug:
        the manager crashed)."""
        if op is None:
            return
        task = Task(op, done)
        self.tasks.append(task)
        self._advance(task, None)

    def close(self) -> None:
        """Abandon every operation (the manager recovers from a bug)."""
        for task in reversed(self.tasks):
            task.op.close()
        self.tasks.clear()

    def deadline(self) -> tuple[float | None, bool]:
        """The innermost wait's deadline (capped) and whether it is exclusive."""
        wait = self.tasks[-1].wait
        assert wait is not None
        return wait.due(self._cap()), wait.exclusive

    def timed_out(self) -> bool:
        """Nothing arrived by the deadline: resume the innermost operation if its wait has
        expired (else the deadline was a timer's); return whether it had."""
        task = self.tasks[-1]
        assert task.wait is not None
        if not task.wait.expired(self._cap()):
            return False
        self._advance(task, False)
        return True

    def route(self, item: Any) -> None:
        """What the loop received while operations are under way: hand an exit to the
        handler or to the operation that captures it, defer it, or note a marker; then
        resume the innermost operation if what it waits for holds."""
        task = self.tasks[-1]
        wait = task.wait
        assert wait is not None
        if type(item) is tuple:
            record = item[0]
            if record is wait.capture:
                self._advance(task, item)
                return
            if not wait.wants(record):
                self._mailbox.defer(item)
                return
            op = self._handle(*item)
            for each in self.tasks:
                if each.wait is not None:
                    each.wait.handled(record)
            self._end_batch()
            if op is not None:
                self.push(op)
                return
        elif item is not WAKE:
            self.markers.add(item)
        item = None
        value = self._already(wait, installed=False)
        if value is not None:
            self._advance(task, value)

    def _advance(self, task: Task, value: object) -> None:
        # Resume *task* with *value*; go on while what it waits for already holds. When it
        # ends, the task below it (if any) is checked in turn.
        while True:
            try:
                wait = task.op.send(value)
            except StopIteration as stop:
                self._finished(task, None, stop.value)
            except (GreenletExit, Forked):
                raise
            except BaseException as exc:
                if task.done is None:
                    raise
                self._finished(task, exc, None)
            else:
                task.wait = wait
                value = self._already(wait, installed=True)
                if value is None:
                    return
                continue
            if not self.tasks:
                return
            task = self.tasks[-1]
            assert task.wait is not None
            value = self._already(task.wait, installed=True)  # what came meanwhile
            if value is None:
                return

    def _finished(self, task: Task, error: BaseException | None, value: object) -> None:
        self.tasks.remove(task)
        if task.done is not None:
            task.done(error, value)

    def _already(self, wait: Wait, installed: bool) -> object:
        """
        What to resume the operation with now (``None``: it has to wait). When the wait was
        just *installed*, exits deferred earlier that it is about are taken first (the
        deferred exits are indexed by record: O(len(pending))).
        """
        mailbox = self._mailbox
        if installed and wait.capture is not None:
            taken = mailbox.take(wait.capture)
            if taken:
                for item in taken[1:]:
                    mailbox.defer(item)
                return taken[0]
        if installed and wait.pending and mailbox.deferred:
            for record in list(wait.pending):
                for item in mailbox.take(record):
                    op = self._handle(*item)
                    if op is not None:
                        self.push(op)
                    wait.handled(record)
            self._end_batch()
        if wait.holds(self.markers):
            return True
        if wait.expired(self._cap()):
            return False
        return None
