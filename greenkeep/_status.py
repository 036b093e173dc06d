"""
The JSON API behind the supervision page (`greenkeep.wsgi.StatusApp`): a summary of the
tree, one supervisor's children paged, and the restart history sampled from totals.

Everything here reads what the runs already keep (states, incarnations, restart counters,
the restart window, the crash storms); nothing is added to the restart path. What records
do not keep (restarts per minute, a history for the sparklines) comes from `Samples`: the
supervisors' restart totals read whenever the API is read, at most once a second.
Building a response is O(supervisors + children of supervisors) for the summary (a pool's
workers are counted at C speed, never listed) and O(workers) for one pool's page; either is
charged to the caller (`greenkeep._snapshot.charged`), as `snapshot()` is.
"""

from __future__ import annotations

import bisect
import os
import time
from collections import Counter, deque
from collections.abc import Hashable
from operator import attrgetter
from typing import Any, Final

from greenkeep._access import HIDDEN, error_type_of, message_of, redacted_error
from greenkeep._exits import ExitRecord
from greenkeep._intensity import UnlimitedType
from greenkeep._manager import SupervisorBase
from greenkeep._pool import WorkerPool
from greenkeep._rules import child_state
from greenkeep._snapshot import charged
from greenkeep._spec import is_subtree
from greenkeep._states import RUNNING, STOPPING
from greenkeep._storm import describe
from greenkeep._supervisor import Supervisor
from greenkeep._supervisor_run import Child

__all__ = [
    "BUCKET",
    "BUCKETS",
    "MAX_LIMIT",
    "RECENT",
    "SCHEMA_VERSION",
    "SUMMARY_CHILDREN",
    "Samples",
    "View",
    "degraded_pools",
    "detail",
    "find",
    "redact_snapshot",
    "summary",
]

#: The API's schema version (``schema_version`` in every response; ``/api/v1/`` paths).
SCHEMA_VERSION: Final = 1
#: A child restarted within this many seconds (by the supervisor's clock) "restarted
#: recently": a pool's page lists it with the workers that do not run.
RECENT: Final = 60.0
#: The sparkline: this many buckets of `BUCKET` seconds (five minutes), oldest first.
BUCKETS: Final = 30
BUCKET: Final = 10.0
#: Restart totals are sampled at most this often per supervisor (seconds) ...
SAMPLE_EVERY: Final = 1.0
#: ... and kept this long.
KEEP: Final = BUCKETS * BUCKET + 60.0
#: The most supervisors and children the samples keep series for (the oldest go first).
MAX_SERIES: Final = 10_000
#: The children of a supervisor the summary lists (the rest: its page).
SUMMARY_CHILDREN: Final = 100
#: The crash kinds (storms) listed per supervisor.
MAX_STORMS: Final = 20
#: The largest page of children one request gets.
MAX_LIMIT: Final = 500
#: The default page size.
DEFAULT_LIMIT: Final = 50

Root = Supervisor | WorkerPool

_STATUS_REASON = attrgetter("status", "last_reason")
_RESTARTS = attrgetter("restarts")
_STATES: Final = ("running", "restarting", "delayed", "stopped", "failed")


