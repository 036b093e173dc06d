"""
After os.fork() no worker code of an inherited supervisor ever runs in the child process:
not a sibling whose wake-up was already queued when the process forked, not a worker's
finally block or except clause.

The supervisor's workers write to a pipe only when they run in a process other than the
test's, so every line they write is a line they should not have written. The forked child
reports what it sees through the same pipe (os.write only) and leaves with os._exit; the
test reads the pipe with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time

import gevent
import gevent.event
import pytest

from greenkeep import ChildSpec, Supervisor, WorkerPool

from _events import DEADLINE

pytestmark = [
    pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork"),
    # The signal method: the thread method's timer thread would make every fork here one of
    # a multi-threaded process (CPython 3.12 warns: the child may deadlock).
    pytest.mark.timeout(300, method="signal"),
]

#: Seconds the test waits for the forked child's report.
REPORT_BOUND = 5.0


class Scenario:
    """Three workers (a forker, a spinner that always has a wake-up queued, a waiter blocked
    on an Event) under a supervisor or a pool, and the pipe the child process reports to."""

    def __init__(self, kind: str) -> None:
        self.parent = os.getpid()
        self.read_fd, self.write_fd = os.pipe()
        self.spinning = gevent.event.Event()
        self.fork_now = gevent.event.Event()
        self.forked = gevent.event.AsyncResult()
        workers = [self.forker, self.spinner, self.waiter]
        if kind == "pool":
            self.sup: Supervisor | WorkerPool = WorkerPool(
                lambda worker_id: workers[worker_id](), len(workers), name="s"
            )
        else:
            self.sup = Supervisor([ChildSpec(i, w) for i, w in enumerate(workers)], name="s")

    def note(self, what: str) -> None:
        """What an inherited worker would say, if it ever ran in another process."""
        if os.getpid() != self.parent:
            os.write(self.write_fd, f"{what} {os.getpid()}\n".encode())

    def spinner(self) -> None:
        try:
            while True:
                self.note("spinner ran")
                self.spinning.set()
                gevent.sleep(0)  # a wake-up is queued whenever anything else runs
        except BaseException:
            self.note("spinner except")
            raise
        finally:
            self.note("spinner finally")

    def waiter(self) -> None:
        try:
            gevent.event.Event().wait()
        except BaseException:
            self.note("waiter except")
            raise
        finally:
            self.note("waiter finally")

    def forker(self) -> None:
        self.fork_now.wait()
        # In both processes: hand the fork's result to the main greenlet (0 in the child,
        # whose main greenlet then reports), and do nothing more.
        self.forked.set(os.fork())
        gevent.event.Event().wait()

    def in_child(self) -> None:
        """The forked process (in its main greenlet): yield a few hub turns, report what the
        inherited supervisor looks like, and leave without returning into pytest."""
        status = 1
        try:
            for _ in range(5):
                gevent.sleep(0)
            sup = self.sup
            running = [c.id for c in sup.which_children() if c.status == "running"]
            report = (
                f"report {os.getpid()} state={sup.state} reason={sup.stop().reason} "
                f"active={sup.count_children().active} running={running}\n"
            )
            os.write(self.write_fd, report.encode())
            status = 0
        finally:
            os._exit(status)

    def read_report(self, pid: int) -> list[str]:
        """Every line written to the pipe until the child's report (bounded)."""
        data = b""
        end = time.monotonic() + REPORT_BOUND
        while b"report" not in data:
            remaining = end - time.monotonic()
            if remaining <= 0:
                break
            readable, _, _ = select.select([self.read_fd], [], [], remaining)
            if readable:
                data += os.read(self.read_fd, 65536)
        if b"report" not in data:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return data.decode().splitlines()

    def close(self) -> None:
        self.sup.stop(timeout=DEADLINE)
        os.close(self.read_fd)
        os.close(self.write_fd)


@pytest.mark.parametrize("kind", ["supervisor", "pool"])
@pytest.mark.parametrize("where", ["main greenlet", "worker"])
def test_no_inherited_worker_code_runs_in_a_forked_child(where: str, kind: str) -> None:
    """In a process forked (from the main greenlet or from a worker) while a supervisor
    runs, it is stopped (reason "forked", nothing active or running) and none of its other
    workers runs any code: not a queued wake-up, not an except clause or finally block."""
    scenario = Scenario(kind)
    scenario.sup.start()
    try:
        scenario.spinning.wait(DEADLINE)
        if where == "worker":
            scenario.fork_now.set()
            pid = scenario.forked.get(timeout=DEADLINE)
        else:
            pid = os.fork()
        if pid == 0 or os.getpid() != scenario.parent:
            scenario.in_child()
        lines = scenario.read_report(pid)
        state = scenario.sup.state
    finally:
        if os.getpid() != scenario.parent:  # never go on with pytest in a forked child
            os._exit(4)
        scenario.close()

    assert [] == [line for line in lines if not line.startswith("report")]
    reports = [line for line in lines if line.startswith("report")]
    assert [f"report {pid} state=stopped reason=forked active=0 running=[]"] == reports
    assert "running" == state


def test_a_child_that_outlived_its_stop_does_not_run_in_a_forked_child() -> None:
    """A child reported unstopped still runs after its supervisor's stop; in a process
    forked then, it runs no code either (the supervisor is still 'stopping' until it ends)."""
    parent = os.getpid()
    read_fd, write_fd = os.pipe()
    release = gevent.event.Event()

    def stubborn() -> None:
        while not release.is_set():
            with contextlib.suppress(gevent.GreenletExit):  # reported unstopped, runs on
                gevent.sleep(0.001)
            if os.getpid() != parent:
                os.write(write_fd, b"stubborn ran\n")

    sup = Supervisor([ChildSpec("stubborn", stubborn, shutdown=0.05)], name="s")
    sup.start()
    report = sup.stop()
    try:
        pid = os.fork()
        if pid == 0:
            try:
                for _ in range(20):
                    gevent.sleep(0.001)
                os.write(write_fd, b"report\n")
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        os.close(write_fd)
        written = b""
        while chunk := os.read(read_fd, 4096):
            written += chunk
    finally:
        if os.getpid() != parent:
            os._exit(4)
        release.set()
        os.close(read_fd)

    assert ["stubborn"] == [u.child_id for u in report.unstopped]
    assert [b"report"] == written.splitlines()
