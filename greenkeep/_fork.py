"""
Supervisors are per process. After ``os.fork()`` the child process inherits copies of the
parent's greenlets; greenkeep makes sure it never silently runs copies of the parent's
workers: in the child, every inherited supervisor is marked stopped (reason ``forked``),
starts and restarts nothing, and its manager and workers are killed on the child's first hub
turn, with one ``supervisor_forked`` event. Create (or start) supervisors after forking, e.g.
in gunicorn's ``post_worker_init`` hook.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from greenkeep._manager import Manager

__all__ = ["forget", "track"]

_live: weakref.WeakSet[Manager] = weakref.WeakSet()
_lock = threading.Lock()
_registered = False


def track(manager: Manager) -> None:
    """Remember a started supervisor so a fork can disown it (idempotent)."""
    global _registered
    with _lock:
        _live.add(manager)
        if not _registered and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _registered = True


def forget(manager: Manager) -> None:
    """A supervisor ended: nothing to disown after a fork."""
    with _lock:
        _live.discard(manager)


def _after_fork_in_child() -> None:
    # Runs in the child right after fork, in whatever greenlet forked. Only flags are set
    # here; the greenlets are killed from a hub callback.
    inherited = list(_live)
    _live.clear()
    for manager in inherited:
        manager._disown_after_fork()
