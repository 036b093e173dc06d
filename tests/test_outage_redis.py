"""
A real Redis outage (marker ``redis``, run by ``.ci/run`` as ``uv run pytest -m redis``):
200 reliable-queue consumers in a `WorkerPool` (``tests/apps/redis_consumers.py``, a
process of its own, with the pool configuration recommended for consumers of an outside
service) read from Debian's ``redis-server``, which this test starts, kills (``SIGKILL``)
while jobs are in flight, and starts again on the same port a few seconds later.

Asserted: the pool does not give up; every worker runs again after the server's return
(completes a command issued after it); no job is lost (every job id is processed at least
once).

Why the server keeps its data across the kill: with persistence off (``--save ''
--appendonly no``) a killed server comes back empty, the jobs queued and in flight are gone
with it, and "no job lost" could only be checked against a producer that remembers and
pushes again, which tests the producer, not the consumers. The server runs with an
append-only file fsynced on every write (``--appendonly yes --appendfsync always``) in the
test's temporary directory, as a queue that must not lose jobs would: a command is
acknowledged only once it is on disk, so after the restart the queue and every worker's
processing list are as the consumers last saw them acknowledged, and what a worker had
taken but not finished is still in its processing list for its next incarnation.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

pytestmark = pytest.mark.redis

APP = Path(__file__).resolve().parent / "apps" / "redis_consumers.py"
WORKERS = 200
JOBS = 6_000
#: How long the server stays down, and how many jobs are processed before it is killed.
OUTAGE_S = 3.0
KILL_AFTER = 1_500
#: The longest restart delay of the recommended configuration's backoff (max_delay 5 s, jitter
#: 0.1) plus 1 s: every worker must run again within this of the return.
RECOVERY_BOUND_S = 5.0 * 1.1 + 1.0
DEADLINE = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """Debian's redis-server on a loopback port of its own, its files in *directory*."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()  # redis-server has no --port 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start it and wait until it answers; the time (monotonic) it first answered."""
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--logfile", "redis.log",
                "--daemonize", "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1.0)
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                client.ping()
                return time.monotonic()
            except redis.BusyLoadingError:
                pass  # loading the append-only file
            except redis.ConnectionError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"redis-server exited: {self.log()}") from None
            if time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not answer: {self.log()}")
            time.sleep(0.02)  # polling, under the deadline above

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        try:
            return (self.directory / "redis.log").read_text()[-2000:]
        except OSError:
            return ""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        message = "redis-server is not installed (.ci/run installs Debian's redis-server)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    directory = tmp_path / "redis"
    directory.mkdir()
    redis_server = RedisServer(binary, directory)
    redis_server.start()
    yield redis_server
    redis_server.stop()


class App:
    """The consumers' process, talking JSON lines on its standard output."""

    def __init__(self, port: int, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(APP),
                "--port",
                str(port),
                "--workers",
                str(WORKERS),
                "--log",
                str(log),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.latest: dict[str, dict[str, Any]] = {}
        self.ended = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def wait_for(self, kind: str, timeout: float = DEADLINE, **at_least: int) -> dict[str, Any]:
        """The next message of *kind* (whose fields are at least *at_least*)."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            try:
                message = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if message is None:
                self.ended = True
                break
            self.latest[message["type"]] = {k: v for k, v in message.items() if k != "processed"}
            if message["type"] == kind and all(message[k] >= v for k, v in at_least.items()):
                return message
        raise AssertionError(
            f"no {kind} {at_least} within {timeout} s (ended: {self.ended}; last: "
            f"{self.latest}); the pool's log ends: {self.log_tail()}"
        )

    def send(self, line: str) -> None:
        """Write *line* to the process (nothing if it has ended: waits say so)."""
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()

    def log_tail(self) -> str:
        try:
            return self.log.read_text()[-3000:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def test_consumers_ride_out_a_redis_outage(server: RedisServer, tmp_path: Path) -> None:
    producer = redis.Redis(host="127.0.0.1", port=server.port)
    ids = [f"job-{i}" for i in range(JOBS)]
    for start in range(0, JOBS, 1000):
        producer.rpush("jobs", *ids[start : start + 1000])
    app = App(server.port, tmp_path / "pool.log")
    try:
        app.wait_for("started")
        app.wait_for("progress", jobs=KILL_AFTER)  # jobs in flight: every worker is busy
        server.kill()
        time.sleep(OUTAGE_S)  # the outage itself: real time, by design
        returned = server.start()
        app.send(f"returned {returned!r}")
        recovered = app.wait_for("recovered", timeout=RECOVERY_BOUND_S + 10)
        app.wait_for("progress", distinct=JOBS)
        # A job processed twice (its LREM failed in the outage) may still be in its
        # worker's list: stop once every list is empty, so that none is left by the stop.
        deadline = time.monotonic() + DEADLINE
        while in_lists(producer) and time.monotonic() < deadline:
            time.sleep(0.05)  # polling, under the deadline above
        app.proc.send_signal(signal.SIGTERM)
        result = app.wait_for("result")
        assert app.proc.wait(DEADLINE) == 0
    finally:
        app.close()

    assert result["error"] is None, app.log_tail()  # no give-up
    assert recovered["t"] - returned <= RECOVERY_BOUND_S
    lost = set(ids) - set(result["processed"])
    assert not lost, f"{len(lost)} jobs never processed, e.g. {sorted(lost)[:5]}"
    assert in_lists(producer) == 0
    print(
        f"every worker ran again {recovered['t'] - returned:.2f} s after the return;"
        f" {result['jobs'] - JOBS} of {JOBS} jobs processed twice (their LREM failed)"
    )


def in_lists(client: redis.Redis) -> int:
    """Jobs still queued or in a worker's processing list."""
    with client.pipeline(transaction=False) as pipe:
        pipe.llen("jobs")
        for worker in range(WORKERS):
            pipe.llen(f"processing:{worker}")
        return sum(pipe.execute())
