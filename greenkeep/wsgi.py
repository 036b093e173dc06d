"""
Health and status endpoints for a supervision tree, as a WSGI application.

Mount `StatusApp` in a gevent ``pywsgi`` server (or any WSGI server, gunicorn included) to
answer:

- ``GET /healthz``: ``200`` while the root supervisor is running, ``503`` otherwise (not
  started yet, starting, stopping, stopped, or gave up), with a small JSON body saying why.
- ``GET /supervisors``: the root's `snapshot()`, the whole tree, as JSON.
- ``GET /metrics``: only when a metrics app is given (see `greenkeep.prometheus`).

Every other path goes to the application it wraps (or is a ``404``), so one server serves the
user's application and these endpoints together. Standard library and gevent only: nothing
here imports ``prometheus_client``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

from greenkeep._errors import InvalidArgumentError
from greenkeep._pool import WorkerPool
from greenkeep._states import RUNNING
from greenkeep._supervisor import Supervisor

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["HEALTHY_STATES", "Root", "RootSource", "StatusApp"]

#: A root supervisor: a `Supervisor` or a `WorkerPool`.
Root = Supervisor | WorkerPool

#: Where a `StatusApp` finds its root: the root itself, or a callable returning it (or
#: ``None`` while this process has none yet, e.g. a gunicorn worker that is still booting).
RootSource = Supervisor | WorkerPool | Callable[[], Supervisor | WorkerPool | None]

#: The root states in which ``/healthz`` answers ``200``.
HEALTHY_STATES: Final = frozenset({RUNNING})

_JSON_HEADERS: Final = [
    ("Content-Type", "application/json"),
    ("Cache-Control", "no-store"),
]
_STATUS_TEXT: Final = {
    200: "200 OK",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    503: "503 Service Unavailable",
}


class StatusApp:
    """
    A WSGI application serving ``/healthz`` and ``/supervisors`` for one root supervisor,
    and passing every other path to *app*.

    >>> app = StatusApp(root, app=my_wsgi_app)  # doctest: +SKIP
    >>> gevent.pywsgi.WSGIServer(("127.0.0.1", 8080), app).serve_forever()  # doctest: +SKIP

    Args:
        root: The root `Supervisor` or `WorkerPool`, or a callable returning it (called on
            every request; it may return ``None`` while there is no root yet, as in a
            gunicorn worker before its ``post_worker_init`` hook ran; see
            `greenkeep.gunicorn.current_root`).

        app: The WSGI application that gets every other path. ``None`` answers them ``404``.

        prefix: Serve the endpoints under this path (``"/_greenkeep"`` gives
            ``/_greenkeep/healthz``); ``""`` (the default) serves them at the top. Paths are
            matched against ``PATH_INFO``, so a dispatcher that mounts this app under a
            ``SCRIPT_NAME`` works as usual.

        metrics: A WSGI application to serve at ``{prefix}/metrics``, e.g.
            ``greenkeep.prometheus.Metrics().wsgi_app()``. ``None`` leaves that path to *app*.

    Only ``GET`` and ``HEAD`` are answered on the endpoints (anything else is ``405``).
    ``/healthz`` is ``200`` only while the root's state is ``"running"``: ``503`` while it
    starts, once it is stopping or stopped, once it gave up (the body then carries its
    error), and while *root* returns ``None``. ``/supervisors`` is ``200`` with the snapshot
    in every state (a stopped or failed tree is still worth seeing) and ``503`` only while
    there is no root. Responses are JSON, never cached (``Cache-Control: no-store``). A
    snapshot never blocks; its cost grows with the number of children (for 10,000 pool
    workers, a few tens of milliseconds of the serving greenlet).

    Raises:
        InvalidArgumentError: If *root*, *app*, *prefix* or *metrics* is not allowed.
    """

    __slots__ = ("_app", "_healthz", "_metrics", "_metrics_path", "_root", "_supervisors")

    def __init__(
        self,
        root: RootSource,
        *,
        app: WSGIApplication | None = None,
        prefix: str = "",
        metrics: WSGIApplication | None = None,
    ) -> None:
        if not (isinstance(root, (Supervisor, WorkerPool)) or callable(root)):
            raise InvalidArgumentError(
                "StatusApp", "root", "a Supervisor, a WorkerPool or a callable returning one", root
            )
        if app is not None and not callable(app):
            raise InvalidArgumentError("StatusApp", "app", "None or a WSGI application", app)
        if metrics is not None and not callable(metrics):
            raise InvalidArgumentError(
                "StatusApp", "metrics", "None or a WSGI application", metrics
            )
        if not isinstance(prefix, str) or (
            prefix and (not prefix.startswith("/") or prefix.endswith("/"))
        ):
            raise InvalidArgumentError(
                "StatusApp", "prefix", "'' or a path like '/_greenkeep' (no trailing '/')", prefix
            )
        self._root = root
        self._app = app
        self._metrics = metrics
        self._healthz = prefix + "/healthz"
        self._supervisors = prefix + "/supervisors"
        self._metrics_path = prefix + "/metrics" if metrics is not None else None

    def root(self) -> Root | None:
        """The root supervisor requests see now (``None`` while there is none)."""
        root = self._root
        if isinstance(root, (Supervisor, WorkerPool)):
            return root
        return root()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == self._healthz:
            handler: Callable[[], tuple[int, object]] = self._health
        elif path == self._supervisors:
            handler = self._snapshot
        elif path == self._metrics_path and self._metrics is not None:
            return self._metrics(environ, start_response)
        elif self._app is not None:
            return self._app(environ, start_response)
        else:
            return _respond(environ, start_response, 404, {"error": "not found", "path": path})
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _respond(
                environ,
                start_response,
                405,
                {"error": f"method {method} not allowed"},
                [("Allow", "GET, HEAD")],
            )
        status, body = handler()
        return _respond(environ, start_response, status, body)

    def _health(self) -> tuple[int, object]:
        root = self.root()
        if root is None:
            return 503, {
                "status": "unavailable",
                "supervisor": None,
                "state": None,
                "error": "no root supervisor in this process (yet)",
                "pid": os.getpid(),
            }
        state = root.state
        healthy = state in HEALTHY_STATES
        error = root.error
        return (200 if healthy else 503), {
            "status": "ok" if healthy else "unavailable",
            "supervisor": root.path,
            "state": state,
            "error": None if error is None else str(error),
            "pid": os.getpid(),
        }

    def _snapshot(self) -> tuple[int, object]:
        root = self.root()
        if root is None:
            return 503, {"error": "no root supervisor in this process (yet)", "pid": os.getpid()}
        return 200, root.snapshot()


def _respond(
    environ: WSGIEnvironment,
    start_response: StartResponse,
    status: int,
    body: object,
    extra_headers: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    data = json.dumps(body, default=str, separators=(",", ":")).encode("utf-8") + b"\n"
    headers = [*_JSON_HEADERS, ("Content-Length", str(len(data)))]
    if extra_headers:
        headers.extend(extra_headers)
    start_response(_STATUS_TEXT[status], headers)
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [data]
