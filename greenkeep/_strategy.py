"""
Restart strategies as pure plans: which children to stop, which to start, in which order.

No gevent and no supervisor state here: a plan is computed from the start order and the
failed child, then the manager carries it out.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["AutoShutdown", "RestartPlan", "Strategy", "plan_restart"]

K = TypeVar("K")


class Strategy(str, enum.Enum):
    """Which siblings are restarted with a failed child (OTP's strategies)."""

    #: Only the failed child.
    ONE_FOR_ONE = "one_for_one"
    #: Every child: the others are stopped in reverse start order, then all are started in
    #: start order.
    ONE_FOR_ALL = "one_for_all"
    #: The failed child and every child started after it.
    REST_FOR_ONE = "rest_for_one"


class AutoShutdown(str, enum.Enum):
    """When the exit of *significant* children ends their supervisor (OTP 24)."""

    #: Never (the default); significant children are not allowed.
    NEVER = "never"
    #: As soon as any significant child exits on its own and is not restarted.
    ANY_SIGNIFICANT = "any_significant"
    #: Once every significant child has exited on its own and none runs.
    ALL_SIGNIFICANT = "all_significant"


@dataclass(frozen=True)
class RestartPlan(Generic[K]):
    """
    What a strategy does about one failed child.

    Attributes:
        stop: Running siblings to stop first, in this order (reverse start order).
        drop: Affected temporary children: stopped (if running) and their specs removed.
        start: Children to start, in this order (start order); includes the failed child.
    """

    stop: tuple[K, ...]
    drop: tuple[K, ...]
    start: tuple[K, ...]


def plan_restart(
    strategy: Strategy,
    order: Sequence[K],
    failed: K,
    is_running: Callable[[K], bool],
    is_temporary: Callable[[K], bool],
) -> RestartPlan[K]:
    """
    Plan the restart of *failed* (which already exited and is to be restarted).

    Args:
        strategy: The supervisor's strategy.
        order: Every child id in start order, *failed* included.
        failed: The child that exited.
        is_running: Whether a sibling is running now.
        is_temporary: Whether a sibling is temporary (a temporary bystander is stopped and
            dropped, never restarted).

    The affected set is *failed* alone (one_for_one), every child (one_for_all), or *failed*
    and the children after it (rest_for_one). Affected running siblings are stopped in
    reverse start order; affected non-temporary children, running or not (as OTP), are
    started in start order.
    """
    if strategy is Strategy.ONE_FOR_ONE:
        return RestartPlan((), (), (failed,))
    index = order.index(failed)
    affected = list(order) if strategy is Strategy.ONE_FOR_ALL else list(order[index:])
    bystanders = [k for k in affected if k != failed]
    stop = tuple(k for k in reversed(bystanders) if is_running(k))
    drop = tuple(k for k in bystanders if is_temporary(k))
    dropped = set(drop)
    start = tuple(k for k in affected if k == failed or k not in dropped)
    return RestartPlan(stop, drop, start)
