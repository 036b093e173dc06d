"""
ab: rows of ``restart_rate.py`` run alternately against two checkouts of greenkeep.

    uv run benchmarks/ab.py --baseline /path/to/other/checkout --pairs 8 \\
        [--rows greenkeep-fresh,greenkeep-reuse,isolated-greenkeep,storm-greenkeep] \\
        [--workers N --seconds S --crash immediate|yield] [--candidate PATH] [--json PATH]

The *candidate* is the checkout this file is in (or ``--candidate``), the *baseline* the
other one. Every row is ``restart_rate.py --row NAME`` from **this** checkout's
``benchmarks/`` (the rows use only greenkeep's public API, so the baseline's own benchmark
files, old or new, play no part), run in a fresh child process by the checkout's own
interpreter, ``<checkout>/.venv/bin/python``, with ``PYTHONPATH=<checkout>``. The child's
JSON line says which greenkeep it ran (the real path of its ``__init__.py``, and its
version): a child whose greenkeep is not the one under its checkout stops the run.

What is measured
================

Pairs: in pair *k* every row runs once for each side, the two runs of a row next to each
other, the candidate first in even pairs and the baseline first in odd ones (A-B, B-A,
A-B, ...), so that a drift of the machine's speed and the position within a pair fall on
both sides alike. The child's arguments are those of ``restart_rate.py`` for the row
(``--workers``, ``--seconds``, ``--crash``, ``--warmup-max``; the isolated crash gets twice
``--seconds`` as there).

For each row and metric: the candidate's value over the baseline's in each pair, and the
median of those ratios (the verdict's number), with each side's median value for context.
The metrics, and the bound the median must meet:

- rate rows: restarts/s, ``>= 0.95``;
- ``isolated-*``: latency p99, ``<= 1.05``;
- ``storm-*``: the time until every worker runs again and the longest ticker stall (each
  the median of the child's three storms), ``<= 1.05``;
- ``introspection``: restarts/s polled and unpolled, ``>= 0.95``;
- ``memory-*``: bytes per idle worker, ``snapshot``: its hub time, ``<= 1.05``.

The heartbeat scenario is not offered: its number is a difference close to zero, whose
ratio means nothing.

How far to trust a median: run it A/A first (``--baseline`` a checkout of the same commit)
at the size and pair count you mean to use. Measured so on this 2-core machine: with 2,000
workers and 0.5 s windows the rates' per-pair ratios stayed within about 0.9-1.05 but the
times' ranged from 0.5 to 1.9 (medians of 6 pairs up to 1.08); at the defaults (10,000
workers, 2 s) the storm times' per-pair ratios stayed within 0.9-1.03, while the isolated
crash's p99 (about 40 crashes above it per child) still ranged from 0.7 to 1.1. A 5% bound
on a time needs the default size and more pairs than a rate does.

Both sides' Python, gevent, greenlet and structlog versions are printed; if they differ,
the ratios measure that difference too (a warning says so). Never run it beside another
benchmark: the children of both sides share the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import restart_rate
from _harness import run_child

HERE = Path(__file__).resolve().parent
SCRIPT = str(HERE / "restart_rate.py")

DEFAULT_ROWS = ("greenkeep-fresh", "greenkeep-reuse", "isolated-greenkeep", "storm-greenkeep")
#: The bounds on the median ratio candidate / baseline.
RATE_BOUND = 0.95
TIME_BOUND = 1.05


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    #: True: more is better (bound RATE_BOUND, at least); False: less (TIME_BOUND, at most).
    higher: bool
    fmt: str = ",.0f"


def metrics_of(row: str) -> list[Metric]:
    """What ab compares for *row* (see the module docstring)."""
    if row in {r.name for r in restart_rate.RATE_ROWS}:
        return [Metric("rate", "restarts/s", True)]
    if row.startswith("isolated"):
        return [Metric("p99_us", "p99 us", False, ",.1f")]
    if row.startswith("storm"):
        return [
            Metric("all_back_ms", "all running again, ms", False, ",.2f"),
            Metric("max_stall_ms", "longest ticker stall, ms", False, ",.2f"),
        ]
    if row == "introspection":
        return [
            Metric("polled_rate", "restarts/s polled", True),
            Metric("unpolled_rate", "restarts/s unpolled", True),
        ]
    if row.startswith("memory"):
        return [Metric("bytes_per_worker", "bytes/idle worker", False)]
    if row == "snapshot":
        return [Metric("snapshot_s", "snapshot s", False, ".6f")]
    raise ValueError(row)


@dataclass(frozen=True)
class Side:
    name: str  # "candidate" or "baseline"
    checkout: Path
    python: str

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
        env["PYTHONPATH"] = str(self.checkout)
        env["VIRTUAL_ENV"] = str(Path(self.python).parent.parent)
        return env

    def owns(self, greenkeep_file: str | None) -> bool:
        """Whether *greenkeep_file* is this checkout's ``greenkeep/__init__.py``."""
        if not greenkeep_file:
            return False
        return Path(greenkeep_file).resolve() == (self.checkout / "greenkeep" / "__init__.py")


