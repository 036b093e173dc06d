"""
restart_rate: how fast greenkeep restarts thousands of crashing greenlets, against baselines.

Run it with ``uv run benchmarks/restart_rate.py`` (about two minutes on a 2-core machine);
``--quick`` is a few-second smoke run of the same rows and scenarios; ``--scaling`` adds the
1,000 / 10,000 / 100,000-worker runs (several minutes); ``--json PATH`` writes every number
with the versions and the machine; ``--versions`` prints the versions.

The table's header names what the run ran with: the Python implementation and version, the
gevent, greenlet, structlog and greenkeep versions (this interpreter's, which runs every
child), and the machine (the CPU model from ``/proc/cpuinfo`` where there is one, the logical
CPU count, the OS and kernel release, the architecture, gevent's loop). The JSON output has
the same under ``versions`` and ``machine``.

What is measured
================

Every row runs in its own fresh interpreter (this script re-invoked with ``--row NAME``; the
child prints one JSON line, which includes the file and version of the greenkeep it ran),
with the interpreter's default garbage-collector settings. ``benchmarks/ab.py`` runs the same
rows against two checkouts of greenkeep, alternately (see its docstring).

The worker. Every row runs the same instrumented function per incarnation (an ``async def``
with the same body for asyncio). An incarnation that follows a crash of its worker slot
counts one *restart*; on every 16th slot it first reads ``perf_counter_ns``, and the time
since that slot's last raise is one *latency* sample (two clock reads cost about 0.2 µs here:
sampling keeps that out of most restarts). The first incarnation of each slot waits on a
gate instead, so that a row starts crashing at one moment. With ``--crash yield`` it then
yields once (``gevent.sleep(0)`` / ``asyncio.sleep(0)``); a sampled slot stores the time, and
it raises an ``Exception`` subclass.

Rate rows (``--workers`` workers, default 10,000, all crashing in a loop). After a warm-up
(until there have been as many restarts as workers, at most 5 s), restarts are counted over
a window of ``--seconds`` (default 2). The rows run ``--rounds`` times (default 2; every
other round in reverse order), and each number is the median over the rounds:

- *restarts/s*: restarts in the window / the window's length;
- *latency p50 / p99*: from the raise in the worker to the first line of its next incarnation
  (in a crash loop that includes a round of all the other workers);
- *peak RSS*: the child process's ``ru_maxrss`` (interpreter and imports included);
- *ratios*: to the naive row, to the asyncio row, and to the limit of the same restart mode
  (fresh rows and naive to the fresh limit, reuse rows to the limit), all from the same run;
- *idle/worker*: from the memory scenario below (greenkeep's for greenkeep rows).

The rows:

- *greenkeep filtered* (fresh mode, reuse mode): structlog's filtering bound logger above
  every level greenkeep uses (logging effectively off).
- *greenkeep filtered, budget* (fresh mode, reuse mode): the same as the filtered rows, but
  with a finite restart budget that is never reached (``max_restarts=10**9``, the default
  period of 5 s) instead of ``UNLIMITED``: what the restart-intensity bookkeeping costs on
  the straight path. Each runs right after its UNLIMITED row in every round (right before
  it in the reversed rounds); after the window it checks, from the pool's ``snapshot()``,
  that the pool is still running. The report gives each one's ratio to its UNLIMITED row
  (the medians, and round by round). The budget's window holds every restart of the last
  5 s: a row that has run for less than that (the default warm-up and window take a few
  seconds) appends to it on every restart but has not yet started dropping old ones.
- *greenkeep JSON* (default mode): every greenkeep event at info and above rendered by
  ``JSONRenderer`` (``add_log_level``, ISO ``TimeStamper``, ``format_exc_info``) through a
  filtering bound logger at INFO into a ``WriteLogger`` on ``os.devnull``; with storm
  summaries (greenkeep's default) and without.
- *naive*: one ``gevent.spawn`` per incarnation; a ``link_exception`` callback that is the
  ``put`` of a ``gevent.queue.Queue``; a manager greenlet that ``get``s one event at a time
  and spawns again (the slot rides on the greenlet as an attribute);
  ``hub.exception_stream = None``; no logging.
- *asyncio*: one ``asyncio.create_task`` per incarnation; a done-callback that is the
  ``put_nowait`` of an ``asyncio.Queue``; a manager task that awaits ``get``, retrieves the
  exception, finds the slot in a dict and creates the task again; a new default event loop
  (what ``asyncio.run`` makes); no logging.
- *limit*: no supervision; each worker is one ``gevent.spawn`` greenlet that catches the
  crash and calls the function again, yielding to the hub in between (its ``switch`` queued
  with ``loop.run_callback``, then a direct switch to the hub; with ``--crash yield`` the
  function's own yield is the turn).
- *fresh limit*: no supervision; when an incarnation has crashed it queues a loop callback
  that creates a raw ``greenlet.greenlet`` (parent: the hub) for the next one and switches
  into it: the cheapest of the variants measured (see ``_baselines.py``).

Greenkeep rows end with the workers parked (their next incarnation waits on the gate) and
``stop(timeout=...)``; neither is part of the measurement.

Scenarios, each in its own child too:

- *memory per idle worker*: RSS (``/proc/self/statm``) before and after starting N workers
  that block on one ``gevent.event.Event``, divided by N: greenkeep supervised workers,
  bare ``gevent.spawn`` greenlets, and asyncio tasks (on an ``asyncio.Event``);
- *isolated crash*: one of N workers runs 1 ms and crashes, again and again, for twice
  ``--seconds``; the others are idle; latency p50 / p99 as above (greenkeep and naive);
- *storm*: all N workers, blocked on one ``Event``, crash at the instant it is set; the time
  until every one runs again, and the longest interval between two ticks of a greenlet that
  ticks every 1 ms (``gevent.sleep(0.001)``) until 50 ms after the last is back; three storms
  in a row, the median reported (greenkeep in fresh and in reuse mode, the limit, and the
  fresh limit by its row's cheapest means: each mode is held to its own limit);
- *snapshot*: ``snapshot()`` of a supervisor over a pool of N idle workers, as hub time;
- *status API summary*: ``GET /api/v1/tree`` of ``greenkeep.wsgi.StatusApp`` (the whole WSGI
  response) for the same tree, against ``snapshot()`` plus ``json.dumps`` of it, both in
  the same process, in CPU time of the hub thread (the median of 5 each); and its size;
- *heartbeats*: one pool of N otherwise idle workers with a 1 s heartbeat, each waking every
  100 ms (the wake-ups spread over the 100 ms). 50 ms windows alternate, in A-B-B-A order,
  400 pairs, between windows where each wake-up calls the worker's beat and windows where it
  does not (the same workers, the same memory, the same moments of the machine's drift). The
  supervisor's deadline ticks are timed where they run and taken out of both windows. A
  beat's cost is the mean of the pairs' differences in process CPU time per wake-up (with
  its standard error); the overhead is that cost at the rate the workers beat plus the
  ticks' time over the wall time, as a fraction of one core;
- *introspection under polling*: a pool of N workers crashing in a loop (fresh mode,
  filtered, ``UNLIMITED``); after the rate rows' warm-up, two windows of ``--seconds`` one
  after the other in the same process: *unpolled*, then *polled*, while one more greenlet
  loops on ``pool.which_children(); pool.count_children()``, plus ``pool.snapshot()`` on
  iterations 0, 10, 20, ... (every 10th), then ``gevent.sleep(0)``. Restarts/s in each,
  polled / unpolled, the introspection calls completed per second (each of the three calls
  counts one), and for each window the longest stretch of the greenlet that measures, which
  loops on ``gevent.sleep(0.05)``: its longest interval between two wake-ups minus 50 ms.
  A window ends at the first wake-up at or after ``--seconds``; a polled window still
  running 10 s later (5 ``--seconds`` if less) is cut by an OS thread that reports what it
  measured so far (the interval in progress counting as a stretch) and ends the process.
  One process rather than two: the same pool, heap and greenlets in both windows, seconds
  apart, where two processes differ by the rate rows' run-to-run spread (often 10-20%
  here) on top of the poller's effect. Unpolled first, and only once (not A-B-B-A),
  because what the polled window leaves behind (its garbage, any restart backlog, on slow
  code a crawl that outlasts it) would land in an unpolled window that followed; the price
  is that a drift within the process between the two windows counts against the polled
  one;
- *scaling* (``--scaling``): the greenkeep filtered rows and their limits at 1,000 / 10,000 /
  100,000 workers, each the median of 3 interleaved runs, as each mode's ratio to its limit.

After the tables the acceptance targets (those of issues 4 and 5, and introspection under
polling, the storm, the limits and the heartbeats) are checked, from this run only. The budget
rows' ratios to their UNLIMITED rows are printed below the table (and judged as targets).

Targets, N/A and ``--check``
============================

The targets are defined at the default run: ``--workers 10000 --seconds 2 --crash
immediate`` (and the internal ``--warmup-max 5``), with ``--rounds 2`` or more (more rounds
measure the same medians, better; one round loses the reversed second round). Each target
depends on what its rows are run with (`DEFINED_AT`, and the tuples after it):

- the rate-row targets (fresh against naive, reuse against asyncio, JSON against filtered):
  ``--workers``, ``--seconds``, ``--crash``, ``--warmup-max``, ``--rounds``;
- introspection under polling: the same but ``--rounds`` (it runs once);
- isolated crash, heartbeats: ``--workers`` and ``--seconds``;
- memory, storm (both), snapshot, status API summary: ``--workers`` only;
- scaling: ``--seconds``, ``--crash``, ``--warmup-max`` (it has its own sizes and runs,
  whatever ``--workers`` and ``--rounds`` say);
- ``--quick`` changes all of them (its sizes, windows, warm-up and rounds).

A target is judged PASS or FAIL only in a run that matches its configuration. In any other
run (``--quick``, ``--workers 1000``, ...) it prints what it measured but its verdict is
``N/A (--quick)``, ``N/A (--workers 1000)``, ... naming what differs. A plain ``N/A`` is a
target that was not measured: a row that could not run, or the scaling targets without
``--scaling``. The line under the targets counts each verdict, and says how many N/A were
not judged and how many not measured. ``--json`` writes each target with ``status``,
``reduced_by`` (the options that differ, empty if judged), ``value``, ``bound`` and
``detail``, and the run's ``defined_at`` and ``reduced_by``.

Exit status: 0 when every row and scenario ran, whatever the targets gave (this is a
measuring tool). 1 when a row or scenario could not run (status ``error``) or, with
``--check``, when a target that applies FAILs; an N/A never fails ``--check``, so a
``--quick --check`` run exits 0. 2 is argparse's, for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _greenkeep_rows import BUDGET, DEFAULT_MODE
from _harness import emit_result, machine_info, run_child, versions

SCRIPT = os.path.abspath(__file__)


@dataclass(frozen=True)
class Row:
    name: str
    label: str
    #: The limit this row is compared with: "fresh-limit", "limit" or None.
    limit: str | None


RATE_ROWS = [
    Row("greenkeep-fresh", "greenkeep fresh, filtered", "fresh-limit"),
    Row("greenkeep-fresh-budget", "greenkeep fresh, filtered, budget", "fresh-limit"),
    Row("greenkeep-reuse", "greenkeep reuse, filtered", "limit"),
    Row("greenkeep-reuse-budget", "greenkeep reuse, filtered, budget", "limit"),
    Row(
        "greenkeep-json",
        f"greenkeep {DEFAULT_MODE}, JSON",
        "fresh-limit" if DEFAULT_MODE == "fresh" else "limit",
    ),
    Row(
        "greenkeep-json-nosummaries",
        f"greenkeep {DEFAULT_MODE}, JSON, no summaries",
        "fresh-limit" if DEFAULT_MODE == "fresh" else "limit",
    ),
    Row("naive", "naive (gevent.spawn + link_exception)", "fresh-limit"),
    Row("asyncio", "asyncio (create_task + done-callback)", None),
    Row("limit", "limit (re-run in place)", "limit"),
    Row("fresh-limit", "fresh limit (new raw greenlet)", "fresh-limit"),
]
SCENARIOS = [
    ("memory-greenkeep", "memory: greenkeep supervised worker"),
    ("memory-bare", "memory: bare gevent greenlet"),
    ("memory-asyncio", "memory: asyncio task"),
    ("isolated-greenkeep", "isolated crash: greenkeep"),
    ("isolated-naive", "isolated crash: naive"),
    ("storm-greenkeep", "storm: greenkeep fresh"),
    ("storm-fresh-limit", "storm: fresh limit"),
    ("storm-greenkeep-reuse", "storm: greenkeep reuse"),
    ("storm-limit", "storm: limit"),
    ("snapshot", "snapshot of the whole tree"),
    ("summary", "status API summary vs snapshot"),
    ("heartbeat", "heartbeat: beats + deadline checks"),
    ("introspection", "introspection under polling"),
]
#: A budget row's rate, at least this many times its UNLIMITED row's.
BUDGET_MIN = 0.95
#: Each greenkeep rate row and the least ratio to its limit it must reach.
LIMIT_TARGETS = (
    ("greenkeep-reuse", "limit", 0.75),
    ("greenkeep-fresh", "fresh-limit", 0.9),
)
#: Heartbeats (beats plus deadline checks): at most this many % of one core.
HEARTBEAT_MAX = 1.0
#: Each budget row and the UNLIMITED row it is compared with (the report's budget line).
BUDGET_PAIRS = (
    ("fresh", "greenkeep-fresh-budget", "greenkeep-fresh"),
    ("reuse", "greenkeep-reuse-budget", "greenkeep-reuse"),
)
SCALING_SIZES = (1_000, 10_000, 100_000)
SCALING_RUNS = 3
SCALING_PAIRS = (
    ("fresh", "greenkeep-fresh", "fresh-limit"),
    ("reuse", "greenkeep-reuse", "limit"),
)

#: One crash every ISOLATED_INTERVAL seconds in the isolated-crash scenario.
ISOLATED_INTERVAL = 0.001
#: The isolated-crash window, in --seconds.
ISOLATED_WINDOWS = 2
#: Storms per storm row (the row reports the median).
STORM_ROUNDS = 3
#: The storm rows in the report, each with its label, and the pairs the storm targets
#: compare: (mode, greenkeep's row, the limit it is held to).
STORM_LINES = (
    ("storm-greenkeep", "greenkeep fresh"),
    ("storm-fresh-limit", "fresh limit"),
    ("storm-greenkeep-reuse", "greenkeep reuse"),
    ("storm-limit", "limit"),
)
STORM_PAIRS = (
    ("fresh", "storm-greenkeep", "storm-fresh-limit", "fresh limit"),
    ("reuse", "storm-greenkeep-reuse", "storm-limit", "limit"),
)
#: Storm targets: time until all run again, and the longest ticker stall, each at most
#: this many times the limit's.
STORM_BACK_MAX = 1.5
STORM_STALL_MAX = 1.25
#: The heartbeat scenario: windows of this many seconds, alternating with and without beats,
#: this many pairs of them (4 with --seconds below 1).
HEARTBEAT_PHASE_S = 0.05
HEARTBEAT_PAIRS = 400
#: The introspection scenario: a polled window that has not ended this many seconds after
#: it was due is cut (5 --seconds below 2).
INTROSPECTION_OVERRUN = 10.0

#: The configuration the targets are defined at: the default run. ``rounds`` is a minimum
#: (more rounds measure the same medians, better); the others must be equal. The defaults
#: of the options are these.
DEFINED_AT: dict[str, Any] = {
    "workers": 10_000,
    "seconds": 2.0,
    "crash": "immediate",
    "warmup_max": 5.0,
    "rounds": 2,
}
#: The option that sets each of `DEFINED_AT`.
OPTION_OF = {
    "workers": "--workers",
    "seconds": "--seconds",
    "crash": "--crash",
    "warmup_max": "--warmup-max",
    "rounds": "--rounds",
}
#: What each kind of target depends on (what its rows are run with): a run that differs
#: from `DEFINED_AT` in one of these, or any ``--quick`` run, does not judge it.
RATE_TARGET = ("workers", "seconds", "crash", "warmup_max", "rounds")
SCENARIO_TARGET = ("workers",)  # memory, storm, snapshot, summary: N only
WINDOWED_TARGET = ("workers", "seconds")  # isolated crash, heartbeats
INTROSPECTION_TARGET = ("workers", "seconds", "crash", "warmup_max")  # run once, any rounds
SCALING_TARGET = ("seconds", "crash", "warmup_max")  # its own sizes and runs, any --workers


# ---------------------------------------------------------------------- child side


def run_row(args: argparse.Namespace) -> dict[str, Any]:
    """Run one row in this process (the child side of ``--row``)."""
    import _baselines
    import _greenkeep_rows

    n, crash, warm, secs = args.workers, args.crash, args.warmup_max, args.seconds
    name = args.row
    rows: dict[str, Callable[[], dict[str, Any]]] = {
        "greenkeep-fresh": lambda: _greenkeep_rows.rate(n, crash, warm, secs, "fresh", "filtered"),
        "greenkeep-fresh-budget": lambda: _greenkeep_rows.rate(
            n, crash, warm, secs, "fresh", "filtered", budget=True
        ),
        "greenkeep-reuse": lambda: _greenkeep_rows.rate(n, crash, warm, secs, "reuse", "filtered"),
        "greenkeep-reuse-budget": lambda: _greenkeep_rows.rate(
            n, crash, warm, secs, "reuse", "filtered", budget=True
        ),
        "greenkeep-json": lambda: _greenkeep_rows.rate(n, crash, warm, secs, DEFAULT_MODE, "json"),
        "greenkeep-json-nosummaries": lambda: _greenkeep_rows.rate(
            n, crash, warm, secs, DEFAULT_MODE, "json-nosummaries"
        ),
        "naive": lambda: _baselines.naive_rate(n, crash, warm, secs),
        "asyncio": lambda: _baselines.asyncio_rate(n, crash, warm, secs),
        "limit": lambda: _baselines.limit_rate(n, crash, warm, secs),
        "fresh-limit": lambda: _baselines.fresh_limit_rate(n, crash, warm, secs, args.variant),
        "memory-greenkeep": lambda: _greenkeep_rows.memory(n),
        "memory-bare": lambda: _baselines.bare_memory(n),
        "memory-asyncio": lambda: _baselines.asyncio_memory(n),
        "isolated-greenkeep": lambda: _greenkeep_rows.isolated(n, ISOLATED_INTERVAL, secs),
        "isolated-naive": lambda: _baselines.naive_isolated(n, ISOLATED_INTERVAL, secs),
        "storm-greenkeep": lambda: _greenkeep_rows.storm(n, STORM_ROUNDS, 60.0),
        "storm-limit": lambda: _baselines.limit_storm(n, STORM_ROUNDS, 60.0),
        "storm-greenkeep-reuse": lambda: _greenkeep_rows.storm(n, STORM_ROUNDS, 60.0, "reuse"),
        "storm-fresh-limit": lambda: _baselines.fresh_limit_storm(
            n, STORM_ROUNDS, 60.0, args.variant
        ),
        "snapshot": lambda: _greenkeep_rows.snapshot(n),
        "summary": lambda: _greenkeep_rows.summary(n),
        "introspection": lambda: _greenkeep_rows.introspection(
            n, crash, warm, secs, min(INTROSPECTION_OVERRUN, 5 * secs)
        ),
        "heartbeat": lambda: _greenkeep_rows.heartbeat(
            n,
            HEARTBEAT_PHASE_S,
            HEARTBEAT_PAIRS if secs >= 1 else 4,
        ),
    }
    result = rows[name]()
    result.setdefault("status", "ok")
    result.update(row=name, workers=n, crash=crash)
    return result


# ---------------------------------------------------------------------- parent side


class Runner:
    """Runs children one after another and shows progress on stderr."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total = total
        self.done = 0
        self.quiet = quiet
        self.started = time.perf_counter()

    def run(self, row: str, label: str, argv: list[str], timeout: float) -> dict[str, Any]:
        self.done += 1
        if not self.quiet:
            sys.stderr.write(f"[{self.done:2d}/{self.total}] {label:<44}")
            sys.stderr.flush()
        t = time.perf_counter()
        result = run_child(SCRIPT, ["--row", row, *argv], timeout)
        result.setdefault("row", row)
        result["wall_s"] = time.perf_counter() - t
        if not self.quiet:
            sys.stderr.write(f"{_progress_summary(result):>28}  ({result['wall_s']:.1f} s)\n")
        return result

    def skip(self, label: str, like: dict[str, Any]) -> None:
        self.done += 1
        if not self.quiet:
            status = like.get("status", "")
            sys.stderr.write(f"[{self.done:2d}/{self.total}] {label:<44}{status:>28}  (skipped)\n")


