"""
Restart backoff: exponential delays with jitter, a cap, and a reset after a healthy run
(Kubernetes' CrashLoopBackOff, Akka's BackoffSupervisor). Pure: the caller passes the
attempt number and a uniform random number in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from greenkeep._errors import InvalidSpecError, SpecProblem

__all__ = ["Backoff"]


def _positive(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, (int, float))
        and math.isfinite(value)
        and value > 0
    )


@dataclass(frozen=True)
class Backoff:
    """
    How long to wait before restarting a child that keeps exiting.

    The *n*-th consecutive restart (n = 1, 2, ...) waits
    ``min(max_delay, initial * factor ** (n - 1))``, multiplied by a uniform random factor in
    ``[1 - jitter, 1 + jitter]``. An incarnation that ran at least *reset_after* seconds
    resets *n*: its exit is restarted after ``initial`` again.

    Args:
        initial: Delay before the first restart, seconds > 0. Default 0.1.
        factor: Growth per consecutive restart, >= 1. Default 2.
        max_delay: The cap, seconds >= *initial*. Default 30.
        jitter: Relative spread, in [0, 1). Default 0.1.
        reset_after: Healthy uptime that resets the sequence, seconds > 0. Default 60.

    Raises:
        InvalidSpecError: Listing every invalid field.
    """

    initial: float = 0.1
    factor: float = 2.0
    max_delay: float = 30.0
    jitter: float = 0.1
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        problems: list[SpecProblem] = []
        owner = "Backoff"
        if not _positive(self.initial):
            problems.append(
                SpecProblem(owner, "initial", "a finite number of seconds > 0", self.initial)
            )
        if not _positive(self.factor) or self.factor < 1:
            problems.append(SpecProblem(owner, "factor", "a finite number >= 1", self.factor))
        if not _positive(self.max_delay) or (
            _positive(self.initial) and self.max_delay < self.initial
        ):
            problems.append(
                SpecProblem(
                    owner, "max_delay", "a finite number of seconds >= initial", self.max_delay
                )
            )
        if (
            isinstance(self.jitter, bool)
            or not isinstance(self.jitter, (int, float))
            or not 0 <= self.jitter < 1
        ):
            problems.append(SpecProblem(owner, "jitter", "a number in [0, 1)", self.jitter))
        if not _positive(self.reset_after):
            problems.append(
                SpecProblem(
                    owner, "reset_after", "a finite number of seconds > 0", self.reset_after
                )
            )
        if problems:
            raise InvalidSpecError(problems)

    @classmethod
    def for_outside_service(cls) -> Backoff:
        """
        The recommended backoff for workers that depend on an outside service (a database,
        a broker, an HTTP API): the defaults but for ``max_delay``, that is
        ``Backoff(initial=0.1, factor=2.0, max_delay=5.0, jitter=0.1, reset_after=60.0)``.

        While the service is down, each worker retries after 0.1, 0.2, 0.4, ... seconds, then
        every 4.5 to 5.5 s. Once it is back, every worker has tried again within
        ``max_delay * (1 + jitter)``, 5.5 s (plus the time its client takes to reconnect).
        With ``reset_after`` (60 s) at least the restart window's ``period`` (5 s by
        default), a pool with its default budget never gives up on an outage, however long
        it lasts: the budget counts crash sequences, and each worker starts at most
        ``1 + period // reset_after`` of them per period (one, with these values). A crash
        loop that is a bug does not give up either: the pool is ``degraded`` instead.

        Returns a new (frozen, equal) instance on every call.
        """
        return cls(max_delay=5.0)

    def base_delay(self, attempt: int) -> float:
        """The delay before restart number *attempt* (1-based), before jitter."""
        if attempt < 1:
            raise ValueError(f"Backoff.base_delay: attempt must be >= 1 (got {attempt!r})")
        exponent = attempt - 1
        # Past the cap the exact power does not matter; avoid overflow on long crash loops.
        if self.factor > 1 and exponent > math.log(self.max_delay / self.initial, self.factor) + 1:
            return self.max_delay
        return min(self.max_delay, self.initial * self.factor**exponent)

    def delay(self, attempt: int, uniform: float) -> float:
        """
        The jittered delay before restart number *attempt*.

        Args:
            attempt: 1 for the first restart of a crash loop, 2 for the next, ...
            uniform: A random number in [0, 1) (``random.random()``).
        """
        spread = self.jitter * (2.0 * uniform - 1.0)
        return self.base_delay(attempt) * (1.0 + spread)