def side(name: str, checkout: str) -> Side:
    path = Path(checkout).resolve()
    python = path / ".venv" / "bin" / "python"
    if not (path / "greenkeep" / "__init__.py").is_file():
        sys.exit(f"ab: {name} {path} has no greenkeep/__init__.py")
    if not python.exists():
        sys.exit(f"ab: {name} {path} has no .venv/bin/python (run `uv sync` there)")
    return Side(name, path, str(python))


def side_versions(s: Side) -> dict[str, str]:
    """``restart_rate.py --versions`` as the side's children run it."""
    proc = subprocess.run(
        [s.python, SCRIPT, "--versions"],
        capture_output=True,
        text=True,
        env=s.env(),
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        sys.exit(f"ab: {s.name}: --versions failed: {proc.stderr.strip()[-500:]}")
    return dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)


def child_argv(row: str, args: argparse.Namespace) -> list[str]:
    seconds = args.seconds * (restart_rate.ISOLATED_WINDOWS if row.startswith("isolated") else 1)
    return [
        "--row",
        row,
        "--workers",
        str(args.workers),
        "--crash",
        args.crash,
        "--seconds",
        str(seconds),
        "--warmup-max",
        str(args.warmup_max),
    ]


def run_one(s: Side, row: str, args: argparse.Namespace) -> dict[str, Any]:
    timeout = 120.0 + args.warmup_max + 2 * args.seconds + restart_rate.INTROSPECTION_OVERRUN
    t = time.perf_counter()
    result = run_child(SCRIPT, child_argv(row, args), timeout, python=s.python, env=s.env())
    result["wall_s"] = time.perf_counter() - t
    result.setdefault("row", row)
    origin = result.get("greenkeep")
    if origin is None and result.get("status") == "ok":
        sys.exit(f"ab: the {s.name} child of {row} did not say which greenkeep it ran")
    if origin is not None and not s.owns(origin.get("file")):
        sys.exit(
            f"ab: the {s.name} child of {row} ran greenkeep from {origin.get('file')!r}, "
            f"not from {s.checkout}: stopping (the comparison would be a mix-up)"
        )
    return result


