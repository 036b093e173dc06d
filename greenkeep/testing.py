"""
Helpers for testing code that uses greenkeep: a manual clock for restart windows.

``structlog.testing.capture_logs`` captures greenkeep's events; nothing extra is needed.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable

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
        self._now = float(start)
        self._wakers: list[weakref.WeakMethod[Callable[[], None]]] = []

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by *seconds* (>= 0, finite)."""
        if not (isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds >= 0):
            raise ValueError(
                f"ManualClock.advance: seconds must be a finite number >= 0 (got {seconds!r})"
            )
        self._now += seconds
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