class Samples:
    """
    ``(time, total)`` readings of counters (a supervisor's restarts, a child's), at most
    one per `SAMPLE_EVERY` seconds per series, kept for `KEEP` seconds, `MAX_SERIES`
    series at most. Times are the caller's (a monotonic clock).
    """

    __slots__ = ("_series",)

    def __init__(self) -> None:
        self._series: dict[Hashable, deque[tuple[float, int]]] = {}

    def record(self, key: Hashable, now: float, total: int) -> dict[str, Any]:
        """Record *total* at *now*; return ``last_minute`` (restarts in the last minute, or
        in the ``sampled_for`` seconds since sampling began if that is less) and
        ``sparkline`` (`BUCKETS` counts of `BUCKET` seconds, ``None`` before sampling)."""
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= MAX_SERIES:
                del self._series[next(iter(self._series))]
            series = self._series[key] = deque(maxlen=int(KEEP / SAMPLE_EVERY) + 2)
        elif series and total < series[-1][1]:
            series.clear()  # a new run: its counters started again from 0
        if not series or now - series[-1][0] >= SAMPLE_EVERY:
            series.append((now, total))
        while len(series) > 1 and now - series[1][0] > KEEP:
            series.popleft()
        times = [t for t, _ in series]
        totals = [n for _, n in series]
        first_t, first_n = times[0], totals[0]

        def at(t: float) -> int | None:
            # The total as of time t: the latest reading at or before t.
            i = bisect.bisect_right(times, t)
            return totals[i - 1] if i else None

        base = at(now - 60.0)
        last_minute = total - (first_n if base is None else base)
        sampled_for = 60.0 if base is not None else now - first_t
        spark: list[int | None] = []
        for i in range(BUCKETS):
            start = now - (BUCKETS - i) * BUCKET
            end = start + BUCKET
            v0 = at(start)
            if v0 is None:
                v0 = first_n if first_t <= end else None
            v1 = total if i == BUCKETS - 1 else at(end)
            spark.append(None if v0 is None or v1 is None else max(0, v1 - v0))
        return {
            "last_minute": max(0, last_minute),
            "sampled_for": round(sampled_for, 3),
            "sparkline": spark,
        }


class View:
    """What one request may see, and the samples its answer updates."""

    __slots__ = ("messages", "now", "samples")

    def __init__(self, samples: Samples, messages: bool, now: float) -> None:
        self.samples = samples
        self.messages = messages
        self.now = now

    def message(self, error: str | None) -> str | None:
        """The message of a rendered error, or `HIDDEN` (``None`` if it has none)."""
        text = message_of(error)
        if text is None or self.messages:
            return text
        return HIDDEN


def _limit(value: int | UnlimitedType) -> int | str:
    return "unlimited" if isinstance(value, UnlimitedType) else value


def exit_view(record: ExitRecord | None, now: float, view: View, tb: bool) -> Any:
    """A rendered exit as the API shows it: ``reason``, ``type``, ``message``, ``ago``
    (seconds, by the supervisor's clock), and with *tb* its ``traceback`` (if kept)."""
    if record is None:
        return None
    heartbeat = record.reason == "heartbeat_missed"
    out: dict[str, Any] = {
        "reason": record.reason,
        "type": None if heartbeat else error_type_of(record.error),
        "message": None if heartbeat else view.message(record.error),
        "ago": round(max(0.0, now - record.at), 3),
    }
    if tb:
        out["traceback"] = (
            None if record.traceback is None else record.traceback if view.messages else HIDDEN
        )
    return out


def _storms(sup: SupervisorBase[Any], view: View) -> list[dict[str, Any]]:
    run = sup._run
    if run is None:
        return []
    out = []
    for kind, storm in list(run.reporter.storms.by_kind.items())[:MAX_STORMS]:
        error_type, location = describe(kind, storm.code)
        sample = storm.sample
        out.append(
            {
                "error_type": error_type,
                "location": location,
                "total": storm.total + storm.count,
                "since_summary": storm.count,
                "sample": None
                if sample is None
                else {
                    "child_id": sample[0],
                    "incarnation": sample[1],
                    "message": view.message(sample[2]),
                },
            }
        )
    return out


