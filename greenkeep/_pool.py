"""
`WorkerPool`: many identical workers under one spec (OTP's ``simple_one_for_one``, Elixir's
``DynamicSupervisor``), built for tens of thousands of workers.

This is the façade users hold; each `start` creates a `greenkeep._pool_run.PoolRun`, whose
manager greenlet owns the workers while it runs.
"""

from __future__ import annotations

import contextvars
import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Literal

import gevent.event

from greenkeep._backoff import Backoff
from greenkeep._check import check_choice, check_timeout
from greenkeep._config import make_config
from greenkeep._errors import (
    InvalidArgumentError,
    InvalidSpecError,
    SpecProblem,
    SupervisorNotRunningError,
)
from greenkeep._event_names import EventLogger, Subscriber
from greenkeep._exits import ExitRecord
from greenkeep._intensity import UnlimitedType
from greenkeep._launch import kill
from greenkeep._manager import SupervisorBase
from greenkeep._pool_run import RESTARTS_PER_WORKER, PoolRun, Worker
from greenkeep._reports import ChildCounts, ChildInfo
from greenkeep._rules import child_state
from greenkeep._snapshot import charged
from greenkeep._spec import ChildSpec, Restart, RestartValue, Shutdown, ShutdownValue
from greenkeep._states import RUNNING

__all__ = ["MAX_POOL_SIZE", "RestartMode", "RestartModeValue", "WorkerHandle", "WorkerPool"]

#: The most workers one pool may have (its size, and what `WorkerPool.resize` accepts).
#: An idle worker costs about 8 KiB (the benchmark's memory scenario), so a pool this size
#: holds about 8 GiB; a process that needs more workers is better split.
MAX_POOL_SIZE: Final = 1_000_000

_SIZE_ALLOWED = f"an int in 0..{MAX_POOL_SIZE:,} (greenkeep.MAX_POOL_SIZE)"


def _is_index(value: object, end: int) -> bool:
    """An int (not a bool) in ``0..end - 1``."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < end


class RestartMode(str, enum.Enum):
    """How a pool worker's next incarnation runs."""

    #: A new greenlet per incarnation (the default): a restart is a clean start, as a new
    #: Erlang process is.
    FRESH = "fresh"
    #: The worker's greenlet runs the function again once the manager allows it: several
    #: times cheaper, with documented differences (greenlet identity and ``gevent.local``
    #: state persist).
    REUSE = "reuse"


#: The values of `RestartMode`, which ``mode=`` accepts as strings too.
RestartModeValue = Literal["fresh", "reuse"]


