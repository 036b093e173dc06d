"""
`WorkerPool`: many identical workers under one spec (OTP's ``simple_one_for_one``, Elixir's
``DynamicSupervisor``), built for tens of thousands of workers.

Per crash the manager does O(1) work: the worker's record is found through the exit itself,
the restart window keeps only the last ``max_restarts + 1`` timestamps, crash-storm damping is
one dict lookup (or none: a worker whose kind is being summarized posts its storm), and
nothing scans the workers. Exits are drained in batches; one loop callback starts (fresh
mode) or resumes (reuse mode) every worker restarted in a batch.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import gevent
import gevent.event
from greenlet import getcurrent as _getcurrent

from greenkeep._backoff import Backoff
from greenkeep._check import check_choice, check_timeout
from greenkeep._config import make_config
from greenkeep._errors import InvalidArgumentError, InvalidSpecError, SpecProblem
from greenkeep._events import EventLogger, Subscriber
from greenkeep._exits import ABNORMAL_KINDS, REASON, ExitKind, ExitRecord, classify
from greenkeep._heartbeat import HeartbeatMonitor
from greenkeep._intensity import _Unlimited
from greenkeep._manager import Manager
from greenkeep._ops import Op
from greenkeep._records import Record
from greenkeep._render import error_text
from greenkeep._reports import ChildCounts, ChildInfo
from greenkeep._rules import Action, child_state, plan_exit
from greenkeep._snapshot import charged
from greenkeep._spec import ChildSpec, Restart, Shutdown, ShutdownPolicy
from greenkeep._states import DELAYED, NEW, RUNNING, STOPPING, TERMINATED
from greenkeep._storm import Storm, describe
from greenkeep._worker import create, disown, kill, resume, spare, start, start_now, start_spare

__all__ = ["RestartMode", "WorkerHandle", "WorkerPool"]

#: The default restart budget of a pool, per worker and window.
RESTARTS_PER_WORKER = 3


class RestartMode(str, enum.Enum):
    """How a pool worker's next incarnation runs."""

    #: A new greenlet per incarnation (the default): a restart is a clean start, as a new
    #: Erlang process is.
    FRESH = "fresh"
    #: The worker's greenlet runs the function again once the manager allows it: several
    #: times cheaper, with documented differences (greenlet identity and ``gevent.local``
    #: state persist).
    REUSE = "reuse"


class _Worker(Record):
    __slots__ = ("last_reason", "live", "waiters")

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.live = 0  # the incarnation running now, 0 if none
        self.last_reason: str | None = None
        self.waiters: dict[int, gevent.event.Event] | None = None


