"""
Soak: a million restarts leave no trace. Live greenlets stay at N plus a constant, live
frames and tracebacks stay flat, and RSS grows less than 10% from restart 100,000 to
1,000,000. Slow: run with ``uv run pytest -m slow`` (``.ci/run`` does).
"""

from __future__ import annotations

import gc
import os
import types

import gevent
import gevent.event
import greenlet
import pytest

import greenkeep
from greenkeep import WorkerPool

pytestmark = pytest.mark.slow

WORKERS = 1_000
CHECKPOINTS = (100_000, 1_000_000)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def census() -> dict[str, int]:
    gc.collect()
    counts = {"greenlets": 0, "frames": 0, "tracebacks": 0}
    for obj in gc.get_objects():
        if isinstance(obj, greenlet.greenlet) and not obj.dead:
            counts["greenlets"] += 1
        elif isinstance(obj, types.FrameType):
            counts["frames"] += 1
        elif isinstance(obj, types.TracebackType):
            counts["tracebacks"] += 1
    counts["rss"] = rss_bytes()
    return counts


@pytest.mark.parametrize("mode", ["fresh", "reuse"])
def test_a_million_restarts_leave_no_trace(mode: str) -> None:
    """Restart 1,000,000 times; compare a census at restart 100,000 and 1,000,000."""
    state = {"crashes": 0, "parked": 0, "next": 0}
    gate = gevent.event.Event()
    gate.set()
    all_parked = gevent.event.Event()

    def target(worker_id: int) -> None:
        state["crashes"] += 1
        if state["crashes"] >= CHECKPOINTS[state["next"]]:
            gate.clear()
        if not gate.is_set():
            state["parked"] += 1
            if state["parked"] == WORKERS:
                all_parked.set()
            gate.wait()
            state["parked"] -= 1
        raise ValueError("soak")

    pool = WorkerPool(target, WORKERS, mode=mode, max_restarts=greenkeep.UNLIMITED)
    pool.start()
    censuses = []
    for index in range(len(CHECKPOINTS)):
        assert all_parked.wait(timeout=300), f"stalled at {state['crashes']} crashes"
        gevent.sleep(0)  # let the manager drain the last exits (everyone is parked)
        censuses.append(census())
        all_parked.clear()
        state["next"] = min(index + 1, len(CHECKPOINTS) - 1)
        if index + 1 == len(CHECKPOINTS):
            break
        gate.set()
    restarts = sum(w.restarts for w in pool.which_children())
    gate.set()
    pool.stop(timeout=30)

    early, late = censuses
    print(f"{mode}: census at {CHECKPOINTS[0]:,}: {early}; at {CHECKPOINTS[1]:,}: {late}")
    assert restarts >= CHECKPOINTS[-1] - WORKERS
    assert WORKERS <= late["greenlets"] <= WORKERS + 20
    assert abs(late["greenlets"] - early["greenlets"]) <= 5
    assert abs(late["frames"] - early["frames"]) <= 50
    assert abs(late["tracebacks"] - early["tracebacks"]) <= 50
    assert late["rss"] < 1.10 * early["rss"], (early, late)
