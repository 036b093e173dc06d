"""
`WorkerPool`: many identical workers under one spec (OTP's ``simple_one_for_one``, Elixir's
``DynamicSupervisor``), built for tens of thousands of workers.

Per crash the manager does O(1) work: the worker's record is found through the exit itself,
the restart window keeps only the last ``max_restarts + 1`` timestamps, crash-storm damping is
one dict lookup, and nothing scans the workers. Exits are drained in batches; in *reuse*
mode one loop callback resumes every worker restarted in a batch.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import gevent
import gevent.event
from greenlet import getcurrent as _getcurrent

from greenkeep._backoff import Backoff
from greenkeep._errors import InvalidArgumentError, InvalidSpecError, SpecProblem
from greenkeep._events import EventLogger, Subscriber
from greenkeep._exits import (
    ABNORMAL_KINDS,
    REASON,
    Decision,
    ExitKind,
    ExitRecord,
    classify,
    decide,
)
from greenkeep._heartbeat import HeartbeatMonitor
from greenkeep._intensity import RestartIntensity, _Unlimited
from greenkeep._manager import Manager, Record, check_timeout, child_state
from greenkeep._render import error_text
from greenkeep._reports import ChildCounts, ChildInfo
from greenkeep._spec import ChildSpec, Restart, Shutdown
from greenkeep._storm import crash_kind, describe
from greenkeep._worker import create, kill, resume, spare, start, start_now, start_spare

__all__ = ["RestartMode", "WorkerHandle", "WorkerPool"]

#: The default restart budget of a pool, per worker and window.
RESTARTS_PER_WORKER = 3

_INTERRUPTED = ExitKind.INTERRUPTED
_ABNORMAL = ExitKind.ABNORMAL
_SHUTDOWN = ExitKind.SHUTDOWN
_NORMAL = ExitKind.NORMAL
_HEARTBEAT_MISSED = ExitKind.HEARTBEAT_MISSED
_RESTART = Decision.RESTART
_ACTION = {d: d.value for d in Decision}


class RestartMode(str, enum.Enum):
    """How a pool worker's next incarnation runs."""

    #: A new greenlet per incarnation (the default): a restart is a clean start, as a new
    #: Erlang process is.
    FRESH = "fresh"
    #: The worker's greenlet runs the function again once the manager allows it: several
    #: times cheaper, with documented differences (greenlet identity and ``gevent.local``
    #: state persist).
    REUSE = "reuse"


class CrashElided(Exception):
    """
    Stands in for a crash a worker posted as its kind alone (its kind was being summarized,
    so its exception was freed at once), where an exception is still needed.
    """

    def __init__(self, kind: Any) -> None:
        self.kind = kind
        name = describe(kind)[0]
        super().__init__(f"{name} (details elided: this kind of crash was being summarized)")


def _error_of(exc: Any) -> str:
    if type(exc) is tuple:
        return f"{describe(exc)[0]} (details elided)"
    return error_text(exc)


class _Worker(Record):
    __slots__ = ("last_reason", "live", "waiters")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.live = 0  # the incarnation running now, 0 if none
        self.last_reason: str | None = None
        self.waiters: dict[int, gevent.event.Event] | None = None


class WorkerHandle:
    """
    One incarnation of one pool worker. It never acts on another incarnation: once this
    one has ended, `kill` does nothing and `join` returns at once.
    """

    __slots__ = ("_record", "incarnation", "worker_id")

    def __init__(self, record: _Worker, incarnation: int) -> None:
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


