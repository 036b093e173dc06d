"""gunicorn: the server-hook helpers, and the recipe run by a real gunicorn (-k gevent)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import gevent
import gevent.event
import pytest
import structlog
from prometheus_client.parser import text_string_to_metric_families

import greenkeep
import greenkeep.gunicorn
from greenkeep import ChildSpec, Supervisor
from greenkeep.gunicorn import Hooks, current_root
from greenkeep.runner import EXIT_GAVE_UP

from _events import DEADLINE
from _http import Response, fetch, poll

APPS = Path(__file__).resolve().parent / "apps"


class GeventWorker:
    """Stands in for gunicorn's gevent worker class (the hooks check where it comes from)."""

    __module__ = "gunicorn.workers.ggevent"

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.alive = True


class SyncWorker:
    """Stands in for gunicorn's default (non-gevent) worker class."""

    __module__ = "gunicorn.workers.sync"

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.alive = True


def idle() -> None:
    gevent.event.Event().wait()


def build() -> Supervisor:
    return Supervisor([ChildSpec("idle", idle)], name="app")


@pytest.fixture(autouse=True)
def _no_root_left() -> Iterator[None]:
    yield
    root = current_root()
    if root is not None:
        root.stop(timeout=DEADLINE)
        greenkeep.gunicorn._root = None


