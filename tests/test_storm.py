"""Crash-storm damping as a pure function of time: every crash is counted exactly once."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from greenkeep._storm import CrashStorms, crash_kind, describe


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
            for summary in storms.due(now):
                summarized += summary.count
            if storms.admit(kind, now):
                full += 1
        for summary in storms.due(now, flush=True):
            summarized += summary.count

        assert len(gaps) == full + summarized

    def test_first_crash_in_full_then_one_summary_per_interval(self) -> None:
        """A storm logs its first crash in full; the rest are summarized once per interval,
        with the running total, and the storm ends after a quiet period."""
        storms = CrashStorms(1.0)
        kind = (ValueError, 1, 2)

        logged = [storms.admit(kind, t / 10) for t in range(25)]  # 2.5 s of crashes
        summaries = storms.due(1.0) + storms.due(2.0) + storms.due(3.0) + storms.due(4.0)

        assert [True] + [False] * 24 == logged
        assert [(24, 25, False), (0, 25, True)] == [(s.count, s.total, s.ended) for s in summaries]
        assert storms.admit(kind, 5.0)  # a new storm: in full again

    def test_damping_off_logs_everything(self) -> None:
        """interval None: every crash is logged in full, nothing is summarized."""
        storms = CrashStorms(None)

        assert all(storms.admit((ValueError, 1, 2), float(t)) for t in range(10))
        assert [] == storms.due(100.0, flush=True)


def test_kind_names_type_and_raise_site() -> None:
    """A crash kind renders as its type and the file and line that raised it."""
    exc = boom()
    code = exc.__traceback__.tb_frame.f_code  # type: ignore[union-attr]

    name, where = describe(crash_kind(exc), code)

    assert "ValueError" == name
    assert where.endswith(f"test_storm.py:{boom.__code__.co_firstlineno + 2}")
