"""
The vocabulary of greenkeep's events: every event's name and the levels it is logged at,
what a logger must offer, and what a subscriber is. `greenkeep._events` builds and delivers
the events themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

__all__ = ["EVENT_LEVELS", "EventLogger", "Subscriber"]

#: A subscriber receives every event as a dict: ``event`` (the name), ``level``,
#: ``supervisor`` and the event's keys, ``exc_info`` included where the event has one (a
#: live exception: do not keep it). Subscribers run in the supervisor's manager greenlet:
#: they must be quick and must not block.
Subscriber = Callable[[Mapping[str, Any]], object]


class EventLogger(Protocol):
    """What greenkeep needs from a logger: structlog's level methods and ``bind``."""

    def bind(self, **new_values: Any) -> Any: ...
    def debug(self, event: str, **kw: Any) -> Any: ...
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...
    def critical(self, event: str, **kw: Any) -> Any: ...


#: Every event greenkeep emits, with the level(s) it is logged at (see the README's table).
EVENT_LEVELS: Final[Mapping[str, tuple[str, ...]]] = {
    "supervisor_started": ("info",),
    "child_started": ("debug", "info"),
    "child_exited": ("debug", "info", "warning", "error"),
    "child_restarted": ("debug", "info"),
    "child_restart_delayed": ("info",),
    "child_unstopped": ("warning",),
    "restart_intensity_exceeded": ("critical",),
    "supervisor_stopped": ("info", "error", "critical"),
    "exits_summarized": ("warning",),
    "storm_ended": ("info",),
    "heartbeat_missed": ("warning",),
    "event_loop_blocked": ("warning",),
    "exit_ignored": ("debug",),
    "pool_resized": ("info",),
    "pool_degraded": ("warning",),
    "pool_recovered": ("info",),
    "supervisor_forked": ("warning",),
    "supervisor_crashed": ("critical",),
    "event_delivery_failed": ("error",),
    "logger_blocked": ("warning",),
    "events_dropped": ("warning",),
    # greenkeep.runner and greenkeep.gunicorn (the process around a root supervisor):
    "runner_started": ("info",),
    "signal_received": ("info",),
    "runner_stopped": ("info", "error", "critical"),
    "worker_exit_requested": ("error", "critical"),
    # greenkeep.wsgi.StatusApp's controls:
    "control_action": ("info", "warning"),
    "control_refused": ("warning",),
}
