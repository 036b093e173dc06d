"""Every Python snippet in the README runs, as a user would run it; the YAML of its
Kubernetes recipe names what greenkeep serves."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

import greenkeep.prometheus

README = Path(__file__).resolve().parent.parent / "README.md"
#: Every ```python block, dedented (a block inside a list item is indented with it).
SNIPPETS = [
    textwrap.dedent(snippet)
    for snippet in re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
]


def test_readme_has_snippets() -> None:
    """The README shows runnable examples."""
    assert len(SNIPPETS) >= 8


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_snippet_runs(index: int, tmp_path: Path) -> None:
    """The snippet exits cleanly in a fresh interpreter."""
    script = tmp_path / f"snippet_{index}.py"
    script.write_text(SNIPPETS[index])

    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60
    )

    assert 0 == result.returncode, result.stdout[-2000:] + result.stderr[-4000:]


def test_quick_start_commands_are_the_two_commands() -> None:
    """The quick start shows exactly the benchmark and the test command."""
    quick = README.read_text().split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"^uv run [^ #\n]+(?: [^#\n]*?)?(?=\s*(?:#|$))", quick, re.MULTILINE)

    assert ["uv run benchmarks/restart_rate.py", "uv run pytest"] == [c.strip() for c in commands]


def _section(title: str) -> str:
    return README.read_text().split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_kubernetes_probes_are_the_status_apps_paths() -> None:
    """The outside-service section's Kubernetes recipe (YAML, not run) points the liveness
    probe at /healthz and the readiness probe at /readyz, and its alert at a gauge that
    greenkeep.prometheus exports."""
    section = _section("Workers that depend on an outside service")
    blocks = re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL)
    [pod] = [b for b in blocks if "livenessProbe" in b]
    [alert] = [b for b in blocks if "alert:" in b]
    probes = re.findall(r"(livenessProbe|readinessProbe):.*\n\s+httpGet: \{path: (\S+),", pod)
    metric = re.search(r"expr: \w+\((greenkeep_\w+)\{", alert)

    assert [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] == probes
    metrics = greenkeep.prometheus.Metrics(CollectorRegistry())
    assert metric is not None
    assert metric.group(1) == metrics.degraded.describe()[0].name