class WorkerPool(Manager):
    """
    *size* identical workers running ``target(worker_id, *args, **kwargs)``.

    Worker ids are ``0 .. size-1`` and never change; each worker's incarnation starts at 1
    and grows on every restart (`greenkeep.current` tells a worker both).

    Args:
        target: What every worker runs; its first argument is the worker id.
        size: How many workers, >= 0.
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
        backoff: ``None`` or a `Backoff`: delay each worker's restarts exponentially.
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
        mode: RestartMode | str = RestartMode.FRESH,
        restart: Restart | str = Restart.PERMANENT,
        shutdown: float | Shutdown | str | None = None,
        max_restarts: int | _Unlimited | None = None,
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
        self._scaled_budget = max_restarts is None
        super().__init__(
            random_source=random,
            name=name,
            max_restarts=RESTARTS_PER_WORKER if max_restarts is None else max_restarts,
            period=period,
            logger=logger,
            subscribers=subscribers,
            clock=clock,
            log_summary_interval=log_summary_interval,
            problems=problems,
        )
        owner = self._owner
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            problems.append(SpecProblem(owner, "size", "an int >= 0", size))
        try:
            mode_e: RestartMode | None = RestartMode(mode)
        except ValueError:
            problems.append(SpecProblem(owner, "mode", "'fresh' or 'reuse'", mode))
            mode_e = None
        spec: ChildSpec | None = None
        try:  # the per-worker fields are validated as a child spec would be
            spec = ChildSpec(
                "worker",
                target,
                args,
                kwargs,
                restart=restart,
                shutdown=shutdown,
                heartbeat=heartbeat,
                backoff=backoff,
            )
        except InvalidSpecError as exc:
            problems.extend(SpecProblem(owner, p.field, p.allowed, p.got) for p in exc.problems)
        if problems:
            raise InvalidSpecError(problems)
        assert spec is not None and mode_e is not None
        self._spec = spec
        self._restart_type = spec.restart
        self._decisions = {kind: decide(spec.restart, kind) for kind in ExitKind}
        self._restart_value = spec.restart.value
        self._mode = mode_e
        self._reuse = mode_e is RestartMode.REUSE
        self._limited = not isinstance(self._max_restarts, _Unlimited)
        # The straight path of _on_exit: a crash restarts at once, storms are summarized.
        self._fast = (
            spec.restart is not Restart.TEMPORARY
            and spec.heartbeat is None
            and spec.backoff is None
            and self._log_summary_interval is not None
        )
        self._size = size
        self._heartbeat = spec.heartbeat
        self._backoff = spec.backoff
        self._workers: list[_Worker] = []
        self._spare: Any = None  # fresh mode: a greenlet started ahead, for an isolated restart
        self._resumes: list[Any] = []  # parked greenlets to run their next incarnation
        self._starts: list[Any] = []  # new greenlets to start
        self._monitor: HeartbeatMonitor | None = None
        self._apply_budget()

    def _apply_budget(self) -> None:
        if self._scaled_budget:
            self._max_restarts = max(RESTARTS_PER_WORKER, RESTARTS_PER_WORKER * self._size)

    def _reset(self) -> None:
        super()._reset()
        self._storm_of = self._storms._storms  # the straight path reads it directly
        self._workers = []
        self._resumes = []
        self._starts = []
        self._monitor = None
        heartbeat = getattr(self, "_heartbeat", None)
        if heartbeat is not None:
            self._monitor = HeartbeatMonitor(heartbeat, self._clock())
            self._monitors.append(self._monitor)

    # ------------------------------------------------------------------ introspection

    @property
    def size(self) -> int:
        """How many worker slots the pool has (running or not)."""
        return self._size

    @property
    def mode(self) -> RestartMode:
        """The restart mode."""
        return self._mode

    @property
    def max_restarts(self) -> int | _Unlimited:
        """The current restart budget per window."""
        return self._max_restarts

    def worker(self, worker_id: int) -> WorkerHandle:
        """
        A handle on worker *worker_id*'s current (or last) incarnation. Never blocks.

        Raises:
            InvalidArgumentError: If there is no such worker.
        """
        if not (isinstance(worker_id, int) and 0 <= worker_id < len(self._workers)):
            raise InvalidArgumentError(
                f"{self._owner}.worker()",
                "worker_id",
                f"an int in 0..{len(self._workers) - 1}",
                worker_id,
            )
        record = self._workers[worker_id]
        return WorkerHandle(record, record.incarnation)

    def which_children(self) -> list[ChildInfo]:
        """Every worker, by id. O(size); never blocks."""
        restart = self._spec.restart.value
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
            for w in self._workers
        ]

    def count_children(self) -> ChildCounts:
        """OTP's ``count_children`` (one spec). Never blocks."""
        active = sum(1 for w in self._workers if w.live)
        return ChildCounts(specs=1, active=active, supervisors=0, workers=len(self._workers))

    def _snapshot_fields(self) -> dict[str, Any]:
        return {"strategy": "simple_one_for_one", "mode": self._mode.value, "size": self._size}

    def _snapshot_children(self, now: float) -> list[dict[str, Any]]:
        return [
            {
                "id": w.id,
                "type": "worker",
                "state": child_state(w.status, w.last_reason),
                "incarnation": w.incarnation,
                "restarts": w.restarts,
                "uptime": round(now - w.started_at, 6) if w.live else None,
                "last_exit": w.last_reason,
            }
            for w in self._workers
        ]

    def __repr__(self) -> str:
        return (
            f"<WorkerPool {self._path!r} {self._state} size={self._size} mode={self._mode.value}>"
        )

    # ------------------------------------------------------------------ resizing

    def resize(self, size: int) -> None:
        """
        Grow or shrink the pool to *size* workers while it runs.

        Growing starts workers with the next ids. Shrinking stops the workers with the
        highest ids (the newest slots), together, by the shutdown policy, and removes them.
        A budget that follows the size (the default) follows it.

        Raises:
            InvalidArgumentError: If *size* is not an int >= 0.
            SupervisorNotRunningError: If the pool is not running.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidArgumentError(f"{self._owner}.resize()", "size", "an int >= 0", size)
        self._call("resize", lambda: self._do_resize(size))

    # ================================================================== the manager

    def _records(self) -> list[Record]:
        return list(self._workers)

    def _started_fields(self) -> dict[str, object]:
        return {"strategy": "simple_one_for_one", "children": self._size, "mode": self._mode.value}

    def _start_children(self) -> None:
        self._hub = gevent.get_hub()
        if not self._reuse:
            self._spare = spare(self._hub)
        self._add_workers(self._size)
        self._end_batch()

    def _add_workers(self, count: int) -> None:
        post = self._mailbox.put_nowait
        spec = self._spec
        monitor = self._monitor
        starts = self._starts
        # Crashes of a kind being summarized may be posted as their kind alone, unless
        # subscribers want every exception.
        damped = self._storm_of if self._fast and not self._emit.has_subscribers else None
        first = len(self._workers)
        for worker_id in range(first, first + count):
            record = _Worker(
                worker_id,
                self,
                spec.target,
                (worker_id, *spec.args),
                spec.kwargs,
                post,
                self._context,
            )
            self._workers.append(record)
            record.reusable = self._reuse
            record.damped = damped
            record.incarnation = record.live = 1
            record.status = "running"
            record.started_at = self._clock()
            record.greenlet = greenlet = create(record, 1, self._hub)
            starts.append(greenlet)
            if monitor is not None:
                monitor.started(record)

    def _do_resize(self, size: int) -> None:
        current = len(self._workers)
        if size > current:
            self._size = size
            self._apply_budget()
            self._resize_window()
            self._add_workers(size - current)
            self._end_batch()
        elif size < current:
            leaving = self._workers[size:]
            for worker in leaving:
                if worker.status == "delayed":  # cancel their pending restarts
                    worker.status = "terminated"
                    self._park_or_drop(worker)
            self._stop_records(
                [w for w in reversed(leaving) if w.live], lambda r: self._spec.shutdown, None
            )
            self._end_batch()
            del self._workers[size:]
            self._size = size
            self._apply_budget()
            self._resize_window()
        self._emit.emit("info", "pool_resized", size=size, previous=current)

    def _resize_window(self) -> None:
        old = self._intensity
        new = RestartIntensity(self._max_restarts, self._period)
        for stamp in old._times:
            new.record(stamp)
        new.total = old.total
        self._intensity = new

    def _on_exit(self, worker: _Worker, incarnation: int, exc: Any) -> None:
        """
        Handle one posted exit: the hot path, O(1). *exc* is what the incarnation raised,
        ``None`` if it returned, or a crash kind (a tuple) when the worker posted a crash of a
        kind being summarized without its exception.

        The common case of a crash storm, an ``Exception`` that restarts a worker at once
        while its kind is already being summarized in the log, takes the straight path
        below; everything else (and the same thing, when it is not that common case) goes
        through `_on_exit_general`.
        """
        if (
            self._fast
            and exc is not None
            and worker.live == incarnation
            and not worker.stop_requested
            and worker.waiters is None
            and worker.status == "running"
            and self._end_reason is None
        ):
            storm = None
            if type(exc) is tuple:  # a crash the worker posted as its kind alone
                storm = self._storm_of.get(exc)
            elif isinstance(exc, Exception):
                tb = exc.__traceback__
                if tb is not None:
                    while tb.tb_next is not None:
                        tb = tb.tb_next
                    storm = self._storm_of.get((type(exc), id(tb.tb_frame.f_code), tb.tb_lasti))
                    tb = None
            if storm is not None:
                now = self._clock()
                if self._limited and self._intensity.record(now):
                    self._give_up_now(worker, incarnation, exc, now, storm)  # budget ran out
                    return
                worker.last_reason = "abnormal"
                storm.count += 1  # (counts are summed into the total at each summary)
                if storm.sample is None:
                    storm.sample = (worker.id, incarnation, _error_of(exc))
                if self._emit.has_subscribers:
                    self._deliver_damped(worker, incarnation, _ABNORMAL, exc)
                incarnation += 1
                worker.incarnation = worker.live = incarnation
                worker.restarts += 1
                worker.started_at = now
                worker.stop_event = None
                if self._reuse:
                    self._resumes.append(worker.greenlet)
                else:
                    if worker.greenlet is not None:
                        self._retirees.append(worker.greenlet)
                    worker.greenlet = greenlet = create(worker, incarnation, self._hub)
                    self._starts.append(greenlet)
                if self._emit.has_subscribers:
                    self._deliver_restarted(worker, incarnation)
                return
        if type(exc) is tuple:  # its kind stopped being summarized meanwhile (rare)
            exc = CrashElided(exc)
        self._on_exit_general(worker, incarnation, exc)

    def _give_up_now(
        self, worker: _Worker, incarnation: int, exc: Any, now: float, storm: Any
    ) -> None:
        worker.live = 0
        worker.last_reason = "abnormal"
        if type(exc) is tuple:  # posted as its kind alone: a sample of the kind stands in
            error = storm.sample[2] if storm.sample else describe(exc, storm.code)[0]
            record = ExitRecord(worker.id, incarnation, "abnormal", error, None, now)
            exc = CrashElided(exc)
        else:
            record = ExitRecord.of(worker.id, incarnation, _ABNORMAL, exc, now, True)
        self._not_restarted(worker, incarnation, _ABNORMAL, exc, "give_up")
        self._give_up(worker, record)

    def _deliver_restarted(self, worker: _Worker, incarnation: int) -> None:
        self._emit.deliver(
            "info",
            "child_restarted",
            {
                "child_id": worker.id,
                "incarnation": incarnation,
                "restarts_in_period": self._intensity.in_window,
                "summarized": True,
            },
        )

    def _on_exit_general(
        self, worker: _Worker, incarnation: int, exc: BaseException | None
    ) -> None:
        """Every exit the straight path of `_on_exit` does not take."""
        if worker.live != incarnation:
            self._ignored_exit(worker, incarnation, exc)
            return
        worker.live = 0
        stop_requested = worker.stop_requested
        if exc is not None and not stop_requested and isinstance(exc, Exception):
            kind = _ABNORMAL  # the common crash, without classify's other checks
        else:
            kind = classify(exc, stop_requested)
        if self._monitor is not None:
            self._monitor.ended(worker)
            if worker.hb_missed == incarnation and kind is _NORMAL:
                kind = _HEARTBEAT_MISSED  # our GreenletExit, not someone else's
        worker.last_reason = REASON[kind]
        if worker.waiters is not None and incarnation in worker.waiters:
            worker.waiters.pop(incarnation).set()
        if kind is _INTERRUPTED:
            if self._end_reason is None:
                self._end_reason = "interrupted"
            self._not_restarted(worker, incarnation, kind, exc, "stop_supervisor")
            return
        if worker.status != "running" or self._end_reason is not None:
            self._not_restarted(worker, incarnation, kind, exc, "none")
            return
        decision = self._decisions[kind]
        if decision is not _RESTART:
            self._not_restarted(worker, incarnation, kind, exc, _ACTION[decision])
            return
        now = self._clock()
        if self._limited and self._intensity.record(now):
            record = ExitRecord.of(worker.id, incarnation, kind, exc, now, True)
            self._not_restarted(worker, incarnation, kind, exc, "give_up")
            self._give_up(worker, record)
            return
        emit = self._emit
        if kind is _ABNORMAL and self._storms.interval is not None:
            verdict = self._storms.admit_crash(exc, now)  # type: ignore[arg-type]
            if verdict == 1:
                logged = self._log_exit(
                    worker, incarnation, kind, exc, "restart", self._restart_value, damp=False
                )
            else:
                logged = False
                if verdict == 2:
                    self._storms.sample(
                        crash_kind(exc),  # type: ignore[arg-type]
                        worker.id,
                        incarnation,
                        error_text(exc),  # type: ignore[arg-type]
                    )
                if emit.has_subscribers:
                    self._deliver_damped(worker, incarnation, kind, exc)
        else:
            logged = self._log_exit(
                worker, incarnation, kind, exc, "restart", self._restart_value, "debug"
            )
        if self._backoff is not None:
            attempt = self._backoff_attempt(worker, self._backoff, now)
            if not self._reuse:  # its parked greenlet retires; a new one comes after the delay
                self._park_or_drop(worker)
            self._schedule_restart(
                worker, self._backoff.delay(attempt, self._random()), attempt, logged
            )
            return
        incarnation = self._relaunch(worker, now)
        if logged:
            emit.emit(
                "info" if kind in ABNORMAL_KINDS else "debug",
                "child_restarted",
                child_id=worker.id,
                incarnation=incarnation,
                restarts_in_period=self._intensity.in_window,
            )
        elif emit.has_subscribers:
            self._deliver_restarted(worker, incarnation)

    def _relaunch(self, worker: _Worker, now: float) -> int:
        """Run *worker*'s next incarnation; return its number."""
        incarnation = worker.incarnation + 1
        worker.incarnation = worker.live = incarnation
        worker.restarts += 1
        worker.started_at = now
        worker.stop_event = None
        worker.status = "running"
        if self._reuse:
            self._resumes.append(worker.greenlet)
        else:
            if worker.greenlet is not None:
                self._retirees.append(worker.greenlet)  # the parked, finished one
            worker.greenlet = greenlet = create(worker, incarnation, self._hub)
            self._starts.append(greenlet)
        if self._monitor is not None:
            self._monitor.started(worker)
        return incarnation

    def _restart_delayed(self, record: Record) -> None:
        assert isinstance(record, _Worker)
        if record.status != "delayed":
            return  # cancelled (stop, shrink)
        incarnation = self._relaunch(record, self._clock())
        self._emit.emit(
            "info",
            "child_restarted",
            child_id=record.id,
            incarnation=incarnation,
            restarts_in_period=self._intensity.in_window,
        )

    def _deliver_damped(
        self, worker: _Worker, incarnation: int, kind: ExitKind, exc: BaseException | None
    ) -> None:
        self._emit.deliver(
            "error",
            "child_exited",
            {
                "child_id": worker.id,
                "incarnation": incarnation,
                "reason": REASON[kind],
                "restart": self._restart_value,
                "action": "restart",
                "error": None if exc is None else error_text(exc),
                "exc_info": exc,
                "summarized": True,
            },
        )

    def _not_restarted(
        self,
        worker: _Worker,
        incarnation: int,
        kind: ExitKind,
        exc: BaseException | None,
        action: str,
    ) -> None:
        if kind is _SHUTDOWN:
            # Workers the pool stops itself (stop, shrink): counted in supervisor_stopped and
            # pool_resized, not logged one by one; subscribers still see each.
            if self._emit.has_subscribers:
                self._emit.deliver(
                    "debug",
                    "child_exited",
                    {
                        "child_id": worker.id,
                        "incarnation": incarnation,
                        "reason": REASON[kind],
                        "restart": self._restart_value,
                        "action": action,
                    },
                )
        else:
            self._log_exit(worker, incarnation, kind, exc, action, self._restart_value, "debug")
        self._park_or_drop(worker)
        if worker.status != "stopping":
            worker.status = "terminated"

    def _abandoned(self, record: Record) -> None:
        record.live = 0  # type: ignore[attr-defined]

    def _park_or_drop(self, worker: _Worker) -> None:
        # The incarnation ended and will not be followed: its parked greenlet retires.
        if worker.greenlet is not None:
            self._retirees.append(worker.greenlet)
        worker.greenlet = None

    def _end_batch(self) -> None:
        super()._end_batch()  # retire finished greenlets first: their memory is freed
        starts, resumes = self._starts, self._resumes
        if not starts and not resumes:
            return
        self._starts, self._resumes = [], []
        if (
            len(starts) + len(resumes) == 1
            and not self._mailbox.qsize()
            and self._end_reason is None
            and _getcurrent() is self._manager
        ):
            # An isolated restart: no loop turn to wait, and (fresh mode) a spare greenlet
            # that has already run, so no new greenlet's first run on the way either.
            if starts and self._spare:  # started (waiting for work), not dead
                greenlet, self._spare = self._spare, spare(self._hub)
                worker = starts[0].child
                worker.greenlet = greenlet
                if self._monitor is not None:  # its beats land on this greenlet now
                    self._monitor.started(worker)
                start_spare(greenlet, worker, worker.incarnation)
            else:
                start_now((starts or resumes)[0])
            return
        if starts:
            start(starts)
        if resumes:
            resume(resumes)

    def _stop_all(self) -> None:
        if self._spare is not None:
            self._retirees.append(self._spare)
            self._spare = None
        # Restarts decided in the last batch have not run yet: cancel them.
        for greenlet in self._starts + self._resumes:
            record = greenlet.child
            record.live = 0
            record.status = "terminated"
            record.greenlet = None
            self._retirees.append(greenlet)  # a never-started one is simply dropped
        self._starts, self._resumes = [], []
        for worker in self._workers:
            if worker.status == "delayed":  # cancel pending (backoff) restarts
                worker.status = "terminated"
                self._park_or_drop(worker)
        self._end_batch()
        running = [w for w in self._workers if w.live]  # all together (oldest first)
        for worker in running:
            worker.status = "stopping"
        self._stop_records(running, lambda r: self._spec.shutdown, self._stop_deadline)
        self._end_batch()
        for worker in running:
            worker.status = "terminated"
