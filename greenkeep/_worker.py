"""
The greenlets that run children: what each incarnation runs in, how it reports its exit, and
what workers share with their manager (starting them is `greenkeep._launch`'s job).

A child incarnation runs in a `WorkerGreenlet`: a plain ``greenlet.greenlet`` whose parent is
the gevent hub (not a ``gevent.Greenlet``: that class extracts the spawning stack and pickles
tracebacks on every crash, which would cost more than the rest of a restart together). Every
exit of every incarnation posts exactly one ``(child, incarnation, what it raised or None)``
tuple onto the supervisor's mailbox, a ``gevent.queue`` the manager consumes:

- the wrapper catches whatever the incarnation raises (``GreenletExit`` from a kill
  included, and ``BaseException``), so gevent's hub never prints a worker's traceback, and
  posts it;
- the start trampoline (`greenkeep._launch`), a loop callback that runs in the hub like a
  ``rawlink`` callback, posts for the exits the wrapper cannot see: a greenlet killed before
  it ever ran, and an incarnation that never ran because a stop began after its start was
  scheduled.

A ``KeyboardInterrupt`` is posted like any exit and then handed to the hub's error handler,
which prints it (gevent's own report) and raises it in the main greenlet, so Ctrl-C still
stops the program.

Invariants the manager relies on:

- ``child.ran == -incarnation`` once an incarnation's exit is posted and its greenlet parks
  (or ends): a stop request that comes after that must not turn the exit into a shutdown;
- a loop callback scheduled before a stop began (or before a fork) never runs an
  incarnation once `Channel.halted` is set: the trampolines check it;
- in a forked child process, inherited worker greenlets are `disown`-ed: gevent's own
  wake-ups of them (a timer, an event, a ``sleep(0)``) switch into nothing, and greenkeep's
  trampolines see `Channel.halted` and ``Channel.forked``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final

import gevent
from greenlet import GreenletExit
from greenlet import getcurrent as _getcurrent
from greenlet import greenlet as _RawGreenlet

from greenkeep._render import error_text
from greenkeep._storm import Storm

#: The compiled crash post (`greenkeep._speedups.post_crash`, configured at the end of this
#: module), or ``None`` where the optional C speedup was not built: `run_worker` then posts
#: every crash in Python (with the same result).
_post_crash: Callable[[Channel, Runnable, int, BaseException], bool] | None
try:
    from greenkeep import _speedups
except ImportError:  # pragma: no cover - only where the C speedup could not be built
    _speedups = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from gevent.hub import Hub

__all__ = [
    "GO",
    "KILLED",
    "PARK_AFTER",
    "RETIRE",
    "WAKE",
    "Channel",
    "Runnable",
    "WorkerGreenlet",
    "current_worker",
    "disown",
    "raw_switch",
    "run_worker",
    "spare_main",
]

#: A mailbox item that only wakes the manager (control requests, readiness, a clock).
WAKE: Final = object()


def _nothing() -> None:
    return None


class Channel:
    """
    What one run of a supervisor shares with its workers: how to post and wake the
    manager, and the flags every worker-side callback checks. Workers write `posted` and
    clear `parked`; everything else is written by the manager.

    Attributes:
        post: ``put_nowait`` of the manager's ``gevent.queue``.
        posted: Exits posted by fresh-mode workers that did not wake the manager, since
            it last took a batch (it resets it; see `PARK_AFTER`).
        parked: Set while the manager is parked in the hub: a poster then calls `wake`.
        wake: Schedules the manager's resume (one loop callback).
        halted: A stop has begun (or the process forked): callbacks start nothing.
        forked: This run belongs to the parent process: callbacks post nothing either.
        damped: The storms under way by kind, while a crash of a kind being summarized may
            be posted as its storm alone (see `greenkeep._storm`); else ``None``.
        path: The supervisor's path.
        on_blocked: Reports a blocked event loop (see `greenkeep._blocking`).
        relay: While a batch of parked workers is being resumed (`greenkeep._launch.resume`),
            an iterator over their greenlets, else ``None``. A worker of the batch that
            parks again switches straight into the next one (the relay) instead of into the
            hub, which would only switch into it.
    """

    __slots__ = (
        "__weakref__",
        "damped",
        "forked",
        "halted",
        "on_blocked",
        "parked",
        "path",
        "post",
        "posted",
        "relay",
        "wake",
    )

    def __init__(self, post: Callable[[object], None], path: str) -> None:
        self.post = post
        self.posted = 0
        self.parked = False
        self.wake: Callable[[], object] = _nothing
        self.halted = False
        self.forked = False
        self.damped: dict[Any, Any] | None = None
        self.path = path
        self.on_blocked: Callable[[dict[str, object], Hub | None], None] | None = None
        self.relay: Iterator[Any] | None = None

    def notify(self, item: object) -> None:
        """Post *item* and wake the manager if it is parked (`run_worker` inlines this)."""
        self.post(item)
        if self.parked:
            self.parked = False
            self.wake()

    def nudge(self) -> None:
        """Wake the manager without an exit (readiness, a request)."""
        self.notify(WAKE)


class Runnable:
    """
    What a worker greenlet needs from the record of the child it runs.

    The supervisor's child record and the pool's worker record both provide these; `ran`
    is written by the worker, everything else only read. The worker-side API
    (`greenkeep.current`, `ready`, `stop_signal`) also reads ``id``, ``incarnation``,
    ``stop_requested``, ``awaiting_ready`` and writes ``ready_inc`` and ``stop_event``.
    """

    __slots__ = (
        "args",
        "call",
        "channel",
        "context",
        "kwargs",
        "ran",
        "reusable",
        "site",
        "target",
    )

    target: Callable[..., object]
    args: tuple[object, ...]
    kwargs: Any
    context: contextvars.Context
    channel: Channel
    #: The incarnation running, or minus the one whose exit is posted (parked or ended).
    ran: int
    #: Whether the greenlet runs further incarnations (reuse mode) after parking.
    reusable: bool
    #: What `run_worker` needs of it (its channel and post, `reusable`, the call and its
    #: context), worked out by the first greenlet that runs it (``None`` until then): a
    #: fresh-mode incarnation starts with one unpack.
    call: tuple[Any, ...] | None
    #: The site of its last crash posted as a storm, and that storm (code, instruction
    #: offset, exception type, storm), written by its worker greenlets: the same crash
    #: again (a crash loop) finds its storm without building its key.
    site: tuple[Any, int, Any, Any]


#: Worker greenlets a forked child process inherited (see `disown`): kept referenced for the
#: life of the process (a greenlet that is garbage collected gets GreenletExit thrown in).
_disowned: set[_RawGreenlet] = set()
_NO_VALUE: Final = object()
#: The switch and throw of a greenlet itself (greenkeep's own switches skip the check).
raw_switch = _RawGreenlet.switch
_raw_throw = _RawGreenlet.throw


class WorkerGreenlet(_RawGreenlet):
    """
    The greenlet of one supervised child (a raw greenlet whose parent is the hub).

    `switch` and `throw` are the greenlet's own, except in a forked child process for the
    greenlets it inherited (`disown`): there they do nothing, so that no code of the
    parent's workers ever runs in the child, whatever gevent had queued for them (a timer,
    an event's waiters, a ``sleep(0)``). The check costs a worker's wake-up about 70 ns;
    greenkeep's own switches into its workers skip it.

    Attributes:
        child: The supervisor-owned record of the child it runs (``None`` for a spare).
        incarnation: The incarnation it is running now.
        beaten: Set by `greenkeep.beat` in this greenlet (or by calling the greenlet, the
            callable `greenkeep.heartbeat` returns), cleared by the supervisor's heartbeat
            ticks (see `greenkeep._heartbeat`).
    """

    # CPython lays slots out in sorted order: ``beaten`` comes first, next to the greenlet's
    # own fields, on the cache line a switch into the greenlet has just touched.
    __slots__ = ("beaten", "child", "incarnation")

    beaten: bool
    child: Any
    incarnation: int

    def switch(self, value: Any = _NO_VALUE, /) -> Any:
        """Switch into this greenlet (as gevent does to wake it: with one value or none)."""
        if _disowned and self in _disowned:
            return None
        if value is _NO_VALUE:
            return raw_switch(self)
        return raw_switch(self, value)

    def throw(self, *args: Any) -> Any:
        """Raise an exception in this greenlet (a kill, a ``gevent.Timeout``)."""
        if _disowned and self in _disowned:
            return None
        return _raw_throw(self, *args)

    def __call__(self) -> None:
        """
        Beat for the incarnation this greenlet runs: `greenkeep.heartbeat` hands out the
        greenlet itself as the beat. A beat then touches nothing but the greenlet, which
        the worker's wake-up has just touched; a bound method (an object of its own, cold
        by the time its worker wakes among 10,000) measured about 1.6 times the cost in
        the benchmark's heartbeat scenario (146-155 ns against 82-101 ns a beat).
        """
        self.beaten = True

    def __repr__(self) -> str:
        ident = getattr(getattr(self, "child", None), "id", "?")
        state = "dead" if self.dead else ("running" if self else "new")
        return f"<WorkerGreenlet child={ident!r} incarnation={self.incarnation} {state}>"


def disown(greenlets: Iterable[WorkerGreenlet | None]) -> int:
    """In a forked child: make inherited worker greenlets inert (see `WorkerGreenlet`);
    return how many were alive."""
    alive = 0
    for greenlet in greenlets:
        if greenlet is not None and not greenlet.dead:
            _disowned.add(greenlet)
            alive += 1
    return alive


#: Posted for an incarnation that died of ``GreenletExit`` (a kill carries nothing else),
#: or that never ran.
KILLED: Final = GreenletExit()

#: `Runnable.site` of a record none of whose crashes was posted as a storm yet.
NO_SITE: Final = (None, -1, None, None)

#: Switched into a parked worker: run your record's (new) incarnation.
GO: Final = object()
#: Switched into a parked worker: end.
RETIRE: Final = object()


def _interrupt_main(exc: KeyboardInterrupt) -> None:
    # gevent's own handling of a KeyboardInterrupt in a greenlet: print it, raise it in the
    # main greenlet (hub.handle_error -> handle_system_error).
    gevent.get_hub().handle_error(_getcurrent(), type(exc), exc, exc.__traceback__)


#: In fresh mode a finished worker greenlet ends at once, unless this many exits were
#: posted since the manager last ran (a crash storm: many workers failing in one pass of
#: the hub): then it parks and the manager retires it later.
PARK_AFTER: Final = 512


def _call_of(child: Runnable) -> tuple[Any, ...]:
    # What run_worker unpacks: the run's channel and its post, whether the greenlet is
    # reused (fixed for a record's life: a record belongs to one run), the target, its args
    # and kwargs (a copy, shared by the record's incarnations), whether it is a pool
    # worker's usual call target(worker_id) and that argument (a plain call, which the
    # interpreter runs inline, where target(*args, **kwargs) enters the interpreter anew),
    # the context captured at start and whether it is empty. Each incarnation runs in a
    # fresh copy of that context: the greenlet's own context is replaced before each run.
    # When the captured one is empty there is nothing to copy: a new greenlet has no
    # context of its own (it gets a new, empty one on first use), and a reused one drops
    # the last incarnation's before the next runs.
    args = child.args
    kwargs = dict(child.kwargs) if child.kwargs else {}
    single = len(args) == 1 and not kwargs
    context = child.context
    channel = child.channel
    return (
        channel,
        channel.post,
        child.reusable,
        child.target,
        args,
        kwargs,
        single,
        args[0] if single else None,
        context,
        not context,
    )


def run_worker(child: Runnable, incarnation: int) -> None:
    # The body of every worker greenlet: run an incarnation, post its exit, then park until
    # the manager resumes it with the next incarnation (reuse mode), or end (fresh mode: a
    # new greenlet runs the next one). In a crash storm a fresh greenlet parks too, and the
    # manager retires it in a later batch: a greenlet's teardown (an munmap of its
    # interpreter stack) then stays out of the storm's first pass, which would otherwise
    # hold the hub for the whole storm. Hot: everything is a local, the post and the wake
    # are inlined (Channel.notify), and the body is kept whole on purpose: the same code
    # with the crash branch and the park loop as two helper functions measured 0.855x the
    # reuse restart rate and 1.09x the storm's longest stall (benchmarks/ab.py, 6 pairs).
    call = child.call
    if call is None:
        call = child.call = _call_of(child)
    channel, post, reusable, target, args, kwargs, single, arg, context, empty = call
    hub: Any = None  # the greenlet and its parent, looked up once it first parks
    while True:
        child.ran = incarnation
        try:
            if not empty:
                _getcurrent().gr_context = context.copy()
            if single:
                target(arg)
            else:
                target(*args, **kwargs)
        except Exception as exc:
            # Compiled: posted at once if damping is off, or if it is the same crash as the
            # record's last one posted as its storm (a crash loop). Else, here:
            if _post_crash is None or not _post_crash(channel, child, incarnation, exc):
                damped = channel.damped
                if damped is None:
                    post((child, incarnation, exc))
                else:
                    # The site of the record's last crash posted as its storm, and that
                    # storm: the same crash again finds its storm without building its key.
                    site_code, site_lasti, site_type, site_storm = child.site
                    storm = None
                    tb = exc.__traceback__
                    if tb is not None:
                        below = tb.tb_next  # greenkeep._storm.crash_site, inlined
                        while below is not None:
                            tb = below
                            below = tb.tb_next
                        code = tb.tb_frame.f_code
                        lasti = tb.tb_lasti
                        if (
                            code is site_code
                            and lasti == site_lasti
                            and type(exc) is site_type
                            and not site_storm.ended
                        ):
                            storm = site_storm  # the same crash as its last one, its storm live
                        else:
                            kind = (type(exc), id(code), lasti)
                            storm = damped.get(kind)
                            if storm is not None:  # the record's next crash starts from it
                                child.site = (code, lasti, kind[0], storm)
                            else:  # the first of its kind opens its storm (`Storm.announced`)
                                damped[kind] = Storm.opened(kind, code)
                        tb = None
                    if storm is not None:
                        # Its kind is being summarized: the crash counts itself (the first
                        # of a summary period renders itself as the period's sample) and
                        # posts its storm, and the exception, its traceback and frames are
                        # freed now instead of waiting in the manager's backlog (a period's
                        # first round of a pool's crashes, posted in full, costed full GC
                        # passes).
                        if storm.sample is None:
                            storm.sample = (child.id, incarnation, error_text(exc))  # type: ignore[attr-defined]
                        storm.count += 1
                        post((child, incarnation, storm))
                    else:  # no traceback, or the first of its kind: in full
                        post((child, incarnation, exc))
        except GreenletExit:  # a kill: nothing in it the manager needs
            post((child, incarnation, KILLED))
        except KeyboardInterrupt as exc:
            post((child, incarnation, exc))
            _interrupt_main(exc)
        except BaseException as exc:  # every exit is reported, never re-raised
            post((child, incarnation, exc))
        else:
            post((child, incarnation, None))
        child.ran = -incarnation  # parked: its exit is posted
        if channel.parked:  # the manager is parked: wake it (one loop callback), and park
            channel.parked = False  # too, so that it runs before this greenlet's teardown
            channel.wake()
        elif not reusable:
            posted = channel.posted = channel.posted + 1
            if posted <= PARK_AFTER:
                return  # fresh mode, manager busy but keeping up: end now (the cheapest way)
        if hub is None:
            me = _getcurrent()
            hub = me.parent
        while True:  # parked (a raw switch: a worker has no gevent switch_out hook)
            # In a batch of resumes, hand over to the next parked worker of the batch, else
            # to the hub (a switch into a dead one, killed meanwhile, reaches its parent:
            # the hub, which goes on with the batch).
            relay = channel.relay
            try:
                token = raw_switch(hub) if relay is None else raw_switch(next(relay, hub), GO)
            except GreenletExit:
                return
            except BaseException:  # a stale throw aimed at a dead incarnation
                continue
            if token is GO:
                incarnation = me.incarnation = child.incarnation  # type: ignore[attr-defined]
                if empty and me.gr_context is not None:  # the last one's, not seen by the next
                    me.gr_context = None
                break
            if token is RETIRE:
                return
            # Any other switch is stale (e.g. a timer the dead incarnation left behind).


def spare_main() -> None:
    # A spare worker greenlet: started ahead of need (its interpreter stack, an mmap, is
    # already allocated), it waits here for its first incarnation: (child, incarnation).
    hub: Any = _getcurrent().parent
    try:
        token = _RawGreenlet.switch(hub)
    except GreenletExit:
        return
    if type(token) is tuple:
        child, incarnation = token
        run_worker(child, incarnation)


def current_worker() -> WorkerGreenlet | None:
    """The `WorkerGreenlet` running the caller, or ``None`` outside a supervised worker."""
    current = _getcurrent()
    return current if type(current) is WorkerGreenlet else None


_post_crash = None
if _speedups is not None:  # pragma: no branch - built wherever a C compiler is at hand
    _speedups.configure_worker(Channel, Runnable, Storm, WorkerGreenlet)
    _post_crash = _speedups.post_crash