def _crash_record(worker_id: int, incarnation: int, exc: Any, now: float) -> ExitRecord:
    # The rendered crash that made the pool give up (a posted storm keeps its kind only).
    if type(exc) is Storm:
        name = describe(exc.kind, exc.code)[0]
        return ExitRecord(
            worker_id, incarnation, "abnormal", f"{name} (message not kept)", None, now
        )
    return ExitRecord.of(worker_id, incarnation, ExitKind.ABNORMAL, exc, now, True)


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
        owner = config.owner
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            problems.append(SpecProblem(owner, "size", "an int >= 0", size))
        mode_e = check_choice(RestartMode, mode, owner, "mode", problems)
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
        self._scaled_budget = max_restarts is None
        self._spec = spec
        self._restart_type = spec.restart
        self._restart_value = spec.restart.value
        self._mode = mode_e
        self._reuse = mode_e is RestartMode.REUSE
        self._limited = not isinstance(config.max_restarts, _Unlimited)
        # The straight path of _handle_exit: a crash restarts at once, storms are summarized.
        self._fast = (
            spec.restart is not Restart.TEMPORARY
            and spec.heartbeat is None
            and spec.backoff is None
            and config.log_summary_interval is not None
        )
        self._size = size
        self._heartbeat = spec.heartbeat
        self._backoff = spec.backoff
        self._spare: Any = None  # fresh mode: a greenlet started ahead, for an isolated restart
        super().__init__(config)

    def _max_restarts(self) -> int | _Unlimited:
        if self._scaled_budget:
            return max(RESTARTS_PER_WORKER, RESTARTS_PER_WORKER * self._size)
        return self._config.max_restarts

    def _reset(self) -> None:
        super()._reset()
        self._storm_of = self._reporter.storms.by_kind  # the straight path reads it directly
        self._workers: list[_Worker] = []
        self._resumes: list[Any] = []  # parked greenlets to run their next incarnation
        self._starts: list[Any] = []  # new greenlets to start
        self._active = 0  # workers with a live incarnation
        self._damp_limited = False  # whether each batch re-checks the budget's room
        self._monitor: HeartbeatMonitor | None = None
        if self._heartbeat is not None:
            self._monitor = HeartbeatMonitor(self._heartbeat, self._config.clock())
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
        return self._intensity.max_restarts if self._state != NEW else self._max_restarts()

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
        """Every worker, by id. O(size), charged to the caller as `snapshot` is."""
        restart = self._restart_value

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
                for w in self._workers
            ]

        return charged(build)

    def count_children(self) -> ChildCounts:
        """OTP's ``count_children`` (one spec). O(1); never blocks."""
        return ChildCounts(specs=1, active=self._active, supervisors=0, workers=len(self._workers))

    def snapshot(self) -> dict[str, Any]:
        """As `Supervisor.snapshot`: the pool and every worker. O(size), charged to the
        caller (a call that worked for more than a millisecond yields for twice as long)."""
        return charged(self._build_snapshot)

    def _build_snapshot(self) -> dict[str, Any]:
        now = self._config.clock()
        snap = self._header(now)
        snap.update(strategy="simple_one_for_one", mode=self._mode.value, size=self._size)
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
            for w in self._workers
        ]
        return snap

    def __repr__(self) -> str:
        return (
            f"<WorkerPool {self._path!r} {self._state} size={self._size} mode={self._mode.value}>"
        )

    # ------------------------------------------------------------------ resizing

    def resize(self, size: int) -> None:
        """
        Grow or shrink the pool to *size* workers while it runs.

        Growing starts workers with the next ids. Shrinking stops the workers with the
        highest ids (the newest slots), together, by the shutdown policy, and removes them;
        the other workers go on restarting meanwhile. A budget that follows the size (the
        default) follows it.

        Raises:
            InvalidArgumentError: If *size* is not an int >= 0.
            SupervisorNotRunningError: If the pool is not running.
        """
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidArgumentError(f"{self._owner}.resize()", "size", "an int >= 0", size)
        self._call("resize", lambda: self._do_resize(size))

    # ================================================================== the manager

    def _records(self) -> Iterator[Record]:
        return iter(list(self._workers))

    def _started_fields(self) -> dict[str, object]:
        return {"strategy": "simple_one_for_one", "children": self._size, "mode": self._mode.value}

    def _policy_of(self, record: Record) -> ShutdownPolicy:
        return self._spec.shutdown

    def _start_op(self) -> Op:
        self._hub = gevent.get_hub()
        # Crashes of a kind being summarized may be posted as their storm alone, unless
        # subscribers want every exception; with a finite budget, only while it has room.
        damp = self._fast and not self._reporter.emitter.has_subscribers
        self._damp_limited = damp and self._limited
        self._mailbox.channel.damped = self._storm_of if damp else None
        if not self._reuse:
            self._spare = spare(self._hub)
        self._add_workers(self._size)
        self._end_batch()
        yield from ()

    def _add_workers(self, count: int) -> None:
        channel = self._mailbox.channel
        spec = self._spec
        monitor = self._monitor
        starts = self._starts
        now = self._config.clock()
        first = len(self._workers)
        for worker_id in range(first, first + count):
            record = _Worker(
                worker_id,
                spec.target,
                (worker_id, *spec.args),
                spec.kwargs,
                channel,
                self._context,
            )
            self._workers.append(record)
            record.reusable = self._reuse
            record.incarnation = record.live = 1
            record.status = RUNNING
            record.started_at = now
            record.greenlet = greenlet = create(record, 1, self._hub)
            starts.append(greenlet)
            if monitor is not None:
                monitor.started(record)
        self._active += count

    def _handle_exit(self, worker: _Worker, incarnation: int, exc: Any) -> None:
        """
        Handle one posted exit: the hot path, O(1). *exc* is what the incarnation raised,
        ``None`` if it returned, or the `Storm` of its kind (the worker counted itself in).

        The common case of a crash storm, an ``Exception`` that restarts a worker at once
        while its kind is already being summarized in the log, takes the straight path
        below: the rules of `greenkeep._rules.plan_exit` for that case, inline (a call to
        them costs more than the rest; a test checks that both agree). Everything else goes
        through `_general`.
        """
        if (
            self._fast
            and exc is not None
            and worker.live == incarnation
            and not worker.stop_requested
            and worker.waiters is None
            and worker.status is RUNNING
            and self._end_reason is None
        ):
            storm = None
            if type(exc) is Storm:  # a crash the worker posted as its storm (counted)
                storm = exc
            elif isinstance(exc, Exception):
                tb = exc.__traceback__
                if tb is not None:
                    while tb.tb_next is not None:  # greenkeep._storm.crash_site, inlined
                        tb = tb.tb_next
                    storm = self._storm_of.get((type(exc), id(tb.tb_frame.f_code), tb.tb_lasti))
                    tb = None
            if storm is not None:
                now = self._config.clock()
                if self._limited and self._intensity.record(now):
                    self._give_up_now(worker, incarnation, exc, now)  # the budget ran out
                    return
                worker.last_reason = "abnormal"
                if storm is not exc:
                    storm.count += 1  # (counts are summed into the total at each summary)
                    if storm.sample is None:
                        storm.sample = (worker.id, incarnation, error_text(exc))
                reporter = self._reporter
                if reporter.emitter.has_subscribers:
                    reporter.summarized_exit(worker.id, incarnation, self._restart_value, exc)
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
                if reporter.emitter.has_subscribers:
                    reporter.restarted(
                        worker.id, incarnation, self._intensity.in_window, logged=False
                    )
                return
        self._general(worker, incarnation, exc)

    def _give_up_now(self, worker: _Worker, incarnation: int, exc: Any, now: float) -> None:
        worker.live = 0
        self._active -= 1
        worker.last_reason = "abnormal"
        self._not_restarted(worker, incarnation, ExitKind.ABNORMAL, exc, Action.GIVE_UP, now)
        self._give_up(_crash_record(worker.id, incarnation, exc, now))

    def _general(self, worker: _Worker, incarnation: int, exc: Any) -> None:
        """Every exit the straight path of `_handle_exit` does not take."""
        if worker.live != incarnation:
            self._late_exit(worker, incarnation, REASON[classify(exc, True)])
            return
        worker.live = 0
        self._active -= 1
        if self._monitor is not None:
            self._monitor.ended(worker)
        now = self._config.clock()
        plan = plan_exit(
            self._restart_type,
            exc,
            stop_requested=worker.stop_requested,
            heartbeat_killed=worker.hb_missed == incarnation,
            stopping=worker.status is not RUNNING or self._end_reason is not None,
            window=self._intensity,
            now=now,
            backoff=self._backoff,
            attempt=worker.backoff_attempt,
            uptime=now - worker.started_at,
            uniform=self._config.random,
        )
        kind = plan.kind
        worker.last_reason = REASON[kind]
        if worker.waiters is not None and incarnation in worker.waiters:
            worker.waiters.pop(incarnation).set()
        if plan.action is Action.GIVE_UP:
            self._not_restarted(worker, incarnation, kind, exc, plan.action, now)
            self._give_up(_crash_record(worker.id, incarnation, exc, now))
            return
        if plan.end is not None:
            self._end(plan.end)
        if plan.action is not Action.RESTART:
            self._not_restarted(worker, incarnation, kind, exc, plan.action, now)
            return
        reporter = self._reporter
        logged = reporter.child_exited(
            worker.id, incarnation, kind, exc, "restart", self._restart_value, now, routine="debug"
        )
        if self._backoff is not None:
            worker.backoff_attempt = plan.attempt
            if not self._reuse:  # its parked greenlet retires; a new one comes after the delay
                self._park_or_drop(worker)
            worker.status = DELAYED
            self._timers.delay(worker, now + plan.delay)
            reporter.restart_delayed(worker.id, incarnation, plan.delay, plan.attempt, logged)
            return
        incarnation = self._relaunch(worker, now)
        level = "info" if kind in ABNORMAL_KINDS else "debug"
        reporter.restarted(
            worker.id, incarnation, self._intensity.in_window, level=level, logged=logged
        )

    def _relaunch(self, worker: _Worker, now: float) -> int:
        """Run *worker*'s next incarnation; return its number."""
        incarnation = worker.incarnation + 1
        worker.incarnation = worker.live = incarnation
        worker.restarts += 1
        worker.started_at = now
        worker.stop_event = None
        worker.stop_requested = False
        worker.status = RUNNING
        self._active += 1
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

    def _restart_due(self, record: _Worker) -> None:
        if record.status != DELAYED:
            return  # cancelled (stop, shrink)
        incarnation = self._relaunch(record, self._config.clock())
        self._reporter.restarted(record.id, incarnation, self._intensity.in_window)

    def _not_restarted(
        self,
        worker: _Worker,
        incarnation: int,
        kind: ExitKind,
        exc: Any,
        action: Action,
        now: float,
    ) -> None:
        # Workers the pool stops itself (stop, shrink) are counted in supervisor_stopped and
        # pool_resized, not logged one by one; subscribers still see each.
        self._reporter.child_exited(
            worker.id,
            incarnation,
            kind,
            exc,
            action.value,
            self._restart_value,
            now,
            routine="debug",
            damp=action is not Action.GIVE_UP,
            quiet=kind is ExitKind.SHUTDOWN,
        )
        self._park_or_drop(worker)
        if worker.status != STOPPING:
            worker.status = TERMINATED

    def _park_or_drop(self, worker: _Worker) -> None:
        # The incarnation ended and will not be followed: its parked greenlet retires.
        if worker.greenlet is not None:
            self._retirees.append(worker.greenlet)
        worker.greenlet = None

    def _end_batch(self) -> None:
        super()._end_batch()  # retire finished greenlets first: their memory is freed
        if self._damp_limited:
            # A crash may be posted as its storm alone only while the budget cannot run
            # out on one: each live worker has at most one exit in flight.
            headroom = self._intensity.headroom
            self._mailbox.channel.damped = (
                self._storm_of if headroom is not None and headroom > self._active else None
            )
        starts, resumes = self._starts, self._resumes
        if not starts and not resumes:
            return
        self._starts, self._resumes = [], []
        if self._end_reason is not None:  # decided in the last batch, never to run now
            for greenlet in starts + resumes:
                self._cancel(greenlet.child)
                self._retirees.append(greenlet)  # a never-started one is simply dropped
            super()._end_batch()
            return
        if (
            len(starts) + len(resumes) == 1
            and not self._mailbox.queue
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

    def _cancel(self, worker: _Worker) -> None:
        # A decided restart that will not run: the worker has nothing live.
        if worker.live:
            worker.live = 0
            self._active -= 1
        worker.status = TERMINATED
        worker.greenlet = None

    def _stop_op(self) -> Op:
        if self._spare is not None:
            self._retirees.append(self._spare)
            self._spare = None
        self._end_batch()  # cancels the restarts the last batch decided
        for worker in self._workers:
            if worker.status == DELAYED:  # cancel pending (backoff) restarts
                self._timers.cancel(worker)
                worker.status = TERMINATED
                self._park_or_drop(worker)
        running = [w for w in self._workers if w.live]  # all together (oldest first)
        for worker in running:
            worker.status = STOPPING
        yield from self._stopper.together(running, exclusive=False)
        for worker in running:
            worker.status = TERMINATED

    def _do_resize(self, size: int) -> Op:
        current = len(self._workers)
        if size > current:
            self._size = size
            self._intensity = self._intensity.resized(self._max_restarts())
            self._add_workers(size - current)
            self._end_batch()
        elif size < current:
            leaving = self._workers[size:]
            for worker in leaving:
                if worker.status == DELAYED:  # cancel their pending restarts
                    self._timers.cancel(worker)
                    worker.status = TERMINATED
                    self._park_or_drop(worker)
            running = [w for w in reversed(leaving) if w.live]
            for worker in running:
                worker.status = STOPPING
            yield from self._stopper.together(running, exclusive=False)
            for worker in running:
                worker.status = TERMINATED
            del self._workers[size:]
            self._size = size
            self._intensity = self._intensity.resized(self._max_restarts())
        self._reporter.resized(size, current)

    def _abandon(self, record: Record) -> None:
        super()._abandon(record)
        assert isinstance(record, _Worker)
        if record.live:
            record.live = 0
            self._active -= 1

    def _disown(self) -> int:
        greenlets = []
        for worker in self._workers:
            greenlets += [worker.greenlet, worker.abandoned_greenlet]
            worker.greenlet = worker.abandoned_greenlet = None
            worker.live = 0
            worker.status = TERMINATED
        self._active = 0
        return disown(greenlets)
