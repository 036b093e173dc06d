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
                               or ended on its own (``auto_shutdown``), every child stopped;
                               also ``python -m greenkeep --help`` and ``--version``
`EXIT_FAILED`           1      could not start (``ChildStartError``; for ``python -m
                               greenkeep`` also: importing the module or calling the factory
                               raised), or greenkeep's manager crashed
`EXIT_USAGE`            2      ``python -m greenkeep`` only: bad arguments, or the target does
                               not exist (no such module or attribute) or is not a root:
                               neither a supervisor nor a callable with no required
                               arguments that returns one
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
import inspect
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final

import gevent
import structlog

import greenkeep.logging
from greenkeep._check import check_logger, check_timeout, required_arguments
from greenkeep._errors import ChildStartError, InvalidArgumentError, RestartIntensityExceeded
from greenkeep._event_names import EventLogger
from greenkeep._events import ProcessReporter
from greenkeep._pool import WorkerPool
from greenkeep._render import error_text, safe_repr, safe_str, type_name
from greenkeep._states import RUNNING
from greenkeep._supervisor import Supervisor
from greenkeep._version import __version__

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
        root: A `Supervisor` or `WorkerPool`, or a callable with no required arguments that
            builds one (called once, in this process; what it raises propagates
            unchanged). A root that is already running is adopted; a new, stopped or failed
            one is started.

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
        InvalidArgumentError: If *root* is not a supervisor, is a callable with required
            arguments (such as a WSGI application; it is not called), returns something
            else than a supervisor, *stop_timeout* is not ``None`` or seconds >= 0,
            *signals* is not an iterable of signal numbers that can be handled, or *logger*
            is not ``None`` or a structlog logger. Arguments are checked before *root* is
            built or anything starts.
    """
    stop_timeout = check_timeout("run()", stop_timeout, "stop_timeout")
    signals = _signals(signals)
    check_logger("run()", logger)
    root = _root(root)
    log = ProcessReporter(root.name, logger)
    with _stop_on(signals, root, stop_timeout, log):
        log.runner_started([_signal_name(s) for s in signals], stop_timeout)
        return _run(root, stop_timeout, log)


#: What a root may be given as, in `run` and ``python -m greenkeep``'s usage errors.
_ALLOWED_ROOT: Final = (
    "a Supervisor, a WorkerPool or a callable with no required arguments returning one"
)


def _signals(signals: object) -> tuple[int, ...]:
    """*signals* as a tuple of signal numbers that a handler can be installed for."""
    catchable = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
    allowed = "an iterable of signal numbers that can be handled (not SIGKILL or SIGSTOP)"
    if isinstance(signals, (str, bytes)):
        raise InvalidArgumentError("run()", "signals", allowed, signals)
    try:
        numbers: tuple[object, ...] = tuple(signals)  # type: ignore[arg-type]
    except TypeError:
        raise InvalidArgumentError("run()", "signals", allowed, signals) from None
    checked: list[int] = []
    for number in numbers:
        if not (isinstance(number, int) and not isinstance(number, bool) and number in catchable):
            raise InvalidArgumentError("run()", "signals", allowed, signals)
        checked.append(number)
    return tuple(checked)


def _signal_name(signum: int) -> str:
    """``"SIGTERM"``; ``"SIGRTMIN+1"`` for a real-time signal; the number for a signal the
    running Python has no name for (``signal.Signals`` lacks some that the OS has, e.g.
    16, ``SIGSTKFLT``, before CPython 3.11). Never raises."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        pass
    low, high = getattr(signal, "SIGRTMIN", None), getattr(signal, "SIGRTMAX", None)
    if low is not None and high is not None and low < signum < high:
        return f"SIGRTMIN+{signum - low}"
    return str(signum)


