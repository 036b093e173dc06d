"""
Crash-storm damping for logs: the first crash of each kind in full, then at most one
summary per kind per interval, until the storm ends. Every crash is counted.

A *kind* is (exception type, raising location). A storm of a kind starts with its first crash
and ends at the first summary time that finds a whole period without one (one to two intervals
after its last crash); its last summary says so, and the next crash of that kind is logged in
full again. Pure: the caller passes the time in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from greenkeep._exits import ExitKind

__all__ = ["CrashKind", "CrashStorms", "StormSummary", "crash_kind", "describe"]

#: (exception type, code object and bytecode offset where it was raised): cheap to build
#: per crash (a traceback's line number is computed from the line table, its offset is
#: not); `describe` turns it into text only when a summary is logged.
CrashKind = tuple[type, object, int]


def crash_kind(exc: BaseException) -> CrashKind:
    """The kind of a crash: its type and the innermost traceback entry (where it was raised),
    as (type, id of the code object, bytecode offset): cheap to hash."""
    tb = exc.__traceback__
    if tb is None:
        return (type(exc), 0, 0)
    while tb.tb_next is not None:
        tb = tb.tb_next
    return (type(exc), id(tb.tb_frame.f_code), tb.tb_lasti)


def _raise_code(exc: BaseException) -> Any:
    tb = exc.__traceback__
    if tb is None:
        return None
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code


def _line_of(code: Any, offset: int) -> int | None:
    for start, end, line in code.co_lines():
        if start <= offset < end:
            return line  # type: ignore[no-any-return]
    return None


def describe(kind: CrashKind, code: Any = None) -> tuple[str, str]:
    """(qualified type name, "file:line") of a crash kind raised in *code*."""
    cls, _, offset = kind
    if cls is ExitKind:
        return "heartbeat_missed", "?"
    module = getattr(cls, "__module__", None)
    name = cls.__qualname__ if module in (None, "builtins") else f"{module}.{cls.__qualname__}"
    if code is None:
        return name, "?"
    return name, f"{code.co_filename}:{_line_of(code, offset)}"


@dataclass(frozen=True)
class StormSummary:
    """
    One summary of suppressed crashes of one kind (the ``exits_summarized`` event).

    Attributes:
        error_type: The exception type.
        location: Where it was raised.
        count: Crashes of this kind since the previous summary (or the full log line).
        total: Crashes of this kind in this storm, the fully logged first one included.
        sample_child_id: One child among the *count* crashes.
        sample_incarnation: Its incarnation.
        sample_error: Its rendered error.
        ended: Whether the storm is over (a whole period passed without a crash of this kind,
            or the supervisor stopped).
    """

    error_type: str
    location: str
    count: int
    total: int
    sample_child_id: object
    sample_incarnation: int
    sample_error: str
    ended: bool


class _Storm:
    __slots__ = ("code", "count", "next_summary", "sample", "total")

    def __init__(self, now: float, interval: float, code: Any = None) -> None:
        self.code = code  # where it was raised (for the summary's location)
        self.total = 1
        self.count = 0
        self.next_summary = now + interval
        self.sample: tuple[object, int, str] | None = None


class CrashStorms:
    """
    Decides which crashes are logged in full and accumulates the others.

    Args:
        interval: Seconds between two summaries of one kind; ``None`` turns damping off
            (every crash is logged in full).
    """

    __slots__ = ("_storms", "interval", "next_due")

    def __init__(self, interval: float | None) -> None:
        self.interval = interval
        self._storms: dict[CrashKind, _Storm] = {}
        #: The earliest time a summary may be due, or ``None`` if nothing is pending.
        self.next_due: float | None = None

    def admit_crash(self, exc: BaseException, now: float) -> int:
        """
        `admit` for a live exception, on the hot path: returns 1 (log it in full), 0 (counted,
        the period has its sample) or 2 (counted: call `sample` with it).
        """
        tb = exc.__traceback__
        if tb is None:
            kind: CrashKind = (type(exc), 0, 0)
        else:
            while tb.tb_next is not None:
                tb = tb.tb_next
            kind = (type(exc), id(tb.tb_frame.f_code), tb.tb_lasti)
        storm = self._storms.get(kind)
        if storm is None:
            self.admit(kind, now, _raise_code(exc))
            return 1
        storm.count += 1
        return 0 if storm.sample is not None else 2

    def admit(self, kind: CrashKind, now: float, code: Any = None) -> bool:
        """
        Count one crash of *kind* at *now*. ``True``: log it in full (the first of a storm,
        or damping is off). ``False``: it was counted; call `sample` if it is the first
        suppressed one since the last summary (`needs_sample`).
        """
        interval = self.interval
        if interval is None:
            return True
        storm = self._storms.get(kind)
        if storm is None:
            self._storms[kind] = _Storm(now, interval, code)
            if self.next_due is None or now + interval < self.next_due:
                self.next_due = now + interval
            return True
        storm.count += 1
        return False

    def needs_sample(self, kind: CrashKind) -> bool:
        """Whether the current summary period of *kind* has no sample yet."""
        storm = self._storms.get(kind)
        return storm is not None and storm.sample is None

    def sample(self, kind: CrashKind, child_id: object, incarnation: int, error: str) -> None:
        """Keep one rendered crash as the sample of the current summary period."""
        storm = self._storms.get(kind)
        if storm is not None and storm.sample is None:
            storm.sample = (child_id, incarnation, error)

    def due(self, now: float, flush: bool = False) -> list[StormSummary]:
        """
        The summaries due at *now* (every pending one if *flush*, e.g. when stopping), and
        forget storms that ended.
        """
        interval = self.interval
        if interval is None or not self._storms:
            return []
        summaries: list[StormSummary] = []
        next_due: float | None = None
        for kind in list(self._storms):
            storm = self._storms[kind]
            if not flush and now < storm.next_summary:
                next_due = (
                    storm.next_summary if next_due is None else min(next_due, storm.next_summary)
                )
                continue
            ended = flush or not storm.count  # a whole period without a crash of this kind
            storm.total += storm.count
            if storm.count or (ended and storm.total > 1):
                child_id, incarnation, error = storm.sample or (None, 0, "")
                error_type, location = describe(kind, storm.code)
                summaries.append(
                    StormSummary(
                        error_type,
                        location,
                        storm.count,
                        storm.total,
                        child_id,
                        incarnation,
                        error,
                        ended,
                    )
                )
            if ended:
                del self._storms[kind]
                continue
            storm.count = 0
            storm.sample = None
            storm.next_summary = now + interval
            next_due = (
                storm.next_summary if next_due is None else min(next_due, storm.next_summary)
            )
        self.next_due = next_due
        return summaries