def _progress_summary(r: dict[str, Any]) -> str:
    if r.get("status") != "ok":
        return str(r.get("status", "error"))
    if "polled_ratio" in r:
        return f"polled {_fmt(r['polled_ratio'], '.2f', 0)}x unpolled"
    if r["row"].startswith("isolated"):
        return f"p99 {r['p99_us']:,.1f} us"
    if "bytes_per_worker" in r:
        return f"{r['bytes_per_worker'] / 1024:.1f} KiB/worker"
    if "max_stall_ms" in r:
        return f"stall {r['max_stall_ms']:.1f} ms"
    if "overhead" in r:
        return f"{r['overhead'] * 100:.2f}% of a core"
    if "snapshot_s" in r:
        return f"{r['snapshot_s'] * 1000:.1f} ms"
    if "summary_ratio" in r:
        return f"{_fmt(r['summary_ratio'], '.3f', 0)}x, {r['summary_bytes']:,} bytes"
    return f"{r['rate']:,.0f} restarts/s"


def _child_argv(workers: int, args: argparse.Namespace, seconds: float | None = None) -> list[str]:
    return [
        "--workers",
        str(workers),
        "--crash",
        args.crash,
        "--seconds",
        str(args.seconds if seconds is None else seconds),
        "--warmup-max",
        str(args.warmup_max),
    ]


