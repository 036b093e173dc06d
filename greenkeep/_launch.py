"""
Launching worker greenlets: the only ways greenkeep starts, resumes, retires and kills them.

Everything here schedules loop callbacks (one per batch for starts, resumes and retires) or,
for an isolated restart, switches into the worker at once from the manager. Callbacks run in
the hub: they only post, never block, never raise. They check `Channel.halted`: a start or a
resume scheduled before a stop began (or before a fork) never runs the incarnation; it posts
that incarnation's exit instead (in a forked child, nothing at all).

Two ways to run the next incarnation:

*fresh*
    a new `WorkerGreenlet` per incarnation (`create`/`spawn`, then `retire` the parked one);
*reuse*
    the same greenlet runs the function again once the manager allows it (`spawn`
    starts it, `resume` lets a parked one run its next incarnation, `retire` ends it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent
from greenlet import GreenletExit
from greenlet import getcurrent as _getcurrent

from greenkeep._worker import (
    GO,
    KILLED,
    RETIRE,
    Channel,
    Runnable,
    WorkerGreenlet,
    raw_switch,
    run_worker,
    spare_main,
)

if TYPE_CHECKING:
    from gevent.hub import Hub

__all__ = [
    "create",
    "kill",
    "resume",
    "retire",
    "spare",
    "spawn",
    "start",
    "start_now",
    "start_spare",
]


#: The compiled loop of `_start_all` (`greenkeep._speedups.start_run`), or ``None`` where
#: the optional C speedup was not built.
_start_run: Callable[[list[WorkerGreenlet], Channel, Any, type[BaseException]], int] | None
try:
    from greenkeep._speedups import start_run as _start_run
except ImportError:  # pragma: no cover - only where the C speedup could not be built
    _start_run = None


def _hub() -> Hub:
    return gevent.get_hub()


def _warm(greenlet: WorkerGreenlet) -> None:
    raw_switch(greenlet)  # runs until it waits in spare_main


def spare(hub: Hub) -> WorkerGreenlet:
    """
    A new worker greenlet that starts on the hub's next turn and waits for its first
    incarnation (see `start_spare`): an isolated restart then does not pay for a new
    greenlet's first run. Never blocks.
    """
    greenlet = WorkerGreenlet(spare_main, hub)
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
    raw_switch(greenlet, (child, incarnation))


def create(child: Runnable, incarnation: int, hub: Hub | None = None) -> WorkerGreenlet:
    """A new worker greenlet for *incarnation* of *child*, not yet scheduled (see `start`).
    *hub*: the current thread's hub, if the caller has it at hand."""
    greenlet = WorkerGreenlet(run_worker, hub if hub is not None else _hub())
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
    _hub().loop.run_callback(_start_all, [greenlet])
    return greenlet


def _start_all(greenlets: list[WorkerGreenlet]) -> None:
    # Loop callback that starts worker greenlets, in order (one or a batch: the trampoline
    # of every start). Runs in the hub; only posts. No call per start: it is a visible
    # share of a fresh-mode restart.
    if not greenlets:
        return
    channel = greenlets[0].child.channel
    if _start_run is not None:  # compiled: the usual case, up to the first it cannot start
        first = _start_run(greenlets, channel, raw_switch, GreenletExit)
        if first == len(greenlets):
            return
        greenlets = greenlets[first:]
    for greenlet in greenlets:
        child = greenlet.child
        incarnation = greenlet.incarnation
        if channel.halted:  # a stop began after this start was scheduled: it never runs
            if not channel.forked:
                channel.notify((child, incarnation, KILLED))
            continue
        try:
            raw_switch(greenlet, child, incarnation)
        except BaseException as exc:  # thrown into it before it ever ran
            channel.notify((child, incarnation, exc))
            continue
        ran = child.ran
        if ran != -incarnation and ran != incarnation and greenlet.dead:  # (posted: ran < 0)
            # Killed before it ever ran: the wrapper never saw it.
            channel.notify((child, incarnation, GreenletExit()))


def start(greenlets: list[WorkerGreenlet]) -> None:
    """Start `create`-d greenlets, in order, on the hub's next turn (one loop callback for
    the whole batch). Never blocks."""
    _hub().loop.run_callback(_start_all, greenlets)


def _switch_all(greenlets: list[WorkerGreenlet], token: object) -> None:
    # Loop callback: switch into each parked greenlet in turn. Each runs until it blocks or
    # parks again (or ends), then control comes back here.
    if not greenlets:
        return
    first = greenlets[0].child
    channel = first.channel if first is not None else None  # a spare has no child yet
    if channel is not None and channel.halted:
        if channel.forked:
            return  # scheduled in the parent process: never run them in a forked child
        if token is GO:  # a stop began: the incarnations they were to run never run
            for greenlet in greenlets:
                child = greenlet.child
                channel.notify((child, child.incarnation, KILLED))
            return
    if token is not GO or channel is None:
        for greenlet in greenlets:
            if greenlet:  # started and not dead: parked (a never-started one is dropped)
                raw_switch(greenlet, token)
        return
    # Resumes relay (`Channel.relay`): each worker that parks again switches straight into
    # the next one, and control comes back here only when one blocks, ends or is the last.
    channel.relay = relay = iter(greenlets)  # shared with the workers
    try:
        for greenlet in relay:
            if greenlet:  # parked (a killed one is dead)
                raw_switch(greenlet, GO)
    finally:
        channel.relay = None


def resume(greenlets: list[WorkerGreenlet]) -> None:
    """
    Let each parked greenlet run its record's current incarnation, in order, on the hub's
    next turn (one loop callback for the whole batch). Never blocks.
    """
    _hub().loop.run_callback(_switch_all, greenlets, GO)


def retire(greenlets: list[WorkerGreenlet]) -> None:
    """End parked greenlets on the hub's next turn (one loop callback). Never blocks."""
    _hub().loop.run_callback(_switch_all, greenlets, RETIRE)


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
        raw_switch(greenlet, GO)
    else:
        _start_all([greenlet])
    # Back here once the callback above has run (the greenlet blocked, parked or ended).


def _throw(greenlet: WorkerGreenlet, exc_type: type[BaseException]) -> None:
    if not greenlet.dead:
        greenlet.throw(exc_type)  # (a disowned greenlet ignores it)


def kill(greenlet: WorkerGreenlet, exc_type: type[BaseException] = GreenletExit) -> None:
    """
    Raise *exc_type* in *greenlet* on the hub's next turn (as ``gevent.kill`` does).

    Never blocks; a dead greenlet is left alone. A greenlet in a loop that never yields
    receives it when it next yields.
    """
    _hub().loop.run_callback(_throw, greenlet, exc_type)
