"""
The README's gunicorn recipe in a clean environment: a fresh virtual environment with only
the package and what the recipe says to install (``gunicorn[gevent]``), the recipe's own
``myapp.py`` and ``gunicorn.conf.py`` taken from the README, two workers bound to loopback.
Each worker's log lines are JSON, carry ``pid``, and differ between the workers; the public
listener serves the application, ``/healthz`` and ``/readyz``, the management one the page
and the API behind the token from the environment.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def recipe() -> tuple[str, str]:
    """The gunicorn section's application module and configuration, as the README has them."""
    section = README.read_text().split("\n### gunicorn\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert "(`myapp.py`)" in section and "(`gunicorn.conf.py`)" in section
    return blocks[0], blocks[1]


def fresh_environment(where: Path) -> Path:
    """A new virtual environment with greenkeep (from this checkout) and gunicorn[gevent]."""
    uv = shutil.which("uv")
    assert uv is not None, "uv is needed to build the environment (.ci/run installs it)"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    venv = where / "venv"
    subprocess.run(
        [uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True, env=env
    )
    python = venv / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), str(ROOT), "gunicorn[gevent]"],
        check=True,
        env=env,
        timeout=600,
    )
    return python


@pytest.mark.slow
def test_the_gunicorn_recipe_logs_json_with_a_pid_per_worker(tmp_path: Path) -> None:
    python = fresh_environment(tmp_path)
    app, conf = recipe()
    (tmp_path / "myapp.py").write_text(app)
    (tmp_path / "gunicorn.conf.py").write_text(conf)
    log = tmp_path / "gunicorn.log"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)  # gunicorn's control socket goes here
    public, management = free_port(), free_port()
    env["GREENKEEP_STATUS_PORT"] = str(management)
    env["GREENKEEP_STATUS_TOKEN"] = TOKEN
    with log.open("wb") as out:
        arbiter = subprocess.Popen(
            [
                *(str(python), "-m", "gunicorn", "-c", "gunicorn.conf.py", "--workers", "2"),
                *("--bind", f"127.0.0.1:{public}", "--bind", f"127.0.0.1:{management}"),
                "myapp:app",
            ],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        started = wait_for_two_roots(log, arbiter)
        answers = {
            name: get(port, path, token)
            for name, port, path, token in (
                ("public healthz", public, "/healthz", None),
                ("public readyz", public, "/readyz", None),
                ("public api", public, "/api/v1/tree", TOKEN),
                ("public supervisors", public, "/supervisors", TOKEN),
                ("management api", management, "/api/v1/tree", TOKEN),
                ("management api, no token", management, "/api/v1/tree", None),
                ("management page", management, "/", None),
            )
        }
    finally:
        arbiter.send_signal(signal.SIGTERM)
        arbiter.wait(timeout=60)

    greenkeep_lines = [
        line for line in log.read_text().splitlines() if "supervisor_" in line or "child_" in line
    ]
    events = [json.loads(line) for line in greenkeep_lines]  # every one of them is JSON
    assert all(isinstance(e.get("pid"), int) for e in events)
    assert 2 == len({(e["pid"], e["worker"]) for e in started})
    by_worker = {
        e["pid"]: json.dumps({k: v for k, v in e.items() if k != "timestamp"}, sort_keys=True)
        for e in started
    }
    assert 2 == len(set(by_worker.values()))  # the same event, two different lines
    # The public listener: the application, /healthz and /readyz; the management one: the
    # page and the API, behind the token.
    assert (200, "ok") == (
        answers["public healthz"][0],
        json.loads(answers["public healthz"][1])["status"],
    )
    assert (200, "ready") == (
        answers["public readyz"][0],
        json.loads(answers["public readyz"][1])["status"],
    )
    assert (200, b"hello\n") == answers["public api"] == answers["public supervisors"]
    status, body = answers["management api"]
    assert (200, 1) == (status, json.loads(body)["schema_version"])
    assert "app" == json.loads(body)["root"]["path"]
    assert 401 == answers["management api, no token"][0]
    assert b"<!doctype html>" in answers["management page"][1]


TOKEN = "rec1pe-" + "q" * 25


def free_port() -> int:
    """A loopback port nothing listens on now (gunicorn binds it right after)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(port: int, path: str, token: str | None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def wait_for_two_roots(log: Path, arbiter: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    """The two workers' ``supervisor_started`` events of the root ``app`` (a deadline turns
    a hang into a failure; the log is read as it grows)."""
    deadline = time.monotonic() + 90
    while True:
        started = []
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{") and '"supervisor_started"' in line:
                event = json.loads(line)
                if event.get("supervisor") == "app":
                    started.append(event)
        if len({e["pid"] for e in started}) >= 2:
            return started
        assert arbiter.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.1)  # pacing between reads of the log, not a wait for an outcome
