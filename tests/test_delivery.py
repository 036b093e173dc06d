"""
Delivering events never takes supervision down: sinks (loggers, processors, subscribers)
that raise anything are contained and reported, and a logger that blocks never blocks the
manager (a writer greenlet, a bounded buffer, counted drops).

Calls that must return at once run in their own greenlet with a bound (`Call`), so that a
runtime that hangs makes the test fail instead of hanging it. Blocked loggers are opened
again at the end of every test, and every supervisor is stopped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import gevent
import gevent.event
import pytest
import structlog

import greenkeep
from greenkeep import ChildSpec, Supervisor

from _events import DEADLINE, Call, Events, wait_until

#: Seconds a call that should return at once (or an event that should come at once) gets
#: before the test calls it a hang: generous for what takes milliseconds.
BOUND = 1.0
#: How a failed `Call` assertion reads: (returned in time, what it raised).
RETURNED = "(returned within its bound, what it raised)"
#: Seconds of scheduling noise tolerated on top of a bound.
SLACK = 0.5
#: The per-supervisor buffer of log events waiting for a blocked logger.
BUFFER = 1_000


def block_forever() -> None:
    gevent.event.Event().wait()


def crash_once_when(go: gevent.event.Event) -> Callable[[], None]:
    """A child whose first incarnation crashes once *go* is set; later ones block."""

    def target() -> None:
        info = greenkeep.current()
        assert info is not None
        if info.incarnation == 1:
            go.wait()
            raise ValueError("first run fails")
        block_forever()

    return target


def stop_bounded(sup: Supervisor) -> None:
    """Stop *sup* for cleanup without ever hanging the test (an old runtime may)."""
    if sup.state in ("new", "stopped", "failed"):
        return
    call = Call(lambda: sup.stop(timeout=0.1))
    call.wait(0.3)
    call.abandon()


@contextlib.contextmanager
def starting(sup: Supervisor, gate: Gate | None = None) -> Iterator[Call]:
    """Call sup.start() in its own greenlet; on the way out, whatever happened, open *gate*
    (a blocked logger) and stop *sup*."""
    start = Call(sup.start)
    try:
        yield start
    finally:
        if gate is not None:
            gate.open()
        start.abandon()
        stop_bounded(sup)


def drop(logger: object, method_name: str, event_dict: Mapping[str, Any]) -> Any:
    raise structlog.DropEvent


class Recorder:
    """A structlog processor that records what reaches the logger, in order."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def __call__(self, logger: object, method_name: str, event_dict: Any) -> Any:
        self.seen.append({k: v for k, v in event_dict.items() if k != "exc_info"})
        return event_dict

    def names(self) -> list[str]:
        return [e["event"] for e in self.seen]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.seen if e["event"] == name]


class Raiser(Recorder):
    """
    A processor that raises a new *make()* on *when* events (every one, or only the first).

    Every raiser is disarmed when its test ends (it then drops what it gets): a runtime that
    lost track of a supervisor must not let it raise into later tests (a forked child
    inherits every supervisor still registered).
    """

    armed: ClassVar[list[Raiser]] = []

    def __init__(
        self, make: Callable[[], BaseException], when: str | None = None, once: bool = False
    ) -> None:
        super().__init__()
        self.make = make
        self.when = when
        self.once = once
        self.raised = 0
        self.disarmed = False
        Raiser.armed.append(self)

    def __call__(self, logger: object, method_name: str, event_dict: Any) -> Any:
        if self.disarmed:
            raise structlog.DropEvent
        super().__call__(logger, method_name, event_dict)
        if (self.when is None or event_dict["event"] == self.when) and not (
            self.once and self.raised
        ):
            self.raised += 1
            raise self.make()
        return event_dict

    def subscriber(self, event: Mapping[str, Any]) -> None:
        """The same behaviour as a subscriber."""
        if not self.disarmed:
            self(None, str(event["level"]), dict(event))


@pytest.fixture(autouse=True)
def _disarm_raisers() -> Iterator[None]:
    yield
    while Raiser.armed:
        Raiser.armed.pop().disarmed = True


