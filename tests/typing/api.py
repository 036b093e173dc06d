"""Usage of greenkeep's public API that mypy --strict checks (never run)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog

import greenkeep
from greenkeep import ChildSpec, Supervisor, WorkerPool
from greenkeep.testing import ManualClock


def work() -> None:
    greenkeep.ready()
    signal: greenkeep.StopSignal = greenkeep.stop_signal()
    signal.wait(1.0)
    info: greenkeep.WorkerInfo | None = greenkeep.current()
    if info is not None:
        incarnation: int = info.incarnation
        del incarnation


def pool_work(worker_id: int, name: str) -> None:
    del worker_id, name


def subscriber(event: Mapping[str, Any]) -> None:
    del event


def usage() -> None:
    clock = ManualClock()
    sup = Supervisor(
        [
            ChildSpec("a", work),
            ChildSpec(1, work, restart=greenkeep.Restart.TRANSIENT, shutdown="brutal"),
            ChildSpec("b", work, restart="temporary", shutdown=2.5, ready_timeout=3),
        ],
        strategy=greenkeep.Strategy.REST_FOR_ONE,
        max_restarts=5,
        period=10.0,
        name="root",
        logger=structlog.get_logger("app"),
        subscribers=[subscriber],
        clock=clock,
    )
    pool = WorkerPool(pool_work, 10, args=("x",), mode="reuse", max_restarts=greenkeep.UNLIMITED)
    backoff: greenkeep.Backoff = greenkeep.Backoff.for_outside_service()
    consumers = WorkerPool(pool_work, 200, args=("orders",), name="consumers", backoff=backoff)
    sup.start_child(ChildSpec("consumers", consumers))
    sup.start_child(ChildSpec("pool", pool))
    with sup:
        infos: list[greenkeep.ChildInfo] = sup.which_children()
        counts: greenkeep.ChildCounts = sup.count_children()
        spec: ChildSpec = sup.get_child_spec("a")
        sup.terminate_child("a")
        sup.restart_child("a")
        handle: greenkeep.WorkerHandle = pool.worker(0)
        handle.kill()
        ended: bool = handle.join(timeout=1)
        pool.resize(20)
        ready: bool = not (sup.degraded or pool.degraded)
        failing: int = pool.failing
        del infos, counts, spec, ended, ready, failing
    report: greenkeep.StopReport = sup.stop(timeout=1.0)
    unstopped: tuple[greenkeep.Unstopped, ...] = report.unstopped
    try:
        sup.join()
    except greenkeep.RestartIntensityExceeded as error:
        record: greenkeep.ExitRecord = error.last_crash
        del record
    del unstopped