def _header(sup: SupervisorBase[Any], view: View, tb: bool) -> dict[str, Any]:
    now = sup._config.clock()
    run = sup._run
    limit = sup._config.max_restarts if run is None else run.intensity.max_restarts
    if isinstance(sup, WorkerPool):
        # Every restart of every worker (a pool's straight path records restarts in its
        # window only when the budget is finite): one pass at C speed.
        total = sum(map(_RESTARTS, sup._workers()))
    else:
        total = 0 if run is None else run.intensity.total
    error = sup.error
    node: dict[str, Any] = {
        "name": sup.name,
        "path": sup.path,
        "kind": sup._kind,
        "state": sup.state,
        "max_restarts": _limit(limit),
        "period": sup._config.period,
        "restarts_in_period": 0 if run is None else run.intensity.in_period(now),
        "restarts": total,
        "restart_rate": view.samples.record(("supervisor", sup.path), view.now, total),
        "error": None
        if error is None
        else {
            "type": type(error).__name__,
            "text": str(error) if view.messages else redacted_error(error),
            "last_exit": exit_view(error.last_crash, now, view, tb),
        },
        "degraded": sup.degraded,
        "storms": _storms(sup, view),
        "events": {"delivery_failures": 0, "dropped": 0, "logger_blocked": False}
        if run is None
        else run.emitter.stats(),
    }
    if isinstance(sup, WorkerPool):
        node.update(strategy="simple_one_for_one", mode=sup.mode.value, size=sup.size)
        node["failing"] = sup.failing
    elif isinstance(sup, Supervisor):
        node["strategy"] = sup.strategy.value
    return node


def _child(sup: Supervisor, child: Child, now: float, view: View, tb: bool) -> dict[str, Any]:
    record = child.last_exit
    entry: dict[str, Any] = {
        "id": child.id,
        "type": "supervisor" if child.spec.is_supervisor else "worker",
        "restart": child.spec.restart.value,
        "state": child_state(child.status, None if record is None else record.reason),
        "incarnation": child.incarnation,
        "restarts": child.restarts,
        "restarts_last_minute": view.samples.record(
            ("child", sup.path, child.id), view.now, child.restarts
        )["last_minute"],
        "uptime": round(now - child.started_at, 3) if child.greenlet is not None else None,
        "last_exit": exit_view(record, now, view, tb),
    }
    target = child.spec.target
    if is_subtree(target) and child.incarnation:
        entry["supervisor"] = _node(target, view)  # type: ignore[arg-type]
    return entry


def pool_counts(pool: WorkerPool) -> dict[str, int]:
    """The pool's workers by state (``running``, ``restarting``, ``delayed``, ``stopped``,
    ``failed``): one pass at C speed, no per-worker object built."""
    counts = dict.fromkeys(_STATES, 0)
    for (status, reason), n in Counter(map(_STATUS_REASON, pool._workers())).items():
        counts[child_state(status, reason)] += n
    return counts


def _node(sup: Supervisor | WorkerPool, view: View) -> dict[str, Any]:
    node = _header(sup, view, tb=False)
    if isinstance(sup, WorkerPool):
        node["counts"] = pool_counts(sup)
        return node
    now = sup._config.clock()
    children = sup._children()
    counts = dict.fromkeys(_STATES, 0)
    for child in children:
        reason = None if child.last_exit is None else child.last_exit.reason
        counts[child_state(child.status, reason)] += 1
    node["counts"] = counts
    node["children_total"] = len(children)
    node["children"] = [_child(sup, c, now, view, False) for c in children[:SUMMARY_CHILDREN]]
    return node


def _envelope(view: View) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "pid": os.getpid(),
        "time": time.time(),
        "messages": view.messages,
    }


def summary(root: Root | None, view: View) -> dict[str, Any]:
    """``/api/v1/tree``: every supervisor and pool, the children of supervisors (at most
    `SUMMARY_CHILDREN` each), a pool's workers as counts by state."""
    out = _envelope(view)
    out["root"] = None if root is None else charged(lambda: _node(root, view))
    return out


def degraded_pools(root: Root) -> list[WorkerPool]:
    """The degraded pools of *root*'s tree (*root* itself if it is one), in start order:
    what makes *root* degraded. Walks only the degraded supervisors: O(their children)."""
    found: list[WorkerPool] = []

    def walk(node: Supervisor | WorkerPool) -> None:
        if not node.degraded:
            return
        if isinstance(node, WorkerPool):
            found.append(node)
            return
        for child in node._children():
            target = child.spec.target
            if isinstance(target, (Supervisor, WorkerPool)):
                walk(target)

    walk(root)
    return found


