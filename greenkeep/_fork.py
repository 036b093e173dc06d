"""
Supervisors are per process. After ``os.fork()`` the child process inherits copies of the
parent's greenlets; greenkeep makes sure no code of the parent's workers ever runs there:
right after the fork, before anything else runs in the child, every inherited supervisor is
marked stopped (reason ``forked``), its workers' greenlets are made inert (a wake-up that
gevent had queued for one of them switches into nothing), introspection says that nothing
runs, and one ``supervisor_forked`` event says so. Create (or start) supervisors after
forking, e.g. in gunicorn's ``post_worker_init`` hook.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable

__all__ = ["forget", "track"]

_live: weakref.WeakKeyDictionary[object, weakref.WeakMethod[Callable[[], None]]] = (
    weakref.WeakKeyDictionary()
)
_lock = threading.Lock()
_registered = False


def track(owner: object, after_fork: Callable[[], None]) -> None:
    """Remember a started supervisor: *after_fork* (a bound method) is called in a forked
    child process, synchronously, right after the fork (idempotent)."""
    global _registered
    with _lock:
        _live[owner] = weakref.WeakMethod(after_fork)
        if not _registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _registered = True


def forget(owner: object) -> None:
    """A supervisor ended: nothing to disown after a fork."""
    with _lock:
        _live.pop(owner, None)


def _after_fork_in_child() -> None:
    # Runs in the child right after fork, in whatever greenlet forked, before anything
    # else can run there.
    inherited = list(_live.values())
    _live.clear()
    for ref in inherited:
        after_fork = ref()
        if after_fork is not None:
            after_fork()
