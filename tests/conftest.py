"""
Shared fixtures.

Every test runs with structlog's default configuration restored afterwards, and fails if
gevent's hub reported an error (a traceback that would have gone to stderr) while it ran.
A ``KeyboardInterrupt`` is the one error allowed to reach the hub: that is how it reaches the
main greenlet.
"""

from __future__ import annotations

from collections.abc import Iterator

import gevent
import pytest
import structlog


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


class HubErrors:
    """What gevent's hub reported while a test ran."""

    def __init__(self) -> None:
        self.reported: list[tuple[object, type[BaseException] | None, BaseException | None]] = []
        self.allowed: tuple[type[BaseException], ...] = (KeyboardInterrupt,)

    def unexpected(self) -> list[tuple[object, type[BaseException] | None, BaseException | None]]:
        return [r for r in self.reported if not (r[1] and issubclass(r[1], self.allowed))]


@pytest.fixture(autouse=True)
def hub_errors(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubErrors]:
    """Fail the test if gevent's hub printed an error while it ran."""
    errors = HubErrors()
    hub = gevent.get_hub()
    original = hub.print_exception

    def record(
        context: object, t: type[BaseException] | None, v: BaseException | None, tb: object
    ) -> None:
        errors.reported.append((context, t, v))
        original(context, t, v, tb)

    monkeypatch.setattr(hub, "print_exception", record)
    yield errors
    bad = errors.unexpected()
    assert not bad, f"gevent's hub reported errors: {bad!r}"
