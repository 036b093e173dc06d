"""The benchmark's quick run produces the documented output (shape only, never timings)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_quick_run_output_shape(tmp_path: Path) -> None:
    """`restart_rate.py --quick --json` prints the table, the scenario sections and one
    PASS/FAIL/N/A line per target, and writes JSON with the versions and every row."""
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "restart_rate.py"),
            "--quick",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )

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
    data = json.loads(out.read_text())
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
