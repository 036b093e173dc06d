"""The status WSGI app, served by a real gevent pywsgi server on loopback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import gevent
import gevent.event
import pytest

import greenkeep
from greenkeep import ChildSpec, Supervisor, WorkerPool
from greenkeep.wsgi import StatusApp

from _events import DEADLINE, Events
from _http import fetch, serving


def idle(*_: object) -> None:
    gevent.event.Event().wait()


def without_uptime(snapshot: Any) -> Any:
    """The snapshot minus the one field that changes between two reads (uptime)."""
    if isinstance(snapshot, dict):
        return {k: without_uptime(v) for k, v in snapshot.items() if k != "uptime"}
    if isinstance(snapshot, list):
        return [without_uptime(v) for v in snapshot]
    return snapshot


def hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello " + environ["PATH_INFO"].encode()]


@pytest.fixture
def tree() -> Iterator[tuple[Supervisor, gevent.event.Event, Events]]:
    """A root with a worker that crashes in a loop once `trip` is set, a pool and a subtree."""
    trip = gevent.event.Event()

    def flaky() -> None:
        trip.wait()
        raise RuntimeError("dependency is down")

    events = Events()
    pool = WorkerPool(idle, 3, name="pool", subscribers=[events])
    db = Supervisor([ChildSpec("conn", idle)], name="db", subscribers=[events])
    root = Supervisor(
        [ChildSpec("db", db), ChildSpec("pool", pool), ChildSpec("flaky", flaky)],
        max_restarts=2,
        period=60,
        name="root",
        subscribers=[events],
    )
    root.start()
    yield root, trip, events
    root.stop(timeout=DEADLINE)


class TestOverHTTP:
    def test_healthz_is_200_then_503_after_a_forced_give_up(
        self, tree: tuple[Supervisor, gevent.event.Event, Events]
    ) -> None:
        """/healthz answers 200 while the root runs and 503, with the error's type, once it gave
        up."""
        root, trip, _ = tree
        with serving(StatusApp(root)) as url:
            before = fetch(url + "/healthz")
            trip.set()
            with pytest.raises(greenkeep.RestartIntensityExceeded):
                root.join(timeout=DEADLINE)
            after = fetch(url + "/healthz")

        assert (200, "ok", "running") == (
            before.status,
            before.json()["status"],
            before.json()["state"],
        )
        assert (503, "unavailable", "failed") == (
            after.status,
            after.json()["status"],
            after.json()["state"],
        )
        assert "RestartIntensityExceeded" == after.json()["error"]  # its type, never its text
        assert "application/json" == after.headers["Content-Type"]

    def test_supervisors_json_matches_the_live_tree(
        self, tree: tuple[Supervisor, gevent.event.Event, Events]
    ) -> None:
        """/supervisors returns the root's snapshot: the whole tree, nested levels included."""
        root, _, events = tree
        pool = root.get_child_spec("pool").target
        assert isinstance(pool, WorkerPool)
        pool.worker(1).kill()  # one restart, so the JSON has something to show
        events.wait("child_restarted", supervisor="root/pool", child_id=1)
        with serving(StatusApp(root)) as url:
            answer = fetch(url + "/supervisors")
            live = root.snapshot()

        body = answer.json()
        assert 200 == answer.status
        assert without_uptime(live) == without_uptime(body)
        assert ["db", "pool", "flaky"] == [c["id"] for c in body["children"]]
        pool_snapshot = body["children"][1]["supervisor"]
        assert ("root/pool", 3) == (pool_snapshot["path"], len(pool_snapshot["children"]))
        assert (2, 1) == (
            pool_snapshot["children"][1]["incarnation"],
            pool_snapshot["children"][1]["restarts"],
        )
        assert "root/db" == body["children"][0]["supervisor"]["path"]

    def test_healthz_is_503_while_stopping_and_after_stop(self) -> None:
        """/healthz turns 503 as soon as the root is stopping, and stays so once stopped."""
        release = gevent.event.Event()

        def consumer() -> None:
            greenkeep.stop_signal().wait()
            release.wait()  # finishing in-flight work

        root = Supervisor([ChildSpec("consumer", consumer, shutdown=DEADLINE)], name="app")
        root.start()
        with serving(StatusApp(root)) as url:
            stopping = gevent.spawn(root.stop)
            during = fetch(url + "/healthz")
            release.set()
            stopping.join(timeout=DEADLINE)
            after = fetch(url + "/healthz")
            snapshot = fetch(url + "/supervisors")

        assert (503, "stopping") == (during.status, during.json()["state"])
        assert (503, "stopped") == (after.status, after.json()["state"])
        assert (200, "stopped") == (snapshot.status, snapshot.json()["state"])

    def test_other_paths_go_to_the_wrapped_app(self) -> None:
        """Paths other than the endpoints reach the user's application unchanged."""
        root = Supervisor([ChildSpec("idle", idle)], name="app")
        with root, serving(StatusApp(root, app=hello)) as url:
            answer = fetch(url + "/orders/42")
            health = fetch(url + "/healthz")

        assert (200, b"hello /orders/42") == (answer.status, answer.body)
        assert 200 == health.status

    def test_prefix_and_metrics_mount(self) -> None:
        """With a prefix the endpoints move under it; a metrics app is served at /metrics."""

        def metrics(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"# metrics\n"]

        root = Supervisor([ChildSpec("idle", idle)], name="app")
        app = StatusApp(root, app=hello, prefix="/_gk", metrics=metrics)
        with root, serving(app) as url:
            moved = fetch(url + "/_gk/healthz")
            top = fetch(url + "/healthz")
            scraped = fetch(url + "/_gk/metrics")

        assert 200 == moved.status
        assert (200, b"hello /healthz") == (top.status, top.body)
        assert (200, b"# metrics\n") == (scraped.status, scraped.body)

    def test_unknown_path_method_and_head(self) -> None:
        """Without an app other paths are 404; POST is 405; HEAD has headers and no body."""
        root = Supervisor([ChildSpec("idle", idle)], name="app")
        with root, serving(StatusApp(root)) as url:
            missing = fetch(url + "/nope")
            post = fetch(url + "/healthz", method="POST")
            head = fetch(url + "/supervisors", method="HEAD")

        assert 404 == missing.status
        assert (405, "GET, HEAD") == (post.status, post.headers["Allow"])
        assert (200, b"") == (head.status, head.body)
        assert int(head.headers["Content-Length"]) > 0

    def test_a_root_source_that_has_no_root_yet(self) -> None:
        """A root callable returning None (a worker still booting) gives 503 on both paths."""
        holder: list[Supervisor] = []
        app = StatusApp(lambda: holder[0] if holder else None)
        root = Supervisor([ChildSpec("idle", idle)], name="late")
        with serving(app) as url:
            health = fetch(url + "/healthz")
            tree = fetch(url + "/supervisors")
            holder.append(root)
            with root:
                later = fetch(url + "/healthz")

        assert (503, None) == (health.status, health.json()["supervisor"])
        assert 503 == tree.status
        assert (200, "late") == (later.status, later.json()["supervisor"])

    def test_not_started_root_is_unhealthy(self) -> None:
        """A root that was never started is not healthy, and its snapshot is still served."""
        root = Supervisor([ChildSpec("idle", idle)], name="app")
        with serving(StatusApp(root)) as url:
            health = fetch(url + "/healthz")
            tree = fetch(url + "/supervisors")

        assert (503, "new") == (health.status, health.json()["state"])
        assert (200, "stopped") == (tree.status, tree.json()["children"][0]["state"])


class TestArguments:
    @pytest.mark.parametrize(
        ("kwargs", "field"),
        [
            ({"root": "root"}, "root"),
            ({"app": 3}, "app"),
            ({"metrics": "m"}, "metrics"),
            ({"prefix": "x"}, "prefix"),
            ({"prefix": "/x/"}, "prefix"),
        ],
    )
    def test_invalid_arguments_name_the_field(self, kwargs: dict[str, Any], field: str) -> None:
        """A bad argument raises InvalidArgumentError naming the field."""
        args: dict[str, Any] = {"root": Supervisor([], name="app"), **kwargs}
        root = args.pop("root")

        with pytest.raises(greenkeep.InvalidArgumentError) as caught:
            StatusApp(root, **args)

        assert field == caught.value.field


def test_server_modules_do_not_import_prometheus_client() -> None:
    """Without the extra in use, nothing greenkeep imports pulls in prometheus_client."""
    code = (
        "import sys, greenkeep, greenkeep.wsgi, greenkeep.runner, greenkeep.gunicorn\n"
        "assert 'prometheus_client' not in sys.modules, 'imported'\n"
        "assert 'gunicorn' not in sys.modules, 'gunicorn imported'\n"
    )

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    assert 0 == result.returncode, result.stderr
