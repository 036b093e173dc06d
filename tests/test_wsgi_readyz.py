"""
``/readyz``, readiness apart from liveness: 503 while the root is degraded (naming the
degraded pools) or not running, 200 otherwise, public as ``/healthz`` is; ``/healthz`` keeps
saying "alive" throughout. Served by a real gevent pywsgi server on loopback; the outage
runs on a manual clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import gevent
import gevent.event
import pytest

import greenkeep
from greenkeep import Backoff, ChildSpec, Supervisor, WorkerPool
from greenkeep.testing import ManualClock
from greenkeep.wsgi import StatusApp

from _events import DEADLINE
from _http import fetch, serving
from _outage import Service, run_until

TOKEN = "t0ken-" + "r" * 26


def idle(*_: object) -> None:
    gevent.event.Event().wait()


def hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello " + environ["PATH_INFO"].encode()]


class Tree:
    """root > consumers (4 workers of an outside service, recommended backoff), and an idle
    child; on a manual clock."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self.service = Service(TypeError)
        self.consumers = WorkerPool(
            self.service.consume,
            4,
            backoff=Backoff.for_outside_service(),
            clock=self.clock,
            name="consumers",
        )
        self.root = Supervisor(
            [ChildSpec("consumers", self.consumers), ChildSpec("idle", idle)],
            name="root",
            clock=self.clock,
        )

    def degrade(self) -> None:
        self.service.down.set()
        run_until(self.clock, self.consumers, lambda: self.consumers.degraded, limit=10.0)

    def recover(self) -> None:
        self.service.down.clear()
        run_until(self.clock, self.consumers, lambda: not self.root.degraded, limit=10.0)


@pytest.fixture
def tree() -> Iterator[Tree]:
    built = Tree()
    built.root.start()
    yield built
    built.root.stop(timeout=DEADLINE)


class TestReadyz:
    def test_503_naming_the_degraded_pool_while_healthz_stays_200(self, tree: Tree) -> None:
        """Ready (200) while every worker works; 503 "degraded" with the pool's path and
        failing count while its workers wait for delayed restarts, /healthz 200 all along;
        200 again once they run."""
        with serving(StatusApp(tree.root)) as url:
            before = fetch(url + "/readyz")
            tree.degrade()
            during = fetch(url + "/readyz")
            alive = fetch(url + "/healthz")
            tree.recover()
            after = fetch(url + "/readyz")

        assert (200, "ready", [], "running") == (
            before.status,
            before.json()["status"],
            before.json()["degraded"],
            before.json()["state"],
        )
        assert (503, "degraded", "root", "running") == (
            during.status,
            during.json()["status"],
            during.json()["supervisor"],
            during.json()["state"],
        )
        assert [{"path": "root/consumers", "failing": 4, "size": 4}] == during.json()["degraded"]
        assert {"status", "supervisor", "state", "degraded", "error", "pid"} == set(during.json())
        assert (200, "ok") == (alive.status, alive.json()["status"])
        assert (200, "ready") == (after.status, after.json()["status"])

    def test_503_unavailable_whenever_healthz_is_503(self) -> None:
        """Not started, given up, stopped, and no root yet: "unavailable", as /healthz."""
        holder: list[Supervisor] = []
        service = Service()
        service.down.set()
        never = Supervisor([ChildSpec("idle", idle)], name="never")
        gave_up = Supervisor([ChildSpec("c", service.consume)], name="gave_up", max_restarts=0)
        with pytest.raises(greenkeep.RestartIntensityExceeded):
            gave_up.start()
        stopped = Supervisor([ChildSpec("idle", idle)], name="stopped")
        stopped.start()
        stopped.stop()
        answers = {}
        for root in (never, gave_up, stopped):
            with serving(StatusApp(root)) as url:
                answers[root.name] = (fetch(url + "/readyz"), fetch(url + "/healthz"))
        with serving(StatusApp(lambda: holder[0] if holder else None)) as url:
            answers["none"] = (fetch(url + "/readyz"), fetch(url + "/healthz"))

        for name, (ready, health) in answers.items():
            assert (503, 503, "unavailable", []) == (
                ready.status,
                health.status,
                ready.json()["status"],
                ready.json()["degraded"],
            ), name
            assert health.json()["state"] == ready.json()["state"], name
            assert health.json()["error"] == ready.json()["error"], name
        assert "RestartIntensityExceeded" == answers["gave_up"][0].json()["error"]
        assert answers["none"][0].json()["supervisor"] is None

    def test_public_as_healthz_whatever_the_access_rules(self, tree: Tree) -> None:
        """With a token or an authorize callable that refuses everything, /readyz answers
        without credentials (as /healthz), while /supervisors refuses."""
        tree.degrade()
        apps = [
            StatusApp(tree.root, token=TOKEN),
            StatusApp(tree.root, authorize=lambda environ: False),
        ]
        for app in apps:
            with serving(app) as url:
                ready = fetch(url + "/readyz")
                wrong = fetch(url + "/readyz", headers={"Authorization": "Bearer " + "x" * 32})
                health = fetch(url + "/healthz")
                snapshot = fetch(url + "/supervisors")

            assert (503, 503, 200, 401) == (
                ready.status,
                wrong.status,
                health.status,
                snapshot.status,
            )
            assert ready.json() == {**wrong.json(), "pid": ready.json()["pid"]}

    def test_methods_prefix_and_a_wrapped_app(self, tree: Tree) -> None:
        """POST is 405 (GET, HEAD); HEAD has headers and no body; a prefix moves it, and
        with a wrapped app and no prefix it is served next to /healthz."""
        with serving(StatusApp(tree.root)) as url:
            post = fetch(url + "/readyz", method="POST")
            head = fetch(url + "/readyz", method="HEAD")
        with serving(StatusApp(tree.root, app=hello, prefix="/_gk")) as url:
            moved = fetch(url + "/_gk/readyz")
            top = fetch(url + "/readyz")
        with serving(StatusApp(tree.root, app=hello)) as url:
            beside = fetch(url + "/readyz")

        assert (405, "GET, HEAD") == (post.status, post.headers["Allow"])
        assert (200, b"") == (head.status, head.body)
        assert int(head.headers["Content-Length"]) > 0
        assert (200, "ready") == (moved.status, moved.json()["status"])
        assert (200, b"hello /readyz") == (top.status, top.body)
        assert (200, "ready") == (beside.status, beside.json()["status"])

    def test_a_degraded_pool_as_the_root(self) -> None:
        """A pool that is the root names itself."""
        clock = ManualClock()
        service = Service(TypeError)
        pool = WorkerPool(
            service.consume, 2, backoff=Backoff.for_outside_service(), clock=clock, name="p"
        )
        pool.start()
        try:
            service.down.set()
            run_until(clock, pool, lambda: pool.degraded, limit=10.0)
            with serving(StatusApp(pool)) as url:
                ready = fetch(url + "/readyz")
        finally:
            pool.stop(timeout=DEADLINE)

        assert (503, [{"path": "p", "failing": 2, "size": 2}]) == (
            ready.status,
            ready.json()["degraded"],
        )
