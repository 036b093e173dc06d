"""
Shared measurement for ``restart_rate.py``: the instrumented worker, the measurement window,
latency percentiles, RSS, logging set-ups, and the one-JSON-line protocol between the parent
and the subprocess that runs one row (the line also says which greenkeep the child ran,
`greenkeep_origin`, so that ``ab.py`` can tell two checkouts' children apart).

Every row of the benchmark runs the *same* instrumented worker function (`make_work`, or
`make_async_work` for asyncio, whose body is the same statement for statement), so the ratios
between rows compare only what happens between two incarnations.

Nothing here touches the garbage collector's settings.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from itertools import pairwise
from time import perf_counter_ns
from typing import Any

__all__ = [
    "RESULT_PREFIX",
    "SAMPLE_CAP",
    "SAMPLE_EVERY",
    "Crash",
    "Gate",
    "Probe",
    "Storms",
    "configure_filtered",
    "configure_json",
    "current_rss",
    "emit_result",
    "greenkeep_origin",
    "machine_info",
    "make_async_work",
    "make_isolated_work",
    "make_storm_work",
    "make_work",
    "measure",
    "measure_async",
    "measure_fixed",
    "memory_result",
    "peak_rss",
    "percentiles",
    "run_child",
    "run_storm",
    "versions",
    "watchdog",
    "window_result",
]

#: The child's stdout line that carries its result (everything else on stdout is ignored).
RESULT_PREFIX = "@@restart_rate@@ "

#: Latency samples kept per row (a ring buffer: the last ones of the window are kept).
SAMPLE_CAP = 1 << 18

#: Latency is sampled on every SAMPLE_EVERY-th worker slot (slot % SAMPLE_EVERY == 0): two
#: clock reads per incarnation cost about 0.2 µs here, which every restart would otherwise pay.
SAMPLE_EVERY = 16


class Crash(Exception):
    """What every benchmark worker raises."""


@dataclass
class Probe:
    """
    Shared state of one row's workers.

    Attributes:
        raised: Per worker slot: 0 before its first raise; for a sampled slot the
            `perf_counter_ns` of its last raise, for the others 1.
        samples: Ring buffer of crash-to-restart latencies in ns.
        count: ``count[0]`` restarts so far (incarnations that follow a raise),
            ``count[1]`` latency samples so far; sample *i* is at
            ``samples[i & (SAMPLE_CAP - 1)]``.
    """

    workers: int
    raised: array = field(init=False)
    samples: array = field(init=False)
    count: list[int] = field(default_factory=lambda: [0, 0])

    def __post_init__(self) -> None:
        self.raised = array("q", bytes(8 * self.workers))
        self.samples = array("q", bytes(8 * SAMPLE_CAP))

    @property
    def restarts(self) -> int:
        return self.count[0]

    @property
    def sampled(self) -> int:
        return self.count[1]

    def window(self, start: int, end: int) -> list[int]:
        """Latency samples (ns) number *start* to *end* (the last SAMPLE_CAP of them)."""
        start = max(start, end - SAMPLE_CAP)
        mask = SAMPLE_CAP - 1
        samples = self.samples
        return [samples[i & mask] for i in range(start, end)]


#: How many events a `Gate` spreads its waiters over.
GATE_SHARDS = 256


class Gate:
    """
    What the first incarnation of every worker slot waits on (gevent rows): ``open``
    starts the crash loop; ``park`` makes every worker's next incarnation wait here again,
    so a row can end without a crash backlog. Only first incarnations touch it.

    The waiters are spread over `GATE_SHARDS` events, in blocks of arrival: a gevent ``Event`` keeps
    its waiters in a list, and a waiter that is killed removes itself from it, which costs
    the list's length. A row's stop kills every parked worker in slot order, not in the
    order they parked in, so with one event for 100,000 workers those removals alone took
    tens of seconds (the stop overran its bound; measured: 30 s for 100,000 workers against
    5 s with the shards).
    """

    def __init__(self, probe: Probe) -> None:
        import gevent.event

        self.probe = probe
        self.events = [gevent.event.Event() for _ in range(GATE_SHARDS)]
        self.waiting = 0
        self._next = 0

    def wait(self) -> None:
        # Contiguous shards, in the order of arrival: the first incarnations arrive in slot
        # order, and open() wakes the shards in order, so the crash loop starts (and, with
        # every worker's restart following its crash, stays) in slot order, as it would
        # behind one event.
        workers = self.probe.workers
        arrival = self._next
        self._next = (arrival + 1) % workers
        shard = arrival * GATE_SHARDS // workers
        self.waiting += 1
        try:
            self.events[shard].wait()
        finally:
            self.waiting -= 1

    def open(self) -> None:
        for event in self.events:
            event.set()

    def park(self, timeout: float) -> bool:
        """Stop the crash loop: wait until every worker waits here (at most *timeout* s)."""
        import gevent

        for event in self.events:
            event.clear()
        raised = self.probe.raised
        zeros = array("q", bytes(8 * len(raised)))
        deadline = time.perf_counter() + timeout
        while self.waiting < self.probe.workers and time.perf_counter() < deadline:
            # Again and again: an incarnation that was inside its pause (--crash yield)
            # when the slots were cleared stores its raise time after it.
            raised[:] = zeros
            gevent.sleep(0.01)
        return self.waiting >= self.probe.workers


def make_work(
    probe: Probe, gate_wait: Callable[[], object], pause: Callable[[], object] | None
) -> Callable[[int], None]:
    """
    The instrumented worker for gevent rows: ``work(slot)`` is one incarnation.

    Every incarnation that follows a raise counts one restart. On a sampled slot it first
    reads the clock, and the time since the slot's last raise is one crash-to-restart
    latency sample. The first incarnation of a slot waits on *gate_wait* instead (so a row
    starts crashing at one moment). With *pause* (crash mode "yield") it calls it once; then
    a sampled slot stores the time, and it raises `Crash`.
    """
    raised = probe.raised
    samples = probe.samples
    count = probe.count
    mask = SAMPLE_CAP - 1
    every = SAMPLE_EVERY

    if pause is None:

        def work(slot: int) -> None:
            last = raised[slot]
            if last > 1:
                now = perf_counter_ns()
                count[0] += 1
                i = count[1]
                count[1] = i + 1
                samples[i & mask] = now - last
                raised[slot] = perf_counter_ns()
                raise Crash
            if last:
                count[0] += 1
                raise Crash
            gate_wait()
            raised[slot] = perf_counter_ns() if slot % every == 0 else 1
            raise Crash

        return work

    def work_yield(slot: int) -> None:
        last = raised[slot]
        if last > 1:
            now = perf_counter_ns()
            count[0] += 1
            i = count[1]
            count[1] = i + 1
            samples[i & mask] = now - last
            pause()
            raised[slot] = perf_counter_ns()
            raise Crash
        if last:
            count[0] += 1
            pause()
            raise Crash
        gate_wait()
        pause()
        raised[slot] = perf_counter_ns() if slot % every == 0 else 1
        raise Crash

    return work_yield


def make_async_work(
    probe: Probe,
    gate_wait: Callable[[], Awaitable[object]],
    pause: Callable[[], Awaitable[object]] | None,
) -> Callable[[int], Awaitable[None]]:
    """`make_work` for asyncio: the same body as a coroutine function."""
    raised = probe.raised
    samples = probe.samples
    count = probe.count
    mask = SAMPLE_CAP - 1
    every = SAMPLE_EVERY

    if pause is None:

        async def work(slot: int) -> None:
            last = raised[slot]
            if last > 1:
                now = perf_counter_ns()
                count[0] += 1
                i = count[1]
                count[1] = i + 1
                samples[i & mask] = now - last
                raised[slot] = perf_counter_ns()
                raise Crash
            if last:
                count[0] += 1
                raise Crash
            await gate_wait()
            raised[slot] = perf_counter_ns() if slot % every == 0 else 1
            raise Crash

        return work

    async def work_yield(slot: int) -> None:
        last = raised[slot]
        if last > 1:
            now = perf_counter_ns()
            count[0] += 1
            i = count[1]
            count[1] = i + 1
            samples[i & mask] = now - last
            await pause()
            raised[slot] = perf_counter_ns()
            raise Crash
        if last:
            count[0] += 1
            await pause()
            raise Crash
        await gate_wait()
        await pause()
        raised[slot] = perf_counter_ns() if slot % every == 0 else 1
        raise Crash

    return work_yield


def make_isolated_work(
    probe: Probe,
    gate_wait: Callable[[], object],
    idle_wait: Callable[[], object],
    sleep: Callable[[float], object],
    interval: float,
) -> Callable[[int], None]:
    """
    The worker of the isolated-crash scenario: slot 0 runs for *interval* seconds and
    crashes, again and again (latency recorded as in `make_work`); every other slot blocks in
    *idle_wait* for good.
    """
    raised = probe.raised
    samples = probe.samples
    count = probe.count
    mask = SAMPLE_CAP - 1

    def work(slot: int) -> None:
        if slot:
            idle_wait()
            return
        now = perf_counter_ns()
        last = raised[0]
        if last:
            count[0] += 1
            i = count[1]
            count[1] = i + 1
            samples[i & mask] = now - last
        else:
            gate_wait()
        sleep(interval)
        raised[0] = perf_counter_ns()
        raise Crash

    return work


class Storms:
    """
    The events of the storm scenario: *rounds* storms, one after another. ``go[k]`` starts
    storm *k*; ``back[k]`` is set when every worker runs again after it (at
    ``back_ns[k]``); after the last storm every worker waits on ``idle`` for good.
    """

    def __init__(self, rounds: int, workers: int) -> None:
        import gevent.event

        self.rounds = rounds
        self.go = [gevent.event.Event() for _ in range(rounds)]
        self.back = [gevent.event.Event() for _ in range(rounds)]
        self.back_ns = [0] * rounds
        self.back_count = [0] * rounds
        self.idle = gevent.event.Event()
        #: Per slot: in how many storms it has crashed so far.
        self.crashed = array("q", bytes(8 * workers))


def make_storm_work(probe: Probe, storms: Storms) -> Callable[[int], None]:
    """
    The worker of the storm scenario. Each incarnation that follows a crash records its
    latency and counts itself back (the last one back sets ``storms.back[k]``); then it
    waits for the next storm and crashes, or, after the last storm, idles for good.
    """
    raised = probe.raised
    samples = probe.samples
    count = probe.count
    workers = probe.workers
    mask = SAMPLE_CAP - 1
    crashed = storms.crashed
    back_count = storms.back_count
    rounds = storms.rounds

    def work(slot: int) -> None:
        k = crashed[slot]
        if k:
            now = perf_counter_ns()
            count[0] += 1
            i = count[1]
            count[1] = i + 1
            samples[i & mask] = now - raised[slot]
            n = back_count[k - 1] + 1
            back_count[k - 1] = n
            if n == workers:
                storms.back_ns[k - 1] = now
                storms.back[k - 1].set()
        if k == rounds:
            storms.idle.wait()
            return
        storms.go[k].wait()
        crashed[slot] = k + 1
        raised[slot] = perf_counter_ns()
        raise Crash

    return work


# ---------------------------------------------------------------------- the window


def warmup_target(workers: int) -> int:
    """Restarts to see before the window opens: one full round of every worker."""
    return workers


def measure(
    probe: Probe,
    sleep: Callable[[float], object],
    warmup_max: float,
    seconds: float,
) -> dict[str, Any]:
    """
    Warm up (until there were as many restarts as workers, at most *warmup_max* s), then count the
    restarts and keep the latencies of a *seconds*-long window. *sleep* is the row's own
    cooperative sleep (``gevent.sleep``); see `measure_async` for asyncio.
    """
    target = warmup_target(probe.workers)
    start = time.perf_counter()
    while probe.restarts < target and time.perf_counter() - start < warmup_max:
        sleep(0.02)
    warm = time.perf_counter() - start
    n0, s0, t0 = probe.restarts, probe.sampled, time.perf_counter()
    sleep(seconds)
    n1, s1, t1 = probe.restarts, probe.sampled, time.perf_counter()
    return window_result(probe, n1 - n0, (s0, s1), t1 - t0, warm)


async def measure_async(
    probe: Probe,
    sleep: Callable[[float], Awaitable[object]],
    warmup_max: float,
    seconds: float,
) -> dict[str, Any]:
    """`measure` for asyncio."""
    target = warmup_target(probe.workers)
    start = time.perf_counter()
    while probe.restarts < target and time.perf_counter() - start < warmup_max:
        await sleep(0.02)
    warm = time.perf_counter() - start
    n0, s0, t0 = probe.restarts, probe.sampled, time.perf_counter()
    await sleep(seconds)
    n1, s1, t1 = probe.restarts, probe.sampled, time.perf_counter()
    return window_result(probe, n1 - n0, (s0, s1), t1 - t0, warm)


def measure_fixed(
    probe: Probe, sleep: Callable[[float], object], warmup: float, seconds: float
) -> dict[str, Any]:
    """Like `measure`, with a fixed warm-up (for the isolated crash)."""
    sleep(warmup)
    n0, s0, t0 = probe.restarts, probe.sampled, time.perf_counter()
    sleep(seconds)
    n1, s1, t1 = probe.restarts, probe.sampled, time.perf_counter()
    return window_result(probe, n1 - n0, (s0, s1), t1 - t0, warmup)


def run_storm(probe: Probe, storms: Storms, timeout: float) -> dict[str, Any]:
    """
    Run the storms (gevent rows) while a ticker greenlet ticks every 1 ms. For each: set
    ``go[k]`` (every worker is blocked on it) and wait until every worker runs again, or
    *timeout* passes. A storm's stall is the longest interval between two ticks from the
    moment it starts until 50 ms after the last worker is back. Reports the median over
    the storms (each one under ``storms``).
    """
    import gevent

    ticks = array("q")
    running = [True]

    def ticker() -> None:
        append = ticks.append
        while running[0]:
            append(perf_counter_ns())
            gevent.sleep(0.001)

    gevent.spawn(ticker)
    gevent.sleep(0.1)
    idle_gaps = [b - a for a, b in pairwise(ticks[1:])]
    each: list[dict[str, Any]] = []
    for k in range(storms.rounds):
        first = len(ticks) - 1
        t0 = perf_counter_ns()
        storms.go[k].set()
        back = storms.back[k].wait(timeout)
        gevent.sleep(0.05)
        t_end = perf_counter_ns()
        seen = [t for t in ticks[first:] if t <= t_end]
        gaps = [b - a for a, b in pairwise(seen)]
        gaps.append(t_end - seen[-1])
        each.append(
            {
                "all_back": bool(back),
                "back": storms.back_count[k],
                "all_back_ms": (storms.back_ns[k] - t0) / 1e6 if back else None,
                "max_stall_ms": max(gaps) / 1e6,
            }
        )
        if not back:
            break
        gevent.sleep(0.02)
    running[0] = False
    lat = percentiles(probe.window(0, probe.sampled))
    times = [e["all_back_ms"] for e in each if e["all_back_ms"] is not None]
    return {
        "all_back": all(e["all_back"] for e in each) and len(each) == storms.rounds,
        "back": min(e["back"] for e in each),
        "all_back_ms": statistics.median(times) if times else None,
        "max_stall_ms": statistics.median(e["max_stall_ms"] for e in each),
        "idle_max_tick_gap_ms": max(idle_gaps) / 1e6 if idle_gaps else None,
        "p50_us": lat["p50_us"],
        "p99_us": lat["p99_us"],
        "storms": each,
    }


def memory_result(before: int, after: int, workers: int) -> dict[str, Any]:
    return {
        "rss_before_bytes": before,
        "rss_after_bytes": after,
        "bytes_per_worker": (after - before) / workers,
    }


def window_result(
    probe: Probe, restarts: int, sampled: tuple[int, int], elapsed: float, warm: float
) -> dict[str, Any]:
    lat = percentiles(probe.window(*sampled))
    return {
        "restarts": restarts,
        "elapsed_s": elapsed,
        "warmup_s": warm,
        "rate": restarts / elapsed if elapsed > 0 else 0.0,
        "p50_us": lat["p50_us"],
        "p99_us": lat["p99_us"],
        "samples": lat["samples"],
    }


def percentiles(samples_ns: list[int]) -> dict[str, Any]:
    """p50 and p99 (nearest rank) of latency samples in ns, in µs."""
    if not samples_ns:
        return {"p50_us": None, "p99_us": None, "samples": 0}
    ordered = sorted(samples_ns)
    n = len(ordered)

    def rank(q: float) -> float:
        return ordered[min(n - 1, max(0, int(q * n + 0.5) - 1))] / 1000.0

    return {"p50_us": rank(0.50), "p99_us": rank(0.99), "samples": n}


# ---------------------------------------------------------------------- memory


def peak_rss() -> int:
    """Peak resident set size of this process, in bytes (``getrusage``)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib if sys.platform == "darwin" else kib * 1024


