"""
Conformance with suture v4 (github.com/thejerf/suture): its supervisor tests, translated.

The source is suture's ``master`` branch: ``v4/suture_test.go``, ``v4/complete_test.go`` and
``v4/suture_simple_test.go`` (there is no ``v4/supervisor_test.go`` or
``v4/messages_test.go``), plus ``v4/events_test.go``, which exists only on pull request
#72's branch. Each test below names the suture test it translates (``ExampleNew_simple``,
an example rather than a test, is translated too); the test cases are translated, no code
is copied. What suture does was read in ``v4/supervisor.go``.

How suture's terms map to greenkeep's:

- ``Serve(ctx)`` / ``ServeBackground(ctx)`` and cancelling the context are `run()` (in a
  greenlet) / `start()` and `stop()`; a ``Service`` is a child's target, and its context
  being cancelled is the ``GreenletExit`` greenkeep sends (or the stop signal, for a worker
  that asked for it: suture's old ``Serve()``/``Stop()`` pair).
- ``Add`` on a running supervisor is `start_child`; children of a supervisor that has not
  started are its constructor's specs (greenkeep refuses changes to a supervisor that is
  not running). ``Remove`` is OTP's two steps, `terminate_child` then `delete_child`;
  ``RemoveAndWait`` is `terminate_child`, which returns once the child has ended or its
  shutdown bound has passed. ``ServiceToken`` is the child's id. ``Services()`` is
  `which_children()`.
- ``Spec.Timeout`` is a child's ``shutdown`` (and `stop(timeout)` caps a whole stop); a
  service that does not stop in time is ``Unstopped`` in `StopReport.unstopped` and a
  ``child_unstopped`` event, suture's ``UnstoppedServiceReport`` and ``EventStopTimeout``.
- ``FailureThreshold``, ``FailureDecay`` and ``FailureBackoff`` map loosely to
  ``max_restarts``, ``period`` and `Backoff`. suture counts failures with an exponential
  decay (the count halves every ``FailureDecay`` seconds) and, past the threshold, pauses
  all restarts for ``FailureBackoff`` and then resets the count; greenkeep counts restarts
  in OTP's sliding window (a restart older than ``period`` is forgotten entirely), gives up
  past ``max_restarts`` (stops its children; `join()` raises `RestartIntensityExceeded`;
  the parent sees a crash) and never resets the count; its `Backoff` delays one child's
  restarts, growing per consecutive restart, while the siblings run on.
- A service returning ``nil`` or an error is a child returning or raising (the restart
  table: a permanent child is restarted either way); a panic is an exception (reason
  ``abnormal``). ``ErrDoNotRestart`` is a transient child returning normally;
  ``ErrTerminateSupervisorTree`` is a significant child with ``auto_shutdown`` at each level
  it should end; ``DontPropagateTermination`` is a child supervisor that is not significant
  to its parent.
- suture's test hooks (``getNow``, ``getAfterChan``, ``sync()``) are a
  `greenkeep.testing.ManualClock`, events waited for (``Events().wait``) and a round trip
  through the manager (`settle`).

Not translated:

- ``TestFailureToConstruct`` (the nil ``*Supervisor`` half), ``TestNilSupervisorAdd``,
  ``TestNilSupervisorPanicsAsExpected``: Go nil receivers; a Python method always has its
  object. (The zero-value ``new(Supervisor)`` half is translated: a supervisor cannot be
  built half-configured.)
- ``TestPassNoContextToSupervisor``: ``Serve(nil)`` falling back to a background context;
  greenkeep has no context argument (`run()` and `start()` take none).
- ``TestEverMultistarted``: skipped in suture itself (``t.Skip``: a demonstration that the
  test service dies of a fatal runtime error when its ``Serve`` is called twice directly,
  without any supervisor).
- ``TestEventStopTimeout_String`` (``v4/events_test.go``, pull request #72),
  the event-string half: suture's event hook types render themselves with ``String()``;
  greenkeep's events are structured dicts with no text form of their own (rendering is
  structlog's). The naming half is translated (``test_event_stop_timeout_names_the_child``).
- ``TestDefaultLogging``'s direct calls of the event hook with hand-made
  ``EventStopTimeout`` / ``EventServicePanic`` values: greenkeep has no event types to
  construct (the events are emitted for real instead).
- Tests that were in ``v4/suture_test.go`` once and have since been removed upstream are
  out of scope: ``TestFailingSupervisors`` ("Remove defunct test") and
  ``TestStopSupervisorPanic``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import gevent.queue
import pytest
import structlog.testing

import greenkeep
from greenkeep import Backoff, ChildSpec, Supervisor, Unstopped
from greenkeep.testing import ManualClock

from _events import DEADLINE, Call, Events, hub_turns, wait_until

SHUTDOWN = 0.05  # a hung child's stop bound, in seconds (suture's Spec.Timeout)
SLACK = 0.5  # seconds of scheduling noise tolerated on top of a bound


class Service:
    """
    suture's ``FailableService`` in greenkeep's terms: a worker the test drives through a
    queue of commands shared by all its incarnations.

    ``happy`` (acknowledged on `acks`), ``fail`` (return: suture's ``return nil``),
    ``panic`` (raise), ``hang`` (swallow every ``GreenletExit`` until `release` is set;
    then end if it was asked to stop), ``cancel`` (raise ``GreenletExit`` itself, as a
    service returning a ``context.Canceled`` that its own context did not cause).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.take: gevent.queue.Queue[str] = gevent.queue.Queue()
        self.started: gevent.queue.Queue[int] = gevent.queue.Queue()  # incarnations
        self.stopped: gevent.queue.Queue[int] = gevent.queue.Queue()  # ended by a stop
        self.acks: gevent.queue.Queue[int] = gevent.queue.Queue()
        self.hanging = gevent.event.Event()
        self.asked_to_stop = gevent.event.Event()  # a hung incarnation got GreenletExit
        self.release = gevent.event.Event()
        self.running = 0  # incarnations alive

    def serve(self) -> None:
        info = greenkeep.current()
        incarnation = 0 if info is None else info.incarnation
        self.running += 1
        command = ""
        try:
            self.started.put(incarnation)
            while True:
                command = self.take.get()
                if command == "happy":
                    self.acks.put(incarnation)
                elif command == "fail":
                    return
                elif command == "panic":
                    raise RuntimeError("Panic!")
                elif command == "cancel":
                    raise gevent.GreenletExit
                elif command == "hang" and self._hang():
                    self.stopped.put(incarnation)
                    return
        except gevent.GreenletExit:
            if command != "cancel":
                self.stopped.put(incarnation)
            raise
        finally:
            self.running -= 1

    def _hang(self) -> bool:
        """Hang until released; whether a stop was asked for meanwhile."""
        asked = False
        self.hanging.set()
        while not self.release.is_set():
            try:
                self.release.wait()
            except gevent.GreenletExit:
                asked = True
                self.asked_to_stop.set()
        self.hanging.clear()
        return asked

    def __repr__(self) -> str:
        return self.name


class Tidy:
    """What a test made; everything is released and stopped at its end."""

    def __init__(self) -> None:
        self.services: list[Service] = []
        self.supervisors: list[Supervisor] = []

    def service(self, name: str) -> Service:
        service = Service(name)
        self.services.append(service)
        return service

    def supervisor(self, children: list[ChildSpec] | None = None, **kwargs: Any) -> Supervisor:
        sup = Supervisor(children or [], **kwargs)
        self.supervisors.append(sup)
        return sup

    def close(self) -> None:
        for service in self.services:
            service.release.set()
        for sup in reversed(self.supervisors):  # roots are made after their subtrees
            sup.stop(timeout=DEADLINE)


@pytest.fixture
def tidy() -> Iterator[Tidy]:
    made = Tidy()
    try:
        yield made
    finally:
        made.close()


def settle(sup: Supervisor) -> None:
    """A round trip through the manager (suture's ``sync()``): whatever it was woken for
    before this call has been handled."""
    with contextlib.suppress(greenkeep.ChildNotFoundError):
        sup.terminate_child("__settle__")


def got(queue: gevent.queue.Queue[Any]) -> Any:
    """The next item of *queue*, within the safety bound."""
    return queue.get(timeout=DEADLINE)


def stopped_by(sup: Supervisor, timeout: float | None = None) -> tuple[Any, float]:
    started = time.monotonic()
    report = sup.stop(timeout=timeout)
    return report, time.monotonic() - started


# ---------------------------------------------------------------- the lifecycle


def test_the_happy_case(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestTheHappyCase. A service that returns is restarted;
    stopping the supervisor (cancelling ``Serve``'s context: `stop()` while `run()` runs in
    its own greenlet) stops it, and ``Serve`` returns."""
    service = tidy.service("B")
    sup = tidy.supervisor([ChildSpec("B", service.serve)], name="A")
    assert "A" == sup.name

    serving = gevent.spawn(sup.run)
    assert 1 == got(service.started)

    service.take.put("fail")  # returns: a permanent child is restarted
    assert 2 == got(service.started)

    report = sup.stop()
    assert 2 == got(service.stopped)
    serving.join(timeout=DEADLINE)
    assert serving.dead and serving.successful()  # run() returned
    assert (True, "stopped", 0) == (report.clean, sup.state, service.running)


def test_adding_to_running_supervisor(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestAddingToRunningSupervisor. ``Add`` on a running
    supervisor (`start_child`) starts the service, and ``Services()`` (`which_children`)
    lists it."""
    sup = tidy.supervisor(name="A1")
    sup.start()  # ServeBackground: running once it returns
    service = tidy.service("B1")

    info = sup.start_child(ChildSpec("B1", service.serve))

    assert 1 == got(service.started)
    assert ("running", 1) == (info.status, info.incarnation)
    assert ["B1"] == [c.id for c in sup.which_children()]


def test_running_already_running(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestRunningAlreadyRunning. A supervisor refuses to be
    served twice: `start()` and `run()` on a running one raise
    `SupervisorAlreadyStartedError` (suture panics) and it goes on running."""
    sup = tidy.supervisor(name="A3")
    sup.start()

    with pytest.raises(greenkeep.SupervisorAlreadyStartedError):
        sup.start()
    with pytest.raises(greenkeep.SupervisorAlreadyStartedError):
        sup.run()
    assert "running" == sup.state


def test_full_construction() -> None:
    """suture v4 suture_test.go: TestFullConstruction. Everything a supervisor is built
    with is what it then has: suture's name, FailureThreshold, FailureDecay, FailureBackoff
    and Timeout are greenkeep's name, ``max_restarts``, ``period``, a child's `Backoff` and
    its ``shutdown``."""
    hook = Events()
    backoff = Backoff(initial=3.0, jitter=0)
    sup = Supervisor(
        [ChildSpec("svc", lambda: None, shutdown=29, backoff=backoff)],
        name="Moo",
        max_restarts=2,
        period=1.0,
        subscribers=[hook],
        clock=ManualClock(),
    )

    snapshot = sup.snapshot()
    spec = sup.get_child_spec("svc")
    assert ("Moo", 2, 1.0) == (sup.name, snapshot["max_restarts"], snapshot["period"])
    assert (29, backoff, 3.0) == (spec.shutdown, spec.backoff, spec.backoff.initial)


def test_failure_to_construct() -> None:
    """suture v4 suture_test.go: TestFailureToConstruct (its zero-value half: a
    ``new(Supervisor)`` not made by ``New`` panics when served). A greenkeep supervisor
    cannot exist half-configured: bad arguments raise `InvalidSpecError` at construction,
    naming every problem, and nothing is built. (The nil-receiver half is not translated.)"""
    with pytest.raises(greenkeep.InvalidSpecError) as info:
        Supervisor(max_restarts=-1, period=0, strategy="one_for_none")  # type: ignore[arg-type]

    assert {"max_restarts", "period", "strategy"} == {p.field for p in info.value.problems}


def test_coverage() -> None:
    """suture v4 suture_test.go: TestCoverage. A supervisor built with nothing but an event
    hook (subscribers) takes the defaults (suture's 5 failures / 30 s decay; greenkeep's 3
    restarts in 5 s), and suture's ``NoJitter`` is ``Backoff(jitter=0)``: a restart waits
    exactly the computed delay whatever the random source says."""
    clock = ManualClock()
    events = Events()
    service = Service("jitterless")
    sup = Supervisor(
        [ChildSpec("c", service.serve, backoff=Backoff(initial=0.25, factor=2, jitter=0))],
        subscribers=[events],
        clock=clock,
        random=lambda: 0.99,
    )
    snapshot = sup.snapshot()
    assert (3, 5.0) == (snapshot["max_restarts"], snapshot["period"])
    sup.start()
    try:
        got(service.started)
        service.take.put("fail")
        delays = [events.wait("child_restart_delayed", child_id="c")["delay"]]
        clock.advance(delays[0])
        got(service.started)
        service.take.put("fail")
        delays.append(events.wait("child_restart_delayed", child_id="c")["delay"])

        assert [0.25, 0.5] == delays
    finally:
        sup.stop()


def test_stopping_supervisor_stops_services(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestStoppingSupervisorStopsServices. Stopping the
    supervisor stops its service, and control requests then fail with "not running"
    (`SupervisorNotRunningError`, at once).

    deliberate difference: suture's ``Services()`` returns nil once the supervisor is not
    running; greenkeep's introspection works in every state (README, "The dynamic child
    API"), so `which_children` shows the child, terminated."""
    service = tidy.service("Service 6")
    sup = tidy.supervisor([ChildSpec("Service 6", service.serve)], name="Top6")
    sup.start()
    got(service.started)

    sup.stop()

    assert 1 == got(service.stopped)
    with pytest.raises(greenkeep.SupervisorNotRunningError) as info:
        sup.start_child(ChildSpec("late", service.serve))
    assert "stopped" == info.value.state
    assert [("Service 6", "terminated")] == [(c.id, c.status) for c in sup.which_children()]


def test_add_after_stopping(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestAddAfterStopping. ``Add`` on a supervisor whose
    ``Serve`` has returned does not hang.

    deliberate difference: suture's ``Add`` is then a no-op returning an empty token;
    greenkeep's `start_child` raises `SupervisorNotRunningError` at once (README: "any
    change on a supervisor that is not running ... at once, never a hang"), so the caller
    knows the service was not added."""
    sup = tidy.supervisor(name="main")
    serving = gevent.spawn(sup.run)
    wait_until(lambda: sup.state == "running")
    sup.stop()
    serving.join(timeout=DEADLINE)

    adding = Call(lambda: sup.start_child(ChildSpec("A1", Service("A1").serve)))

    done, error = adding.wait(DEADLINE)
    assert done and isinstance(error, greenkeep.SupervisorNotRunningError)
    assert [] == sup.which_children()


def test_example_new_simple(tidy: Tidy) -> None:
    """suture v4 suture_simple_test.go: ExampleNew_simple (an example, not a test). A
    service hands out 0, 1, ... to whoever asks; cancelling the context (`stop()`) makes it
    say it is stopping and return."""
    numbers: gevent.queue.Channel[int] = gevent.queue.Channel()
    said: list[str] = []

    def incrementor() -> None:
        current = 0
        try:
            while True:
                numbers.put(current)
                current += 1
        except gevent.GreenletExit:
            said.append("Stopping the service")
            raise

    sup = tidy.supervisor([ChildSpec("incrementor", incrementor)], name="Supervisor")
    sup.start()

    assert [0, 1] == [numbers.get(timeout=DEADLINE) for _ in range(2)]
    report = sup.stop()

    assert ["Stopping the service"] == said
    assert report.clean


def test_complete_job(tidy: Tidy) -> None:
    """suture v4 complete_test.go: TestCompleteJob. A job that has done its work returns
    ``ErrDoNotRestart`` and is not restarted: a transient child returning normally
    (action ``keep``), its spec kept, terminated."""
    events = Events()
    numbers: gevent.queue.Channel[int] = gevent.queue.Channel()

    def incrementor_job() -> None:
        current = 0
        while True:
            numbers.put(current + 1)
            current += 1
            if current >= 2:  # JobLimit
                return

    sup = tidy.supervisor(
        [ChildSpec("job", incrementor_job, restart="transient")],
        name="Supervisor",
        subscribers=[events],
    )
    sup.start()

    assert [1, 2] == [numbers.get(timeout=DEADLINE) for _ in range(2)]
    exited = events.wait("child_exited", child_id="job")
    settle(sup)
    assert ("normal", "keep") == (exited["reason"], exited["action"])
    assert [] == events.of("child_restarted")
    assert "terminated" == sup.which_children()[0].status


def test_shim(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestShim. An old-style service (``Serve()`` plus a
    ``Stop()`` method, adapted by ``AsService``) that returns is restarted, and stopping
    the supervisor calls its ``Stop``: greenkeep's cooperative stop, a worker that asked
    for its `stop_signal` and returns when it is set."""
    commands: gevent.queue.Queue[str] = gevent.queue.Queue()
    starts: gevent.queue.Queue[int] = gevent.queue.Queue()
    stopping = gevent.event.Event()

    def old_service() -> None:
        signal = greenkeep.stop_signal()
        inbox: gevent.queue.Queue[str] = gevent.queue.Queue()
        watch = gevent.spawn(lambda: signal.wait() and inbox.put("stop"))
        feed = gevent.spawn(lambda: inbox.put(commands.get()))
        info = greenkeep.current()
        starts.put(0 if info is None else info.incarnation)
        try:
            if inbox.get() == "stop":  # Stop() was called
                stopping.set()
            # else: doReturn, and it returns
        finally:
            gevent.killall([watch, feed])

    sup = tidy.supervisor([ChildSpec("old", old_service, shutdown=DEADLINE)], name="TestShim")
    sup.start()
    assert 1 == got(starts)

    commands.put("return")
    assert 2 == got(starts)  # returned and restarted
    commands.put("return")
    assert 3 == got(starts)  # and again: only the first return would work without a restart

    report = sup.stop()

    assert stopping.is_set()
    assert report.clean
    assert "shutdown" == sup.which_children()[0].last_exit.reason


# ---------------------------------------------------------------- failures, intensity, backoff


def test_failures_each_failure_is_restarted_and_counted(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestFailures (the counting part). A service that returns
    and one that panics are both restarted, the right one each time, and each restart is
    counted (suture's ``failures``: greenkeep's ``restarts_in_period``).

    deliberate difference: suture's count decays (``FailureDecay``: one decay interval
    later two failures count as one, plus the new one: 2); greenkeep's window forgets a
    restart older than ``period`` entirely (README, "Restart intensity": OTP's window), so
    after one period the count starts again from 1. A panic is reason ``abnormal`` and a
    return ``normal``; suture calls both failures."""
    clock = ManualClock()
    events = Events()
    b2, c2 = tidy.service("B2"), tidy.service("C2")
    sup = tidy.supervisor(
        [ChildSpec("B2", b2.serve), ChildSpec("C2", c2.serve)],
        name="A2",
        max_restarts=3,  # FailureThreshold 3.5: the fourth failure is one too many
        period=30.0,  # FailureDecay's default
        clock=clock,
        subscribers=[events],
    )
    sup.start()
    got(b2.started), got(c2.started)

    b2.take.put("fail")
    restarted = events.wait("child_restarted")
    assert (("B2", 2, 1), 2) == (
        (restarted["child_id"], restarted["incarnation"], restarted["restarts_in_period"]),
        got(b2.started),
    )
    b2.take.put("happy")
    assert 2 == got(b2.acks)  # the restarted incarnation serves

    c2.take.put("fail")
    restarted = events.wait("child_restarted")
    assert ("C2", 2, 2) == (
        restarted["child_id"],
        restarted["incarnation"],
        restarted["restarts_in_period"],
    )
    assert 2 == got(c2.started)
    c2.take.put("happy")
    assert 2 == got(c2.acks)  # the correct service was restarted
    assert b2.started.empty()

    clock.advance(30.5)  # one FailureDecay later, past the window's edge
    c2.take.put("fail")
    assert 1 == events.wait("child_restarted", child_id="C2")["restarts_in_period"]
    assert 3 == got(c2.started)

    b2.take.put("panic")
    exited = events.wait("child_exited", child_id="B2")
    restarted = events.wait("child_restarted", child_id="B2")
    assert ("abnormal", "restart", "RuntimeError: Panic!") == (
        exited["reason"],
        exited["action"],
        exited["error"],
    )
    assert (3, 2) == (restarted["incarnation"], restarted["restarts_in_period"])
    assert 3 == got(b2.started)
    assert "running" == sup.state


def test_failures_past_the_threshold_the_supervisor_gives_up(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestFailures (the threshold part).

    deliberate difference: past ``FailureThreshold`` suture pauses every restart for
    ``FailureBackoff`` while the other services keep running, then resumes; greenkeep
    follows OTP (README, "Restart intensity"): more than ``max_restarts`` restarts within
    ``period`` and the supervisor gives up, stops all its children, and `join()` raises
    `RestartIntensityExceeded` (its parent, if any, sees a crash: escalation up the
    tree instead of a pause)."""
    clock = ManualClock()
    events = Events()
    b2, c2 = tidy.service("B2"), tidy.service("C2")
    sup = tidy.supervisor(
        [ChildSpec("B2", b2.serve), ChildSpec("C2", c2.serve)],
        name="A2",
        max_restarts=3,
        period=30.0,
        clock=clock,
        subscribers=[events],
    )
    sup.start()
    got(b2.started), got(c2.started)

    for command in ("fail", "fail", "panic"):  # three restarts: within the budget
        b2.take.put(command)
        got(b2.started)
    b2.take.put("fail")  # the fourth within the period: one too many

    with pytest.raises(greenkeep.RestartIntensityExceeded) as info:
        sup.join(timeout=DEADLINE)
    assert (3, 30.0, 4) == (info.value.max_restarts, info.value.period, info.value.restarts)
    assert 1 == got(c2.stopped)  # the sibling is stopped, not left running
    assert ("failed", 0, 0) == (sup.state, b2.running, c2.running)
    assert events.of("restart_intensity_exceeded", child_id="B2")


def test_failures_backoff_holds_the_restart_while_the_others_run(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestFailures (the backoff part). While a restart is held
    back, the failed service is not restarted and the other service keeps running; once
    the backoff interval has passed it is restarted.

    deliberate difference: suture's backoff is one supervisor-wide pause, entered past the
    threshold; greenkeep's `Backoff` is per child (README, "Liveness": backoff), delays
    every restart of that child from the first, and grows with consecutive restarts (the
    second waits ``initial * factor``) until an incarnation has run ``reset_after``."""
    clock = ManualClock()
    events = Events()
    b2, c2 = tidy.service("B2"), tidy.service("C2")
    backoff = Backoff(initial=15.0, factor=2.0, max_delay=60.0, jitter=0)  # FailureBackoff
    sup = tidy.supervisor(
        [ChildSpec("B2", b2.serve, backoff=backoff), ChildSpec("C2", c2.serve)],
        name="A2",
        max_restarts=10,
        period=30.0,
        clock=clock,
        subscribers=[events],
    )
    sup.start()
    got(b2.started), got(c2.started)

    b2.take.put("fail")
    delayed = events.wait("child_restart_delayed", child_id="B2")
    assert (15.0, 1) == (delayed["delay"], delayed["attempt"])
    c2.take.put("happy")
    assert 1 == got(c2.acks)  # the other service still serves
    clock.advance(14.0)
    settle(sup)
    assert b2.started.empty()  # not restarted during the backoff interval
    assert ("delayed", "running") == tuple(c.status for c in sup.which_children())

    clock.advance(1.0)
    assert 2 == got(b2.started)

    b2.take.put("fail")
    assert 30.0 == events.wait("child_restart_delayed", child_id="B2")["delay"]


def test_failures_coming_back_does_not_reset_the_count(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestFailures (the resume part: after the backoff the
    failure count is 0, and the next failure restarts at once).

    deliberate difference: greenkeep never resets the budget (README, "Restart intensity":
    "a successful restart never resets the budget"). With a `Backoff` the window counts
    crash sequences (README, "Liveness": backoff): a failure soon after the restart is the
    same sequence (attempt 2: delayed longer, not counted again), and a failure after a
    healthy run (``reset_after``) starts a new sequence, which counts; the restart that came
    back after its delay still counts too, so that new sequence within the period gives
    up."""
    clock = ManualClock()
    events = Events()
    b2 = tidy.service("B2")
    sup = tidy.supervisor(
        [ChildSpec("B2", b2.serve, backoff=Backoff(initial=1.0, jitter=0, reset_after=10.0))],
        name="A2",
        max_restarts=1,
        period=30.0,
        clock=clock,
        subscribers=[events],
    )
    sup.start()
    got(b2.started)

    b2.take.put("fail")
    clock.advance(events.wait("child_restart_delayed", child_id="B2")["delay"])
    assert 1 == events.wait("child_restarted", child_id="B2")["restarts_in_period"]
    assert 2 == got(b2.started)
    b2.take.put("fail")  # at once: the same sequence
    delayed = events.wait("child_restart_delayed", child_id="B2")
    assert (2.0, 2) == (delayed["delay"], delayed["attempt"])
    clock.advance(2.0)
    assert 1 == events.wait("child_restarted", child_id="B2")["restarts_in_period"]
    assert 3 == got(b2.started)
    clock.advance(10.0)  # a healthy run: the next failure starts a new sequence
    b2.take.put("fail")

    with pytest.raises(greenkeep.RestartIntensityExceeded):
        sup.join(timeout=DEADLINE)
    assert 2 == events.of("restart_intensity_exceeded")[0]["restarts_in_period"]


def test_issue77(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestIssue77. A service that returns a cancellation its
    own context did not cause (``context.Canceled``) is restarted, not taken for an order
    to stop: in gevent, a child that raises ``GreenletExit`` although its supervisor did
    not ask it to stop.

    deliberate difference (classification only): suture restarts it as a failure;
    greenkeep classifies a ``GreenletExit`` nobody's stop caused as ``normal`` (README, "How
    exits are classified": gevent calls that a success), so a permanent child is restarted
    (and counted) and a transient one would not be."""
    events = Events()
    service = tidy.service("cancelling")
    sup = tidy.supervisor(
        [ChildSpec("cancelling", service.serve)], name="TestIssue77", subscribers=[events]
    )
    sup.start()
    got(service.started)

    service.take.put("cancel")

    exited = events.wait("child_exited", child_id="cancelling")
    assert ("normal", "restart") == (exited["reason"], exited["action"])
    assert 2 == got(service.started)


def test_default_logging() -> None:
    """suture v4 suture_test.go: TestDefaultLogging. With no hook of its own, a supervisor
    logs through the default logger: a panic, the backoff (FailureThreshold 0.5 and
    FailureBackoff 25 ms: the first failure already backs off; here a `Backoff` of 25 ms),
    the restart, and a stop timeout all reach structlog's default logger
    (``structlog.get_logger("greenkeep")``, which ``capture_logs`` captures)."""
    clock = ManualClock()
    service = Service("B4")
    with structlog.testing.capture_logs() as logs:
        sup = Supervisor(
            [
                ChildSpec(
                    "B4",
                    service.serve,
                    shutdown=SHUTDOWN,
                    backoff=Backoff(initial=0.025, jitter=0),
                )
            ],
            name="A4",
            clock=clock,
        )
        sup.start()
        try:
            got(service.started)
            service.take.put("panic")
            wait_until(lambda: any(e["event"] == "child_restart_delayed" for e in logs))
            clock.advance(0.025)
            assert 2 == got(service.started)
            service.take.put("hang")
            assert service.hanging.wait(DEADLINE)
            report = sup.stop()
        finally:
            service.release.set()

    levels = {(e["event"], e["log_level"]) for e in logs if e.get("child_id") == "B4"}
    assert {
        ("child_exited", "error"),
        ("child_restart_delayed", "info"),
        ("child_restarted", "info"),
        ("child_unstopped", "warning"),
    } <= levels
    assert {"A4"} == {e["supervisor"] for e in logs}
    assert ["B4"] == [u.child_id for u in report.unstopped]


# ---------------------------------------------------------------- trees


def test_nested_supervisors(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestNestedSupervisors. A supervisor added to another runs
    its service when the top is served, and stopping the top stops it.

    deliberate difference: suture's ``Add`` copies the parent's event hook into an added
    supervisor, overwriting the child's own; greenkeep never changes a child supervisor's
    logger or subscribers (each level logs to its own and is passed its own subscribers:
    README, "Events" and "Metrics": "each level of a tree passes it"). The nested
    supervisor's events carry its path in the tree."""
    top_events, nested_events = Events(), Events()
    service = tidy.service("Service5")
    nested = tidy.supervisor(
        [ChildSpec("Service5", service.serve)], name="Nested5", subscribers=[nested_events]
    )
    top = tidy.supervisor([ChildSpec("Nested5", nested)], name="Top5", subscribers=[top_events])

    serving = gevent.spawn(top.run)
    got(service.started)
    service.take.put("happy")
    assert 1 == got(service.acks)

    top.stop()

    assert 1 == got(service.stopped)
    serving.join(timeout=DEADLINE)
    assert serving.dead and serving.successful()  # run() returned
    assert ("stopped", "stopped") == (top.state, nested.state)
    assert {"Top5"} == {e["supervisor"] for e in top_events.all}
    assert {"Top5/Nested5"} == {e["supervisor"] for e in nested_events.all}
    assert nested_events.of("child_started", child_id="Service5")


def test_issue11(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestIssue11. Adding a supervisor to a running one, then a
    service to that sub-supervisor, is safe (suture: no data race) and the service runs:
    `start_child` of a subtree returns once the subtree has started, so it can take
    children at once."""
    top = tidy.supervisor(name="main")
    top.start()
    sub = tidy.supervisor(name="sub")

    top.start_child(ChildSpec("sub", sub))
    service = tidy.service("may cause data race")
    sub.start_child(ChildSpec("svc", service.serve))

    assert 1 == got(service.started)
    assert ("running", "main/sub") == (sub.state, sub.path)


def test_supervisor_management_issue35(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestSupervisorManagementIssue35. A supervisor with 99
    child supervisors starts and stops without trouble."""
    children = [ChildSpec(i, tidy.supervisor(name=f"test{i}")) for i in range(1, 100)]
    top = tidy.supervisor(children, name="issue 35")

    top.start()
    assert 99 == top.count_children().supervisors
    report = top.stop()

    assert report.clean
    assert {"stopped"} == {child.target.state for child in children}  # type: ignore[union-attr]


def test_service_and_tree_termination(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestServiceAndTreeTermination. A service returning
    ``ErrDoNotRestart`` is not restarted; one returning ``ErrTerminateSupervisorTree``
    ends its supervisor and the whole tree above it, and every service is stopped.

    deliberate difference: in greenkeep no value a child returns or raises can end its
    tree; OTP 24's significant children with ``auto_shutdown`` do (README, "Significant
    children"), configured at each level that should end: the service is significant to
    its supervisor, which is significant to the top. ``ErrDoNotRestart`` is a transient
    child returning normally."""
    sub_events = Events()
    service1, service2, service3 = (tidy.service(f"service{i}") for i in (1, 2, 3))
    sub = tidy.supervisor(
        [
            ChildSpec("service1", service1.serve, restart="transient", significant=True),
            ChildSpec("service2", service2.serve),
            ChildSpec("service3", service3.serve, restart="transient"),
        ],
        name="TestTreeTermination2",
        auto_shutdown="any_significant",
        subscribers=[sub_events],
    )
    top = tidy.supervisor(
        [ChildSpec("sub", sub, restart="transient", significant=True)],
        name="TestTreeTermination1",
        auto_shutdown="any_significant",
    )
    serving = gevent.spawn(top.run)  # Serve(nil): it ends on its own
    for service in (service1, service2, service3):
        got(service.started)

    service3.take.put("fail")  # ErrDoNotRestart
    exited = sub_events.wait("child_exited", child_id="service3")
    settle(sub)
    assert "keep" == exited["action"]
    assert (0, True) == (service3.running, service3.started.empty())

    service1.take.put("fail")  # ErrTerminateSupervisorTree

    serving.join(timeout=DEADLINE)
    assert serving.dead and serving.successful()  # run() returned
    assert ("auto_shutdown", "auto_shutdown") == (top.report.reason, sub.report.reason)
    assert (0, 0, 0) == (service1.running, service2.running, service3.running)


def test_do_not_propagate(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestDoNotPropagate. A subtree built with
    ``DontPropagateTermination`` ends when its service terminates the tree, but its parent
    and the parent's other service go on running: in greenkeep, a child supervisor with
    ``auto_shutdown`` that is not significant (and transient) to its parent."""
    parent_events = Events()
    service1 = tidy.service("should keep running")
    service2 = tidy.service("should end up terminating")
    child = tidy.supervisor(
        [ChildSpec("service2", service2.serve, restart="transient", significant=True)],
        name="TestDoNotPropagate Subtree",
        auto_shutdown="any_significant",
    )
    parent = tidy.supervisor(
        [ChildSpec("child", child, restart="transient"), ChildSpec("service1", service1.serve)],
        name="TestDoNotPropagate",
        subscribers=[parent_events],
    )
    parent.start()
    got(service1.started), got(service2.started)

    service2.take.put("fail")

    exited = parent_events.wait("child_exited", child_id="child")
    settle(parent)
    assert ("normal", "keep") == (exited["reason"], exited["action"])
    assert (1, 0) == (service1.running, service2.running)
    assert ("running", "stopped") == (parent.state, child.state)
    service1.take.put("happy")
    assert 1 == got(service1.acks)


# ---------------------------------------------------------------- bounded shutdown


def test_stopping_still_works_with_hung_services(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestStoppingStillWorksWithHungServices. A service that
    ignores the stop does not hang the supervisor's stop: after its timeout the stop
    returns, reporting it (``EventStopTimeout``: ``child_unstopped``); once released, the
    service ends."""
    events = Events()
    service = tidy.service("Service WillHang7")
    sup = tidy.supervisor(
        [ChildSpec("hang", service.serve, shutdown=SHUTDOWN)], name="Top7", subscribers=[events]
    )
    sup.start()
    got(service.started)
    service.take.put("hang")
    assert service.hanging.wait(DEADLINE)

    report, took = stopped_by(sup)

    assert SHUTDOWN <= took < SHUTDOWN + SLACK
    assert [("Top7", "hang", 1)] == [(u.path, u.child_id, u.incarnation) for u in report.unstopped]
    assert 1 == len(events.of("child_unstopped", child_id="hang"))
    service.release.set()
    assert 1 == got(service.stopped)
    wait_until(lambda: sup.state == "stopped")
    assert 0 == service.running


def test_service_report(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestServiceReport. A hung service is in the unstopped
    service report: its supervisor path, the service (its id) and which one (suture's token:
    the incarnation).

    deliberate difference: suture's ``UnstoppedServiceReport()`` blocks until the
    supervisor has stopped; greenkeep's `report` is ``None`` until the stop is over (README,
    "Supervisors"), and `stop()` returns the same report."""
    service = tidy.service("ServiceName")
    sup = tidy.supervisor([ChildSpec("ServiceName", service.serve, shutdown=0.001)], name="Top")
    sup.start()
    got(service.started)
    service.take.put("hang")
    assert service.hanging.wait(DEADLINE)
    assert sup.report is None

    report = sup.stop()

    [unstopped] = report.unstopped
    assert isinstance(unstopped, Unstopped)
    assert ("Top", "ServiceName", 1) == (unstopped.path, unstopped.child_id, unstopped.incarnation)
    assert unstopped.waited >= 0.001
    assert sup.report is report


def test_event_stop_timeout_names_the_child(tidy: Tidy) -> None:
    """suture v4 events_test.go (pull request #72): TestEventStopTimeout_String. The
    stop-timeout event names the supervisor and the service, whether the service can name
    itself (``fmt.Stringer``) or not.

    deliberate difference: suture names a service by its ``String()`` or else its Go type;
    greenkeep names every child by its spec's id (README, "Child specs": ids are required
    and unique), whatever its target is; the event carries ``supervisor`` and
    ``child_id``."""
    events = Events()
    named, plain = tidy.service("named"), tidy.service("unnamed")

    class Secret:  # a target with a secret and no name of its own
        def __init__(self) -> None:
            self.secret = "MySecret"

        def __call__(self) -> None:
            plain.serve()

    sup = tidy.supervisor(
        [
            ChildSpec("named", named.serve, shutdown=SHUTDOWN),
            ChildSpec("secret", Secret(), shutdown=SHUTDOWN),
        ],
        name="test",
        subscribers=[events],
    )
    sup.start()
    for service in (named, plain):
        got(service.started)
        service.take.put("hang")
        assert service.hanging.wait(DEADLINE)

    sup.stop()

    seen = {(e["supervisor"], e["child_id"]) for e in events.of("child_unstopped")}
    assert {("test", "named"), ("test", "secret")} == seen
    assert not any("MySecret" in repr(e) for e in events.all)


# ---------------------------------------------------------------- removing services


def test_remove_service(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestRemoveService. Removing a service stops it; a token of
    another supervisor is refused (``ErrWrongSupervisor``).

    deliberate difference: suture's ``Remove`` stops and forgets in one call; greenkeep's
    dynamic API is OTP's (README, "The dynamic child API"): `terminate_child` stops it and
    keeps the spec, `delete_child` removes the spec. Children are named by id, not by a
    token: an id this supervisor does not have is `ChildNotFoundError`, naming the
    supervisor."""
    service = tidy.service("ServiceToRemove8")
    sup = tidy.supervisor([ChildSpec("remove", service.serve)], name="Top")
    other = tidy.supervisor([ChildSpec("elsewhere", Service("x").serve)], name="Other")
    sup.start()
    other.start()
    got(service.started)

    info = sup.terminate_child("remove")
    sup.delete_child("remove")

    assert 1 == got(service.stopped)
    assert ("terminated", []) == (info.status, sup.which_children())
    for call in (sup.terminate_child, sup.delete_child):
        with pytest.raises(greenkeep.ChildNotFoundError) as error:
            call("elsewhere")
        assert ("Top", "elsewhere") == (error.value.supervisor, error.value.child_id)


def hung_service(tidy: Tidy) -> tuple[Events, Any, Supervisor]:
    """TestRemovingHungService's setup: a supervisor whose one service, "hung", has been
    told to hang (it swallows every stop until released) and hangs now."""
    events = Events()
    service = tidy.service("Service WillHang")
    sup = tidy.supervisor(
        [ChildSpec("hung", service.serve, shutdown=SHUTDOWN)],
        name="TopHungService",
        subscribers=[events],
    )
    sup.start()
    got(service.started)
    service.take.put("hang")
    assert service.hanging.wait(DEADLINE)
    return events, service, sup


def test_removing_hung_service(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestRemovingHungService. A hung service can still be
    removed: the removal gives up after the timeout and says so (``EventStopTimeout``:
    ``child_unstopped``); the supervisor goes on; the service, once released, ends (its
    late exit is reported)."""
    events, service, sup = hung_service(tidy)
    started = time.monotonic()

    info = sup.terminate_child("hung")
    sup.delete_child("hung")

    assert time.monotonic() - started < SHUTDOWN + SLACK
    assert "terminated" == info.status
    assert events.wait("child_unstopped", child_id="hung")["incarnation"] == 1
    assert ("running", []) == (sup.state, sup.which_children())
    service.release.set()
    assert 1 == got(service.stopped)
    assert events.wait("child_exited", child_id="hung", late=True)


def test_removing_hung_service_then_running_it_again(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestRemovingHungService (and adding the same service
    again: suture's ``Add`` after ``Remove`` runs a second copy beside the hung one).
    A hung child is terminated (and left running, reported), restarted by hand, and the
    supervisor stopped while both incarnations hang: both are reported unstopped. Once both
    have ended the supervisor is ``stopped`` (README, "Supervision trees": it "says
    stopping until the last of them has ended ... and then stopped") and can start again."""
    _, service, sup = hung_service(tidy)
    sup.terminate_child("hung")
    sup.restart_child("hung")
    assert 2 == got(service.started)
    service.take.put("hang")
    wait_until(lambda: service.running == 2 and service.hanging.is_set())

    report = sup.stop()
    assert [1, 2] == sorted(u.incarnation for u in report.unstopped)
    service.release.set()
    assert {1, 2} == {got(service.stopped), got(service.stopped)}
    wait_until(lambda: service.running == 0)
    hub_turns()  # the manager has handled both ends

    assert "stopped" == sup.state
    sup.start()
    assert "running" == sup.state


def test_remove_and_wait_for_a_service_that_stops(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestRemoveAndWait (the happy case). Removing and waiting
    returns once the service has ended, well within a long timeout; removing it again is
    harmless.

    deliberate difference: suture's ``RemoveAndWait`` of an already-removed service returns
    nil; greenkeep's `terminate_child` of a terminated child is harmless, but once
    `delete_child` has removed it its id is unknown: `ChildNotFoundError` (README, "The
    dynamic child API": OTP's ``{error, not_found}``)."""
    events = Events()
    service = tidy.service("A1")
    sup = tidy.supervisor(name="main", subscribers=[events])
    sup.start()
    sup.start_child(ChildSpec("A1", service.serve, shutdown=1.0))
    got(service.started)

    info = sup.terminate_child("A1")

    assert (0, "terminated") == (service.running, info.status)  # it has ended
    assert "terminated" == sup.terminate_child("A1").status  # again: harmless
    sup.delete_child("A1")
    with pytest.raises(greenkeep.ChildNotFoundError):
        sup.terminate_child("A1")
    assert [] == events.of("child_unstopped")


def test_remove_and_wait_for_a_hung_service(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestRemoveAndWait (the hung case: ``ErrTimeout``).

    deliberate difference: suture's ``RemoveAndWait`` takes its own timeout and returns
    ``ErrTimeout``; greenkeep's `terminate_child` waits for the child's ``shutdown`` bound,
    then returns, and the child that outlived it is reported as ``child_unstopped`` (README,
    "Bounded shutdown"), not by an error: the spec is terminated either way."""
    events = Events()
    service = tidy.service("A2")
    sup = tidy.supervisor(name="main", subscribers=[events])
    sup.start()
    sup.start_child(ChildSpec("A2", service.serve, shutdown=SHUTDOWN))
    got(service.started)
    service.take.put("hang")
    assert service.hanging.wait(DEADLINE)
    started = time.monotonic()

    info = sup.terminate_child("A2")

    assert SHUTDOWN <= time.monotonic() - started < SHUTDOWN + SLACK
    assert "terminated" == info.status
    assert 1 == service.running  # still hung
    unstopped = events.wait("child_unstopped", child_id="A2")
    assert (1, SHUTDOWN) == (unstopped["incarnation"], unstopped["shutdown"])


def test_remove_and_wait_while_the_supervisor_stops(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestRemoveAndWait (the supervisor stopping instead:
    ``ErrSupervisorNotRunning``). Once a stop has been requested, removing a child is
    refused at once with `SupervisorNotRunningError`."""
    service = tidy.service("A3")
    sup = tidy.supervisor(name="main")
    sup.start()
    sup.start_child(ChildSpec("A3", service.serve))
    got(service.started)

    sup.stop(block=False)  # cancel()

    with pytest.raises(greenkeep.SupervisorNotRunningError):
        sup.terminate_child("A3")
    assert sup.join(timeout=DEADLINE)
    assert 1 == got(service.stopped)


def test_remove_and_wait_forever_for_a_slow_service(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestRemoveAndWait (a timeout of 0 waits forever: a
    service slower than the spec's timeout that ends after all does not hang
    ``RemoveAndWait``, which then returns nil). In greenkeep the wait is the child's
    ``shutdown``: with ``"infinity"``, `terminate_child` returns once the child has ended,
    however long it takes, and nothing is reported unstopped."""
    events = Events()
    service = tidy.service("A1")
    sup = tidy.supervisor(name="main", subscribers=[events])
    sup.start()
    sup.start_child(ChildSpec("A1", service.serve, shutdown="infinity"))
    got(service.started)
    service.take.put("hang")
    assert service.hanging.wait(DEADLINE)

    removing = Call(lambda: sup.terminate_child("A1"))
    assert service.asked_to_stop.wait(DEADLINE)
    hub_turns()
    assert not removing.done.is_set()  # waits for the hung service
    service.release.set()

    done, error = removing.wait(DEADLINE)
    assert (True, None) == (done, error)
    assert ("terminated", 0) == (removing.result.status, service.running)
    assert [] == events.of("child_unstopped")


def test_stop_after_remove_and_wait(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestStopAfterRemoveAndWait. After a service was removed
    and waited for, stopping the supervisor reports no stop timeout."""
    events = Events()
    service = tidy.service("A1")
    sup = tidy.supervisor(name="main", subscribers=[events])
    sup.start()
    sup.start_child(ChildSpec("A1", service.serve, shutdown=1.0))
    got(service.started)
    sup.terminate_child("A1")
    sup.delete_child("A1")
    assert 1 == got(service.stopped)

    report = sup.stop()

    assert report.clean
    assert [] == events.of("child_unstopped")


def test_stop_after_remove_and_wait_of_a_hung_service(tidy: Tidy) -> None:
    """suture v4 suture_test.go: TestStopAfterRemoveAndWait (with the service hung when it
    was removed: suture forgets it once its removal has timed out or it has ended). A child
    that outlived `terminate_child`'s bound was reported then (``child_unstopped``); once it
    has ended and been deleted, a later stop has nothing left that did not stop: its report
    is clean (`StopReport` is "what `Supervisor.stop` did"; the runner would exit 71,
    "children outlived the stop bound", for a stop that stopped everything in time)."""
    events = Events()
    service = tidy.service("A1")
    sup = tidy.supervisor(name="main", subscribers=[events])
    sup.start()
    sup.start_child(ChildSpec("A1", service.serve, shutdown=SHUTDOWN))
    got(service.started)
    service.take.put("hang")
    assert service.hanging.wait(DEADLINE)
    sup.terminate_child("A1")
    events.wait("child_unstopped", child_id="A1")
    sup.delete_child("A1")
    service.release.set()
    events.wait("child_exited", child_id="A1", late=True)

    report = sup.stop()

    assert [] == list(report.unstopped)
    assert report.clean
