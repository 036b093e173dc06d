"""
The manager's record of one child (a supervisor's child, or a pool's worker).

Only the manager writes a record, except what the worker side writes (see `Runnable`):
``ran`` (the worker greenlet), ``ready_inc`` (`greenkeep.ready`) and ``stop_event``
(`greenkeep.stop_signal`).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import Any

import gevent.event

from greenkeep._states import TERMINATED, ChildStatus
from greenkeep._worker import NO_SITE, Channel, Runnable, WorkerGreenlet

__all__ = ["Record"]


class Record(Runnable):
    """
    One child as its manager tracks it.

    Attributes:
        id: The child id (a pool worker's id is its index).
        incarnation: The current (or last) incarnation, 0 before the first.
        greenlet: The greenlet of the running incarnation; ``None`` when nothing runs.
        status: What the manager knows of it (`greenkeep._states.ChildStatus`).
        stop_requested: Set when its supervisor asks the running incarnation to stop, and
            only while that incarnation has not posted its exit yet (so an exit that raced
            the request keeps its own reason).
        stop_event: The incarnation's cooperative stop signal, once it asked for it.
        restarts: Restarts greenkeep made of it.
        started_at: The supervisor clock's reading when the incarnation started.
        awaiting_ready, ready_inc: The readiness handshake (`greenkeep.ready`).
        abandoned: The incarnations reported unstopped that still run, by incarnation
            (their greenlets); ``None`` while there are none. A child terminated, restarted
            and stopped again can leave more than one.
        hb_missed: The incarnation killed for missing its heartbeat (0 if none).
        backoff_attempt: Its consecutive restarts under backoff.
        delay_seq: The ticket of its pending delayed restart (0 if none).
        delay_logged: Whether the exit its pending delayed restart follows was logged in
            full (else its kind was being summarized, and so is the restart).
    """

    __slots__ = (
        "abandoned",
        "awaiting_ready",
        "backoff_attempt",
        "delay_logged",
        "delay_seq",
        "greenlet",
        "hb_missed",
        "id",
        "incarnation",
        "ready_inc",
        "restarts",
        "started_at",
        "status",
        "stop_event",
        "stop_requested",
    )

    def __init__(
        self,
        child_id: Any,
        target: Callable[..., object],
        args: tuple[object, ...],
        kwargs: Any,
        channel: Channel,
        context: contextvars.Context,
    ) -> None:
        self.id = child_id
        self.target = target
        self.args = args
        self.kwargs = kwargs
        self.context = context
        self.channel = channel
        self.call = None
        self.reusable = False
        self.site = NO_SITE
        self.ran = 0
        self.incarnation = 0
        self.greenlet: WorkerGreenlet | None = None
        self.status: ChildStatus = TERMINATED
        self.stop_requested = False
        self.stop_event: gevent.event.Event | None = None
        self.restarts = 0
        self.started_at = 0.0
        self.awaiting_ready = False
        self.ready_inc = 0
        self.abandoned: dict[int, WorkerGreenlet | None] | None = None
        self.hb_missed = 0
        self.backoff_attempt = 0
        self.delay_seq = 0
        self.delay_logged = True

    def exited(self) -> bool:
        """Whether the current incarnation has posted its exit (or never ran)."""
        greenlet = self.greenlet
        return greenlet is None or greenlet.dead or self.ran == -self.incarnation