class WorkerHandle:
    """
    One incarnation of one pool worker. It never acts on another incarnation: once this
    one has ended, `kill` does nothing and `join` returns at once.
    """

    __slots__ = ("_record", "incarnation", "worker_id")

    def __init__(self, record: Worker, incarnation: int) -> None:
        self._record = record
        self.worker_id: int = record.id
        self.incarnation = incarnation

    @property
    def alive(self) -> bool:
        """Whether this incarnation is still running."""
        return self._record.live == self.incarnation

    def kill(self) -> None:
        """Send ``GreenletExit`` to this incarnation (a normal exit, restarted by a
        permanent pool). Does nothing if it has already ended. Never blocks."""
        record = self._record
        if record.live == self.incarnation and record.greenlet is not None:
            kill(record.greenlet)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until this incarnation has ended; return whether it has."""
        timeout = check_timeout("WorkerHandle.join()", timeout)
        record = self._record
        if record.live != self.incarnation:
            return True
        if record.waiters is None:
            record.waiters = {}
        event = record.waiters.setdefault(self.incarnation, gevent.event.Event())
        return bool(event.wait(timeout))

    def __repr__(self) -> str:
        state = "alive" if self.alive else "ended"
        return f"<WorkerHandle worker={self.worker_id} incarnation={self.incarnation} {state}>"


class WorkerPool(SupervisorBase[PoolRun]):
    """
    *size* identical workers running ``target(worker_id, *args, **kwargs)``.

    Worker ids are ``0 .. size-1`` and never change; each worker's incarnation starts at 1
    and grows on every restart (`greenkeep.current` tells a worker both).

    Args:
        target: What every worker runs; its first argument is the worker id.
        size: How many workers, 0 to `MAX_POOL_SIZE` (1,000,000).
        args, kwargs: Further arguments for *target*.
        mode: ``"fresh"`` (default) or ``"reuse"`` (a `RestartMode`); see the README.
        restart: The workers' restart type (default ``"permanent"``). A worker that is not
            restarted stays in the pool as ``"terminated"``.
        shutdown: Seconds to wait for workers to stop, ``"brutal"`` or ``"infinity"``;
            default 5. All workers are stopped together under one deadline.
        max_restarts: ``None`` (default): a budget that follows the pool's size, 3 restarts
            per worker per window (``3 * size``, at least 3). An int fixes it; `UNLIMITED`
            disables it.
        period: The window in seconds; default 5.
        heartbeat: ``None`` or seconds > 0: every worker must call `greenkeep.beat` at
            least this often, or it is killed and restarted (reason ``heartbeat_missed``).
        backoff: ``None`` or a `Backoff`: delay each worker's restarts exponentially; the
            budget then counts crash sequences (only a sequence's first restart is recorded
            in the window). `Backoff.for_outside_service` is the recommended one for workers
            of an outside service: with the default budget, an outage of any length never
            makes the pool give up.
        name, logger, subscribers, clock, log_summary_interval, random: As for `Supervisor`.

    Raises:
        InvalidSpecError: Listing every invalid argument.
    """

    _kind = "pool"

    def __init__(
        self,
        target: Callable[..., object],
        size: int,
        *,
        args: Sequence[object] = (),
        kwargs: Mapping[str, object] | None = None,
        mode: RestartMode | RestartModeValue = RestartMode.FRESH,
        restart: Restart | RestartValue = Restart.PERMANENT,
        shutdown: float | Shutdown | ShutdownValue | None = None,
        max_restarts: int | UnlimitedType | None = None,
        period: float = 5.0,
        name: str = "pool",
        logger: EventLogger | None = None,
        subscribers: Iterable[Subscriber] = (),
        clock: Callable[[], float] | None = None,
        log_summary_interval: float | None = 1.0,
        heartbeat: float | None = None,
        backoff: Backoff | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        problems: list[SpecProblem] = []
        config = make_config(
            "pool",
            problems,
            name=name,
            max_restarts=RESTARTS_PER_WORKER if max_restarts is None else max_restarts,
            period=period,
            logger=logger,
            subscribers=subscribers,
            clock=clock,
            log_summary_interval=log_summary_interval,
            random_source=random,
        )
        if not _is_index(size, MAX_POOL_SIZE + 1):
            problems.append(SpecProblem(config.owner, "size", _SIZE_ALLOWED, size))
        mode_e = check_choice(RestartMode, mode, config.owner, "mode", problems)
        spec = _worker_spec(
            config.owner, problems, target, args, kwargs, restart, shutdown, heartbeat, backoff
        )
        if problems:
            raise InvalidSpecError(problems)
        assert spec is not None and mode_e is not None
        super().__init__(config)
        self._scaled_budget = max_restarts is None
        self._spec = spec
        self._mode = mode_e
        self._size = size

    def _new_run(self, context: contextvars.Context) -> PoolRun:
        reuse = self._mode is RestartMode.REUSE
        return PoolRun(
            self._config, self._path, context, self._spec, self.size, reuse, self._scaled_budget
        )

    # ------------------------------------------------------------------ introspection

    @property
    def size(self) -> int:
        """How many worker slots the pool has (running or not; `resize` changes it)."""
        return self._size if self._run is None else self._run.size

    @property
    def mode(self) -> RestartMode:
        """The restart mode."""
        return self._mode

    @property
    def max_restarts(self) -> int | UnlimitedType:
        """The current restart budget per window."""
        if self._run is not None:
            return self._run.intensity.max_restarts
        if self._scaled_budget:
            return max(RESTARTS_PER_WORKER, RESTARTS_PER_WORKER * self._size)
        return self._config.max_restarts

    @property
    def failing(self) -> int:
        """
        How many workers are failing now, as `degraded` counts them: with a `Backoff`, those
        waiting for a delayed restart or not yet running again for half a second after one;
        without backoff, the crashes of the last second (at most `size`), as of the last
        check (every 0.25 s while crashes go on). 0 when not running. O(1); never blocks.
        """
        run = self._run
        if run is None or run.state != RUNNING:
            return 0
        return run.readiness.failing

    def _workers(self) -> list[Worker]:
        return [] if self._run is None else self._run.workers

    def worker(self, worker_id: int) -> WorkerHandle:
        """
        A handle on worker *worker_id*'s current (or last) incarnation. Never blocks.

        Raises:
            InvalidArgumentError: If there is no such worker (*worker_id* is not an int in
                ``0..size - 1``; a bool is not a worker id).
            SupervisorNotRunningError: The pool was never started (it has no workers yet).
        """
        workers = self._workers()
        if self._run is None:
            raise SupervisorNotRunningError(self._name, self.state, "give a worker's handle")
        if not _is_index(worker_id, len(workers)):
            allowed = (
                f"an int in 0..{len(workers) - 1} (not a bool)" if workers else "none (no workers)"
            )
            raise InvalidArgumentError(f"{self._owner}.worker()", "worker_id", allowed, worker_id)
        record = workers[worker_id]
        return WorkerHandle(record, record.incarnation)

    def which_children(self) -> list[ChildInfo]:
        """Every worker, by id. O(size), charged to the caller as `snapshot` is."""
        restart = self._spec.restart.value

        def build() -> list[ChildInfo]:
            return [
                ChildInfo(
                    w.id,
                    w.status,
                    w.incarnation,
                    w.restarts,
                    restart,
                    "worker",
                    None
                    if w.last_reason is None
                    else ExitRecord(w.id, w.incarnation, w.last_reason, None),
                )
                for w in self._workers()
            ]

        return charged(build)

    def count_children(self) -> ChildCounts:
        """OTP's ``count_children`` (one spec). O(1); never blocks."""
        run = self._run
        active = 0 if run is None else run.active
        return ChildCounts(specs=1, active=active, supervisors=0, workers=len(self._workers()))

    def snapshot(self) -> dict[str, Any]:
        """As `Supervisor.snapshot`: the pool and every worker. O(size), charged to the
        caller (a call that worked for more than a millisecond yields for twice as long)."""
        return charged(self._build_snapshot)

    def _build_snapshot(self) -> dict[str, Any]:
        now = self._config.clock()
        snap = self._header(now)
        snap.update(strategy="simple_one_for_one", mode=self._mode.value, size=self.size)
        snap["failing"] = self.failing
        snap["children"] = [
            {
                "id": w.id,
                "type": "worker",
                "state": child_state(w.status, w.last_reason),
                "incarnation": w.incarnation,
                "restarts": w.restarts,
                "uptime": round(now - w.started_at, 6) if w.live else None,
                "last_exit": w.last_reason,
            }
            for w in self._workers()
        ]
        return snap

    def __repr__(self) -> str:
        return f"<WorkerPool {self._path!r} {self.state} size={self.size} mode={self._mode.value}>"

    # ------------------------------------------------------------------ resizing

    def resize(self, size: int) -> None:
        """
        Grow or shrink the pool to *size* workers while it runs.

        Growing starts workers with the next ids. Shrinking stops the workers with the
        highest ids (the newest slots), together, by the shutdown policy, and removes them;
        the other workers go on restarting meanwhile. A budget that follows the size (the
        default) follows it.

        Raises:
            InvalidArgumentError: If *size* is not an int in 0..`MAX_POOL_SIZE`.
            SupervisorNotRunningError: If the pool is not running.
        """
        if not _is_index(size, MAX_POOL_SIZE + 1):
            raise InvalidArgumentError(f"{self._owner}.resize()", "size", _SIZE_ALLOWED, size)
        self._call("resize", lambda run: run.resize(size))
        self._size = size


def _worker_spec(
    owner: str,
    problems: list[SpecProblem],
    target: object,
    args: object,
    kwargs: object,
    restart: object,
    shutdown: object,
    heartbeat: object,
    backoff: object,
) -> ChildSpec | None:
    # The per-worker fields are validated as a child spec's would be.
    try:
        return ChildSpec(
            "worker",
            target,  # type: ignore[arg-type]
            args,  # type: ignore[arg-type]
            kwargs,  # type: ignore[arg-type]
            restart=restart,  # type: ignore[arg-type]
            shutdown=shutdown,  # type: ignore[arg-type]
            heartbeat=heartbeat,  # type: ignore[arg-type]
            backoff=backoff,  # type: ignore[arg-type]
        )
    except InvalidSpecError as exc:
        problems.extend(SpecProblem(owner, p.field, p.allowed, p.got) for p in exc.problems)
        return None
