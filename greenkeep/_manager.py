"""
What every supervisor shares, `Supervisor` and `WorkerPool` alike: the gevent-style
lifecycle, as a façade over the `greenkeep._run.Run` that each `start` creates.

One manager greenlet per run owns all of that run's state. Public methods that change
something send the manager a request and wait for its answer; introspection reads the
run's state directly (greenlets are cooperative: between two switches it is consistent).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, Generic, TypeVar

from greenlet import GreenletExit
from greenlet import getcurrent as _getcurrent

from greenkeep._check import check_timeout
from greenkeep._config import Config
from greenkeep._current import current, ready
from greenkeep._errors import (
    CalledFromManagerError,
    RestartIntensityExceeded,
    SupervisorAlreadyStartedError,
    SupervisorNotRunningError,
)
from greenkeep._intensity import UnlimitedType
from greenkeep._ops import Op
from greenkeep._reports import StopReport
from greenkeep._run import Run
from greenkeep._spec import Subtree
from greenkeep._states import (
    NEW,
    NOT_STARTED,
    RUNNING,
    SHUTDOWN,
    STARTING,
    STOPPING,
    SupervisorState,
)
from greenkeep._worker import current_worker

__all__ = ["SupervisorBase"]

E = TypeVar("E")
R = TypeVar("R", bound=Run)


class SupervisorBase(Subtree, Generic[R]):
    """
    Base of `Supervisor` and `WorkerPool`: the lifecycle they share (`start`, `stop`,
    `join`, `run`, `state`, `name`, `report`). Public so that a type checker's messages
    and annotations name it (``Argument "timeout" to "stop" of "SupervisorBase"``);
    greenkeep supports no subclasses but its own two, which build their run (`_new_run`)
    and their introspection.
    """

    _kind: ClassVar[str] = "supervisor"

    def __init__(self, config: Config) -> None:
        self._config = config
        self._name = config.name
        self._path = config.name
        self._owner = config.owner
        self._run: R | None = None

    def _new_run(self, context: contextvars.Context) -> R:
        raise NotImplementedError

    # ------------------------------------------------------------------ introspection

    @property
    def name(self) -> str:
        """The name given at construction."""
        return self._name

    @property
    def path(self) -> str:
        """The path in its tree, e.g. ``"root/db"`` (its name at the root)."""
        return self._path

    @property
    def state(self) -> SupervisorState:
        """``"new"``, ``"starting"``, ``"running"``, ``"stopping"`` (also while children
        reported unstopped still run), ``"stopped"`` or ``"failed"``."""
        return NEW if self._run is None else self._run.state

    @property
    def error(self) -> RestartIntensityExceeded | None:
        """Why it gave up, once it has (``None`` otherwise)."""
        return None if self._run is None else self._run.error

    @property
    def report(self) -> StopReport | None:
        """The report of its last stop once that stop is over (``None`` before)."""
        return None if self._run is None else self._run.report

    @property
    def degraded(self) -> bool:
        """
        Whether it runs but is not ready (readiness, apart from liveness: `state`).

        A `WorkerPool` is degraded while at least half its workers have been failing for
        longer than a second: with a `Backoff`, a worker is failing from the exit whose
        restart waits for its delay until an incarnation has run for half a second again;
        without backoff, the pool's crashes of the last second stand for failing workers.
        A `Supervisor` is degraded while any pool or supervisor in its subtree is (its own
        children's crashes are the restart intensity's business). ``False`` whenever it is
        not running (``state`` says why). O(1) for a pool; for a supervisor, O(children of
        the supervisors in its subtree). Never blocks.
        """
        run = self._run
        return run is not None and run.state == RUNNING and self._degraded(run)

    def _degraded(self, run: R) -> bool:
        return run.degraded()

    def snapshot(self) -> dict[str, Any]:
        """A JSON-serialisable view of this supervisor and of its children (see
        `Supervisor.snapshot`)."""
        raise NotImplementedError

    def _header(self, now: float) -> dict[str, Any]:
        run = self._run
        limit = self._config.max_restarts if run is None else run.intensity.max_restarts
        return {
            "name": self._name,
            "path": self._path,
            "kind": self._kind,
            "state": self.state,
            "max_restarts": "unlimited" if isinstance(limit, UnlimitedType) else limit,
            "period": self._config.period,
            "restarts_in_period": 0 if run is None else run.intensity.in_period(now),
            "restarts": 0 if run is None else run.intensity.total,
            "error": None if self.error is None else str(self.error),
            "degraded": self.degraded,
            "events": {"delivery_failures": 0, "dropped": 0, "logger_blocked": False}
            if run is None
            else run.emitter.stats(),
        }

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """
        Start the manager and the children, and return once they are started.

        Children start in order: each runs up to its first yield (or until it calls
        `greenkeep.ready`, with ``ready_timeout``) before the next one starts; an exit at
        any moment is handled by the restart table and the intensity rule, and `start`
        returns once the exits that came during the start have been handled. Something that
        stopped or gave up can be started again, afresh from its specs. Blocks the calling
        greenlet (never the hub).

        Raises:
            SupervisorAlreadyStartedError: If it is starting, running or stopping (also
                while a child it reported unstopped still runs).
            ChildStartError: If a child with ``ready_timeout`` failed or was not ready in
                time; the children already started were stopped in reverse order.
            RestartIntensityExceeded: If it gave up before it had started (what `join`
                then raises too).
        """
        state = self.state
        if state in (STARTING, RUNNING, STOPPING):
            raise SupervisorAlreadyStartedError(self._name, state)
        self._run = run = self._new_run(contextvars.copy_context())
        run.launch()

    def join(self, timeout: float | None = None) -> bool:
        """
        Wait until it has ended: stopped (its stop is over), or gave up.

        Args:
            timeout: Seconds to wait at most; ``None`` waits as long as it takes.

        Returns:
            ``True`` if it has ended, ``False`` if *timeout* passed first.

        Raises:
            RestartIntensityExceeded: On every call once it has given up.
            SupervisorNotRunningError: If it was never started.
        """
        timeout = check_timeout(f"{self._owner}.join()", timeout)
        run = self._run
        if run is None:
            raise SupervisorNotRunningError(self._name, NEW, "be joined")
        ended = run.done.wait(timeout)
        if ended and run.error is not None:
            raise run.error.with_traceback(None)
        return bool(ended)

    def stop(self, timeout: float | None = None, *, block: bool = True) -> StopReport:
        """
        Stop every child, then the manager; return what happened.

        Each child first gets its stop signal (`greenkeep.stop_signal`), then
        ``GreenletExit``, and is waited for according to its shutdown policy; *timeout* caps
        the whole stop on top of that, and a child supervisor shares its own deadline with
        its whole subtree. A child that does not stop in time is reported in
        `StopReport.unstopped` (with its supervisor's path) and as ``child_unstopped``.
        Nothing is restarted or started once the stop has begun.

        Idempotent: once stopped or failed it returns the earlier report at once; never
        started, an empty report. With *block* false it requests the stop and returns at
        once (a report with ``complete=False`` until it is over). Called from inside one of
        its own children, it requests the stop and raises ``GreenletExit`` in the caller
        (let it propagate). Called from its own manager greenlet (a subscriber), it does not
        wait either.

        Args:
            timeout: Overall cap in seconds; ``None`` means each child's own policy.
        """
        cap = check_timeout(f"{self._owner}.stop()", timeout)
        run = self._run
        if run is None:
            return StopReport(self._path, NOT_STARTED)
        if run.report is not None:
            return run.report
        run.request_stop(cap)
        if not block or _getcurrent() is run.manager:
            return StopReport(self._path, run.end_reason or SHUTDOWN, (), complete=False)
        worker = current_worker()
        if worker is not None and worker.child.channel is run.channel:
            raise GreenletExit
        run.done.wait()
        assert run.report is not None
        return run.report

    def run(self) -> None:
        """
        Start, wait until it ends, and stop it on the way out (even when interrupted).

        This is what a supervisor does as a child of another supervisor (it then takes its
        path from its parent and signals readiness once started), and what a program whose
        main job is this supervisor calls.

        Raises:
            RestartIntensityExceeded: If it gave up.
            ChildStartError: If it could not start.
        """
        state = self.state
        if state in (STARTING, RUNNING, STOPPING):
            raise SupervisorAlreadyStartedError(self._name, state)
        parent = current()
        self._path = self._name if parent is None else f"{parent.supervisor}/{self._name}"
        try:
            self.start()
            ready()
            self.join()
        finally:
            self.stop()

    def __enter__(self: E) -> E:
        self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, action: str, fn: Callable[[R], E | Op]) -> E:
        """Run ``fn(run)`` in the manager, ahead of any backlog of exits; return its result
        (an operation's, once it has ended)."""
        run = self._run
        if run is None or run.state != RUNNING or run.end_reason is not None:
            state = STOPPING if run is not None and run.state == RUNNING else self.state
            raise SupervisorNotRunningError(self._name, state, action)
        if _getcurrent() is run.manager:
            raise CalledFromManagerError(self._name, action)
        return run.call(lambda: fn(run))
