"""
A pool's readiness bookkeeping (`greenkeep._readiness`) against a model written here the
long way: which workers are failing, for how long, and when the pool is degraded, over any
run of delays, restarts, stops and checks; and the crash-rate measure of pools without
backoff.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from greenkeep._readiness import (
    DEGRADED_AFTER,
    DEGRADED_SHARE,
    RATE_WINDOW,
    RECOVERED_AFTER,
    Readiness,
    threshold,
)

#: Clock readings this close count as equal (sums of a manual clock's steps).
EPS = 1e-9


@dataclass
class Worker:
    """What the bookkeeping reads and marks on a pool's worker record."""

    live: int = 1
    fail_epoch: int = 0
    fail_long: bool = False
    fail_stalled: bool = False
    # The model's own view, the long way:
    failing_since: float | None = None
    running_since: float | None = 0.0
    incarnation: int = 1


def test_the_threshold_is_half_rounded_up_and_at_least_one() -> None:
    """Half the workers (rounded up), at least one: 1 of 1, 1 of 2, 2 of 3, 100 of 200."""
    assert [1, 1, 1, 2, 100] == [threshold(n) for n in (0, 1, 2, 3, 200)]
    assert 0.5 == DEGRADED_SHARE


@settings(max_examples=300)
@given(
    size=st.integers(min_value=1, max_value=6),
    steps=st.lists(
        st.tuples(
            st.sampled_from(["delay", "restart", "stop", "check"]),
            st.integers(min_value=0, max_value=5),
            st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 1.5]),
        ),
        max_size=80,
    ),
)
def test_backoff_bookkeeping_agrees_with_the_model(
    size: int, steps: list[tuple[str, int, float]]
) -> None:
    """Over any run: a worker is failing from its first delayed restart until a check finds
    its current incarnation running for RECOVERED_AFTER (or it is stopped); the pool turns
    degraded at the first check that finds threshold workers failing for DEGRADED_AFTER and
    waiting for a restart, and recovers at the first that finds fewer than threshold
    failing at all."""
    readiness = Readiness(False, size)
    workers = [Worker() for _ in range(size)]
    now = 0.0
    degraded = False
    for what, index, gap in steps:
        now += gap
        worker = workers[index % size]
        if what == "delay":  # the incarnation ended; its restart waits
            worker.live = 0
            worker.running_since = None
            readiness.delayed(worker, now)
            if worker.failing_since is None:
                worker.failing_since = now
        elif what == "restart" and worker.live == 0:
            worker.incarnation += 1
            worker.live = worker.incarnation
            worker.running_since = now
            readiness.relaunched(worker, now)
        elif what == "stop":
            readiness.forget(worker)
            worker.failing_since = None
        elif what == "check":
            change = readiness.check(now, size)

            for w in workers:
                ran = None if w.running_since is None else now - w.running_since
                if (
                    w.failing_since is not None
                    and ran is not None
                    and ran >= RECOVERED_AFTER - EPS
                ):
                    w.failing_since = None
            failing = [w for w in workers if w.failing_since is not None]
            stalled = [
                w
                for w in failing
                if now - w.failing_since >= DEGRADED_AFTER - EPS and w.running_since is None
            ]
            assert len(failing) == readiness.failing
            assert len(stalled) == readiness.stalled
            if not degraded and len(stalled) >= threshold(size):
                degraded = True
                assert change is not None and change.degraded
            elif degraded and len(failing) < threshold(size):
                degraded = False
                assert change is not None and not change.degraded
            else:
                assert change is None
            assert degraded == readiness.degraded
            assert readiness.needs_checks() == (degraded or bool(failing))


def test_a_crash_loop_keeps_a_worker_failing_through_its_brief_runs() -> None:
    """A worker whose incarnations crash at once between two delays stays failing from its
    first delay on: the pool of one is degraded a second later and stays so."""
    readiness = Readiness(False, 1)
    worker = Worker()
    now = 0.0
    readiness.delayed(worker, now)
    changes = []
    for _ in range(40):  # 10 s: restart, crash at once, wait 0.2 s
        now += 0.05
        worker.live = worker.incarnation = worker.incarnation + 1
        readiness.relaunched(worker, now)
        worker.live = 0
        readiness.delayed(worker, now)
        now += 0.2
        changes.append(readiness.check(now, 1))

    [became] = [c for c in changes if c is not None]
    assert became.degraded and 0.0 == became.since
    assert DEGRADED_AFTER <= became.now <= DEGRADED_AFTER + 0.25
    assert readiness.degraded


@given(
    size=st.integers(min_value=1, max_value=50),
    rates=st.lists(st.integers(min_value=0, max_value=200), min_size=1, max_size=40),
)
def test_without_backoff_the_crashes_of_the_last_second_stand_for_failing_workers(
    size: int, rates: list[int]
) -> None:
    """Checked every 0.25 s with *rates* crashes in each quarter: failing is the crashes of
    the last second (at most the size); degraded once that reached the threshold at every
    check for DEGRADED_AFTER, recovered at the first check below it."""
    readiness = Readiness(True, size)
    readiness.watch(0.0, 1)
    crashes, now = 0, 0.0
    quarters: list[int] = []
    over_since: float | None = None
    degraded = False
    for rate in rates:
        crashes += rate
        now += 0.25
        quarters.append(rate)

        change = readiness.check(now, size, crashes)

        window = quarters[-round(RATE_WINDOW / 0.25) :]
        failing = min(size, sum(window))
        assert failing == readiness.failing
        if failing >= threshold(size):
            over_since = now if over_since is None else over_since
        else:
            over_since = None
        held = over_since is not None and now - over_since >= DEGRADED_AFTER - EPS
        if not degraded and held:
            degraded = True
            assert change is not None and change.degraded
        elif degraded and failing < threshold(size):
            degraded = False
            assert change is not None and not change.degraded
        else:
            assert change is None
        assert degraded == readiness.degraded


def test_an_outage_shorter_than_a_second_is_not_degraded() -> None:
    """Every worker crashes for 0.6 s, then runs again: at the check a second after the
    first crash they have failed that long, but run (unproven) again: not degraded; a
    quarter later they have run RECOVERED_AFTER and are not failing."""
    readiness = Readiness(False, 2)
    workers = [Worker(live=0), Worker(live=0)]
    for w in workers:
        readiness.delayed(w, 0.0)
    for w in workers:
        w.live = w.incarnation = 2
        readiness.relaunched(w, 0.6)

    assert (None, 2, 0) == (readiness.check(1.0, 2), readiness.failing, readiness.stalled)
    assert (None, 0) == (readiness.check(1.25, 2), readiness.failing)
    assert not readiness.degraded


def test_a_resize_moves_the_threshold() -> None:
    """Two failing workers of four are enough to degrade; after growing to ten, they are not
    (five are needed), and the pool recovers at the next check."""
    readiness = Readiness(False, 4)
    a, b = Worker(live=0), Worker(live=0)
    readiness.delayed(a, 0.0)
    readiness.delayed(b, 0.0)
    assert readiness.check(1.0, 4) is not None and readiness.degraded

    readiness.resized(10)
    change = readiness.check(1.25, 10)

    assert change is not None and not change.degraded
    assert math.isclose(1.0, change.since)
