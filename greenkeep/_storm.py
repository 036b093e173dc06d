"""
Crash-storm damping for logs: the first crash of each kind in full, then at most one
summary per kind per interval, until the storm ends. Every crash is counted.

A *kind* is (exception type, raising location). A storm of a kind starts with its first crash
and ends at the first summary time that finds a whole period without one (one to two intervals
after its last crash); its end is reported on its own (`StormEnd`), and the next crash of that
kind is logged in full again. Pure: the caller passes the time in.

While a storm of its kind goes on, a pool worker that crashes counts itself into the `Storm`
(the first crash of a summary period also renders itself as the period's sample) and posts
the storm object instead of its exception (see `greenkeep._worker`): the exception, its
traceback and frames are freed at once, and the manager finds the storm without a lookup.
Such a crash is already counted when the manager sees it, so a storm with crashes in flight
cannot end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import CodeType
from typing import Final

__all__ = [
    "HEARTBEAT_KIND",
    "TIMER_SLACK",
    "CrashKind",
    "CrashStorms",
    "Storm",
    "StormEnd",
    "StormSummary",
    "crash_site",
    "describe",
]

#: Clock times this close (in clock seconds) before a due time count as due: floating-point
#: sums of a manual clock's steps land a hair before the time they were meant to reach
#: (0.4 + 0.4 + 0.1 + 0.1 + 0.4 + 0.4 is 1.7999999999999998). One value for every timer
#: (`greenkeep._timers` uses it too): what the timers call due, the storms must find due.
TIMER_SLACK: Final = 1e-9

#: One crash of a storm, rendered: (child id, incarnation, error text).
Sample = tuple[object, int, str]

#: (exception type, id of the code object that raised it, bytecode offset there): cheap to
#: build and hash per crash (a traceback's line number is computed from the line table, its
#: offset is not); `describe` turns it into text only when a summary is logged.
CrashKind = tuple[type, int, int]


class _HeartbeatMissed:
    """The type slot of `HEARTBEAT_KIND` (never raised, never shown)."""


#: The one kind of every heartbeat miss (greenkeep's own kill: no exception to tell apart).
HEARTBEAT_KIND: Final[CrashKind] = (_HeartbeatMissed, 0, 0)


def crash_site(exc: BaseException) -> tuple[CrashKind, CodeType | None]:
    """The kind of a crash and the code object that raised it (the innermost traceback
    entry). The worker and the pool's straight path inline the same walk (a call costs as
    much as the walk there)."""
    tb = exc.__traceback__
    if tb is None:
        return (type(exc), 0, 0), None
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return (type(exc), id(code), tb.tb_lasti), code


def _line_of(code: CodeType, offset: int) -> int | None:
    for start, end, line in code.co_lines():
        if start <= offset < end:
            return line
    return None


def describe(kind: CrashKind, code: CodeType | None) -> tuple[str, str]:
    """(qualified type name, ``"file:line"``) of a crash kind raised in *code*."""
    cls, _, offset = kind
    if cls is _HeartbeatMissed:
        return "heartbeat_missed", "heartbeat deadline"
    module = getattr(cls, "__module__", None)
    name = cls.__qualname__ if module in (None, "builtins") else f"{module}.{cls.__qualname__}"
    if code is None:
        return name, "?"  # an exception that was never raised (no traceback)
    return name, f"{code.co_filename}:{_line_of(code, offset)}"


@dataclass(frozen=True)
class StormSummary:
    """
    One summary of suppressed crashes of one kind (the ``exits_summarized`` event).

    Attributes:
        error_type: The exception type.
        location: Where it was raised.
        count: Crashes of this kind since the previous summary (or the full log line);
            never 0.
        total: Crashes of this kind in this storm so far, the fully logged first included.
        sample_child_id: One child among the *count* crashes.
        sample_incarnation: Its incarnation.
        sample_error: Its rendered error.
    """

    error_type: str
    location: str
    count: int
    total: int
    sample_child_id: object
    sample_incarnation: int
    sample_error: str


@dataclass(frozen=True)
class StormEnd:
    """The end of a storm (the ``storm_ended`` event): *total* crashes of that kind."""

    error_type: str
    location: str
    total: int


class Storm:
    """
    One storm of one kind.

    Attributes:
        kind: Its crash kind.
        code: The code object that raised its first crash (for the location).
        count: Crashes counted since the previous summary (or the full log line).
        total: Crashes in the storm before the current period, the first one included.
        sample: One crash of the current period, rendered (``(child id, incarnation,
            error)``), or ``None`` until one is kept.
        next_summary: When the next summary is due.
        announced: Whether its first crash has been logged in full. A worker that meets a
            crash of a kind with no storm *opens* one (`opened`), unannounced, and posts
            that crash in full; the crashes of the kind that follow in the same pass of the
            hub are then counted in and posted as the storm (their exceptions freed at once,
            where each would otherwise wait in the manager's backlog), and the manager
            announces the storm when it logs the first one (`CrashStorms.announce`).
        ended: Set once it has ended (it is no longer in `CrashStorms.by_kind`): a worker
            that kept it for its next crash of the kind looks it up again.
    """

    __slots__ = (
        "announced",
        "code",
        "count",
        "ended",
        "kind",
        "next_summary",
        "sample",
        "total",
    )

    def __init__(self, kind: CrashKind, code: CodeType | None, now: float, interval: float):
        self.kind = kind
        self.code = code
        self.total = 1
        self.count = 0
        self.next_summary = now + interval
        self.sample: Sample | None = None
        self.announced = True
        self.ended = False

    @classmethod
    def opened(cls, kind: CrashKind, code: CodeType | None) -> Storm:
        """A storm a worker opens for the crash it posts in full (see `announced`): no
        summary is due until the manager announces it."""
        storm = cls(kind, code, math.inf, 0.0)
        storm.announced = False
        return storm


class CrashStorms:
    """
    Decides which crashes are logged in full and accumulates the others.

    Args:
        interval: Seconds between two summaries of one kind; ``None`` turns damping off
            (every crash is logged in full).

    Attributes:
        by_kind: The storms under way, by kind (read directly on the hot paths).
    """

    __slots__ = ("by_kind", "ended", "interval", "next_due")

    def __init__(self, interval: float | None) -> None:
        self.interval = interval
        self.by_kind: dict[CrashKind, Storm] = {}
        #: The earliest time a summary may be due, or ``None`` if nothing is pending.
        self.next_due: float | None = None
        #: The crashes of the storms that have ended.
        self.ended = 0

    def crashes(self) -> int:
        """Every crash counted so far (with damping on): those of ended storms, and of the
        storms under way, summarized or not yet. O(kinds under way)."""
        return self.ended + sum(s.total + s.count for s in self.by_kind.values())

    def admit(self, exc: BaseException, now: float) -> Storm | None:
        """
        Count one crash at *now*. ``None``: log it in full (the first of a storm, or
        damping is off). Otherwise it was counted into the returned storm: keep it as the
        sample if the storm has none.
        """
        if self.interval is None:
            return None
        kind, code = crash_site(exc)
        return self.admit_kind(kind, now, code)

    def damps(
        self, crash: BaseException | Storm | None, heartbeat: bool, now: float, sample: Sample
    ) -> bool:
        """
        Whether one crash is summarized rather than logged in full: *crash* is its exception,
        or the `Storm` a worker posted it as (counted already), or a heartbeat miss. A
        summarized crash is counted, and kept as its storm's *sample* if it has none.
        """
        if self.interval is None:
            return False
        if type(crash) is Storm:
            storm: Storm | None = crash
            if not crash.announced:
                self.announce(crash, now)
        elif heartbeat or crash is None:
            storm = self.admit_kind(HEARTBEAT_KIND, now)
        else:
            storm = self.admit(crash, now)  # type: ignore[arg-type]
        if storm is None:
            return False
        if storm.sample is None:
            storm.sample = sample
        return True

    def admit_kind(
        self, kind: CrashKind, now: float, code: CodeType | None = None
    ) -> Storm | None:
        """`admit` for a crash known by its kind (a heartbeat miss)."""
        interval = self.interval
        if interval is None:
            return None
        storm = self.by_kind.get(kind)
        if storm is None:
            self.by_kind[kind] = Storm(kind, code, now, interval)
            if self.next_due is None or now + interval < self.next_due:
                self.next_due = now + interval
            return None
        if not storm.announced:  # opened by the worker of this crash: its first
            self.announce(storm, now)
            return None
        storm.count += 1
        return storm

    def announce(self, storm: Storm, now: float) -> None:
        """The first crash of a storm a worker opened is logged (or, should that crash never
        reach the log, the first of its storm seen): its summaries start at *now*."""
        interval = self.interval
        assert interval is not None
        storm.announced = True
        storm.next_summary = now + interval
        if self.next_due is None or storm.next_summary < self.next_due:
            self.next_due = storm.next_summary

    def due(self, now: float, flush: bool = False) -> tuple[list[StormSummary], list[StormEnd]]:
        """
        The summaries due at *now* (every pending one if *flush*, e.g. when stopping), and
        the storms that ended: a whole period without a crash of their kind, or *flush*. A
        storm of one crash (logged in full, nothing summarized) ends silently. A summary
        due within `TIMER_SLACK` after *now* is due; afterwards `next_due` is later than that.
        """
        interval = self.interval
        if interval is None or not self.by_kind:
            return [], []
        summaries: list[StormSummary] = []
        ends: list[StormEnd] = []
        next_due: float | None = None
        late = now + TIMER_SLACK
        for kind, storm in list(self.by_kind.items()):
            if not flush and late < storm.next_summary:
                if next_due is None or storm.next_summary < next_due:
                    next_due = storm.next_summary
                continue
            count = storm.count
            error_type, location = describe(kind, storm.code)
            if count:
                child_id, incarnation, error = storm.sample or (None, 0, error_type)
                total = storm.total + count
                summaries.append(
                    StormSummary(error_type, location, count, total, child_id, incarnation, error)
                )
                storm.total = total
            if flush or not count:
                del self.by_kind[kind]
                storm.ended = True
                self.ended += storm.total
                if storm.total > 1:
                    ends.append(StormEnd(error_type, location, storm.total))
                continue
            storm.count = 0
            storm.sample = None
            storm.next_summary = now + interval
            if next_due is None or storm.next_summary < next_due:
                next_due = storm.next_summary
        self.next_due = next_due
        return summaries, ends
