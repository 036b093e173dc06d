"""
Restart intensity: OTP's "more than *max_restarts* restarts within *period* seconds".

Pure and O(1) per restart, and per run of restarts recorded together (`record_many`): the
window keeps runs of restarts that leave it at the same moment, at most the last
``max_restarts + 1`` restarts in all, and each run is appended once and dropped once.
"""

from __future__ import annotations

import bisect
import math
import sys
from collections import deque
from itertools import islice
from typing import Final

__all__ = [
    "EDGE_ABSOLUTE",
    "EDGE_RELATIVE",
    "UNLIMITED",
    "RestartIntensity",
    "UnlimitedType",
    "intensity_problems",
]


class UnlimitedType:
    """
    The type of `UNLIMITED`, its only instance (calling it returns `UNLIMITED`), for
    annotations: ``max_restarts: int | UnlimitedType``.
    """

    _instance: UnlimitedType | None = None

    def __new__(cls) -> UnlimitedType:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "greenkeep.UNLIMITED"

    def __reduce__(self) -> str:
        return "UNLIMITED"


#: ``max_restarts=UNLIMITED`` turns restart intensity off. Meant for benchmarks: a
#: supervisor that never gives up can spin on a crash loop forever.
UNLIMITED = UnlimitedType()


#: The window's edge is compared to within this many seconds (1 ns) plus ...
EDGE_ABSOLUTE: Final = 1e-9
#: ... this share of the reading's magnitude (2**-43, about 1.1e-13: some 500 units in the
#: last place of a float), so that the rounding of a clock's own sums and of a difference
#: of two readings never moves a restart across the edge.
EDGE_RELATIVE: Final = 2.0**-43


