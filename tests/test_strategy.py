"""
Tests for restart plans (`greenkeep._strategy`): which siblings a strategy stops, drops and
starts, and in which order.
"""

# The tests assert `expected == actual` (ruff's SIM300 calls that a Yoda condition).

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenkeep._rules import AutoShutdown, RestartPlan, Strategy, plan_restart

from strategies import RestartScenario, child_orders, restart_scenarios

ORDER = ("a", "b", "c", "d")


def plan(scenario: RestartScenario) -> RestartPlan[object]:
    """Plan the restart of a scenario's failed child."""
    return plan_restart(
        scenario.strategy,
        scenario.order,
        scenario.failed,
        scenario.running.__contains__,
        scenario.temporary.__contains__,
    )


def model(scenario: RestartScenario) -> RestartPlan[object]:
    """The plan as the README words it, computed the long way."""
    order = list(scenario.order)
    if scenario.strategy is Strategy.ONE_FOR_ONE:
        affected = [scenario.failed]
    elif scenario.strategy is Strategy.ONE_FOR_ALL:
        affected = order
    else:
        affected = order[order.index(scenario.failed) :]
    bystanders = [k for k in affected if k != scenario.failed]
    stop = [k for k in bystanders if k in scenario.running]
    stop.reverse()
    drop = [k for k in bystanders if k in scenario.temporary]
    start = [k for k in affected if k not in drop]
    return RestartPlan(tuple(stop), tuple(drop), tuple(start))


def scenario(
    strategy: Strategy,
    failed: str,
    running: str = "abcd",
    temporary: str = "",
) -> RestartScenario:
    """A scenario over ORDER; *running* and *temporary* list child ids as letters."""
    return RestartScenario(strategy, ORDER, failed, frozenset(running), frozenset(temporary))


class TestOneForOne:
    @pytest.mark.parametrize("failed", ORDER)
    def test_only_the_failed_child(self, failed):
        """
        one_for_one restarts the failed child and touches nobody else.
        """
        actual = plan(scenario(Strategy.ONE_FOR_ONE, failed, temporary="abcd"))

        assert RestartPlan((), (), (failed,)) == actual

    @given(s=restart_scenarios(st.just(Strategy.ONE_FOR_ONE)))
    def test_never_touches_bystanders(self, s):
        """
        Whatever runs and whatever is temporary, one_for_one plans only the failed child.
        """
        assert RestartPlan((), (), (s.failed,)) == plan(s)


class TestOneForAll:
    @pytest.mark.parametrize(
        ("failed", "stop"),
        [("a", ("d", "c", "b")), ("b", ("d", "c", "a")), ("d", ("c", "b", "a"))],
        ids=["first", "middle", "last"],
    )
    def test_all_running(self, failed, stop):
        """
        one_for_all stops every other child newest first, then starts all in start order.
        """
        actual = plan(scenario(Strategy.ONE_FOR_ALL, failed))

        assert RestartPlan(stop, (), ORDER) == actual

    @pytest.mark.parametrize(
        ("failed", "expected"),
        [
            ("a", RestartPlan(("d", "b"), (), ORDER)),
            ("b", RestartPlan(("d",), (), ORDER)),
            ("d", RestartPlan(("b",), (), ORDER)),
        ],
        ids=["first", "middle", "last"],
    )
    def test_not_running_bystanders_are_started(self, failed, expected):
        """
        Bystanders that were not running are not stopped but are started (as OTP does).
        """
        actual = plan(scenario(Strategy.ONE_FOR_ALL, failed, running="bd"))

        assert expected == actual

    @pytest.mark.parametrize(
        ("failed", "expected"),
        [
            ("a", RestartPlan(("d", "c", "b"), ("c",), ("a", "b", "d"))),
            ("b", RestartPlan(("d", "c", "a"), ("c",), ("a", "b", "d"))),
            ("d", RestartPlan(("c", "b", "a"), ("c",), ("a", "b", "d"))),
        ],
        ids=["first", "middle", "last"],
    )
    def test_temporary_bystander_dropped(self, failed, expected):
        """
        A temporary bystander is stopped and dropped, never started again.
        """
        actual = plan(scenario(Strategy.ONE_FOR_ALL, failed, temporary="c"))

        assert expected == actual

    def test_temporary_bystander_not_running(self):
        """
        A temporary bystander that is not running is dropped without being stopped.
        """
        actual = plan(scenario(Strategy.ONE_FOR_ALL, "a", running="bd", temporary="c"))

        assert RestartPlan(("d", "b"), ("c",), ("a", "b", "d")) == actual

    def test_only_child(self):
        """
        A lone child under one_for_all is simply restarted.
        """
        actual = plan_restart(Strategy.ONE_FOR_ALL, ["x"], "x", lambda k: True, lambda k: True)

        assert RestartPlan((), (), ("x",)) == actual


