"""
The clock-driven side of a run (`greenkeep._timers`): what `Timers.fire` reports as due is
consumed by acting on it, so the manager never finds the same thing due again at the same
time. A timer that stayed due would make the manager's wait return at once, again and
again; and in case one ever does, the manager's wait (`Mailbox.receive`) lets the hub run
between two such returns, so the loop can never go on without yielding and freeze the
process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import gevent
from greenlet import getcurrent
from hypothesis import example, given
from hypothesis import strategies as st

from greenkeep._mailbox import Mailbox
from greenkeep._records import Record
from greenkeep._storm import CrashStorms
from greenkeep._timers import TIMER_SLACK, Timers

from _events import DEADLINE

KIND = (ValueError, 1, 2)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def act(timers: Timers, clock: Clock) -> None:
    """What the manager does with `Timers.fire`'s answer (the parts that move timers)."""
    due = timers.fire(ending=False)
    if due is not None and due.summaries:
        timers.storms.due(due.now)


def assert_nothing_due(timers: Timers, clock: Clock) -> None:
    due = timers.next_due()
    assert due is None or due > clock() + TIMER_SLACK, (due, clock())


# Steps a manual clock is advanced by in the tests: their float sums land a hair before
# times a summary is due (0.8 + 1.0 == 1.8, yet 0.4 + 0.4 + 0.1 + 0.1 + 0.4 + 0.4 is
# 1.7999999999999998).
STEPS = st.sampled_from([0.0, 0.1, 0.4, 0.9])


@given(
    plan=st.lists(
        st.tuples(STEPS | st.floats(0, 3), st.sampled_from(["crash", "delay", "check", "none"])),
        max_size=40,
    ),
    interval=st.sampled_from([0.5, 1.0, 2.0]),
)
@example(  # the storm starts at 0.8; its summary is due at 1.8, the clock is a hair before
    plan=[
        (0.4, "none"),
        (0.4, "crash"),
        (0.1, "crash"),
        (0.1, "none"),
        (0.4, "none"),
        (0.4, "none"),
    ],
    interval=1.0,
)
def test_what_fire_calls_due_is_consumed(plan: list[tuple[float, str]], interval: float) -> None:
    """After the manager acts on what is due at *now*, nothing is due at *now* any more."""
    clock = Clock()
    timers = Timers(clock, CrashStorms(interval))
    for step, what in plan:
        clock.now += step
        if what == "crash":
            timers.storms.admit_kind(KIND, clock.now)
        elif what == "delay":
            timers.delay(Record.__new__(Record), clock.now + step)
        elif what == "check" and timers.check_at is None:  # a pool arms its next check
            timers.check_at = clock.now + step
        act(timers, clock)
        assert_nothing_due(timers, clock)


def test_a_summary_a_hair_from_due_is_consumed() -> None:
    """The storm starts at 0.8 (summary due at 1.8); the clock's steps sum to
    1.7999999999999998, within the slack: the summary is due and its time moves on."""
    clock = Clock()
    timers = Timers(clock, CrashStorms(1.0))
    clock.now = 0.4 + 0.4
    timers.storms.admit_kind(KIND, clock.now)
    timers.storms.admit_kind(KIND, clock.now)
    for step in (0.1, 0.1, 0.4, 0.4):
        clock.now += step
    assert 0 < 1.8 - clock.now <= TIMER_SLACK

    act(timers, clock)

    assert_nothing_due(timers, clock)


def test_a_pool_on_a_manual_clock_a_hair_before_a_summary_goes_on() -> None:
    """The user's view of the same edge: a pool on a `ManualClock` whose steps land a hair
    before a storm summary is due keeps restarting (before the fix the manager spun without
    yielding and the whole process froze). Run in a child interpreter, so that a freeze
    fails this test at its deadline instead of hanging the suite."""
    script = textwrap.dedent(
        """
        import gevent.queue, greenkeep
        from greenkeep.testing import ManualClock

        clock = ManualClock()
        queues = {0: gevent.queue.Queue(), 1: gevent.queue.Queue()}
        restarted = gevent.queue.Queue()

        def target(i):
            queues[i].get()
            raise ValueError("storm")

        def subscriber(event):
            if event["event"] == "child_restarted":
                restarted.put(event["child_id"])

        pool = greenkeep.WorkerPool(target, 2, clock=clock, subscribers=[subscriber],
                                    logger=None, name="p")
        pool.start()
        clock.advance(0.4); clock.advance(0.4)   # 0.8: the storm starts, summary due at 1.8
        queues[0].put(None)
        assert restarted.get(timeout=10) == 0
        for step in (0.1, 0.1, 0.4, 0.4):          # 1.7999999999999998
            clock.advance(step)
        queues[1].put(None)
        assert restarted.get(timeout=10) == 1
        pool.stop(timeout=5)
        print("went on")
        """
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=DEADLINE
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the process froze (no exit within {DEADLINE} s)") from None
    assert "went on" in result.stdout, result.stdout + result.stderr


def test_the_managers_wait_lets_the_hub_run_between_two_past_deadlines() -> None:
    """`receive` at a deadline already past returns at once, but not twice in a row: the
    second time the hub runs first (here: a greenlet spawned before the calls)."""

    def manager() -> list[tuple[object, int]]:
        mailbox = Mailbox("t")
        mailbox.open(gevent.get_hub(), getcurrent())
        past = time.monotonic() - 1.0
        ran: list[int] = []
        gevent.spawn(ran.append, 1)  # runs only once the manager lets the hub run
        return [(mailbox.receive(past), len(ran)) for _ in range(3)]

    greenlet = gevent.spawn(manager)
    greenlet.join(timeout=DEADLINE)

    assert [(None, 0), (None, 1), (None, 1)] == greenlet.value
