"""gevent's monitor thread, attributed: a worker that blocks the loop is named."""

from __future__ import annotations

import time
from collections.abc import Iterator

import gevent
import gevent.event
import pytest
from structlog.testing import capture_logs

from greenkeep import ChildSpec, Supervisor

from _events import DEADLINE, Events


@pytest.fixture
def monitor_thread() -> Iterator[None]:
    """Turn gevent's monitor thread on (threshold 50 ms) for one test."""
    config = gevent.config
    quiet = "print_blocking_reports" in dir(config)  # a setting since gevent 25.4.1
    saved = (config.monitor_thread, config.max_blocking_time)
    saved_print = config.print_blocking_reports if quiet else None
    config.monitor_thread = True
    config.max_blocking_time = 0.05
    if quiet:
        config.print_blocking_reports = False
    hub = gevent.get_hub()
    thread = hub.start_periodic_monitoring_thread()
    yield
    thread.kill()
    hub.periodic_monitoring_thread = None
    config.monitor_thread, config.max_blocking_time = saved
    if quiet:
        config.print_blocking_reports = saved_print


@pytest.mark.filterwarnings("ignore:Unable to monitor memory usage")
def test_blocking_worker_is_named(monitor_thread: None) -> None:
    """An unpatched blocking call in a worker produces event_loop_blocked naming it."""
    events = Events()
    go = gevent.event.Event()

    def blocker() -> None:
        go.wait()
        time.sleep(0.4)  # an unpatched, blocking call: the whole loop stops
        gevent.event.Event().wait()

    def innocent() -> None:
        gevent.event.Event().wait()

    with capture_logs() as logs:
        sup = Supervisor(
            [ChildSpec("innocent", innocent), ChildSpec("blocker", blocker)],
            name="app",
            subscribers=[events],
        )
        sup.start()
        go.set()
        event = events.wait("event_loop_blocked", timeout=DEADLINE)
        sup.stop()

    assert ("app", "blocker", 1) == (event["supervisor"], event["child_id"], event["incarnation"])
    assert event["blocked_for"] >= 0.05
    assert "time.sleep" in event["stack"] or "blocker" in event["stack"]
    logged = [e for e in logs if e["event"] == "event_loop_blocked"]
    assert logged
    assert "warning" == logged[0]["log_level"]
    assert "blocker" == logged[0]["child_id"]
