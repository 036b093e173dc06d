"""The runner: a root supervisor as a process's main job, with signals and exit statuses."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import pytest
import structlog
import structlog.testing

import greenkeep
from greenkeep import ChildSpec, Supervisor
from greenkeep.runner import (
    EXIT_FAILED,
    EXIT_GAVE_UP,
    EXIT_OK,
    EXIT_UNSTOPPED,
    EXIT_USAGE,
    main,
    run,
)

from _events import wait_until

APPS = Path(__file__).resolve().parent / "apps"

#: Seconds a subprocess gets to reach a state or to exit: a bound that turns a hang into a
#: failure, never a time the tests wait for.
DEADLINE = 20.0


class Runner:
    """``python -m greenkeep`` in a subprocess, with its JSON log lines read as they come."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "greenkeep", *args],
            cwd=APPS,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self.stdout: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.put(line)
        self.lines.put(None)

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        self.stdout.extend(self.process.stdout)

    def _take(self, line: str) -> None:
        self.stderr.append(line)
        with contextlib.suppress(ValueError):
            self.events.append(json.loads(line))

    def wait_for(self, event: str, **match: object) -> dict[str, Any]:
        """Read log lines until *event* matching *match* appears (fail after DEADLINE)."""
        end = time.monotonic() + DEADLINE
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {event} {match} in: {''.join(self.stderr)}") from None
            if line is None:
                raise AssertionError(f"exited before {event} {match}: {''.join(self.stderr)}")
            self._take(line)
            found = self.events[-1] if self.events else {}
            if found.get("event") == event and all(found.get(k) == v for k, v in match.items()):
                return found

    def finish(self) -> tuple[int, str]:
        """Wait for the exit (bounded); return the status and standard output."""
        try:
            self.process.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        for reader in self._readers:
            reader.join(DEADLINE)
        while True:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self._take(line)
        return self.process.returncode, "".join(self.stdout)

    def of(self, event: str, **match: object) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("event") == event and all(e.get(k) == v for k, v in match.items())
        ]


