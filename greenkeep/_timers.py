"""
What is due on the supervisor's clock: delayed restarts (backoff), heartbeat ticks, storm
summaries and a pool's readiness check. Pure apart from the records it holds: it returns
what is due and the manager acts on it.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import NamedTuple

from greenkeep._heartbeat import HeartbeatMonitor
from greenkeep._records import Record
from greenkeep._storm import TIMER_SLACK, CrashStorms

__all__ = ["TIMER_SLACK", "Due", "Timers"]


class Due(NamedTuple):
    """What is due at *now* (see `Timers.fire`)."""

    now: float
    summaries: bool
    missed: list[tuple[Record, float]]
    restarts: list[Record]
    check: bool = False


class Timers:
    """
    The clock-driven side of one run: its delayed restarts, its heartbeat monitors, its
    storm summaries and its periodic check (`check_at`: a pool's readiness), and the
    earliest time anything is due.

    A delayed restart is a ticket (`Record.delay_seq`): cancelling it is setting the
    record's ticket to 0, and a due entry whose ticket no longer matches is skipped.
    """

    __slots__ = ("_clock", "_heap", "_seq", "check_at", "monitors", "storms")

    def __init__(self, clock: Callable[[], float], storms: CrashStorms) -> None:
        self._clock = clock
        self.storms = storms
        #: The heartbeat monitors, one per interval.
        self.monitors: list[HeartbeatMonitor] = []
        self._heap: list[tuple[float, int, Record]] = []
        self._seq = 0
        #: When the run's periodic check is due next (``None``: not armed). Reported once
        #: by `fire`, which disarms it; the run arms it again if it needs another.
        self.check_at: float | None = None

    def delay(self, record: Record, due: float) -> None:
        """Restart *record* once the clock reaches *due* (replacing any pending ticket)."""
        self._seq += 1
        record.delay_seq = self._seq
        heapq.heappush(self._heap, (due, self._seq, record))

    @staticmethod
    def cancel(record: Record) -> None:
        """Forget *record*'s pending delayed restart, if any."""
        record.delay_seq = 0

    def next_due(self) -> float | None:
        """The earliest clock time something is due, or ``None``."""
        due = self.storms.next_due
        if self.check_at is not None and (due is None or self.check_at < due):
            due = self.check_at
        for monitor in self.monitors:
            if monitor.watched and (due is None or monitor.next_tick < due):
                due = monitor.next_tick
        heap = self._heap
        while heap and heap[0][2].delay_seq != heap[0][1]:
            heapq.heappop(heap)  # cancelled: never due
        if heap and (due is None or heap[0][0] < due):
            due = heap[0][0]
        return due

    def clear(self) -> None:
        """Forget every delayed restart (the run is ending: nothing starts any more)."""
        for _, _, record in self._heap:
            record.delay_seq = 0
        self._heap.clear()
        self.check_at = None

    def deadline(self) -> float | None:
        """The ``time.monotonic`` time the next timer is due (``None``: nothing is)."""
        due = self.next_due()
        if due is None:
            return None
        return time.monotonic() + (due - self._clock())

    def fire(self, ending: bool, due_only: bool = False) -> Due | None:
        """
        What is due now: whether storm summaries are, the records that missed their
        heartbeat (with the interval), the delayed restarts and whether the periodic check
        is (neither while *ending*: they are forgotten). ``None`` when nothing is due (with
        *due_only*) or pending.
        """
        due = self.next_due()
        if due is None:
            return None
        now = self._clock()
        late = now + TIMER_SLACK
        if due_only and late < due:
            return None
        summaries = self.storms.next_due is not None and late >= self.storms.next_due
        missed = [
            (record, monitor.interval)
            for monitor in self.monitors
            if monitor.watched and late >= monitor.next_tick
            for record in monitor.tick(now)
        ]
        if ending:
            self.clear()
            return Due(now, summaries, missed, [])
        check = self.check_at is not None and late >= self.check_at
        if check:
            self.check_at = None
        return Due(now, summaries, missed, self._due_restarts(now), check)

    def _due_restarts(self, now: float) -> list[Record]:
        """The records whose delayed restart is due at *now* (their tickets are spent)."""
        heap = self._heap
        due: list[Record] = []
        now += TIMER_SLACK
        while heap and heap[0][0] <= now:
            _, seq, record = heapq.heappop(heap)
            if record.delay_seq == seq:
                record.delay_seq = 0
                due.append(record)
        return due
