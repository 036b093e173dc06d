"""
Readiness apart from liveness: whether a running pool is *degraded*, alive but with too
many of its workers not doing their work (an outside service they need is down, or a bug
crashes every incarnation). Liveness is the pool's state; this is the second signal, what a
readiness probe asks.

A worker is *failing*:

- in a pool with a `Backoff`: from the exit whose restart is delayed (whatever ended the
  incarnation) until an incarnation of it has run `RECOVERED_AFTER` seconds, or it is
  stopped or not restarted. The brief runs of a crash loop between two delays do not end
  it, so a worker of a crash loop is failing continuously.
- in a pool without backoff, nothing waits: a crash is restarted at once, and the pool's
  straight path (crashes of a kind being summarized) keeps no trace per worker. There the
  crashes of the last `RATE_WINDOW` seconds stand for failing workers, counted up to the
  pool's size: a worker that crashes at least once a second counts as failing (one
  that crashes faster counts once per crash).

The pool becomes degraded once at least `threshold` workers (`DEGRADED_SHARE` of its size,
at least one) have been failing for longer than `DEGRADED_AFTER` seconds continuously and
wait for a restart now (without backoff: the count has stayed at or above the threshold
that long). It stops being degraded once fewer than `threshold` workers are failing at all
(a hysteresis: workers that have just failed again keep it degraded, and those running
again count until they have run `RECOVERED_AFTER`). A worker that runs again, not yet
proven, counts toward staying degraded but never toward becoming so: an outage that is
over by the time the workers' restarts come due does not make the pool degraded.

The cost per exit is O(1) and nothing scans the workers: each worker enters the failing
state once per episode (one append to a time-ordered queue), a failing worker's restart
appends one entry, and the manager's periodic check (`CHECK_EVERY`, only while something is
failing or was crashing) pops what has aged. Pure apart from the records it marks: the
caller passes the time in and acts on what `Readiness.check` returns.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "CHECK_EVERY",
    "DEGRADED_AFTER",
    "DEGRADED_SHARE",
    "RATE_WINDOW",
    "RECOVERED_AFTER",
    "Change",
    "Readiness",
    "threshold",
]

#: The share of a pool's workers that must be failing for it to be degraded.
DEGRADED_SHARE: Final = 0.5
#: Seconds (the supervisor's clock) those workers must have been failing, continuously.
DEGRADED_AFTER: Final = 1.0
#: Seconds a failing worker's incarnation must run for the worker to count as working again.
RECOVERED_AFTER: Final = 0.5
#: Seconds of crashes that stand for failing workers in a pool without backoff.
RATE_WINDOW: Final = 1.0
#: Seconds between two checks, while a check is needed.
CHECK_EVERY: Final = 0.25

# Clock times this close before a due time count as due (as greenkeep._storm.TIMER_SLACK).
_SLACK: Final = 1e-9


def threshold(size: int) -> int:
    """How many failing workers make a pool of *size* degraded: `DEGRADED_SHARE` of it,
    rounded up, at least one."""
    return max(1, math.ceil(DEGRADED_SHARE * size))


@dataclass(frozen=True)
class Change:
    """
    The pool became degraded (*degraded*) or recovered.

    Attributes:
        degraded: ``True``: it is degraded from now on; ``False``: it recovered.
        failing: Workers failing now.
        since: When the failing workers reached the threshold (degraded), or when it
            became degraded (recovered): a reading of the supervisor's clock.
        now: The reading of the check.
    """

    degraded: bool
    failing: int
    since: float
    now: float


class Readiness:
    """
    One pool run's readiness bookkeeping (see the module docstring).

    Args:
        by_crash_rate: The pool has no backoff: count crashes, not waiting workers.
        size: The pool's size (`resize` follows with `resized`).

    Attributes:
        degraded: Whether the pool is degraded now.
        failing: Workers failing now (without backoff: the crashes of the last second, at
            most the pool's size, as of the last check).
        stalled: Failing workers that have been failing for longer than `DEGRADED_AFTER`
            and wait for a restart now (without backoff: *failing* once it has held that
            long, else 0): what makes the pool degraded.
        degraded_since: When it became degraded (meaningful while it is).
    """

    __slots__ = (
        "_epoch",
        "_over_since",
        "_runs",
        "_samples",
        "_young",
        "by_crash_rate",
        "degraded",
        "degraded_since",
        "failing",
        "stalled",
        "threshold",
    )

    def __init__(self, by_crash_rate: bool, size: int) -> None:
        self.by_crash_rate = by_crash_rate
        self.threshold = threshold(size)
        self.degraded = False
        self.degraded_since = 0.0
        self.failing = 0
        self.stalled = 0
        self._epoch = 0
        self._over_since: float | None = None  # when `failing` reached the threshold
        # (when it started failing, the worker, its failing episode), oldest first.
        self._young: deque[tuple[float, Any, int]] = deque()
        # (when a failing worker's incarnation started, the worker, that incarnation).
        self._runs: deque[tuple[float, Any, int]] = deque()
        # Without backoff: (check time, crashes so far), the oldest at or before a window ago.
        self._samples: deque[tuple[float, int]] = deque()

    def resized(self, size: int) -> None:
        """The pool has *size* workers now."""
        self.threshold = threshold(size)
        if self.failing < self.threshold:
            self._over_since = None

    # ------------------------------------------------------------------ with backoff

    def delayed(self, worker: Any, now: float) -> None:
        """*worker*'s incarnation ended and its restart waits for its backoff delay: it is
        failing from *now*, unless it already was (the episode goes on). O(1)."""
        if worker.fail_epoch:
            if worker.fail_long and not worker.fail_stalled:
                worker.fail_stalled = True
                self.stalled += 1
            return
        self._epoch += 1
        worker.fail_epoch = self._epoch
        worker.fail_long = worker.fail_stalled = False
        self.failing += 1
        if self.failing >= self.threshold and self._over_since is None:
            self._over_since = now
        self._young.append((now, worker, self._epoch))

    def relaunched(self, worker: Any, now: float) -> None:
        """*worker*'s next incarnation (``worker.live``) started at *now*: if it is failing,
        it works again once that incarnation has run `RECOVERED_AFTER`. O(1)."""
        if worker.fail_stalled:
            worker.fail_stalled = False
            self.stalled -= 1
        if worker.fail_epoch:
            self._runs.append((now, worker, worker.live))

    def forget(self, worker: Any) -> None:
        """*worker* is not failing any more (it works again, or is stopped, removed or not
        restarted). O(1)."""
        if not worker.fail_epoch:
            return
        worker.fail_epoch = 0
        worker.fail_long = False
        self.failing -= 1
        if worker.fail_stalled:
            worker.fail_stalled = False
            self.stalled -= 1
        if self.failing < self.threshold:
            self._over_since = None

    # ------------------------------------------------------------------ without backoff

    @property
    def sampling(self) -> bool:
        """Without backoff: whether crashes are being sampled (since `watch`)."""
        return bool(self._samples)

    def watch(self, now: float, crashes: int) -> None:
        """Without backoff: a crash happened (counted in *crashes*, the pool's crashes so
        far); start sampling if not sampling already."""
        if not self._samples:
            self._samples.append((now, max(0, crashes - 1)))

    # ------------------------------------------------------------------ the check

    def check(self, now: float, size: int, crashes: int = 0) -> Change | None:
        """
        The periodic check at *now* (with *crashes*, the pool's crashes so far, without
        backoff): age what has aged, then decide. Returns the change, if any.
        """
        if self.by_crash_rate:
            self._sample(now, size, crashes)
        else:
            self._age(now)
        if not self.degraded:
            if self.stalled >= self.threshold and size > 0:
                self.degraded = True
                self.degraded_since = now
                since = now if self._over_since is None else self._over_since
                return Change(True, self.failing, since, now)
        elif self.failing < self.threshold:
            self.degraded = False
            return Change(False, self.failing, self.degraded_since, now)
        return None

    def needs_checks(self) -> bool:
        """Whether the periodic check must go on (something is failing, or it is degraded;
        without backoff: crashes within the window)."""
        if self.degraded or self.failing:
            return True
        if self.by_crash_rate:
            samples = self._samples
            if len(samples) >= 2 and samples[-1][1] != samples[0][1]:
                return True
        return False

    def idle(self) -> None:
        """The checks stop (nothing is failing): without backoff, sampling starts afresh at
        the next crash; with it, what the queues still hold is stale (of no failing worker)
        and is dropped."""
        self._samples.clear()
        if not self.failing:
            self._young.clear()
            self._runs.clear()

    def _age(self, now: float) -> None:
        young, runs = self._young, self._runs
        edge = now - DEGRADED_AFTER + _SLACK
        while young and young[0][0] <= edge:
            _, worker, epoch = young.popleft()
            if worker.fail_epoch == epoch and not worker.fail_long:
                worker.fail_long = True
                if not worker.live:  # it waits for its restart now
                    worker.fail_stalled = True
                    self.stalled += 1
        edge = now - RECOVERED_AFTER + _SLACK
        while runs and runs[0][0] <= edge:
            _, worker, incarnation = runs.popleft()
            if worker.fail_epoch and worker.live == incarnation:
                self.forget(worker)  # its incarnation has run long enough: it works

    def _sample(self, now: float, size: int, crashes: int) -> None:
        samples = self._samples
        samples.append((now, crashes))
        edge = now - RATE_WINDOW + _SLACK
        while len(samples) >= 2 and samples[1][0] <= edge:
            samples.popleft()
        failing = min(size, crashes - samples[0][1])
        self.failing = failing
        if failing >= self.threshold:
            if self._over_since is None:
                self._over_since = now
            held = now - self._over_since >= DEGRADED_AFTER - _SLACK
            self.stalled = failing if held else 0
        else:
            self._over_since = None
            self.stalled = 0
