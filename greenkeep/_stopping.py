"""
Bounded stopping: one deadline rule, capped in one place, and the operations that stop
children within it.

gevent cannot force-kill a greenlet, so the honest promise is suture's: a child is asked to
stop (its cooperative stop signal first, if it asked for one, else ``GreenletExit`` at once),
waited for until its deadline, then sent ``GreenletExit`` (again) and given one more hub
turn; a child still alive after that is reported *unstopped* and the stop moves on.

Deadlines are real time (``time.monotonic``): they are waited for with gevent timers, and
gevent has no virtual time. The supervisor's injectable clock drives restart windows,
backoff, heartbeats and log summaries, never a stop.

A child that is itself a supervisor shares its deadline with its whole subtree (as OTP gives
a sub-supervisor's shutdown to all of it): it is asked to stop within its deadline less
`REPORT_MARGIN`, stops its own children within that, and hands its report up in time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from greenkeep._events import Reporter
from greenkeep._launch import kill
from greenkeep._mailbox import Mailbox
from greenkeep._ops import Op, Wait, capped
from greenkeep._records import Record
from greenkeep._reports import StopReport, Unstopped
from greenkeep._spec import Shutdown, ShutdownPolicy

__all__ = ["REPORT_MARGIN", "SUBTREE_TURNS", "Stoppable", "Stopper", "stop_deadline"]

#: Seconds of its deadline each level of a tree keeps to hand its report to its parent.
REPORT_MARGIN: Final = 0.01
#: Hub turns a parent gives a child supervisor still stopping at the parent's deadline,
#: after the one every child gets (a supervisor past its own deadline needs two here to give
#: up on its stragglers, end, and be seen to have ended; the rest is for deeper trees).
SUBTREE_TURNS: Final = 5


class Stoppable(Protocol):
    """A child supervisor, as its parent stops it."""

    def stop(self, timeout: float | None = None, *, block: bool = True) -> StopReport: ...


def stop_deadline(policy: ShutdownPolicy, start: float, cap: float | None) -> float | None:
    """
    The deadline rule: the monotonic time by which a child stopped at *start* under
    *policy* must be gone, capped by *cap* (a stop's overall deadline, or its parent's).
    ``None``: no deadline (``"infinity"`` without a cap).
    """
    if policy is Shutdown.BRUTAL:
        deadline: float | None = start
    elif policy is Shutdown.INFINITY:
        deadline = None
    else:
        assert isinstance(policy, float)
        deadline = start + policy
    return capped(deadline, cap)


class Stopper:
    """
    Stops a supervisor's children; keeps the list of those that did not stop.

    Args:
        mailbox: The run's mailbox (for turn markers).
        reporter: Where ``child_unstopped`` goes.
        path: The supervisor's path (for `Unstopped`).
        policy_of: A record's shutdown policy.
        subtree_of: The child supervisor a record runs, or ``None``.
        cap: The current overall deadline of the supervisor's own stop, or ``None``.
        abandon: Called for a record whose incarnation is given up on (unstopped).
    """

    __slots__ = (
        "_abandon",
        "_cap",
        "_mailbox",
        "_path",
        "_policy_of",
        "_reporter",
        "_subtree_of",
        "_subtrees",
        "unstopped",
    )

    def __init__(
        self,
        *,
        mailbox: Mailbox,
        reporter: Reporter,
        path: str,
        policy_of: Callable[[Record], ShutdownPolicy],
        subtree_of: Callable[[Record], Stoppable | None],
        cap: Callable[[], float | None],
        abandon: Callable[[Record], None],
    ) -> None:
        self._mailbox = mailbox
        self._reporter = reporter
        self._path = path
        self._policy_of = policy_of
        self._subtree_of = subtree_of
        self._cap = cap
        self._abandon = abandon
        self._subtrees: dict[Record, Stoppable] = {}
        #: Children (here and, collected by the supervisor, below) that did not stop.
        self.unstopped: list[Unstopped] = []

    def in_order(self, records: Sequence[Record], exclusive: bool = True) -> Op:
        """
        Stop *records* one after another, each waited for within its own deadline (OTP's
        order for a supervisor's children). Once the overall cap has passed, every record
        left is stopped at once: all of them have been told to stop when time runs out.
        """
        for index, record in enumerate(records):
            cap = self._cap()
            if cap is not None and time.monotonic() >= cap:
                yield from self.together(records[index:], exclusive)
                return
            yield from self.together((record,), exclusive)

    def together(self, records: Sequence[Record], exclusive: bool = True) -> Op:
        """Stop *records* at once and wait for them until the latest of their deadlines."""
        start = time.monotonic()
        cap = self._cap()
        pending: dict[Record, int] = {}
        latest: float | None = start
        for record in records:
            if record.greenlet is None:
                continue
            policy = self._policy_of(record)
            deadline = stop_deadline(policy, start, cap)
            self._request(record, policy, deadline)
            pending[record] = record.incarnation
            latest = None if deadline is None or latest is None else max(latest, deadline)
        if not pending:
            return
        try:
            yield Wait(pending=pending, deadline=latest, exclusive=exclusive)
            if pending:  # time ran out: GreenletExit for everyone left, and one more turn
                for record in pending:
                    if record.greenlet is not None:
                        kill(record.greenlet)
                marker = self._mailbox.turn_marker()
                yield Wait(pending=pending, marker=marker, capped=False, exclusive=exclusive)
                # A child supervisor still pending is past its own deadline (REPORT_MARGIN
                # earlier than this one) and handing its report up; in a loop that ran late,
                # its timer and this one fired in the same turn. A few more turns (no time)
                # let it finish before it is given up on.
                for _ in range(SUBTREE_TURNS):
                    if not any(record in self._subtrees for record in pending):
                        break
                    marker = self._mailbox.turn_marker()
                    yield Wait(pending=pending, marker=marker, capped=False, exclusive=exclusive)
        finally:
            for record in records:
                self._subtrees.pop(record, None)
        waited = time.monotonic() - start
        for record, incarnation in pending.items():
            if record.incarnation == incarnation and record.greenlet is not None:
                self._give_up_on(record, incarnation, waited)

    def tighten(self, cap: float) -> None:
        """The overall deadline moved earlier: child supervisors being stopped share it."""
        for subtree in self._subtrees.values():
            subtree.stop(max(0.0, cap - time.monotonic() - REPORT_MARGIN), block=False)

    def _request(self, record: Record, policy: ShutdownPolicy, deadline: float | None) -> None:
        greenlet = record.greenlet
        assert greenlet is not None
        if not record.exited():
            record.stop_requested = True
        subtree = self._subtree_of(record)
        if subtree is not None and not record.exited():
            self._subtrees[record] = subtree
            timeout = None if deadline is None else deadline - time.monotonic() - REPORT_MARGIN
            subtree.stop(None if timeout is None else max(0.0, timeout), block=False)
            return
        event = record.stop_event
        if policy is Shutdown.BRUTAL or event is None:
            kill(greenlet)  # no cooperative phase: GreenletExit at once
        else:
            event.set()

    def _give_up_on(self, record: Record, incarnation: int, waited: float) -> None:
        policy = self._policy_of(record)
        self._abandon(record)
        self.unstopped.append(Unstopped(self._path, record.id, incarnation, waited))
        self._reporter.unstopped(
            record.id,
            incarnation,
            waited,
            policy.value if isinstance(policy, Shutdown) else policy,
        )
