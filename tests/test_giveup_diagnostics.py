"""
Give-up diagnostics and storm ends with storm summaries on (the default): the give-up names
the crash that exceeded the budget, nothing carries a placeholder type or an unknown
location, and a storm ends with one storm_ended event (no summary of nothing).

The give-up scenario logs to structlog only (no subscriber): a pool without subscribers
takes its cheapest path in a storm, the one whose diagnostics are tested here. Time is a
ManualClock, moved through summary intervals by the test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest
from structlog.testing import capture_logs

import greenkeep
from greenkeep import WorkerPool
from greenkeep.testing import ManualClock

from _events import DEADLINE, Events

SIZE = 50
#: More than one round of SIZE crashes fits in the budget: the give-up comes in the second
#: round, while the storm is being summarized.
MAX_RESTARTS = 60


def crashing(go: gevent.event.Event, rounds: int | None = None) -> Any:
    """Pool workers that wait for *go*, then crash *rounds* times (None: forever)."""

    def worker(worker_id: int) -> None:
        info = greenkeep.current()
        assert info is not None
        if info.incarnation == 1:
            go.wait()
        if rounds is None or info.incarnation <= rounds:
            raise ValueError(f"boom from worker {worker_id}")
        gevent.event.Event().wait()

    return worker


RAISE_LINE = next(
    number
    for number, line in enumerate(Path(__file__).read_text().splitlines(), start=1)
    if line.strip().startswith('raise ValueError(f"boom from worker')
)
LOCATION = f"{__file__}:{RAISE_LINE}"


class GiveUp:
    """What a pool that gave up in a crash storm left: its error and its log events."""

    def __init__(self, error: greenkeep.RestartIntensityExceeded, logs: list[Any]) -> None:
        self.error = error
        self.logs = [{k: v for k, v in e.items() if k != "exc_info"} for e in logs]
        self.exc_infos = [e["exc_info"] for e in logs if "exc_info" in e]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs if e["event"] == name]


@pytest.fixture
def gave_up() -> GiveUp:
    go = gevent.event.Event()
    with capture_logs() as logs:
        pool = WorkerPool(
            crashing(go), SIZE, max_restarts=MAX_RESTARTS, clock=ManualClock(), name="pool"
        )
        pool.start()
        try:
            go.set()
            with pytest.raises(greenkeep.RestartIntensityExceeded) as info:
                pool.join(timeout=DEADLINE)
        finally:
            pool.stop(timeout=DEADLINE)
    return GiveUp(info.value, logs)


def test_the_give_up_names_the_crash_that_exceeded_the_budget(gave_up: GiveUp) -> None:
    """RestartIntensityExceeded.last_crash and the restart_intensity_exceeded event name the
    same crash (child, incarnation) with that crash's own message."""
    last = gave_up.error.last_crash
    [event] = gave_up.of("restart_intensity_exceeded")

    assert (last.child_id, last.incarnation) == (event["child_id"], event["incarnation"])
    assert f"ValueError: boom from worker {last.child_id}" == last.error
    assert f"ValueError: boom from worker {event['child_id']}" == event["error"]


def test_the_give_up_carries_the_rendered_traceback(gave_up: GiveUp) -> None:
    """last_crash.traceback is the rendered traceback text of that crash."""
    last = gave_up.error.last_crash

    assert last.traceback is not None
    assert f"ValueError: boom from worker {last.child_id}" in last.traceback
    assert f"line {RAISE_LINE}" in last.traceback


def test_no_placeholder_type_or_unknown_location_anywhere(gave_up: GiveUp) -> None:
    """No event or error carries an internal placeholder type ("CrashElided") or the
    unknown location "?" for a crash raised in Python code."""
    texts = [repr(e) for e in gave_up.logs]
    texts += [repr(e) for e in gave_up.exc_infos]
    texts += [str(gave_up.error), repr(gave_up.error.last_crash)]

    assert [] == [t for t in texts if "CrashElided" in t]
    assert [] == [e for e in gave_up.logs if e.get("location") == "?"]
    assert set() == {e["location"] for e in gave_up.logs if "location" in e} - {LOCATION}


class Storm:
    """A pool whose SIZE workers each crash once, at the same time, then run."""

    def __init__(self) -> None:
        self.go = gevent.event.Event()
        self.clock = ManualClock()
        self.events = Events()
        self.pool = WorkerPool(
            crashing(self.go, rounds=1),
            SIZE,
            clock=self.clock,
            subscribers=[self.events],
            name="pool",
        )

    def crash_all(self) -> None:
        self.pool.start()
        self.go.set()
        for worker_id in range(SIZE):
            self.events.wait("child_restarted", child_id=worker_id)

    def summaries(self) -> list[dict[str, Any]]:
        return self.events.of("exits_summarized")


@pytest.fixture
def storm() -> Iterator[Storm]:
    s = Storm()
    try:
        yield s
    finally:
        s.pool.stop(timeout=DEADLINE)


def test_a_storm_ends_with_one_storm_ended_event(storm: Storm) -> None:
    """After a storm of SIZE crashes, a quiet summary interval ends it with one storm_ended
    event (info) giving the kind and the total, the first crash included."""
    storm.crash_all()
    storm.clock.advance(1.0)
    summary = storm.events.wait("exits_summarized", timeout=DEADLINE)
    storm.clock.advance(1.0)
    ended = storm.events.wait("storm_ended", timeout=1.0)
    storm.pool.stop(timeout=DEADLINE)

    assert (SIZE - 1, SIZE) == (summary["count"], summary["total"])
    assert ("info", "ValueError", LOCATION, SIZE) == (
        ended["level"],
        ended["error_type"],
        ended["location"],
        ended["total"],
    )
    assert 1 == len(storm.events.of("storm_ended"))


def test_exits_summarized_is_never_emitted_with_count_0(storm: Storm) -> None:
    """Through a storm and its end, every exits_summarized counts at least one crash and
    none carries a storm_ended key."""
    storm.crash_all()
    storm.clock.advance(1.0)
    storm.events.wait("exits_summarized", timeout=DEADLINE)
    storm.clock.advance(1.0)
    storm.pool.stop(timeout=DEADLINE)  # ends the storm in any case

    summaries = storm.summaries()
    assert summaries
    assert [] == [s for s in summaries if s["count"] == 0]
    assert [] == [s for s in summaries if "storm_ended" in s]


def test_the_rendered_traceback_starts_at_the_users_code(gave_up: GiveUp) -> None:
    """The traceback text greenkeep renders starts at the worker's function: greenkeep's own
    frame (the worker loop that caught the exception) is dropped from the text, while the
    exception logged as ``exc_info`` keeps its traceback untouched."""
    text = gave_up.error.last_crash.traceback
    assert text is not None
    frames = [line for line in text.splitlines() if line.lstrip().startswith('File "')]

    assert frames and __file__ in frames[0]
    assert not any("greenkeep" + os.sep in line and "tests" not in line for line in frames)
    untouched = gave_up.exc_infos[-1]
    assert isinstance(untouched, ValueError)
    assert untouched.__traceback__ is not None
    assert "greenkeep" in untouched.__traceback__.tb_frame.f_code.co_filename
