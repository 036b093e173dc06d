"""
Helpers for testing code that uses greenkeep: a manual clock for restart windows.

``structlog.testing.capture_logs`` captures greenkeep's events; nothing extra is needed.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable

from greenkeep._check import is_number
from greenkeep._errors import InvalidArgumentError

__all__ = ["ManualClock"]


class ManualClock:
    """
    A clock that only moves when told to: pass it as a supervisor's *clock* and call
    `advance` to move through restart windows without sleeping.

    >>> clock = ManualClock()
    >>> clock.advance(5.0)
    >>> clock()
    5.0
    """

    __slots__ = ("_now", "_wakers")

    def __init__(self, start: float = 0.0) -> None:
        """
        Raises:
            InvalidArgumentError: *start* is not a finite number (a bool is not one).
        """
        if not (is_number(start) and math.isfinite(start)):
            raise InvalidArgumentError("ManualClock()", "start", "a finite number", start)
        self._now = float(start)
        self._wakers: list[weakref.WeakMethod[Callable[[], None]]] = []

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """
        Move the clock forward by *seconds* and wake the supervisors using it.

        Raises:
            InvalidArgumentError: *seconds* is not a finite number >= 0 (a bool is not
                one), or would move the clock past the largest finite float; the clock
                stays where it was.
        """
        now = self._now + seconds if is_number(seconds) and seconds >= 0 else math.nan
        if not math.isfinite(now):
            raise InvalidArgumentError(
                "ManualClock.advance()", "seconds", "a finite number >= 0", seconds
            )
        self._now = now
        alive = []
        for ref in self._wakers:
            wake = ref()
            if wake is not None:
                alive.append(ref)
                wake()
        self._wakers = alive

    def register_waker(self, waker: weakref.WeakMethod[Callable[[], None]]) -> None:
        """Called by supervisors using this clock: they are woken (to run their timers:
        heartbeat ticks, delayed restarts, log summaries) whenever the clock advances."""
        self._wakers.append(waker)

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"
