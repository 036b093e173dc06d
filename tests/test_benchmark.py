"""
The benchmark's quick run produces the documented output (shape only, never timings).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
import greenlet
import pytest
import structlog

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "restart_rate.py"


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    data: dict[str, Any]


def run_quick(tmp: Path, *flags: str) -> Run:
    """``restart_rate.py --quick --json PATH *flags`` in a fresh interpreter (this one)."""
    out = tmp / "bench.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out), *flags],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    data = json.loads(out.read_text()) if out.exists() else {}
    return Run(result.returncode, result.stdout, result.stderr, data)


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One ``--quick --json`` run, shared by the tests that read its output."""
    return run_quick(tmp_path_factory.mktemp("quick"))


@pytest.mark.slow
def test_quick_run_output_shape(quick: Run) -> None:
    """`restart_rate.py --quick --json` prints the table, the scenario sections and one
    PASS/FAIL/N/A line per target, and writes JSON with the versions and every row."""
    result, data = quick, quick.data

    assert 0 == result.returncode, result.stderr[-3000:]
    text = result.stdout
    assert re.search(r"^row\s+restarts/s\s+x naive\s+x asyncio\s+x limit", text, re.MULTILINE)
    for row in (
        "greenkeep fresh, filtered",
        "greenkeep fresh, filtered, budget",
        "greenkeep reuse, filtered",
        "greenkeep reuse, filtered, budget",
        "greenkeep fresh, JSON",
        "greenkeep fresh, JSON, no summaries",
        "naive (gevent.spawn + link_exception)",
        "asyncio (create_task + done-callback)",
        "limit (re-run in place)",
        "fresh limit (new raw greenlet)",
    ):
        assert re.search(rf"^{re.escape(row)}\s+[\d,]+\s", text, re.MULTILINE), row
    for section in (
        "Memory per idle worker",
        "Isolated crash",
        "Storm",
        "Snapshot",
        "Heartbeats",
        "Introspection under polling",
    ):
        assert section in text
    assert re.search(r"^Budget \(max_restarts=.*/ UNLIMITED.*fresh .*reuse ", text, re.MULTILINE)
    verdicts = re.findall(r"^(PASS|FAIL|N/A)\s{2}", text, re.MULTILINE)
    assert len(verdicts) == 12
    assert re.search(r"^(PASS|FAIL|N/A)\s{2}introspection: restart rate while polled", text, re.M)
    assert re.search(r"^targets: PASS \d+, FAIL \d+, N/A \d+$", text, re.MULTILINE)
    assert "[20/20]" in result.stderr  # progress on stderr
    assert {"python", "gevent", "greenlet", "structlog", "greenkeep"} <= set(data["versions"])
    assert {
        "greenkeep-fresh",
        "greenkeep-fresh-budget",
        "greenkeep-reuse",
        "greenkeep-reuse-budget",
        "naive",
        "asyncio",
        "limit",
        "fresh-limit",
    } <= set(data["rows"])
    assert {
        "heartbeat",
        "snapshot",
        "storm-greenkeep",
        "isolated-greenkeep",
        "introspection",
    } <= set(data["scenarios"])
    assert {"unpolled_rate", "polled_rate", "polled_ratio", "calls_per_s"} <= set(
        data["scenarios"]["introspection"]
    )
    assert len(data["checks"]) == 12
    assert {"fresh", "reuse"} == set(data["budget_ratios"])


@pytest.mark.slow
def test_header_names_the_versions_and_the_machine(quick: Run) -> None:
    """Before the first row, the table names the Python (implementation and version),
    gevent, greenlet and structlog versions, the CPU count and the OS; the JSON the same."""
    assert 0 == quick.returncode, quick.stderr[-3000:]
    header = quick.stdout.split("\nrow ", 1)[0]
    for version in (
        platform.python_implementation(),
        platform.python_version(),
        gevent.__version__,
        greenlet.__version__,
        structlog.__version__,
        platform.system(),
        platform.release(),
    ):
        assert version in header, (version, header)
    assert f"{os.cpu_count()} logical CPUs" in header
    v, m = quick.data["versions"], quick.data["machine"]
    assert f"{platform.python_implementation()} {platform.python_version()}" == v["python"]
    assert (gevent.__version__, greenlet.__version__, structlog.__version__) == (
        v["gevent"],
        v["greenlet"],
        v["structlog"],
    )
    assert os.cpu_count() == m["cpus"]
    assert f"{platform.system()} {platform.release()}" == m["os"]
    assert m["cpu"] in header
