"""
Introspection that scales: what `which_children` and `snapshot` cost is charged to whoever
asks.

Both are O(children). Over a large pool (10,000 workers: several milliseconds) a greenlet
that asks in a loop would otherwise take the hub from the manager and from the rest of the
server. So a call that worked for more than `CHARGE_FROM` seconds yields afterwards for
`CHARGE` times as long (a gevent sleep: timers and IO run, the manager restarts workers):
however often it is called, introspection takes at most a third of the process. A cheap
call (a supervisor of a few children) never yields; neither does a call from the hub or from
a supervisor's manager greenlet (a subscriber), which must not block.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from typing import Final, TypeVar

import gevent
from greenlet import getcurrent, greenlet

__all__ = ["CHARGE", "CHARGE_FROM", "charged", "register_manager"]

T = TypeVar("T")

#: How long a call yields afterwards, as a multiple of how long it worked.
CHARGE: Final = 2.0
#: Calls that work less than this many seconds are free.
CHARGE_FROM: Final = 0.001

_managers: weakref.WeakSet[greenlet] = weakref.WeakSet()


def register_manager(manager: greenlet) -> None:
    """A supervisor's manager greenlet: introspection called there never yields."""
    _managers.add(manager)


_depth = [0]  # nested calls (a tree's snapshot) are charged once, by the outermost


def charged(build: Callable[[], T]) -> T:
    """Run *build* (an O(children) introspection), then yield as the module says."""
    started = time.perf_counter()
    _depth[0] += 1
    try:
        result = build()
    finally:
        _depth[0] -= 1
    spent = time.perf_counter() - started
    if spent >= CHARGE_FROM and not _depth[0]:
        current = getcurrent()
        if current is not gevent.get_hub() and current not in _managers:
            gevent.sleep(spent * CHARGE)
    return result
