"""
Heartbeats: workers prove they are alive; the supervisor kills the ones that stop proving it.

A beat is one C-level ``set.add`` of the worker's record onto its supervisor's *board*: no
timer is touched per beat. The supervisor looks at the board once per *tick* (half the
heartbeat interval): it takes the board's contents, clears it, and with C-level set algebra
finds the records that beat in neither of the last two ticks. Those have not beaten for at
least one full interval (and at most one and a half): they missed their deadline.
A new incarnation counts as having beaten when it starts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from greenkeep._worker import current_worker

__all__ = ["HeartbeatMonitor", "beat", "heartbeat"]


class HeartbeatMonitor:
    """
    The deadline bookkeeping of one supervisor for children that share one interval.

    Pure apart from taking the time as an argument; O(1) per beat and per start, C-level set
    operations per tick.
    """

    __slots__ = ("_recent", "board", "interval", "next_tick", "watched")

    def __init__(self, interval: float, now: float) -> None:
        self.interval = interval
        #: Records that beat since the last tick (workers add to it).
        self.board: set[Any] = set()
        #: Records whose incarnation is running and must beat.
        self.watched: set[Any] = set()
        self._recent: set[Any] = set()  # records that beat during the previous tick
        self.next_tick = now + interval / 2

    def started(self, record: Any) -> None:
        """A watched incarnation started: it counts as having just beaten."""
        self.watched.add(record)
        self.board.add(record)

    def ended(self, record: Any) -> None:
        """The record's incarnation is not running any more."""
        self.watched.discard(record)

    def tick(self, now: float) -> set[Any]:
        """
        Advance to *now* (call when ``now >= next_tick``); return the watched records that
        have not beaten for a whole interval. They are no longer watched.
        """
        beaten = self.board.copy()
        self.board.clear()
        missed = self.watched - beaten - self._recent
        self._recent = beaten
        self.watched -= missed
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
        board = greenlet.child.heartbeat_board
        if board is not None:
            board.add(greenlet.child)


def heartbeat() -> Callable[[], None]:
    """
    The calling incarnation's beat as a C-level callable, for hot loops: ``beat = heartbeat()``
    once, then ``beat()`` as often as needed (about a third of `beat`'s cost). A no-op callable
    outside a supervised worker or without a heartbeat.
    """
    greenlet = current_worker()
    if greenlet is None:
        return _nothing
    board = greenlet.child.heartbeat_board
    if board is None:
        return _nothing
    from functools import partial

    return partial(board.add, greenlet.child)
