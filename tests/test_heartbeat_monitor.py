"""
Tests for the heartbeat deadline bookkeeping (`greenkeep._heartbeat.HeartbeatMonitor`) as a
pure object, without gevent: Hypothesis drives starts, ends, restarts, beats (also from a
finished incarnation's greenlet) and ticks against the obvious per-record model (a worker is
missed at the second tick in a row without a beat).
"""

# The tests assert `expected == actual` (ruff's SIM300 calls that a Yoda condition).

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from greenkeep._heartbeat import HeartbeatMonitor

INTERVAL = 1.0
HALF = INTERVAL / 2


class FakeGreenlet:
    """Stands in for an incarnation's `WorkerGreenlet`: the flag `greenkeep.beat` sets."""

    __slots__ = ("beaten",)

    def __init__(self) -> None:
        self.beaten = False

    def beat(self) -> None:
        """What `greenkeep.beat()` does in this incarnation's greenlet."""
        self.beaten = True


class FakeRecord:
    """What the monitor needs of a child's record: its incarnation's greenlet, identity."""

    __slots__ = ("greenlet", "name", "stale")

    def __init__(self, name: str) -> None:
        self.name = name
        self.greenlet = FakeGreenlet()
        self.stale = FakeGreenlet()  # a finished incarnation's greenlet

    def beat(self) -> None:
        self.greenlet.beat()

    def renew(self) -> None:
        """A fresh-mode restart: the next incarnation gets a new greenlet."""
        self.stale, self.greenlet = self.greenlet, FakeGreenlet()

    def __repr__(self) -> str:
        return self.name


@dataclass
class ModelRecord:
    watched: bool = False
    beaten: bool = False  # since the last tick (a start counts as a beat)
    late: bool = False  # the last tick found no beat


@dataclass
class Model:
    """One bool per question, checked record by record: the rule as the README states it."""

    records: dict[str, ModelRecord] = field(default_factory=dict)
    next_tick: float = HALF

    def tick(self, now: float) -> set[str]:
        missed = set()
        for name, record in self.records.items():
            if not record.watched:
                continue
            if record.beaten:
                record.beaten = False
                record.late = False
            elif record.late:
                missed.add(name)
                record.watched = False
            else:
                record.late = True
        self.next_tick += HALF
        if self.next_tick <= now:
            self.next_tick = now + HALF
        return missed


NAMES = [f"w{i}" for i in range(6)]

operations = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["start", "end", "beat", "restart", "stale_beat"]),
            st.sampled_from(NAMES),
        ),
        # A tick, late by this much (the manager may be busy for longer than a tick).
        st.tuples(st.just("tick"), st.sampled_from([0.0, 0.0, 0.1, HALF, 2.0])),
    ),
    max_size=80,
)


@given(operations)
def test_monitor_matches_the_per_record_model(ops: list[tuple[str, object]]) -> None:
    monitor = HeartbeatMonitor(INTERVAL, now=0.0)
    records = {name: FakeRecord(name) for name in NAMES}
    model = Model({name: ModelRecord() for name in NAMES})
    for op, arg in ops:
        if op == "tick":
            assert isinstance(arg, float)
            now = monitor.next_tick + arg
            missed = monitor.tick(now)
            assert model.tick(now) == {r.name for r in missed}
            assert len(missed) == len({r.name for r in missed})
            assert model.next_tick == monitor.next_tick
        else:
            assert isinstance(arg, str)
            record, expected = records[arg], model.records[arg]
            if op == "beat":
                record.beat()
                expected.beaten = True
            elif op == "start" and not expected.watched:
                monitor.started(record)
                expected.watched, expected.beaten, expected.late = True, True, False
            elif op == "end" and expected.watched:
                monitor.ended(record)
                expected.watched = False
            elif op == "restart" and expected.watched:  # ended, then a new greenlet starts
                monitor.ended(record)
                record.renew()
                monitor.started(record)
                expected.beaten, expected.late = True, False
            elif op == "stale_beat":  # the old incarnation's greenlet: counts for nothing
                record.stale.beat()
        watched = {name for name, r in model.records.items() if r.watched}
        assert watched == {r.name for r in monitor.watched}


@given(st.integers(min_value=0, max_value=20), st.sampled_from([0.0, 0.1, 2.0]))
def test_a_worker_is_missed_at_the_second_tick_without_a_beat(beats: int, late: float) -> None:
    monitor = HeartbeatMonitor(INTERVAL, now=0.0)
    steady, stuck = FakeRecord("steady"), FakeRecord("stuck")
    monitor.started(steady)  # a start counts as a beat
    monitor.started(stuck)
    for _ in range(beats):
        assert [] == monitor.tick(monitor.next_tick + late)
        steady.beat()
        stuck.beat()
    assert [] == monitor.tick(monitor.next_tick + late)  # stuck's last beat seen
    steady.beat()
    assert [] == monitor.tick(monitor.next_tick + late)  # stuck: one tick without a beat
    steady.beat()
    assert [stuck] == monitor.tick(monitor.next_tick + late)  # two in a row: missed
    assert {steady} == monitor.watched
    steady.beat()
    assert [] == monitor.tick(monitor.next_tick + late)  # the missed one is not reported again


def test_killed_one_and_a_half_intervals_after_a_start_without_beats() -> None:
    monitor = HeartbeatMonitor(INTERVAL, now=0.0)
    record = FakeRecord("w")
    monitor.started(record)
    assert [] == monitor.tick(0.5)
    assert [] == monitor.tick(1.0)
    assert [record] == monitor.tick(1.5)
    record.renew()
    monitor.started(record)  # the next incarnation counts as having just beaten
    record.stale.beat()  # the killed one's greenlet: counts for nothing
    assert [] == monitor.tick(2.0)
    record.stale.beat()
    assert [] == monitor.tick(2.5)
    assert [record] == monitor.tick(3.0)