def main_parent(args: argparse.Namespace) -> int:
    n = args.workers
    jobs = len(RATE_ROWS) * args.rounds + len(SCENARIOS)
    if args.scaling:
        jobs += len(SCALING_SIZES) * SCALING_RUNS * 4
    runner = Runner(jobs, args.no_progress)
    timeout = 120.0 + args.warmup_max + args.seconds
    if not args.no_progress:
        print(
            f"restart_rate: {n:,} workers, crash {args.crash}, {args.seconds:g} s window per row"
            + (f", {args.rounds} rounds" if args.rounds > 1 else "")
            + (" (--quick: targets not judged)" if args.quick else ""),
            file=sys.stderr,
        )
    runs: dict[str, list[dict[str, Any]]] = {row.name: [] for row in RATE_ROWS}
    for i in range(args.rounds):
        # Every other round in reverse order, so that a slow drift of the machine's speed
        # affects the rows alike.
        for row in RATE_ROWS if i % 2 == 0 else RATE_ROWS[::-1]:
            done = runs[row.name]
            label = row.label if args.rounds == 1 else f"{row.label} #{i + 1}"
            if done and done[-1].get("status") == "unavailable":
                runner.skip(label, done[-1])
                continue
            done.append(runner.run(row.name, label, _child_argv(n, args), timeout))
    rows = {name: _median_run(done) for name, done in runs.items()}
    scenarios: dict[str, dict[str, Any]] = {}
    for name, label in SCENARIOS:
        # The isolated crash gathers ~1,000 samples a second: give its p99 a longer window.
        secs = ISOLATED_WINDOWS * args.seconds if name.startswith("isolated") else None
        scenarios[name] = runner.run(name, label, _child_argv(n, args, secs), timeout)
    scaling = run_scaling(runner, args) if args.scaling else None
    total = time.perf_counter() - runner.started

    info = run_info()
    out = Report(args, rows, scenarios, scaling, info)
    print(out.table())
    checks = out.checks()
    config = run_config(args)
    print()
    print("\n".join(target_lines(checks, config)))
    if not args.no_progress:
        print(f"total time {total:.1f} s", file=sys.stderr)
    if args.json:
        doc = {
            "config": config,
            "defined_at": DEFINED_AT,
            "reduced_by": reduced_by(config, tuple(DEFINED_AT)),
            "versions": info["versions"],
            "machine": info["machine"],
            "rows": rows,
            "budget_ratios": out.budget_ratios(),
            "scenarios": scenarios,
            "scaling": scaling,
            "checks": checks,
            "total_s": total,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    errors = [r for r in [*rows.values(), *scenarios.values()] if r.get("status") == "error"]
    return exit_status(checks, errored=bool(errors), check=args.check)


def run_scaling(runner: Runner, args: argparse.Namespace) -> dict[str, Any]:
    sizes = (100, 300, 1_000) if args.quick else SCALING_SIZES
    runs = 1 if args.quick else SCALING_RUNS
    timeout = 300.0 + args.warmup_max + args.seconds
    out: dict[str, Any] = {"sizes": list(sizes), "runs": runs, "modes": {}}
    raw: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for size in sizes:
        for i in range(runs):  # interleaved: greenkeep, its limit, greenkeep, ...
            for _mode, gk_row, limit_row in SCALING_PAIRS:
                for row in (gk_row, limit_row):
                    results = raw.setdefault((row, size), [])
                    label = f"scaling {size:,}: {row} #{i + 1}"
                    if results and results[-1].get("status") == "unavailable":
                        runner.skip(label, results[-1])
                        continue
                    results.append(runner.run(row, label, _child_argv(size, args), timeout))
    for mode, gk_row, limit_row in SCALING_PAIRS:
        per_size = {}
        for size in sizes:
            gk = _median_rate(raw[(gk_row, size)])
            lim = _median_rate(raw[(limit_row, size)])
            per_size[str(size)] = {
                "greenkeep_rate": gk,
                "limit_rate": lim,
                "ratio_to_limit": gk / lim if gk and lim else None,
                "runs": {gk_row: raw[(gk_row, size)], limit_row: raw[(limit_row, size)]},
            }
        out["modes"][mode] = per_size
    return out


def _median_rate(results: list[dict[str, Any]]) -> float | None:
    rates = [r["rate"] for r in results if r.get("status") == "ok"]
    return statistics.median(rates) if rates else None


#: The numbers of a rate row that are reported as the median over rounds.
_MEDIAN_FIELDS = ("rate", "p50_us", "p99_us", "peak_rss_bytes")


def _median_run(results: list[dict[str, Any]]) -> dict[str, Any]:
    """
    One rate row over its rounds: each of `_MEDIAN_FIELDS` is the median over the rounds
    that succeeded (the mean of the middle two for an even count), every run is kept under
    ``runs``; the first result if none succeeded.
    """
    ok = [r for r in results if r.get("status") == "ok"]
    if not ok:
        return results[0]
    if len(results) == 1:
        return ok[0]
    merged = dict(ok[0], runs=results)
    for key in _MEDIAN_FIELDS:
        values = [r[key] for r in ok if r.get(key) is not None]
        merged[key] = statistics.median(values) if values else None
    return merged


# ---------------------------------------------------------------------- targets


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The options that decide what the run measures (the JSON's ``config``)."""
    return {
        "workers": args.workers,
        "crash": args.crash,
        "seconds": args.seconds,
        "warmup_max": args.warmup_max,
        "quick": args.quick,
        "rounds": args.rounds,
        "scaling": args.scaling,
        "check": args.check,
        "default_mode": DEFAULT_MODE,
    }


def reduced_by(config: dict[str, Any], depends_on: tuple[str, ...]) -> list[str]:
    """
    Why a target that depends on *depends_on* (keys of `DEFINED_AT`) is not judged in a run
    with *config*: ``["--quick"]`` for a quick run, else each option whose value differs
    from `DEFINED_AT` (fewer rounds than it, for ``rounds``) as ``"--workers 1000"``; an
    empty list when the target applies.
    """
    if config.get("quick"):
        return ["--quick"]
    out = []
    for key in depends_on:
        value, defined = config[key], DEFINED_AT[key]
        if value == defined or (key == "rounds" and value >= defined):
            continue
        out.append(_option(key, value))
    return out


def judge(
    value: float | None,
    bound: float,
    *,
    at_most: bool = False,
    reduced: list[str] | tuple[str, ...] = (),
) -> str:
    """
    One target's verdict: ``"N/A"`` if it was not measured (*value* ``None``) or the run is
    not the one it is defined at (*reduced*, from `reduced_by`, not empty); else ``"PASS"``
    if *value* is at least *bound* (at most, with *at_most*), ``"FAIL"`` if not.
    """
    if value is None or reduced:
        return "N/A"
    return "PASS" if (value <= bound if at_most else value >= bound) else "FAIL"


def verdict_label(check: dict[str, Any]) -> str:
    """``PASS``, ``FAIL``, ``N/A``, or ``N/A (--quick)`` for a target a reduced run measured
    but does not judge."""
    reduced = check.get("reduced_by") or []
    return f"{check['status']} ({' '.join(reduced)})" if reduced else str(check["status"])


def _option(key: str, value: Any) -> str:
    """``--seconds 0.5``: the option and its value (a float as short as it stays exact)."""
    shown = str(value)
    if isinstance(value, float) and float(f"{value:g}") == value:
        shown = f"{value:g}"
    return f"{OPTION_OF[key]} {shown}"


def defined_at_text() -> str:
    """`DEFINED_AT` as options (``--warmup-max``, an internal option, left out)."""
    exact = " ".join(
        _option(k, v) for k, v in DEFINED_AT.items() if k not in ("warmup_max", "rounds")
    )
    return f"{exact}, {OPTION_OF['rounds']} {DEFINED_AT['rounds']} or more"


def target_lines(checks: list[dict[str, Any]], config: dict[str, Any]) -> list[str]:
    """What the run prints about the targets: where they are defined, whether this run is
    there, one line per target, and the counts."""
    lines = [f"Targets, defined at the default run ({defined_at_text()}):"]
    differs = reduced_by(config, tuple(DEFINED_AT))
    if config.get("quick"):
        lines.append("  this is a --quick run: every target is measured but not judged (N/A)")
    elif differs:
        lines.append(
            f"  this run differs ({' '.join(differs)}): the targets that depend on it are "
            "measured but not judged (N/A)"
        )
    else:
        lines.append("  this run is at that configuration: every target it measured is judged")
    width = max([4, *(len(verdict_label(c)) for c in checks)])
    lines += [f"{verdict_label(c):<{width}}  {c['target']}: {c['detail']}" for c in checks]
    counts = {s: sum(1 for c in checks if c["status"] == s) for s in ("PASS", "FAIL", "N/A")}
    unjudged = sum(1 for c in checks if c["reduced_by"])
    why = []
    if unjudged:
        why.append(f"{unjudged} not judged at {' '.join(differs)}")
    if counts["N/A"] > unjudged:
        why.append(f"{counts['N/A'] - unjudged} not measured")
    lines.append(
        f"targets: PASS {counts['PASS']}, FAIL {counts['FAIL']}, N/A {counts['N/A']}"
        + (f" ({', '.join(why)})" if why else "")
    )
    return lines


def exit_status(checks: list[dict[str, Any]], *, errored: bool, check: bool) -> int:
    """
    The run's exit status: 1 if a row or scenario could not run (*errored*), or, with
    ``--check`` (*check*), if a target that applies failed (a ``FAIL``; an ``N/A``, whether
    not judged in a reduced run or not measured, never fails it); 0 otherwise.
    """
    if errored or (check and any(c["status"] == "FAIL" for c in checks)):
        return 1
    return 0


# ---------------------------------------------------------------------- report


def run_info() -> dict[str, Any]:
    """
    What this run ran with: ``versions`` (Python and its implementation, gevent, greenlet,
    structlog, greenkeep: those of this interpreter, which runs every child too) and
    ``machine`` (the CPU model from ``/proc/cpuinfo`` where there is one, the logical CPU
    count, the platform string, the OS and kernel release, the architecture, gevent's loop).
    The table's header and the JSON output carry the same.
    """
    machine = machine_info()
    machine.update(os=f"{platform.system()} {platform.release()}", arch=platform.machine())
    return {"versions": versions(), "machine": machine}


def header_lines(info: dict[str, Any]) -> list[str]:
    """The table's header lines that name the versions and the machine."""
    v, m = info["versions"], info["machine"]
    return [
        f"Versions: {v['python']}; gevent {v['gevent']}, greenlet {v['greenlet']}, "
        f"structlog {v['structlog']}; greenkeep {v['greenkeep']}",
        f"Machine: {m['cpu']}; {m['cpus']} logical CPUs; {m['os']} ({m['arch']}); "
        f"gevent loop {m['gevent_loop']}",
    ]


def _ok(r: dict[str, Any] | None) -> bool:
    return r is not None and r.get("status") == "ok"


def _fmt(x: float | None, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if x is None else f"{x:{spec}}".rjust(width)


def _us(x: float | None, width: int) -> str:
    """Microseconds: one decimal below 100, whole numbers with separators above."""
    return _fmt(x, ".1f" if x is not None and x < 100 else ",.0f", width)


#: Which idle-memory measurement stands for each rate row (greenkeep rows: greenkeep's).
_MEMORY_OF = {
    "naive": "memory-bare",
    "asyncio": "memory-asyncio",
    "limit": "memory-bare",
    "fresh-limit": "memory-bare",
}


class Report:
    def __init__(
        self,
        args: argparse.Namespace,
        rows: dict[str, dict[str, Any]],
        scenarios: dict[str, dict[str, Any]],
        scaling: dict[str, Any] | None,
        info: dict[str, Any],
    ) -> None:
        self.args = args
        self.rows = rows
        self.scenarios = scenarios
        self.scaling = scaling
        #: ``versions`` and ``machine`` (see `run_info`); the table's header names them.
        self.info = info

    def rate(self, name: str) -> float | None:
        r = self.rows.get(name)
        return r["rate"] if _ok(r) and r["rate"] > 0 else None

    def ratio(self, a: str, b: str | None) -> float | None:
        if b is None:
            return None
        ra, rb = self.rate(a), self.rate(b)
        return ra / rb if ra is not None and rb is not None else None

    def mem(self, name: str) -> float | None:
        r = self.scenarios.get(name)
        return r["bytes_per_worker"] if _ok(r) else None

    def table(self) -> str:
        a = self.args
        lines = [
            f"Restart rate: {a.workers:,} workers crashing ({a.crash}), "
            f"{a.seconds:g} s window, each row in its own process",
            *header_lines(self.info),
            "",
            f"{'row':<40}{'restarts/s':>11}{'x naive':>9}{'x asyncio':>10}{'x limit':>9}"
            f"{'p50 us':>11}{'p99 us':>11}{'peak RSS':>10}{'idle/worker':>13}",
        ]
        for row in RATE_ROWS:
            r = self.rows[row.name]
            if not _ok(r):
                why = r.get("note") or r.get("error") or ""
                lines.append(f"{row.label:<40}{r.get('status', 'error'):>11}  {why}")
                continue
            mem = self.mem(_MEMORY_OF.get(row.name, "memory-greenkeep"))
            lines.append(
                f"{row.label:<40}{r['rate']:>11,.0f}"
                f"{_fmt(self.ratio(row.name, 'naive'), '.2f', 9)}"
                f"{_fmt(self.ratio(row.name, 'asyncio'), '.2f', 10)}"
                f"{_fmt(self.ratio(row.name, row.limit), '.2f', 9)}"
                f"{_us(r['p50_us'], 11)}{_us(r['p99_us'], 11)}"
                f"{r['peak_rss_bytes'] / 2**20:>6.0f} MiB"
                f"{_fmt(None if mem is None else mem / 1024, '.1f', 9)} KiB"
            )
        lines += ["", self.budget_line()]
        notes = []
        for row in RATE_ROWS:
            r = self.rows[row.name]
            if _ok(r) and r.get("note"):
                notes.append(f"  {row.label}: {r['note']}")
        for name, r in [*self.rows.items(), *self.scenarios.items(), *self.scaling_runs()]:
            if _ok(r) and r.get("stop_note"):
                notes.append(f"  {name}: WorkerPool.{r['stop_note']}")
        notes += [
            "  x limit: fresh rows and naive against the fresh limit, reuse rows against the limit.",
            "  Latency: from the raise to the next incarnation's first line; in a crash loop",
            "  that includes a full round of all the other workers.",
        ]
        lines += ["", "Notes:", *notes, "", *self.scenario_lines()]
        if self.scaling:
            lines += ["", *self.scaling_lines()]
        return "\n".join(lines)

    def budget_ratios(self) -> dict[str, dict[str, Any]]:
        """
        Per restart mode: the budget row's restarts/s over its UNLIMITED row's (the medians),
        and the same ratio round by round (the two rows run next to each other in every
        round).
        """
        out: dict[str, dict[str, Any]] = {}
        for mode, budget, unlimited in BUDGET_PAIRS:
            b_runs = self.rows[budget].get("runs", [self.rows[budget]])
            u_runs = self.rows[unlimited].get("runs", [self.rows[unlimited]])
            rounds = [
                b["rate"] / u["rate"] if _ok(b) and _ok(u) and u["rate"] > 0 else None
                for b, u in zip(b_runs, u_runs, strict=False)
            ]
            out[mode] = {"ratio": self.ratio(budget, unlimited), "rounds": rounds}
        return out

    def budget_line(self) -> str:
        cells = []
        for mode, r in self.budget_ratios().items():
            cell = f"{mode} {_fmt(r['ratio'], '.3f', 0)}x"
            if len(r["rounds"]) > 1:
                cell += " (rounds: " + ", ".join(_fmt(x, ".3f", 0) for x in r["rounds"]) + ")"
            cells.append(cell)
        return (
            f"Budget (max_restarts={BUDGET:,}, never reached) / UNLIMITED, restarts/s: "
            + "; ".join(cells)
            + f"  [targets below: >= {BUDGET_MIN:g}x]"
        )

    def scaling_runs(self) -> list[tuple[str, dict[str, Any]]]:
        """Every run of the scaling scenario, labelled."""
        if not self.scaling:
            return []
        out = []
        for per_size in self.scaling["modes"].values():
            for size, p in per_size.items():
                for row, results in p["runs"].items():
                    for i, r in enumerate(results):
                        out.append((f"scaling {int(size):,} {row} #{i + 1}", r))
        return out

    def scenario_lines(self) -> list[str]:
        s = self.scenarios
        n = self.args.workers
        lines = [f"Memory per idle worker ({n:,} workers blocked on one Event; RSS delta / N)"]
        bare = self.mem("memory-bare")
        for name, label in (
            ("memory-greenkeep", "greenkeep supervised worker"),
            ("memory-bare", "bare gevent greenlet (gevent.spawn)"),
            ("memory-asyncio", "asyncio task"),
        ):
            m = self.mem(name)
            if m is None:
                lines.append(f"  {label:<40}{s[name].get('status', 'error')}")
                continue
            rel = f"   {m / bare:.2f}x bare greenlet" if bare else ""
            lines.append(f"  {label:<40}{m / 1024:>8.2f} KiB{rel}")
        lines += [
            "",
            f"Isolated crash (1 of {n:,} workers crashes every "
            f"{ISOLATED_INTERVAL * 1000:g} ms, the rest idle)",
        ]
        for name, label in (("isolated-greenkeep", "greenkeep"), ("isolated-naive", "naive")):
            r = s[name]
            if not _ok(r):
                lines.append(f"  {label:<12}{r.get('status', 'error')}  {r.get('error', '')}")
                continue
            lines.append(
                f"  {label:<12}p50 {_us(r['p50_us'], 7)} us   p99 "
                f"{_us(r['p99_us'], 7)} us   ({r['samples']:,} crashes)"
            )
        lines += [
            "",
            f"Storm (all {n:,} workers crash at one instant; a ticker greenlet ticks every 1 ms)",
        ]
        for name, label in STORM_LINES:
            r = s[name]
            if not _ok(r):
                lines.append(f"  {label:<18}{r.get('status', 'error')}  {r.get('error', '')}")
                continue
            back = (
                f"all {r['back']:,} running again after {r['all_back_ms']:.1f} ms"
                if r["all_back"]
                else f"only {r['back']:,} running again"
            )
            lines.append(
                f"  {label:<18}{back};  longest ticker interval {r['max_stall_ms']:.1f} ms"
                f" (idle: {_fmt(r['idle_max_tick_gap_ms'], '.1f', 0)} ms)"
            )
        snap = s.get("snapshot")
        lines += ["", f"Snapshot (a supervisor over a pool of {n:,} idle workers)"]
        if _ok(snap):
            lines.append(
                f"  snapshot() {snap['snapshot_s'] * 1000:.1f} ms of hub time "
                f"({snap['snapshot_s'] * 100:.2f}% of a second); json.dumps of it "
                f"{snap['json_s'] * 1000:.1f} ms"
            )
        else:
            lines.append(f"  {snap.get('status', 'error') if snap else 'not run'}")
        summ = s.get("summary")
        lines += [
            "",
            f"Status API summary (GET /api/v1/tree over a pool of {n:,} idle workers; "
            "CPU time of the hub thread, same process)",
        ]
        if _ok(summ):
            lines.append(
                f"  summary {summ['summary_s'] * 1000:.2f} ms, {summ['summary_bytes']:,} bytes;"
                f" snapshot() + json.dumps {summ['snapshot_json_s'] * 1000:.1f} ms;"
                f" ratio {_fmt(summ['summary_ratio'], '.3f', 0)}"
            )
        else:
            lines.append(f"  {summ.get('status', 'error') if summ else 'not run'}")
        hb = s.get("heartbeat")
        lines += [
            "",
            f"Heartbeats ({n:,} otherwise idle workers waking every 100 ms; deadline 1 s; "
            "windows with and without beats alternate, the same workers)",
        ]
        if _ok(hb):
            lines += [
                f"  a wake-up without a beat {hb['wakeup_off_s'] * 1e6:.2f} us of CPU; a beat "
                f"adds {hb['beat_s'] * 1e9:.0f} ns +- {hb['beat_se_s'] * 1e9:.0f} ns (standard "
                f"error; median {hb['beat_median_s'] * 1e9:.0f} ns; {hb['pairs']} pairs of "
                f"{hb['phase_s'] * 1000:.0f} ms windows)",
                f"  beats ({hb['beats_per_s']:,.0f}/s) {hb['beat_share'] * 100:.2f}% +- "
                f"{hb['beat_share_se'] * 100:.2f}% of a core, deadline ticks "
                f"{hb['tick_share'] * 100:.2f}%: together {hb['overhead'] * 100:.2f}% of a core; "
                f"restarts: {hb['missed']}",
            ]
        else:
            lines.append(f"  {hb.get('status', 'error') if hb else 'not run'}")
        lines += ["", *self.introspection_lines()]
        return lines

    def introspection_lines(self) -> list[str]:
        r = self.scenarios.get("introspection")
        lines = [
            f"Introspection under polling ({self.args.workers:,} workers crashing in a loop, "
            "fresh, filtered, UNLIMITED; one process: a window unpolled, then one polled)"
        ]
        if not _ok(r):
            why = (r or {}).get("error", "")
            lines.append(f"  {r.get('status', 'error') if r else 'not run'}  {why}")
            return lines
        assert r is not None
        lines += [
            f"  unpolled {r['unpolled_rate']:>11,.0f} restarts/s;  main greenlet's longest "
            f"stretch {r['unpolled_max_stretch_ms']:,.1f} ms",
            f"  polled   {r['polled_rate']:>11,.0f} restarts/s = "
            f"{_fmt(r['polled_ratio'], '.3f', 0)}x unpolled;  main greenlet's longest stretch "
            f"{r['polled_max_stretch_ms']:,.1f} ms",
            f"  {r['calls_per_s']:,.0f} introspection calls/s while polled "
            f"(which_children {r['which_children_calls']:,}, count_children "
            f"{r['count_children_calls']:,}, snapshot {r['snapshot_calls']:,} "
            f"in {r['polled_elapsed_s']:.2f} s)",
        ]
        if r.get("polled_cut"):
            lines.append(f"  {r['cut_note']}")
        return lines

    def scaling_lines(self) -> list[str]:
        sc = self.scaling
        assert sc is not None
        runs = f"median of {sc['runs']} runs" if sc["runs"] > 1 else "1 run"
        lines = [f"Scaling ({runs} each; greenkeep restarts/s / its limit's = ratio)"]
        head = f"  {'mode':<8}" + "".join(f"{f'{size:,} workers':>30}" for size in sc["sizes"])
        lines.append(head)
        for mode, per in sc["modes"].items():
            cells = []
            for size in sc["sizes"]:
                p = per[str(size)]
                if p["ratio_to_limit"] is None:
                    cells.append(f"{'unavailable':>30}")
                else:
                    cells.append(
                        f"{p['greenkeep_rate']:>12,.0f} / {p['limit_rate']:>10,.0f} = "
                        f"{p['ratio_to_limit']:.2f}"
                    )
            lines.append(f"  {mode:<8}" + "".join(c.rjust(30) for c in cells))
        return lines

    # ------------------------------------------------------------------ targets

    def checks(self) -> list[dict[str, Any]]:
        """
        One dict per target: ``target``, ``status`` (`judge`), ``reduced_by`` (`reduced_by`:
        why a measured target is not judged), ``detail``, and ``value`` and ``bound`` when it
        was measured (a reduced run shows what it measured, unjudged).
        """
        out: list[dict[str, Any]] = []
        config = run_config(self.args)

        def add(
            target: str,
            value: float | None,
            bound: float,
            detail: str,
            why: str,
            depends_on: tuple[str, ...],
            at_most: bool = False,
        ) -> None:
            reduced = reduced_by(config, depends_on)
            check: dict[str, Any] = {
                "target": target,
                "status": judge(value, bound, at_most=at_most, reduced=reduced),
                "reduced_by": reduced,
            }
            if value is None:
                check["detail"] = why
            else:
                check.update(
                    value=value, bound=bound, detail=detail.format(value=value, bound=bound)
                )
            out.append(check)

        def why(*names: str) -> str:
            bad = []
            for name in names:
                r = self.rows.get(name) or self.scenarios.get(name) or {}
                if not _ok(r):
                    bad.append(
                        f"{name} {r.get('status', 'missing')}: {r.get('note') or r.get('error', '')}"
                    )
            return "; ".join(bad) or "not measured"

        add(
            "fresh filtered >= 2.5x naive",
            self.ratio("greenkeep-fresh", "naive"),
            2.5,
            "{value:.2f}x naive",
            why("greenkeep-fresh", "naive"),
            RATE_TARGET,
        )
        add(
            "reuse filtered >= 1.5x asyncio",
            self.ratio("greenkeep-reuse", "asyncio"),
            1.5,
            "{value:.2f}x asyncio",
            why("greenkeep-reuse", "asyncio"),
            RATE_TARGET,
        )
        for row, limit, least in LIMIT_TARGETS:
            add(
                f"{row.removeprefix('greenkeep-')} filtered >= {least:g}x {limit}",
                self.ratio(row, limit),
                least,
                "{value:.2f}x " + limit,
                why(row, limit),
                RATE_TARGET,
            )
        for mode, r in self.budget_ratios().items():
            add(
                f"{mode} with a budget never reached >= {BUDGET_MIN:g}x UNLIMITED",
                r["ratio"],
                BUDGET_MIN,
                "{value:.3f}x UNLIMITED",
                why(f"greenkeep-{mode}-budget", f"greenkeep-{mode}"),
                RATE_TARGET,
            )
        add(
            f"default-mode ({DEFAULT_MODE}) JSON >= 0.5x its filtered rate",
            self.ratio("greenkeep-json", f"greenkeep-{DEFAULT_MODE}"),
            0.5,
            "{value:.2f}x filtered",
            why("greenkeep-json", f"greenkeep-{DEFAULT_MODE}"),
            RATE_TARGET,
        )
        if self.scaling is None:
            for mode, _, _ in SCALING_PAIRS:
                add(
                    f"scaling {mode}: ratio to limit at 100k >= 0.8x that at 1k",
                    None,
                    0.8,
                    "",
                    "run with --scaling",
                    SCALING_TARGET,
                )
        else:
            sizes = self.scaling["sizes"]
            lo, hi = str(sizes[0]), str(sizes[-1])
            for mode, gk_row, _ in SCALING_PAIRS:
                per = self.scaling["modes"][mode]
                a, b = per[lo]["ratio_to_limit"], per[hi]["ratio_to_limit"]
                add(
                    f"scaling {mode}: ratio to limit at {int(hi):,} >= 0.8x that at {int(lo):,}",
                    b / a if a and b is not None else None,
                    0.8,
                    f"{{value:.2f}} ({b if b is None else round(b, 3)} vs "
                    f"{a if a is None else round(a, 3)})",
                    f"{gk_row} unavailable or failed at some size",
                    SCALING_TARGET,
                )
        gk_mem, bare = self.mem("memory-greenkeep"), self.mem("memory-bare")
        add(
            "memory per idle supervised worker <= 1.15x bare greenlet",
            gk_mem / bare if gk_mem is not None and bare else None,
            1.15,
            "{value:.2f}x bare",
            why("memory-greenkeep", "memory-bare"),
            SCENARIO_TARGET,
            at_most=True,
        )
        gi, ni = self.scenarios.get("isolated-greenkeep"), self.scenarios.get("isolated-naive")
        add(
            "isolated crash: greenkeep p99 <= 0.5x naive p99",
            gi["p99_us"] / ni["p99_us"]
            if _ok(gi) and _ok(ni) and gi["p99_us"] and ni["p99_us"]
            else None,
            0.5,
            "{value:.2f}x naive",
            why("isolated-greenkeep", "isolated-naive"),
            WINDOWED_TARGET,
            at_most=True,
        )
        sg, sl = self.scenarios.get("storm-greenkeep"), self.scenarios.get("storm-limit")
        add(
            "storm: all workers run again",
            (1.0 if sg["all_back"] else 0.0) if _ok(sg) else None,  # 1: all of them
            1.0,
            f"{sg['back']:,} of {self.args.workers:,} running again" if _ok(sg) else "",
            why("storm-greenkeep"),
            SCENARIO_TARGET,
        )
        add(
            "storm: greenkeep longest ticker stall <= 2x limit's",
            sg["max_stall_ms"] / sl["max_stall_ms"] if _ok(sg) and _ok(sl) else None,
            2.0,
            "{value:.2f}x limit",
            why("storm-greenkeep", "storm-limit"),
            SCENARIO_TARGET,
            at_most=True,
        )
        storm_metrics = (
            ("all_back_ms", "all running again", "'s time", STORM_BACK_MAX),
            ("max_stall_ms", "longest ticker stall", "'s", STORM_STALL_MAX),
        )
        for mode, ours, theirs, limit in STORM_PAIRS:
            g, b = self.scenarios.get(ours), self.scenarios.get(theirs)
            # (a storm whose workers did not all run again has no time until they did)
            measured = _ok(g) and _ok(b) and g["all_back"] and b["all_back"]
            for key, what, of, bound in storm_metrics:
                ok = measured if key == "all_back_ms" else _ok(g) and _ok(b)
                add(
                    f"storm {mode}: {what} <= {bound:g}x the {limit}{of}",
                    g[key] / b[key] if ok else None,
                    bound,
                    "{value:.2f}x "
                    + limit
                    + (f" ({g[key]:.1f} vs {b[key]:.1f} ms)" if ok else ""),
                    why(ours, theirs),
                    SCENARIO_TARGET,
                    at_most=True,
                )
        snap = self.scenarios.get("snapshot")
        add(
            "snapshot of a pool of N workers < 5% of a second of hub time",
            snap["snapshot_s"] * 100 if _ok(snap) else None,
            5.0,
            "{value:.2f}% of a second",
            why("snapshot"),
            SCENARIO_TARGET,
            at_most=True,
        )
        summ = self.scenarios.get("summary")
        add(
            "status API summary of a pool of N workers < 64 KB",
            summ["summary_bytes"] / 1024 if _ok(summ) else None,
            64.0,
            "{value:.1f} KB",
            why("summary"),
            SCENARIO_TARGET,
            at_most=True,
        )
        add(
            "status API summary <= 0.2x snapshot() + json.dumps (hub time)",
            summ["summary_ratio"] if _ok(summ) and summ["summary_ratio"] is not None else None,
            0.2,
            "{value:.3f}x"
            + (
                f" ({summ['summary_s'] * 1000:.2f} ms vs {summ['snapshot_json_s'] * 1000:.1f} ms)"
                if _ok(summ)
                else ""
            ),
            why("summary"),
            SCENARIO_TARGET,
            at_most=True,
        )
        hb = self.scenarios.get("heartbeat")
        add(
            "heartbeats: beats + deadline checks <= 2% of one core",
            hb["overhead"] * 100 if _ok(hb) else None,
            2.0,
            "{value:.2f}% of a core",
            why("heartbeat"),
            WINDOWED_TARGET,
            at_most=True,
        )
        add(
            f"heartbeats: beats + deadline checks <= {HEARTBEAT_MAX:g}% of one core",
            hb["overhead"] * 100 if _ok(hb) else None,
            HEARTBEAT_MAX,
            "{value:.2f}% of a core",
            why("heartbeat"),
            WINDOWED_TARGET,
            at_most=True,
        )
        ins = self.scenarios.get("introspection")
        add(
            "introspection: restart rate while polled >= 0.5x unpolled",
            ins["polled_ratio"] if _ok(ins) else None,
            0.5,
            "{value:.3f}x unpolled"
            + (
                f" ({ins['polled_rate']:,.0f} vs {ins['unpolled_rate']:,.0f} restarts/s)"
                if _ok(ins)
                else ""
            ),
            why("introspection"),
            INTROSPECTION_TARGET,
        )
        return out


# ---------------------------------------------------------------------- CLI


_EPILOG = f"""\
targets:
  The targets are defined at the default run:
    {defined_at_text()}.
  A run that differs in what a target depends on (--quick always; else --workers,
  --seconds, --crash or --rounds below 2, for the targets whose rows they change)
  prints that target's measured value but judges it "N/A (--quick)",
  "N/A (--workers 1000)", ... instead of PASS or FAIL.

exit status:
  0  every row and scenario ran (without --check, whatever the targets gave);
  1  a row or scenario could not run, or, with --check, a target that applies failed
     (N/A targets never fail it: a --quick --check run exits 0);
  2  bad arguments.
"""


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown, and the epilog as written."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Restart rate of greenkeep against baselines (see the module docstring).",
        epilog=_EPILOG,
        formatter_class=_HelpFormatter,
    )
    p.add_argument("--workers", type=int, default=DEFINED_AT["workers"], help="workers per row")
    p.add_argument(
        "--seconds",
        type=float,
        default=DEFINED_AT["seconds"],
        help="measurement window per row and round",
    )
    p.add_argument(
        "--crash",
        choices=("immediate", "yield"),
        default=DEFINED_AT["crash"],
        help="'yield': each incarnation yields once (sleep(0)) before raising",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=DEFINED_AT["rounds"],
        help="run the rate rows this many times (interleaved) and report each row's median",
    )
    p.add_argument("--scaling", action="store_true", help="add the 1k/10k/100k scaling runs")
    p.add_argument("--json", metavar="PATH", help="write every result as JSON to PATH")
    p.add_argument(
        "--quick",
        action="store_true",
        help="tiny smoke run (a few seconds): its targets are measured, not judged (N/A)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if a target that applies to this run fails (see the exit status below)",
    )
    p.add_argument("--versions", action="store_true", help="print the versions and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress lines on stderr")
    p.add_argument("--warmup-max", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--row", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.workers = min(args.workers, 200)
        args.seconds = min(args.seconds, 0.2)
        args.rounds = 1
    if args.warmup_max is None:
        args.warmup_max = 0.2 if args.quick else DEFINED_AT["warmup_max"]
    if args.workers < 2:
        p.error("--workers must be at least 2")
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    known = {row.name for row in RATE_ROWS} | {name for name, _ in SCENARIOS}
    if args.row is not None and args.row not in known:
        p.error(f"--row must be one of {', '.join(sorted(known))}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.versions:
        for key, value in versions().items():
            print(f"{key} {value}")
        return 0
    if args.row:
        emit_result(run_row(args))
        # Skip tearing down thousands of greenlets or tasks: the row is measured.
        sys.stderr.flush()
        os._exit(0)
    return main_parent(args)


if __name__ == "__main__":
    sys.exit(main())