class TestProcess:
    def test_sigterm_stops_gracefully_and_exits_0(self) -> None:
        """SIGTERM stops every child cooperatively within the bound, and the process exits 0."""
        runner = Runner("--log-format", "json", "runner_app:build")
        runner.wait_for("supervisor_started", supervisor="app")
        sent = time.monotonic()
        runner.process.send_signal(signal.SIGTERM)
        status, _ = runner.finish()
        took = time.monotonic() - sent

        assert EXIT_OK == status
        assert took < 8.0  # the default stop bound (the consumer needs 0.05 s)
        assert runner.of("signal_received", signal="SIGTERM", action="stop")
        assert runner.of("child_exited", child_id="consumer", reason="shutdown")
        assert runner.of("supervisor_stopped", supervisor="app", reason="shutdown")
        [done] = runner.of("runner_stopped")
        assert (0, "shutdown", 0, "info") == (
            done["exit_status"],
            done["reason"],
            done["unstopped"],
            done["level"],
        )

    def test_a_root_that_gives_up_exits_70_and_says_why(self) -> None:
        """A root that exceeds its restart intensity ends the process with status 70."""
        runner = Runner("--log-format", "json", "runner_app:build_giving_up")
        status, _ = runner.finish()

        assert EXIT_GAVE_UP == status
        [gave_up] = runner.of("restart_intensity_exceeded", supervisor="app")
        assert ("flaky", "critical") == (gave_up["child_id"], gave_up["level"])
        [done] = runner.of("runner_stopped")
        assert (70, "restart_intensity_exceeded", "critical") == (
            done["exit_status"],
            done["reason"],
            done["level"],
        )
        assert "gave up" in done["error"]
        assert "dependency is down" in done["error"]

    def test_unstopped_children_exit_71_within_the_bound(self) -> None:
        """A child that ignores the stop is reported and the process exits 71, on time."""
        runner = Runner(
            "--log-format", "json", "--stop-timeout", "0.3", "runner_app:build_stubborn"
        )
        runner.wait_for("supervisor_started", supervisor="app")
        sent = time.monotonic()
        runner.process.send_signal(signal.SIGTERM)
        status, _ = runner.finish()
        took = time.monotonic() - sent

        assert EXIT_UNSTOPPED == status
        assert took < 5.0  # 0.3 s bound plus interpreter exit, with a wide margin
        assert runner.of("child_unstopped", child_id="stubborn")
        [done] = runner.of("runner_stopped")
        assert ("unstopped", 1, ["app:stubborn"]) == (
            done["reason"],
            done["unstopped"],
            done["children"],
        )

    def test_a_second_signal_hurries_the_stop(self) -> None:
        """A second SIGINT cuts a long stop short: the stubborn child is reported at once."""
        runner = Runner(
            "--log-format", "json", "--stop-timeout", "60", "runner_app:build_stubborn"
        )
        runner.wait_for("supervisor_started", supervisor="app")
        runner.process.send_signal(signal.SIGINT)
        runner.wait_for("signal_received", signal="SIGINT", action="stop")
        runner.process.send_signal(signal.SIGINT)
        status, _ = runner.finish()

        assert EXIT_UNSTOPPED == status
        assert runner.of("signal_received", signal="SIGINT", action="hurry")

    def test_a_root_that_cannot_start_exits_1(self) -> None:
        """A child that fails while starting ends the process with status 1 and the reason."""
        runner = Runner("--log-format", "json", "runner_app:build_failing_start")
        status, _ = runner.finish()

        assert EXIT_FAILED == status
        [done] = runner.of("runner_stopped")
        assert "start_failed" == done["reason"]
        assert "cannot connect" in done["error"]

    @pytest.mark.parametrize(("flag", "patched"), [((), False), (("--patch",), True)])
    def test_a_root_that_ends_on_its_own_exits_0_and_patching_is_opt_in(
        self, flag: tuple[str, ...], patched: bool
    ) -> None:
        """Nothing is monkey-patched unless --patch says so; a root that finishes exits 0."""
        runner = Runner(*flag, "--log-format", "json", "runner_app:build_finishing")
        status, stdout = runner.finish()

        assert EXIT_OK == status
        assert f"patched={patched}" in stdout
        [done] = runner.of("runner_stopped")
        assert "auto_shutdown" == done["reason"]

    def test_a_program_that_configures_structlog_keeps_its_configuration(self) -> None:
        """The CLI configures logging only when the program has not configured structlog."""
        runner = Runner("runner_app_logging:build_finishing")
        status, stdout = runner.finish()

        assert EXIT_OK == status
        assert "event='runner_stopped'" in stdout
        assert [] == runner.events  # no JSON lines: the default was not applied


