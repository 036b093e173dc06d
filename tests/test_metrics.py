"""Prometheus metrics fed by subscriber events, scraped from a real server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gevent
import gevent.event
import gevent.queue
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import greenkeep
from greenkeep import ChildSpec, Supervisor, WorkerPool
from greenkeep.prometheus import (
    CHILD_STATES,
    RESTART_REASONS,
    Metrics,
    clear_multiprocess_dir,
)
from greenkeep.testing import ManualClock
from greenkeep.wsgi import StatusApp

from _events import DEADLINE, Events
from _http import fetch, serving
from _outage import Service, run_until

APPS = Path(__file__).resolve().parent / "apps"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def restarts(samples: Samples, supervisor: str, reason: str) -> float:
    key = ("greenkeep_restarts_total", (("reason", reason), ("supervisor", supervisor)))
    return samples[key]


def children(samples: Samples, supervisor: str, state: str) -> float:
    return samples[("greenkeep_children", (("state", state), ("supervisor", supervisor)))]


def scrape_registry(registry: CollectorRegistry) -> Samples:
    from prometheus_client import generate_latest

    return parse(generate_latest(registry).decode())


def idle(*_: object) -> None:
    gevent.event.Event().wait()


def on_command(commands: gevent.queue.Queue[str]) -> None:
    """Each incarnation takes one command: ``crash`` raises, ``return`` returns."""
    if commands.get() == "crash":
        raise RuntimeError("told to crash")


def test_scraped_counters_match_the_restarts_that_happened() -> None:
    """Counters on a real /metrics endpoint equal the restarts the events report, by reason."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    events = Events()
    commands: gevent.queue.Queue[str] = gevent.queue.Queue()
    pool_commands: gevent.queue.Queue[str] = gevent.queue.Queue()
    pool = WorkerPool(
        lambda worker_id: on_command(pool_commands),
        4,
        name="pool",
        subscribers=[metrics, events],
    )
    root = Supervisor(
        [ChildSpec("worker", on_command, args=(commands,)), ChildSpec("pool", pool)],
        max_restarts=10,
        name="root",
        subscribers=[metrics, events],
    )
    metrics.track(root)
    app = StatusApp(root, metrics=metrics.wsgi_app())
    with root, serving(app) as url:
        for command in ("crash", "return", "crash"):
            commands.put(command)
            events.wait("child_restarted", supervisor="root", child_id="worker")
        for _ in range(5):
            pool_commands.put("crash")
            events.wait("child_restarted", supervisor="root/pool")
        answer = fetch(url + "/metrics")
        snapshot = root.snapshot()

    samples = parse(answer.body.decode())
    assert 200 == answer.status
    assert (2, 1, 0) == (
        restarts(samples, "root", "abnormal"),
        restarts(samples, "root", "normal"),
        restarts(samples, "root", "heartbeat_missed"),
    )
    assert 5 == restarts(samples, "root/pool", "abnormal")
    assert len(events.of("child_restarted", supervisor="root/pool")) == sum(
        restarts(samples, "root/pool", reason) for reason in RESTART_REASONS
    )
    assert snapshot["restarts"] == sum(
        restarts(samples, "root", reason) for reason in RESTART_REASONS
    )
    assert (2, 4) == (
        children(samples, "root", "running"),
        children(samples, "root/pool", "running"),
    )
    assert 0 == samples[("greenkeep_restart_intensity_exceeded_total", (("supervisor", "root"),))]


