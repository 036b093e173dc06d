"""
Roots for the runner tests, run as ``python -m greenkeep runner_app:<factory>``.

Each factory builds a small tree in the process that runs it.
"""

from __future__ import annotations

import contextlib

import gevent
import gevent.event

import greenkeep
from greenkeep import ChildSpec, Supervisor


def consumer() -> None:
    """Take messages until asked to stop, then finish the one in flight."""
    signal = greenkeep.stop_signal()
    while not signal.is_set():
        signal.wait(0.05)
    gevent.sleep(0.05)  # acknowledge the in-flight message


def idle() -> None:
    """Wait forever."""
    gevent.event.Event().wait()


def crash() -> None:
    """Fail soon after starting."""
    gevent.sleep(0.01)
    raise RuntimeError("dependency is down")


def stubborn() -> None:
    """Swallow every GreenletExit."""
    while True:
        with contextlib.suppress(gevent.GreenletExit):
            gevent.sleep(1)


def build() -> Supervisor:
    """A healthy tree: a consumer that stops cooperatively and an idle pool."""
    pool = greenkeep.WorkerPool(lambda worker_id: idle(), 3, name="pool")
    return Supervisor(
        [ChildSpec("consumer", consumer, shutdown=5), ChildSpec("pool", pool)], name="app"
    )


def build_giving_up() -> Supervisor:
    """A tree whose only child crashes in a loop, so the root gives up."""
    return Supervisor([ChildSpec("flaky", crash)], max_restarts=2, period=60, name="app")


def build_stubborn() -> Supervisor:
    """A tree with a child that never stops, so a bounded stop leaves it unstopped."""
    return Supervisor(
        [ChildSpec("consumer", consumer), ChildSpec("stubborn", stubborn, shutdown="infinity")],
        name="app",
    )


def fail_at_once() -> None:
    """Fail before the first yield."""
    raise RuntimeError("cannot connect")


def build_failing_start() -> Supervisor:
    """A tree whose child fails before it is ready."""
    return Supervisor([ChildSpec("db", fail_at_once, ready_timeout=5.0)], name="app")


def report_patching() -> None:
    """Say whether the socket module is gevent's, then finish."""
    from gevent import monkey

    print(f"patched={monkey.is_module_patched('socket')}", flush=True)


def build_finishing() -> Supervisor:
    """A tree that ends on its own (auto_shutdown) once its one job is done."""
    return Supervisor(
        [ChildSpec("job", report_patching, restart="transient", significant=True)],
        auto_shutdown="any_significant",
        name="app",
    )


def build_not_a_supervisor() -> object:
    """A factory that returns the wrong thing."""
    return "not a supervisor"
