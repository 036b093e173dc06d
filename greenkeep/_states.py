"""
The states of supervisors and children, as typed names (``Literal`` types and their
constants) instead of bare strings.

The constants are the strings themselves, so comparing with ``is`` costs one pointer
comparison on the restart path, and what users see (``sup.state``, `ChildInfo.status`,
snapshots) stays plain text.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = [
    "AUTO_SHUTDOWN",
    "DELAYED",
    "FAILED",
    "FORKED",
    "GAVE_UP",
    "INTERRUPTED",
    "MANAGER_CRASHED",
    "NEW",
    "NOT_STARTED",
    "RESTARTING",
    "RUNNING",
    "SHUTDOWN",
    "STARTING",
    "START_FAILED",
    "STOPPED",
    "STOPPING",
    "TERMINATED",
    "ChildState",
    "ChildStatus",
    "StopReason",
    "SupervisorState",
]

#: Where a supervisor (or pool) is in its life.
SupervisorState = Literal["new", "starting", "running", "stopping", "stopped", "failed"]

#: What the manager knows of one child: ``running`` (an incarnation runs), ``restarting``
#: (a strategy is restarting it), ``delayed`` (its restart waits for a backoff delay),
#: ``stopping`` (being stopped) or ``terminated`` (nothing runs).
ChildStatus = Literal["running", "restarting", "delayed", "stopping", "terminated"]

#: A child's state as snapshots show it: a terminated child is ``stopped`` or, after a
#: crash, ``failed``; a child being stopped still shows as ``running``.
ChildState = Literal["running", "restarting", "delayed", "stopped", "failed"]

NEW: Final = "new"
STARTING: Final = "starting"
RUNNING: Final = "running"
STOPPING: Final = "stopping"
STOPPED: Final = "stopped"
FAILED: Final = "failed"

RESTARTING: Final = "restarting"
DELAYED: Final = "delayed"
TERMINATED: Final = "terminated"

#: Why a supervisor ended (`StopReport.reason`, ``supervisor_stopped``'s ``reason``).
StopReason = Literal[
    "shutdown",
    "restart_intensity_exceeded",
    "auto_shutdown",
    "interrupted",
    "start_failed",
    "manager_crashed",
    "forked",
    "not_started",
]

SHUTDOWN: Final = "shutdown"
GAVE_UP: Final = "restart_intensity_exceeded"
AUTO_SHUTDOWN: Final = "auto_shutdown"
INTERRUPTED: Final = "interrupted"
START_FAILED: Final = "start_failed"
MANAGER_CRASHED: Final = "manager_crashed"
FORKED: Final = "forked"
NOT_STARTED: Final = "not_started"