class RestartIntensity:
    """
    The sliding window of recent restarts.

    A restart at time *t* stays in the window while ``now - t <= period`` (inclusive, as
    OTP's ``add_restart`` keeps restarts with ``R >= Now - Period``), the clock's readings
    compared to within `EDGE_ABSOLUTE` (1 ns) plus `EDGE_RELATIVE` times the magnitude of
    *t*: a restart exactly *period* seconds old still counts even when float arithmetic says
    it is 0.7000000000000001 old (``1.1 - 0.4``); one older than that by more than the
    tolerance does not. The window is exceeded when, after recording a restart, it holds
    more than *max_restarts* restarts; the restart being recorded is then not performed and
    the supervisor gives up.

    Args:
        max_restarts: Restarts allowed within the window, an int >= 0, or `UNLIMITED`.
        period: The window's length in seconds, > 0.
    """

    __slots__ = (
        "_cap",
        "_counts",
        "_edge",
        "_ends",
        "_grow",
        "_held",
        "_limit",
        "_shrink",
        "in_window",
        "max_restarts",
        "period",
        "total",
    )

    def __init__(self, max_restarts: int | UnlimitedType, period: float) -> None:
        self.max_restarts = max_restarts
        self.period = period
        self.total = 0
        #: How many restarts the window held after the last `record` (``None`` if unlimited).
        self.in_window: int | None = None if isinstance(max_restarts, UnlimitedType) else 0
        self._limit = None if isinstance(max_restarts, UnlimitedType) else max_restarts
        # expiry(t) = t + period + EDGE_ABSOLUTE + |t| * EDGE_RELATIVE, as one product and
        # one sum: t * (1 + EDGE_RELATIVE) + (period + EDGE_ABSOLUTE) for t >= 0.
        self._edge = period + EDGE_ABSOLUTE
        self._grow = 1.0 + EDGE_RELATIVE
        self._shrink = 1.0 - EDGE_RELATIVE
        #: The restarts in the window, as runs that leave it at the same moment: when each
        #: run leaves (the last clock reading at which it still counts: its time, plus the
        #: period, plus the tolerance), oldest first, and how many restarts it holds. At
        #: most ``max_restarts + 1`` restarts in all (`_cap`; none for a budget beyond what
        #: any window can reach); `_held` is their sum.
        self._ends: deque[float] = deque()
        self._counts: deque[int] = deque()
        self._held = 0
        self._cap = None if self._limit is None or self._limit >= sys.maxsize else self._limit + 1

    def expiry(self, now: float) -> float:
        """The last clock reading at which a restart at *now* is still in the window."""
        return now * (self._grow if now >= 0 else self._shrink) + self._edge

    def record(self, now: float) -> bool:
        """
        Record a restart at *now* (a reading of the supervisor's clock).

        Returns:
            ``True`` if this restart exceeds the intensity (give up instead of restarting),
            else ``False``.
        """
        self.total += 1
        if self._limit is None:
            return False
        self._drop_before(now)
        # `expiry`, inlined (once per restart).
        self._add(
            now * self._grow + self._edge if now >= 0 else now * self._shrink + self._edge, 1
        )
        self.in_window = n = self._held
        return n > self._limit

    def room(self, now: float) -> int | None:
        """How many restarts at *now* the window still allows before one exceeds it (the
        ones that have aged out by *now* dropped); ``None`` when `UNLIMITED`. With
        `record_many`: a run of restarts decided at one clock reading."""
        if self._limit is None:
            return None
        self._drop_before(now)
        return self._limit - self._held

    def record_many(self, now: float, count: int) -> bool:
        """
        Record *count* restarts at *now*, as *count* calls of `record` in a row would, each
        stopping there if it exceeds the intensity: at most ``room(now) + 1`` of them are
        recorded. Returns whether the last one recorded exceeds it.
        """
        if count <= 0:
            return False
        if self._limit is None:
            self.total += count
            return False
        room = self.room(now)
        assert room is not None
        exceeds = count > room
        if exceeds:
            count = max(room, 0) + 1
        self.total += count
        self._add(self.expiry(now), count)
        self.in_window = n = self._held
        return exceeds and n > self._limit

    def _drop_before(self, now: float) -> None:
        # The runs that have left the window by *now*.
        ends = self._ends
        while ends and ends[0] < now:
            ends.popleft()
            self._held -= self._counts.popleft()

    def _add(self, end: float, count: int) -> None:
        # *count* restarts leaving the window at *end* (no earlier than the last run's end),
        # then the oldest dropped beyond the cap.
        ends, counts = self._ends, self._counts
        if ends and ends[-1] == end:
            counts[-1] += count
        else:
            ends.append(end)
            counts.append(count)
        self._held += count
        cap = self._cap
        if cap is not None and self._held > cap:
            excess = self._held - cap
            while excess:
                oldest = counts[0]
                if oldest <= excess:
                    ends.popleft()
                    counts.popleft()
                    excess -= oldest
                    self._held -= oldest
                else:
                    counts[0] = oldest - excess
                    self._held -= excess
                    excess = 0

    def tally(self) -> None:
        """Count a restart that is not recorded in the window (a later attempt of a backoff
        sequence, see `greenkeep._rules.plan_exit`): it adds to `total` only, and can never
        exceed the intensity."""
        self.total += 1

    def in_period(self, now: float) -> int | None:
        """How many restarts the window holds at *now*; ``None`` when `UNLIMITED`."""
        if self._limit is None:
            return None
        # The runs are in time order: find the first one still in at *now* by bisection (a
        # pool's window can hold tens of thousands).
        ends = self._ends
        if not ends or ends[0] >= now:
            return self._held
        gone = bisect.bisect_left(ends, now)
        return self._held - sum(islice(self._counts, gone))

    @property
    def headroom(self) -> int | None:
        """How many more restarts the window allows right now, at least (restarts that
        have aged out since the last `record` are still counted); ``None`` when
        `UNLIMITED`."""
        if self._limit is None:
            return None
        return self._limit - self._held

    def resized(self, max_restarts: int | UnlimitedType) -> RestartIntensity:
        """A window with a new budget that keeps this one's restarts (the latest ones, as
        many as the new budget keeps) and total (a pool's budget follows its size)."""
        window = RestartIntensity(max_restarts, self.period)
        for end, count in zip(self._ends, self._counts, strict=True):
            window._add(end, count)
        if window._limit is not None:
            window.in_window = window._held
        window.total = self.total
        return window


def intensity_problems(max_restarts: object, period: object) -> list[tuple[str, str, object]]:
    """The (field, allowed, got) triples for invalid intensity settings; empty if valid."""
    problems: list[tuple[str, str, object]] = []
    if not isinstance(max_restarts, UnlimitedType) and (
        isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0
    ):
        problems.append(("max_restarts", "an int >= 0 or greenkeep.UNLIMITED", max_restarts))
    if (
        isinstance(period, bool)
        or not isinstance(period, (int, float))
        or not math.isfinite(period)
        or period <= 0
    ):
        problems.append(("period", "a finite number of seconds > 0", period))
    return problems
