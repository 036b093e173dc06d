"""
Hypothesis strategies for greenkeep's pure decision modules.
"""

from __future__ import annotations

from dataclasses import dataclass

import gevent
from greenlet import GreenletExit
from hypothesis import strategies as st

from greenkeep._exits import ExitKind
from greenkeep._rules import Strategy
from greenkeep._spec import Restart


class CustomBaseError(BaseException):
    """A `BaseException` subclass that greenkeep does not name."""


class CustomError(Exception):
    """An ordinary application exception."""


class InterruptSubclass(KeyboardInterrupt):
    """A subclass of `KeyboardInterrupt`, which must be treated like it."""


#: A child id: a small int or a short non-empty string.
child_ids = st.one_of(
    st.integers(min_value=0, max_value=50),
    st.text(alphabet="abcdefgh", min_size=1, max_size=3),
)


def child_orders(min_size: int = 1, max_size: int = 12) -> st.SearchStrategy[list[object]]:
    """Every child id of a supervisor, in start order (unique, at least *min_size*)."""
    return st.lists(child_ids, min_size=min_size, max_size=max_size, unique=True)


@dataclass(frozen=True)
class RestartScenario:
    """A supervisor's children at the moment one of them failed."""

    strategy: Strategy
    order: tuple[object, ...]
    failed: object
    running: frozenset[object]
    temporary: frozenset[object]


#: Any restart strategy.
any_strategy = st.sampled_from(Strategy)


@st.composite
def restart_scenarios(
    draw: st.DrawFn, strategies: st.SearchStrategy[Strategy] = any_strategy
) -> RestartScenario:
    """A strategy, a start order, the failed child, and which siblings run or are temporary."""
    order = draw(child_orders())
    failed = draw(st.sampled_from(order))
    others = [k for k in order if k != failed]
    running = draw(st.sets(st.sampled_from(others))) if others else set()
    temporary = draw(st.sets(st.sampled_from(others))) if others else set()
    return RestartScenario(
        draw(strategies), tuple(order), failed, frozenset(running), frozenset(temporary)
    )


#: Exceptions that are abnormal when the supervisor did not ask the child to stop.
abnormal_exceptions = st.sampled_from(
    [
        Exception("plain"),
        ValueError("bad value"),
        RuntimeError("boom"),
        KeyError("missing"),
        OSError(5, "I/O error"),
        RecursionError("maximum recursion depth exceeded"),
        MemoryError(),
        CustomError("custom"),
        gevent.Timeout(),
        CustomBaseError("not an Exception"),
        GeneratorExit(),
        SystemExit(1),
        SystemExit(2),
        SystemExit("fatal: config missing"),
    ]
)

#: ``SystemExit`` forms that mean success (code 0 or ``None``).
successful_system_exits = st.sampled_from([SystemExit(), SystemExit(0), SystemExit(None)])

#: ``KeyboardInterrupt`` and a subclass of it.
interrupts = st.sampled_from([KeyboardInterrupt(), InterruptSubclass()])

#: Every way an incarnation can end, except a ``KeyboardInterrupt``: a return (``None``) or
#: an exception.
non_interrupt_exits = st.one_of(
    st.none(),
    st.just(GreenletExit()),
    abnormal_exceptions,
    successful_system_exits,
)

#: Every way an incarnation can end.
any_exits = st.one_of(non_interrupt_exits, interrupts)

#: Every restart type.
restarts = st.sampled_from(Restart)

#: Every exit kind.
exit_kinds = st.sampled_from(ExitKind)


@dataclass(frozen=True)
class IntensityRun:
    """Restart-intensity settings and the clock readings at which restarts happen."""

    max_restarts: int
    period: float
    times: tuple[float, ...]


@st.composite
def intensity_runs(draw: st.DrawFn) -> IntensityRun:
    """
    Settings and a non-decreasing sequence of restart times, often landing exactly on the
    window's edge (a gap of exactly *period*, or of several restarts summing to it).
    """
    max_restarts = draw(st.integers(min_value=0, max_value=6))
    period = draw(
        st.one_of(
            st.sampled_from([0.1, 0.7, 1.0, 5.0, 60.0]),
            st.floats(min_value=1e-3, max_value=1e3, allow_nan=False, allow_infinity=False),
        )
    )
    gaps = draw(
        st.lists(
            st.one_of(
                st.just(0.0),
                st.sampled_from([period, period / 2, period / 3, period * 2]),
                st.floats(min_value=0.0, max_value=period * 3, allow_nan=False),
            ),
            min_size=1,
            max_size=40,
        )
    )
    start = draw(st.sampled_from([0.0, 0.3, 1234.5]))
    times = []
    now = start
    for gap in gaps:
        now += gap
        times.append(now)
    return IntensityRun(max_restarts, period, tuple(times))