def _root(root: object) -> Supervisor | WorkerPool:
    if isinstance(root, (Supervisor, WorkerPool)):
        return root
    if not callable(root) or required_arguments(root):
        # Refused before the call: calling, e.g., a WSGI application with no arguments
        # would raise a TypeError that says nothing about run().
        raise InvalidArgumentError("run()", "root", _ALLOWED_ROOT, root)
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
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        hurry = len(received) > 1
        # The stop first: whatever logging does (raise, block) cannot keep it from happening.
        root.stop(0 if hurry else stop_timeout, block=False)
        log.signal_received(_signal_name(signum), "hurry" if hurry else "stop")

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
    *factory* (a `Supervisor`/`WorkerPool`, or a callable with no required arguments
    returning one) and `run` it.

    The target is checked at the door, before anything starts (no signal handler, no
    ``runner_started``): one that is not a root is a usage error, said on one line of
    standard error that names it, what is allowed and what arrived (a WSGI application,
    ``def application(environ, start_response)``, is refused without being called; a
    factory that returned ``None`` is named with what it returned).

    A module whose import raises (a syntax error, a dependency that is not installed, its
    own code) and a factory that raises are the program's own code failing, not usage
    errors: the traceback (which says where) goes to standard error, then one line naming
    the target, and the status is `EXIT_FAILED`, like a root that could not start. Only a
    target that does not exist (no such module, package or attribute) is a usage error.

    Options: ``--version`` (prints ``greenkeep <version>``, status 0), ``--stop-timeout
    SECONDS`` (>= 0, default 8), ``--patch`` (call ``gevent.monkey.patch_all()`` before
    importing *module*; by default nothing is patched), ``--log-format
    {auto,json,console,keep}`` and ``--log-level LEVEL``; ``--help`` says what each does.

    Logging: if structlog is still unconfigured once *module* is imported (a module that
    calls ``structlog.configure()`` at import keeps its configuration, and so does
    ``--log-format keep``), a default is configured: events at *LEVEL* and above (default
    ``info``) to standard error, one JSON object per line (``json``) or structlog's console
    renderer (``console``); ``auto`` picks console on a terminal and JSON otherwise
    (`greenkeep.logging.configure`, with ``pid`` on every line).

    Returns:
        The exit status, as in the module's table:

        - `EXIT_OK` (0): the root stopped on a signal or on request, or ended on its own,
          every child stopped; also ``--help`` and ``--version``.
        - `EXIT_FAILED` (1): the module's import or the factory raised (traceback, then one
          line), a child failed while starting, or greenkeep's manager crashed.
        - `EXIT_USAGE` (2): bad arguments (argparse's usage line, then one line), or a
          target that does not exist or is not a root (one line); nothing was started.
        - `EXIT_GAVE_UP` (70): the root exceeded its restart intensity and gave up.
        - `EXIT_UNSTOPPED` (71): stopped, but some children outlived ``--stop-timeout``.
        - `EXIT_INTERRUPTED` (130): a worker raised ``KeyboardInterrupt``.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse exits 2 on bad arguments, 0 on --help
        return int(exit_.code or 0)
    if args.patch:
        from gevent import monkey

        monkey.patch_all()
    try:
        target = _load(args.target)
    except _UsageError as error:
        return _usage_error(str(error))
    except Exception as error:
        return _failed(args.target, f"importing it raised {error_text(error)}", error)
    if args.log_format != "keep" and not structlog.is_configured():
        greenkeep.logging.configure(args.log_format, args.log_level)
    try:
        root = _build(args.target, target)
    except _UsageError as error:
        return _usage_error(str(error))
    except Exception as error:
        return _failed(args.target, f"its factory raised {error_text(error)}", error)
    status = run(root, stop_timeout=args.stop_timeout)
    _release_broken_streams()
    return status


class _UsageError(Exception):
    """What is wrong with ``python -m greenkeep``'s arguments (`main` says it on one line
    and returns `EXIT_USAGE`)."""


def _usage_error(message: str) -> int:
    """Say *message* on one line of standard error (newlines in it become spaces); return
    `EXIT_USAGE`."""
    print("python -m greenkeep: " + " ".join(message.splitlines()), file=sys.stderr)
    return EXIT_USAGE


def _failed(target: str, what: str, error: BaseException) -> int:
    """The user's code raised *error* before anything started: its traceback, then one line
    naming *target* and saying *what* failed; return `EXIT_FAILED`."""
    traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    line = f"{target!r} failed: {what}; nothing was started"
    print("python -m greenkeep: " + " ".join(line.splitlines()), file=sys.stderr)
    return EXIT_FAILED


def _build(target: str, obj: object) -> Supervisor | WorkerPool:
    """
    The root that *obj* (what *target* names) is or builds, checked at the door, before
    anything starts: a `Supervisor` or `WorkerPool` is taken as it is; a callable with no
    required arguments is called once (in this process) and must return one.

    Raises:
        _UsageError: If *obj* is neither, or its call returned something else.
        Exception: Whatever the call raised, unchanged: the user's code failed.
    """
    if isinstance(obj, (Supervisor, WorkerPool)):
        return obj
    if not callable(obj):
        raise _UsageError(_not_a_root(target, _describe(obj)))
    required = required_arguments(obj)
    if required:
        got = f"{_describe(obj)}, which requires arguments: {', '.join(required)}"
        raise _UsageError(_not_a_root(target, got))
    built = obj()
    if not isinstance(built, (Supervisor, WorkerPool)):
        got = f"{_describe(obj)}, which returned {_describe(built)}"
        raise _UsageError(_not_a_root(target, got))
    return built


def _not_a_root(target: str, got: str) -> str:
    return f"module:factory {target!r} must be {_ALLOWED_ROOT} (got {got})"


def _describe(value: object) -> str:
    """
    What arrived, in a usage error: ``None``; a callable's kind, name and signature
    (``function application(environ, start_response)``); anything else's type and repr
    (``int 3``). Bounded; never raises.
    """
    if value is None:
        return "None"
    try:
        name = getattr(value, "__qualname__", None)
        if callable(value) and isinstance(name, str):
            kind = "class" if isinstance(value, type) else type_name(value)
            return safe_str(f"{kind} {name}{inspect.signature(value)}", 300)
    except Exception:
        pass  # no readable signature: the repr below
    return f"{type_name(value)} {safe_repr(value)}"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m greenkeep",
        description="Run a greenkeep root supervisor as this process's main job.",
    )
    parser.add_argument(
        "target",
        metavar="module:factory",
        help="the root: a Supervisor or WorkerPool, or a callable with no required arguments "
        "returning one, e.g. myapp.workers:build",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"greenkeep {__version__}",
        help="print greenkeep's version (greenkeep X.Y.Z) and exit",
    )
    parser.add_argument(
        "--stop-timeout",
        type=_seconds,
        default=DEFAULT_STOP_TIMEOUT,
        metavar="SECONDS",
        help=f"bound on a graceful stop, >= 0 (default {DEFAULT_STOP_TIMEOUT:g}); children "
        "still running then are reported unstopped (exit status 71)",
    )
    parser.add_argument(
        "--patch",
        action="store_true",
        help="gevent.monkey.patch_all() before importing the module (default: no patching)",
    )
    parser.add_argument(
        "--log-format",
        choices=(*greenkeep.logging.FORMATS, "keep"),
        default="auto",
        help="how to log when the module configured no structlog: json: one JSON object per "
        "line on stderr; console: structlog's console renderer on stderr; auto: console on "
        "a terminal, json otherwise (default); keep: configure nothing (structlog's own "
        "defaults)",
    )
    parser.add_argument(
        "--log-level",
        choices=greenkeep.logging.LEVELS,
        default="info",
        help="the lowest level logged, when greenkeep configures logging (default info)",
    )
    return parser


