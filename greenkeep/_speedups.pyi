from collections import deque
from collections.abc import Callable
from types import CodeType
from typing import Any

def same_site(
    exc: BaseException, code: CodeType, lasti: int, type: type[BaseException], /
) -> bool: ...
def configure_worker(
    channel_type: type, runnable_type: type, storm_type: type, greenlet_type: type, /
) -> None: ...
def start_run(
    greenlets: list[Any], channel: Any, switch: Any, killed_type: type[BaseException], /
) -> int: ...
def post_crash(channel: Any, child: Any, incarnation: int, exc: BaseException, /) -> bool: ...
def configure(
    worker_type: type, greenlet_type: type, storm_type: type, running: Any, abnormal: str, /
) -> None: ...
def straight_run(
    queue: deque[Any],
    handled: int,
    bound: int,
    now: float,
    reuse: bool,
    resumes: list[Any],
    starts: list[Any],
    retirees: list[Any],
    hub: Any,
    run: Callable[..., object],
    /,
) -> int: ...
