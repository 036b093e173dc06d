"""
The greenkeep rows of ``restart_rate.py``: one small function per scenario.

Every row runs a `greenkeep.WorkerPool` of ``--workers`` workers running ``work(worker_id)``
with ``max_restarts=UNLIMITED`` (the benchmark's workers crash forever on purpose), in the
row's restart mode (``fresh``, greenkeep's default, or ``reuse``).

Logging is configured here, by the benchmark, before the pool starts (greenkeep never
configures structlog itself):

- ``filtered``: structlog's filtering bound logger above every level greenkeep uses;
- ``json``: every event at info and above rendered as JSON into ``os.devnull``, with
  greenkeep's defaults;
- ``json-nosummaries``: the same with storm summaries turned off
  (``log_summary_interval=None``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from _harness import (
    Gate,
    Probe,
    Storms,
    configure_filtered,
    configure_json,
    current_rss,
    make_isolated_work,
    make_storm_work,
    make_work,
    measure,
    measure_fixed,
    memory_result,
    run_storm,
    watchdog,
)

__all__ = ["DEFAULT_MODE", "isolated", "memory", "rate", "storm"]

#: greenkeep's default restart mode: the JSON rows run it.
DEFAULT_MODE = "fresh"

#: The overall cap passed to `WorkerPool.stop` at the end of a row, in seconds.
STOP_TIMEOUT = 10.0
#: How long the row waits for that stop to return before it reports without it.
STOP_GRACE = 15.0


def _start(work: Callable[[int], None], workers: int, mode: str, summaries: bool = True) -> Any:
    """
    Start a pool of *workers* workers running ``work(worker_id)`` in restart *mode*, with
    storm *summaries* on (greenkeep's default) or off; return it (`_stop` stops it).
    """
    import greenkeep

    pool = greenkeep.WorkerPool(
        work,
        workers,
        mode=mode,
        max_restarts=greenkeep.UNLIMITED,
        name="bench",
        log_summary_interval=1.0 if summaries else None,
    )
    pool.start()
    return pool


def _stop(sup: Any, result: dict[str, Any]) -> dict[str, Any]:
    """
    ``sup.stop(timeout=STOP_TIMEOUT)``, timed. If it has not returned after STOP_GRACE
    seconds, the row's result is emitted without it (``stop_s`` is then absent and
    ``stop_note`` says so) and the process ends: the measurement is already done.
    """
    import time

    result["stop_s"] = None
    guard = watchdog(
        STOP_GRACE,
        result,
        f"stop(timeout={STOP_TIMEOUT:g}) had not returned after {STOP_GRACE:g} s",
    )
    start = time.perf_counter()
    report = sup.stop(timeout=STOP_TIMEOUT)
    guard.cancel()
    result["stop_s"] = time.perf_counter() - start
    result["unstopped"] = len(report.unstopped)
    return result


def rate(
    workers: int, crash: str, warmup_max: float, seconds: float, mode: str, log: str
) -> dict[str, Any]:
    """Workers crashing in a loop: restarts/s and crash-to-restart latency."""
    import time

    import gevent

    if log == "filtered":
        configure_filtered()
    else:
        configure_json()
    probe = Probe(workers)
    gate = Gate(probe)
    pause = gevent.sleep if crash == "yield" else None
    t = time.perf_counter()
    sup = _start(
        make_work(probe, gate.wait, pause), workers, mode, summaries=log != "json-nosummaries"
    )
    started = time.perf_counter() - t
    gate.open()
    result = measure(probe, gevent.sleep, warmup_max, seconds)
    result["start_s"] = started
    # Measured. Park the workers before stopping, so that stop() starts without a backlog.
    t = time.perf_counter()
    result["parked"] = gate.park(STOP_TIMEOUT)
    result["park_s"] = time.perf_counter() - t
    return _stop(sup, result)


def isolated(workers: int, interval: float, seconds: float) -> dict[str, Any]:
    """One worker crashes every *interval* seconds, the rest idle: latency."""
    import gevent
    import gevent.event

    configure_filtered()
    probe = Probe(workers)
    gate = gevent.event.Event()
    idle = gevent.event.Event()
    work = make_isolated_work(probe, gate.wait, idle.wait, gevent.sleep, interval)
    sup = _start(work, workers, "fresh")
    gate.set()
    result = measure_fixed(probe, gevent.sleep, min(0.5, seconds / 4), seconds)
    return _stop(sup, result)


def storm(workers: int, rounds: int, timeout: float) -> dict[str, Any]:
    """Every worker crashes at the same instant (*rounds* times): time until all run
    again, ticker stall."""
    configure_filtered()
    probe = Probe(workers)
    storms = Storms(rounds, workers)
    sup = _start(make_storm_work(probe, storms), workers, "fresh")
    result = run_storm(probe, storms, timeout)
    return _stop(sup, result)


def memory(workers: int) -> dict[str, Any]:
    """Memory per idle supervised worker blocked on one gevent ``Event``."""
    import gevent.event

    configure_filtered()
    idle = gevent.event.Event()

    def wait(slot: int) -> None:
        idle.wait()

    warm = _start(wait, 100, "fresh")
    before = current_rss()
    sup = _start(wait, workers, "fresh")
    after = current_rss()
    result = memory_result(before, after, workers)
    _stop(sup, result)
    warm.stop(timeout=STOP_TIMEOUT)  # idle: quick
    return result


def heartbeat(workers: int, phase_seconds: float, pairs: int) -> dict[str, Any]:
    """
    The heartbeat scenario: *workers* otherwise idle workers wake every 100 ms (their
    wake-ups spread over the 100 ms); with heartbeats each then calls its beat
    (``greenkeep.heartbeat()``, deadline 1 s), without them it does nothing and the pool has
    no heartbeat.

    This machine's speed drifts by more than the effect being measured, so the two variants
    run at the same time, in two processes (one per core), over the same *phase_seconds*
    windows, each measuring its own CPU time, swapping variants from window to window;
    *pairs* windows, each with fresh pools. Reports
    the median CPU fraction of each variant, the median of the windows' differences (the cost
    of beats plus deadline checking, as a fraction of one core), and a direct account of the
    same cost in the heartbeat process: time spent in the supervisor's deadline ticks plus
    beats x the measured cost of one beat.
    """
    import json
    import os
    import statistics

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child process
        os.close(read_fd)
        try:
            mine = _heartbeat_phases(workers, phase_seconds, pairs, parent=False)
            os.write(write_fd, json.dumps(mine).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    mine = _heartbeat_phases(workers, phase_seconds, pairs, parent=True)
    raw = b""
    while chunk := os.read(read_fd, 65536):
        raw += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    theirs = json.loads(raw)
    # The two processes swap variants from one window to the next (the parent beats in the
    # even windows), so a difference between the processes themselves cancels out.
    on = [(mine if k % 2 == 0 else theirs)["cpu"][k] for k in range(pairs)]
    off = [(theirs if k % 2 == 0 else mine)["cpu"][k] for k in range(pairs)]
    diffs = [b - a for a, b in zip(off, on, strict=True)]
    return {
        "cpu_off": statistics.median(off),
        "cpu_on": statistics.median(on),
        "overhead": statistics.median(diffs),
        "overhead_pairs": diffs,
        "accounted": statistics.median(mine["accounted"] + theirs["accounted"]),
        "missed": mine["missed"] + theirs["missed"],
        "pairs": pairs,
        "phase_s": phase_seconds,
    }


def _armed_beat_cost(workers: int) -> float:
    """Seconds per beat as workers make them: `greenkeep.heartbeat()`'s callable (a bound
    ``list.clear``) on *workers* distinct, armed flags, in a scattered order."""
    import random
    import time

    flags = [[1] for _ in range(workers)]
    beats = [flag.clear for flag in flags]
    random.Random(0).shuffle(beats)
    best = float("inf")
    for _ in range(5):
        for flag in flags:
            flag.append(1)
        t = time.perf_counter()
        for beat in beats:
            beat()
        loop = time.perf_counter()
        for _beat in beats:
            pass
        best = min(best, (loop - t) - (time.perf_counter() - loop))
    return max(best, 0.0) / workers


def _heartbeat_phases(
    workers: int, phase_seconds: float, pairs: int, parent: bool
) -> dict[str, Any]:
    """One side of `heartbeat`: *pairs* windows aligned on the wall clock; the parent runs
    the heartbeat variant in even windows, the child in odd ones."""
    import time

    import gevent

    import greenkeep
    from greenkeep import _heartbeat

    configure_filtered()
    tick_time = [0.0]
    original_tick = _heartbeat.HeartbeatMonitor.tick

    def timed_tick(self: Any, now: float) -> Any:
        t = time.perf_counter()
        try:
            return original_tick(self, now)
        finally:
            tick_time[0] += time.perf_counter() - t

    _heartbeat.HeartbeatMonitor.tick = timed_tick  # type: ignore[method-assign]
    beats = [0]

    def beater(worker_id: int) -> None:
        beat = greenkeep.heartbeat()
        sleep = gevent.sleep
        sleep(worker_id % 100 / 1000)  # spread the wake-ups over the 100 ms
        while True:
            sleep(0.1)
            beat()
            beats[0] += 1

    def idle(worker_id: int) -> None:
        sleep = gevent.sleep
        sleep(worker_id % 100 / 1000)
        while True:
            sleep(0.1)
            beats[0] += 1  # the same bookkeeping as `beater`, without the beat

    cpu: list[float] = []
    accounted: list[float] = []
    missed = 0
    period = phase_seconds + 1.0
    epoch = (time.time() // period + 1) * period  # both processes align on the wall clock
    for k in range(pairs):
        beating = (k % 2 == 0) == parent
        start = epoch + k * period
        options: dict[str, Any] = {"heartbeat": 1.0} if beating else {}
        pool = greenkeep.WorkerPool(beater if beating else idle, workers, name="hb", **options)
        pool.start()
        gevent.sleep(max(0.0, start + 0.5 - time.time()))  # warm-up, then the window
        beats[0] = 0
        tick_time[0] = 0.0
        c0, t0 = time.process_time(), time.perf_counter()
        gevent.sleep(phase_seconds)
        c1, t1 = time.process_time(), time.perf_counter()
        wall = t1 - t0
        cpu.append((c1 - c0) / wall)
        if beating:
            missed += sum(w.restarts for w in pool.which_children())
            beat_cost = _armed_beat_cost(workers)
            accounted.append((tick_time[0] + beats[0] * beat_cost) / wall)
        pool.stop(timeout=STOP_TIMEOUT)
    _heartbeat.HeartbeatMonitor.tick = original_tick  # type: ignore[method-assign]
    return {"cpu": cpu, "accounted": accounted, "missed": missed}


def snapshot(workers: int) -> dict[str, Any]:
    """The cost of one `snapshot()` of a pool of *workers* idle workers (the median of
    5), in seconds of hub time, and of rendering it as JSON."""
    import json
    import statistics
    import time

    import gevent
    import gevent.event

    import greenkeep

    configure_filtered()
    idle = gevent.event.Event()

    def wait(worker_id: int) -> None:
        idle.wait()

    pool = greenkeep.WorkerPool(wait, workers, name="snap")
    root = greenkeep.Supervisor([greenkeep.ChildSpec("pool", pool)], name="root")
    root.start()
    gevent.sleep(0)
    took, rendered = [], []
    for _ in range(5):
        t = time.perf_counter()
        snap = root.snapshot()
        took.append(time.perf_counter() - t)
        t = time.perf_counter()
        json.dumps(snap)
        rendered.append(time.perf_counter() - t)
    root.stop(timeout=STOP_TIMEOUT)
    return {
        "snapshot_s": statistics.median(took),
        "json_s": statistics.median(rendered),
        "children": len(snap["children"][0]["supervisor"]["children"]),
    }
