"""
greenkeep: Erlang/OTP-grade supervision for gevent greenlets.

Workers are greenlets; a supervisor restarts them by OTP's rules (restart types,
strategies, restart intensity, bounded shutdown) and reports every step as a structlog event.
"""

from greenkeep._backoff import Backoff
from greenkeep._current import StopSignal, WorkerInfo, current, ready, stop_signal
from greenkeep._errors import (
    CalledFromManagerError,
    ChildAlreadyPresentError,
    ChildAlreadyStartedError,
    ChildError,
    ChildNotFoundError,
    ChildRestartingError,
    ChildRunningError,
    ChildStartError,
    GreenkeepError,
    InvalidArgumentError,
    InvalidSpecError,
    RestartIntensityExceeded,
    SpecProblem,
    SupervisorAlreadyStartedError,
    SupervisorNotRunningError,
)
from greenkeep._event_names import EVENT_LEVELS, EventLogger, Subscriber
from greenkeep._exits import ExitKind, ExitRecord
from greenkeep._exports import fix_module_metadata as _fix_module_metadata
from greenkeep._heartbeat import beat, heartbeat
from greenkeep._intensity import UNLIMITED, UnlimitedType
from greenkeep._manager import SupervisorBase
from greenkeep._pool import MAX_POOL_SIZE, RestartMode, RestartModeValue, WorkerHandle, WorkerPool
from greenkeep._reports import ChildCounts, ChildInfo, StopReport, Unstopped
from greenkeep._rules import AutoShutdown, AutoShutdownValue, Strategy, StrategyValue
from greenkeep._spec import (
    ChildSpec,
    Restart,
    RestartValue,
    Shutdown,
    ShutdownValue,
    Subtree,
)
from greenkeep._supervisor import Supervisor
from greenkeep._version import __version__

__all__ = [
    "EVENT_LEVELS",
    "MAX_POOL_SIZE",
    "UNLIMITED",
    "AutoShutdown",
    "AutoShutdownValue",
    "Backoff",
    "CalledFromManagerError",
    "ChildAlreadyPresentError",
    "ChildAlreadyStartedError",
    "ChildCounts",
    "ChildError",
    "ChildInfo",
    "ChildNotFoundError",
    "ChildRestartingError",
    "ChildRunningError",
    "ChildSpec",
    "ChildStartError",
    "EventLogger",
    "ExitKind",
    "ExitRecord",
    "GreenkeepError",
    "InvalidArgumentError",
    "InvalidSpecError",
    "Restart",
    "RestartIntensityExceeded",
    "RestartMode",
    "RestartModeValue",
    "RestartValue",
    "Shutdown",
    "ShutdownValue",
    "SpecProblem",
    "StopReport",
    "StopSignal",
    "Strategy",
    "StrategyValue",
    "Subscriber",
    "Subtree",
    "Supervisor",
    "SupervisorAlreadyStartedError",
    "SupervisorBase",
    "SupervisorNotRunningError",
    "UnlimitedType",
    "Unstopped",
    "WorkerHandle",
    "WorkerInfo",
    "WorkerPool",
    "__version__",
    "beat",
    "current",
    "heartbeat",
    "ready",
    "stop_signal",
]

# Last: every exported class and function reports "greenkeep" as its module (tracebacks
# print greenkeep.InvalidSpecError, not greenkeep._errors.InvalidSpecError).
_fix_module_metadata(globals())
del _fix_module_metadata
