"""
What a worker can ask about itself: who it is, whether it should stop, and how to say it is
ready. Every function here is cheap, never blocks (except `StopSignal.wait`), and is a
harmless no-op outside a supervised worker, so library code can call it unconditionally.
"""

from __future__ import annotations

from dataclasses import dataclass

import gevent.event

from greenkeep._worker import current_worker

__all__ = ["StopSignal", "WorkerInfo", "current", "ready", "stop_signal"]


@dataclass(frozen=True)
class WorkerInfo:
    """
    Who the calling worker is.

    Attributes:
        supervisor: The path of its supervisor (or pool), e.g. ``"root/db"``.
        child_id: Its id (a pool's worker id is an int that never changes).
        incarnation: 1 for its first run, growing by one on every restart.
    """

    supervisor: str
    child_id: object
    incarnation: int


def current() -> WorkerInfo | None:
    """The calling worker's identity, or ``None`` outside a supervised worker."""
    greenlet = current_worker()
    if greenlet is None:
        return None
    child = greenlet.child
    return WorkerInfo(child.channel.path, child.id, greenlet.incarnation)


def ready() -> None:
    """
    Tell the supervisor this incarnation has finished initialising (OTP's init
    acknowledgement). Only children whose spec sets *ready_timeout* are waited for; for the
    others, and outside a worker, this does nothing. Calling it again does nothing.
    """
    greenlet = current_worker()
    if greenlet is None:
        return
    child = greenlet.child
    if child.incarnation != greenlet.incarnation or child.ready_inc == greenlet.incarnation:
        return
    child.ready_inc = greenlet.incarnation
    if child.awaiting_ready:
        child.channel.nudge()


class StopSignal:
    """
    The cooperative half of stopping: set when the supervisor wants this incarnation to
    stop, *before* it sends ``GreenletExit``.

    A worker that asked for its signal (called `stop_signal`) is given its whole shutdown
    timeout to notice it and return; one that never asked gets ``GreenletExit`` at once.
    """

    __slots__ = ("_event",)

    def __init__(self, event: gevent.event.Event) -> None:
        self._event = event

    def is_set(self) -> bool:
        """Whether the supervisor has asked this incarnation to stop."""
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block the calling greenlet until the signal is set or *timeout* passes; return
        whether it is set."""
        return bool(self._event.wait(timeout))

    def __bool__(self) -> bool:
        return self._event.is_set()

    def __repr__(self) -> str:
        return f"<StopSignal {'set' if self.is_set() else 'clear'}>"


def stop_signal() -> StopSignal:
    """
    The calling incarnation's `StopSignal` (opting it in to cooperative stopping).

    Outside a supervised worker it returns a signal that is never set.
    """
    greenlet = current_worker()
    if greenlet is None:
        return StopSignal(gevent.event.Event())
    child = greenlet.child
    if child.incarnation != greenlet.incarnation:
        # An incarnation that was abandoned (unstopped) and outlived its record's reign.
        event = gevent.event.Event()
        event.set()
        return StopSignal(event)
    event = child.stop_event
    if event is None:
        event = child.stop_event = gevent.event.Event()
        if child.stop_requested:
            event.set()
    return StopSignal(event)
