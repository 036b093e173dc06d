"""
The greenlets that run children, and the only ways greenkeep touches them.

A child incarnation runs in a `WorkerGreenlet`: a plain ``greenlet.greenlet`` whose parent is
the gevent hub (not a ``gevent.Greenlet``: that class extracts the spawning stack and pickles
tracebacks on every crash, which would cost more than the rest of a restart together). Every
exit of every incarnation posts exactly one ``(child, incarnation, exception or None)``
tuple onto the supervisor's mailbox, a ``gevent.queue`` the manager consumes:

- the wrapper catches whatever the incarnation raises (``GreenletExit`` from a kill
  included, and ``BaseException``), so gevent's hub never prints a worker's traceback, and
  posts it;
- the start trampoline, a loop callback that runs in the hub like a ``rawlink`` callback,
  posts for the one exit the wrapper cannot see: a greenlet killed before it ever ran.

Callbacks here run in the hub: they only post, never block, never raise.

A ``KeyboardInterrupt`` is posted like any exit and then handed to the hub's error handler,
which prints it (gevent's own report) and raises it in the main greenlet, so Ctrl-C still
stops the program.

Two ways to run the next incarnation:

*fresh*
    a new `WorkerGreenlet` per incarnation (`spawn_fresh`);
*reuse*
    the same greenlet runs the function again once the manager allows it (`spawn_reusable`
    starts it, `resume` lets a parked one run its next incarnation, `retire` ends it).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import gevent
from greenlet import GreenletExit
from greenlet import getcurrent as _getcurrent
from greenlet import greenlet as _RawGreenlet

if TYPE_CHECKING:
    from gevent.hub import Hub

__all__ = [
    "WAKE",
    "Mailbox",
    "WorkerGreenlet",
    "current_worker",
    "kill",
    "resume",
    "retire",
    "spawn_fresh",
    "spawn_reusable",
]

#: What the manager consumes: (the child record, the incarnation, what it raised or None).
#: A mailbox item that only wakes the manager (control requests, readiness).
WAKE: Final = object()

#: What the manager consumes: (the child record, the incarnation, what it raised or None).
Exit = tuple[Any, int, "BaseException | None"]
#: ``mailbox.put_nowait``: how exits are posted.
Mailbox = Callable[[Any], None]


class Runnable:
    """
    What a worker greenlet needs from the record of the child it runs.

    The supervisor's child record and the pool's worker record both provide these
    attributes; `ran` is written by the worker, everything else only read. The worker-side
    API (`greenkeep.current`, `ready`, `stop_signal`) also reads ``id``, ``incarnation``,
    ``supervisor``, ``stop_event``, ``awaiting_ready`` and writes ``ready_inc`` and
    ``stop_event``.
    """

    __slots__ = ("args", "context", "kwargs", "post", "ran", "target")

    target: Callable[..., object]
    args: tuple[object, ...]
    kwargs: dict[str, object] | Any
    context: contextvars.Context
    post: Mailbox
    ran: int


class WorkerGreenlet(_RawGreenlet):
    """
    The greenlet of one supervised child (a raw greenlet whose parent is the hub).

    Attributes:
        child: The supervisor-owned record of the child it runs.
        incarnation: The incarnation it is running now.
    """

    child: Any
    incarnation: int

    def __repr__(self) -> str:
        child = getattr(self, "child", None)
        ident = getattr(child, "id", "?")
        state = "dead" if self.dead else ("running" if self else "new")
        return f"<WorkerGreenlet child={ident!r} incarnation={self.incarnation} {state}>"


class _Resume:
    __slots__ = ("incarnation",)

    def __init__(self, incarnation: int) -> None:
        self.incarnation = incarnation


_RETIRE: Final = object()


def _hub() -> Hub:
    return gevent.get_hub()


def _interrupt_main(exc: KeyboardInterrupt) -> None:
    # gevent's own handling of a KeyboardInterrupt in a greenlet: print it, raise it in the
    # main greenlet (hub.handle_error -> handle_system_error).
    _hub().handle_error(_getcurrent(), type(exc), exc, exc.__traceback__)


def _run_fresh(child: Runnable, incarnation: int) -> None:
    # The body of a fresh worker greenlet: one incarnation, one posted exit.
    child.ran = incarnation
    post = child.post
    try:
        if child.kwargs:
            child.context.copy().run(child.target, *child.args, **child.kwargs)
        else:
            child.context.copy().run(child.target, *child.args)
    except KeyboardInterrupt as exc:
        post((child, incarnation, exc))
        _interrupt_main(exc)
    except BaseException as exc:  # every exit is reported, never re-raised
        post((child, incarnation, exc))
    else:
        post((child, incarnation, None))


def _run_reusable(child: Runnable, incarnation: int) -> None:
    # The body of a reusable worker greenlet: run an incarnation, post its exit, park until
    # the manager resumes it (with the next incarnation) or retires it.
    switch_to_hub = _hub().switch
    me = _getcurrent()
    post = child.post
    context = child.context
    target = child.target
    args = child.args
    kwargs = dict(child.kwargs)
    while True:
        child.ran = incarnation
        try:
            if kwargs:
                context.copy().run(target, *args, **kwargs)
            else:
                context.copy().run(target, *args)
        except KeyboardInterrupt as exc:
            post((child, incarnation, exc))
            _interrupt_main(exc)
        except BaseException as exc:  # every exit is reported
            post((child, incarnation, exc))
        else:
            post((child, incarnation, None))
        child.ran = -incarnation  # parked: its exit is posted
        while True:  # parked
            try:
                token = switch_to_hub()
            except GreenletExit:
                return
            except BaseException:  # a stale throw aimed at a dead incarnation
                continue
            if type(token) is _Resume:
                incarnation = me.incarnation = token.incarnation  # type: ignore[attr-defined]
                break
            if token is _RETIRE:
                return
            # Any other switch is stale (e.g. a timer the dead incarnation left behind).


def _trampoline(greenlet: WorkerGreenlet, child: Runnable, incarnation: int) -> None:
    # Loop callback that starts a worker greenlet. Runs in the hub; only posts.
    if child.supervisor._forked:  # type: ignore[attr-defined]
        return  # scheduled in the parent process: never run it in a forked child
    try:
        greenlet.switch(child, incarnation)
    except BaseException as exc:
        child.post((child, incarnation, exc))
        return
    if child.ran != incarnation and child.ran != -incarnation and greenlet.dead:
        # Killed before it ever ran: the wrapper never saw it.
        child.post((child, incarnation, GreenletExit()))


def _spawn(
    run: Callable[[Runnable, int], None], child: Runnable, incarnation: int
) -> WorkerGreenlet:
    hub = _hub()
    greenlet = WorkerGreenlet(run, hub)
    greenlet.child = child
    greenlet.incarnation = incarnation
    hub.loop.run_callback(_trampoline, greenlet, child, incarnation)
    return greenlet


def spawn_fresh(child: Runnable, incarnation: int) -> WorkerGreenlet:
    """
    Schedule *incarnation* of *child* in a new greenlet; it starts on the hub's next turn.

    Never blocks.
    """
    return _spawn(_run_fresh, child, incarnation)


def spawn_reusable(child: Runnable, incarnation: int) -> WorkerGreenlet:
    """Like `spawn_fresh`, but the greenlet parks after each incarnation (see `resume`)."""
    return _spawn(_run_reusable, child, incarnation)


def _switch_all(greenlets: list[WorkerGreenlet], token: object) -> None:
    # Loop callback: switch into each parked greenlet in turn. Each runs until it blocks or
    # parks again, then control comes back here.
    for greenlet in greenlets:
        if not greenlet.dead:
            greenlet.switch(token)


def _switch_each(pairs: list[tuple[WorkerGreenlet, _Resume]]) -> None:
    if pairs and pairs[0][0].child.supervisor._forked:
        return  # scheduled in the parent process: never run them in a forked child
    for greenlet, token in pairs:
        if not greenlet.dead:
            greenlet.switch(token)


def resume(pairs: list[tuple[WorkerGreenlet, int]]) -> None:
    """
    Let each parked reusable greenlet run the given incarnation, in order, on the hub's next
    turn (one loop callback for the whole batch). Never blocks.
    """
    tokens = [(greenlet, _Resume(incarnation)) for greenlet, incarnation in pairs]
    _hub().loop.run_callback(_switch_each, tokens)


def retire(greenlets: list[WorkerGreenlet]) -> None:
    """End parked reusable greenlets on the hub's next turn. Never blocks."""
    _hub().loop.run_callback(_switch_all, greenlets, _RETIRE)


def _throw(greenlet: WorkerGreenlet, exc_type: type[BaseException]) -> None:
    if not greenlet.dead:
        greenlet.throw(exc_type)


def kill(greenlet: WorkerGreenlet, exc_type: type[BaseException] = GreenletExit) -> None:
    """
    Raise *exc_type* in *greenlet* on the hub's next turn (as ``gevent.kill`` does).

    Never blocks; a dead greenlet is left alone. A greenlet in a loop that never yields
    receives it when it next yields.
    """
    _hub().loop.run_callback(_throw, greenlet, exc_type)


def current_worker() -> WorkerGreenlet | None:
    """The `WorkerGreenlet` running the caller, or ``None`` outside a supervised worker."""
    current = _getcurrent()
    return current if type(current) is WorkerGreenlet else None
