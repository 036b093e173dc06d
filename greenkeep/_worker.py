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
    a new `WorkerGreenlet` per incarnation (`create`/`spawn`, then `retire` the parked one);
*reuse*
    the same greenlet runs the function again once the manager allows it (`spawn`
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
    "create",
    "current_worker",
    "kill",
    "resume",
    "retire",
    "spare",
    "spawn",
    "start",
    "start_now",
    "start_spare",
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

    __slots__ = (
        "args",
        "context",
        "damped",
        "kwargs",
        "post",
        "pulse",
        "ran",
        "reusable",
        "target",
    )

    target: Callable[..., object]
    args: tuple[object, ...]
    kwargs: dict[str, object] | Any
    context: contextvars.Context
    post: Mailbox
    ran: int
    #: Shared with the manager: ``pulse[0]``, exits posted since it last took a batch (it
    #: resets it); ``pulse[1]``, set while it is parked; ``pulse[2]()`` wakes it then.
    pulse: list[Any]
    #: Whether the greenlet runs further incarnations (reuse mode) after parking.
    reusable: bool
    #: The manager's crash storms by kind, when a crash of a kind being summarized may be
    #: posted as its kind alone (see `greenkeep._storm`); else ``None``.
    damped: dict[Any, Any] | None


class WorkerGreenlet(_RawGreenlet):
    """
    The greenlet of one supervised child (a raw greenlet whose parent is the hub).

    Attributes:
        child: The supervisor-owned record of the child it runs.
        incarnation: The incarnation it is running now.
        beaten: Set by `greenkeep.beat` in this greenlet, cleared by the supervisor's
            heartbeat ticks (see `greenkeep._heartbeat`).
    """

    # CPython lays slots out in sorted order: ``beaten`` comes first, next to the greenlet's
    # own fields, on the cache line a switch into the greenlet has just touched.
    __slots__ = ("beaten", "child", "incarnation")

    beaten: bool
    child: Any
    incarnation: int

    def beat(self) -> None:
        """This incarnation's heartbeat, as `greenkeep.heartbeat` hands it out."""
        self.beaten = True

    def __repr__(self) -> str:
        child = getattr(self, "child", None)
        ident = getattr(child, "id", "?")
        state = "dead" if self.dead else ("running" if self else "new")
        return f"<WorkerGreenlet child={ident!r} incarnation={self.incarnation} {state}>"


#: Posted for an incarnation that died of ``GreenletExit`` (a kill carries nothing else).
_KILLED: Final = GreenletExit()

#: Switched into a parked worker: run your record's (new) incarnation.
_GO: Final = object()
#: Switched into a parked worker: end.
_RETIRE: Final = object()


def _hub() -> Hub:
    return gevent.get_hub()


def _interrupt_main(exc: KeyboardInterrupt) -> None:
    # gevent's own handling of a KeyboardInterrupt in a greenlet: print it, raise it in the
    # main greenlet (hub.handle_error -> handle_system_error).
    _hub().handle_error(_getcurrent(), type(exc), exc, exc.__traceback__)


#: In fresh mode a finished worker greenlet ends at once, unless this many exits were
#: posted since the manager last ran (a crash storm: many workers failing in one pass of
#: the hub): then it parks and the manager retires it later.
PARK_AFTER: Final = 512


def _run_worker(child: Runnable, incarnation: int) -> None:
    # The body of every worker greenlet: run an incarnation, post its exit, then park until
    # the manager resumes it with the next incarnation (reuse mode), or end (fresh mode: a
    # new greenlet runs the next one). In a crash storm a fresh greenlet parks too, and the
    # manager retires it in a later batch: a greenlet's teardown (an munmap of its
    # interpreter stack) then stays out of the storm's first pass, which would otherwise
    # hold the hub for the whole storm.
    me = _getcurrent()
    hub: Any = me.parent
    park = _RawGreenlet.switch
    post = child.post
    context = child.context
    target = child.target
    args = child.args
    kwargs = dict(child.kwargs) if child.kwargs else {}
    # Each incarnation runs in a fresh copy of the context captured at start: the greenlet's
    # own context is replaced before each run (with nothing at all when the captured one is
    # empty: a greenlet without a context of its own gets a new, empty one on first use).
    empty = len(context) == 0
    while True:
        child.ran = incarnation
        try:
            if empty:
                if me.gr_context is not None:
                    me.gr_context = None
            else:
                me.gr_context = context.copy()
            target(*args, **kwargs)
        except Exception as exc:
            damped = child.damped
            tb = exc.__traceback__
            if damped is not None and tb is not None:
                while tb.tb_next is not None:
                    tb = tb.tb_next
                kind = (type(exc), id(tb.tb_frame.f_code), tb.tb_lasti)
                storm = damped.get(kind)
                if storm is not None and storm.sample is not None:
                    # Its kind is being summarized and needs no sample: only the kind is
                    # posted, and the exception, its traceback and frames are freed now
                    # instead of waiting in the manager's backlog.
                    post((child, incarnation, kind))
                else:
                    post((child, incarnation, exc))
            else:
                post((child, incarnation, exc))
            tb = None
        except GreenletExit:  # a kill: nothing in it the manager needs
            post((child, incarnation, _KILLED))
        except KeyboardInterrupt as exc:
            post((child, incarnation, exc))
            _interrupt_main(exc)
        except BaseException as exc:  # every exit is reported, never re-raised
            post((child, incarnation, exc))
        else:
            post((child, incarnation, None))
        child.ran = -incarnation  # parked: its exit is posted
        pulse = child.pulse
        pulse[0] += 1
        if pulse[1]:  # the manager is parked: wake it (one loop callback), and park too,
            pulse[1] = 0  # so that it runs before this greenlet's teardown
            pulse[2]()
        elif not child.reusable and pulse[0] <= PARK_AFTER:
            return  # fresh mode, manager busy but keeping up: end now (the cheapest way)
        while True:  # parked (a raw switch: a worker has no gevent switch_out hook)
            try:
                token = park(hub)
            except GreenletExit:
                return
            except BaseException:  # a stale throw aimed at a dead incarnation
                continue
            if token is _GO:
                incarnation = me.incarnation = child.incarnation  # type: ignore[attr-defined]
                break
            if token is _RETIRE:
                return
            # Any other switch is stale (e.g. a timer the dead incarnation left behind).


def _spare_main() -> None:
    # A spare worker greenlet: started ahead of need (its interpreter stack, an mmap, is
    # already allocated), it waits here for its first incarnation: (child, incarnation).
    hub: Any = _getcurrent().parent
    try:
        token = _RawGreenlet.switch(hub)
    except GreenletExit:
        return
    if type(token) is tuple:
        child, incarnation = token
        _run_worker(child, incarnation)


def _warm(greenlet: WorkerGreenlet) -> None:
    greenlet.switch()  # runs until it waits in _spare_main


def spare(hub: Hub) -> WorkerGreenlet:
    """
    A new worker greenlet that starts on the hub's next turn and waits for its first
    incarnation (see `start_spare`): an isolated restart then does not pay for a new
    greenlet's first run. Never blocks.
    """
    greenlet = WorkerGreenlet(_spare_main, hub)
    greenlet.child = None
    greenlet.incarnation = 0
    greenlet.beaten = False
    hub.loop.run_callback(_warm, greenlet)
    return greenlet


def start_spare(greenlet: WorkerGreenlet, child: Runnable, incarnation: int) -> None:
    """
    From the manager greenlet: run *incarnation* of *child* at once in a waiting `spare`
    greenlet; the caller continues on the hub's next turn (as `start_now`).
    """
    greenlet.child = child
    greenlet.incarnation = incarnation
    _hub().loop.run_callback(_getcurrent().switch)
    greenlet.switch((child, incarnation))


def _trampoline(greenlet: WorkerGreenlet, child: Runnable, incarnation: int) -> None:
    # Loop callback that starts a worker greenlet. Runs in the hub; only posts.
    if child.supervisor._forked:  # type: ignore[attr-defined]
        return  # scheduled in the parent process: never run it in a forked child
    try:
        greenlet.switch(child, incarnation)
    except BaseException as exc:  # thrown into it before it ever ran
        _notify(child, (child, incarnation, exc))
        return
    if child.ran != incarnation and child.ran != -incarnation and greenlet.dead:
        # Killed before it ever ran: the wrapper never saw it.
        _notify(child, (child, incarnation, GreenletExit()))


def _notify(child: Runnable, item: Any) -> None:
    # Post *item* and wake the manager if it is parked (as _run_worker does inline).
    child.post(item)
    pulse = child.pulse
    if pulse[1]:
        pulse[1] = 0
        pulse[2]()


def create(child: Runnable, incarnation: int, hub: Hub | None = None) -> WorkerGreenlet:
    """A new worker greenlet for *incarnation* of *child*, not yet scheduled (see `start`).
    *hub*: the current thread's hub, if the caller has it at hand."""
    greenlet = WorkerGreenlet(_run_worker, hub if hub is not None else _hub())
    greenlet.child = child
    greenlet.incarnation = incarnation
    greenlet.beaten = False  # set: a deadline tick never meets an unset slot
    return greenlet


def spawn(child: Runnable, incarnation: int) -> WorkerGreenlet:
    """
    Schedule *incarnation* of *child* in a new greenlet; it starts on the hub's next turn,
    before anything scheduled later. After the incarnation it parks until `resume`d (reuse
    mode) or `retire`d (fresh mode). Never blocks.
    """
    greenlet = create(child, incarnation)
    _hub().loop.run_callback(_trampoline, greenlet, child, incarnation)
    return greenlet


def _start_all(greenlets: list[WorkerGreenlet]) -> None:
    for greenlet in greenlets:
        _trampoline(greenlet, greenlet.child, greenlet.incarnation)


def start(greenlets: list[WorkerGreenlet]) -> None:
    """Start `create`-d greenlets, in order, on the hub's next turn (one loop callback for
    the whole batch). Never blocks."""
    _hub().loop.run_callback(_start_all, greenlets)


def _forked(greenlet: WorkerGreenlet) -> bool:
    child = greenlet.child
    return child is not None and bool(child.supervisor._forked)


def _switch_all(greenlets: list[WorkerGreenlet], token: object) -> None:
    # Loop callback: switch into each parked greenlet in turn. Each runs until it blocks or
    # parks again (or ends), then control comes back here.
    if greenlets and _forked(greenlets[0]):
        return  # scheduled in the parent process: never run them in a forked child
    for greenlet in greenlets:
        if greenlet:  # started and not dead: parked (a never-started one is just dropped)
            greenlet.switch(token)


def resume(greenlets: list[WorkerGreenlet]) -> None:
    """
    Let each parked greenlet run its record's current incarnation, in order, on the hub's
    next turn (one loop callback for the whole batch). Never blocks.
    """
    _hub().loop.run_callback(_switch_all, greenlets, _GO)


def retire(greenlets: list[WorkerGreenlet]) -> None:
    """End parked greenlets on the hub's next turn (one loop callback). Never blocks."""
    _hub().loop.run_callback(_switch_all, greenlets, _RETIRE)


def start_now(greenlet: WorkerGreenlet) -> None:
    """
    From the manager greenlet: run a `create`-d (never scheduled) or a parked greenlet at
    once, instead of on the hub's next turn: an isolated restart saves one loop iteration.
    The caller continues on the hub's next turn (as after ``gevent.sleep(0)``).

    Only for a gevent greenlet that expects nothing else to switch into it meanwhile (the
    manager, at the end of a batch).
    """
    _hub().loop.run_callback(_getcurrent().switch)
    if greenlet:  # started before: parked, waiting for its next incarnation
        greenlet.switch(_GO)
    else:
        _trampoline(greenlet, greenlet.child, greenlet.incarnation)
    # Back here once the callback above has run (the greenlet blocked, parked or ended).


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
