"""
Tests for the restart-intensity window (`greenkeep._intensity`): OTP's "more than
*max_restarts* restarts within *period* seconds", inclusive at the window's edge.
"""

# The tests assert `expected == actual` (ruff's SIM300 calls that a Yoda condition).

from __future__ import annotations

import math
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenkeep._intensity import (
    EDGE_ABSOLUTE,
    EDGE_RELATIVE,
    UNLIMITED,
    RestartIntensity,
    UnlimitedType,
    intensity_problems,
)

from strategies import intensity_runs

MAX_ALLOWED = "an int >= 0 or greenkeep.UNLIMITED"
PERIOD_ALLOWED = "a finite number of seconds > 0"


class ReferenceWindow:
    """
    The obvious model: keep every restart time, count those with ``now - t <= period``,
    to within the documented tolerance (1 ns plus 2**-43 of the reading *t*).
    """

    def __init__(self, max_restarts: int, period: float) -> None:
        self.max_restarts = max_restarts
        self.period = period
        self.times: list[float] = []

    def count(self, now: float) -> int:
        return sum(
            1
            for t in self.times
            if now <= t + self.period + EDGE_ABSOLUTE + abs(t) * EDGE_RELATIVE
        )

    def record(self, now: float) -> bool:
        self.times.append(now)
        return self.count(now) > self.max_restarts


