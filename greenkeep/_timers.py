"""
What is due on the supervisor's clock: delayed restarts (backoff), heartbeat ticks and
storm summaries. Pure apart from the records it holds: it returns what is due and the
manager acts on it.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Final

from greenkeep._heartbeat import HeartbeatMonitor
from greenkeep._records import Record
from greenkeep._storm import CrashStorms

__all__ = ["TIMER_SLACK", "Timers"]

#: Timers this close (in clock seconds) to due are run (floating-point sums of a manual
#: clock's steps land a hair before the tick they were meant to reach).
TIMER_SLACK: Final = 1e-9


class Timers:
    """
    The delayed restarts of one run, and the earliest time anything is due.

    A delayed restart is a ticket (`Record.delay_seq`): cancelling it is setting the
    record's ticket to 0, and a due entry whose ticket no longer matches is skipped.
    """

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Record]] = []
        self._seq = 0

    def delay(self, record: Record, due: float) -> None:
        """Restart *record* once the clock reaches *due* (replacing any pending ticket)."""
        self._seq += 1
        record.delay_seq = self._seq
        heapq.heappush(self._heap, (due, self._seq, record))

    @staticmethod
    def cancel(record: Record) -> None:
        """Forget *record*'s pending delayed restart, if any."""
        record.delay_seq = 0

    def next_due(self, storms: CrashStorms, monitors: Sequence[HeartbeatMonitor]) -> float | None:
        """The earliest clock time something is due, or ``None``."""
        due = storms.next_due
        for monitor in monitors:
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

    def due_restarts(self, now: float) -> list[Record]:
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
