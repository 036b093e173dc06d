"""
Test helpers: a real gevent ``pywsgi`` server on loopback and an HTTP client for it.

The client runs ``urllib`` in one of gevent's native threads, so it is a real, separate
HTTP client while the test's greenlet waits cooperatively and the hub keeps serving. Nothing
sleeps: `poll` retries a request until its answer satisfies a predicate or a deadline passes.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import gevent
import gevent.pywsgi

#: Seconds before a request, or a wait for an outcome, is declared failed.
DEADLINE = 10.0


@dataclass(frozen=True)
class Response:
    """One HTTP response, read whole."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Hand a redirect back as the response (urllib follows 308 only from CPython 3.11)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_NOT_FOLLOWING = urllib.request.build_opener(_NoRedirects)


def _request(
    url: str,
    method: str,
    timeout: float,
    headers: dict[str, str],
    data: bytes | None,
    follow: bool = True,
) -> Response:
    request = urllib.request.Request(url, method=method, headers=headers, data=data)
    opener = urllib.request.urlopen if follow else _NOT_FOLLOWING.open
    try:
        with opener(request, timeout=timeout) as answer:
            return Response(answer.status, dict(answer.headers.items()), answer.read())
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, dict(error.headers.items()), error.read())


def fetch(
    url: str,
    method: str = "GET",
    timeout: float = DEADLINE,
    headers: dict[str, str] | None = None,
    data: bytes | None = None,
    follow: bool = True,
) -> Response:
    """Fetch *url* from a native thread, without blocking gevent's hub (following
    redirects unless *follow* is false)."""
    result: Response = gevent.get_hub().threadpool.apply(
        _request, (url, method, timeout, dict(headers or {}), data, follow)
    )
    return result


def poll(
    url: str,
    until: Callable[[Response], bool],
    deadline: float = DEADLINE,
    fetcher: Callable[[str], Response] = fetch,
) -> Response:
    """
    Fetch *url* again and again until *until* accepts the answer; fail after *deadline*
    seconds. Connection errors count as "not yet".
    """
    end = time.monotonic() + deadline
    last: object = None
    while time.monotonic() < end:
        try:
            last = answer = fetcher(url)
        except OSError as error:  # not listening yet, or reset by a dying process
            last = error
        else:
            if until(answer):
                return answer
        gevent.sleep(0.05)  # pacing between attempts, not a wait for an outcome
    raise AssertionError(f"{url}: no satisfying answer within {deadline} s; last: {last!r}")


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve *app* on an ephemeral loopback port; yield its base URL."""
    server = gevent.pywsgi.WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.stop(timeout=1)