def current_rss() -> int:
    """Current resident set size of this process, in bytes."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is the best we have
        return peak_rss()


# ---------------------------------------------------------------------- logging


def configure_filtered() -> None:
    """structlog's filtering bound logger above every level greenkeep uses."""
    import structlog

    try:
        wrapper = structlog.make_filtering_bound_logger(logging.CRITICAL + 10)
        factory = None
    except KeyError:
        # structlog >= 25 only builds filtering loggers for the stdlib's levels. Filter
        # below CRITICAL instead and discard what remains: greenkeep logs at critical only
        # when a supervisor gives up or crashes, which no benchmark row does.
        wrapper = structlog.make_filtering_bound_logger(logging.CRITICAL)
        factory = structlog.ReturnLoggerFactory()
    if factory is None:
        structlog.configure(wrapper_class=wrapper, cache_logger_on_first_use=True)
    else:
        structlog.configure(
            wrapper_class=wrapper, logger_factory=factory, cache_logger_on_first_use=True
        )


def configure_json() -> None:
    """Every event at info and above rendered as JSON (tracebacks formatted) to os.devnull."""
    import structlog

    sink = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.WriteLoggerFactory(file=sink),
        cache_logger_on_first_use=True,
    )


# ---------------------------------------------------------------------- protocol