def ratio(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    if a.get("status") != "ok" or b.get("status") != "ok":
        return None
    x, y = a.get(key), b.get(key)
    if x is None or y is None or y <= 0 or x < 0:
        return None
    return x / y


def median_of(results: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in results if r.get("status") == "ok" and r.get(key) is not None]
    return statistics.median(values) if values else None


def _num(x: float | None, spec: str, width: int) -> str:
    return f"{'-':>{width}}" if x is None else f"{x:{spec}}".rjust(width)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description="A/B of restart_rate.py rows: this checkout's greenkeep against another's "
        "(see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--baseline", required=True, help="the other checkout (with its .venv)")
    p.add_argument("--candidate", default=str(HERE.parent), help="the candidate checkout")
    p.add_argument("--pairs", type=int, default=8, help="A-B pairs per row")
    p.add_argument("--rows", default=",".join(DEFAULT_ROWS), help="comma-separated rows")
    p.add_argument("--workers", type=int, default=10_000, help="workers per row")
    p.add_argument("--seconds", type=float, default=2.0, help="measurement window per row")
    p.add_argument("--crash", choices=("immediate", "yield"), default="immediate")
    p.add_argument("--warmup-max", type=float, default=5.0, help="longest warm-up per row")
    p.add_argument("--json", metavar="PATH", help="write every run and ratio as JSON to PATH")
    args = p.parse_args(argv)
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    known = [r.name for r in restart_rate.RATE_ROWS] + [n for n, _ in restart_rate.SCENARIOS]
    for row in rows:
        if row == "heartbeat":
            p.error("heartbeat: its number is a difference close to zero, not a ratio")
        if row not in known:
            p.error(f"unknown row {row!r}; one of {', '.join(known)}")
    if args.pairs < 1:
        p.error("--pairs must be at least 1")
    if args.workers < 2:
        p.error("--workers must be at least 2")

    cand, base = side("candidate", args.candidate), side("baseline", args.baseline)
    if cand.checkout == base.checkout:
        print("ab: warning: the candidate and the baseline are the same checkout", file=sys.stderr)
    vers = {s.name: side_versions(s) for s in (cand, base)}
    for s in (cand, base):
        print(
            f"{s.name:<9}  {s.checkout}  greenkeep {vers[s.name].get('greenkeep')}  "
            f"({s.python} -> {os.path.realpath(s.python)})"
        )
    differ = [
        f"{k} {vers['candidate'].get(k)} vs {vers['baseline'].get(k)}"
        for k in ("python", "gevent", "greenlet", "structlog")
        if vers["candidate"].get(k) != vers["baseline"].get(k)
    ]
    if differ:
        print(
            "WARNING: the sides' versions differ, the ratios measure that too: "
            + "; ".join(differ)
        )
    else:
        c = vers["candidate"]
        print(
            f"same versions on both sides: {c.get('python')}, gevent {c.get('gevent')}, "
            f"greenlet {c.get('greenlet')}, structlog {c.get('structlog')}"
        )
    print(
        f"{args.pairs} pairs x {len(rows)} rows, {args.workers:,} workers, {args.seconds:g} s "
        f"window, crash {args.crash}; per pair A-B then B-A (A = candidate)",
        flush=True,
    )

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        row: {"candidate": [], "baseline": []} for row in rows
    }
    total = 2 * args.pairs * len(rows)
    done = 0
    started = time.perf_counter()
    for k in range(args.pairs):
        order = (cand, base) if k % 2 == 0 else (base, cand)
        for row in rows:
            for s in order:
                done += 1
                r = run_one(s, row, args)
                runs[row][s.name].append(r)
                sys.stderr.write(
                    f"[{done:3d}/{total}] pair {k + 1} {row:<26}{s.name:<10}"
                    f"{restart_rate._progress_summary(r):>28}  ({r['wall_s']:.1f} s)\n"
                )

    sys.stderr.flush()
    print()
    head = (
        f"{'row':<24}{'metric':<26}{'candidate':>12}{'baseline':>12}  "
        f"{'median ratio':>12}  {'target':<16}per-pair ratios (candidate / baseline)"
    )
    print(head)
    table: list[dict[str, Any]] = []
    failures = 0
    for row in rows:
        for m in metrics_of(row):
            c_runs, b_runs = runs[row]["candidate"], runs[row]["baseline"]
            ratios = [ratio(c, b, m.key) for c, b in zip(c_runs, b_runs, strict=True)]
            valid = [x for x in ratios if x is not None]
            med = statistics.median(valid) if valid else None
            bound = RATE_BOUND if m.higher else TIME_BOUND
            target = f"{'>=' if m.higher else '<='} {bound:.2f}"
            if med is None:
                verdict = "N/A"
            else:
                meets = med >= bound if m.higher else med <= bound
                verdict = "meets" if meets else "MISSES"
                failures += not meets
            cells = " ".join(_num(x, ".3f", 5) for x in ratios)
            print(
                f"{row:<24}{m.label:<26}{_num(median_of(c_runs, m.key), m.fmt, 12)}"
                f"{_num(median_of(b_runs, m.key), m.fmt, 12)}  {_num(med, '.3f', 12)}  "
                f"{verdict + ' ' + target:<16}{cells}"
            )
            table.append(
                {
                    "row": row,
                    "metric": m.key,
                    "higher_is_better": m.higher,
                    "bound": bound,
                    "ratios": ratios,
                    "median_ratio": med,
                    "verdict": verdict,
                    "candidate_median": median_of(c_runs, m.key),
                    "baseline_median": median_of(b_runs, m.key),
                }
            )
    errors = [
        (row, name, r.get("error", r.get("status")))
        for row, per in runs.items()
        for name, results in per.items()
        for r in results
        if r.get("status") != "ok"
    ]
    for row, name, error in errors:
        print(f"  error: {row} {name}: {error}")
    print(
        f"\nmedian ratios: {len(table) - failures} of {len(table)} meet their bound "
        f"(rates >= {RATE_BOUND}, times <= {TIME_BOUND}); total "
        f"{time.perf_counter() - started:.1f} s"
    )
    if args.json:
        doc = {
            "config": {
                "pairs": args.pairs,
                "rows": rows,
                "workers": args.workers,
                "seconds": args.seconds,
                "crash": args.crash,
                "warmup_max": args.warmup_max,
            },
            "candidate": {"checkout": str(cand.checkout), "versions": vers["candidate"]},
            "baseline": {"checkout": str(base.checkout), "versions": vers["baseline"]},
            "table": table,
            "runs": runs,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