class Gate(Recorder):
    """
    A processor that blocks cooperatively (waits on a gevent Event) once it is closed,
    until it is opened; it records each event once it lets it through.
    """

    def __init__(self, close_on: str | None = None) -> None:
        super().__init__()
        self.close_on = close_on  # the event that closes it; None: closed from the start
        self.closed = close_on is None
        self.opened = gevent.event.Event()
        self.blocked = gevent.event.Event()  # set when a call first blocks
        self.blocked_at = 0.0

    def __call__(self, logger: object, method_name: str, event_dict: Any) -> Any:
        if event_dict["event"] == self.close_on:
            self.closed = True
        if self.closed and not self.opened.is_set():
            if not self.blocked.is_set():
                self.blocked_at = time.monotonic()
                self.blocked.set()
            self.opened.wait()
        return super().__call__(logger, method_name, event_dict)

    def open(self) -> None:
        self.opened.set()


@pytest.fixture
def gate() -> Iterator[Gate]:
    """A gate closed by the first child_exited; always opened at the end of the test."""
    g = Gate(close_on="child_exited")
    structlog.configure(processors=[g, drop])
    try:
        yield g
    finally:
        g.open()


#: BaseExceptions that are not Exceptions.
BASE_EXCEPTIONS: dict[str, Callable[[], BaseException]] = {
    "Timeout": lambda: gevent.Timeout(),
    "SystemExit": lambda: SystemExit(3),
    "GreenletExit": lambda: gevent.GreenletExit(),
}

#: Exceptions the logger may raise too (a closed pipe, a bug in a processor).
EXCEPTIONS: dict[str, Callable[[], BaseException]] = {
    "BrokenPipeError": lambda: BrokenPipeError(32, "Broken pipe"),
    "RuntimeError": lambda: RuntimeError("processor bug"),
}


# ---------------------------------------------------------------------- sinks that raise


@pytest.mark.parametrize("make", BASE_EXCEPTIONS.values(), ids=BASE_EXCEPTIONS.keys())
def test_a_processor_raising_a_base_exception_does_not_stop_supervision(
    make: Callable[[], BaseException],
) -> None:
    """With a processor that raises a BaseException on every event, start() returns, a
    crashed child is restarted, stop() returns, and subscribers are told of each failure."""
    raiser = Raiser(make)
    structlog.configure(processors=[raiser])
    events = Events()
    go = gevent.event.Event()
    sup = Supervisor([ChildSpec("c", crash_once_when(go))], subscribers=[events], name="s")
    with starting(sup) as start:
        started = start.wait(BOUND)

        assert ((True, None), "running") == (started, sup.state), "start(): " + RETURNED
        go.set()
        restarted = events.wait("child_restarted", timeout=BOUND, child_id="c")
        stopped = Call(lambda: sup.stop(timeout=1.0)).wait(1.0 + SLACK)

    assert 2 == restarted["incarnation"]
    assert ((True, None), "stopped") == (stopped, sup.state), "stop(): " + RETURNED
    failed = events.of("event_delivery_failed")
    assert {"logger"} == {e["sink"] for e in failed}
    assert "child_exited" in [e["failed_event"] for e in failed]


@pytest.mark.parametrize(
    "make",
    [*BASE_EXCEPTIONS.values(), *EXCEPTIONS.values()],
    ids=[*BASE_EXCEPTIONS.keys(), *EXCEPTIONS.keys()],
)
def test_a_logger_failure_is_delivered_to_subscribers(make: Callable[[], BaseException]) -> None:
    """A processor that raises on child_exited is reported to subscribers as
    event_delivery_failed (error; sink "logger"), and the report is tried once on the logger."""
    raiser = Raiser(make, when="child_exited", once=True)  # not the shutdown's child_exited
    structlog.configure(processors=[raiser, drop])
    events = Events()
    go = gevent.event.Event()
    sup = Supervisor([ChildSpec("c", crash_once_when(go))], subscribers=[events], name="s")
    with starting(sup) as start:
        start.wait(BOUND)
        go.set()
        failed = events.wait("event_delivery_failed", timeout=BOUND)

    assert ("error", "s", "logger", "child_exited") == (
        failed["level"],
        failed["supervisor"],
        failed["sink"],
        failed["failed_event"],
    )
    assert type(make()).__name__ in failed["error"]
    assert 1 == raiser.names().count("event_delivery_failed")