_emitted = threading.Lock()


def emit_result(result: dict[str, Any]) -> bool:
    """
    Child side: print the row's result as one JSON line on stdout, once per process (a
    second call, e.g. from a `watchdog`, prints nothing and returns ``False``).
    """
    if not _emitted.acquire(blocking=False):
        return False
    result.setdefault("peak_rss_bytes", peak_rss())
    result.setdefault("greenkeep", greenkeep_origin())
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")
    sys.stdout.flush()
    return True


def greenkeep_origin() -> dict[str, Any]:
    """
    Which greenkeep this process runs: ``file`` (its ``__init__.py``, real path) and
    ``version`` if it was imported; if not (a baseline row), the file an import would load,
    without importing it, and ``version`` ``None``.
    """
    module = sys.modules.get("greenkeep")
    if module is not None:
        path = getattr(module, "__file__", None)
        version = getattr(module, "__version__", None)
    else:
        import importlib.util

        try:
            spec = importlib.util.find_spec("greenkeep")
        except (ImportError, ValueError):
            spec = None
        path = spec.origin if spec is not None else None
        version = None
    return {
        "file": os.path.realpath(path) if path else None,
        "version": version,
        "imported": module is not None,
    }


def watchdog(seconds: float, result: dict[str, Any], note: str) -> threading.Timer:
    """
    Child side: unless the row's result was emitted within *seconds*, emit a copy of
    *result* with *note* and end the process. An OS thread, so it fires even while the
    gevent hub is busy. Cancel it when done.
    """

    def fire() -> None:
        late = dict(result, status=result.get("status", "ok"), stop_note=note)
        if emit_result(late):
            os._exit(0)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    return timer


def run_child(
    script: str,
    argv: list[str],
    timeout: float,
    python: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """
    Parent side: run ``script argv`` in a fresh interpreter (this one, or *python*, with
    *env* if given) and return its JSON line.

    A child that fails, times out or prints no result gives ``{"status": "error", ...}``.
    """
    cmd = [python or sys.executable, script, *argv]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {
        "status": "error",
        "error": f"exit code {proc.returncode}: " + (" | ".join(tail) or "no output"),
    }


# ---------------------------------------------------------------------- environment


def versions() -> dict[str, str]:
    """The Python, gevent, greenlet and structlog versions."""
    import gevent
    import greenlet
    import structlog

    try:
        import greenkeep

        gk = greenkeep.__version__
    except ImportError:  # pragma: no cover
        gk = "not installed"
    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "gevent": gevent.__version__,
        "greenlet": greenlet.__version__,
        "structlog": structlog.__version__,
        "greenkeep": gk,
    }


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import gevent

        loop = type(gevent.get_hub().loop).__module__
    except Exception:  # informational only
        loop = "?"
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "gevent_loop": loop,
    }
