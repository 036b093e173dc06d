"""
The manager's mailbox: the ``gevent.queue`` that every exit is posted onto, how the manager
waits for it, turn markers, and the exits an operation defers. The only code that touches
the queue's deque.

The manager does not wait in ``queue.get()``: waking a queue's getter costs gevent a
callback and a waiter of its own. It parks in the hub instead, and whoever posts while it is
parked (`Channel.notify`, or a worker's inline copy of it) schedules `Mailbox.resume`: one
loop callback, and the queue's puts stay cheap. The manager is the queue's only consumer and
takes items straight from its deque (an unbounded queue has no blocked producers to wake).
"""

from __future__ import annotations

import functools
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import gevent.queue
from greenlet import getcurrent

from greenkeep._records import Record
from greenkeep._worker import Channel

if TYPE_CHECKING:
    from gevent.hub import Hub
    from greenlet import greenlet

__all__ = ["Exit", "Forked", "Mailbox"]

#: What workers post: (the child's record, the incarnation, what it raised / None / a storm).
Exit = tuple[Record, int, Any]


#: The queue's class: gevent's own unbounded FIFO queue, whose items are its deque
#: ``.queue``. That is ``SimpleQueue`` since gevent 25.4.1 (``Queue`` is joinable there, and
#: each put would also count an unfinished task) and ``Queue`` before it (when
#: ``gevent.queue.SimpleQueue`` was the standard library's, which has no such deque).
_Queue: type[gevent.queue.SimpleQueue[Any]] = (
    gevent.queue.SimpleQueue
    if issubclass(gevent.queue.Queue, gevent.queue.SimpleQueue)
    else gevent.queue.Queue
)


class Forked(BaseException):
    """Raised in a manager that wakes up in a forked child process: it ends at once."""


class Mailbox:
    """
    One run's mailbox.

    Attributes:
        queue: The posted items, oldest first (read by the manager's batch loop).
        channel: What the workers share with the manager (how they post and wake it).
        deferred: The records of deferred exits, in the order the exits arrived (see
            `undefer`).
    """

    __slots__ = (
        "_deferred_of",
        "_hub",
        "_manager",
        "_overdue",
        "_parked",
        "channel",
        "deferred",
        "queue",
    )

    def __init__(self, path: str) -> None:
        mailbox = _Queue()
        self.queue: deque[Any] = mailbox.queue
        self.channel = Channel(mailbox.put_nowait, path)
        self._hub: Hub | None = None
        self._manager: greenlet | None = None
        self._parked = False
        self._overdue = False  # the last receive returned at a past deadline, not waiting
        self.deferred: deque[Record] = deque()  # records, in the order their exits arrived
        self._deferred_of: dict[Record, deque[Exit]] = {}

    def open(self, hub: Hub, manager: greenlet) -> None:
        """Bind the hub and the manager greenlet (the only one that receives)."""
        self._hub = hub
        self._manager = manager
        self.channel.wake = functools.partial(hub.loop.run_callback, self.resume)

    # ------------------------------------------------------------------ waiting

    def receive(self, deadline: float | None) -> Any:
        """
        From the manager: the next item, waiting until one is posted or the monotonic
        *deadline* passes (then ``None``; at or past it, only what is already queued).

        Never returns twice in a row without the hub having run: when the last call also
        returned at a past deadline without waiting, this one lets the hub run once first.
        So the manager yields even if what is due never gets done (a supervisor's clock
        that lags the loop's, or a timer that stays due): it cannot freeze the process.
        """
        queue = self.queue
        waited = False
        while not queue:
            if deadline is None:
                self.park(None)
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if waited or not self._overdue:
                    self._overdue = not waited
                    return None
                remaining = 0.0  # overdue twice: a zero timer, the loop's next iteration
            self.park(remaining)
            waited = True
        self._overdue = False
        return queue.popleft()

    def park(self, timeout: float | None) -> None:
        """Wait in the hub until something is posted (or *timeout* seconds pass)."""
        if self.queue:
            return
        hub = self._hub
        assert hub is not None
        timer = None
        if timeout is not None:
            timer = hub.loop.timer(max(timeout, 0.0))
            timer.start(self.resume)
        self._parked = True
        channel = self.channel
        channel.parked = True
        try:
            hub.switch()
        finally:
            self._parked = False
            channel.parked = False
            if timer is not None:
                timer.close()
        if channel.forked:
            raise Forked

    def resume(self) -> None:
        """A hub callback (or timer): switch back into the manager if it is still parked."""
        if self._parked:
            self._parked = False
            assert self._manager is not None
            self._manager.switch()

    def pass_turn(self) -> None:
        """From the manager: let the hub run everything already scheduled, then continue
        (``gevent.sleep(0)`` for a greenlet that parks in the hub)."""
        assert self._hub is not None
        self._hub.loop.run_callback(getcurrent().switch)
        self._hub.switch()

    def turn_marker(self) -> object:
        """
        A new marker object, posted once the hub has run every callback scheduled before
        this call (the start of a child, a kill): when the manager receives it, those have
        run. Never blocks.
        """
        assert self._hub is not None
        marker = object()
        self._hub.loop.run_callback(self.channel.notify, marker)
        return marker

    # ------------------------------------------------------------------ deferring

    def defer(self, item: Exit) -> None:
        """Keep an exit for later (it arrived while an operation waited for others). Indexed
        by record, so that waiting for one child's exit never scans the others'."""
        record = item[0]
        items = self._deferred_of.get(record)
        if items is None:
            items = self._deferred_of[record] = deque()
        items.append(item)
        self.deferred.append(record)

    def undefer(self) -> Exit | None:
        """The oldest deferred exit, or ``None`` if `take` already took it."""
        record = self.deferred.popleft()
        items = self._deferred_of.get(record)
        if not items:
            self._deferred_of.pop(record, None)
            return None
        item = items.popleft()
        if not items:
            del self._deferred_of[record]
        return item

    def take(self, record: Record) -> list[Exit]:
        """Every deferred exit of *record*, oldest first, removed from the deferred ones
        (their places in the order are skipped by `undefer`)."""
        items = self._deferred_of.pop(record, None)
        return list(items) if items else []
