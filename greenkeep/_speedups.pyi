from collections import deque
from collections.abc import Callable
from types import CodeType
from typing import Any

def same_site(
    exc: BaseException, code: CodeType, lasti: int, type: type[BaseException], /
) -> bool: ...
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
