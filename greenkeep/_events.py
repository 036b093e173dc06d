"""
Every event greenkeep emits: its payload and level (`Reporter`, `ProcessReporter`), and its
delivery to the logger and to subscribers (`Emitter`). The only module that talks to
structlog; nothing here configures it. Delivery never becomes the way supervision fails:

- Subscribers are called in the emitting greenlet (a supervisor's manager), synchronously,
  in order, and receive every event. Whatever one raises (``gevent.Timeout`` included) is
  contained, counted and logged as ``event_delivery_failed``.
- The logger is called in a writer greenlet of the emitter's own. While the logger keeps up
  (never yields to the hub), the emitter switches into the writer and back for each event:
  delivery is synchronous and in order, as if the manager called the logger itself (so
  ``structlog.testing.capture_logs()`` sees every event as it happens). When a logger call
  blocks (a processor waiting on a socket, a full pipe), gevent's ``switch_out`` hook hands
  control back to the emitter at once; later events wait in a buffer of `LOG_BUFFER`, then
  are dropped and counted per event name. After `LOGGER_BLOCKED_AFTER` seconds
  ``logger_blocked`` says so; once the logger has caught up, ``events_dropped`` gives the
  counts. What the logger raises is contained, counted, and reported to subscribers.
- A sink's ``KeyboardInterrupt`` is contained the same way and also raised in the main
  greenlet (as gevent does for any greenlet), so Ctrl-C still reaches the program; a sink's
  ``SystemExit`` is contained like any other error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import gevent
import structlog
from greenlet import getcurrent
from greenlet import greenlet as _RawGreenlet

from greenkeep._event_names import EventLogger, Subscriber
from greenkeep._exits import ABNORMAL_KINDS, REASON, ExitKind, ExitRecord
from greenkeep._render import error_text
from greenkeep._storm import CrashStorms, Storm, describe

if TYPE_CHECKING:
    from gevent.hub import Hub

__all__ = ["LOGGER_BLOCKED_AFTER", "LOG_BUFFER", "Emitter", "ProcessReporter", "Reporter"]

#: Events a blocked logger's buffer holds, per emitter, before new ones are dropped.
LOG_BUFFER: Final = 1_000
#: Seconds a logger call may stay blocked before ``logger_blocked`` is reported.
LOGGER_BLOCKED_AFTER: Final = 1.0


_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
# The method structlog's filtering bound loggers have for the levels they drop.
_NOP: Final = getattr(structlog.make_filtering_bound_logger(logging.CRITICAL), "debug", None)


def _failure(sink: str, event: str, exc: BaseException) -> dict[str, Any]:
    return {"sink": sink, "failed_event": event, "error": error_text(exc)}


def _forward_interrupt(exc: BaseException) -> None:
    # A sink's KeyboardInterrupt: raise it in the main greenlet, as gevent does for any.
    if isinstance(exc, KeyboardInterrupt):
        gevent.get_hub().handle_error(getcurrent(), type(exc), exc, exc.__traceback__)


class _Writer(_RawGreenlet):
    """The greenlet an `Emitter` calls its logger in (parent: the hub)."""

    __slots__ = ("emitter",)

    emitter: Emitter

    def switch_out(self) -> None:
        # gevent calls this just before a greenlet blocks (Hub.switch): the logger call in
        # progress waits for something, so whoever waits for it goes on without it.
        self.emitter.writer_blocking()


class Emitter:
    """
    Sends events to one logger and any number of subscribers, never raising, never
    blocking the emitting greenlet for longer than the logger keeps up.

    Args:
        supervisor: Bound as ``supervisor`` on the logger; added to subscribers' dicts.
        logger: A structlog logger, or ``None`` for ``structlog.get_logger("greenkeep")``.
        subscribers: Called with every event dict.
        bind: More keys bound on the logger (e.g. ``pid``).
        wake: Tells the emitting manager that `reports` are pending; without it the
            writer logs its own reports.
    """

    def __init__(
        self,
        supervisor: str,
        logger: EventLogger | None,
        subscribers: Sequence[Subscriber],
        *,
        bind: Mapping[str, object] | None = None,
        wake: Callable[[], object] | None = None,
    ) -> None:
        self.supervisor = supervisor
        self._subscribers = tuple(subscribers)
        #: Whether any subscriber is registered.
        self.has_subscribers = bool(self._subscribers)
        #: Deliveries that raised (logger and subscribers together).
        self.failures = 0
        #: Log events dropped because the logger was blocked.
        self.dropped = 0
        #: Whether the logger has been blocked for longer than `LOGGER_BLOCKED_AFTER`.
        self.logger_blocked = False
        self._wake = wake
        self._buffer: deque[tuple[str, str, dict[str, Any]]] = deque()
        self._busy = False  # the writer is delivering (or blocked in a logger call)
        self._caller: Any = None  # the greenlet waiting for a synchronous delivery
        self._idle = True  # the writer waits for events (or has not started yet)
        self._blocked_since: float | None = None
        self._stall: Any = None
        self._drops: dict[str, int] = {}
        #: Reports (failures, a blocked logger, drops) waiting for `report`.
        self.reports: list[tuple[str, str, dict[str, Any]]] = []
        self._hub: Hub = gevent.get_hub()
        self._writer = _Writer(self._drain, self._hub)
        self._writer.emitter = self
        self._logger: Any = self._resolve(logger, dict(bind or {}))
        self._enabled = {
            level: getattr(type(self._logger), level, None) is not _NOP for level in _LEVELS
        }

    def _resolve(self, logger: EventLogger | None, bind: dict[str, object]) -> Any:
        try:
            base = logger if logger is not None else structlog.get_logger("greenkeep")
            return base.bind(supervisor=self.supervisor, **bind)
        except BaseException as exc:
            self.failures += 1
            _forward_interrupt(exc)
            return structlog.get_logger("greenkeep").bind(supervisor=self.supervisor, **bind)

    # ------------------------------------------------------------------ emitting

    def emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        """Log *event* at *level* with *fields*, then hand it to every subscriber."""
        if self._enabled[level]:
            self._log(level, event, fields)
        if self._subscribers:
            self.deliver(level, event, fields)
        if self.reports and self._caller is None and not self._busy:
            self.report()

    def deliver(self, level: str, event: str, fields: dict[str, Any]) -> None:
        """Hand *event* to the subscribers only (events the log damps)."""
        payload = {"event": event, "level": level, "supervisor": self.supervisor, **fields}
        for subscriber in self._subscribers:
            try:
                subscriber(payload)
            except BaseException as exc:
                self.failures += 1
                _forward_interrupt(exc)
                if event != "event_delivery_failed":  # never report a failed report
                    self._log("error", "event_delivery_failed", _failure("subscriber", event, exc))

    def _log(self, level: str, event: str, fields: dict[str, Any]) -> None:
        buffer = self._buffer
        if self._busy:  # the writer is blocked in a logger call (or is the caller)
            if len(buffer) < LOG_BUFFER:
                buffer.append((level, event, fields))
            else:
                self.dropped += 1
                self._drops[event] = self._drops.get(event, 0) + 1
            return
        buffer.append((level, event, fields))
        self._busy = True
        current = getcurrent()
        if current is self._hub:  # a hub callback cannot wait: the writer runs on its turn
            self._hub.loop.run_callback(self._kick)
            return
        self._caller = current
        try:
            self._writer.switch()  # back once delivered, or at once if the logger blocks
        finally:
            self._caller = None

    def _kick(self) -> None:
        # A hub callback: let a parked writer deliver what was buffered from the hub.
        if self._idle:
            self._writer.switch()

    # ------------------------------------------------------------------ the writer

    def _drain(self) -> None:
        # The writer greenlet's body: call the logger for every buffered event, in order.
        buffer = self._buffer
        while True:
            while buffer:
                level, event, fields = buffer.popleft()
                self._call(level, event, fields)
            self._busy = False
            if self._blocked_since is not None:
                self._recovered()
            caller = self._caller
            self._idle = True
            if caller is not None:
                _RawGreenlet.switch(caller)  # synchronous delivery: back to the emitter
            else:
                _RawGreenlet.switch(self._hub)  # wait for the next event
            self._idle = False

    def _call(self, level: str, event: str, fields: dict[str, Any]) -> None:
        try:
            getattr(self._logger, level)(event, **fields)
        except BaseException as exc:
            self.failures += 1
            _forward_interrupt(exc)
            if event == "event_delivery_failed":
                return  # never report a failed report
            failure = _failure("logger", event, exc)
            self.reports.append(("error", "event_delivery_failed", failure))
            with contextlib.suppress(BaseException):
                self._logger.error("event_delivery_failed", **failure)
            if self._caller is None and self._wake is not None:
                self._wake()

    def writer_blocking(self) -> None:
        # In the writer, just before a logger call blocks: release whoever waits for it.
        if self._blocked_since is None:
            self._blocked_since = time.monotonic()
            self._stall = self._hub.loop.timer(LOGGER_BLOCKED_AFTER)
            self._stall.start(self._stalled)
        caller = self._caller
        if caller is not None:
            self._hub.loop.run_callback(self._release, caller)

    def _release(self, caller: Any) -> None:
        # A hub callback: the emitter that waited for a blocked logger goes on (unless it
        # has gone on already, e.g. it was killed meanwhile).
        if self._caller is caller:
            self._caller = None
            _RawGreenlet.switch(caller)

    def _stalled(self) -> None:
        # A hub timer: the logger has been blocked for LOGGER_BLOCKED_AFTER seconds.
        if self._blocked_since is None:
            return
        self.logger_blocked = True
        blocked_for = round(time.monotonic() - self._blocked_since, 6)
        fields = {"blocked_for": blocked_for, "buffered": len(self._buffer)}
        self.reports.append(("warning", "logger_blocked", fields))
        if self._wake is not None:
            self._wake()

    def _recovered(self) -> None:
        # In the writer: the logger has caught up after blocking.
        assert self._blocked_since is not None
        blocked_for = round(time.monotonic() - self._blocked_since, 6)
        self._blocked_since = None
        self.logger_blocked = False
        if self._stall is not None:
            self._stall.close()
            self._stall = None
        if not self._drops:
            return
        counts, self._drops = self._drops, {}
        fields = {"dropped": sum(counts.values()), "counts": counts, "blocked_for": blocked_for}
        if self._wake is None:
            self._call("warning", "events_dropped", fields)
        else:
            self.reports.append(("warning", "events_dropped", fields))
            self._wake()

    # ------------------------------------------------------------------ reports, threads

    def report(self) -> None:
        """From the emitting greenlet: emit the pending reports (subscribers get every one;
        a failed logger delivery is not logged again)."""
        reports, self.reports = self.reports, []
        for level, event, fields in reports:
            if event == "event_delivery_failed":
                self.deliver(level, event, fields)
            else:
                self.emit(level, event, fields)

    def stats(self) -> dict[str, object]:
        """What snapshots show of the delivery."""
        failures, dropped, blocked = self.failures, self.dropped, self.logger_blocked
        return {"delivery_failures": failures, "dropped": dropped, "logger_blocked": blocked}

    def from_thread(self, level: str, event: str, fields: dict[str, Any], hub: Hub | None) -> None:
        """From another OS thread (gevent's monitor thread): log at once, then deliver to the
        subscribers in the hub's thread once its loop runs again. Never raises."""
        with contextlib.suppress(Exception):
            getattr(self._logger, level)(event, **fields)
        if self._subscribers and hub is not None:
            hub.loop.run_callback_threadsafe(self.deliver, level, event, fields)


_INTERRUPT: Final = ExitKind.INTERRUPTED


def _crash_text(exc: Any) -> str:
    # A crash as text; a crash posted as its storm alone keeps only its kind.
    if type(exc) is Storm:
        name = describe(exc.kind, exc.code)[0]
        return f"{name} (message not kept: this kind of crash was being summarized)"
    return error_text(exc)


class Reporter:
    """The events of one supervisor run: each payload built here, crash storms damped."""

    __slots__ = ("emitter", "storms")

    def __init__(self, emitter: Emitter, storms: CrashStorms) -> None:
        self.emitter = emitter
        self.storms = storms

    def _emit(self, level: str, event: str, **fields: Any) -> None:
        self.emitter.emit(level, event, fields)

    def _damped(self, level: str, event: str, logged: bool, **fields: Any) -> None:
        # In full, or (damped in the log, counted by a storm summary) to subscribers only.
        if logged:
            self.emitter.emit(level, event, fields)
        elif self.emitter.has_subscribers:
            self.emitter.deliver(level, event, {**fields, "summarized": True})

    def started(self, **fields: object) -> None:
        self._emit("info", "supervisor_started", **fields)

    def child_started(self, child_id: object, incarnation: int) -> None:
        self._emit("info", "child_started", child_id=child_id, incarnation=incarnation)

    def child_exited(
        self,
        child_id: object,
        incarnation: int,
        kind: ExitKind,
        exc: Any,
        action: str,
        restart: str,
        now: float,
        *,
        routine: str = "info",
        damp: bool = True,
        quiet: bool = False,
    ) -> bool:
        """
        ``child_exited``; a crash is damped by the storm filter (``damp``; ``False`` logs it
        in full). Returns whether it was logged in full (the restart that follows is then
        logged too). *routine*: the level of exits that are not crashes; *quiet*: for
        subscribers only (the workers a pool stops itself are counted, not logged).
        """
        fields: dict[str, Any] = {"child_id": child_id, "incarnation": incarnation}
        fields.update(reason=REASON[kind], restart=restart, action=action)
        heartbeat = kind is ExitKind.HEARTBEAT_MISSED
        crash = heartbeat or (exc is not None and (kind in ABNORMAL_KINDS or kind is _INTERRUPT))
        if quiet:
            if self.emitter.has_subscribers:
                self.emitter.deliver(routine, "child_exited", fields)
            return False
        if not crash:
            self.emitter.emit(routine, "child_exited", fields)
            return True
        fields["error"] = "heartbeat missed" if heartbeat else _crash_text(exc)
        if not heartbeat and type(exc) is not Storm:
            fields["exc_info"] = exc
        sample = (child_id, incarnation, fields["error"])
        if damp and kind is not _INTERRUPT and self.storms.damps(exc, heartbeat, now, sample):
            self._damped("error", "child_exited", False, **fields)
            return False
        self.emitter.emit("warning" if kind is _INTERRUPT else "error", "child_exited", fields)
        return True

    def summarized_exit(self, child_id: object, incarnation: int, restart: str, exc: Any) -> None:
        """To subscribers only: a crash the log summarizes (a pool's straight path)."""
        fields: dict[str, Any] = {"child_id": child_id, "incarnation": incarnation}
        fields.update(reason="abnormal", restart=restart, action="restart")
        fields.update(error=_crash_text(exc), summarized=True)
        if type(exc) is not Storm:
            fields["exc_info"] = exc
        self.emitter.deliver("error", "child_exited", fields)

    def restarted(
        self,
        child_id: object,
        incarnation: int,
        restarts: int | None,
        *,
        level: str = "info",
        logged: bool = True,
    ) -> None:
        fields = {"child_id": child_id, "incarnation": incarnation, "restarts_in_period": restarts}
        self._damped(level, "child_restarted", logged, **fields)

    def restart_delayed(
        self, child_id: object, incarnation: int, delay: float, attempt: int, logged: bool
    ) -> None:
        fields = {"child_id": child_id, "incarnation": incarnation, "delay": round(delay, 6)}
        self._damped("info", "child_restart_delayed", logged, **fields, attempt=attempt)

    def heartbeat_missed(self, child_id: object, incarnation: int, interval: float) -> None:
        fields = {"child_id": child_id, "incarnation": incarnation, "interval": interval}
        self._emit("warning", "heartbeat_missed", **fields)

    def unstopped(
        self, child_id: object, incarnation: int, waited: float, shutdown: object
    ) -> None:
        fields = {"child_id": child_id, "incarnation": incarnation, "waited": round(waited, 6)}
        self._emit("warning", "child_unstopped", **fields, shutdown=shutdown)

    def gave_up(
        self, record: ExitRecord, max_restarts: object, period: float, restarts: int | None
    ) -> None:
        fields = {"child_id": record.child_id, "incarnation": record.incarnation}
        fields.update(reason=record.reason, error=record.error, max_restarts=max_restarts)
        fields.update(period=period, restarts_in_period=restarts)
        self._emit("critical", "restart_intensity_exceeded", **fields)

    def stopped(self, reason: str, unstopped: int) -> None:
        calm = reason in ("shutdown", "auto_shutdown", "forked")
        level = "info" if calm else "critical" if reason == "manager_crashed" else "error"
        self._emit(level, "supervisor_stopped", reason=reason, unstopped=unstopped)

    def resized(self, size: int, previous: int) -> None:
        self._emit("info", "pool_resized", size=size, previous=previous)

    def pool_degraded(self, failing: int, size: int, failing_for: float, basis: str) -> None:
        """A pool became degraded: *failing* of its *size* workers, for *failing_for* s."""
        share = round(failing / size, 3) if size else 0.0
        fields = {"failing": failing, "size": size, "share": share}
        self._emit(
            "warning", "pool_degraded", **fields, failing_for=round(failing_for, 6), basis=basis
        )

    def pool_recovered(self, failing: int, size: int, degraded_for: float) -> None:
        """A degraded pool is no longer: it was degraded for *degraded_for* s."""
        fields = {"failing": failing, "size": size, "degraded_for": round(degraded_for, 6)}
        self._emit("info", "pool_recovered", **fields)

    def late_exit(self, child_id: object, incarnation: int, reason: str) -> None:
        """An incarnation reported unstopped has ended after all."""
        fields = {"child_id": child_id, "incarnation": incarnation, "reason": reason}
        self._emit("info", "child_exited", **fields, restart="", action="none", late=True)

    def exit_ignored(self, child_id: object, incarnation: int) -> None:
        self._emit("debug", "exit_ignored", child_id=child_id, incarnation=incarnation)

    def forked(self, workers: int) -> None:
        self._emit("warning", "supervisor_forked", pid=os.getpid(), workers=workers)

    def crashed(self, exc: BaseException) -> None:
        self._emit("critical", "supervisor_crashed", error=error_text(exc), exc_info=exc)

    def summaries(self, now: float, flush: bool = False) -> None:
        """The storm summaries due at *now* (all pending ones if *flush*), and storm ends."""
        summaries, ends = self.storms.due(now, flush)
        for s in summaries:
            fields = {"error_type": s.error_type, "location": s.location, "count": s.count}
            fields.update(total=s.total, sample_child_id=s.sample_child_id)
            fields.update(sample_incarnation=s.sample_incarnation, sample_error=s.sample_error)
            self._emit("warning", "exits_summarized", **fields, interval=self.storms.interval)
        for end in ends:
            fields = {"error_type": end.error_type, "location": end.location, "total": end.total}
            self._emit("info", "storm_ended", **fields)

    def loop_blocked(self, fields: dict[str, object], hub: Hub | None) -> None:
        """From gevent's monitor thread: ``event_loop_blocked`` (see greenkeep._blocking)."""
        self.emitter.from_thread("warning", "event_loop_blocked", dict(fields), hub)


class ProcessReporter:
    """The events of the process around a root: `greenkeep.runner` and `greenkeep.gunicorn`."""

    __slots__ = ("emitter",)

    def __init__(self, supervisor: str, logger: EventLogger | None) -> None:
        self.emitter = Emitter(supervisor, logger, (), bind={"pid": os.getpid()})

    def runner_started(self, signals: list[str], stop_timeout: float | None) -> None:
        fields = {"signals": signals, "stop_timeout": stop_timeout}
        self.emitter.emit("info", "runner_started", fields)

    def signal_received(self, signal: str, action: str) -> None:
        self.emitter.emit("info", "signal_received", {"signal": signal, "action": action})

    def runner_stopped(self, status: int, level: str, **fields: object) -> None:
        self.emitter.emit(level, "runner_stopped", {"exit_status": status, **fields})

    def worker_exit_requested(self, level: str, reason: str, error: str | None) -> None:
        self.emitter.emit(level, "worker_exit_requested", {"reason": reason, "error": error})
