"""
Tests for exit classification and rendered exit records (`greenkeep._exits`): the "how a
child exits" table, cell by cell. The restart table is tested in ``test_rules.py``.
"""

# The tests assert `expected == actual` (ruff's SIM300 calls that a Yoda condition).

from __future__ import annotations

import dataclasses

import gevent
import pytest
from greenlet import GreenletExit
from hypothesis import given
from hypothesis import strategies as st

from greenkeep._exits import ExitKind, ExitRecord, classify

from strategies import (
    CustomBaseError,
    InterruptSubclass,
    abnormal_exceptions,
    any_exits,
    interrupts,
    non_interrupt_exits,
    successful_system_exits,
)

NORMAL = ExitKind.NORMAL
SHUTDOWN = ExitKind.SHUTDOWN
ABNORMAL = ExitKind.ABNORMAL
HEARTBEAT = ExitKind.HEARTBEAT_MISSED
INTERRUPTED = ExitKind.INTERRUPTED


class TestClassifyReturn:
    def test_return_is_normal(self):
        """
        A child that returns on its own exited normally.
        """
        assert NORMAL is classify(None, stop_requested=False)

    def test_return_after_stop_is_shutdown(self):
        """
        A child that returns after its supervisor asked it to stop was shut down.
        """
        assert SHUTDOWN is classify(None, stop_requested=True)


class TestClassifyAfterStop:
    @pytest.mark.parametrize(
        "exc",
        [
            None,
            GreenletExit(),
            ValueError("late crash"),
            SystemExit(1),
            SystemExit(0),
            gevent.Timeout(),
            CustomBaseError("odd"),
        ],
        ids=[
            "return",
            "GreenletExit",
            "ValueError",
            "SystemExit(1)",
            "SystemExit(0)",
            "Timeout",
            "BaseException",
        ],
    )
    def test_any_exit_after_stop_is_shutdown(self, exc):
        """
        Whatever a child does after a stop request (return, GreenletExit, a crash,
        SystemExit), it was shut down.
        """
        assert SHUTDOWN is classify(exc, stop_requested=True)

    @given(exc=non_interrupt_exits)
    def test_any_non_interrupt_after_stop_is_shutdown(self, exc):
        """
        Every exit except KeyboardInterrupt is a shutdown once a stop was requested.
        """
        assert SHUTDOWN is classify(exc, stop_requested=True)


class TestClassifyOnItsOwn:
    def test_foreign_greenlet_exit_is_normal(self):
        """
        A GreenletExit sent by someone other than the supervisor is a normal exit.
        """
        assert NORMAL is classify(GreenletExit(), stop_requested=False)

    def test_gevent_greenlet_exit_is_the_same(self):
        """
        gevent's GreenletExit is greenlet's, so a gevent kill classifies the same way.
        """
        assert NORMAL is classify(gevent.GreenletExit(), stop_requested=False)

    @pytest.mark.parametrize(
        "exc",
        [
            Exception("plain"),
            ValueError("bad"),
            gevent.Timeout(),
            CustomBaseError("not an Exception"),
            GeneratorExit(),
        ],
        ids=[
            "Exception",
            "ValueError",
            "gevent.Timeout",
            "BaseException-subclass",
            "GeneratorExit",
        ],
    )
    def test_crash_is_abnormal(self, exc):
        """
        Exception, gevent.Timeout and other BaseExceptions not named otherwise are abnormal.
        """
        assert ABNORMAL is classify(exc, stop_requested=False)

    @given(exc=abnormal_exceptions)
    def test_any_crash_is_abnormal(self, exc):
        """
        Any exception from the abnormal list, raised without a stop request, is abnormal.
        """
        assert ABNORMAL is classify(exc, stop_requested=False)

    @pytest.mark.parametrize(
        "exc",
        [SystemExit(), SystemExit(0), SystemExit(None)],
        ids=["SystemExit()", "SystemExit(0)", "SystemExit(None)"],
    )
    def test_successful_system_exit_is_normal(self, exc):
        """
        SystemExit with code 0 or None is a normal exit.
        """
        assert NORMAL is classify(exc, stop_requested=False)

    @given(exc=successful_system_exits)
    def test_any_successful_system_exit_is_normal(self, exc):
        """
        Every successful SystemExit form is normal.
        """
        assert NORMAL is classify(exc, stop_requested=False)

    @pytest.mark.parametrize(
        "exc",
        [SystemExit(1), SystemExit(2), SystemExit("msg"), SystemExit(-1)],
        ids=["SystemExit(1)", "SystemExit(2)", "SystemExit('msg')", "SystemExit(-1)"],
    )
    def test_failing_system_exit_is_abnormal(self, exc):
        """
        SystemExit with a non-zero code or a message is abnormal.
        """
        assert ABNORMAL is classify(exc, stop_requested=False)


