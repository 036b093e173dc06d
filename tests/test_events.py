"""
greenkeep's structured events: names, levels and keys as the README documents them,
delivered to structlog and to subscribers, and never configuring structlog itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import pytest
import structlog
from structlog.testing import capture_logs

import greenkeep
from greenkeep import ChildSpec, Supervisor

from _events import DEADLINE, Events


def block_forever() -> None:
    gevent.event.Event().wait()


def crash_once_then_block() -> None:
    info = greenkeep.current()
    assert info is not None
    gevent.sleep(0)
    if info.incarnation == 1:
        raise ValueError("first run fails")
    block_forever()


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with capture_logs() as captured:
        yield captured


def run_briefly(events: Events) -> Supervisor:
    sup = Supervisor(
        [
            ChildSpec("w", crash_once_then_block),
            ChildSpec("t", block_forever, restart="transient"),
        ],
        name="root",
        subscribers=[events],
    )
    sup.start()
    events.wait("child_restarted", child_id="w")
    sup.stop(timeout=DEADLINE)
    return sup


class TestLogEvents:
    def test_lifecycle_events_levels_and_keys(self, logs: list[dict[str, Any]]) -> None:
        """A start, one crash, a restart and a stop log the documented events, levels, keys."""
        run_briefly(Events())

        summary = [(e["event"], e["log_level"], e.get("child_id")) for e in logs]
        assert [
            ("child_started", "info", "w"),
            ("child_started", "info", "t"),
            ("supervisor_started", "info", None),
            ("child_exited", "error", "w"),
            ("child_restarted", "info", "w"),
            ("child_exited", "info", "t"),
            ("child_exited", "info", "w"),
            ("supervisor_stopped", "info", None),
        ] == summary
        crash = logs[3]
        assert {
            "event",
            "log_level",
            "supervisor",
            "child_id",
            "incarnation",
            "reason",
            "restart",
            "action",
            "error",
            "exc_info",
        } == set(crash)
        assert ("root", 1, "abnormal", "permanent", "restart") == (
            crash["supervisor"],
            crash["incarnation"],
            crash["reason"],
            crash["restart"],
            crash["action"],
        )
        assert isinstance(crash["exc_info"], ValueError)
        assert "ValueError: first run fails" == crash["error"]
        restarted = logs[4]
        assert {
            "event",
            "log_level",
            "supervisor",
            "child_id",
            "incarnation",
            "restarts_in_period",
        } == set(restarted)
        assert (2, 1) == (restarted["incarnation"], restarted["restarts_in_period"])
        started = logs[2]
        assert ("one_for_one", 2, 3, 5.0) == (
            started["strategy"],
            started["children"],
            started["max_restarts"],
            started["period"],
        )
        stopped = logs[-1]
        assert ("shutdown", 0) == (stopped["reason"], stopped["unstopped"])

    def test_every_event_is_in_the_documented_table(self, logs: list[dict[str, Any]]) -> None:
        """Every event and level greenkeep emitted appears in greenkeep.EVENT_LEVELS."""
        run_briefly(Events())

        for entry in logs:
            assert entry["log_level"] in greenkeep.EVENT_LEVELS[entry["event"]], entry

    def test_normal_exit_has_no_exc_info(self, logs: list[dict[str, Any]]) -> None:
        """Routine exits are info and carry no exception."""
        run_briefly(Events())

        normal = [e for e in logs if e["event"] == "child_exited" and e["reason"] != "abnormal"]
        assert normal
        assert all("exc_info" not in e and e["log_level"] == "info" for e in normal)

    def test_injected_logger_is_used(self) -> None:
        """An injected logger receives the events, with the supervisor bound."""
        with capture_logs() as captured:
            logger = structlog.get_logger("mine").bind(app="x")
            sup = Supervisor([ChildSpec("a", block_forever)], logger=logger, name="s")
            sup.start()
            sup.stop()

        assert {("x", "s")} == {(e["app"], e["supervisor"]) for e in captured}

    def test_greenkeep_does_not_configure_structlog(self) -> None:
        """Importing and running greenkeep leaves structlog's configuration untouched."""
        before = structlog.get_config()
        sup = Supervisor([ChildSpec("a", block_forever)])
        sup.start()
        sup.stop()

        assert before == structlog.get_config()


class TestSubscribers:
    def test_subscribers_get_the_same_events(self, logs: list[dict[str, Any]]) -> None:
        """Subscribers receive every logged event, with the same keys plus level."""
        events = Events()
        run_briefly(events)

        assert [e["event"] for e in logs] == events.names()
        crash = events.of("child_exited", reason="abnormal")[0]
        assert ("error", "root", True) == (
            crash["level"],
            crash["supervisor"],
            crash["has_exc_info"],
        )

    def test_raising_subscriber_cannot_take_the_supervisor_down(
        self, logs: list[dict[str, Any]]
    ) -> None:
        """A subscriber that raises is reported as event_delivery_failed and ignored."""

        def broken(event: object) -> None:
            raise RuntimeError("subscriber bug")

        events = Events()
        sup = Supervisor([ChildSpec("w", crash_once_then_block)], subscribers=[broken, events])
        sup.start()
        events.wait("child_restarted", child_id="w")
        sup.stop()

        failures = [e for e in logs if e["event"] == "event_delivery_failed"]
        assert failures
        assert {("subscriber", "RuntimeError: subscriber bug")} == {
            (e["sink"], e["error"]) for e in failures
        }
        assert "stopped" == sup.state

    def test_raising_processor_cannot_take_the_supervisor_down(self) -> None:
        """A log processor that raises on crash events does not stop restarts."""
        calls: list[str] = []

        def processor(logger: object, name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
            calls.append(event_dict["event"])
            if event_dict["event"] == "child_exited":
                raise RuntimeError("processor bug")
            raise structlog.DropEvent

        structlog.configure(processors=[processor])
        events = Events()
        sup = Supervisor([ChildSpec("w", crash_once_then_block)], subscribers=[events])
        sup.start()

        events.wait("child_restarted", child_id="w")
        sup.stop()

        assert "event_delivery_failed" in calls
        assert "stopped" == sup.state
