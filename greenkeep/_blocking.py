"""
Blocked event loop, attributed: when gevent's monitor thread finds the loop blocked, say
which supervised worker (supervisor, child id, incarnation) was running, for how long, and
its stack.

gevent's monitor thread is off by default; turn it on with ``GEVENT_MONITOR_THREAD_ENABLE=1``
(or ``gevent.config.monitor_thread = True`` before the hub starts), and set the threshold
with ``GEVENT_MAX_BLOCKING_TIME`` (seconds, default 0.1). greenkeep listens to gevent's
``EventLoopBlocked`` events (``zope.event``) from the first time a supervisor starts.

The listener runs in the monitor thread while the loop is blocked: it logs at once through
the supervisor's logger (so the report is out even if the loop never unblocks), and hands the
event to subscribers in the hub thread, once the loop runs again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from gevent.events import EventLoopBlocked, subscribers

from greenkeep._worker import WorkerGreenlet

__all__ = ["install"]

_lock = threading.Lock()
_installed = False
_current: dict[str, Any] = {"greenlet": None, "since": 0.0}


def install() -> None:
    """Listen for gevent's ``EventLoopBlocked`` events (idempotent, thread-safe)."""
    global _installed
    with _lock:
        if not _installed:
            subscribers.append(_on_event)
            _installed = True


def _on_event(event: object) -> None:
    # Runs in gevent's monitor thread. Must never raise.
    if not isinstance(event, EventLoopBlocked):
        return
    with contextlib.suppress(Exception):  # a failure must not break the monitor thread
        _report(event)


def _blocked_stack(lines: list[str], limit: int = 8_000) -> str:
    """The "Blocked Stack" part of gevent's report (the whole report if it has none)."""
    text = "\n".join(lines)
    start = text.find("Blocked Stack")
    if start != -1:
        end = text.find("\nInfo:", start)
        text = text[start : end if end != -1 else None]
    return text if len(text) <= limit else text[:limit] + "\n..."


def _report(event: EventLoopBlocked) -> None:
    greenlet = event.greenlet
    now = time.monotonic()
    threshold = float(event.blocking_time)
    if _current["greenlet"] is not greenlet:
        _current["greenlet"] = greenlet
        _current["since"] = now - threshold
    if type(greenlet) is not WorkerGreenlet:
        return
    child = greenlet.child
    if child is None:
        return
    fields: dict[str, object] = {
        "child_id": child.id,
        "incarnation": greenlet.incarnation,
        "blocked_for": round(now - _current["since"], 6),
        "threshold": threshold,
        "stack": _blocked_stack([str(line) for line in event.info]),
    }
    report = child.channel.on_blocked
    if report is not None:
        # EventLoopBlocked.hub is new in gevent 24.11.1; a worker's parent is its hub.
        report(fields, getattr(event, "hub", None) or greenlet.parent)
