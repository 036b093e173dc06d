"""
The baseline rows of ``restart_rate.py``: what greenkeep is compared with.

Each function runs one row inside the current (fresh) process and returns its result dict.
All of them run the shared instrumented worker from `_harness` and touch no GC setting.

- *naive*: the straightforward design, exactly as issue 4 defines it.
- *asyncio*: the same design on asyncio's default event loop.
- *limit*: no supervision; each worker greenlet catches the crash and calls the function again.
- *fresh limit*: no supervision; every incarnation in a brand-new greenlet, by the cheapest
  means measured (`FRESH_LIMIT_VARIANTS`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from _harness import (
    Probe,
    Storms,
    current_rss,
    make_async_work,
    make_isolated_work,
    make_storm_work,
    make_work,
    measure,
    measure_async,
    measure_fixed,
    memory_result,
    run_storm,
)

__all__ = [
    "FRESH_LIMIT_VARIANT",
    "FRESH_LIMIT_VARIANTS",
    "asyncio_memory",
    "asyncio_rate",
    "bare_memory",
    "fresh_limit_rate",
    "fresh_limit_storm",
    "limit_rate",
    "limit_storm",
    "naive_isolated",
    "naive_rate",
]


def _gevent_pause(crash: str) -> Callable[[], object] | None:
    import gevent

    return gevent.sleep if crash == "yield" else None


# ---------------------------------------------------------------------- naive


def _naive_start(work: Callable[[int], None], workers: int) -> None:
    """
    The straightforward design (issue 4), exactly: one ``gevent.spawn`` per incarnation; a
    ``link_exception`` callback that calls ``put`` on a ``gevent.queue.Queue``; one manager
    greenlet that ``get``s one event at a time and spawns again; the hub's exception printing
    off; no logging.

    The callback *is* the queue's ``put`` (gevent runs it in a helper greenlet; a Python
    function there would also pay for that greenlet's interpreter stack, about 20% of the
    row). The dead greenlet has dropped its args, so the worker's slot rides on it as an
    attribute.
    """
    import gevent
    import gevent.queue

    gevent.get_hub().exception_stream = None
    events: gevent.queue.Queue = gevent.queue.Queue()
    put = events.put
    spawn = gevent.spawn

    def manager() -> None:
        get = events.get
        while True:
            slot = get().slot
            greenlet = spawn(work, slot)
            greenlet.slot = slot
            greenlet.link_exception(put)

    for slot in range(workers):
        greenlet = spawn(work, slot)
        greenlet.slot = slot
        greenlet.link_exception(put)
    spawn(manager)


def naive_rate(workers: int, crash: str, warmup_max: float, seconds: float) -> dict[str, Any]:
    import gevent
    import gevent.event

    probe = Probe(workers)
    gate = gevent.event.Event()
    _naive_start(make_work(probe, gate.wait, _gevent_pause(crash)), workers)
    gevent.sleep(0)  # every first incarnation runs up to the gate
    gate.set()
    return measure(probe, gevent.sleep, warmup_max, seconds)


def naive_isolated(workers: int, interval: float, seconds: float) -> dict[str, Any]:
    import gevent
    import gevent.event

    probe = Probe(workers)
    gate = gevent.event.Event()
    idle = gevent.event.Event()
    _naive_start(make_isolated_work(probe, gate.wait, idle.wait, gevent.sleep, interval), workers)
    gevent.sleep(0)
    gate.set()
    return measure_fixed(probe, gevent.sleep, min(0.5, seconds / 4), seconds)


# ---------------------------------------------------------------------- asyncio


def _asyncio_start(work: Callable[[int], Any], workers: int) -> Any:
    """
    The same design on asyncio (issue 4), exactly: one ``asyncio.create_task`` per
    incarnation; a done-callback that calls ``put_nowait`` on an ``asyncio.Queue`` (it *is*
    ``put_nowait``); a manager task that awaits ``get`` and creates the task again; no
    logging. The manager finds the slot of a task in a dict (tasks take no attributes) and
    retrieves each exception (``task.exception()``), so asyncio logs no "Task exception was
    never retrieved". Returns the manager task (keep a reference).
    """
    import asyncio

    events: asyncio.Queue = asyncio.Queue()
    put_nowait = events.put_nowait
    create_task = asyncio.create_task
    slot_of: dict[Any, int] = {}

    async def manager() -> None:
        get = events.get
        while True:
            task = await get()
            task.exception()
            slot = slot_of.pop(task)
            task = create_task(work(slot))
            slot_of[task] = slot
            task.add_done_callback(put_nowait)

    for slot in range(workers):
        task = create_task(work(slot))
        slot_of[task] = slot
        task.add_done_callback(put_nowait)
    return create_task(manager())


def _run_async(main: Callable[[], Any]) -> Any:
    """
    Run ``main()`` on a new default event loop (what ``asyncio.run`` creates) and leave the
    loop as it is: the row's process exits right after, without cancelling ten thousand tasks
    (and without their exit logging "Task exception was never retrieved").
    """
    import asyncio

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop.run_until_complete(main())


def asyncio_rate(workers: int, crash: str, warmup_max: float, seconds: float) -> dict[str, Any]:
    import asyncio

    async def main() -> dict[str, Any]:
        probe = Probe(workers)
        gate = asyncio.Event()
        pause = functools.partial(asyncio.sleep, 0) if crash == "yield" else None
        manager = _asyncio_start(make_async_work(probe, gate.wait, pause), workers)
        await asyncio.sleep(0)
        gate.set()
        result = await measure_async(probe, asyncio.sleep, warmup_max, seconds)
        result["loop"] = type(asyncio.get_running_loop()).__name__
        del manager
        return result

    return _run_async(main)


def asyncio_memory(workers: int) -> dict[str, Any]:
    """Memory per idle asyncio task blocked on one ``asyncio.Event``."""
    import asyncio

    async def main() -> dict[str, Any]:
        idle = asyncio.Event()

        async def wait(slot: int) -> None:
            await idle.wait()

        warm = [asyncio.create_task(wait(i)) for i in range(100)]
        await asyncio.sleep(0)
        before = current_rss()
        tasks = [asyncio.create_task(wait(i)) for i in range(workers)]
        await asyncio.sleep(0)
        after = current_rss()
        del warm, tasks
        return memory_result(before, after, workers)

    return _run_async(main)


# ---------------------------------------------------------------------- limits


def _limit_start(work: Callable[[int], None], workers: int, crash: str) -> None:
    """
    The limit (issue 4): each worker is one greenlet that catches the crash and calls its
    function again, no supervision.

    In crash mode "immediate" it yields to the hub between incarnations (as every
    supervised worker does when it crashes), so that the workers take turns and the hub's
    loop runs; by the cheapest yield measured: queue its own ``switch`` as a loop callback
    and switch straight to the hub (``gevent.sleep(0)`` minus its ``Waiter``, and
    ``hub.switch()`` minus its checks). In mode "yield" the function's own
    ``gevent.sleep(0)`` is that turn.
    """
    import gevent
    from greenlet import getcurrent
    from greenlet import greenlet as RawGreenlet

    hub = gevent.get_hub()
    run_callback = hub.loop.run_callback
    switch = RawGreenlet.switch

    if crash != "immediate":

        def worker(slot: int) -> None:
            while True:
                try:  # noqa: SIM105 - suppress() costs more in this hot loop
                    work(slot)
                except Exception:
                    pass

    else:

        def worker(slot: int) -> None:
            me = getcurrent().switch
            while True:
                try:  # noqa: SIM105 - suppress() costs more in this hot loop
                    work(slot)
                except Exception:
                    pass
                run_callback(me)
                switch(hub)

    for slot in range(workers):
        gevent.spawn(worker, slot)


def limit_rate(workers: int, crash: str, warmup_max: float, seconds: float) -> dict[str, Any]:
    import gevent
    import gevent.event

    probe = Probe(workers)
    gate = gevent.event.Event()
    _limit_start(make_work(probe, gate.wait, _gevent_pause(crash)), workers, crash)
    gevent.sleep(0)
    gate.set()
    return measure(probe, gevent.sleep, warmup_max, seconds)


def limit_storm(workers: int, rounds: int, timeout: float) -> dict[str, Any]:
    import gevent

    probe = Probe(workers)
    storms = Storms(rounds, workers)
    _limit_start(make_storm_work(probe, storms), workers, "immediate")
    gevent.sleep(0)
    return run_storm(probe, storms, timeout)


def _fresh_spawn_raw(work: Callable[[int], None]) -> Callable[[int], None]:
    """Each incarnation ends by ``gevent.spawn_raw``-ing its successor."""
    import gevent

    spawn_raw = gevent.spawn_raw

    def run(slot: int) -> None:
        try:  # noqa: SIM105 - suppress() costs more in this hot loop
            work(slot)
        except Exception:
            pass
        spawn_raw(run, slot)

    return run


def _fresh_raw_switch(work: Callable[[int], None]) -> Callable[[int], None]:
    """Each incarnation ends by creating a raw greenlet (parent: the hub) and queueing its
    ``switch`` as a loop callback."""
    import gevent
    from greenlet import greenlet

    hub = gevent.get_hub()
    run_callback = hub.loop.run_callback

    def run(slot: int) -> None:
        try:  # noqa: SIM105 - suppress() costs more in this hot loop
            work(slot)
        except Exception:
            pass
        run_callback(greenlet(run, hub).switch, slot)

    return run


def _fresh_callback_creates(work: Callable[[int], None]) -> Callable[[int], None]:
    """Each incarnation ends by queueing a loop callback that, in the hub, creates the raw
    greenlet of the next one and switches into it (the old one is gone by then)."""
    import gevent
    from greenlet import greenlet

    hub = gevent.get_hub()
    run_callback = hub.loop.run_callback

    def start(slot: int) -> None:
        greenlet(run, hub).switch(slot)

    def run(slot: int) -> None:
        try:  # noqa: SIM105 - suppress() costs more in this hot loop
            work(slot)
        except Exception:
            pass
        run_callback(start, slot)

    return run


#: Ways to give every incarnation a brand-new greenlet without supervision. The row uses
#: `FRESH_LIMIT_VARIANT`, the cheapest of them on the reference machine; ``--row
#: fresh-limit --variant NAME`` measures the others (see the module docstring of
#: restart_rate.py).
FRESH_LIMIT_VARIANTS: dict[str, Callable[[Callable[[int], None]], Callable[[int], None]]] = {
    "spawn_raw": _fresh_spawn_raw,
    "raw_switch": _fresh_raw_switch,
    "callback_creates": _fresh_callback_creates,
}
FRESH_LIMIT_VARIANT = "callback_creates"


def fresh_limit_rate(
    workers: int, crash: str, warmup_max: float, seconds: float, variant: str | None = None
) -> dict[str, Any]:
    import gevent
    import gevent.event

    variant = variant or FRESH_LIMIT_VARIANT
    probe = Probe(workers)
    gate = gevent.event.Event()
    run = FRESH_LIMIT_VARIANTS[variant](make_work(probe, gate.wait, _gevent_pause(crash)))
    for slot in range(workers):
        gevent.spawn_raw(run, slot)
    gevent.sleep(0)
    gate.set()
    result = measure(probe, gevent.sleep, warmup_max, seconds)
    result["variant"] = variant
    return result


def fresh_limit_storm(
    workers: int, rounds: int, timeout: float, variant: str | None = None
) -> dict[str, Any]:
    """The storm scenario for the fresh limit: every incarnation in a brand-new greenlet, by
    the same cheapest means as the fresh-limit row (`FRESH_LIMIT_VARIANT`)."""
    import gevent

    variant = variant or FRESH_LIMIT_VARIANT
    probe = Probe(workers)
    storms = Storms(rounds, workers)
    run = FRESH_LIMIT_VARIANTS[variant](make_storm_work(probe, storms))
    for slot in range(workers):
        gevent.spawn_raw(run, slot)
    gevent.sleep(0)
    result = run_storm(probe, storms, timeout)
    result["variant"] = variant
    return result


# ---------------------------------------------------------------------- memory


def bare_memory(workers: int) -> dict[str, Any]:
    """Memory per idle bare ``gevent.spawn`` greenlet blocked on one gevent ``Event``."""
    import gevent
    import gevent.event

    idle = gevent.event.Event()

    def wait(slot: int) -> None:
        idle.wait()

    warm = [gevent.spawn(wait, i) for i in range(100)]
    gevent.sleep(0)
    before = current_rss()
    greenlets = [gevent.spawn(wait, i) for i in range(workers)]
    gevent.sleep(0)
    after = current_rss()
    del warm, greenlets
    return memory_result(before, after, workers)
