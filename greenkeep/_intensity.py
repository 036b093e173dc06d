"""
Restart intensity: OTP's "more than *max_restarts* restarts within *period* seconds".

Pure and O(1) per restart: only the last ``max_restarts + 1`` timestamps are kept, and each
timestamp is appended once and dropped once.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["UNLIMITED", "RestartIntensity", "UnlimitedType", "intensity_problems"]


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


#: The name this module's code uses for `UnlimitedType`.
_Unlimited = UnlimitedType

#: ``max_restarts=UNLIMITED`` turns restart intensity off. Meant for benchmarks: a
#: supervisor that never gives up can spin on a crash loop forever.
UNLIMITED = _Unlimited()


class RestartIntensity:
    """
    The sliding window of recent restarts.

    A restart at time *t* stays in the window while ``now - t <= period`` (inclusive, as
    OTP's ``add_restart`` keeps restarts with ``R >= Now - Period``). The window is exceeded
    when, after recording a restart, it holds more than *max_restarts* restarts; the restart
    being recorded is then not performed and the supervisor gives up.

    Args:
        max_restarts: Restarts allowed within the window, an int >= 0, or `UNLIMITED`.
        period: The window's length in seconds, > 0.
    """

    __slots__ = ("_limit", "_times", "in_window", "max_restarts", "period", "total")

    def __init__(self, max_restarts: int | UnlimitedType, period: float) -> None:
        self.max_restarts = max_restarts
        self.period = period
        self.total = 0
        #: How many restarts the window held after the last `record` (``None`` if unlimited).
        self.in_window: int | None = None if isinstance(max_restarts, _Unlimited) else 0
        self._limit = None if isinstance(max_restarts, _Unlimited) else max_restarts
        self._times: deque[float] = deque(maxlen=None if self._limit is None else self._limit + 1)

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
        times = self._times
        period = self.period
        # Written as ``now - t > period`` (not ``t < now - period``) so that the float
        # arithmetic is exactly the documented rule: 0.3 then 1.0 with period 0.7 is in.
        while times and now - times[0] > period:
            times.popleft()
        times.append(now)
        self.in_window = n = len(times)
        return n > self._limit

    def in_period(self, now: float) -> int | None:
        """How many restarts the window holds at *now*; ``None`` when `UNLIMITED`."""
        if self._limit is None:
            return None
        period = self.period
        return sum(1 for t in self._times if now - t <= period)

    @property
    def headroom(self) -> int | None:
        """How many more restarts the window allows right now, at least (restarts that
        have aged out since the last `record` are still counted); ``None`` when
        `UNLIMITED`."""
        if self._limit is None:
            return None
        return self._limit - len(self._times)

    def resized(self, max_restarts: int | UnlimitedType) -> RestartIntensity:
        """A window with a new budget that keeps this one's restarts and total (a pool's
        budget follows its size)."""
        window = RestartIntensity(max_restarts, self.period)
        for stamp in self._times:
            window.record(stamp)
        window.total = self.total
        return window


def intensity_problems(max_restarts: object, period: object) -> list[tuple[str, str, object]]:
    """The (field, allowed, got) triples for invalid intensity settings; empty if valid."""
    problems: list[tuple[str, str, object]] = []
    if not isinstance(max_restarts, _Unlimited) and (
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
