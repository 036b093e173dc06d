"""
Structured logs for a server process, in one call: `configure` sets structlog up to write
greenkeep's events (and the application's own structlog events) as JSON lines or console
lines, each with the process's ``pid``.

Importing greenkeep configures nothing: structlog's defaults stay until the application
calls `configure` (or its own ``structlog.configure()``). ``python -m greenkeep`` calls it
when structlog is still unconfigured once the factory's module is imported, and
`greenkeep.gunicorn.Hooks` calls it in each worker when given ``log_format``, binding the
gunicorn worker's identity (``worker``, its age: 1 for the first worker the arbiter
started, 2 for the next, ...) beside ``pid``, so two workers' lines never look alike.

    import greenkeep.logging

    greenkeep.logging.configure("json", level="info")  # to standard error
"""

from __future__ import annotations

import logging as _stdlib_logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal, TextIO

import structlog

from greenkeep._errors import InvalidArgumentError

__all__ = ["FORMATS", "LEVELS", "Format", "Level", "configure"]

#: ``"json"``: one JSON object per line; ``"console"``: structlog's console renderer (colour
#: on a terminal); ``"auto"``: console on a terminal, JSON otherwise.
Format = Literal["auto", "json", "console"]
#: The lowest level logged.
Level = Literal["debug", "info", "warning", "error", "critical"]

FORMATS: tuple[Format, ...] = ("auto", "json", "console")
LEVELS: tuple[Level, ...] = ("debug", "info", "warning", "error", "critical")


class _ProcessFields:
    """A processor: adds ``pid`` (read per event, so a forked process logs its own) and the
    fields bound by `configure`, unless the event has its own."""

    __slots__ = ("fields",)

    def __init__(self, fields: Mapping[str, object]) -> None:
        self.fields = dict(fields)

    def __call__(
        self, logger: object, method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict.setdefault("pid", os.getpid())
        for key, value in self.fields.items():
            event_dict.setdefault(key, value)
        return event_dict


def configure(
    format: Format = "auto",
    level: Level = "info",
    stream: TextIO | None = None,
    *,
    bind: Mapping[str, object] | None = None,
) -> None:
    """
    Configure structlog for this process: events at *level* and above go to *stream*
    (default: standard error, looked up now) in *format*, each with a UTC ISO timestamp, its
    level, ``pid``, the fields of *bind*, and structlog's context variables; exceptions
    passed as ``exc_info`` are rendered (a traceback string in JSON).

    Replaces any structlog configuration (call it once, early: loggers bound before keep
    working, structlog's proxies read the configuration when they are first used). Never
    called by importing greenkeep.

    Raises:
        InvalidArgumentError: *format*, *level*, *stream* (something with ``write``) or
            *bind* (a mapping with ``str`` keys) is not allowed; nothing is configured then.
    """
    owner = "greenkeep.logging.configure()"
    if format not in FORMATS:
        raise InvalidArgumentError(owner, "format", _one_of(FORMATS), format)
    if level not in LEVELS:
        raise InvalidArgumentError(owner, "level", _one_of(LEVELS), level)
    if stream is not None and not callable(getattr(stream, "write", None)):
        raise InvalidArgumentError(owner, "stream", "None or a text stream", stream)
    if bind is not None and not (
        isinstance(bind, Mapping) and all(isinstance(key, str) for key in bind)
    ):
        raise InvalidArgumentError(owner, "bind", "None or a mapping with str keys", bind)
    out = sys.stderr if stream is None else stream
    terminal = _isatty(out)
    if format == "auto":
        format = "console" if terminal else "json"
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _ProcessFields(bind or {}),
    ]
    if format == "json":
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=terminal))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            getattr(_stdlib_logging, level.upper())
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )


def _one_of(choices: tuple[str, ...]) -> str:
    return "one of " + ", ".join(repr(c) for c in choices)


def _isatty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except Exception:
        return False
