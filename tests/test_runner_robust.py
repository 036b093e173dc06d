"""
The runner (and the gunicorn hooks) when logging fails or the root gives up while starting:
a signal always leads to the bounded stop, whatever the logger does, and the exit status
says how the root ended.

`run()` runs in its own greenlet with a bound, so a runner that never returns makes the test
fail instead of hanging it; the signal is sent to this process only once the root has started
(run() has installed its handlers by then, and restores the previous ones when it returns).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest
import structlog
from structlog.testing import capture_logs

import greenkeep
import greenkeep.gunicorn
from greenkeep import ChildSpec, Supervisor
from greenkeep.gunicorn import Hooks, current_root
from greenkeep.runner import EXIT_GAVE_UP, EXIT_OK, run

from _events import Call

APPS = Path(__file__).resolve().parent / "apps"

#: Seconds a run that was asked to stop (stop_timeout 1 s) gets to return.
RUN_BOUND = 3.0
#: Seconds a subprocess gets to start or to exit: a bound that turns a hang into a failure.
PROCESS_BOUND = 6.0


def drop(logger: object, method_name: str, event_dict: Mapping[str, Any]) -> Any:
    raise structlog.DropEvent


class FailingSink:
    """A processor that raises BrokenPipeError on *when* events (None: on every one), or
    blocks on them (cooperatively) until `release`."""

    def __init__(self, when: str | None = None, block: bool = False) -> None:
        self.when = when
        self.block = block
        self.released = gevent.event.Event()
        self.hit = 0

    def __call__(self, logger: object, method_name: str, event_dict: Any) -> Any:
        if self.when is None or event_dict["event"] == self.when:
            self.hit += 1
            if self.block:
                self.released.wait()
            else:
                raise BrokenPipeError(32, "Broken pipe")
        raise structlog.DropEvent

    def release(self) -> None:
        self.released.set()


class Tree:
    """A root with two children that record that they were stopped, and that sends SIGTERM
    to this process once it has started (while run() handles the signal)."""

    def __init__(self) -> None:
        self.stopped: list[str] = []
        self.signalled = False

        def child(name: str) -> None:
            try:
                gevent.event.Event().wait()
            finally:
                self.stopped.append(name)

        def signal_once_started(event: Mapping[str, Any]) -> None:
            if event["event"] == "supervisor_started" and not self.signalled:
                self.signalled = True
                os.kill(os.getpid(), signal.SIGTERM)

        self.root = Supervisor(
            [ChildSpec(n, child, (n,)) for n in "ab"],
            name="app",
            subscribers=[signal_once_started],
        )

    def cleanup(self, call: Call) -> None:
        """Make sure run() has returned (so its signal handlers are gone) and the root is
        stopped, even if the runner under test never stopped it."""
        if not call.done.is_set():
            stopper = Call(lambda: self.root.stop(timeout=0.5))
            stopper.wait(RUN_BOUND)
            call.wait(RUN_BOUND)
        if not call.done.is_set():
            call.greenlet.kill(block=False)


def test_run_exits_0_with_a_logger_that_raises_broken_pipe_on_every_call() -> None:
    """With a logger that raises BrokenPipeError on every call, SIGTERM stops every child and
    run() returns 0."""
    structlog.configure(processors=[FailingSink()])
    tree = Tree()
    call = Call(lambda: run(tree.root, stop_timeout=1))
    try:
        returned = (*call.wait(RUN_BOUND), call.result)
    finally:
        tree.cleanup(call)

    assert (True, None, EXIT_OK) == returned, "run(): (returned in time, raised, status)"
    assert (["b", "a"], "stopped") == (tree.stopped, tree.root.state)


@pytest.mark.parametrize("block", [False, True], ids=["raises", "blocks"])
def test_a_logger_failing_on_signal_received_never_prevents_the_stop(block: bool) -> None:
    """A logger that raises or blocks while the runner logs signal_received: the stop still
    happens, within its bound, and run() returns 0."""
    sink = FailingSink(when="signal_received", block=block)
    structlog.configure(processors=[sink])
    tree = Tree()
    call = Call(lambda: run(tree.root, stop_timeout=1))
    try:
        returned = (*call.wait(RUN_BOUND), call.result)
        stopped = list(tree.stopped)
    finally:
        sink.release()
        tree.cleanup(call)

    assert (True, None, EXIT_OK) == returned, "run(): (returned in time, raised, status)"
    assert ["b", "a"] == stopped
    assert 1 == sink.hit


def read_until_started(process: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    """Read the runner's JSON log lines from its stderr until the root has started."""
    assert process.stderr is not None
    fd = process.stderr.fileno()
    events: list[dict[str, Any]] = []
    buffer = b""
    end = time.monotonic() + PROCESS_BOUND
    while True:
        remaining = end - time.monotonic()
        assert remaining > 0, f"the root did not start; stderr: {buffer!r}"
        readable, _, _ = select.select([fd], [], [], remaining)
        if not readable:
            continue
        chunk = os.read(fd, 65536)
        assert chunk, f"exited before the root started; stderr: {buffer!r}"
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
            last = events[-1] if events else {}
            if (last.get("event"), last.get("supervisor")) == ("supervisor_started", "app"):
                return events