def find(root: Root, path: str) -> Supervisor | WorkerPool | None:
    """The supervisor or pool at *path* in *root*'s tree (``None`` if there is none)."""
    if root.path == path:
        return root
    node: Supervisor | WorkerPool = root
    while isinstance(node, Supervisor):
        step: Supervisor | WorkerPool | None = None
        for child in node._children():
            target = child.spec.target
            if isinstance(target, (Supervisor, WorkerPool)):
                if target.path == path:
                    return target
                if path.startswith(target.path + "/"):
                    step = target
                    break
        if step is None:
            return None
        node = step
    return None


def detail(
    sup: Supervisor | WorkerPool, view: View, offset: int, limit: int, show: str
) -> dict[str, Any]:
    """``/api/v1/supervisor``: one supervisor (with the tracebacks it keeps) and one page of
    its children: all of them (*show* ``"all"``) or those that do not run or restarted
    within `RECENT` seconds (``"attention"``, those that do not run first)."""

    def build() -> dict[str, Any]:
        out = _envelope(view)
        node = _header(sup, view, tb=True)
        now = sup._config.clock()
        cutoff = now - RECENT
        items: list[dict[str, Any]]
        if isinstance(sup, WorkerPool):
            node["counts"] = pool_counts(sup)
            workers = sup._workers()
            if show == "attention":
                down = [w for w in workers if w.status is not RUNNING and w.status != STOPPING]
                recent = [
                    w
                    for w in workers
                    if (w.status is RUNNING or w.status == STOPPING)
                    and w.restarts
                    and w.started_at >= cutoff
                ]
                chosen = down + recent
            else:
                chosen = workers
            total = len(chosen)
            items = []
            for w in chosen[offset : offset + limit]:
                live = bool(w.live)
                items.append(
                    {
                        "id": w.id,
                        "type": "worker",
                        "state": child_state(w.status, w.last_reason),
                        "incarnation": w.incarnation,
                        "restarts": w.restarts,
                        "uptime": round(now - w.started_at, 3) if live else None,
                        "restarted_ago": round(now - w.started_at, 3)
                        if live and w.restarts
                        else None,
                        "last_exit": None
                        if w.last_reason is None
                        else {"reason": w.last_reason, "type": None, "message": None},
                    }
                )
        else:
            children = sup._children()
            entries = [(c, child_state(c.status, _reason(c))) for c in children]
            if show == "attention":
                down_children = [c for c, state in entries if state != "running"]
                recent_children = [
                    c
                    for c, state in entries
                    if state == "running" and c.restarts and c.started_at >= cutoff
                ]
                chosen_children = down_children + recent_children
            else:
                chosen_children = children
            total = len(chosen_children)
            items = []
            for c in chosen_children[offset : offset + limit]:
                entry = _child(sup, c, now, view, True)
                entry.pop("supervisor", None)  # its own page
                entry["restarted_ago"] = (
                    round(now - c.started_at, 3) if c.greenlet is not None and c.restarts else None
                )
                items.append(entry)
        out["supervisor"] = node
        out["children"] = {
            "offset": offset,
            "limit": limit,
            "show": show,
            "total": total,
            "items": items,
        }
        return out

    return charged(build)


def _reason(child: Child) -> str | None:
    return None if child.last_exit is None else child.last_exit.reason


def redact_snapshot(snapshot: dict[str, Any], root: Root) -> dict[str, Any]:
    """*snapshot* (the root's, changed in place) with every supervisor's ``error`` text
    rebuilt without crash messages (see `greenkeep._access.redacted_error`)."""

    def walk(snap: dict[str, Any]) -> None:
        if snap.get("error") is not None:
            sup = find(root, snap.get("path", ""))
            snap["error"] = (sup is not None and redacted_error(sup.error)) or HIDDEN
        for child in snap.get("children", ()):
            nested = child.get("supervisor")
            if isinstance(nested, dict):
                walk(nested)

    walk(snapshot)
    return snapshot
