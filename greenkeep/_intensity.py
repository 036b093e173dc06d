"""
Restart intensity: OTP's "more than *max_restarts* restarts within *period* seconds".

Pure and O(1) per restart: only the last ``max_restarts + 1`` timestamps are kept, and each
timestamp is appended once and dropped once.
"""

from __future__ import annotations

import bisect
import math
import sys
from collections import deque
from itertools import repeat
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
        "_edge",
        "_expiries",
        "_grow",
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
        #: When each restart in the window leaves it: the last clock reading at which it
        #: still counts (its time, plus the period, plus the tolerance), oldest first.
        #: At most ``max_restarts + 1`` of them (unbounded for a budget beyond what a
        #: deque can count, which no window can reach).
        self._expiries: deque[float] = deque(
            maxlen=None if self._limit is None or self._limit >= sys.maxsize else self._limit + 1
        )

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
        expiries = self._expiries
        while expiries and expiries[0] < now:
            expiries.popleft()
        # `expiry`, inlined (once per restart).
        expiries.append(
            now * self._grow + self._edge if now >= 0 else now * self._shrink + self._edge
        )
        self.in_window = n = len(expiries)
        return n > self._limit

    def room(self, now: float) -> int | None:
        """How many restarts at *now* the window still allows before one exceeds it (the
        ones that have aged out by *now* dropped); ``None`` when `UNLIMITED`. With
        `record_many`: a run of restarts decided at one clock reading."""
        if self._limit is None:
            return None
        expiries = self._expiries
        while expiries and expiries[0] < now:
            expiries.popleft()
        return self._limit - len(expiries)

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
        expiries = self._expiries
        expiries.extend(repeat(self.expiry(now), count))
        self.in_window = n = len(expiries)
        return exceeds and n > self._limit

    def tally(self) -> None:
        """Count a restart that is not recorded in the window (a later attempt of a backoff
        sequence, see `greenkeep._rules.plan_exit`): it adds to `total` only, and can never
        exceed the intensity."""
        self.total += 1

    def in_period(self, now: float) -> int | None:
        """How many restarts the window holds at *now*; ``None`` when `UNLIMITED`."""
        if self._limit is None:
            return None
        # The expiries are in time order: count those at or after *now* by bisection
        # (a pool's window can hold tens of thousands).
        expiries = self._expiries
        if not expiries or expiries[0] >= now:
            return len(expiries)
        return len(expiries) - bisect.bisect_left(expiries, now)

    @property
    def headroom(self) -> int | None:
        """How many more restarts the window allows right now, at least (restarts that
        have aged out since the last `record` are still counted); ``None`` when
        `UNLIMITED`."""
        if self._limit is None:
            return None
        return self._limit - len(self._expiries)

    def resized(self, max_restarts: int | UnlimitedType) -> RestartIntensity:
        """A window with a new budget that keeps this one's restarts (the latest ones, as
        many as the new budget keeps) and total (a pool's budget follows its size)."""
        window = RestartIntensity(max_restarts, self.period)
        window._expiries.extend(self._expiries)
        if window._limit is not None:
            window.in_window = len(window._expiries)
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