def test_bystanders_count_with_the_reason_of_the_failure() -> None:
    """A one_for_all restart counts every child it restarted, each with the failure's reason."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    events = Events()
    commands: gevent.queue.Queue[str] = gevent.queue.Queue()
    root = Supervisor(
        [ChildSpec("a", on_command, args=(commands,)), ChildSpec("b", idle)],
        strategy="one_for_all",
        name="root",
        subscribers=[metrics, events],
    )
    with root:
        commands.put("crash")
        events.wait("child_restarted", child_id="a")
        events.wait("child_restarted", child_id="b")

    samples = scrape_registry(registry)
    assert 2 == restarts(samples, "root", "abnormal")
    assert 0 == restarts(samples, "root", "normal")


def test_intensity_exceeded_is_counted_per_level() -> None:
    """A subtree that gives up is counted there, and its restart by the parent is counted too."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    events = Events()
    commands: gevent.queue.Queue[str] = gevent.queue.Queue()
    inner = Supervisor(
        [ChildSpec("x", on_command, args=(commands,))],
        max_restarts=0,
        name="inner",
        subscribers=[metrics, events],
    )
    root = Supervisor(
        [ChildSpec("inner", inner)], max_restarts=5, name="root", subscribers=[metrics, events]
    )
    with root:
        commands.put("crash")
        events.wait("restart_intensity_exceeded", supervisor="root/inner")
        events.wait("child_restarted", supervisor="root", child_id="inner")

    samples = scrape_registry(registry)
    exceeded = "greenkeep_restart_intensity_exceeded_total"
    assert 1 == samples[(exceeded, (("supervisor", "root/inner"),))]
    assert 0 == samples[(exceeded, (("supervisor", "root"),))]
    assert 1 == restarts(samples, "root", "abnormal")
    assert 0 == restarts(samples, "root/inner", "abnormal")


def test_every_series_exists_from_the_start() -> None:
    """Each supervisor's restart series (every reason) exists at 0 once it has started."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    root = Supervisor([ChildSpec("idle", idle)], name="root", subscribers=[metrics])
    with root:
        samples = scrape_registry(registry)

    assert {"normal", "abnormal", "heartbeat_missed"} == set(RESTART_REASONS)
    assert [0.0] * len(RESTART_REASONS) == [restarts(samples, "root", r) for r in RESTART_REASONS]


def wait_for_children(registry: CollectorRegistry, supervisor: str, state: str, n: int) -> Samples:
    """Scrape *registry* until the gauge shows *n* children of *supervisor* in *state*."""
    end = time.monotonic() + DEADLINE
    while True:
        samples = scrape_registry(registry)
        key = ("greenkeep_children", (("state", state), ("supervisor", supervisor)))
        if samples.get(key) == n:
            return samples
        assert time.monotonic() < end, f"gauge {supervisor}/{state} never reached {n}"
        gevent.sleep(0.01)  # pacing between scrapes, not a wait for an outcome


def test_children_gauge_follows_the_tree_without_a_scrape() -> None:
    """Events alone keep the gauge current: children running after start, stopped after stop."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    pool = WorkerPool(idle, 5, name="pool", subscribers=[metrics])
    root = Supervisor([ChildSpec("pool", pool)], name="root", subscribers=[metrics])
    metrics.track(root)
    root.start()
    running = wait_for_children(registry, "root/pool", "running", 5)
    root.stop()
    stopped = wait_for_children(registry, "root/pool", "stopped", 5)

    assert (5, 0) == (
        children(running, "root/pool", "running"),
        children(running, "root/pool", "stopped"),
    )
    assert (0, 5, 1) == (
        children(stopped, "root/pool", "running"),
        children(stopped, "root/pool", "stopped"),
        children(stopped, "root", "stopped"),
    )
    states = {dict(labels)["state"] for name, labels in stopped if name == "greenkeep_children"}
    assert set(CHILD_STATES) == states


def test_the_subscriber_never_raises_and_labels_stay_bounded() -> None:
    """Malformed or unexpected events are absorbed; a reason outside the set counts as other."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)

    metrics({})
    metrics({"event": "child_restarted"})
    metrics(
        {
            "event": "child_exited",
            "supervisor": "s",
            "child_id": 1,
            "action": "restart",
            "reason": "ValueError: user text",
        }
    )
    metrics({"event": "child_restarted", "supervisor": "s", "child_id": 1})

    samples = scrape_registry(registry)
    assert 1 == restarts(samples, "s", "other")
    assert not [k for k in samples if "ValueError" in str(k)]


def test_invalid_arguments() -> None:
    """A bad refresh interval or tracked root raises InvalidArgumentError naming the field."""
    with pytest.raises(greenkeep.InvalidArgumentError) as interval:
        Metrics(CollectorRegistry(), refresh_interval=0)
    with pytest.raises(greenkeep.InvalidArgumentError) as root:
        Metrics(CollectorRegistry()).track("root")  # type: ignore[type-var]

    assert ("refresh_interval", "root") == (interval.value.field, root.value.field)


def test_clear_multiprocess_dir_removes_only_db_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clearing the multiprocess directory removes prometheus_client's .db files only."""
    (tmp_path / "counter_1.db").write_bytes(b"x")
    (tmp_path / "gauge_livesum_1.db").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("keep")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    removed = clear_multiprocess_dir()

    assert 2 == removed
    assert ["notes.txt"] == sorted(p.name for p in tmp_path.iterdir())