def _seconds(text: str) -> float:
    """``--stop-timeout``'s value: a number of seconds >= 0 (``inf`` too); argparse turns
    the error into a usage error that names the option."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be a number of seconds >= 0 (got {text!r})")
    return seconds


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
    """
    The object that *target* (``module:attribute``, the attribute possibly dotted) names,
    importing its module.

    Raises:
        _UsageError: If *target* is not of that form (a relative module too), its module
            (or a package on its path) does not exist, or the attribute does not.
        Exception: Whatever else importing the module raised, unchanged: the module's own
            code failed (a module it imports that is missing, too).
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute or module_name.startswith("."):
        raise _UsageError(
            f"cannot load {target!r}: expected module:factory with an absolute module name, "
            "e.g. myapp.workers:build"
        )
    try:
        obj: object = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if not _on_the_path(module_name, error.name):
            raise
        raise _UsageError(f"cannot load {target!r}: {error}") from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as error:
            raise _UsageError(f"cannot load {target!r}: {error}") from None
    return obj


def _on_the_path(module_name: str, missing: str | None) -> bool:
    """Whether the *missing* module is *module_name* or one of its packages (the target is
    wrong), rather than something the module's own code imports."""
    return missing is not None and (
        module_name == missing or module_name.startswith(missing + ".")
    )
