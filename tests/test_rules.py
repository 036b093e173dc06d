"""
Tests for the decision layer (`greenkeep._rules`): the restart table cell by cell, `plan_exit`
against a model written here (OTP's rules, the long way), and the pool's inline straight path
against `plan_exit` on a live pool.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.event
import gevent.queue
import pytest
from greenlet import GreenletExit
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import greenkeep
from greenkeep import Backoff, WorkerPool
from greenkeep._exits import ExitKind
from greenkeep._intensity import RestartIntensity
from greenkeep._rules import Action, AutoShutdown, action_for, child_state, exit_kind, plan_exit
from greenkeep._spec import Restart
from greenkeep.testing import ManualClock

from _events import Events, wait_until
from strategies import any_exits, exit_kinds, restarts

NORMAL, SHUTDOWN, ABNORMAL = ExitKind.NORMAL, ExitKind.SHUTDOWN, ExitKind.ABNORMAL
HEARTBEAT, INTERRUPTED = ExitKind.HEARTBEAT_MISSED, ExitKind.INTERRUPTED

#: The restart table for a child that exited on its own (interrupted: never restarted).
TABLE = {
    (Restart.PERMANENT, NORMAL): Action.RESTART,
    (Restart.PERMANENT, SHUTDOWN): Action.KEEP,
    (Restart.PERMANENT, ABNORMAL): Action.RESTART,
    (Restart.PERMANENT, HEARTBEAT): Action.RESTART,
    (Restart.TRANSIENT, NORMAL): Action.KEEP,
    (Restart.TRANSIENT, SHUTDOWN): Action.KEEP,
    (Restart.TRANSIENT, ABNORMAL): Action.RESTART,
    (Restart.TRANSIENT, HEARTBEAT): Action.RESTART,
    (Restart.TEMPORARY, NORMAL): Action.DROP,
    (Restart.TEMPORARY, SHUTDOWN): Action.DROP,
    (Restart.TEMPORARY, ABNORMAL): Action.DROP,
    (Restart.TEMPORARY, HEARTBEAT): Action.DROP,
}


class TestTable:
    @pytest.mark.parametrize(
        ("restart", "kind", "expected"),
        [(r, k, a) for (r, k), a in TABLE.items()],
        ids=[f"{r.value}-{k.value}" for (r, k) in TABLE],
    )
    def test_cell(self, restart: Restart, kind: ExitKind, expected: Action) -> None:
        """Each cell of the restart table gives its action."""
        assert expected is action_for(restart, kind, False)

    @given(restart=restarts, kind=exit_kinds)
    def test_overrides(self, restart: Restart, kind: ExitKind) -> None:
        """A child being stopped is never restarted (action none), and an interrupt stops
        the supervisor whatever else holds."""
        stopping = action_for(restart, kind, True)

        if kind is INTERRUPTED:
            assert Action.STOP_SUPERVISOR is stopping is action_for(restart, kind, False)
        else:
            assert Action.NONE is stopping

    def test_heartbeat_rule(self) -> None:
        """Only greenkeep's own kill for a missed heartbeat becomes heartbeat_missed."""
        assert HEARTBEAT is exit_kind(GreenletExit(), False, True)
        assert ABNORMAL is exit_kind(ValueError(), False, True)
        assert SHUTDOWN is exit_kind(GreenletExit(), True, True)
        assert NORMAL is exit_kind(GreenletExit(), False, False)

    def test_child_states(self) -> None:
        """Snapshots show a terminated child as failed after a crash, else stopped; a child
        being stopped still runs."""
        assert "failed" == child_state("terminated", "heartbeat_missed")
        assert "stopped" == child_state("terminated", "normal")
        assert "running" == child_state("stopping", None)
        assert "delayed" == child_state("delayed", None)
        assert "restarting" == child_state("restarting", None)


# ---------------------------------------------------------------------- plan_exit vs a model


@dataclass(frozen=True)
class Exit:
    """One exit in a generated run."""

    gap: float
    exc: BaseException | None
    stop_requested: bool
    heartbeat_killed: bool
    stopping: bool
    uptime: float
    uniform: float


exits = st.builds(
    Exit,
    gap=st.sampled_from([0.0, 0.5, 1.0, 2.5, 5.0, 7.0]),
    exc=any_exits,
    stop_requested=st.booleans(),
    heartbeat_killed=st.booleans(),
    stopping=st.booleans(),
    uptime=st.sampled_from([0.0, 0.5, 30.0, 61.0]),
    uniform=st.floats(min_value=0.0, max_value=0.999),
)


