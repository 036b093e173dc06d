"""
The gunicorn recipe's application module (``gunicorn -c gunicorn_conf.py gunicorn_app:app``).

Safe to import in the arbiter (``--preload``): it builds no supervisor at import, only the
WSGI application and the factory that `greenkeep.gunicorn.Hooks` calls in each worker.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable
from typing import Any

import gevent.event

import greenkeep
import greenkeep.gunicorn
import greenkeep.prometheus
import greenkeep.wsgi
from greenkeep import ChildSpec, Supervisor, WorkerPool

# One per process; with --preload the arbiter's is inherited by every worker, which is fine:
# prometheus_client keeps each process's values apart.
metrics = greenkeep.prometheus.Metrics()


def consume(worker_id: int) -> None:
    """A background consumer whose dependency fails every few hundred milliseconds."""
    signal = greenkeep.stop_signal()
    if signal.wait(random.uniform(0.1, 0.3)):
        return  # asked to stop: finish in-flight work and return
    raise ConnectionError(f"consumer {worker_id}: broker connection reset")


# Test only: GET /break makes this worker's root give up (its canary crashes in a loop).
broken = gevent.event.Event()


def canary() -> None:
    """Crash, again and again, once /break was requested in this process."""
    broken.wait()
    raise RuntimeError("broken on request")


def build_root() -> Supervisor:
    """The factory: called once in every worker process, after gevent's monkey-patching."""
    consumers = WorkerPool(
        consume, 4, name="consumers", max_restarts=10_000, subscribers=[metrics]
    )
    root = Supervisor(
        [ChildSpec("consumers", consumers), ChildSpec("canary", canary)],
        name="app",
        subscribers=[metrics],
    )
    return metrics.track(root)


def application(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    """The user's own application."""
    if environ["PATH_INFO"] == "/break":
        broken.set()
    body = f"hello from {os.getpid()}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Pid", str(os.getpid()))])
    return [body]


app = greenkeep.wsgi.StatusApp(
    greenkeep.gunicorn.current_root, app=application, metrics=metrics.wsgi_app()
)
