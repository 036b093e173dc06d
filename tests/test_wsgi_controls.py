"""Controls: off unless enabled, POST only, authorized, same-origin; each one an event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import gevent.event
import pytest
from structlog.testing import capture_logs

from greenkeep import ChildSpec, Supervisor, WorkerPool
from greenkeep.wsgi import StatusApp

from _events import DEADLINE, Events, wait_until
from _http import Response, fetch, serving

TOKEN = "c0ntrol-" + "k" * 24
BEARER = {"Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json"}


def idle(*_: object) -> None:
    gevent.event.Event().wait()


@pytest.fixture
def tree() -> Iterator[tuple[Supervisor, WorkerPool, Events]]:
    events = Events()
    pool = WorkerPool(idle, 4, name="pool", subscribers=[events])
    root = Supervisor(
        [ChildSpec("job", idle), ChildSpec("pool", pool)], name="root", subscribers=[events]
    )
    root.start()
    yield root, pool, events
    root.stop(timeout=DEADLINE)


def post(url: str, body: object, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body).encode()
    return fetch(
        url + "/api/v1/control", method="POST", headers={**JSON, **(headers or BEARER)}, data=data
    )


def incarnation(root: Supervisor, child_id: str) -> int:
    (info,) = [c for c in root.which_children() if c.id == child_id]
    return info.incarnation


class TestRefused:
    def test_off_unless_enabled(self, tree: tuple[Supervisor, WorkerPool, Events]) -> None:
        """Without controls=True the control path refuses everything, token or not."""
        root, _, _ = tree
        with capture_logs() as logs, serving(StatusApp(root, token=TOKEN)) as url:
            answer = post(url, {"action": "restart_child", "path": "root", "child_id": "job"})

        assert 403 == answer.status
        assert 1 == incarnation(root, "job")
        assert [("control_refused", "disabled", "127.0.0.1")] == [
            (e["event"], e["reason"], e["remote_addr"]) for e in logs
        ]

    @pytest.mark.parametrize(
        ("method", "headers", "status", "reason"),
        [
            ("GET", BEARER, 405, "method"),
            ("PUT", BEARER, 405, "method"),
            ("POST", {}, 401, "unauthorized"),
            ("POST", {"Authorization": "Bearer " + "w" * 32}, 401, "unauthorized"),
            ("POST", {"Authorization": TOKEN}, 401, "unauthorized"),
            ("POST", {**BEARER, "Origin": "http://evil.example"}, 403, "origin"),
            ("POST", {**BEARER, "Origin": "null"}, 403, "origin"),
            ("POST", {**BEARER, "Origin": "http://127.0.0.1:1"}, 403, "origin"),
            ("POST", {**BEARER, "Sec-Fetch-Site": "cross-site"}, 403, "origin"),
            ("POST", {**BEARER, "Sec-Fetch-Site": "same-site"}, 403, "origin"),
            ("POST", {**BEARER, "Content-Type": "text/plain"}, 415, "content_type"),
            (
                "POST",
                {**BEARER, "Content-Type": "application/x-www-form-urlencoded"},
                415,
                "content_type",
            ),
        ],
    )
    def test_refused_requests_change_nothing(
        self,
        tree: tuple[Supervisor, WorkerPool, Events],
        method: str,
        headers: dict[str, str],
        status: int,
        reason: str,
    ) -> None:
        """GET, no or a wrong token, a foreign Origin, a cross-site fetch, a non-JSON body:
        refused, logged as control_refused, and the child is untouched."""
        root, _, _ = tree
        body = json.dumps({"action": "restart_child", "path": "root", "child_id": "job"})
        app = StatusApp(root, token=TOKEN, controls=True)
        with capture_logs() as logs, serving(app) as url:
            answer = fetch(
                url + "/api/v1/control",
                method=method,
                headers={**JSON, **headers},
                data=body.encode() if method != "GET" else None,
            )

        assert status == answer.status
        if status == 405:
            assert "POST" == answer.headers["Allow"]
        assert 1 == incarnation(root, "job")
        assert [("control_refused", reason)] == [(e["event"], e["reason"]) for e in logs]
        assert TOKEN not in json.dumps(logs)

    def test_an_authorize_callable_alone_also_guards_controls(
        self, tree: tuple[Supervisor, WorkerPool, Events]
    ) -> None:
        root, _, _ = tree
        app = StatusApp(root, authorize=lambda e: e.get("HTTP_X_OPS") == "yes", controls=True)
        with serving(app) as url:
            refused = post(url, {"action": "restart_child", "path": "root", "child_id": "job"}, {})
            done = post(
                url,
                {"action": "restart_child", "path": "root", "child_id": "job"},
                {"X-Ops": "yes"},
            )

        assert (401, 200) == (refused.status, done.status)


class TestActions:
    def test_restart_and_terminate_a_child(
        self, tree: tuple[Supervisor, WorkerPool, Events]
    ) -> None:
        """restart_child stops a running child and starts it again; terminate_child stops
        it; each is a control_action event saying what, to which child, from where."""
        root, _, _ = tree
        app = StatusApp(root, token=TOKEN, controls=True)
        origin = {}
        with capture_logs() as logs, serving(app) as url:
            origin = {**BEARER, "Origin": url}
            restarted = post(
                url, {"action": "restart_child", "path": "root", "child_id": "job"}, origin
            )
            after_restart = incarnation(root, "job")
            terminated = post(
                url, {"action": "terminate_child", "path": "root", "child_id": "job"}
            )
            state = [c.status for c in root.which_children() if c.id == "job"]
            again = post(url, {"action": "restart_child", "path": "root", "child_id": "job"})

        assert (200, True, 2) == (restarted.status, restarted.json()["done"], after_restart)
        assert (200, ["terminated"]) == (terminated.status, state)
        assert (200, 3) == (again.status, incarnation(root, "job"))
        actions = [e for e in logs if e["event"] == "control_action"]
        assert [
            ("restart_child", "root", "job", "done", "127.0.0.1", "info"),
            ("terminate_child", "root", "job", "done", "127.0.0.1", "info"),
            ("restart_child", "root", "job", "done", "127.0.0.1", "info"),
        ] == [
            (e["action"], e["path"], e["child_id"], e["outcome"], e["remote_addr"], e["log_level"])
            for e in actions
        ]
        assert {"root"} == {e["supervisor"] for e in actions}
        assert all(isinstance(e["pid"], int) for e in actions)

    def test_restart_a_pool_worker_and_resize_the_pool(
        self, tree: tuple[Supervisor, WorkerPool, Events]
    ) -> None:
        root, pool, events = tree
        app = StatusApp(root, token=TOKEN, controls=True)
        with capture_logs() as logs, serving(app) as url:
            killed = post(url, {"action": "restart_child", "path": "root/pool", "child_id": 2})
            events.wait("child_restarted", supervisor="root/pool", child_id=2)
            resized = post(url, {"action": "resize", "path": "root/pool", "size": 6})
            wait_until(lambda: pool.count_children().active == 6)

        assert (200, 2) == (killed.status, pool.worker(2).incarnation)
        assert (200, 6, 4) == (resized.status, resized.json()["size"], resized.json()["previous"])
        resize = [e for e in logs if e["event"] == "control_action" and e["action"] == "resize"]
        assert [("root/pool", 6, 4, "done")] == [
            (e["path"], e["size"], e["previous"], e["outcome"]) for e in resize
        ]

    @pytest.mark.parametrize(
        ("body", "status"),
        [
            ({"action": "restart_child", "path": "root", "child_id": "nobody"}, 404),
            ({"action": "restart_child", "path": "root/none", "child_id": "job"}, 404),
            ({"action": "explode", "path": "root"}, 400),
            ({"action": "restart_child", "path": "root", "child_id": True}, 400),
            ({"action": "restart_child", "path": 3, "child_id": "job"}, 400),
            ({"action": "resize", "path": "root", "size": 3}, 400),
            ({"action": "resize", "path": "root/pool", "size": "3"}, 400),
            ({"action": "resize", "path": "root/pool", "size": -1}, 400),
            ({"action": "terminate_child", "path": "root/pool", "child_id": 1}, 400),
            ({"action": "restart_child", "path": "root/pool", "child_id": 99}, 400),
            (["not", "an", "object"], 400),
        ],
    )
    def test_bad_requests(
        self, tree: tuple[Supervisor, WorkerPool, Events], body: Any, status: int
    ) -> None:
        root, pool, _ = tree
        with capture_logs() as logs, serving(StatusApp(root, token=TOKEN, controls=True)) as url:
            answer = post(url, body)

        assert status == answer.status, answer.body
        assert (1, 4) == (incarnation(root, "job"), pool.size)
        assert ["control_action"] == [e["event"] for e in logs]
        assert "warning" == logs[0]["log_level"]

    def test_a_stopped_supervisor_refuses_with_409(self) -> None:
        root = Supervisor([ChildSpec("job", idle)], name="root")
        with serving(StatusApp(root, token=TOKEN, controls=True)) as url:
            answer = post(url, {"action": "restart_child", "path": "root", "child_id": "job"})

        assert 409 == answer.status
        assert "SupervisorNotRunningError" in answer.json()["error"]
