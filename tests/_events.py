"""Test helpers: collect a supervisor's events and wait for them without sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import gevent
import gevent.event
import gevent.queue

#: Seconds a test waits for something that should happen promptly. A safety bound, never a
#: hope: the tests wait for the event itself and this only turns a hang into a failure.
DEADLINE = 5.0


class Events:
    """A subscriber that records every event and lets a test wait for one."""

    def __init__(self) -> None:
        self.all: list[dict[str, Any]] = []
        self._queue: gevent.queue.Queue[dict[str, Any]] = gevent.queue.Queue()
        self._seen = 0

    def __call__(self, event: Mapping[str, Any]) -> None:
        item = {k: v for k, v in event.items() if k != "exc_info"}
        item["has_exc_info"] = "exc_info" in event
        self.all.append(item)
        self._queue.put(item)

    def wait(self, name: str, timeout: float = DEADLINE, **match: Any) -> dict[str, Any]:
        """Return the next event (after earlier waits) called *name* matching *match*."""
        while True:
            try:
                item = self._queue.get(timeout=timeout)
            except gevent.queue.Empty:
                raise AssertionError(
                    f"no {name} event matching {match} within {timeout} s; saw {self.names()}"
                ) from None
            if item["event"] == name and all(item.get(k) == v for k, v in match.items()):
                return item

    def names(self) -> list[str]:
        return [e["event"] for e in self.all]

    def of(self, name: str, **match: Any) -> list[dict[str, Any]]:
        return [
            e
            for e in self.all
            if e["event"] == name and all(e.get(k) == v for k, v in match.items())
        ]


def wait_until(predicate: Callable[[], bool], timeout: float = DEADLINE) -> None:
    """Yield to other greenlets until *predicate* holds; fail after *timeout* seconds (a
    safety bound: the test waits for the condition, not for the time)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        gevent.sleep(0.001)


def hub_turns(n: int = 3) -> None:
    """Let the hub run *n* full loop iterations (no real time involved)."""
    for _ in range(n):
        gevent.sleep(0)


class Call:
    """Runs *fn* in its own greenlet; `wait` says whether it returned within a bound."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.done = gevent.event.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.elapsed = 0.0
        self._started = time.monotonic()
        self.greenlet = gevent.spawn(self._run, fn)

    def _run(self, fn: Callable[[], Any]) -> None:
        try:
            self.result = fn()
        except BaseException as exc:  # reported by the test, never by gevent's hub
            self.error = exc
        finally:
            self.elapsed = time.monotonic() - self._started
            self.done.set()

    def wait(self, timeout: float) -> tuple[bool, BaseException | None]:
        """(whether it returned within *timeout*, what it raised)."""
        return bool(self.done.wait(timeout)), self.error

    def abandon(self) -> None:
        if not self.done.is_set():
            self.greenlet.kill(block=False)