def test_the_cli_exits_0_on_sigterm_when_its_output_pipes_are_closed() -> None:
    """python -m greenkeep whose stdout and stderr readers have gone away: one SIGTERM makes
    it exit promptly with status 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "greenkeep", "--log-format", "json", "runner_app:build"],
        cwd=APPS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        read_until_started(process)
        assert process.stdout is not None and process.stderr is not None
        process.stdout.close()
        process.stderr.close()
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            status: int | None = process.wait(timeout=PROCESS_BOUND)
        except subprocess.TimeoutExpired:
            status = None
        took = time.monotonic() - sent
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=PROCESS_BOUND)

    assert EXIT_OK == status, f"exit status {status} (None: still running {took:.1f} s later)"
    assert took < 5.0  # the consumer needs 0.05 s; the rest is the interpreter's exit


def crash_at_once() -> None:
    raise ConnectionError("cannot connect")


def test_run_exits_70_when_the_root_gives_up_while_starting() -> None:
    """A root whose child crashes at once and that gives up during start ends run() with
    status 70 (EXIT_GAVE_UP)."""
    root = Supervisor([ChildSpec("c", crash_at_once)], max_restarts=0, name="app")
    with capture_logs() as logs:
        status = run(root, stop_timeout=1)

    assert EXIT_GAVE_UP == status
    [done] = [e for e in logs if e["event"] == "runner_stopped"]
    assert ("restart_intensity_exceeded", "critical") == (done["reason"], done["log_level"])


class GeventWorker:
    """Stands in for gunicorn's gevent worker class (the hooks check where it comes from)."""

    __module__ = "gunicorn.workers.ggevent"

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.alive = True


def test_post_worker_init_fails_the_boot_when_the_root_gives_up_while_starting() -> None:
    """A root that gives up during start makes post_worker_init raise
    RestartIntensityExceeded (a boot failure), and the worker has no root."""
    hooks = Hooks(
        lambda: Supervisor([ChildSpec("c", crash_at_once)], max_restarts=0, name="app"),
        stop_timeout=1,
    )
    worker = GeventWorker()
    structlog.configure(processors=[drop])
    try:
        with pytest.raises(greenkeep.RestartIntensityExceeded) as info:
            hooks.post_worker_init(worker)
        root = current_root()
    finally:
        if current_root() is not None:
            with contextlib.suppress(SystemExit):
                hooks.worker_exit(object(), worker)

    assert ("app", "c") == (info.value.supervisor, info.value.last_crash.child_id)
    assert root is None
