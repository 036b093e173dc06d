"""
The benchmark's quick run produces the documented output (shape only, never timings).
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import gevent
import greenlet
import pytest
import structlog

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "restart_rate.py"
#: How many targets a full report judges (each listed once, whatever the run measured).
TARGETS = 23


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
        "Status API summary",
        "Heartbeats",
        "Introspection under polling",
    ):
        assert section in text
    assert re.search(r"^Budget \(max_restarts=.*/ UNLIMITED.*fresh .*reuse ", text, re.MULTILINE)
    verdict = r"^(?:PASS|FAIL|N/A)(?: \([^)\n]*\))?\s{2}"
    assert len(re.findall(verdict, text, re.MULTILINE)) == TARGETS
    assert re.search(verdict + "introspection: restart rate while polled", text, re.M)
    assert re.search(r"^Targets, defined at the default run \(--workers 10000 ", text, re.M)
    assert re.search(r"^targets: PASS \d+, FAIL \d+, N/A \d+( \(.*\))?$", text, re.MULTILINE)
    assert "[23/23]" in result.stderr  # progress on stderr
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
        "summary",
        "storm-greenkeep",
        "isolated-greenkeep",
        "introspection",
    } <= set(data["scenarios"])
    assert {"unpolled_rate", "polled_rate", "polled_ratio", "calls_per_s"} <= set(
        data["scenarios"]["introspection"]
    )
    assert len(data["checks"]) == TARGETS
    assert {"target", "status", "reduced_by", "detail"} <= set(data["checks"][0])
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


@pytest.mark.slow
def test_quick_run_judges_no_target(quick: Run) -> None:
    """A --quick run prints every target's measured value as N/A (--quick): none is PASS or
    FAIL, and the counts say all were not judged."""
    assert 0 == quick.returncode, quick.stderr[-3000:]
    text = quick.stdout
    assert not re.search(r"^(PASS|FAIL)\b", text, re.MULTILINE)
    lines = re.findall(r"^N/A \(--quick\)  .*$", text, re.MULTILINE)
    assert TARGETS == len(lines), text[-3000:]
    # What was measured is shown, not judged.
    assert re.search(
        r"^N/A \(--quick\)  fresh filtered >= 2\.5x naive: [\d.]+x naive$", text, re.M
    )
    assert re.search(r"^N/A \(--quick\)  heartbeats: .*: -?[\d.]+% of a core$", text, re.M)
    assert "  this is a --quick run: every target is measured but not judged (N/A)" in text
    summary = rf"^targets: PASS 0, FAIL 0, N/A {TARGETS} \({TARGETS} not judged at --quick\)$"
    assert re.search(summary, text, re.M)
    checks = quick.data["checks"]
    assert [("N/A", ["--quick"])] * TARGETS == [(c["status"], c["reduced_by"]) for c in checks]
    assert all("value" in c for c in checks if not c["target"].startswith("scaling"))
    assert ["--quick"] == quick.data["reduced_by"]
    assert 10_000 == quick.data["defined_at"]["workers"]


@pytest.mark.slow
def test_quick_check_exits_zero(tmp_path: Path) -> None:
    """--check on a --quick run: no target applies, so none fails it (exit 0)."""
    run = run_quick(tmp_path, "--check", "--no-progress")
    assert 0 == run.returncode, (run.stdout[-2000:], run.stderr[-2000:])
    assert re.search(rf"^targets: PASS 0, FAIL 0, N/A {TARGETS} ", run.stdout, re.MULTILINE)
    assert run.data["config"]["check"] is True


# ---------------------------------------------------------------- the judgement, unrun


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    """benchmarks/restart_rate.py imported (nothing run); sys.path restored after."""
    saved = list(sys.path)
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        yield importlib.import_module("restart_rate")
    finally:
        sys.path[:] = saved


def fake_report(bench: ModuleType, argv: list[str], fresh_over_naive: float) -> Any:
    """A report over made-up rate rows (no scenario measured): greenkeep fresh at
    *fresh_over_naive* times naive, reuse at 2x asyncio, JSON and the budget rows at their
    filtered rows' rates (all of which pass), the other rows at naive's rate."""
    rows = {row.name: {"status": "ok", "rate": 1000.0} for row in bench.RATE_ROWS}
    for name, rate in (
        ("greenkeep-fresh", 1000.0 * fresh_over_naive),
        ("greenkeep-fresh-budget", 1000.0 * fresh_over_naive),
        ("greenkeep-json", 1000.0 * fresh_over_naive),
        ("greenkeep-reuse", 2000.0),
        ("greenkeep-reuse-budget", 2000.0),
    ):
        rows[name]["rate"] = rate
    return bench.Report(bench.parse_args(argv), rows, {}, None, {})


def fresh_check(checks: list[dict[str, Any]]) -> dict[str, Any]:
    (check,) = [c for c in checks if c["target"] == "fresh filtered >= 2.5x naive"]
    return check


def test_judge(bench: ModuleType) -> None:
    """PASS / FAIL at the configuration the target is defined at; N/A if not measured or
    the run is reduced, whatever the value."""
    judge = bench.judge
    assert "PASS" == judge(2.5, 2.5)
    assert "FAIL" == judge(2.49, 2.5)
    assert "PASS" == judge(1.15, 1.15, at_most=True)
    assert "FAIL" == judge(1.2, 1.15, at_most=True)
    assert "N/A" == judge(None, 2.5)
    assert "N/A" == judge(2.0, 2.5, reduced=["--workers 1000"])
    assert "N/A" == judge(3.0, 2.5, reduced=["--quick"])
    assert "N/A" == judge(None, 2.5, reduced=["--quick"])


def test_defaults_are_where_the_targets_are_defined(bench: ModuleType) -> None:
    """The options' defaults are DEFINED_AT: the default run is judged."""
    config = bench.run_config(bench.parse_args([]))
    assert bench.DEFINED_AT == {key: config[key] for key in bench.DEFINED_AT}
    assert [] == bench.reduced_by(config, tuple(bench.DEFINED_AT))