class TestClassifyInterrupt:
    @pytest.mark.parametrize("stop_requested", [False, True])
    @pytest.mark.parametrize(
        "exc", [KeyboardInterrupt(), InterruptSubclass()], ids=["KeyboardInterrupt", "subclass"]
    )
    def test_keyboard_interrupt_is_interrupted(self, exc, stop_requested):
        """
        KeyboardInterrupt is interrupted, even after a stop request.
        """
        assert INTERRUPTED is classify(exc, stop_requested)

    @given(exc=interrupts, stop_requested=st.booleans())
    def test_interrupt_wins_over_stop(self, exc, stop_requested):
        """
        A KeyboardInterrupt is interrupted whatever the stop flag says.
        """
        assert INTERRUPTED is classify(exc, stop_requested)


class TestClassifyTotal:
    @given(exc=any_exits, stop_requested=st.booleans())
    def test_always_one_kind(self, exc, stop_requested):
        """
        Every exit gets exactly one kind, and never heartbeat_missed (only the supervisor
        knows about heartbeats).
        """
        kind = classify(exc, stop_requested)

        assert kind in {NORMAL, SHUTDOWN, ABNORMAL, INTERRUPTED}

    @given(exc=any_exits, stop_requested=st.booleans())
    def test_matches_the_table(self, exc, stop_requested):
        """
        classify agrees with the README's table, written out in the test's own order of rules.
        """
        if isinstance(exc, KeyboardInterrupt):
            expected = INTERRUPTED
        elif stop_requested:
            expected = SHUTDOWN
        elif exc is None or isinstance(exc, GreenletExit):
            expected = NORMAL
        elif isinstance(exc, SystemExit):
            expected = NORMAL if exc.code in (0, None) else ABNORMAL
        else:
            expected = ABNORMAL

        assert expected is classify(exc, stop_requested)


class TestExitKind:
    @pytest.mark.parametrize(
        ("kind", "expected"),
        [
            (NORMAL, False),
            (SHUTDOWN, False),
            (ABNORMAL, True),
            (HEARTBEAT, True),
            (INTERRUPTED, False),
        ],
    )
    def test_is_abnormal(self, kind, expected):
        """
        Only abnormal and heartbeat_missed exits count as abnormal.
        """
        assert expected is kind.is_abnormal

    def test_values_are_log_reasons(self):
        """
        Exit kinds are the stable ``reason`` strings of ``child_exited``.
        """
        assert ["normal", "shutdown", "abnormal", "heartbeat_missed", "interrupted"] == [
            k.value for k in ExitKind
        ]


class TestExitRecord:
    def test_return(self):
        """
        A plain return is recorded without error or traceback.
        """
        record = ExitRecord.of("w", 3, NORMAL, None, at=12.5)

        assert ExitRecord("w", 3, "normal", None, None, 12.5) == record

    def test_crash_without_traceback(self):
        """
        A crash is recorded as "Type: message" and, unless asked, no traceback.
        """
        record = ExitRecord.of("w", 1, ABNORMAL, ValueError("bad input"), at=1.0)

        assert ExitRecord("w", 1, "abnormal", "ValueError: bad input", None, 1.0) == record

    def test_crash_with_traceback(self):
        """
        With with_traceback=True the rendered traceback is kept as text.
        """
        try:
            raise KeyError("gone")
        except KeyError as e:
            record = ExitRecord.of("w", 2, ABNORMAL, e, at=0.0, with_traceback=True)

        assert "KeyError: 'gone'" == record.error
        assert record.traceback.startswith("Traceback (most recent call last):")
        assert 'raise KeyError("gone")' in record.traceback
        assert record.traceback.endswith("KeyError: 'gone'\n")

    def test_frozen(self):
        """
        A record cannot be changed once made.
        """
        record = ExitRecord.of("w", 1, NORMAL, None, at=0.0)

        with pytest.raises(dataclasses.FrozenInstanceError):
            record.error = "changed"
