"""
One process of the multiprocess metrics test (``PROMETHEUS_MULTIPROC_DIR`` is set by it).

``python metrics_proc.py produce``: run a pool of 3 workers whose first incarnations crash,
wait for the 3 restarts, refresh the gauge, print the pid and exit.
``python metrics_proc.py serve [DEAD_PID ...]``: mark those pids dead, then print what
`Metrics.wsgi_app` serves (the aggregate of every process's files).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

import gevent.event
from prometheus_client import CollectorRegistry

import greenkeep
from greenkeep.prometheus import Metrics, mark_process_dead


def worker(worker_id: int) -> None:
    info = greenkeep.current()
    if info is not None and info.incarnation == 1:
        raise RuntimeError(f"worker {worker_id}: first run fails")
    gevent.event.Event().wait()


def produce() -> None:
    metrics = Metrics()
    restarted = gevent.event.Event()
    seen: list[object] = []

    def count(event: Mapping[str, object]) -> None:
        if event["event"] == "child_restarted":
            seen.append(event["child_id"])
            if len(seen) == 3:
                restarted.set()

    pool = greenkeep.WorkerPool(worker, 3, name="pool", subscribers=[metrics, count])
    metrics.track(pool)
    pool.start()
    if not restarted.wait(10):
        raise SystemExit("no 3 restarts within 10 s")
    metrics.refresh()
    print(os.getpid())


def serve(dead: list[int]) -> None:
    for pid in dead:
        mark_process_dead(pid)
    app = Metrics(CollectorRegistry()).wsgi_app()
    out: list[str] = []

    def start_response(status: str, headers: object) -> None:
        out.append(status)

    body = b"".join(app({"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics"}, start_response))
    assert out == ["200 OK"], out
    sys.stdout.write(body.decode())


if __name__ == "__main__":
    if sys.argv[1] == "produce":
        produce()
    else:
        serve([int(pid) for pid in sys.argv[2:]])
