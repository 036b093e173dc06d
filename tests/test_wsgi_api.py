"""The JSON API behind the page: the tree's summary, one supervisor's children paged, the
sampled restart history."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import gevent
import gevent.event
import pytest

import greenkeep
from greenkeep import ChildSpec, Supervisor, WorkerPool
from greenkeep._status import BUCKETS, SCHEMA_VERSION, SUMMARY_CHILDREN, Samples
from greenkeep.wsgi import StatusApp

from _events import DEADLINE, Events, wait_until
from _http import fetch, serving


def idle(*_: object) -> None:
    gevent.event.Event().wait()


#: Set one to crash that worker once (workers 0..4 return at once instead).
TRIPS: dict[int, gevent.event.Event] = {}


def worker(worker_id: int) -> None:
    """Workers 0..4 return at once (a transient pool keeps them stopped); the others idle,
    or crash once when their trip is set."""
    if worker_id < 5:
        return
    info = greenkeep.current()
    if info is not None and info.incarnation == 1:
        TRIPS.setdefault(worker_id, gevent.event.Event()).wait()
        raise RuntimeError("tripped")
    idle()


def crash(pool: WorkerPool, events: Events, worker_id: int) -> None:
    """Crash one worker once; return once the pool has restarted it."""
    TRIPS.setdefault(worker_id, gevent.event.Event()).set()
    events.wait("child_restarted", supervisor=pool.path, child_id=worker_id)


@pytest.fixture
def tree() -> Iterator[tuple[Supervisor, WorkerPool, Events]]:
    TRIPS.clear()
    events = Events()
    pool = WorkerPool(worker, 200, name="pool", restart="transient", subscribers=[events])
    db = Supervisor([ChildSpec("conn", idle)], name="db")
    root = Supervisor(
        [ChildSpec("db", db), ChildSpec("pool", pool), ChildSpec("job", idle)],
        name="root",
        subscribers=[events],
    )
    root.start()
    wait_until(lambda: pool.count_children().active == 195)
    yield root, pool, events
    root.stop(timeout=DEADLINE)


def get(url: str) -> Any:
    answer = fetch(url)
    assert 200 == answer.status, answer.body
    return answer.json()


class TestSummary:
    def test_the_tree_without_per_worker_detail(
        self, tree: tuple[Supervisor, WorkerPool, Events]
    ) -> None:
        """/api/v1/tree: every supervisor and its children; a pool as counts by state."""
        root, _, _ = tree
        with serving(StatusApp(root, prefix="/gk")) as url:
            body = get(url + "/gk/api/v1/tree")

        assert (SCHEMA_VERSION, False) == (body["schema_version"], body["controls"])
        node = body["root"]
        assert ("root", "supervisor", "running", "one_for_one") == (
            node["path"],
            node["kind"],
            node["state"],
            node["strategy"],
        )
        assert ["db", "pool", "job"] == [c["id"] for c in node["children"]]
        assert 3 == node["children_total"] == node["counts"]["running"]
        pool = node["children"][1]["supervisor"]
        assert ("root/pool", "pool", 200) == (pool["path"], pool["kind"], pool["size"])
        assert {"running": 195, "restarting": 0, "delayed": 0, "stopped": 5, "failed": 0} == (
            pool["counts"]
        )
        assert "children" not in pool
        assert "root/db" == node["children"][0]["supervisor"]["path"]
        job = node["children"][2]
        assert {"id", "type", "restart", "state", "incarnation", "restarts", "uptime"} <= set(job)
        assert (None, 0) == (job["last_exit"], job["restarts_last_minute"])
        rate = node["restart_rate"]
        assert (0, BUCKETS) == (rate["last_minute"], len(rate["sparkline"]))

    def test_a_supervisor_with_many_children_lists_the_first_ones(self) -> None:
        """The summary lists SUMMARY_CHILDREN children of a supervisor; its page has all."""
        root = Supervisor([], name="many")
        with root, serving(StatusApp(root)) as url:
            for i in range(SUMMARY_CHILDREN + 20):
                root.start_child(ChildSpec(f"c{i}", idle))
            body = get(url + "/api/v1/tree")
            page = get(url + "/api/v1/supervisor?path=many&show=all&offset=110&limit=50")

        node = body["root"]
        assert (SUMMARY_CHILDREN, SUMMARY_CHILDREN + 20) == (
            len(node["children"]),
            node["children_total"],
        )
        assert ["c110", "c111"] == [c["id"] for c in page["children"]["items"][:2]]
        assert (120, 10) == (page["children"]["total"], len(page["children"]["items"]))

    def test_a_10000_worker_pool_summary_is_small(self) -> None:
        """The summary of a supervisor over 10,000 workers stays far under 64 KB."""
        pool = WorkerPool(idle, 10_000, name="big")
        root = Supervisor([ChildSpec("big", pool)], name="root")
        with root, serving(StatusApp(root)) as url:
            answer = fetch(url + "/api/v1/tree")

        assert 200 == answer.status
        assert len(answer.body) < 64 * 1024
        assert 10_000 == answer.json()["root"]["children"][0]["supervisor"]["counts"]["running"]

    def test_no_root_yet(self) -> None:
        """While there is no root, the summary says so (root null)."""
        with serving(StatusApp(lambda: None)) as url:
            body = get(url + "/api/v1/tree")

        assert (SCHEMA_VERSION, None) == (body["schema_version"], body["root"])


class TestDetail:
    def test_attention_lists_what_does_not_run_then_what_restarted(
        self, tree: tuple[Supervisor, WorkerPool, Events]
    ) -> None:
        """show=attention: the stopped workers, then those restarted within a minute."""
        root, pool, events = tree
        crash(pool, events, 42)
        with serving(StatusApp(root)) as url:
            page = get(url + "/api/v1/supervisor?path=root/pool")
            everyone = get(url + "/api/v1/supervisor?path=root/pool&show=all&limit=500")

        children = page["children"]
        assert ("attention", 6, 0, 50) == (
            children["show"],
            children["total"],
            children["offset"],
            children["limit"],
        )
        assert [0, 1, 2, 3, 4, 42] == [w["id"] for w in children["items"]]
        assert {"stopped"} == {w["state"] for w in children["items"][:5]}
        assert {"reason": "normal", "type": None, "message": None} == (
            children["items"][0]["last_exit"]
        )
        restarted = children["items"][5]
        assert ("running", 2, 1) == (
            restarted["state"],
            restarted["incarnation"],
            restarted["restarts"],
        )
        assert restarted["restarted_ago"] is not None
        assert (200, 200) == (everyone["children"]["total"], len(everyone["children"]["items"]))
        assert "root/pool" == page["supervisor"]["path"]

    def test_paging(self, tree: tuple[Supervisor, WorkerPool, Events]) -> None:
        """offset and limit page the children; the total is that of the whole selection."""
        root, _, _ = tree
        with serving(StatusApp(root)) as url:
            pages = [
                get(url + f"/api/v1/supervisor?path=root/pool&show=all&offset={o}&limit=64")
                for o in (0, 64, 128, 192)
            ]

        ids = [w["id"] for p in pages for w in p["children"]["items"]]
        assert list(range(200)) == ids
        assert {200} == {p["children"]["total"] for p in pages}

    @pytest.mark.parametrize(
        ("query", "status", "argument"),
        [
            ("", 400, "path"),
            ("path=", 400, "path"),
            ("path=root/nowhere", 404, "path"),
            ("path=nope", 404, "path"),
            ("path=root&offset=-1", 400, "offset"),
            ("path=root&offset=x", 400, "offset"),
            ("path=root&limit=0", 400, "limit"),
            ("path=root&limit=501", 400, "limit"),
            ("path=root&show=some", 400, "show"),
        ],
    )
    def test_bad_arguments_name_the_argument(
        self, tree: tuple[Supervisor, WorkerPool, Events], query: str, status: int, argument: str
    ) -> None:
        root, _, _ = tree
        with serving(StatusApp(root)) as url:
            answer = fetch(url + "/api/v1/supervisor?" + query)

        assert (status, argument) == (answer.status, answer.json()["argument"])

    def test_unknown_api_paths_and_methods(
        self, tree: tuple[Supervisor, WorkerPool, Events]
    ) -> None:
        root, _, _ = tree
        with serving(StatusApp(root, prefix="/gk", app=lambda e, s: [])) as url:
            unknown = fetch(url + "/gk/api/v2/tree")
            post = fetch(url + "/gk/api/v1/tree", method="POST", data=b"")

        assert 404 == unknown.status
        assert (405, "GET, HEAD") == (post.status, post.headers["Allow"])


class TestSampledRates:
    def test_restarts_per_minute_and_the_sparkline_come_from_sampled_totals(
        self, tree: tuple[Supervisor, WorkerPool, Events]
    ) -> None:
        """Each read samples the supervisors' restart totals (at most once a second);
        restarts in the last minute and the sparkline's buckets are differences of them."""
        root, pool, events = tree
        app = StatusApp(root)
        now = [1000.0]
        app._clock = lambda: now[0]
        with serving(app) as url:
            first = get(url + "/api/v1/tree")["root"]["children"][1]["supervisor"]
            for worker_id in (7, 8, 9):
                crash(pool, events, worker_id)
            now[0] += 30
            later = get(url + "/api/v1/tree")["root"]["children"][1]["supervisor"]
            now[0] += 45
            after = get(url + "/api/v1/tree")["root"]["children"][1]["supervisor"]

        assert (0, 0.0) == (
            first["restart_rate"]["last_minute"],
            first["restart_rate"]["sampled_for"],
        )
        assert (3, 30.0) == (
            later["restart_rate"]["last_minute"],
            later["restart_rate"]["sampled_for"],
        )
        assert 3 == later["restarts"]
        assert 3 == sum(n for n in later["restart_rate"]["sparkline"] if n)
        assert later["restart_rate"]["sparkline"][-1] == 3  # the last 10 s bucket
        assert (3, 60.0) == (
            after["restart_rate"]["last_minute"],
            after["restart_rate"]["sampled_for"],
        )

    def test_samples(self) -> None:
        """Samples: one reading per second at most; a total that drops starts afresh."""
        samples = Samples()
        assert 0 == samples.record("a", 0.0, 10)["last_minute"]
        assert 5 == samples.record("a", 0.5, 15)["last_minute"]  # not kept: too close
        out = samples.record("a", 70.0, 40)
        assert (40 - 10, 60.0) == (out["last_minute"], out["sampled_for"])
        spark = out["sparkline"]
        assert BUCKETS == len(spark)
        assert [None] * 22 == spark[:22]  # before the first reading
        assert 30 == sum(n for n in spark if n)
        assert 0 == samples.record("a", 71.0, 2)["last_minute"]  # a new run
        assert 3 == samples.record("a", 72.0, 5)["last_minute"]


def test_the_api_is_json_and_never_cached(tree: tuple[Supervisor, WorkerPool, Events]) -> None:
    root, _, _ = tree
    with serving(StatusApp(root)) as url:
        answer = fetch(url + "/api/v1/tree")

    assert ("application/json", "no-store", "nosniff") == (
        answer.headers["Content-Type"],
        answer.headers["Cache-Control"],
        answer.headers["X-Content-Type-Options"],
    )
    json.loads(answer.body)
    assert greenkeep.__version__