class TestWindow:
    @pytest.mark.parametrize("max_restarts", [1, 3, 10])
    def test_exactly_max_allowed(self, max_restarts):
        """
        max_restarts restarts within the period are allowed; one more exceeds it.
        """
        window = RestartIntensity(max_restarts, 5.0)

        allowed = [window.record(0.1 * i) for i in range(max_restarts)]
        exceeded = window.record(0.1 * max_restarts)

        assert [False] * max_restarts == allowed
        assert exceeded is True
        assert max_restarts + 1 == window.in_window

    def test_all_at_the_same_instant(self):
        """
        Restarts at the same clock reading all count.
        """
        window = RestartIntensity(2, 5.0)

        results = [window.record(7.0) for _ in range(3)]

        assert [False, False, True] == results

    def test_old_restarts_forgotten(self):
        """
        Restarts older than the period no longer count.
        """
        window = RestartIntensity(2, 5.0)
        window.record(0.0)
        window.record(1.0)

        exceeded = window.record(6.5)

        assert exceeded is False
        assert 1 == window.in_window

    def test_partly_forgotten(self):
        """
        Only the restarts that left the window are forgotten; the others still count.
        """
        window = RestartIntensity(2, 5.0)
        window.record(0.0)
        window.record(4.0)

        exceeded = window.record(5.5)

        assert exceeded is False
        assert 2 == window.in_window
        assert window.record(5.6) is True

    def test_restart_exactly_period_old_counts(self):
        """
        A restart exactly period seconds old is still in the window (OTP's R >= Now - Period).
        """
        window = RestartIntensity(1, 5.0)
        window.record(0.0)

        exceeded = window.record(5.0)

        assert exceeded is True
        assert 2 == window.in_window

    def test_restart_just_over_period_old_is_forgotten(self):
        """
        A restart more than period seconds old, by more than the tolerance, has left the
        window.
        """
        window = RestartIntensity(1, 5.0)
        window.record(0.0)

        exceeded = window.record(5.0 + 2 * EDGE_ABSOLUTE)

        assert exceeded is False
        assert 1 == window.in_window

    def test_within_the_tolerance_is_exactly_period_old(self):
        """
        One float step over the period (what rounding produces) still counts, up to the
        tolerance: 1 ns plus 2**-43 of the reading.
        """
        for start, tolerance in (
            (0.0, EDGE_ABSOLUTE),
            (1.7e9, EDGE_ABSOLUTE + 1.7e9 * EDGE_RELATIVE),
        ):
            window = RestartIntensity(1, 5.0)
            window.record(start)
            assert window.record(math.nextafter(start + 5.0, math.inf)) is True

            window = RestartIntensity(1, 5.0)
            window.record(start)
            assert window.record(start + 5.0 + 0.5 * tolerance) is True

            window = RestartIntensity(1, 5.0)
            window.record(start)
            assert window.record(start + 5.0 + 2 * tolerance) is False

    @pytest.mark.parametrize(
        ("first", "second", "period"),
        [(0.3, 1.0, 0.7), (0.1, 0.3, 0.2), (1.1, 3.3, 2.2), (0.4, 1.1, 0.7)],
    )
    def test_edge_with_decimal_floats(self, first, second, period):
        """
        Decimal readings exactly period apart count, whatever float subtraction says
        (``1.1 - 0.4`` is 0.7000000000000001).
        """
        window = RestartIntensity(1, period)
        window.record(first)

        exceeded = window.record(second)

        assert exceeded is True

    def test_zero_fails_first_restart(self):
        """
        max_restarts=0 gives up on the very first restart.
        """
        window = RestartIntensity(0, 5.0)

        exceeded = window.record(0.0)

        assert exceeded is True
        assert 1 == window.in_window

    def test_unlimited_never_fails(self):
        """
        UNLIMITED never gives up and reports no window.
        """
        window = RestartIntensity(UNLIMITED, 5.0)

        results = {window.record(0.0) for _ in range(10_000)}

        assert {False} == results
        assert window.in_window is None
        assert window.in_period(0.0) is None
        assert 10_000 == window.total

    def test_in_window_reported(self):
        """
        in_window is the number of restarts the window held after each record.
        """
        window = RestartIntensity(3, 10.0)

        reported = []
        for now in [0.0, 1.0, 2.0, 11.5, 12.5]:
            window.record(now)
            reported.append(window.in_window)

        assert [1, 2, 3, 2, 2] == reported

    def test_in_window_starts_at_zero(self):
        """
        A fresh window holds no restarts.
        """
        assert 0 == RestartIntensity(1, 5.0).in_window

    def test_in_period_at_a_later_time(self):
        """
        in_period counts the restarts still in the window at a given time, edge included.
        """
        window = RestartIntensity(5, 10.0)
        for now in [0.0, 2.0, 4.0]:
            window.record(now)

        counts = [window.in_period(t) for t in [4.0, 10.0, 12.0, 13.0, 14.0, 14.5]]

        assert [3, 3, 2, 1, 1, 0] == counts

    def test_total_counts_everything(self):
        """
        total counts every recorded restart, also those that left the window.
        """
        window = RestartIntensity(1, 1.0)
        for now in [0.0, 5.0, 10.0, 15.0]:
            window.record(now)

        assert 4 == window.total

    def test_resized_keeps_the_restarts_and_the_total(self):
        """
        A window resized to a new budget keeps the restarts it held and its total.
        """
        window = RestartIntensity(5, 5.0)
        for t in (0.0, 1.0, 2.0):
            window.record(t)

        resized = window.resized(2)

        assert (3, 2) == (resized.total, resized.max_restarts)
        assert resized.record(2.5) is True  # three kept + this one > 2

    def test_headroom_counts_down_and_is_none_when_unlimited(self):
        """
        headroom is how many more restarts the window allows (unaged ones counted).
        """
        window = RestartIntensity(3, 5.0)
        window.record(0.0)

        assert 2 == window.headroom
        assert RestartIntensity(UNLIMITED, 5.0).headroom is None

    @given(run=intensity_runs())
    def test_matches_reference_model(self, run):
        """
        Over any non-decreasing sequence of restarts, the O(1) window agrees with a model
        that keeps every restart, on every record.
        """
        window = RestartIntensity(run.max_restarts, run.period)
        model = ReferenceWindow(run.max_restarts, run.period)

        expected = [model.record(t) for t in run.times]
        actual = [window.record(t) for t in run.times]

        assert expected == actual

    @given(run=intensity_runs())
    def test_in_window_matches_model_until_exceeded(self, run):
        """
        Up to and including the first restart that exceeds the budget (where a supervisor
        gives up), in_window is the model's count.
        """
        window = RestartIntensity(run.max_restarts, run.period)
        model = ReferenceWindow(run.max_restarts, run.period)

        expected = []
        actual = []
        for t in run.times:
            model.record(t)
            exceeded = window.record(t)
            expected.append(model.count(t))
            actual.append(window.in_window)
            if exceeded:
                break

        assert expected == actual

    @given(run=intensity_runs())
    def test_keeps_at_most_max_plus_one(self, run):
        """
        The window never holds more than max_restarts + 1 timestamps (O(1) memory).
        """
        window = RestartIntensity(run.max_restarts, run.period)

        sizes = set()
        for t in run.times:
            window.record(t)
            sizes.add(window.in_window)

        assert max(sizes) <= run.max_restarts + 1


