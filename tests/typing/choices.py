"""
The choices (strategy=, restart=, shutdown=, auto_shutdown=, mode=) as mypy --strict sees
them: each takes its enum's members and its values as strings, and a typo is an error.

Never run. mypy must pass on this directory, so each typo carries
``# type: ignore[arg-type]``: the error is there, and ignored. ``--strict`` turns on
``warn_unused_ignores``, so if a typo ever stopped being an error (a parameter typed ``str``
again), its ignore would be unused and mypy would fail on that line. An ignore here is the
assertion "this is an arg-type error"; do not remove one to make mypy pass.
"""

from __future__ import annotations

import greenkeep
from greenkeep import (
    AutoShutdown,
    ChildSpec,
    Restart,
    RestartMode,
    Shutdown,
    Strategy,
    Supervisor,
    WorkerPool,
)


def work() -> None:
    pass


def pool_work(worker_id: int) -> None:
    del worker_id


def strategy() -> None:
    Supervisor(strategy="rest_for_one")
    Supervisor(strategy=Strategy.ONE_FOR_ALL)
    Supervisor(strategy="one_for_on")  # type: ignore[arg-type]


def restart() -> None:
    ChildSpec("a", work, restart="transient")
    ChildSpec("a", work, restart=Restart.TEMPORARY)
    ChildSpec("a", work, restart="permanant")  # type: ignore[arg-type]
    WorkerPool(pool_work, 1, restart="temporary")
    WorkerPool(pool_work, 1, restart=Restart.TRANSIENT)
    WorkerPool(pool_work, 1, restart="transiant")  # type: ignore[arg-type]


def shutdown() -> None:
    ChildSpec("a", work, shutdown="brutal")
    ChildSpec("a", work, shutdown=Shutdown.INFINITY)
    ChildSpec("a", work, shutdown="brutally")  # type: ignore[arg-type]
    ChildSpec("a", work, shutdown=2.5)  # seconds, and None (the default), stay allowed
    ChildSpec("a", work, shutdown=3)
    ChildSpec("a", work, shutdown=None)
    WorkerPool(pool_work, 1, shutdown="infinity")
    WorkerPool(pool_work, 1, shutdown=Shutdown.BRUTAL)
    WorkerPool(pool_work, 1, shutdown="infinite")  # type: ignore[arg-type]


def auto_shutdown() -> None:
    Supervisor(auto_shutdown="any_significant")
    Supervisor(auto_shutdown=AutoShutdown.ALL_SIGNIFICANT)
    Supervisor(auto_shutdown="all")  # type: ignore[arg-type]


def mode() -> None:
    WorkerPool(pool_work, 1, mode="reuse")
    WorkerPool(pool_work, 1, mode=RestartMode.FRESH)
    WorkerPool(pool_work, 1, mode="fast")  # type: ignore[arg-type]


def from_configuration(text: str) -> None:
    # Any str is not a choice: convert it with the enum (ValueError on a bad one) first.
    ChildSpec("a", work, restart=text)  # type: ignore[arg-type]
    ChildSpec("a", work, restart=Restart(text))


def passed_on(
    restart: greenkeep.RestartValue,
    strategy: greenkeep.StrategyValue,
    mode: greenkeep.RestartModeValue,
    shutdown: greenkeep.ShutdownValue,
    auto_shutdown: greenkeep.AutoShutdownValue,
) -> None:
    # The exported aliases type a user's own parameters that greenkeep's accept.
    spec = ChildSpec("a", work, restart=restart, shutdown=shutdown)
    Supervisor([spec], strategy=strategy, auto_shutdown=auto_shutdown)
    WorkerPool(pool_work, 1, mode=mode, restart=restart, shutdown=shutdown)