class TestMain:
    @pytest.mark.parametrize(
        "target",
        [
            "no_such_module:build",
            "runner_app",
            "runner_app:nope",
            "runner_app:build_not_a_supervisor",
        ],
    )
    def test_bad_targets_exit_2(
        self, target: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A target that cannot be imported or does not build a supervisor is a usage error."""
        monkeypatch.syspath_prepend(str(APPS))

        status = main(["--log-format", "keep", target])

        assert EXIT_USAGE == status
        assert "python -m greenkeep" in capsys.readouterr().err

    def test_bad_arguments_exit_2(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A negative stop timeout and an unknown option are usage errors."""
        assert EXIT_USAGE == main(["--stop-timeout", "-1", "runner_app:build"])
        assert EXIT_USAGE == main(["--no-such-option", "runner_app:build"])
        assert "usage" in capsys.readouterr().err


class TestRunFunction:
    def test_returns_70_when_the_root_gives_up_and_restores_signal_handlers(self) -> None:
        """run() returns the give-up status and leaves SIGINT/SIGTERM as it found them."""
        before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))

        def crash() -> None:
            gevent.sleep(0)
            raise RuntimeError("boom")

        root = Supervisor([ChildSpec("c", crash)], max_restarts=1, name="app")
        with structlog.testing.capture_logs() as logs:
            status = run(root, stop_timeout=1)

        assert EXIT_GAVE_UP == status
        assert before == (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
        [done] = [e for e in logs if e["event"] == "runner_stopped"]
        assert ("restart_intensity_exceeded", "critical") == (done["reason"], done["log_level"])

    def test_a_root_stopped_by_the_program_exits_0(self) -> None:
        """A root that the program itself stops (not a signal) ends run() with status 0."""
        roots: list[Supervisor] = []

        def stop_once_started(event: Any) -> None:
            if event["event"] == "supervisor_started":
                roots[0].stop()  # from a subscriber: scheduled, not waited for

        root = Supervisor(
            [ChildSpec("idle", gevent.event.Event().wait)],
            name="app",
            subscribers=[stop_once_started],
        )
        roots.append(root)

        with structlog.testing.capture_logs():
            status = run(lambda: root)

        assert EXIT_OK == status

    def test_rejects_what_is_not_a_root(self) -> None:
        """run() refuses anything but a supervisor or a factory of one, naming the field."""
        with pytest.raises(greenkeep.InvalidArgumentError) as direct:
            run("root")  # type: ignore[arg-type]
        with pytest.raises(greenkeep.InvalidArgumentError) as built:
            run(lambda: "root")  # type: ignore[arg-type,return-value]
        with pytest.raises(greenkeep.InvalidArgumentError) as timeout:
            run(Supervisor([], name="x"), stop_timeout=-1)

        assert ["root", "root", "stop_timeout"] == [
            direct.value.field,
            built.value.field,
            timeout.value.field,
        ]

    def test_rejects_a_callable_with_required_arguments_without_calling_it(self) -> None:
        """A WSGI application is not a factory: run() says so (InvalidArgumentError naming
        the root) instead of calling it and leaking the call's TypeError."""
        called: list[object] = []

        def application(environ: object, start_response: object) -> list[bytes]:
            called.append(environ)
            return []

        with pytest.raises(greenkeep.InvalidArgumentError) as refused:
            run(application)  # type: ignore[arg-type]

        assert ("run()", "root", application, []) == (
            refused.value.owner,
            refused.value.field,
            refused.value.got,
            called,
        )
        assert "a callable with no required arguments" in str(refused.value)

    def test_what_the_factory_raises_propagates_unchanged(self) -> None:
        """A factory that raises (even a TypeError) is the program's own failure: run()
        lets it through as it is."""

        def build() -> Supervisor:
            raise TypeError("the factory's own bug")

        with pytest.raises(TypeError, match="the factory's own bug") as raised:
            run(build)

        assert not isinstance(raised.value, greenkeep.InvalidArgumentError)


def test_a_signal_python_has_no_name_for_still_stops_the_root() -> None:
    """A real-time signal (``signal.Signals`` has no member for it, nor for 16 before
    CPython 3.11): ``run()`` names it ``SIGRTMIN+1`` and, when it arrives, stops the root
    (the name lookup raised, and a raise in the handler came before the stop; found by
    tests/test_hostile_inputs.py with signal 16 on CPython 3.10)."""

    number = signal.SIGRTMIN + 1
    root = Supervisor([ChildSpec("a", lambda: gevent.sleep(3600))], name="r")

    def send_once_running() -> None:
        wait_until(lambda: root.state == "running")
        os.kill(os.getpid(), number)

    sender = gevent.spawn(send_once_running)
    with structlog.testing.capture_logs() as logs:
        status = run(root, signals=(number,), stop_timeout=1.0)
    sender.join(timeout=DEADLINE)

    assert EXIT_OK == status
    assert ["SIGRTMIN+1"] == next(e for e in logs if e["event"] == "runner_started")["signals"]
    assert ("SIGRTMIN+1", "stop") == next(
        (e["signal"], e["action"]) for e in logs if e["event"] == "signal_received"
    )
