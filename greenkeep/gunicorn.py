"""
gunicorn server hooks: one root supervisor in every worker process of ``gunicorn -k gevent``.

A supervisor belongs to one process. `Hooks` builds the root in each worker process, after
gunicorn's gevent worker has monkey-patched and re-initialised the hub
(``post_worker_init``), and stops it when the worker exits (``worker_exit``). A root is
never inherited from the arbiter: the factory runs in the worker, and a root that is
already running there when the factory returns it is refused. With ``--preload`` the
application module is imported once in the arbiter and forked; it must therefore build no
supervisor at import, only define the factory.

When a worker's root ends on its own (it gave up, or ``auto_shutdown``), the worker stops
accepting requests and exits, and the arbiter replaces it with a fresh worker and a fresh
root: the process-level escalation that OTP leaves to the next supervisor up. A worker whose
root gave up exits with status `greenkeep.runner.EXIT_GAVE_UP` (70), which the arbiter logs
("Worker (pid:…) exited with code 70").

Recipe (``gunicorn.conf.py``)::

    import greenkeep.gunicorn

    worker_class = "gevent"
    hooks = greenkeep.gunicorn.Hooks("myapp:build_root", stop_timeout=8)
    on_starting = hooks.on_starting
    post_worker_init = hooks.post_worker_init
    worker_exit = hooks.worker_exit
    child_exit = hooks.child_exit

and in ``myapp.py``, the status endpoints in the same application::

    app = greenkeep.wsgi.StatusApp(greenkeep.gunicorn.current_root, app=my_wsgi_app)

Nothing here imports gunicorn; ``prometheus_client`` is imported (through
`greenkeep.prometheus`) only when ``PROMETHEUS_MULTIPROC_DIR`` is set.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable
from typing import Any, Protocol

import gevent

import greenkeep.logging
from greenkeep._check import check_logger, check_timeout, required_arguments
from greenkeep._errors import InvalidArgumentError, RestartIntensityExceeded
from greenkeep._event_names import EventLogger
from greenkeep._events import ProcessReporter
from greenkeep._pool import WorkerPool
from greenkeep._states import RUNNING, STARTING, STOPPING
from greenkeep._supervisor import Supervisor
from greenkeep.runner import DEFAULT_STOP_TIMEOUT, EXIT_GAVE_UP

__all__ = ["GunicornWorker", "Hooks", "current_root"]

_root: Supervisor | WorkerPool | None = None
_root_pid = 0


def current_root() -> Supervisor | WorkerPool | None:
    """
    The root supervisor that `Hooks.post_worker_init` started in this process, or ``None``:
    in the arbiter, in a worker before the hook ran or after ``worker_exit`` stopped it, and
    in any process forked from one that had a root (a root is per process).

    Pass the function itself (not its result) to `greenkeep.wsgi.StatusApp`.
    """
    if _root is not None and _root_pid == os.getpid():
        return _root
    return None


class GunicornWorker(Protocol):
    """What the hooks use of a gunicorn worker object."""

    pid: int
    alive: bool


#: What `Hooks` takes as its factory, in its errors.
_ALLOWED_FACTORY = (
    "a callable with no required arguments returning a Supervisor or WorkerPool, "
    "or 'module:attribute' naming one"
)


class Hooks:
    """
    gunicorn server hooks that run one root supervisor in every gevent worker process.

    Assign its methods to the hooks of the same name in a gunicorn configuration file (see
    the module's recipe).

    Args:
        factory: What builds the root in each worker: a callable returning a `Supervisor`
            or `WorkerPool`, or its import path ``"module:attribute"`` (imported in the
            worker, after gevent's monkey-patching). It must return a supervisor that has
            not been started.

        stop_timeout: Bound in seconds on stopping the root when the worker exits
            (``None``: each child's own policy). gunicorn first drains requests for up to
            its ``graceful_timeout`` and kills a worker that is still alive after that, so
            keep request time plus *stop_timeout* below ``graceful_timeout`` (30 s by
            default).

        logger: The structlog logger for the hooks' own events; default
            ``structlog.get_logger("greenkeep")``.

        log_format: ``None`` (default): the hooks configure no logging. ``"json"``,
            ``"console"`` or ``"auto"``: each worker calls `greenkeep.logging.configure`
            with it in ``post_worker_init``, before it builds the root, binding ``worker``
            (the gunicorn worker's age: 1, 2, ... in the order the arbiter started them)
            beside ``pid``.

        log_level: The lowest level logged when *log_format* is given (default
            ``"info"``).

    Raises:
        InvalidArgumentError: If an argument is not allowed.
    """

    def __init__(
        self,
        factory: Callable[[], Supervisor | WorkerPool] | str,
        *,
        stop_timeout: float | None = DEFAULT_STOP_TIMEOUT,
        logger: EventLogger | None = None,
        log_format: greenkeep.logging.Format | None = None,
        log_level: greenkeep.logging.Level = "info",
    ) -> None:
        if not (callable(factory) or (isinstance(factory, str) and ":" in factory)) or (
            callable(factory) and required_arguments(factory)
        ):
            raise InvalidArgumentError("Hooks", "factory", _ALLOWED_FACTORY, factory)
        check_logger("Hooks", logger)
        if log_format is not None and log_format not in greenkeep.logging.FORMATS:
            allowed = "None or one of " + ", ".join(map(repr, greenkeep.logging.FORMATS))
            raise InvalidArgumentError("Hooks", "log_format", allowed, log_format)
        if log_level not in greenkeep.logging.LEVELS:
            allowed = "one of " + ", ".join(map(repr, greenkeep.logging.LEVELS))
            raise InvalidArgumentError("Hooks", "log_level", allowed, log_level)
        self._log_format = log_format
        self._log_level = log_level
        self._factory = factory
        self._stop_timeout = check_timeout("Hooks", stop_timeout, "stop_timeout")
        self._logger = logger
        self._stopping = False

    def on_starting(self, server: object) -> None:
        """
        gunicorn's ``on_starting`` (arbiter, once): clear ``prometheus_client``'s
        multiprocess directory if ``PROMETHEUS_MULTIPROC_DIR`` is set, as it documents. A
        no-op otherwise.
        """
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from greenkeep.prometheus import clear_multiprocess_dir

            clear_multiprocess_dir()

    def post_worker_init(self, worker: GunicornWorker) -> None:
        """
        gunicorn's ``post_worker_init`` (each worker, after its application loaded): build
        the root with the factory and start it; returns once its children are started.

        Raises:
            RuntimeError: If the worker is not a gevent worker, this process already has a
                root, or the factory returned a supervisor that is already running. gunicorn
                then logs the error and treats it as a worker boot failure (it stops).
            InvalidArgumentError: If the factory (given as ``'module:attribute'``) needs
                arguments (such as the WSGI application; it is not called) or returned
                something else than a `Supervisor` or `WorkerPool` (a boot failure too).
            ChildStartError: If the root could not start (also a boot failure).
            RestartIntensityExceeded: If the root gave up while starting (a boot failure
                too: the arbiter does not respawn a crash loop).
        """
        global _root, _root_pid
        if not any(c.__module__ == "gunicorn.workers.ggevent" for c in type(worker).__mro__):
            raise RuntimeError(
                f"greenkeep.gunicorn needs gevent workers (got {type(worker).__name__}): "
                "run gunicorn with -k gevent, or worker_class = 'gevent' in its config"
            )
        if current_root() is not None:
            raise RuntimeError(
                "this worker process already has a greenkeep root: register "
                "Hooks.post_worker_init once"
            )
        if self._log_format is not None:
            age = getattr(worker, "age", None)
            bind = {} if age is None else {"worker": age}
            greenkeep.logging.configure(self._log_format, self._log_level, bind=bind)
        root = self._build()
        self._stopping = False
        root.start()
        _root, _root_pid = root, os.getpid()
        watcher = gevent.spawn(self._watch, root, worker)
        watcher.name = "greenkeep.gunicorn.watch"

    def _build(self) -> Supervisor | WorkerPool:
        factory = self._factory
        if isinstance(factory, str):
            module, _, attribute = factory.partition(":")
            obj: Any = importlib.import_module(module)
            for part in attribute.split("."):
                obj = getattr(obj, part)
            factory = obj
        if callable(factory) and not isinstance(factory, (Supervisor, WorkerPool)):
            if required_arguments(factory):  # e.g. the WSGI application: never called
                raise InvalidArgumentError("Hooks", "factory", _ALLOWED_FACTORY, factory)
            root = factory()
        else:
            root = factory
        if not isinstance(root, (Supervisor, WorkerPool)):
            raise InvalidArgumentError(
                "Hooks", "factory", "a factory that returns a Supervisor or a WorkerPool", root
            )
        if root.state in (STARTING, RUNNING, STOPPING):
            raise RuntimeError(
                f"greenkeep.gunicorn: the factory returned supervisor {root.name!r} already "
                f"{root.state}; build and start it in each worker (inside the factory, never "
                "at import: with --preload that would be the arbiter's)"
            )
        return root

    def _watch(self, root: Supervisor | WorkerPool, worker: GunicornWorker) -> None:
        # Runs in the worker for as long as the root does: when the root ends on its own,
        # the worker exits so that the arbiter replaces it.
        with contextlib.suppress(RestartIntensityExceeded):
            root.join()
        if self._stopping or current_root() is not root:
            return  # worker_exit stopped it
        reason = "restart_intensity_exceeded" if root.error is not None else "root_ended"
        ProcessReporter(root.path, self._logger).worker_exit_requested(
            "critical" if root.error is not None else "error",
            reason,
            None if root.error is None else str(root.error),
        )
        worker.alive = False  # gunicorn's own graceful exit: stop accepting, drain, exit

    def worker_exit(self, server: object, worker: GunicornWorker) -> None:
        """
        gunicorn's ``worker_exit`` (each worker, as it exits): stop the root within
        ``stop_timeout`` (idempotent; a no-op if this process has no root).

        Raises:
            SystemExit: With `greenkeep.runner.EXIT_GAVE_UP` if the root gave up, so the
                worker's exit status says why it ended.
        """
        global _root
        root = current_root()
        if root is None:
            return
        self._stopping = True
        root.stop(self._stop_timeout)
        _root = None
        if root.error is not None:
            raise SystemExit(EXIT_GAVE_UP)

    def child_exit(self, server: object, worker: GunicornWorker) -> None:
        """
        gunicorn's ``child_exit`` (arbiter, after a worker exited, however it died): tell
        ``prometheus_client`` the process is dead when ``PROMETHEUS_MULTIPROC_DIR`` is set,
        so its live gauges stop counting it. A no-op otherwise.
        """
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from greenkeep.prometheus import mark_process_dead

            mark_process_dead(worker.pid)
