"""
The settings every supervisor has, `Supervisor` and `WorkerPool` alike, checked at once:
name, restart intensity, logger, subscribers, clock, log summaries, random source.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from greenkeep._check import LOGGER_ALLOWED, check_seconds, is_logger
from greenkeep._errors import SpecProblem
from greenkeep._event_names import EventLogger, Subscriber
from greenkeep._intensity import UnlimitedType, intensity_problems

__all__ = ["Config", "make_config"]


@dataclass(frozen=True)
class Config:
    """
    One supervisor's validated settings.

    Attributes:
        kind: ``"supervisor"`` or ``"pool"``.
        owner: How errors name it, e.g. ``"supervisor 'root'"``.
        clock: Seconds as a float for restart windows, backoff, heartbeats and log
            summaries (never for stopping, which waits in real time).
        random: Uniform numbers in [0, 1) for backoff jitter.
    """

    kind: str
    owner: str
    name: str
    max_restarts: int | UnlimitedType
    period: float
    logger: EventLogger | None
    subscribers: tuple[Subscriber, ...]
    clock: Callable[[], float]
    log_summary_interval: float | None
    random: Callable[[], float]


def make_config(
    kind: str,
    problems: list[SpecProblem],
    *,
    name: object,
    max_restarts: object,
    period: object,
    logger: object,
    subscribers: object,
    clock: object,
    log_summary_interval: object,
    random_source: object,
) -> Config:
    """
    Check the shared settings, appending every problem to *problems*; the `Config`
    returned is only meaningful when *problems* stayed empty.
    """
    owner = f"{kind} {name!r}" if isinstance(name, str) else kind
    if not isinstance(name, str) or not name or "/" in name:
        problems.append(SpecProblem(owner, "name", "a non-empty str without '/'", name))
    for field, allowed, got in intensity_problems(max_restarts, period):
        problems.append(SpecProblem(owner, field, allowed, got))
    if clock is not None and not callable(clock):
        problems.append(SpecProblem(owner, "clock", "None or a callable returning seconds", clock))
    if not is_logger(logger):
        problems.append(SpecProblem(owner, "logger", LOGGER_ALLOWED, logger))
    subscribers_t: tuple[Subscriber, ...] = ()
    if isinstance(subscribers, (str, bytes)) or not isinstance(subscribers, Iterable):
        problems.append(SpecProblem(owner, "subscribers", "an iterable of callables", subscribers))
    else:
        subscribers_t = tuple(subscribers)
        for i, sub in enumerate(subscribers_t):
            if not callable(sub):
                problems.append(SpecProblem(owner, f"subscribers[{i}]", "a callable", sub))
    interval = check_seconds(
        owner, "log_summary_interval", log_summary_interval, problems, positive=True
    )
    if random_source is not None and not callable(random_source):
        problems.append(
            SpecProblem(owner, "random", "None or a callable returning [0, 1)", random_source)
        )
    return Config(
        kind=kind,
        owner=owner,
        name=name if isinstance(name, str) else kind,
        max_restarts=max_restarts,  # type: ignore[arg-type]
        period=float(period) if isinstance(period, (int, float)) else 0.0,
        logger=logger,  # type: ignore[arg-type]
        subscribers=subscribers_t,
        clock=clock if callable(clock) else time.monotonic,
        log_summary_interval=interval,
        random=random_source if callable(random_source) else random.random,
    )