def model_kind(e: Exit) -> ExitKind:
    """The "how a child exits" table, the long way."""
    if isinstance(e.exc, KeyboardInterrupt):
        return INTERRUPTED
    if e.stop_requested:
        return SHUTDOWN
    if e.exc is None or isinstance(e.exc, GreenletExit):
        return HEARTBEAT if e.heartbeat_killed else NORMAL
    if isinstance(e.exc, SystemExit) and e.exc.code in (0, None):
        return HEARTBEAT if e.heartbeat_killed else NORMAL
    return ABNORMAL


class TestPlanExit:
    @settings(max_examples=300)
    @given(
        restart=restarts,
        run=st.lists(exits, min_size=1, max_size=25),
        max_restarts=st.integers(min_value=0, max_value=4),
        period=st.sampled_from([1.0, 5.0]),
        backoff=st.sampled_from([None, Backoff(initial=0.1, factor=2, max_delay=1, jitter=0.5)]),
        significant=st.booleans(),
        auto=st.sampled_from(AutoShutdown),
        others_running=st.booleans(),
    )
    def test_agrees_with_the_model(
        self,
        restart: Restart,
        run: list[Exit],
        max_restarts: int,
        period: float,
        backoff: Backoff | None,
        significant: bool,
        auto: AutoShutdown,
        others_running: bool,
    ) -> None:
        """Over any run of exits, every plan is what OTP's rules say: the kind, the action,
        the spec's fate, why the supervisor ends, the give-up moment, the backoff delay."""
        window = RestartIntensity(max_restarts, period)
        restart_times: list[float] = []
        now, attempt, decided = 0.0, 0, 0
        for e in run:
            now += e.gap

            plan = plan_exit(
                restart,
                e.exc,
                stop_requested=e.stop_requested,
                heartbeat_killed=e.heartbeat_killed,
                stopping=e.stopping,
                window=window,
                now=now,
                backoff=backoff,
                attempt=attempt,
                uptime=e.uptime,
                uniform=lambda u=e.uniform: u,
                significant=significant,
                auto_shutdown=auto,
                significant_running=lambda: others_running,
            )

            kind = model_kind(e)
            assert kind is plan.kind
            if kind is INTERRUPTED:
                assert (Action.STOP_SUPERVISOR, "interrupted") == (plan.action, plan.end)
                continue
            if e.stopping:
                assert (Action.NONE, None) == (plan.action, plan.end)
                continue
            action = TABLE[restart, kind]
            if action is not Action.RESTART:
                ends = significant and (
                    auto is AutoShutdown.ANY_SIGNIFICANT
                    or (auto is AutoShutdown.ALL_SIGNIFICANT and not others_running)
                )
                assert (action, "auto_shutdown" if ends else None) == (plan.action, plan.end)
                assert (restart is Restart.TEMPORARY) == plan.drop
                continue
            decided += 1
            assert decided == window.total  # every restart decided is counted in the total
            # With a backoff, only the restart that starts a crash sequence (attempt 1)
            # counts toward the intensity; without one, every restart does (OTP).
            if backoff is not None:
                attempt = 1 if e.uptime >= backoff.reset_after else attempt + 1
            if backoff is None or attempt == 1:
                restart_times.append(now)
            in_window = [t for t in restart_times if now - t <= period]
            if len(in_window) > max_restarts:
                assert (Action.GIVE_UP, "restart_intensity_exceeded") == (plan.action, plan.end)
                return  # the supervisor is gone
            assert (Action.RESTART, None) == (plan.action, plan.end)
            if backoff is None:
                assert (0.0, 0) == (plan.delay, plan.attempt)
                continue
            base = min(backoff.max_delay, backoff.initial * backoff.factor ** (attempt - 1))
            expected = base * (1 + backoff.jitter * (2 * e.uniform - 1))
            assert attempt == plan.attempt
            assert expected == pytest.approx(plan.delay)

    @settings(max_examples=200)
    @given(
        uptimes=st.lists(
            st.sampled_from([0.0, 0.01, 0.5, 3.0, 4.99, 5.0, 5.01, 12.0]), min_size=1, max_size=60
        ),
        reset_after=st.sampled_from([1.0, 2.5, 5.0, 7.0, 60.0]),
        period=st.sampled_from([1.0, 5.0, 10.0]),
        uniform=st.floats(min_value=0.0, max_value=0.999),
    )
    def test_the_sizing_rule_holds_for_any_timeline(
        self, uptimes: list[float], reset_after: float, period: float, uniform: float
    ) -> None:
        """A child with a backoff, crashing after any uptimes (each restart after its delay),
        starts at most 1 + period // reset_after crash sequences within any period, and a
        budget that large never gives up, however long the crash loop goes on."""
        backoff = Backoff(
            initial=0.1, factor=2, max_delay=5.0, jitter=0.5, reset_after=reset_after
        )
        budget = 1 + int(period // reset_after)
        window = RestartIntensity(budget, period)
        now, attempt = 0.0, 0
        starts: list[float] = []
        for uptime in uptimes:
            now += uptime

            plan = plan_exit(
                Restart.PERMANENT,
                ValueError("down"),
                stop_requested=False,
                heartbeat_killed=False,
                stopping=False,
                window=window,
                now=now,
                backoff=backoff,
                attempt=attempt,
                uptime=uptime,
                uniform=lambda: uniform,
            )

            assert Action.RESTART is plan.action
            attempt = plan.attempt
            if attempt == 1:
                starts.append(now)
            assert budget >= len([t for t in starts if now - t <= period])
            now += plan.delay

    @given(max_restarts=st.integers(min_value=0, max_value=5), with_backoff=st.booleans())
    def test_a_crash_loop_gives_up_only_without_backoff(
        self, max_restarts: int, with_backoff: bool
    ) -> None:
        """Incarnations that crash at once: without a backoff the restart after the budget
        gives up, within one period (OTP); with one, only the first restart counts, so a
        budget of at least 1 never runs out (the loop goes on at the backoff's pace)."""
        backoff = Backoff(initial=0.001, max_delay=0.001, jitter=0) if with_backoff else None
        window = RestartIntensity(max_restarts, 5.0)
        now, attempt = 0.0, 0
        actions = []
        for _ in range(max_restarts + 20):
            plan = plan_exit(
                Restart.PERMANENT,
                ValueError("bug"),
                stop_requested=False,
                heartbeat_killed=False,
                stopping=False,
                window=window,
                now=now,
                backoff=backoff,
                attempt=attempt,
            )
            actions.append(plan.action)
            if plan.action is Action.GIVE_UP:
                break
            attempt = plan.attempt
            now += plan.delay

        if with_backoff and max_restarts >= 1:
            assert {Action.RESTART} == set(actions)
            assert 1 == window.in_window
        else:
            assert [Action.RESTART] * max_restarts + [Action.GIVE_UP] == actions

    def test_jitter_is_drawn_only_for_a_delayed_restart(self) -> None:
        """The random source is asked once per delayed restart and never otherwise."""
        draws: list[int] = []

        def uniform() -> float:
            draws.append(1)
            return 0.5

        window = RestartIntensity(10, 5.0)
        common = {
            "stop_requested": False,
            "heartbeat_killed": False,
            "window": window,
            "now": 0.0,
            "uniform": uniform,
        }
        plan_exit(Restart.PERMANENT, ValueError(), stopping=False, **common)  # type: ignore[arg-type]
        plan_exit(Restart.TRANSIENT, None, stopping=False, backoff=Backoff(), **common)  # type: ignore[arg-type]
        plan_exit(Restart.PERMANENT, None, stopping=False, backoff=Backoff(), **common)  # type: ignore[arg-type]

        assert [1] == draws


# ---------------------------------------------------------------------- the straight path


class Crashers:
    """Pool workers that block until told to crash (every crash from the same line)."""

    def __init__(self) -> None:
        self.queues: dict[int, gevent.queue.Queue[None]] = {}

    def target(self, worker_id: int) -> None:
        self.queues.setdefault(worker_id, gevent.queue.Queue()).get()
        raise ValueError("storm")

    def crash(self, worker_id: int) -> None:
        self.queues.setdefault(worker_id, gevent.queue.Queue()).put(None)

    def pool(
        self, mode: str, max_restarts: int, clock: ManualClock, subscribers: Any = ()
    ) -> WorkerPool:
        """Three of them in a pool with a 1 s period."""
        return WorkerPool(
            self.target,
            3,
            mode=mode,
            max_restarts=max_restarts,
            period=1.0,
            clock=clock,
            subscribers=subscribers,
            name="p",
        )


def storm_plan(window: RestartIntensity, now: float) -> Any:
    """plan_exit for one more crash of the storm, at *now*."""
    return plan_exit(
        Restart.PERMANENT,
        ValueError("storm"),
        stop_requested=False,
        heartbeat_killed=False,
        stopping=False,
        window=window,
        now=now,
    )


#: Gaps between the crashes of a storm (at most 0.9 s: it never ends), and which worker.
STORM_GAPS = st.lists(st.sampled_from([0.0, 0.1, 0.4, 0.9]), min_size=2, max_size=12)
STORM_WORKERS = st.lists(st.integers(min_value=0, max_value=2), min_size=12, max_size=12)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=STORM_GAPS,
    max_restarts=st.integers(min_value=1, max_value=6),
    workers=STORM_WORKERS,
)
@pytest.mark.parametrize("mode", ["fresh", "reuse"])
def test_the_pools_straight_path_agrees_with_plan_exit(
    mode: str, gaps: list[float], max_restarts: int, workers: list[int]
) -> None:
    """Crashes handled on the pool's inline straight path (a storm under way) restart and
    give up exactly when plan_exit says, with the same restarts in the window."""
    clock = ManualClock()
    crashers = Crashers()
    events = Events()
    pool = crashers.pool(mode, max_restarts, clock, subscribers=[events])
    window = RestartIntensity(max_restarts, 1.0)
    pool.start()
    try:
        straight = handled = 0
        gave_up = False
        for gap, worker in zip(gaps, workers, strict=False):
            clock.advance(gap)
            plan = storm_plan(window, clock())
            crashers.crash(worker)
            exited = events.wait("child_exited", child_id=worker)
            handled += 1
            straight += bool(exited.get("summarized"))

            assert plan.action.value == exited["action"]
            if plan.action is Action.GIVE_UP:
                gave_up = True
                with pytest.raises(greenkeep.RestartIntensityExceeded):
                    pool.join(timeout=5)
                break
            restarted = events.wait("child_restarted", child_id=worker)
            assert window.in_window == restarted["restarts_in_period"]
        # The first crash of the kind is logged in full; with crashes at most 0.9 s apart
        # the storm never ends, so every later restart took the straight path.
        assert handled - 1 - gave_up == straight
    finally:
        pool.stop(timeout=5)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=STORM_GAPS,
    max_restarts=st.one_of(st.integers(min_value=1, max_value=6), st.just(100)),
    workers=STORM_WORKERS,
)
@pytest.mark.parametrize("mode", ["fresh", "reuse"])
@pytest.mark.parametrize("bulk", ["compiled", "python"])
def test_the_pools_bulk_path_agrees_with_plan_exit(
    bulk: str, mode: str, gaps: list[float], max_restarts: int, workers: list[int]
) -> None:
    """Without subscribers, crashes of a kind being summarized are restarted in bulk
    (`PoolRun.drain`): they restart and give up exactly when plan_exit says, every one
    after the first of the kind taking that path while the budget has room. Once with the
    compiled bulk restart (`greenkeep._speedups.straight_run`), once with its Python twin."""
    import greenkeep._pool_run
    from greenkeep._pool_run import PoolRun, _straight_run_py

    if bulk == "compiled" and greenkeep._pool_run._straight_run is _straight_run_py:
        if os.environ.get("GREENKEEP_REQUIRE_SPEEDUPS"):
            pytest.fail("GREENKEEP_REQUIRE_SPEEDUPS is set but the C speedup is not built")
        pytest.skip("the C speedup is not built here")

    drained = [0]
    original = PoolRun.drain

    def counting(self: PoolRun, queue: Any, handled: int, most: int) -> int:
        after = original(self, queue, handled, most)
        drained[0] += after - handled
        return after

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PoolRun, "drain", counting)
        if bulk == "python":
            patch.setattr(greenkeep._pool_run, "_straight_run", _straight_run_py)
        bulk_path_run(mode, gaps, max_restarts, workers, drained)


