"""
The greenkeep rows of ``restart_rate.py``: one small function per scenario.

Every row runs a `greenkeep.WorkerPool` of ``--workers`` workers running ``work(worker_id)``
with ``max_restarts=UNLIMITED`` (the benchmark's workers crash forever on purpose), in the
row's restart mode (``fresh``, greenkeep's default, or ``reuse``). The *budget* rate rows
pass ``max_restarts=BUDGET`` (10**9, never reached) and the default period instead, so that
the restart-intensity bookkeeping runs on every restart.

Logging is configured here, by the benchmark, before the pool starts (greenkeep never
configures structlog itself):

- ``filtered``: structlog's filtering bound logger above every level greenkeep uses;
- ``json``: every event at info and above rendered as JSON into ``os.devnull``, with
  greenkeep's defaults;
- ``json-nosummaries``: the same with storm summaries turned off
  (``log_summary_interval=None``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from _harness import (
    Gate,
    Probe,
    Storms,
    configure_filtered,
    configure_json,
    current_rss,
    emit_result,
    make_isolated_work,
    make_storm_work,
    make_work,
    measure,
    measure_fixed,
    memory_result,
    run_storm,
    watchdog,
)

__all__ = [
    "BUDGET",
    "DEFAULT_MODE",
    "introspection",
    "isolated",
    "memory",
    "rate",
    "storm",
    "summary",
]

#: greenkeep's default restart mode: the JSON rows run it.
DEFAULT_MODE = "fresh"

#: The budget rows' ``max_restarts``: finite, and never reached by any run of the benchmark.
BUDGET = 10**9

#: The overall cap passed to `WorkerPool.stop` at the end of a row, in seconds.
STOP_TIMEOUT = 10.0
#: How long the row waits for that stop to return before it reports without it.
STOP_GRACE = 15.0


def _start(
    work: Callable[[int], None],
    workers: int,
    mode: str,
    summaries: bool = True,
    budget: bool = False,
) -> Any:
    """
    Start a pool of *workers* workers running ``work(worker_id)`` in restart *mode*, with
    storm *summaries* on (greenkeep's default) or off, and ``max_restarts=UNLIMITED`` or,
    with *budget*, ``max_restarts=BUDGET`` and the default period; return it (`_stop`
    stops it).
    """
    import greenkeep

    pool = greenkeep.WorkerPool(
        work,
        workers,
        mode=mode,
        max_restarts=BUDGET if budget else greenkeep.UNLIMITED,
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
    workers: int,
    crash: str,
    warmup_max: float,
    seconds: float,
    mode: str,
    log: str,
    budget: bool = False,
) -> dict[str, Any]:
    """
    Workers crashing in a loop: restarts/s and crash-to-restart latency. With *budget*, the
    pool has ``max_restarts=BUDGET`` (the default period) instead of ``UNLIMITED``; after
    the window the row checks, from the pool's ``snapshot()``, that it is still running and
    reports how many restarts its window held (``restarts_in_period``).
    """
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
        make_work(probe, gate.wait, pause),
        workers,
        mode,
        summaries=log != "json-nosummaries",
        budget=budget,
    )
    started = time.perf_counter() - t
    gate.open()
    result = measure(probe, gevent.sleep, warmup_max, seconds)
    result["start_s"] = started
    if budget:
        # After the window: the snapshot's cost is no part of the measurement.
        snap = sup.snapshot()
        result["max_restarts"] = BUDGET
        result["restarts_in_period"] = snap.get("restarts_in_period")
        if snap.get("state") != "running":
            result["status"] = "error"
            result["error"] = f"the pool is {snap.get('state')!r} after the window, not running"
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


def storm(workers: int, rounds: int, timeout: float, mode: str = "fresh") -> dict[str, Any]:
    """Every worker crashes at the same instant (*rounds* times): time until all run
    again, ticker stall."""
    configure_filtered()
    probe = Probe(workers)
    storms = Storms(rounds, workers)
    sup = _start(make_storm_work(probe, storms), workers, mode)
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
    The heartbeat scenario: one pool of *workers* otherwise idle workers with a 1 s heartbeat,
    each waking every 100 ms (the wake-ups spread over the 100 ms). Windows of
    *phase_seconds* alternate between *beating* (each wake-up then calls the worker's beat,
    ``greenkeep.heartbeat()``'s callable) and *not beating* (the same wake-up and the same
    bookkeeping, no beat), in A-B-B-A order, *pairs* pairs: the same workers, the same
    memory, the same moments of this machine's drift, with and without the beats.

    The supervisor's deadline ticks (twice per interval) are timed where they run and taken
    out of both windows' CPU time. Reports the cost of a beat (the mean of the pairs'
    differences in process CPU time per wake-up, and its standard error), the ticks' share of
    a core (their time over the wall time), and the sum: beats at the rate the workers made
    them plus the ticks, as a fraction of one core.

    What this leaves out: after-effects that outlast their window (a cache line a beat
    dirtied and that is written back later, the caches a tick has churned) land in both
    kinds of window alike and cancel out of the difference, and so does the manager's
    switch in and out for each tick (a few microseconds, twice a second). All are small next
    to the beats themselves (a tick reads about 1 MB), but they are not counted.
    """
    import statistics
    import time

    import gevent

    import greenkeep
    from greenkeep import _heartbeat

    configure_filtered()
    tick_time = [0.0]
    original_tick = _heartbeat.HeartbeatMonitor.tick

    def timed_tick(self: Any, now: float) -> Any:
        t = time.process_time()
        try:
            return original_tick(self, now)
        finally:
            tick_time[0] += time.process_time() - t

    beating = [False]
    wakeups = [0]

    def worker(worker_id: int) -> None:
        beat = greenkeep.heartbeat()
        sleep = gevent.sleep
        on = beating
        count = wakeups
        sleep(worker_id % 100 / 1000)  # spread the wake-ups over the 100 ms
        while True:
            sleep(0.1)
            count[0] += 1
            if on[0]:
                beat()

    _heartbeat.HeartbeatMonitor.tick = timed_tick  # type: ignore[method-assign]
    try:
        pool = greenkeep.WorkerPool(worker, workers, name="hb", heartbeat=1.0)
        pool.start()
        beating[0] = True
        gevent.sleep(1.0)  # every worker has woken, beaten and been checked
        per_wakeup: dict[bool, list[float]] = {True: [], False: []}
        ticks_s = wall_s = beating_s = 0.0
        beats = 0
        for k in range(2 * pairs):
            beating[0] = (k % 2 == 0) == (k // 2 % 2 == 0)  # A B B A A B B A ...
            n0, tick0 = wakeups[0], tick_time[0]
            c0, t0 = time.process_time(), time.perf_counter()
            gevent.sleep(phase_seconds)
            c1, t1 = time.process_time(), time.perf_counter()
            ticked = tick_time[0] - tick0
            per_wakeup[beating[0]].append((c1 - c0 - ticked) / max(wakeups[0] - n0, 1))
            ticks_s += ticked
            wall_s += t1 - t0
            if beating[0]:
                beats += wakeups[0] - n0
                beating_s += t1 - t0
        missed = sum(w.restarts for w in pool.which_children())
        pool.stop(timeout=STOP_TIMEOUT)
    finally:
        _heartbeat.HeartbeatMonitor.tick = original_tick  # type: ignore[method-assign]
    diffs = [b - a for a, b in zip(per_wakeup[False], per_wakeup[True], strict=True)]
    beat_s = statistics.fmean(diffs)
    beat_se = statistics.stdev(diffs) / len(diffs) ** 0.5
    beats_per_s = beats / beating_s
    tick_share = ticks_s / wall_s
    return {
        "wakeup_off_s": statistics.median(per_wakeup[False]),
        "beat_s": beat_s,
        "beat_se_s": beat_se,
        "beat_median_s": statistics.median(diffs),
        "beat_pairs_s": diffs,
        "beat_share": beat_s * beats_per_s,
        "beat_share_se": beat_se * beats_per_s,
        "tick_share": tick_share,
        "overhead": beat_s * beats_per_s + tick_share,
        "beats_per_s": beats_per_s,
        "missed": missed,
        "pairs": pairs,
        "phase_s": phase_seconds,
    }


def _idle_tree(workers: int) -> Any:
    """A started supervisor ``root`` over a pool ``snap`` of *workers* workers that wait on
    one event for ever (the snapshot and summary scenarios' tree)."""
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
    return root


def snapshot(workers: int) -> dict[str, Any]:
    """The cost of one `snapshot()` of a pool of *workers* idle workers (the median of
    5), in seconds of hub time, and of rendering it as JSON."""
    import json
    import statistics
    import time

    root = _idle_tree(workers)
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


def summary(workers: int) -> dict[str, Any]:
    """
    The status API's summary (``GET /api/v1/tree`` of `greenkeep.wsgi.StatusApp`, the whole
    WSGI response) against ``snapshot()`` plus ``json.dumps`` of the whole tree, for a
    supervisor over a pool of *workers* idle workers, in the same process: each the median
    of 5, in seconds of the hub thread's CPU time (``time.thread_time``: the work itself,
    without the yield that introspection charges afterwards), and the summary's size.
    """
    import io
    import json
    import statistics
    import time

    from greenkeep.wsgi import StatusApp

    root = _idle_tree(workers)
    app = StatusApp(root)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/api/v1/tree",
        "QUERY_STRING": "",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(),
    }

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        assert status.startswith("200"), status

    full, answered, size = [], [], 0
    for _ in range(5):
        t = time.thread_time()
        json.dumps(root.snapshot())
        full.append(time.thread_time() - t)
        t = time.thread_time()
        size = len(b"".join(app(dict(environ), start_response)))
        answered.append(time.thread_time() - t)
    root.stop(timeout=STOP_TIMEOUT)
    snapshot_json_s, summary_s = statistics.median(full), statistics.median(answered)
    return {
        "snapshot_json_s": snapshot_json_s,
        "summary_s": summary_s,
        "summary_ratio": summary_s / snapshot_json_s if snapshot_json_s > 0 else None,
        "summary_bytes": size,
        "children": workers,
    }


#: The introspection scenario's poller: ``snapshot()`` on every SNAPSHOT_EVERY-th iteration.
SNAPSHOT_EVERY = 10
#: The introspection scenario's "main" greenlet sleeps this long in a loop.
MAIN_SLEEP = 0.05


def introspection(
    workers: int, crash: str, warmup_max: float, seconds: float, overrun: float
) -> dict[str, Any]:
    """
    Introspection under polling: a pool of *workers* workers crashing in a loop (fresh mode,
    filtered logging, ``UNLIMITED``), the same pool measured over two windows of *seconds*
    one after the other in this process, after the rate rows' warm-up:

    1. *unpolled*: restarts/s;
    2. *polled*: restarts/s while one more greenlet runs ``which_children()``,
       ``count_children()`` and, on iterations 0, 10, 20, ... (every SNAPSHOT_EVERY-th),
       ``snapshot()`` of the pool, then ``gevent.sleep(0)``, in a loop; and how many of
       those calls completed.

    In both windows the greenlet that measures is the "main" greenlet: it loops on
    ``gevent.sleep(MAIN_SLEEP)``, and each window's *stretch* is its longest interval
    between two wake-ups (the window's start counts as one) minus MAIN_SLEEP. A window
    ends at the first wake-up at or after *seconds*. If the polled one has not ended
    *overrun* seconds later (the poller makes the process crawl), an OS thread ends it:
    it counts the restarts and calls so far, takes the main greenlet's interval in
    progress as its stretch if that is the longest (``polled_cut``, ``cut_note``), reports,
    and ends the process without stopping the pool.
    """
    import threading
    import time

    import gevent

    configure_filtered()
    probe = Probe(workers)
    gate = Gate(probe)
    pause = gevent.sleep if crash == "yield" else None
    pool = _start(make_work(probe, gate.wait, pause), workers, "fresh")
    gate.open()
    start = time.perf_counter()
    while probe.restarts < workers and time.perf_counter() - start < warmup_max:
        gevent.sleep(0.02)
    result: dict[str, Any] = {"warmup_s": time.perf_counter() - start}

    polling = [False]
    #: which_children, count_children and snapshot calls completed so far.
    calls = [0, 0, 0]

    def poller() -> None:
        which, count, snap = pool.which_children, pool.count_children, pool.snapshot
        sleep = gevent.sleep
        done = calls
        i = 0
        while polling[0]:
            which()
            done[0] += 1
            count()
            done[1] += 1
            if i % SNAPSHOT_EVERY == 0:
                snap()
                done[2] += 1
            i += 1
            sleep(0)

    # The polled window's state as the main greenlet updates it (read by the cut-off
    # thread): its start, the restarts and calls then, the last wake-up, the longest interval.
    live: dict[str, Any] = {}
    #: Whoever takes it closes the polled window: the main greenlet or the cut-off thread.
    closing = threading.Lock()

    def close(prefix: str, now: float, longest: float) -> None:
        elapsed = now - live["t0"]
        restarts = probe.restarts - live["n0"]
        result[f"{prefix}_restarts"] = restarts
        result[f"{prefix}_elapsed_s"] = elapsed
        result[f"{prefix}_rate"] = restarts / elapsed if elapsed > 0 else 0.0
        result[f"{prefix}_max_stretch_ms"] = (longest - MAIN_SLEEP) * 1000
        if prefix == "polled":
            made = [c - c0 for c, c0 in zip(calls, live["c0"], strict=True)]
            result["which_children_calls"], result["count_children_calls"] = made[:2]
            result["snapshot_calls"] = made[2]
            result["calls_per_s"] = sum(made) / elapsed if elapsed > 0 else 0.0
            if result["unpolled_rate"] > 0:
                result["polled_ratio"] = result["polled_rate"] / result["unpolled_rate"]
            else:
                result["polled_ratio"] = None

    def window(prefix: str) -> None:
        sleep = gevent.sleep
        clock = time.perf_counter
        live.update(t0=clock(), n0=probe.restarts, c0=list(calls), longest=0.0)
        live["last"] = live["t0"]
        deadline = live["t0"] + seconds
        while True:
            sleep(MAIN_SLEEP)
            now = clock()
            if now - live["last"] > live["longest"]:
                live["longest"] = now - live["last"]
            live["last"] = now
            if now >= deadline:
                break
        if prefix == "polled" and not closing.acquire(blocking=False):
            gevent.sleep(3600)  # the cut-off thread is reporting and ends the process
        close(prefix, now, live["longest"])

    def cut_off() -> None:
        now = time.perf_counter()
        if not closing.acquire(blocking=False):
            return  # the main greenlet closed the window just now
        result["polled_cut"] = True
        close("polled", now, max(live["longest"], now - live["last"]))
        result["cut_note"] = (
            f"the polled window was cut {overrun:g} s after it was due (at "
            f"{now - live['t0']:.1f} s); the pool was not stopped"
        )
        if emit_result(dict(result, status="ok")):
            os._exit(0)

    window("unpolled")
    polling[0] = True
    gevent.spawn(poller)
    cut = threading.Timer(seconds + overrun, cut_off)
    cut.daemon = True
    cut.start()
    window("polled")
    cut.cancel()
    result["polled_cut"] = False
    polling[0] = False
    gevent.sleep(0)  # the poller ends its iteration
    result["parked"] = gate.park(STOP_TIMEOUT)
    return _stop(pool, result)