@pytest.mark.parametrize("make", BASE_EXCEPTIONS.values(), ids=BASE_EXCEPTIONS.keys())
def test_a_subscriber_raising_a_base_exception_is_contained_and_logged(
    make: Callable[[], BaseException],
) -> None:
    """A subscriber that raises a BaseException on every event: start() returns with the
    children running, a crash is restarted, the subscriber keeps receiving events, and each
    failure goes to the logger (sink "subscriber"), never to subscribers."""
    recorder = Recorder()
    structlog.configure(processors=[recorder, drop])
    raiser = Raiser(make)
    events = Events()
    go = gevent.event.Event()
    sup = Supervisor(
        [ChildSpec("c", crash_once_when(go)), ChildSpec("idle", block_forever)],
        subscribers=[raiser.subscriber, events],
        name="s",
    )
    with starting(sup) as start:
        started = start.wait(BOUND)
        statuses = [c.status for c in sup.which_children()]

        assert ((True, None), ["running", "running"]) == (started, statuses), (
            "start(): " + RETURNED
        )
        go.set()
        events.wait("child_restarted", timeout=BOUND, child_id="c", incarnation=2)
        stopped = Call(lambda: sup.stop(timeout=1.0)).wait(1.0 + SLACK)

    assert ((True, None), "stopped") == (stopped, sup.state), "stop(): " + RETURNED
    received = ["child_started", "child_started", "supervisor_started"]
    received += ["child_exited", "child_restarted"]
    assert received == raiser.names()[:5]
    failures = recorder.of("event_delivery_failed")
    assert received == [e["failed_event"] for e in failures][:5]
    assert {"subscriber"} == {e["sink"] for e in failures}
    assert [] == events.of("event_delivery_failed")


@pytest.mark.parametrize("sink", ["logger", "subscriber"])
def test_keyboard_interrupt_from_a_sink_reaches_the_main_greenlet_and_supervision_goes_on(
    sink: str,
) -> None:
    """A sink that raises KeyboardInterrupt: it is raised in the main greenlet, the crash
    is still restarted and the failure is reported as event_delivery_failed."""
    recorder = Recorder()
    raiser = Raiser(KeyboardInterrupt, when="child_exited", once=True)
    subscribers: list[Callable[[Mapping[str, Any]], object]] = []
    if sink == "logger":
        structlog.configure(processors=[raiser, recorder, drop])
    else:
        structlog.configure(processors=[recorder, drop])
        subscribers.append(raiser.subscriber)
    events = Events()
    go = gevent.event.Event()
    sup = Supervisor(
        [ChildSpec("c", crash_once_when(go))], subscribers=[*subscribers, events], name="s"
    )
    with starting(sup) as start:
        start.wait(BOUND)
        go.set()
        with pytest.raises(KeyboardInterrupt):
            gevent.event.Event().wait(BOUND)  # only the forwarded interrupt ends this early
        events.wait("child_restarted", timeout=BOUND, child_id="c", incarnation=2)
        state = sup.state

    assert "running" == state
    if sink == "logger":
        [failed] = events.of("event_delivery_failed")
    else:
        [failed] = recorder.of("event_delivery_failed")
    assert (sink, "child_exited") == (failed["sink"], failed["failed_event"])
    assert "KeyboardInterrupt" in failed["error"]


def test_snapshot_counts_delivery_failures() -> None:
    """snapshot()["events"] counts every failed delivery (here one subscriber failure)."""
    structlog.configure(processors=[drop])
    raiser = Raiser(lambda: RuntimeError("subscriber bug"), when="supervisor_started")

    with Supervisor([ChildSpec("idle", block_forever)], subscribers=[raiser.subscriber]) as sup:
        counters = sup.snapshot()["events"]

    assert {"delivery_failures": 1, "dropped": 0, "logger_blocked": False} == counters


# ---------------------------------------------------------------------- a logger that blocks


def test_start_returns_while_the_logger_is_blocked() -> None:
    """With a processor that blocks from the first event on, start() returns at once and
    the children run."""
    gate = Gate()  # closed from the start
    structlog.configure(processors=[gate, drop])
    sup = Supervisor([ChildSpec(i, block_forever) for i in "ab"], name="s")
    with starting(sup, gate) as start:
        started = start.wait(BOUND)
        statuses = [c.status for c in sup.which_children()]

    assert (True, None) == started, "start(): " + RETURNED
    assert ["running", "running"] == statuses