class TestUnlimited:
    def test_singleton(self):
        """
        UNLIMITED is one object, with a repr that says what it is.
        """
        assert type(UNLIMITED)() is UNLIMITED
        assert "greenkeep.UNLIMITED" == repr(UNLIMITED)

    def test_pickles_to_itself(self):
        """
        UNLIMITED survives pickling as the same object.
        """
        assert pickle.loads(pickle.dumps(UNLIMITED)) is UNLIMITED


class TestIntensityProblems:
    @pytest.mark.parametrize(
        ("max_restarts", "period"),
        [(0, 1), (1, 5), (3, 5.0), (10_000, 1), (UNLIMITED, 5), (1, 0.001)],
    )
    def test_valid(self, max_restarts, period):
        """
        Non-negative int budgets, UNLIMITED, and finite positive periods are valid.
        """
        assert [] == intensity_problems(max_restarts, period)

    @pytest.mark.parametrize(
        "max_restarts",
        [-1, True, False, 1.5, 3.0, math.nan, math.inf, "3", None],
        ids=["negative", "true", "false", "float", "whole-float", "nan", "inf", "str", "none"],
    )
    def test_bad_max_restarts(self, max_restarts):
        """
        Negative, bool, float, NaN, inf and non-numbers are rejected as max_restarts.
        """
        assert [("max_restarts", MAX_ALLOWED, max_restarts)] == intensity_problems(
            max_restarts, 5.0
        )

    @pytest.mark.parametrize(
        "period",
        [0, 0.0, -1, -0.5, True, False, math.nan, math.inf, -math.inf, "5", None],
        ids=[
            "zero",
            "zero-float",
            "negative",
            "negative-float",
            "true",
            "false",
            "nan",
            "inf",
            "-inf",
            "str",
            "none",
        ],
    )
    def test_bad_period(self, period):
        """
        Zero, negative, bool, NaN, infinite and non-number periods are rejected.
        """
        assert [("period", PERIOD_ALLOWED, period)] == intensity_problems(3, period)

    def test_both_bad(self):
        """
        Both bad settings are reported together.
        """
        assert [
            ("max_restarts", MAX_ALLOWED, -1),
            ("period", PERIOD_ALLOWED, 0),
        ] == intensity_problems(-1, 0)


@given(
    max_restarts=st.one_of(st.integers(min_value=0, max_value=8), st.just(UNLIMITED)),
    runs=st.lists(
        st.tuples(st.sampled_from([0.0, 0.3, 1.0, 1.0000000001]), st.integers(0, 6)),
        max_size=12,
    ),
)
def test_record_many_is_record_called_in_a_row(
    max_restarts: int | UnlimitedType, runs: list[tuple[float, int]]
) -> None:
    """A run of *count* restarts at one reading (a pool's bulk path) is recorded exactly as
    *count* calls of record() would be, each stopping at the first that exceeds."""
    bulk, one_by_one = RestartIntensity(max_restarts, 1.0), RestartIntensity(max_restarts, 1.0)
    now = 0.0
    for gap, count in runs:
        now += gap
        exceeded_one = False
        for _ in range(count):
            if one_by_one.record(now):
                exceeded_one = True
                break
        room = bulk.room(now)
        assert bulk.record_many(now, count) is exceeded_one
        assert (bulk.total, bulk.in_window) == (one_by_one.total, one_by_one.in_window)
        assert bulk.in_period(now) == one_by_one.in_period(now)
        if room is not None:
            assert exceeded_one is (count > room)
        if exceeded_one:
            break


def test_a_run_recorded_together_is_kept_as_one_entry() -> None:
    """A pool's bulk path records a run of restarts at one reading: the window keeps it as
    one entry however long it is (a budget never reached, 10**9, held a million restarts
    in a million entries, each dropped by its own step of a Python loop)."""
    window = RestartIntensity(10**9, 5.0)
    for i in range(100):
        window.record_many(i * 0.01, 10_000)
    window.record(1.0)

    assert (1_000_001, 1_000_001, 101) == (
        window.in_window,
        window.in_period(1.0),
        len(window._ends),
    )
    assert 10**9 - 1_000_001 == window.room(1.0)
    assert 1 == window.in_period(5.0 + 1.0)  # only the last one is still in at 6.0
