"""
Delivering greenkeep's events: to a structlog logger and to subscriber callables.

Nothing here configures structlog. The logger is resolved when a supervisor starts: the one
passed in, else ``structlog.get_logger("greenkeep")`` as configured at that moment. A logger
or processor that raises, or a subscriber that raises, never reaches the supervisor: the
failure is reported once as ``event_delivery_failed`` and counted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import structlog

from greenkeep._render import error_text

__all__ = ["EVENT_LEVELS", "Emitter", "EventLogger", "Subscriber"]

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


#: Every event greenkeep emits, with the level it is logged at. Where an event's level
#: depends on its content, the table gives the set (see the README's event table).
EVENT_LEVELS: Final[Mapping[str, tuple[str, ...]]] = {
    "supervisor_started": ("info",),
    "child_started": ("debug", "info"),
    "child_exited": ("debug", "info", "warning", "error"),
    "child_restarted": ("debug", "info"),
    "child_unstopped": ("warning",),
    "restart_intensity_exceeded": ("critical",),
    "supervisor_stopped": ("info", "error", "critical"),
    "event_delivery_failed": ("error",),
    "exit_ignored": ("debug",),
    "exits_summarized": ("warning",),
    "heartbeat_missed": ("warning",),
    "event_loop_blocked": ("warning",),
    "supervisor_forked": ("warning",),
    # greenkeep.runner and greenkeep.gunicorn (the process around a root supervisor):
    "runner_started": ("info",),
    "signal_received": ("info",),
    "runner_stopped": ("info", "error", "critical"),
    "worker_exit_requested": ("error", "critical"),
    "child_restart_delayed": ("info",),
    "pool_resized": ("info",),
    "supervisor_crashed": ("critical",),
}


class Emitter:
    """
    Sends events to one logger and any number of subscribers, never raising.

    Runs in whatever greenlet calls it (the manager, normally); it never blocks unless a
    logger or subscriber does.
    """

    __slots__ = ("_logger", "_subscribers", "failures", "has_subscribers", "supervisor")

    def __init__(
        self,
        supervisor: str,
        logger: EventLogger | None,
        subscribers: Sequence[Subscriber],
    ) -> None:
        self.supervisor = supervisor
        self._subscribers = tuple(subscribers)
        #: Whether any subscriber is registered.
        self.has_subscribers = bool(self._subscribers)
        #: How many deliveries raised (logger and subscribers together).
        self.failures = 0
        self._logger: Any = self._resolve(logger)

    def _resolve(self, logger: EventLogger | None) -> Any:
        try:
            base = logger if logger is not None else structlog.get_logger("greenkeep")
            return base.bind(supervisor=self.supervisor)
        except Exception as exc:
            self.failures += 1
            self._report("logger", "logger_bind", exc, use_logger=False)
            return structlog.get_logger("greenkeep").bind(supervisor=self.supervisor)

    @property
    def logger(self) -> Any:
        """The bound logger events go to (``supervisor`` already bound)."""
        return self._logger

    def emit(self, level: str, event: str, /, **fields: Any) -> None:
        """Log *event* at *level* with *fields* and hand it to every subscriber."""
        try:
            getattr(self._logger, level)(event, **fields)
        except Exception as exc:
            self.failures += 1
            self._report("logger", event, exc, use_logger=True)
        if self._subscribers:
            self.deliver(level, event, fields)

    def deliver(self, level: str, event: str, fields: dict[str, Any]) -> None:
        """Hand *event* to the subscribers only (for events the log damps)."""
        payload = {"event": event, "level": level, "supervisor": self.supervisor, **fields}
        for subscriber in self._subscribers:
            try:
                subscriber(payload)
            except Exception as exc:
                self.failures += 1
                self._report("subscriber", event, exc, use_logger=True)

    def _report(self, sink: str, event: str, exc: BaseException, use_logger: bool) -> None:
        # Never delivered to subscribers (a failing subscriber would loop), and never raises.
        if not use_logger:
            return
        with contextlib.suppress(Exception):  # the logger itself is broken: nothing to tell
            self._logger.error(
                "event_delivery_failed",
                sink=sink,
                failed_event=event,
                error=error_text(exc),
            )