def bulk_path_run(
    mode: str, gaps: list[float], max_restarts: int, workers: list[int], drained: list[int]
) -> None:
    clock = ManualClock()
    crashers = Crashers()
    pool = crashers.pool(mode, max_restarts, clock)
    window = RestartIntensity(max_restarts, 1.0)
    pool.start()
    try:
        handled = 0
        for gap, worker in zip(gaps, workers, strict=False):
            clock.advance(gap)
            plan = storm_plan(window, clock())
            before = pool.which_children()[worker].incarnation
            crashers.crash(worker)
            handled += 1
            if plan.action is Action.GIVE_UP:
                with pytest.raises(greenkeep.RestartIntensityExceeded):
                    pool.join(timeout=5)
                break
            assert plan.action is Action.RESTART
            wait_until(lambda w=worker, b=before: pool.which_children()[w].incarnation > b)
            assert pool.which_children()[worker].incarnation == before + 1
            assert pool.state == "running"
        # The first crash of the kind is logged in full; with crashes at most 0.9 s apart
        # the storm never ends, so every later one took the bulk path, as long as the budget
        # had room for every worker's crash (else workers post their crashes in full).
        assert drained[0] <= handled - 1
        if max_restarts >= len(gaps) + 3:
            assert handled - 1 == drained[0]
    finally:
        pool.stop(timeout=5)