def test_restarts_go_on_while_the_logger_is_blocked(gate: Gate) -> None:
    """With a processor blocked on the crash's child_exited, the child is still restarted
    and subscribers see it."""
    events = Events()
    go = gevent.event.Event()
    sup = Supervisor([ChildSpec("c", crash_once_when(go))], subscribers=[events], name="s")
    with starting(sup, gate) as start:
        start.wait(BOUND)
        go.set()
        restarted = events.wait("child_restarted", timeout=BOUND, child_id="c")
        [child] = sup.which_children()
        blocked = gate.blocked.is_set() and not gate.opened.is_set()
        gate.open()

    assert (2, True) == (restarted["incarnation"], blocked)
    assert ("running", 2) == (child.status, child.incarnation)


def test_stop_keeps_its_bound_while_the_logger_is_blocked(gate: Gate) -> None:
    """With a processor blocked forever, stop(timeout=0.5) returns within its bound."""
    go = gevent.event.Event()
    sup = Supervisor(
        [ChildSpec("c", crash_once_when(go)), ChildSpec("idle", block_forever)], name="s"
    )
    with starting(sup, gate) as start:
        start.wait(BOUND)
        go.set()
        gate.blocked.wait(BOUND)
        stop = Call(lambda: sup.stop(timeout=0.5))
        stopped = stop.wait(0.5 + SLACK)
        gate.open()

    assert (True, None) == stopped, "stop(): " + RETURNED
    assert stop.elapsed < 0.5 + SLACK
    assert "shutdown" == stop.result.reason


def test_a_logger_blocked_for_more_than_a_second_is_reported(gate: Gate) -> None:
    """A logger blocked for more than 1 s is reported once as logger_blocked (warning, with
    blocked_for and buffered), and subscribers get it while the logger is still blocked."""
    events = Events()
    go = gevent.event.Event()
    sup = Supervisor([ChildSpec("c", crash_once_when(go))], subscribers=[events], name="s")
    with starting(sup, gate) as start:
        start.wait(BOUND)
        go.set()
        gate.blocked.wait(BOUND)
        reported = events.wait("logger_blocked", timeout=1.0 + BOUND)
        after = time.monotonic() - gate.blocked_at
        still_blocked = not gate.opened.is_set()
        gate.open()

    assert ("warning", "s", True) == (reported["level"], reported["supervisor"], still_blocked)
    assert 1.0 <= after < 1.0 + SLACK + 0.5
    assert 1.0 <= reported["blocked_for"] < 1.0 + SLACK + 0.5
    assert isinstance(reported["buffered"], int) and reported["buffered"] >= 0
    assert 1 == len(events.of("logger_blocked"))


#: Crashes in a row while the logger is blocked: each logs child_exited and
#: child_restarted, more than the buffer holds.
CRASHES = 600


