"""Crash-storm damping as a pure function of time: every crash is counted exactly once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from greenkeep._storm import HEARTBEAT_KIND, CrashStorms, Storm, crash_site, describe


def boom() -> ValueError:
    try:
        raise ValueError("boom")
    except ValueError as exc:
        return exc


class TestCounts:
    @given(
        gaps=st.lists(st.floats(min_value=0, max_value=3), min_size=1, max_size=200),
        interval=st.sampled_from([0.5, 1.0, 2.0]),
    )
    def test_every_crash_is_counted_once(self, gaps: list[float], interval: float) -> None:
        """Full log lines plus summary counts equal the number of crashes, whatever their
        timing."""
        storms = CrashStorms(interval)
        kind = (ValueError, 1, 2)
        now = 0.0
        full = summarized = 0
        for gap in gaps:
            now += gap
            for summary in storms.due(now)[0]:
                summarized += summary.count
            if storms.admit_kind(kind, now) is None:
                full += 1
        for summary in storms.due(now, flush=True)[0]:
            summarized += summary.count

        assert len(gaps) == full + summarized

    @given(
        gaps=st.lists(st.floats(min_value=0, max_value=3), min_size=1, max_size=200),
        kinds=st.lists(st.integers(min_value=0, max_value=2), min_size=200, max_size=200),
        in_flight=st.lists(st.booleans(), min_size=200, max_size=200),
    )
    def test_crashes_counts_every_crash_through_summaries_and_ends(
        self, gaps: list[float], kinds: list[int], in_flight: list[bool]
    ) -> None:
        """crashes() is every crash so far, of every kind, whether logged in full,
        summarized, counted by the worker that posted it, or in a storm that has ended."""
        storms = CrashStorms(1.0)
        now = 0.0
        for count, (gap, kind, posted) in enumerate(
            zip(gaps, kinds, in_flight, strict=False), start=1
        ):
            now += gap
            storms.due(now)
            crash_kind = (ValueError, kind, 0)
            storm = storms.by_kind.get(crash_kind)
            if posted and storm is not None:
                storm.count += 1  # as a worker posting its storm does
            else:
                storms.admit_kind(crash_kind, now)
            assert count == storms.crashes()
        storms.due(now + 10.0, flush=True)

        assert len(gaps) == storms.crashes()

    def test_first_crash_in_full_then_one_summary_per_interval(self) -> None:
        """A storm logs its first crash in full; the rest are summarized once per interval,
        with the running total, and the storm ends after a quiet period."""
        storms = CrashStorms(1.0)
        kind = (ValueError, 1, 2)

        logged = [storms.admit_kind(kind, t / 10) is None for t in range(25)]  # 2.5 s of crashes
        due = [storms.due(t) for t in (1.0, 2.0, 3.0, 4.0)]
        summaries = [s for summaries, _ in due for s in summaries]
        ends = [e for _, ends in due for e in ends]

        assert [True] + [False] * 24 == logged
        assert [(24, 25)] == [(s.count, s.total) for s in summaries]
        assert [25] == [e.total for e in ends]
        assert storms.admit_kind(kind, 5.0) is None  # a new storm: in full again

    def test_damping_off_logs_everything(self) -> None:
        """interval None: every crash is logged in full, nothing is summarized."""
        storms = CrashStorms(None)

        assert all(storms.admit_kind((ValueError, 1, 2), float(t)) is None for t in range(10))
        assert ([], []) == storms.due(100.0, flush=True)


def test_kind_names_type_and_raise_site() -> None:
    """A crash kind renders as its type and the file and line that raised it."""
    exc = boom()

    name, where = describe(*crash_site(exc))

    assert "ValueError" == name
    assert where.endswith(f"test_storm.py:{boom.__code__.co_firstlineno + 2}")


class TestEnds:
    def test_no_summary_has_a_zero_count_and_an_end_is_its_own(self) -> None:
        """A storm's end is a StormEnd with its total; no summary ever has count 0."""
        storms = CrashStorms(1.0)
        kind = (ValueError, 1, 2)
        for t in range(3):
            storms.admit_kind(kind, t / 10)

        first = storms.due(1.0)
        second = storms.due(2.0)

        assert ([2], []) == ([s.count for s in first[0]], first[1])
        assert [] == second[0]
        assert [3] == [e.total for e in second[1]]

    def test_a_single_crash_ends_silently(self) -> None:
        """A storm of one crash (logged in full, nothing summarized) ends without an event."""
        storms = CrashStorms(1.0)
        storms.admit_kind((ValueError, 1, 2), 0.0)

        assert ([], []) == storms.due(1.0)
        assert {} == storms.by_kind

    def test_a_crash_in_flight_keeps_its_storm_going(self) -> None:
        """A crash counted into its storm by the worker that posted it (not handled yet)
        keeps the storm from ending at the next summary."""
        storms = CrashStorms(1.0)
        kind = (ValueError, 1, 2)
        storms.admit_kind(kind, 0.0)
        storm = storms.by_kind[kind]
        storm.count += 1  # as _run_worker does before posting the storm

        summaries, ends = storms.due(1.0)

        assert ([1], []) == ([s.count for s in summaries], ends)
        assert storm is storms.by_kind[kind]

    def test_heartbeat_misses_have_a_kind_and_a_location(self) -> None:
        """Heartbeat misses are one kind, described without a "?" location."""
        storms = CrashStorms(1.0)
        storms.admit_kind(HEARTBEAT_KIND, 0.0)
        storms.admit_kind(HEARTBEAT_KIND, 0.1)

        [summary], _ = storms.due(1.0)

        assert ("heartbeat_missed", "heartbeat deadline") == (summary.error_type, summary.location)

    def test_live_crashes_are_admitted_by_their_raise_site(self) -> None:
        """admit() keys a live exception by its type and raise site, and keeps the code for
        the location."""
        storms = CrashStorms(1.0)

        assert storms.admit(boom(), 0.0) is None
        storm = storms.admit(boom(), 0.1)

        assert isinstance(storm, Storm)
        assert describe(storm.kind, storm.code)[1].endswith(
            f"test_storm.py:{boom.__code__.co_firstlineno + 2}"
        )
