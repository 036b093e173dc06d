"""
Heartbeats: workers prove they are alive; the supervisor kills the ones that stop proving it.

A beat sets a flag on the calling worker's own greenlet (`WorkerGreenlet.beaten`): the one
object a worker that just woke up has in cache anyway, so a beat costs a Python call and one
store, with no timer, no hash table and nothing shared touched. The callable `heartbeat`
hands out is that greenlet itself (no object of its own to fetch from memory). The
supervisor looks once per *tick* (half the heartbeat interval), in C-level loops over the
watched greenlets: a flag set since the last tick means a beat, and is cleared; one still
clear is a tick without a beat, and two of those in a row, at least one whole interval, is a
missed deadline (a worker is killed between one and one and a half intervals after its last
beat). A new incarnation counts as having beaten when it starts; a beat from an incarnation
that has ended lands on that incarnation's greenlet and counts for nothing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from itertools import compress, repeat
from operator import attrgetter, not_
from typing import Any

from greenlet import getcurrent

from greenkeep._worker import WorkerGreenlet, current_worker

__all__ = ["HeartbeatMonitor", "beat", "heartbeat"]


class HeartbeatMonitor:
    """
    The deadline bookkeeping of one supervisor for children that share one interval.

    Records need a ``greenlet`` attribute (the `WorkerGreenlet` of the running incarnation,
    set before `started`). Pure apart from taking the time as an argument. O(1) per beat
    (done by the worker) and per start; O(watched) per tick, twice per interval, in C-level
    loops (`itertools`, `operator`) over a snapshot of the watched records' greenlets that
    is rebuilt only after the watched set changed.
    """

    __slots__ = ("_greenlets", "_late", "_records", "interval", "next_tick", "watched")

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        #: Records whose incarnation is running and must beat.
        self.watched: set[Any] = set()
        self.next_tick = now + interval / 2
        #: Watched records that had not beaten at the last tick.
        self._late: set[Any] = set()
        #: ``watched`` as a list, and its records' greenlets in the same order; ``None``
        #: when ``watched`` changed since they were taken.
        self._records: list[Any] | None = None
        self._greenlets: list[WorkerGreenlet] = []

    def started(self, record: Any) -> None:
        """A watched incarnation started: it counts as having just beaten."""
        record.greenlet.beaten = True
        self._late.discard(record)
        self.watched.add(record)
        self._records = None

    def ended(self, record: Any) -> None:
        """The record's incarnation is not running any more."""
        self.watched.discard(record)
        self._late.discard(record)
        self._records = None

    def tick(self, now: float) -> list[Any]:
        """
        Advance to *now* (call when ``now >= next_tick``); return the watched records that
        have not beaten for a whole interval (two ticks in a row). They are no longer
        watched.
        """
        records = self._records
        if records is None:
            records = self._records = list(self.watched)
            self._greenlets = [record.greenlet for record in records]
        greenlets = self._greenlets
        beaten = list(map(_BEATEN, greenlets))
        unbeaten = set(compress(records, map(not_, beaten))) if not all(beaten) else set()
        # Clear the flags that were set (a C-level loop: setattr over the beaten ones).
        _consume(map(setattr, compress(greenlets, beaten), repeat("beaten"), repeat(False)))
        missed = unbeaten & self._late
        self._late = unbeaten - missed if missed else unbeaten
        if missed:
            self.watched -= missed
            self._records = None
        half = self.interval / 2
        self.next_tick += half
        if self.next_tick <= now:  # the manager was busy for longer than a tick
            self.next_tick = now + half
        return list(missed)


_BEATEN = attrgetter("beaten")


def _consume(iterator: Iterator[object]) -> None:
    """Run *iterator* to its end at C speed, keeping nothing."""
    deque(iterator, maxlen=0)


def beat() -> None:
    """
    Prove the calling worker is alive (its heartbeat deadline moves on). Cheap (a Python
    call and one store on the worker's own greenlet), never blocks; outside a supervised
    worker, or for a child without a heartbeat, a no-op.
    """
    # `current_worker`'s test, inlined: a beat is hot, and one more Python call would be a
    # large share of its cost.
    greenlet = getcurrent()
    if type(greenlet) is WorkerGreenlet:
        greenlet.beaten = True


def heartbeat() -> Callable[[], None]:
    """
    The calling incarnation's beat as a callable, to bind once before a hot loop
    (``beat = heartbeat()``, then ``beat()``): cheaper than `beat`, as it does not have to
    find the current greenlet. It stays bound to the incarnation that asked for it (a call
    after that incarnation ended counts for nothing) and may be called from any greenlet
    of the thread. Outside a supervised worker, `beat` itself (a no-op there).

    The callable is the incarnation's `WorkerGreenlet` (calling it sets its flag): a beat
    touches only the greenlet, which a worker that just woke up has in cache.
    """
    greenlet = current_worker()
    return beat if greenlet is None else greenlet
