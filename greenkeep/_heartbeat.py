"""
Heartbeats: workers prove they are alive; the supervisor kills the ones that stop proving it.

A beat empties a one-item list that belongs to the worker's record (``list.clear``, a C call
of a few tens of nanoseconds): no timer, no hash table, nothing shared is touched per beat.
The supervisor looks once per *tick* (half the heartbeat interval): a list that was emptied
since the last tick means a beat, and is armed again; one still full is a tick without a beat,
and two of those in a row, at least one whole interval, is a missed deadline (a worker is
killed between one and one and a half intervals after its last beat). A new incarnation counts
as having beaten when it starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from greenkeep._worker import current_worker

__all__ = ["HeartbeatMonitor", "beat", "heartbeat"]


class HeartbeatMonitor:
    """
    The deadline bookkeeping of one supervisor for children that share one interval.

    Pure apart from taking the time as an argument. O(1) per beat (done by the worker) and
    per start; O(watched) per tick, twice per interval.
    """

    __slots__ = ("interval", "next_tick", "watched")

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        #: Records whose incarnation is running and must beat.
        self.watched: set[Any] = set()
        self.next_tick = now + interval / 2

    @staticmethod
    def attach(record: Any) -> None:
        """Give *record* its beat flag (before its first incarnation starts)."""
        record.hb_flag = [1]
        record.hb_late = 0

    def started(self, record: Any) -> None:
        """A watched incarnation started: it counts as having just beaten."""
        record.hb_flag.clear()
        record.hb_late = 0
        self.watched.add(record)

    def ended(self, record: Any) -> None:
        """The record's incarnation is not running any more."""
        self.watched.discard(record)

    def tick(self, now: float) -> list[Any]:
        """
        Advance to *now* (call when ``now >= next_tick``); return the watched records that
        have not beaten for a whole interval. They are no longer watched.
        """
        missed = []
        for record in self.watched:
            flag = record.hb_flag
            if flag:  # still armed: no beat since the last tick
                record.hb_late += 1
                if record.hb_late >= 2:
                    missed.append(record)
            else:
                record.hb_late = 0
                flag.append(1)
        for record in missed:
            self.watched.discard(record)
        half = self.interval / 2
        self.next_tick += half
        if self.next_tick <= now:  # the manager was busy for longer than a tick
            self.next_tick = now + half
        return missed


def _nothing() -> None:
    return None


def beat() -> None:
    """
    Prove the calling worker is alive (its heartbeat deadline moves on). Cheap, never
    blocks; outside a supervised worker, or for a child without a heartbeat, a no-op.
    """
    greenlet = current_worker()
    if greenlet is not None:
        flag = greenlet.child.hb_flag
        if flag is not None:
            flag.clear()


def heartbeat() -> Callable[[], None]:
    """
    The calling worker's beat as a C-level callable, for hot loops: ``beat = heartbeat()``
    once, then ``beat()`` as often as needed (a fraction of `beat`'s cost). A no-op callable
    outside a supervised worker or without a heartbeat.
    """
    greenlet = current_worker()
    if greenlet is None:
        return _nothing
    flag = greenlet.child.hb_flag
    if flag is None:
        return _nothing
    clear: Callable[[], None] = flag.clear
    return clear