class TestHooks:
    def test_a_root_per_worker_from_start_to_exit(self) -> None:
        """post_worker_init builds and starts the root; worker_exit stops it and forgets it."""
        hooks = Hooks(build, stop_timeout=1)
        worker = GeventWorker()

        hooks.post_worker_init(worker)
        root = current_root()
        running = None if root is None else root.state
        hooks.worker_exit(object(), worker)

        assert "running" == running
        assert root is not None and "stopped" == root.state
        assert current_root() is None
        assert worker.alive

    def test_a_root_that_gives_up_retires_the_worker_with_status_70(self) -> None:
        """When the root gives up, the worker is told to exit, and exits with status 70."""
        trip = gevent.event.Event()

        def flaky() -> None:
            trip.wait()
            raise RuntimeError("down")

        hooks = Hooks(lambda: Supervisor([ChildSpec("f", flaky)], max_restarts=1, name="app"))
        worker = GeventWorker()
        with structlog.testing.capture_logs() as logs:
            hooks.post_worker_init(worker)
            trip.set()
            root = current_root()
            assert root is not None
            with pytest.raises(greenkeep.RestartIntensityExceeded):
                root.join(timeout=DEADLINE)
            gevent.sleep(0)  # the watcher greenlet runs once the root has ended
            with pytest.raises(SystemExit) as exit_:
                hooks.worker_exit(object(), worker)

        assert not worker.alive
        assert EXIT_GAVE_UP == exit_.value.code
        [requested] = [e for e in logs if e["event"] == "worker_exit_requested"]
        assert ("restart_intensity_exceeded", "critical") == (
            requested["reason"],
            requested["log_level"],
        )

    def test_the_factory_may_be_an_import_path(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A 'module:attribute' factory is imported in the worker."""
        monkeypatch.syspath_prepend(str(APPS))
        hooks = Hooks("runner_app:build", stop_timeout=1)

        hooks.post_worker_init(GeventWorker())
        root = current_root()

        assert root is not None and ("app", "running") == (root.name, root.state)

    def test_refuses_a_worker_that_is_not_gevent(self) -> None:
        """A sync worker is refused with a message that says to use -k gevent."""
        with pytest.raises(RuntimeError, match="-k gevent"):
            Hooks(build).post_worker_init(SyncWorker())

    def test_refuses_a_root_that_was_started_elsewhere(self) -> None:
        """A factory returning a running root (e.g. the arbiter's) is refused: never inherit."""
        started = build()
        started.start()
        try:
            with pytest.raises(RuntimeError, match="already running"):
                Hooks(lambda: started).post_worker_init(GeventWorker())
        finally:
            started.stop()

    def test_refuses_bad_factories(self) -> None:
        """A factory that is neither callable nor an import path, or builds no root, is refused."""
        with pytest.raises(greenkeep.InvalidArgumentError):
            Hooks("no colon")
        with pytest.raises(greenkeep.InvalidArgumentError, match="returns a Supervisor"):
            Hooks(lambda: "root").post_worker_init(GeventWorker())  # type: ignore[arg-type,return-value]

    def test_refuses_a_wsgi_application_as_the_factory(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The WSGI application given as the factory (a callable with required arguments)
        is an InvalidArgumentError naming the factory, at the door for a callable and in
        the worker for an import path, without being called (it was a raw TypeError from
        calling it with no arguments)."""
        called: list[object] = []

        def application(environ: object, start_response: object) -> list[bytes]:
            called.append(environ)
            return []

        with pytest.raises(greenkeep.InvalidArgumentError) as info:
            Hooks(application)  # type: ignore[arg-type]
        assert "factory" == info.value.field

        monkeypatch.syspath_prepend(str(APPS))
        hooks = Hooks("gunicorn_app:application")
        with pytest.raises(greenkeep.InvalidArgumentError) as info:
            hooks.post_worker_init(GeventWorker())
        assert "factory" == info.value.field
        assert [] == called
        assert current_root() is None

    @pytest.mark.timeout(300, method="signal")  # no timer thread in the forking process
    def test_a_forked_process_does_not_see_the_parents_root(self) -> None:
        """current_root() is per process: a child forked from a worker has none."""
        Hooks(build).post_worker_init(GeventWorker())
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report and leave at once, running nothing else
            os.write(write, b"none" if current_root() is None else b"root")
            os._exit(0)
        os.close(write)
        seen = os.read(read, 16)
        os.close(read)
        os.waitpid(pid, 0)

        assert b"none" == seen
        assert current_root() is not None

    def test_prometheus_multiprocess_housekeeping(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """on_starting clears the multiprocess directory; child_exit marks a worker dead."""
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
        (tmp_path / "counter_1.db").write_bytes(b"x")
        hooks = Hooks(build)
        hooks.on_starting(object())
        (tmp_path / "gauge_livesum_42.db").write_bytes(b"x")
        (tmp_path / "counter_42.db").write_bytes(b"x")
        worker = GeventWorker()
        worker.pid = 42

        hooks.child_exit(object(), worker)

        assert ["counter_42.db"] == sorted(p.name for p in tmp_path.iterdir())


# ---------------------------------------------------------------------- a real gunicorn


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def worker_pids(arbiter: int) -> set[int]:
    """The arbiter's live worker processes (Linux /proc)."""
    children = Path(f"/proc/{arbiter}/task/{arbiter}/children").read_text().split()
    return {int(pid) for pid in children}


def wait_until(predicate: object, what: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < end, f"not within {deadline} s: {what}"
        gevent.sleep(0.05)  # pacing between checks, not a wait for an outcome


def healthy_from(url: str, pids: set[int], deadline: float = 30.0) -> Response:
    """Ask /healthz until one of *pids* answers 200 (requests land on any worker)."""
    return poll(
        url + "/healthz",
        lambda r: r.status == 200 and r.json()["pid"] in pids,
        deadline=deadline,
    )


@pytest.mark.slow
def test_gunicorn_recipe_supervises_each_worker_and_survives_worker_deaths(
    tmp_path: Path,
) -> None:
    """
    Real gunicorn (-k gevent, 2 workers, --preload): the app answers, background workers
    restart after crashes, metrics add up across workers, and a killed worker and a worker
    whose root gave up are both replaced by workers whose supervisors run.
    """
    multiproc = tmp_path / "prometheus"
    multiproc.mkdir()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "XDG_RUNTIME_DIR": str(tmp_path),  # gunicorn's control socket goes here
    }
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        arbiter = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "gunicorn_conf.py",
                "--workers",
                "2",
                "--preload",
                "--bind",
                f"fd://{listener.fileno()}",
                "gunicorn_app:app",
            ],
            cwd=APPS,
            env=env,
            pass_fds=[listener.fileno()],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    listener.close()
    try:
        # Both workers boot, each with its own running root.
        wait_until(lambda: len(worker_pids(arbiter.pid)) == 2, "two workers")
        first = worker_pids(arbiter.pid)
        for pid in first:
            healthy_from(url, {pid})
        hello = fetch(url + "/")
        assert 200 == hello.status and hello.body.startswith(b"hello from ")

        # Background consumers crash and are restarted.
        tree = poll(
            url + "/supervisors",
            lambda r: r.status == 200 and r.json()["children"][0]["supervisor"]["restarts"] >= 5,
        ).json()
        consumers = tree["children"][0]["supervisor"]
        assert "app/consumers" == consumers["path"]
        assert any(c["incarnation"] > 1 for c in consumers["children"])

        # Metrics add up over both worker processes.
        def children_total(r: Response) -> float:
            samples = parse(r.body.decode())
            return sum(
                v
                for (name, labels), v in samples.items()
                if name == "greenkeep_children" and dict(labels)["supervisor"] == "app/consumers"
            )

        scraped = poll(url + "/metrics", lambda r: r.status == 200 and children_total(r) == 8)
        samples = parse(scraped.body.decode())
        counted = samples[
            ("greenkeep_restarts_total", (("reason", "abnormal"), ("supervisor", "app/consumers")))
        ]
        assert counted >= consumers["restarts"]

        # A worker killed outright is replaced, and the replacement runs its own root.
        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: len(worker_pids(arbiter.pid) - first) == 1, "a replacement for a killed worker"
        )
        [replacement] = worker_pids(arbiter.pid) - first
        answer = healthy_from(url, {replacement})
        assert ("running", "app") == (answer.json()["state"], answer.json()["supervisor"])
        poll(url + "/metrics", lambda r: children_total(r) == 8)  # the dead one no longer counts

        # A worker whose root gives up exits with status 70 and is replaced.
        broken = poll(url + "/break", lambda r: r.status == 200)
        gave_up = int(broken.headers["X-Pid"])
        wait_until(
            lambda: f"Worker (pid:{gave_up}) exited with code 70" in log.read_text(),
            "the arbiter reporting status 70",
        )
        wait_until(lambda: len(worker_pids(arbiter.pid) - first - {replacement}) == 1, "respawn")
        [fresh] = worker_pids(arbiter.pid) - first - {replacement}
        healthy_from(url, {fresh})

        # SIGTERM: a graceful stop of every worker's root.
        arbiter.send_signal(signal.SIGTERM)
        status = arbiter.wait(timeout=30)
    finally:
        if arbiter.poll() is None:
            arbiter.kill()
            arbiter.wait(timeout=30)
    text = log.read_text()

    assert 0 == status, text[-3000:]
    assert "worker_exit_requested" in text
    assert len(re.findall(r"supervisor_stopped\s+reason=shutdown\s+supervisor=app ", text)) >= 2
