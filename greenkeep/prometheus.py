"""
Prometheus metrics for supervision trees: the ``greenkeep[prometheus]`` extra.

This is the only module of greenkeep that imports ``prometheus_client``; nothing imports it
unless you do. Counters come from greenkeep's events (a `Metrics` object is a subscriber),
never from logs::

    metrics = greenkeep.prometheus.Metrics()
    root = greenkeep.Supervisor([...], subscribers=[metrics])  # each level passes it
    metrics.track(root)  # the children-by-state gauge follows this tree

Metrics (``supervisor`` is a supervisor's path, e.g. ``"root/consumers"``):

- ``greenkeep_restarts_total{supervisor, reason}``: every restart greenkeep made, labelled
  with the exit reason that caused it: ``normal``, ``abnormal`` or ``heartbeat_missed`` (the
  `ExitKind` values that can lead to a restart; a strategy's bystanders carry the reason of
  the failure that restarted them). Never free text.
- ``greenkeep_children{supervisor, state}``: children by state (``running``,
  ``restarting``, ``delayed``, ``stopped``, ``failed``), from the snapshots of tracked trees.
- ``greenkeep_restart_intensity_exceeded_total{supervisor}``: how often a supervisor gave up.
- ``greenkeep_supervisor_degraded{supervisor}``: 1 while a supervisor or pool of a tracked
  tree is degraded (running, but not ready: `SupervisorBase.degraded`), else 0.
- ``greenkeep_pool_failing_workers{supervisor}``: a pool's failing workers, as `degraded`
  counts them (`WorkerPool.failing`).

**Several processes** (gunicorn's workers) are handled as ``prometheus_client`` documents:
set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory in the environment that starts the
server (before anything imports ``prometheus_client``); counters are then summed over all
worker processes, dead ones included, and the gauges over live processes
(``multiprocess_mode="livesum"``: ``greenkeep_supervisor_degraded`` is then the number of
live processes that have it degraded; gunicorn's ``child_exit`` hook must call
`mark_process_dead`, which `greenkeep.gunicorn.Hooks` does). `Metrics.wsgi_app` serves the
aggregate of every process in that mode.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import gevent
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, make_wsgi_app
from prometheus_client import multiprocess as _multiprocess

from greenkeep._errors import InvalidArgumentError
from greenkeep._exits import ExitKind
from greenkeep._pool import WorkerPool
from greenkeep._states import DELAYED, FAILED, RESTARTING, RUNNING, STOPPED
from greenkeep._supervisor import Supervisor

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = [
    "CHILD_STATES",
    "RESTART_REASONS",
    "Metrics",
    "clear_multiprocess_dir",
    "mark_process_dead",
    "multiprocess_dir",
]

R = TypeVar("R", Supervisor, WorkerPool)

#: The ``reason`` label values of ``greenkeep_restarts_total``: the exit kinds after which
#: greenkeep restarts a child. A reason outside this set (there is none today) is counted as
#: ``"other"``, so the label set stays bounded whatever arrives.
RESTART_REASONS: Final = tuple(
    kind.value
    for kind in ExitKind
    if kind not in (ExitKind.SHUTDOWN, ExitKind.INTERRUPTED)  # these never restart
)

#: The ``state`` label values of ``greenkeep_children`` (a snapshot's child states). A state
#: outside this set is counted as ``"other"``.
CHILD_STATES: Final = (RUNNING, RESTARTING, DELAYED, STOPPED, FAILED)

#: Events after which the gauges are refreshed at once rather than within the interval.
_URGENT: Final = frozenset(
    {
        "supervisor_started",
        "supervisor_stopped",
        "restart_intensity_exceeded",
        "pool_degraded",
        "pool_recovered",
    }
)
#: Events that change some child's state.
_STATEFUL: Final = frozenset(
    {"child_started", "child_exited", "child_restarted", "child_restart_delayed", "pool_resized"}
)


def multiprocess_dir() -> str | None:
    """
    The directory of ``prometheus_client``'s multiprocess mode, or ``None`` when it is off.

    It is on when ``PROMETHEUS_MULTIPROC_DIR`` is set (to a non-empty value) in the
    environment, which must be so before anything imports ``prometheus_client``.
    """
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def clear_multiprocess_dir() -> int:
    """
    Remove ``prometheus_client``'s ``*.db`` files from the multiprocess directory, as its
    documentation asks before a multi-process server starts (gunicorn's ``on_starting``).

    Only top-level files ending in ``.db`` are removed; anything else is left alone. A no-op
    when multiprocess mode is off or the directory does not exist.

    Returns:
        How many files were removed.
    """
    path = multiprocess_dir()
    if not path or not os.path.isdir(path):
        return 0
    removed = 0
    for file in Path(path).glob("*.db"):
        if file.is_file():
            file.unlink(missing_ok=True)
            removed += 1
    return removed


def mark_process_dead(pid: int) -> None:
    """
    Tell ``prometheus_client`` that worker process *pid* has exited, so that live gauges
    (``greenkeep_children``) stop counting it. For gunicorn's ``child_exit`` hook (run in
    the arbiter). A no-op when multiprocess mode is off.
    """
    path = multiprocess_dir()
    if path:
        _multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


class Metrics:
    """
    Prometheus metrics fed by greenkeep's events: pass the object as a subscriber to every
    supervisor whose restarts should be counted, and `track` the root for the gauge.

    Args:
        registry: Where the metrics are registered; ``None`` means ``prometheus_client``'s
            default ``REGISTRY``. Metric names are fixed, so one registry holds at most one
            `Metrics` (a second raises ``ValueError`` from ``prometheus_client``): create
            one per process, at module level, and pass it to every supervisor.

        refresh_interval: The children-by-state gauge is recomputed from the tracked
            trees' snapshots at most this often (seconds) while events arrive, at once when
            a supervisor starts, stops or gives up, and before every scrape served by
            `wsgi_app`. A snapshot costs O(children); raise this for very large pools under
            crash storms.

    Calling the object (what a supervisor does with a subscriber) never raises and never
    blocks: it updates counters and at most schedules a refresh in its own greenlet.

    Raises:
        InvalidArgumentError: If *refresh_interval* is not a number > 0.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, refresh_interval: float = 1.0
    ) -> None:
        if (
            isinstance(refresh_interval, bool)
            or not isinstance(refresh_interval, (int, float))
            or not refresh_interval > 0
        ):
            raise InvalidArgumentError(
                "Metrics", "refresh_interval", "a number of seconds > 0", refresh_interval
            )
        self._registry = REGISTRY if registry is None else registry
        self._interval = float(refresh_interval)
        #: ``greenkeep_restarts_total{supervisor, reason}``.
        self.restarts = Counter(
            "greenkeep_restarts",
            "Restarts of supervised children, by supervisor path and the exit reason "
            "that caused them.",
            ["supervisor", "reason"],
            registry=self._registry,
        )
        #: ``greenkeep_restart_intensity_exceeded_total{supervisor}``.
        self.intensity_exceeded = Counter(
            "greenkeep_restart_intensity_exceeded",
            "Times a supervisor exceeded its restart intensity and gave up.",
            ["supervisor"],
            registry=self._registry,
        )
        #: ``greenkeep_children{supervisor, state}``.
        self.children = Gauge(
            "greenkeep_children",
            "Children of each supervisor by state.",
            ["supervisor", "state"],
            registry=self._registry,
            multiprocess_mode="livesum",
        )
        #: ``greenkeep_supervisor_degraded{supervisor}``.
        self.degraded = Gauge(
            "greenkeep_supervisor_degraded",
            "1 while a supervisor or pool is running but degraded (not ready), else 0 "
            "(summed over live processes in multiprocess mode).",
            ["supervisor"],
            registry=self._registry,
            multiprocess_mode="livesum",  # ("livemax" needs prometheus_client 0.15)
        )
        #: ``greenkeep_pool_failing_workers{supervisor}``.
        self.failing = Gauge(
            "greenkeep_pool_failing_workers",
            "Workers of each pool that are failing (waiting for a delayed restart, or "
            "crashing), as its degraded state counts them.",
            ["supervisor"],
            registry=self._registry,
            multiprocess_mode="livesum",
        )
        self._restart_children: dict[tuple[str, str], Counter] = {}
        self._known: set[str] = set()
        # supervisor -> {child_id: reason of its exit that a restart will follow}, and the
        # reason of the last failure that asked for a restart (for a strategy's bystanders).
        self._causes: dict[str, dict[object, str]] = {}
        self._last_cause: dict[str, str] = {}
        self._roots: list[Supervisor | WorkerPool] = []
        self._seen_paths: set[str] = set()
        self._seen_pools: set[str] = set()
        self._other_paths: set[str] = set()  # supervisors with a child in an unknown state
        self._last_refresh = -float("inf")
        self._timer: gevent.Greenlet[[], None] | None = None
        self._timer_due = 0.0
        #: How many event updates or refreshes raised (swallowed: metrics never hurt the tree).
        self.failures = 0

    # ------------------------------------------------------------------ the subscriber

    def __call__(self, event: Mapping[str, object]) -> None:
        """Count one greenkeep event (a subscriber's job). Never raises."""
        try:
            self._count(event)
        except Exception:  # a subscriber must not hurt the supervisor
            self.failures += 1

    def _count(self, event: Mapping[str, object]) -> None:
        name = event.get("event")
        supervisor = str(event.get("supervisor"))
        if supervisor not in self._known:
            self._init_labels(supervisor)
        if name == "child_exited":
            if event.get("action") == "restart":
                reason = _bounded(event.get("reason"), RESTART_REASONS)
                self._causes.setdefault(supervisor, {})[event.get("child_id")] = reason
                self._last_cause[supervisor] = reason
        elif name == "child_restarted":
            causes = self._causes.get(supervisor)
            cause = causes.pop(event.get("child_id"), None) if causes else None
            if cause is None:
                cause = self._last_cause.get(supervisor, "other")
            self._restart_counter(supervisor, cause).inc()
        elif name == "restart_intensity_exceeded":
            self.intensity_exceeded.labels(supervisor).inc()
        elif name == "supervisor_stopped":
            self._causes.pop(supervisor, None)
            self._last_cause.pop(supervisor, None)
        if self._roots:
            if name in _URGENT:
                self._schedule(urgent=True)
            elif name in _STATEFUL:
                self._schedule(urgent=False)

    def _init_labels(self, supervisor: str) -> None:
        # Every series exists from the first event on, at 0, so rate() works from the start.
        self._known.add(supervisor)
        for reason in RESTART_REASONS:
            self._restart_counter(supervisor, reason)
        self.intensity_exceeded.labels(supervisor)

    def _restart_counter(self, supervisor: str, reason: str) -> Counter:
        key = (supervisor, reason)
        counter = self._restart_children.get(key)
        if counter is None:
            counter = self._restart_children[key] = self.restarts.labels(supervisor, reason)
        return counter

    # ------------------------------------------------------------------ the gauge

    def track(self, root: R) -> R:
        """
        Follow *root*'s tree (nested supervisors included) in the gauges:
        ``greenkeep_children``, ``greenkeep_supervisor_degraded`` and
        ``greenkeep_pool_failing_workers``.

        Tracking several roots is allowed; tracking the same root twice is a no-op. The
        gauge is refreshed right away, then as described in the class docstring. Returns
        *root*, so ``root = metrics.track(Supervisor(...))`` works.

        Raises:
            InvalidArgumentError: If *root* is not a `Supervisor` or a `WorkerPool`.
        """
        if not isinstance(root, (Supervisor, WorkerPool)):
            raise InvalidArgumentError(
                "Metrics.track", "root", "a Supervisor or a WorkerPool", root
            )
        if not any(r is root for r in self._roots):
            self._roots.append(root)
        self.refresh()
        return root

    def refresh(self) -> None:
        """
        Recompute the gauges from the tracked trees' snapshots, now.

        Every state of every supervisor seen so far is set (0 where none is in it), so a
        supervisor that left the tree reads 0 rather than its last value (as do its
        degraded and failing gauges). Never blocks.
        """
        counts: dict[str, dict[str, int]] = {}
        degraded: dict[str, bool] = {}
        failing: dict[str, int] = {}
        for root in self._roots:
            _count_states(root.snapshot(), counts, degraded, failing)
        self._last_refresh = time.monotonic()
        self._seen_paths.update(counts)
        self._seen_pools.update(failing)
        for path in self._seen_paths:
            self.degraded.labels(path).set(1 if degraded.get(path) else 0)
        for path in self._seen_pools:
            self.failing.labels(path).set(failing.get(path, 0))
        for path in self._seen_paths:
            states = counts.get(path, {})
            for state in (*CHILD_STATES, "other"):
                value = states.get(state, 0)
                if state == "other" and not value and path not in self._other_paths:
                    continue
                if state == "other":
                    self._other_paths.add(path)
                self.children.labels(path, state).set(value)

    def _refresh_safely(self) -> None:
        try:
            self.refresh()
        except Exception:
            self.failures += 1

    def _schedule(self, urgent: bool) -> None:
        if not urgent and self._timer is not None:
            return  # the hot path under a crash storm: a refresh is already scheduled
        now = time.monotonic()
        due = now if urgent else max(now, self._last_refresh + self._interval)
        timer = self._timer
        if timer is not None:
            if self._timer_due <= due:
                return  # one is already due soon enough
            timer.kill(block=False)
        self._timer_due = due
        self._timer = gevent.spawn_later(due - now, self._scheduled_refresh)
        self._timer.name = "greenkeep.prometheus.refresh"

    def _scheduled_refresh(self) -> None:
        self._timer = None
        self._refresh_safely()

    # ------------------------------------------------------------------ exposition

    def wsgi_app(self) -> WSGIApplication:
        """
        A WSGI application serving the metrics in Prometheus' text exposition format (or
        OpenMetrics, by content negotiation), for ``GET`` on any path it is mounted at.

        The gauge is refreshed before each scrape. In multiprocess mode (see
        `multiprocess_dir`) it serves the aggregate of every process's metrics from that
        directory, as ``prometheus_client`` documents, not this object's registry;
        otherwise it serves the registry the metrics are in (with whatever else is
        registered there).
        """
        path = multiprocess_dir()
        if path:
            registry = CollectorRegistry()
            _multiprocess.MultiProcessCollector(registry, path)  # type: ignore[no-untyped-call]
        else:
            registry = self._registry
        inner = make_wsgi_app(registry)

        def metrics_app(
            environ: WSGIEnvironment, start_response: StartResponse
        ) -> Iterable[bytes]:
            if environ.get("REQUEST_METHOD") == "GET":
                self._refresh_safely()
            result: Iterable[bytes] = inner(environ, start_response)
            return result

        return metrics_app


def _bounded(value: object, allowed: tuple[str, ...]) -> str:
    return value if isinstance(value, str) and value in allowed else "other"


def _count_states(
    snapshot: Mapping[str, object],
    counts: dict[str, dict[str, int]],
    degraded: dict[str, bool],
    failing: dict[str, int],
) -> None:
    path = str(snapshot.get("path"))
    states = counts.setdefault(path, {})
    degraded[path] = snapshot.get("degraded") is True
    pool_failing = snapshot.get("failing")
    if isinstance(pool_failing, int) and not isinstance(pool_failing, bool):
        failing[path] = pool_failing
    children = snapshot.get("children")
    if not isinstance(children, list):
        return
    for child in children:
        state = _bounded(child.get("state"), CHILD_STATES)
        states[state] = states.get(state, 0) + 1
        nested = child.get("supervisor")
        if isinstance(nested, Mapping):
            _count_states(nested, counts, degraded, failing)
