"""After os.fork() the child process never silently runs copies of the parent's workers."""

from __future__ import annotations

import os

import gevent
import gevent.event
import gevent.os
import pytest

from greenkeep import ChildSpec, Supervisor, WorkerPool

from _events import DEADLINE, Events, hub_turns

# The signal method: the thread method's timer thread would make every fork here one of a
# multi-threaded process (CPython 3.12 warns: the child may deadlock).
pytestmark = pytest.mark.timeout(300, method="signal")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("kind", ["supervisor", "pool"])
def test_forked_child_disowns_inherited_supervisors(kind: str) -> None:
    """In the child, inherited supervisors are stopped (reason "forked"), their workers
    are killed, nothing restarts, and it says so; the parent's keeps running."""
    read_fd, write_fd = os.pipe()
    tick = gevent.event.Event()

    def worker(*_: object) -> None:
        while True:
            tick.wait()
            os.write(write_fd, f"{os.getpid()}\n".encode())
            gevent.sleep(0)

    events = Events()
    if kind == "pool":
        sup: Supervisor | WorkerPool = WorkerPool(worker, 3, subscribers=[events], name="s")
    else:
        sup = Supervisor([ChildSpec(i, worker) for i in range(3)], subscribers=[events], name="s")
    sup.start()

    pid = gevent.os.fork()
    if pid == 0:  # the child: report through the exit status, never return into pytest
        status = 1
        try:
            tick.set()  # would make inherited workers run, if they still could
            hub_turns()
            forked = events.of("supervisor_forked")
            ok = (
                sup.state == "stopped"
                and sup.stop().reason == "forked"
                and sup.join(timeout=0)
                and len(forked) == 1
                and forked[0]["workers"] == 3
                and [] == events.of("child_restarted")
            )
            status = 0 if ok else 2
        finally:
            os._exit(status)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    written = b""
    while chunk := os.read(read_fd, 4096):
        written += chunk
    os.close(read_fd)

    assert 0 == os.waitstatus_to_exitcode(status)
    assert str(pid).encode() not in written
    assert "running" == sup.state
    sup.stop(timeout=DEADLINE)