def test_multiprocess_mode_aggregates_processes(tmp_path: Path) -> None:
    """With PROMETHEUS_MULTIPROC_DIR, counters sum over processes and dead ones leave the gauge."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    script = str(APPS / "metrics_proc.py")

    def run(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, script, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert 0 == result.returncode, result.stderr[-3000:]
        return result.stdout

    first = run("produce").strip().splitlines()[-1]
    run("produce")
    both = parse(run("serve"))
    one_dead = parse(run("serve", first))

    assert 6 == restarts(both, "pool", "abnormal")
    assert 6 == children(both, "pool", "running")
    assert 6 == restarts(one_dead, "pool", "abnormal")
    assert 3 == children(one_dead, "pool", "running")


def wait_for_sample(registry: CollectorRegistry, key: tuple[Any, ...], value: float) -> None:
    """Scrape *registry* until the sample *key* has *value* (the gauges follow events)."""
    end = time.monotonic() + DEADLINE
    while scrape_registry(registry).get(key) != value:
        assert time.monotonic() < end, f"{key} never reached {value}"
        gevent.sleep(0.01)  # pacing between scrapes, not a wait for an outcome


def test_degraded_and_failing_gauges_follow_the_tree() -> None:
    """greenkeep_supervisor_degraded is 1 for a degraded pool and every supervisor above it
    (0 elsewhere), greenkeep_pool_failing_workers counts the pool's failing workers; both
    follow pool_degraded and pool_recovered without a scrape, and read 0 once recovered."""
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    clock = ManualClock()
    service = Service(TypeError)
    pool = WorkerPool(
        service.consume,
        4,
        backoff=greenkeep.Backoff.for_outside_service(),
        clock=clock,
        name="pool",
        subscribers=[metrics],
    )
    other = WorkerPool(idle, 2, name="other", subscribers=[metrics])
    root = Supervisor(
        [ChildSpec("pool", pool), ChildSpec("other", other)],
        name="root",
        clock=clock,
        subscribers=[metrics],
    )
    metrics.track(root)
    root.start()
    try:
        degraded = ("greenkeep_supervisor_degraded", (("supervisor", "root"),))
        failing = ("greenkeep_pool_failing_workers", (("supervisor", "root/pool"),))
        wait_for_sample(registry, degraded, 0.0)
        service.down.set()
        run_until(clock, pool, lambda: pool.degraded, limit=10.0)
        wait_for_sample(registry, degraded, 1.0)
        samples = scrape_registry(registry)

        assert 1.0 == samples[("greenkeep_supervisor_degraded", (("supervisor", "root/pool"),))]
        assert 0.0 == samples[("greenkeep_supervisor_degraded", (("supervisor", "root/other"),))]
        assert 4.0 == samples[failing]
        assert 0.0 == samples[("greenkeep_pool_failing_workers", (("supervisor", "root/other"),))]
        assert ("greenkeep_pool_failing_workers", (("supervisor", "root"),)) not in samples

        service.down.clear()
        run_until(clock, pool, lambda: not pool.degraded, limit=10.0)
        wait_for_sample(registry, degraded, 0.0)
        run_until(clock, pool, lambda: pool.failing == 0, limit=1.0)
        metrics.refresh()
        assert 0.0 == scrape_registry(registry)[failing]
    finally:
        root.stop(timeout=DEADLINE)
