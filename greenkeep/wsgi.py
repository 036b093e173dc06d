"""
Health and status endpoints for a supervision tree, and a live supervision page, as a WSGI
application.

Mount `StatusApp` in a gevent ``pywsgi`` server (or any WSGI server, gunicorn included) to
answer:

- ``GET /healthz``: ``200`` while the root supervisor is running, ``503`` otherwise (not
  started yet, starting, stopping, stopped, or gave up), with a small JSON body saying why
  (never a crash message: ``/healthz`` is public). Liveness.
- ``GET /readyz``: ``200`` while the root is running and not degraded, ``503`` otherwise,
  naming the degraded pools and how many of their workers are failing. Readiness.
- ``GET /supervisors``: the root's `snapshot()`, the whole tree, as JSON.
- ``GET /`` (the page), ``/api/v1/tree``, ``/api/v1/supervisor`` and, when enabled,
  ``POST /api/v1/control``: the supervision page and the JSON API behind it (served when a
  *prefix* is given or there is no *app*).
- ``GET /metrics``: only when a metrics app is given (see `greenkeep.prometheus`).

Every other path goes to the application it wraps (or is a ``404``), so one server serves the
user's application and these endpoints together. Standard library and gevent only: nothing
here imports ``prometheus_client``. Who may see what is in the README's security section.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from importlib import resources
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

from greenkeep._access import Access, same_origin, token_problem
from greenkeep._check import check_logger, is_child_id
from greenkeep._errors import (
    ChildNotFoundError,
    GreenkeepError,
    InvalidArgumentError,
    SupervisorNotRunningError,
)
from greenkeep._event_names import EventLogger
from greenkeep._events import ProcessReporter
from greenkeep._pool import MAX_POOL_SIZE, WorkerPool
from greenkeep._render import safe_str, type_name
from greenkeep._spec import ChildId
from greenkeep._states import RUNNING
from greenkeep._status import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Samples,
    View,
    degraded_pools,
    detail,
    find,
    redact_snapshot,
    summary,
)
from greenkeep._supervisor import Supervisor

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["HEALTHY_STATES", "Authorize", "Root", "RootSource", "StatusApp"]

#: A root supervisor: a `Supervisor` or a `WorkerPool`.
Root = Supervisor | WorkerPool

#: Where a `StatusApp` finds its root: the root itself, or a callable returning it (or
#: ``None`` while this process has none yet, e.g. a gunicorn worker that is still booting).
RootSource = Supervisor | WorkerPool | Callable[[], Supervisor | WorkerPool | None]

#: ``authorize(environ)``: whether to allow a request (any truthy value allows it).
Authorize = Callable[[dict[str, Any]], object]

#: The root states in which ``/healthz`` answers ``200``.
HEALTHY_STATES: Final = frozenset({RUNNING})

_COMMON_HEADERS: Final = [
    ("Cache-Control", "no-store"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]
_JSON_HEADERS: Final = [("Content-Type", "application/json"), *_COMMON_HEADERS]
#: The page's own files only: no inline script or style, no other origin, no framing.
_PAGE_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS: Final = [
    *_COMMON_HEADERS,
    ("Content-Security-Policy", _PAGE_POLICY),
    ("X-Frame-Options", "DENY"),
]
#: The page's files (in ``greenkeep/_page``) by the name they are served under.
_ASSETS: Final = {
    "": ("index.html", "text/html; charset=utf-8"),
    "page.js": ("page.js", "text/javascript; charset=utf-8"),
    "page.css": ("page.css", "text/css; charset=utf-8"),
}
_STATUS_TEXT: Final = {
    200: "200 OK",
    308: "308 Permanent Redirect",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    409: "409 Conflict",
    413: "413 Content Too Large",
    415: "415 Unsupported Media Type",
    503: "503 Service Unavailable",
}
#: The largest control request body read, in bytes.
_MAX_BODY: Final = 4096
_NO_ROOT: Final = "no root supervisor in this process (yet)"
_CONTROL_ACTIONS: Final = ("restart_child", "terminate_child", "resize")

Handler = Callable[["WSGIEnvironment", bool], tuple[int, object]]


class StatusApp:
    """
    A WSGI application serving ``/healthz``, ``/readyz``, ``/supervisors``, the supervision
    page and its JSON API for one root supervisor, and passing every other path to *app*.

    >>> app = StatusApp(root, token=os.environ["GREENKEEP_STATUS_TOKEN"])  # doctest: +SKIP
    >>> gevent.pywsgi.WSGIServer(("127.0.0.1", 8081), app).serve_forever()  # doctest: +SKIP

    Args:
        root: The root `Supervisor` or `WorkerPool`, or a callable returning it (called on
            every request; it may return ``None`` while there is no root yet, as in a
            gunicorn worker before its ``post_worker_init`` hook ran; see
            `greenkeep.gunicorn.current_root`).

        app: The WSGI application that gets every other path. ``None`` answers them ``404``.

        prefix: Serve the endpoints under this path (``"/_greenkeep"`` gives
            ``/_greenkeep/healthz`` and the page at ``/_greenkeep/``); ``""`` (the default)
            serves them at the top. Paths are matched against ``PATH_INFO``, so a
            dispatcher that mounts this app under a ``SCRIPT_NAME`` works as usual. With an
            *app* and no prefix, the page and the API are not served (``/`` and ``/api/``
            stay the application's); ``/healthz``, ``/readyz``, ``/supervisors`` and
            ``/metrics`` are.

        metrics: A WSGI application to serve at ``{prefix}/metrics``, e.g.
            ``greenkeep.prometheus.Metrics().wsgi_app()``. ``None`` leaves that path to *app*.

        token: A bearer token (at least 16 visible ASCII characters, e.g.
            ``secrets.token_urlsafe(32)``). Once given, ``/supervisors``, the API and every
            crash message require ``Authorization: Bearer <token>`` (compared in constant
            time); ``/healthz``, ``/readyz`` and the page's shell stay public.

        authorize: ``authorize(environ) -> bool``, called per request to the protected
            paths (an exception refuses the request). With *token* too, a request must pass
            both.

        controls: Serve ``POST {prefix}/api/v1/control`` (restart or terminate a child,
            resize a pool). Needs *token* or *authorize*.

        logger: Where the ``control_action`` and ``control_refused`` events go; default
            ``structlog.get_logger("greenkeep")``.

    With neither *token* nor *authorize*, nothing is refused, and crash messages and
    tracebacks are shown only to requests from a loopback address that carry no proxy
    header (``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``); every other request sees
    types, reasons and counts with the messages hidden.

    ``/healthz`` is ``200`` only while the root's state is ``"running"``: ``503`` while it
    starts, once it is stopping or stopped, once it gave up (``error`` then names the
    error's type, never its text), and while *root* returns ``None``. ``/readyz`` is ``200``
    only while ``/healthz`` is and the root is not degraded (`SupervisorBase.degraded`):
    ``503`` with ``status`` ``"degraded"`` and the degraded pools (``path``, ``failing``,
    ``size``) while it is, ``"unavailable"`` in every case where ``/healthz`` is ``503``.
    ``/supervisors`` is ``200`` with the snapshot in every state and ``503`` only while
    there is no root.
    Responses are never cached (``Cache-Control: no-store``). Reading the tree never blocks;
    its cost grows with the number of children (for 10,000 pool workers, a snapshot takes a
    few tens of milliseconds of the serving greenlet, the API's summary a fraction of that).

    Raises:
        InvalidArgumentError: If an argument is not allowed (a bad *token* is never shown in
            the message).
    """

    __slots__ = (
        "_access",
        "_app",
        "_clock",
        "_controls",
        "_logger",
        "_metrics",
        "_page",
        "_prefix",
        "_root",
        "_samples",
    )

    def __init__(
        self,
        root: RootSource,
        *,
        app: WSGIApplication | None = None,
        prefix: str = "",
        metrics: WSGIApplication | None = None,
        token: str | None = None,
        authorize: Authorize | None = None,
        controls: bool = False,
        logger: EventLogger | None = None,
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
        problem = token_problem(token)
        if problem is not None:
            raise InvalidArgumentError(
                "StatusApp",
                "token",
                "None or a str of at least 16 visible ASCII characters",
                f"<a token: {problem}>",  # never the token itself
            )
        if authorize is not None and not callable(authorize):
            raise InvalidArgumentError(
                "StatusApp", "authorize", "None or a callable taking the WSGI environ", authorize
            )
        if not isinstance(controls, bool):
            raise InvalidArgumentError("StatusApp", "controls", "a bool", controls)
        if controls and token is None and authorize is None:
            raise InvalidArgumentError(
                "StatusApp", "controls", "False unless token= or authorize= is given", controls
            )
        check_logger("StatusApp", logger)
        self._root = root
        self._app = app
        self._metrics = metrics
        self._prefix = prefix
        self._access = Access(token, authorize)
        self._controls = controls
        self._logger = logger
        self._page = bool(prefix) or app is None
        self._samples = Samples()
        self._clock: Callable[[], float] = time.monotonic

    def root(self) -> Root | None:
        """The root supervisor requests see now (``None`` while there is none)."""
        root = self._root
        if isinstance(root, (Supervisor, WorkerPool)):
            return root
        return root()

    # ------------------------------------------------------------------ dispatch

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        prefix = self._prefix
        rest = path[len(prefix) :] if path.startswith(prefix) else None
        handler: Handler | None = None
        if rest == "/healthz":
            handler = self._health
        elif rest == "/readyz":
            handler = self._ready
        elif rest == "/supervisors":
            handler = self._snapshot
        elif rest == "/metrics" and self._metrics is not None:
            return self._metrics(environ, start_response)
        elif self._page and rest is not None:
            if rest == "" and prefix:
                where = environ.get("SCRIPT_NAME", "") + prefix + "/"
                return _respond(
                    environ, start_response, 308, {"location": where}, [("Location", where)]
                )
            if rest.startswith("/") and rest[1:] in _ASSETS:
                return self._asset(environ, start_response, rest[1:])
            if rest == "/api/v1/control":
                return self._control(environ, start_response)
            if rest == "/api/v1/tree":
                handler = self._tree
            elif rest == "/api/v1/supervisor":
                handler = self._detail
            elif rest.startswith("/api/"):
                return _respond(environ, start_response, 404, {"error": "not found", "path": path})
        if handler is None:
            if self._app is not None:
                return self._app(environ, start_response)
            return _respond(environ, start_response, 404, {"error": "not found", "path": path})
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _read_only(environ, start_response)
        public = rest in ("/healthz", "/readyz")
        allowed, messages = (True, False) if public else self._access.decide(environ)
        if not allowed:
            return _unauthorized(environ, start_response)
        status, body = handler(environ, messages)
        return _respond(environ, start_response, status, body)

    # ------------------------------------------------------------------ endpoints

    def _health(self, environ: WSGIEnvironment, messages: bool) -> tuple[int, object]:
        return self._alive(self.root())

    def _alive(self, root: Root | None) -> tuple[int, dict[str, object]]:
        # /healthz's answer (and the start of /readyz's).
        if root is None:
            return 503, {
                "status": "unavailable",
                "supervisor": None,
                "state": None,
                "error": _NO_ROOT,
                "pid": os.getpid(),
            }
        state = root.state
        healthy = state in HEALTHY_STATES
        error = root.error
        return (200 if healthy else 503), {
            "status": "ok" if healthy else "unavailable",
            "supervisor": root.path,
            "state": state,
            # Public: that there is an error and its type, never its text (which carries
            # the last crash's message). The API shows the rest to those allowed.
            "error": None if error is None else type(error).__name__,
            "pid": os.getpid(),
        }

    def _ready(self, environ: WSGIEnvironment, messages: bool) -> tuple[int, object]:
        root = self.root()
        code, body = self._alive(root)
        pools = degraded_pools(root) if code == 200 and root is not None else []
        # Public, as /healthz: paths and counts, never a crash message.
        body["degraded"] = [
            {"path": pool.path, "failing": pool.failing, "size": pool.size} for pool in pools
        ]
        if code == 200:
            body["status"] = "degraded" if pools else "ready"
            code = 503 if pools else 200
        return code, body

    def _snapshot(self, environ: WSGIEnvironment, messages: bool) -> tuple[int, object]:
        root = self.root()
        if root is None:
            return 503, {"error": _NO_ROOT, "pid": os.getpid()}
        snapshot = root.snapshot()
        if not messages:
            snapshot = redact_snapshot(snapshot, root)
        return 200, snapshot

    def _view(self, messages: bool) -> View:
        return View(self._samples, messages, self._clock())

    def _tree(self, environ: WSGIEnvironment, messages: bool) -> tuple[int, object]:
        body = summary(self.root(), self._view(messages))
        body["controls"] = self._controls
        return 200, body

    def _detail(self, environ: WSGIEnvironment, messages: bool) -> tuple[int, object]:
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        args: dict[str, str] = {k: v[-1] for k, v in query.items()}
        path = args.get("path")
        if not path:
            return 400, {"error": "path is required (the supervisor's path)", "argument": "path"}
        offset = _int_arg(args, "offset", 0, 0, None)
        limit = _int_arg(args, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        for name, value in (("offset", offset), ("limit", limit)):
            if isinstance(value, str):
                return 400, {"error": value, "argument": name}
        show = args.get("show", "attention")
        if show not in ("attention", "all"):
            return 400, {"error": "show must be 'attention' or 'all'", "argument": "show"}
        root = self.root()
        sup = None if root is None else find(root, path)
        if sup is None:
            return 404, {"error": f"no supervisor at {path!r}", "argument": "path"}
        assert isinstance(offset, int) and isinstance(limit, int)
        body = detail(sup, self._view(messages), offset, limit, show)
        body["controls"] = self._controls
        return 200, body

    def _asset(
        self, environ: WSGIEnvironment, start_response: StartResponse, name: str
    ) -> list[bytes]:
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _read_only(environ, start_response)
        filename, content_type = _ASSETS[name]
        data = _asset_bytes(filename)
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(data))),
            *_PAGE_HEADERS,
        ]
        start_response(_STATUS_TEXT[200], headers)
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else [data]

    # ------------------------------------------------------------------ controls

    def _control(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        remote = str(environ.get("REMOTE_ADDR") or "")
        root = self.root()
        where = "" if root is None else root.path

        def refuse(status: int, reason: str, message: str, **extra: object) -> list[bytes]:
            self._event(
                where, "warning", "control_refused", reason=reason, remote_addr=remote, **extra
            )
            headers = [("Allow", "POST")] if status == 405 else None
            if status == 401:
                return _unauthorized(environ, start_response, reason=reason)
            return _respond(environ, start_response, status, {"error": message}, headers)

        if not self._controls:
            return refuse(403, "disabled", "controls are not enabled (StatusApp(controls=True))")
        method = environ.get("REQUEST_METHOD", "GET")
        if method != "POST":
            return refuse(405, "method", f"method {method} not allowed: controls are POST only")
        if not same_origin(environ):
            return refuse(
                403,
                "origin",
                "cross-site request refused (Origin does not match Host)",
                origin=safe_str(environ.get("HTTP_ORIGIN"), 200),
            )
        if not self._access.authorized(environ):
            return refuse(401, "unauthorized", "authorization required")
        content_type = str(environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
        if content_type != "application/json":
            return refuse(415, "content_type", "the body must be application/json")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if length < 0 or length > _MAX_BODY:
            return refuse(413, "body", f"the body must be at most {_MAX_BODY} bytes")
        try:
            request = json.loads(environ["wsgi.input"].read(length) or b"null")
        except (ValueError, UnicodeDecodeError):
            request = None
        status, body, fields = self._act(root, request)
        fields["remote_addr"] = remote
        forwarded = environ.get("HTTP_X_FORWARDED_FOR") or environ.get("HTTP_FORWARDED")
        if forwarded:
            fields["forwarded_for"] = safe_str(forwarded, 200)
        path = fields.get("path")
        self._event(
            path if isinstance(path, str) else where,
            "info" if status == 200 else "warning",
            "control_action",
            **fields,
        )
        return _respond(environ, start_response, status, body)

    def _act(
        self, root: Root | None, request: object
    ) -> tuple[int, dict[str, Any], dict[str, Any]]:
        """Carry out one control request; (status, body, the event's fields)."""
        if not isinstance(request, dict):
            return 400, {"error": "the body must be a JSON object"}, {"outcome": "bad_request"}
        action = request.get("action")
        path = request.get("path")
        fields: dict[str, Any] = {"action": safe_str(action, 100), "path": safe_str(path, 500)}
        if action not in _CONTROL_ACTIONS:
            allowed = ", ".join(_CONTROL_ACTIONS)
            fields["outcome"] = "bad_request"
            return 400, {"error": f"action must be one of {allowed}"}, fields
        if not isinstance(path, str):
            fields["outcome"] = "bad_request"
            return 400, {"error": "path must be the supervisor's path (a str)"}, fields
        sup = None if root is None else find(root, path)
        if sup is None:
            fields["outcome"] = "not_found"
            return 404, {"error": f"no supervisor at {path!r}"}, fields
        body: dict[str, Any] = {"schema_version": 1, "action": action, "path": path}
        try:
            if action == "resize":
                size = request.get("size")
                fields["size"] = size if isinstance(size, int) else safe_str(size, 50)
                if not isinstance(sup, WorkerPool):
                    raise _BadControl("resize is for a pool")
                if not isinstance(size, int) or isinstance(size, bool):
                    raise _BadControl(f"size must be an int in 0..{MAX_POOL_SIZE:,}")
                previous = sup.size
                sup.resize(size)
                body.update(size=size, previous=previous)
                fields["previous"] = previous
            else:
                child_id = request.get("child_id")
                fields["child_id"] = child_id if is_child_id(child_id) else safe_str(child_id, 50)
                if not is_child_id(child_id):
                    raise _BadControl("child_id must be a str or an int")
                body["child_id"] = child_id
                body.update(self._child_action(sup, str(action), child_id))
        except _BadControl as exc:
            fields["outcome"] = "bad_request"
            return 400, {"error": str(exc)}, fields
        except ChildNotFoundError as exc:
            fields["outcome"] = "not_found"
            return 404, {"error": str(exc)}, fields
        except InvalidArgumentError as exc:
            fields["outcome"] = "bad_request"
            return 400, {"error": str(exc), "argument": exc.field}, fields
        except (SupervisorNotRunningError, GreenkeepError) as exc:
            fields["outcome"] = type_name(exc).rsplit(".", 1)[-1]
            return 409, {"error": f"{type(exc).__name__}: {exc}"}, fields
        fields["outcome"] = "done"
        body["done"] = True
        return 200, body, fields

    def _child_action(
        self, sup: Supervisor | WorkerPool, action: str, child_id: object
    ) -> dict[str, Any]:
        if isinstance(sup, WorkerPool):
            if action != "restart_child":
                raise _BadControl("a pool's workers can be restarted, not terminated")
            if not isinstance(child_id, int):
                raise _BadControl("a pool worker's id is an int")
            handle = sup.worker(child_id)
            alive = handle.alive
            handle.kill()  # GreenletExit: the pool restarts it by its restart type
            return {"incarnation": handle.incarnation, "killed": alive}
        assert is_child_id(child_id)
        key: ChildId = child_id  # type: ignore[assignment]
        if action == "terminate_child":
            info = sup.terminate_child(key)
        else:
            if _running(sup, key):
                sup.terminate_child(key)  # then start it again: a manual restart
            info = sup.restart_child(key)
        return {"status": info.status, "incarnation": info.incarnation}

    def _event(self, supervisor: str, level: str, event: str, **fields: object) -> None:
        # A fresh emitter per event: control requests are rare, and it resolves the logger
        # (structlog's configuration of the moment) in the request's own greenlet.
        ProcessReporter(supervisor, self._logger).emitter.emit(level, event, fields)


class _BadControl(Exception):
    """A control request that cannot be carried out as asked (``400``)."""


def _running(sup: Supervisor, child_id: ChildId) -> bool:
    run = sup._run
    if run is None:
        raise SupervisorNotRunningError(sup.name, sup.state, "restart a child")
    child = run.children.get(child_id)
    if child is None:
        raise ChildNotFoundError(sup.name, child_id)
    return child.greenlet is not None


def _int_arg(
    args: dict[str, str], name: str, default: int, low: int, high: int | None
) -> int | str:
    """The int query argument *name* (*default* if absent), or why it is not allowed."""
    text = args.get(name)
    if text is None or text == "":
        return default
    allowed = f"{name} must be an int >= {low}" + ("" if high is None else f" and <= {high}")
    try:
        value = int(text)
    except ValueError:
        return allowed
    if value < low or (high is not None and value > high):
        return allowed
    return value


_cache: dict[str, bytes] = {}


def _asset_bytes(filename: str) -> bytes:
    data = _cache.get(filename)
    if data is None:
        data = _cache[filename] = (
            resources.files("greenkeep").joinpath("_page").joinpath(filename).read_bytes()
        )
    return data


def _unauthorized(
    environ: WSGIEnvironment, start_response: StartResponse, reason: str = "unauthorized"
) -> list[bytes]:
    body = {"error": "authorization required (Authorization: Bearer <token>)"}
    headers = [("WWW-Authenticate", 'Bearer realm="greenkeep"')]
    return _respond(environ, start_response, 401, body, headers)


def _read_only(environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
    """``405`` for a method other than ``GET`` or ``HEAD`` on a read-only path."""
    method = environ.get("REQUEST_METHOD")
    return _respond(
        environ,
        start_response,
        405,
        {"error": f"method {method} not allowed"},
        [("Allow", "GET, HEAD")],
    )


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