class TestRestForOne:
    @pytest.mark.parametrize(
        ("failed", "expected"),
        [
            ("a", RestartPlan(("d", "c", "b"), (), ORDER)),
            ("b", RestartPlan(("d", "c"), (), ("b", "c", "d"))),
            ("d", RestartPlan((), (), ("d",))),
        ],
        ids=["first", "middle", "last"],
    )
    def test_all_running(self, failed, expected):
        """
        rest_for_one stops the children started after the failed one, newest first, and
        restarts the failed one and them in start order.
        """
        actual = plan(scenario(Strategy.REST_FOR_ONE, failed))

        assert expected == actual

    @pytest.mark.parametrize(
        ("failed", "expected"),
        [
            ("a", RestartPlan(("d", "b"), ("b",), ("a", "c", "d"))),
            ("b", RestartPlan(("d",), (), ("b", "c", "d"))),
            ("d", RestartPlan((), (), ("d",))),
        ],
        ids=["first", "middle", "last"],
    )
    def test_mixed_bystanders(self, failed, expected):
        """
        Not-running bystanders are started without a stop; temporary ones are dropped; children
        before the failed one are left alone.
        """
        actual = plan(scenario(Strategy.REST_FOR_ONE, failed, running="abd", temporary="ab"))

        assert expected == actual

    @given(order=child_orders(), failed=st.data())
    def test_stops_suffix_in_reverse(self, order, failed):
        """
        With every sibling running, only children started after the failed one are stopped,
        newest first.
        """
        victim = failed.draw(st.sampled_from(order))

        actual = plan_restart(
            Strategy.REST_FOR_ONE, order, victim, lambda k: True, lambda k: False
        )

        assert tuple(order[order.index(victim) + 1 :][::-1]) == actual.stop
        assert tuple(order[order.index(victim) :]) == actual.start


class TestAnyStrategy:
    @given(s=restart_scenarios())
    def test_matches_model(self, s):
        """
        Every plan matches the README's wording: running affected bystanders stopped in
        reverse start order, temporary ones dropped, the rest started in start order.
        """
        assert model(s) == plan(s)

    @given(s=restart_scenarios())
    def test_failed_child_started_never_stopped(self, s):
        """
        The failed child is always started (it already exited, so it is never stopped or
        dropped).
        """
        actual = plan(s)

        assert s.failed in actual.start
        assert s.failed not in actual.stop
        assert s.failed not in actual.drop

    @given(s=restart_scenarios())
    def test_orders(self, s):
        """
        stop runs in reverse start order, drop and start in start order.
        """
        actual = plan(s)
        position = {k: i for i, k in enumerate(s.order)}

        assert sorted(actual.stop, key=position.get, reverse=True) == list(actual.stop)
        assert sorted(actual.drop, key=position.get) == list(actual.drop)
        assert sorted(actual.start, key=position.get) == list(actual.start)

    @given(s=restart_scenarios())
    def test_stop_and_start_cover_running_bystanders(self, s):
        """
        Every running bystander that is stopped is either started again or dropped, and no
        child is both.
        """
        actual = plan(s)

        assert set(actual.stop) <= set(actual.start) | set(actual.drop)
        assert set() == set(actual.start) & set(actual.drop)
        assert set(actual.stop) <= s.running


class TestEnums:
    def test_strategy_values_are_otp_atoms(self):
        """
        Strategy values are OTP's atoms.
        """
        assert ["one_for_one", "one_for_all", "rest_for_one"] == [s.value for s in Strategy]
        assert Strategy("rest_for_one") is Strategy.REST_FOR_ONE

    def test_auto_shutdown_values_are_otp_atoms(self):
        """
        AutoShutdown values are OTP's atoms.
        """
        assert ["never", "any_significant", "all_significant"] == [a.value for a in AutoShutdown]
