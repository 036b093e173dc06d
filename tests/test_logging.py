"""`greenkeep.logging.configure`: structlog set up for a server process, on request only."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from typing import Any

import gevent
import pytest
import structlog

import greenkeep
import greenkeep.logging
from greenkeep import ChildSpec, Supervisor
from greenkeep.gunicorn import Hooks, current_root

from _events import DEADLINE


def idle() -> None:
    gevent.sleep(3600)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def run_a_supervisor() -> None:
    sup = Supervisor([ChildSpec("a", idle)], name="s")
    sup.start()
    sup.stop(timeout=DEADLINE)


def test_json_lines_with_pid_level_and_time() -> None:
    """Every event is one JSON object with ``pid``, ``level`` and a UTC ISO timestamp; the
    level filter holds (a debug event is dropped at "info")."""
    out = io.StringIO()
    greenkeep.logging.configure("json", level="info", stream=out)

    run_a_supervisor()
    structlog.get_logger("app").debug("not shown")
    events = lines(out)

    assert ["supervisor_started", "supervisor_stopped"] == [
        e["event"] for e in events if e["event"].startswith("supervisor_")
    ]
    assert all(os.getpid() == e["pid"] for e in events)
    assert all(e["timestamp"].endswith("Z") and "level" in e for e in events)
    assert "not shown" not in out.getvalue()


def test_bind_adds_fields_and_console_is_one_line_per_event() -> None:
    out = io.StringIO()
    greenkeep.logging.configure("console", level="debug", stream=out, bind={"service": "x"})

    structlog.get_logger("app").debug("hello", n=1)

    text = out.getvalue()
    assert "hello" in text and "service=x" in text and f"pid={os.getpid()}" in text
    assert 1 == len(text.splitlines())


def test_auto_is_json_off_a_terminal() -> None:
    out = io.StringIO()
    greenkeep.logging.configure("auto", stream=out)

    structlog.get_logger("app").info("hello")

    assert "hello" == lines(out)[0]["event"]


@pytest.mark.parametrize(
    ("argument", "value"),
    [("format", "xml"), ("level", "verbose"), ("level", 10), ("stream", 3), ("bind", {1: 2})],
)
def test_bad_arguments_configure_nothing(argument: str, value: object) -> None:
    kwargs: dict[str, Any] = {argument: value}
    with pytest.raises(greenkeep.InvalidArgumentError) as info:
        greenkeep.logging.configure(**kwargs)

    assert argument == info.value.field
    assert not structlog.is_configured()


def test_importing_greenkeep_configures_nothing() -> None:
    """Only a call configures structlog: importing every public module does not."""
    code = (
        "import structlog, greenkeep, greenkeep.logging, greenkeep.runner, greenkeep.gunicorn,"
        " greenkeep.wsgi, greenkeep.testing; print(structlog.is_configured())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )

    assert "False" == result.stdout.strip(), result.stderr


class GeventWorker:
    """Stands in for gunicorn's gevent worker (the hooks check where its class comes from)."""

    __module__ = "gunicorn.workers.ggevent"

    def __init__(self, age: int) -> None:
        self.pid = os.getpid()
        self.alive = True
        self.age = age


def test_the_gunicorn_hooks_configure_each_worker_with_its_identity(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``Hooks(..., log_format="json")``: the worker's lines carry ``pid`` and ``worker``
    (its age), so two workers' lines differ even when everything else is equal."""
    hooks = Hooks(lambda: Supervisor([ChildSpec("a", idle)], name="app"), log_format="json")

    hooks.post_worker_init(GeventWorker(age=7))
    root = current_root()
    assert root is not None
    root.stop(timeout=DEADLINE)
    greenkeep.gunicorn._root = None
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines()]

    started = [e for e in events if e["event"] == "supervisor_started"]
    assert [(os.getpid(), 7)] == [(e["pid"], e["worker"]) for e in started]


def test_the_hooks_refuse_a_bad_log_format() -> None:
    with pytest.raises(greenkeep.InvalidArgumentError) as info:
        Hooks(lambda: Supervisor(name="x"), log_format="xml")  # type: ignore[arg-type]

    assert "log_format" == info.value.field
