"""
Run a root supervisor as a process's main job, and turn how it ended into an exit status.

`run` (a function) and ``python -m greenkeep module:factory`` (`main`) start the root, stop it
gracefully and within a bound on ``SIGTERM``/``SIGINT``, and return an exit status that the
process supervisor above (systemd, Kubernetes, a container runtime, gunicorn's arbiter) can
act on:

======================  =====  =============================================================
constant                value  meaning
======================  =====  =============================================================
`EXIT_OK`               0      stopped on request (a signal, or ``stop()`` from the program)
                               or ended on its own (``auto_shutdown``), every child stopped
`EXIT_FAILED`           1      could not start (``ChildStartError``), or greenkeep's manager
                               crashed
`EXIT_USAGE`            2      ``python -m greenkeep`` only: bad arguments, or the factory
                               could not be imported or did not return a supervisor
`EXIT_GAVE_UP`          70     the root exceeded its restart intensity and gave up
`EXIT_UNSTOPPED`        71     stopped, but some children did not stop within their bound
`EXIT_INTERRUPTED`      130    a worker raised ``KeyboardInterrupt`` (128 + ``SIGINT``)
======================  =====  =============================================================

Giving up takes precedence over unstopped children (a root that gave up exits 70 even if a
child also outlived its bound). Why the process ends is logged as ``runner_stopped`` with
``exit_status``, ``reason``, ``unstopped`` and ``error``, after the root's own events
(``restart_intensity_exceeded``, ``child_unstopped``, ``supervisor_stopped``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Final

import gevent
import structlog

from greenkeep._check import check_timeout
from greenkeep._errors import ChildStartError, InvalidArgumentError, RestartIntensityExceeded
from greenkeep._event_names import EventLogger
from greenkeep._events import ProcessReporter
from greenkeep._pool import WorkerPool
from greenkeep._states import RUNNING
from greenkeep._supervisor import Supervisor

__all__ = [
    "EXIT_FAILED",
    "EXIT_GAVE_UP",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_UNSTOPPED",
    "EXIT_USAGE",
    "main",
    "run",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_GAVE_UP: Final = 70
EXIT_UNSTOPPED: Final = 71
EXIT_INTERRUPTED: Final = 130

#: The default bound on a graceful stop, in seconds: under ``docker stop``'s 10 s,
#: Kubernetes' 30 s and systemd's 90 s before they send ``SIGKILL``.
DEFAULT_STOP_TIMEOUT: Final = 8.0

_DEFAULT_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)


def run(
    root: Supervisor | WorkerPool | Callable[[], Supervisor | WorkerPool],
    *,
    stop_timeout: float | None = DEFAULT_STOP_TIMEOUT,
    signals: Iterable[int] = _DEFAULT_SIGNALS,
    logger: EventLogger | None = None,
) -> int:
    """
    Run *root* until it ends or a signal asks it to stop; return the process exit status.

    Call it from the main greenlet, as the last thing a program does:
    ``raise SystemExit(greenkeep.runner.run(build_root))``. It does not call `sys.exit`,
    configure logging or monkey-patch anything.

    The first of *signals* to arrive (handled with ``gevent.signal_handler``) stops the
    root with ``stop(stop_timeout)``, requested before anything is logged (a logger that
    fails or blocks cannot keep the stop from happening): children get their stop signal,
    then ``GreenletExit``, newest first, and the whole stop is over within *stop_timeout*;
    children that did not stop by then are reported unstopped (`EXIT_UNSTOPPED`). A second
    signal hurries the stop (``stop(0)``: whoever has not stopped yet is reported unstopped
    at once). A signal that arrives while the root is starting takes effect as soon as no
    child is being started. When `run` returns, the signals' previous handlers are back.

    Args:
        root: A `Supervisor` or `WorkerPool`, or a callable that builds one (called once,
            in this process). A root that is already running is adopted; a new, stopped or
            failed one is started.

        stop_timeout: Seconds the stop may take in all; ``None`` means each child's own
            shutdown policy (a child with ``"infinity"`` may then keep the process alive).

        signals: The signals that request a stop.

        logger: The structlog logger for the runner's own events (``runner_started``,
            ``signal_received``, ``runner_stopped``); default
            ``structlog.get_logger("greenkeep")``.

    Returns:
        `EXIT_OK`, `EXIT_FAILED`, `EXIT_GAVE_UP`, `EXIT_UNSTOPPED` or `EXIT_INTERRUPTED`
        (see the module's table).

    Raises:
        InvalidArgumentError: If *root* is not a supervisor, does not build one, or
            *stop_timeout* is not ``None`` or seconds >= 0.
    """
    stop_timeout = check_timeout("run()", stop_timeout)
    root = _root(root)
    signals = tuple(signals)
    log = ProcessReporter(root.name, logger)
    with _stop_on(signals, root, stop_timeout, log):
        log.runner_started([signal.Signals(s).name for s in signals], stop_timeout)
        return _run(root, stop_timeout, log)


def _root(root: object) -> Supervisor | WorkerPool:
    if isinstance(root, (Supervisor, WorkerPool)):
        return root
    if not callable(root):
        allowed = "a Supervisor, a WorkerPool or a callable returning one"
        raise InvalidArgumentError("run()", "root", allowed, root)
    built = root()
    if not isinstance(built, (Supervisor, WorkerPool)):
        allowed = "a factory that returns a Supervisor or a WorkerPool"
        raise InvalidArgumentError("run()", "root", allowed, built)
    return built


@contextlib.contextmanager
def _stop_on(
    signals: tuple[int, ...],
    root: Supervisor | WorkerPool,
    stop_timeout: float | None,
    log: ProcessReporter,
) -> Iterator[None]:
    # While the runner runs: the first signal stops the root, the next ones hurry it; the
    # signals' previous handlers are put back at the end.
    received: list[str] = []

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        received.append(name)
        hurry = len(received) > 1
        # The stop first: whatever logging does (raise, block) cannot keep it from happening.
        root.stop(0 if hurry else stop_timeout, block=False)
        log.signal_received(name, "hurry" if hurry else "stop")

    previous = {signum: signal.getsignal(signum) for signum in signals}
    watchers = [gevent.signal_handler(signum, on_signal, signum) for signum in signals]
    try:
        yield
    finally:
        for watcher in watchers:
            watcher.cancel()
        for signum, handler in previous.items():
            # libev leaves SIG_DFL behind; put back Python's own handler (e.g. SIGINT's).
            if handler is not None:
                signal.signal(signum, handler)


def _run(root: Supervisor | WorkerPool, stop_timeout: float | None, log: ProcessReporter) -> int:
    interrupted = False
    try:
        if root.state != RUNNING:
            root.start()
        root.join()
    except ChildStartError as failure:
        return _finish(log, EXIT_FAILED, "start_failed", 0, str(failure))
    except RestartIntensityExceeded:
        pass  # the report below says so
    except KeyboardInterrupt:
        interrupted = True
    report = root.stop(stop_timeout)
    error = root.error
    unstopped = len(report.unstopped)
    if error is not None or report.reason == "restart_intensity_exceeded":
        return _finish(log, EXIT_GAVE_UP, report.reason, unstopped, str(error))
    if interrupted or report.reason == "interrupted":
        return _finish(log, EXIT_INTERRUPTED, "interrupted", unstopped, None)
    if report.reason in ("manager_crashed", "start_failed"):
        return _finish(log, EXIT_FAILED, report.reason, unstopped, None)
    if unstopped:
        children = [f"{u.path}:{u.child_id}" for u in report.unstopped]
        return _finish(log, EXIT_UNSTOPPED, "unstopped", unstopped, None, children=children)
    return _finish(log, EXIT_OK, report.reason, 0, None)


def _finish(
    log: ProcessReporter,
    status: int,
    reason: str,
    unstopped: int,
    error: str | None,
    **extra: object,
) -> int:
    level = "info" if status == EXIT_OK else "critical" if status == EXIT_GAVE_UP else "error"
    log.runner_stopped(status, level, reason=reason, unstopped=unstopped, error=error, **extra)
    return status


# ---------------------------------------------------------------------- python -m greenkeep


def main(argv: Sequence[str] | None = None) -> int:
    """
    ``python -m greenkeep [options] module:factory``: import *module*, get the root from
    *factory* (a `Supervisor`/`WorkerPool`, or a callable returning one) and `run` it.

    Options: ``--stop-timeout SECONDS`` (default 8), ``--patch`` (call
    ``gevent.monkey.patch_all()`` before importing *module*; by default nothing is
    patched), ``--log-format {auto,json,console,keep}`` and ``--log-level LEVEL``.

    Logging: if structlog is still unconfigured once *module* is imported (a module that
    calls ``structlog.configure()`` at import keeps its configuration, and so does
    ``--log-format keep``), a default is configured: events at *LEVEL* and above (default
    ``info``) to standard error, one JSON object per line (``json``) or structlog's console
    renderer (``console``); ``auto`` picks console on a terminal and JSON otherwise.

    Returns:
        The exit status (see the module's table); `EXIT_USAGE` for bad arguments or a
        factory that cannot be imported or does not build a supervisor.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on bad arguments, 0 on --help
        return int(exit_.code or 0)
    if args.stop_timeout < 0:
        parser.print_usage(sys.stderr)
        print("python -m greenkeep: --stop-timeout must be >= 0", file=sys.stderr)
        return EXIT_USAGE
    if args.patch:
        from gevent import monkey

        monkey.patch_all()
    try:
        factory = _load(args.target)
    except Exception as error:
        print(f"python -m greenkeep: cannot load {args.target!r}: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.log_format != "keep" and not structlog.is_configured():
        _configure_structlog(args.log_format, args.log_level)
    try:
        status = run(factory, stop_timeout=args.stop_timeout)  # type: ignore[arg-type]
    except InvalidArgumentError as error:
        print(f"python -m greenkeep: {args.target!r}: {error}", file=sys.stderr)
        return EXIT_USAGE
    _release_broken_streams()
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m greenkeep",
        description="Run a greenkeep root supervisor as this process's main job.",
    )
    parser.add_argument("target", metavar="module:factory", help="e.g. myapp.workers:build")
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=DEFAULT_STOP_TIMEOUT,
        metavar="SECONDS",
        help=f"bound on a graceful stop (default {DEFAULT_STOP_TIMEOUT:g})",
    )
    parser.add_argument(
        "--patch",
        action="store_true",
        help="gevent.monkey.patch_all() before importing the module (default: no patching)",
    )
    parser.add_argument(
        "--log-format", choices=("auto", "json", "console", "keep"), default="auto"
    )
    parser.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error", "critical"),
        default="info",
    )
    return parser


def _release_broken_streams() -> None:
    """Standard output or error whose reader went away (a closed pipe): point them at
    ``os.devnull``, so that the interpreter's last flush at exit cannot fail and change the
    exit status (Python's own advice for SIGPIPE)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, stream.fileno())
                os.close(devnull)
            except (OSError, ValueError):
                pass


def _load(target: str) -> object:
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError("expected module:factory, e.g. myapp.workers:build")
    obj: object = importlib.import_module(module_name)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


def _configure_structlog(log_format: str, level: str) -> None:
    """The CLI's default structlog configuration (only when the user configured none)."""
    import logging

    if log_format == "auto":
        log_format = "console" if sys.stderr.isatty() else "json"
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if log_format == "json":
        processors += [
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ]
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
