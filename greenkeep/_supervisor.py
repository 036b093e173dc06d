"""
`Supervisor`: OTP's supervisor on greenlets (specs, strategies, the dynamic child API).

This is the façade users hold; each `start` creates a `greenkeep._supervisor_run.
SupervisorRun`, whose manager greenlet owns the children while it runs.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from greenkeep._check import check_child_id, check_choice
from greenkeep._config import make_config
from greenkeep._errors import ChildNotFoundError, InvalidSpecError, SpecProblem
from greenkeep._event_names import EventLogger, Subscriber
from greenkeep._intensity import UnlimitedType
from greenkeep._manager import SupervisorBase
from greenkeep._reports import ChildCounts, ChildInfo
from greenkeep._rules import AutoShutdown, AutoShutdownValue, Strategy, StrategyValue, child_state
from greenkeep._snapshot import charged
from greenkeep._spec import ChildId, ChildSpec, is_subtree, validate_specs
from greenkeep._supervisor_run import Child, SupervisorRun
from greenkeep._worker import Channel

__all__ = ["Supervisor"]


class Supervisor(SupervisorBase[SupervisorRun]):
    """
    Keeps child greenlets alive by Erlang/OTP's rules.

    Args:
        children: `ChildSpec` list, started in this order and stopped in reverse.
        strategy: ``"one_for_one"`` (default), ``"one_for_all"`` or ``"rest_for_one"``
            (a `Strategy`).
        max_restarts: Restart budget: more than this many restarts within *period* seconds
            and the supervisor gives up. Default 3 (Elixir's; OTP's is 1). `UNLIMITED`
            disables the rule (for benchmarks).
        period: The budget's sliding window in seconds. Default 5.
        name: Used in every event and error. Default ``"supervisor"``.
        auto_shutdown: ``"never"`` (default), ``"any_significant"`` or ``"all_significant"``
            (an `AutoShutdown`): when significant children's exits end the supervisor.
        logger: A structlog logger to log events to; default
            ``structlog.get_logger("greenkeep")``, resolved at `start`.
        subscribers: Callables that receive every event as a dict (see the README).
        clock: Seconds as a float, for the restart window, backoff, heartbeats and log
            summaries; default ``time.monotonic``. Tests pass a
            `greenkeep.testing.ManualClock`. Stopping and ``ready_timeout`` always wait in
            real time (gevent has no virtual time).
        log_summary_interval: Crash-storm damping: after the first crash of a kind (type
            and raising line), further ones are summarized at most once per this many
            seconds. ``None`` logs every crash in full. Default 1.0.
        random: Uniform numbers in [0, 1) for backoff jitter; default ``random.random``.

    Raises:
        InvalidSpecError: Listing every invalid argument; nothing was started.

    The lifecycle is gevent's: `start`, `join`, `stop`, or ``with Supervisor(...) as sup:``.
    """

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        *,
        strategy: Strategy | StrategyValue = Strategy.ONE_FOR_ONE,
        max_restarts: int | UnlimitedType = 3,
        period: float = 5.0,
        name: str = "supervisor",
        auto_shutdown: AutoShutdown | AutoShutdownValue = AutoShutdown.NEVER,
        logger: EventLogger | None = None,
        subscribers: Iterable[Subscriber] = (),
        clock: Callable[[], float] | None = None,
        log_summary_interval: float | None = 1.0,
        random: Callable[[], float] | None = None,
    ) -> None:
        problems: list[SpecProblem] = []
        config = make_config(
            "supervisor",
            problems,
            name=name,
            max_restarts=max_restarts,
            period=period,
            logger=logger,
            subscribers=subscribers,
            clock=clock,
            log_summary_interval=log_summary_interval,
            random_source=random,
        )
        owner = config.owner
        strategy_e = check_choice(Strategy, strategy, owner, "strategy", problems)
        auto_e = check_choice(AutoShutdown, auto_shutdown, owner, "auto_shutdown", problems)
        specs: list[ChildSpec] = []
        try:
            specs = validate_specs(owner, children)
        except InvalidSpecError as exc:
            problems.extend(exc.problems)
        if auto_e is not None:
            problems.extend(_significance_problems(owner, specs, auto_e))
        if problems:
            raise InvalidSpecError(problems)
        assert strategy_e is not None and auto_e is not None
        super().__init__(config)
        self._context = contextvars.copy_context()
        self._strategy: Strategy = strategy_e
        self._auto_shutdown: AutoShutdown = auto_e
        self._specs: list[ChildSpec] = specs

    def _new_run(self, context: contextvars.Context) -> SupervisorRun:
        return SupervisorRun(
            self._config, self._path, context, self._specs, self._strategy, self._auto_shutdown
        )

    # ------------------------------------------------------------------ introspection

    @property
    def strategy(self) -> Strategy:
        """The restart strategy."""
        return self._strategy

    def _degraded(self, run: SupervisorRun) -> bool:
        if not run.supervisors:
            return False
        return any(
            child.spec.is_supervisor
            and isinstance(child.spec.target, SupervisorBase)
            and child.spec.target.degraded
            for child in list(run.children.values())
        )

    def _children(self) -> list[Child]:
        run = self._run
        if run is None:  # before a start: the specs, as children that never ran
            nowhere = Channel(_post_nowhere, self._path)
            return [Child(spec, nowhere, self._context) for spec in self._specs]
        return list(run.children.values())

    def which_children(self) -> list[ChildInfo]:
        """
        Every child in start order, running or not. Works in every state (after a stop it
        shows how the children ended; before a start, the specs). Never waits for the
        manager; over many children it yields afterwards (see `snapshot`).
        """
        return charged(lambda: [child.info() for child in self._children()])

    def count_children(self) -> ChildCounts:
        """OTP's ``count_children``. O(1); never blocks."""
        run = self._run
        if run is None:
            supervisors = sum(spec.is_supervisor for spec in self._specs)
            return ChildCounts(len(self._specs), 0, supervisors, len(self._specs) - supervisors)
        specs = len(run.children)
        return ChildCounts(specs, run.active, run.supervisors, specs - run.supervisors)

    def get_child_spec(self, child_id: ChildId) -> ChildSpec:
        """
        The spec of *child_id*. Never blocks.

        Raises:
            ChildNotFoundError: If no child has this id.
            InvalidArgumentError: *child_id* cannot be an id (a str or an int, not a bool).
        """
        check_child_id(f"{self._owner}.get_child_spec()", child_id)
        run = self._run
        if run is not None:
            child = run.children.get(child_id)
            if child is not None:
                return child.spec
        else:
            for spec in self._specs:
                if spec.id == child_id:
                    return spec
        raise ChildNotFoundError(self._name, child_id)

    def snapshot(self) -> dict[str, Any]:
        """
        A JSON-serialisable view of this supervisor and, recursively, of its children:
        state, restart window, delivery counters (``events``), whether it is ``degraded``
        (a pool also gives how many workers are ``failing``), and per child its state
        (``running``, ``restarting``, ``delayed``, ``stopped``, ``failed``), incarnation,
        restart count, uptime and last exit reason. Works in every state; never waits for
        the manager. O(children): a call that worked for more than a millisecond yields
        afterwards for twice as long, so polling it cannot starve the server.
        """
        return charged(self._build_snapshot)

    def _build_snapshot(self) -> dict[str, Any]:
        now = self._config.clock()
        snap = self._header(now)
        snap["strategy"] = self._strategy.value
        snap["children"] = [_entry(child, now) for child in self._children()]
        return snap

    def __repr__(self) -> str:
        run = self._run
        children = len(self._specs) if run is None else len(run.children)
        return (
            f"<Supervisor {self._path!r} {self.state} strategy={self._strategy.value} "
            f"children={children}>"
        )

    # ------------------------------------------------------------------ dynamic children

    def start_child(self, spec: ChildSpec) -> ChildInfo:
        """
        Add *spec* at the end of the start order and start it (waiting as `start` does).
        The child runs in a copy of the caller's ``contextvars`` context. A child that exits
        at once is handled like any exit (a temporary one is then gone).

        Raises:
            ChildAlreadyStartedError: A running child has this id.
            ChildAlreadyPresentError: A terminated child with this id is kept.
            ChildStartError: It failed before it was ready (``ready_timeout``); not added.
            SupervisorNotRunningError: The supervisor is not running.
            InvalidSpecError: *spec* is not a `ChildSpec`, or is significant under
                ``auto_shutdown="never"``.
        """
        owner = f"{self._owner}.start_child()"
        if not isinstance(spec, ChildSpec):
            raise InvalidSpecError([SpecProblem(owner, "spec", "a ChildSpec", spec)])
        problems = _significance_problems(owner, [spec], self._auto_shutdown)
        if problems:
            raise InvalidSpecError(problems)
        context = contextvars.copy_context()
        return self._call("start a child", lambda run: run.start_child(spec, context))

    def terminate_child(self, child_id: ChildId) -> ChildInfo:
        """
        Stop *child_id* (by its shutdown policy) and keep its spec (a temporary child's is
        dropped). Returns how it ended. Terminating a terminated child does nothing.

        Raises:
            ChildNotFoundError: No child has this id.
            InvalidArgumentError: *child_id* cannot be an id (a str or an int, not a bool).
            SupervisorNotRunningError: The supervisor is not running.
        """
        check_child_id(f"{self._owner}.terminate_child()", child_id)
        return self._call("terminate a child", lambda run: run.terminate_child(child_id))

    def restart_child(self, child_id: ChildId) -> ChildInfo:
        """
        Start a terminated child again (a manual restart: it does not count toward the
        restart intensity).

        Raises:
            ChildNotFoundError: No child has this id.
            ChildRunningError: It is running.
            ChildRestartingError: A restart of it is pending.
            ChildStartError: It failed before it was ready (``ready_timeout``).
            InvalidArgumentError: *child_id* cannot be an id (a str or an int, not a bool).
            SupervisorNotRunningError: The supervisor is not running.
        """
        check_child_id(f"{self._owner}.restart_child()", child_id)
        return self._call("restart a child", lambda run: run.restart_child(child_id))

    def delete_child(self, child_id: ChildId) -> None:
        """
        Remove a terminated child's spec.

        Raises:
            ChildNotFoundError: No child has this id.
            ChildRunningError: It is running.
            ChildRestartingError: A restart of it is pending.
            InvalidArgumentError: *child_id* cannot be an id (a str or an int, not a bool).
            SupervisorNotRunningError: The supervisor is not running.
        """
        check_child_id(f"{self._owner}.delete_child()", child_id)
        self._call("delete a child", lambda run: run.delete_child(child_id))


def _post_nowhere(item: object) -> None:
    return None


def _entry(child: Child, now: float) -> dict[str, Any]:
    reason = None if child.last_exit is None else child.last_exit.reason
    entry: dict[str, Any] = {
        "id": child.id,
        "type": "supervisor" if child.spec.is_supervisor else "worker",
        "state": child_state(child.status, reason),
        "incarnation": child.incarnation,
        "restarts": child.restarts,
        "uptime": round(now - child.started_at, 6) if child.greenlet is not None else None,
        "last_exit": reason,
    }
    target = child.spec.target
    if is_subtree(target) and child.incarnation:
        entry["supervisor"] = target.snapshot()  # type: ignore[union-attr]
    return entry


def _significance_problems(
    owner: str, specs: Sequence[ChildSpec], auto: AutoShutdown
) -> list[SpecProblem]:
    if auto is not AutoShutdown.NEVER:
        return []
    allowed = "False when auto_shutdown is 'never' (as in OTP)"
    return [
        SpecProblem(owner, f"children[{i}].significant", allowed, True)
        for i, spec in enumerate(specs)
        if spec.significant
    ]