def test_reduced_by_names_what_differs(bench: ModuleType) -> None:
    """Only what a target depends on counts; --quick always does; more rounds do not."""

    def reduced(argv: list[str], depends_on: tuple[str, ...]) -> list[str]:
        return list(bench.reduced_by(bench.run_config(bench.parse_args(argv)), depends_on))

    rate, scenario = bench.RATE_TARGET, bench.SCENARIO_TARGET
    assert ["--quick"] == reduced(["--quick"], rate) == reduced(["--quick"], scenario)
    assert ["--quick"] == reduced(["--quick"], bench.SCALING_TARGET)
    assert ["--workers 1000"] == reduced(["--workers", "1000"], rate)
    assert ["--workers 1000"] == reduced(["--workers", "1000"], scenario)
    assert [] == reduced(["--workers", "1000"], bench.SCALING_TARGET)
    assert ["--seconds 0.5"] == reduced(["--seconds", "0.5"], rate)
    assert ["--seconds 0.5"] == reduced(["--seconds", "0.5"], bench.WINDOWED_TARGET)
    assert [] == reduced(["--seconds", "0.5"], scenario)
    assert [] == reduced(["--seconds", "2"], rate)
    assert ["--seconds 2.0000001"] == reduced(["--seconds", "2.0000001"], rate)
    assert ["--crash yield"] == reduced(["--crash", "yield"], rate)
    assert [] == reduced(["--rounds", "3"], rate)
    assert ["--rounds 1"] == reduced(["--rounds", "1"], rate)
    assert [] == reduced(["--rounds", "1"], bench.INTROSPECTION_TARGET)
    assert ["--workers 1000", "--seconds 1"] == reduced(
        ["--seconds", "1", "--workers", "1000"], rate
    )
    assert [] == reduced(["--scaling", "--json", "x.json", "--check"], rate)


def test_failing_target_at_the_default_size_fails_check(bench: ModuleType) -> None:
    """fresh at 2x naive (target 2.5x) at the default size: FAIL, and --check exits 1;
    without --check the exit status stays 0."""
    report = fake_report(bench, [], 2.0)
    checks = report.checks()
    check = fresh_check(checks)
    assert ("FAIL", [], 2.0, 2.5) == (
        check["status"],
        check["reduced_by"],
        check["value"],
        check["bound"],
    )
    assert "FAIL" == bench.verdict_label(check)
    lines = bench.target_lines(checks, bench.run_config(report.args))
    assert "FAIL  fresh filtered >= 2.5x naive: 2.00x naive" in lines
    assert "targets: PASS 6, FAIL 1, N/A 16 (16 not measured)" == lines[-1]
    assert 1 == bench.exit_status(checks, errored=False, check=True)
    assert 0 == bench.exit_status(checks, errored=False, check=False)
    # The same rows at 3x naive: nothing fails.
    passing = fake_report(bench, [], 3.0).checks()
    assert "PASS" == fresh_check(passing)["status"]
    assert 0 == bench.exit_status(passing, errored=False, check=True)
    # A row that could not run is exit 1 with or without --check, as before.
    assert 1 == bench.exit_status(passing, errored=True, check=False)


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--workers", "1000"], "--workers 1000"),
        (["--seconds", "0.5"], "--seconds 0.5"),
        (["--quick"], "--quick"),
    ],
)
def test_failing_target_at_a_reduced_size_is_na(
    bench: ModuleType, argv: list[str], why: str
) -> None:
    """The same failing rows in a reduced run: N/A (naming what differs) with the measured
    value shown, and --check exits 0."""
    report = fake_report(bench, argv, 2.0)
    checks = report.checks()
    check = fresh_check(checks)
    assert ("N/A", [why], 2.0) == (check["status"], check["reduced_by"], check["value"])
    assert f"N/A ({why})" == bench.verdict_label(check)
    lines = bench.target_lines(checks, bench.run_config(report.args))
    assert f"N/A ({why})  fresh filtered >= 2.5x naive: 2.00x naive" in lines
    assert not any(line.startswith(("PASS", "FAIL")) for line in lines), lines
    assert 0 == bench.exit_status(checks, errored=False, check=True)
