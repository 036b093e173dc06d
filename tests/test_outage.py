"""
The outage scenario of ``benchmarks/outage.py`` (slow: it runs in real time, about 40 s):
200 consumers of a local TCP service, in a pool with the configuration recommended for
consumers of an outside service, while that service is down for 5 s, and the bug crash
loop. The scenario runs in a process of its own (``outage.py --quick --check``); these
tests read its checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "outage.py"


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("outage") / "outage.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--check", "--config", "recommended"]
    run = subprocess.run(
        [*command, "--json", str(out)], capture_output=True, text=True, timeout=240
    )
    print(run.stdout)
    assert out.exists(), f"{run.stdout}\n{run.stderr}"
    data: dict[str, Any] = json.loads(out.read_text())
    data["returncode"] = run.returncode
    data["stdout"] = run.stdout
    return data


def checks(outcome: dict[str, Any], readiness: bool) -> dict[str, dict[str, str]]:
    """The scenario's checks, by scenario and name: the /readyz ones, or the others."""
    return {
        f"{c['scenario']}: {c['name']}": c
        for c in outcome["checks"]
        if c["name"].startswith("/readyz") == readiness
    }


def test_the_scenario_runs(outcome: dict[str, Any]) -> None:
    """It ran the 5 s outage and the crash loop, its workers worked, and it checked what
    the targets say."""
    outage, crash_loop = outcome["results"]
    assert (outage["scenario"], outage["outage_s"]) == ("outage", 5.0)
    assert crash_loop["scenario"] == "crash loop"
    assert outage["jobs"] > 0
    assert outage["backoff"] is not None
    assert outage["healthz"]["before"] == {"200": outage["healthz"]["before"]["200"]}
    assert len(outcome["checks"]) == 8
    for check in checks(outcome, readiness=True).values():
        assert check["status"] in ("PASS", "FAIL", "SKIP")


def test_the_pool_rides_out_the_outage(outcome: dict[str, Any]) -> None:
    """No give-up, little CPU and few log lines while the service is down, every worker
    back within the bound, /healthz 200 throughout."""
    failed = {k: c for k, c in checks(outcome, readiness=False).items() if c["status"] != "PASS"}
    assert not failed, outcome["stdout"]


def test_readyz_follows_the_outage_and_the_crash_loop(outcome: dict[str, Any]) -> None:
    """/readyz: 503 while the service is down (past the degraded-after time), 200 within
    1 s of the recovery; 503 within 10 s of a crash loop."""
    found = checks(outcome, readiness=True)
    failed = {
        k: c
        for k, c in found.items()
        # SKIP: the outage is not longer than the degraded-after time (nothing to check).
        if c["status"] != "PASS" and not (c["status"] == "SKIP" and "during" in k)
    }
    assert not failed, outcome["stdout"]
    assert outcome["returncode"] == 0