class Storm:
    """A crash loop of CRASHES crashes that runs while the logger is blocked on the first."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.events = Events()
        self.go = gevent.event.Event()
        go = self.go

        def crasher() -> None:
            info = greenkeep.current()
            assert info is not None
            if info.incarnation == 1:
                go.wait()
            if info.incarnation <= CRASHES:
                raise ValueError("again")
            block_forever()

        self.sup = Supervisor(
            [ChildSpec("c", crasher)],
            max_restarts=greenkeep.UNLIMITED,
            log_summary_interval=None,  # every crash in full: two log events per crash
            subscribers=[self.events],
            name="s",
        )

    def run(self) -> None:
        """Start, crash CRASHES times; return once the last restart was seen."""
        self.sup.start()
        self.go.set()
        self.events.wait("child_restarted", timeout=BOUND, incarnation=CRASHES + 1)

    def after_block(self) -> list[tuple[str, int]]:
        """What subscribers saw from the event the logger blocked on, as (name, incarnation)."""
        seen = [(e["event"], e.get("incarnation", 0)) for e in self.events.all]
        return seen[seen.index(("child_exited", 1)) :]


@pytest.fixture
def storm(gate: Gate) -> Iterator[Storm]:
    s = Storm(gate)
    try:
        yield s
    finally:
        gate.open()
        stop_bounded(s.sup)


def test_subscribers_get_every_event_in_order_while_the_logger_is_blocked(storm: Storm) -> None:
    """While the logger is blocked, subscribers still receive every event, in order."""
    storm.run()
    blocked = storm.gate.blocked.is_set() and not storm.gate.opened.is_set()

    expected = []
    for incarnation in range(1, CRASHES + 1):
        expected += [("child_exited", incarnation), ("child_restarted", incarnation + 1)]
    assert expected == [e for e in storm.after_block() if e[0] != "logger_blocked"]
    assert blocked


def test_events_beyond_the_buffer_are_dropped_and_counted(storm: Storm) -> None:
    """More than 1,000 events while the logger is blocked: once it catches up, events_dropped
    (warning) gives the total and the count per event name, to subscribers and the logger."""
    storm.run()
    waiting = len(storm.after_block()) - 1  # the one the logger is blocked on is in flight
    storm.gate.open()
    dropped = storm.events.wait("events_dropped", timeout=BOUND)
    wait_until(lambda: "events_dropped" in storm.gate.names(), timeout=BOUND)

    assert ("warning", "s") == (dropped["level"], dropped["supervisor"])
    assert dropped["dropped"] in (waiting - BUFFER, waiting - BUFFER + 1)
    assert dropped["dropped"] == sum(dropped["counts"].values())
    assert set(dropped["counts"]) <= {"child_exited", "child_restarted"}
    assert dropped["blocked_for"] >= 0


def test_the_logger_gets_the_buffered_events_in_order(storm: Storm) -> None:
    """Once a blocked logger catches up it receives the buffered events in their order."""
    storm.run()
    sent = storm.after_block()
    storm.gate.open()
    wait_until(lambda: "events_dropped" in storm.gate.names(), timeout=BOUND)

    logged = [(e["event"], e.get("incarnation", 0)) for e in storm.gate.seen]
    logged = logged[logged.index(("child_exited", 1)) :]
    assert sent[: BUFFER - 1] == logged[: BUFFER - 1]


def test_snapshot_shows_a_blocked_logger_and_what_it_dropped(storm: Storm) -> None:
    """snapshot()["events"] says the logger is blocked (once reported) and counts drops."""
    storm.run()
    storm.events.wait("logger_blocked", timeout=1.0 + BOUND)
    while_blocked = storm.sup.snapshot()["events"]
    storm.gate.open()
    dropped = storm.events.wait("events_dropped", timeout=BOUND)
    wait_until(lambda: "events_dropped" in storm.gate.names(), timeout=BOUND)
    after = storm.sup.snapshot()["events"]

    assert (0, True) == (while_blocked["delivery_failures"], while_blocked["logger_blocked"])
    assert while_blocked["dropped"] > 0
    assert {"delivery_failures": 0, "dropped": dropped["dropped"], "logger_blocked": False} == (
        after
    )


def test_capture_logs_sees_every_event_in_order_after_a_blocked_start() -> None:
    """A logger blocked while the supervisor starts: start() returns at once, and once it
    catches up capture_logs holds every event of the start, crash, restart and stop, in
    order."""
    gate = Gate()
    events = Events()
    go = gevent.event.Event()
    capture = structlog.testing.LogCapture()
    # capture_logs(processors=...) is newer than structlog 22.1; conftest resets structlog.
    structlog.configure(processors=[gate, capture])
    logs = capture.entries
    sup = Supervisor([ChildSpec("w", crash_once_when(go))], subscribers=[events], name="s")
    with starting(sup, gate) as start:
        started = start.wait(BOUND)

        assert (True, None) == started, "start(): " + RETURNED
        go.set()
        events.wait("child_restarted", timeout=BOUND, child_id="w")
        gate.open()
        wait_until(lambda: "child_restarted" in gate.names(), timeout=BOUND)
        sup.stop(timeout=DEADLINE)

    assert [
        ("child_started", "info", "w"),
        ("supervisor_started", "info", None),
        ("child_exited", "error", "w"),
        ("child_restarted", "info", "w"),
        ("child_exited", "info", "w"),
        ("supervisor_stopped", "info", None),
    ] == [(e["event"], e["log_level"], e.get("child_id")) for e in logs]
