"""
Who may see what of the status endpoints (`greenkeep.wsgi.StatusApp`): authorization, the
loopback rule, the cross-site checks for controls, and the redaction of crash messages.

Pure standard library. The rules, as the README's security section states them:

- With a token or an ``authorize`` callable configured, a request is *authorized* when every
  one configured allows it: the token compared in constant time (`hmac.compare_digest`)
  with an ``Authorization: Bearer`` header, the callable called with the WSGI environ (an
  exception from it refuses the request).
- With neither configured, nothing is refused, and crash messages and tracebacks are shown
  only to a request from a loopback address (``127.0.0.0/8``, ``::1``) that carries no
  proxy header (``Forwarded``, ``X-Forwarded-For``, ``X-Real-IP``): a proxy on the same
  host makes every request come from loopback, so a proxied request counts as remote.
- A control request (``POST``) is refused when a present ``Origin`` does not match its
  ``Host``, or a present ``Sec-Fetch-Site`` is not ``same-origin``.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from greenkeep._errors import RestartIntensityExceeded
from greenkeep._exits import ExitRecord

__all__ = [
    "HIDDEN",
    "PROXY_HEADERS",
    "TOKEN_MIN_LENGTH",
    "Access",
    "error_type_of",
    "is_loopback_request",
    "redacted_error",
    "same_origin",
    "token_problem",
]

#: What replaces a message that the request may not see.
HIDDEN: Final = "[message hidden]"
#: The shortest token `StatusApp` accepts.
TOKEN_MIN_LENGTH: Final = 16
#: Headers that say a proxy forwarded the request (WSGI environ keys).
PROXY_HEADERS: Final = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP")

Environ = Mapping[str, Any]


def token_problem(token: object) -> str | None:
    """Why *token* cannot be a `StatusApp` token (``None`` if it can)."""
    if token is None:
        return None
    if not isinstance(token, str):
        return "not a str"
    if len(token) < TOKEN_MIN_LENGTH:
        return f"{len(token)} characters"
    if not all("!" <= c <= "~" for c in token):
        return "characters outside visible ASCII"
    return None


def is_loopback_request(environ: Environ) -> bool:
    """Whether the request came straight from a loopback address (no proxy header)."""
    if any(environ.get(h) for h in PROXY_HEADERS):
        return False
    address = environ.get("REMOTE_ADDR")
    if not isinstance(address, str) or not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def _bearer(environ: Environ) -> bytes | None:
    header = environ.get("HTTP_AUTHORIZATION")
    if not isinstance(header, str):
        return None
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip().encode("latin-1", "replace")


class Access:
    """
    The authorization rules of one `StatusApp`.

    Args:
        token: The bearer token, or ``None``.
        authorize: ``authorize(environ) -> bool``, or ``None``.
    """

    __slots__ = ("_authorize", "_token", "configured")

    def __init__(self, token: str | None, authorize: Callable[[Any], object] | None) -> None:
        self._token = None if token is None else token.encode("ascii")
        self._authorize = authorize
        #: Whether a token or a callable is configured (then unauthorized requests are
        #: refused on everything but ``/healthz`` and the page's shell).
        self.configured = token is not None or authorize is not None

    def authorized(self, environ: Environ) -> bool:
        """Whether every configured check allows *environ* (``False`` if none is
        configured: nothing was authorized)."""
        if not self.configured:
            return False
        if self._token is not None:
            given = _bearer(environ)
            # compare_digest takes as long whatever the first differing byte: no timing
            # tells how much of a guess was right.
            if given is None or not hmac.compare_digest(given, self._token):
                return False
        if self._authorize is not None:
            try:
                if not self._authorize(environ):
                    return False
            except Exception:
                return False  # fail closed
        return True

    def decide(self, environ: Environ) -> tuple[bool, bool]:
        """(whether the request may read the tree: the API, ``/supervisors``; whether it
        may see crash messages and tracebacks), with one authorization check."""
        if self.configured:
            allowed = self.authorized(environ)
            return allowed, allowed
        return True, is_loopback_request(environ)


def _host_of(environ: Environ) -> str | None:
    host = environ.get("HTTP_HOST")
    if isinstance(host, str) and host:
        return host.strip().lower()
    name, port = environ.get("SERVER_NAME"), environ.get("SERVER_PORT")
    if isinstance(name, str) and name:
        return f"{name}:{port}".lower() if port else name.lower()
    return None


def _with_port(netloc: str, scheme: str) -> str:
    default = {"http": "80", "https": "443"}.get(scheme, "")
    if netloc.startswith("["):  # [::1]:8080
        return netloc if "]:" in netloc else f"{netloc}:{default}"
    return netloc if ":" in netloc else f"{netloc}:{default}"


def same_origin(environ: Environ) -> bool:
    """
    Whether a state-changing request may come from where it says: a present ``Origin``
    must name the request's ``Host`` (scheme default ports compared as such; ``null``
    never matches), and a present ``Sec-Fetch-Site`` must be ``same-origin``.
    """
    site = environ.get("HTTP_SEC_FETCH_SITE")
    if site is not None and site != "same-origin":
        return False
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return True  # not a browser's cross-site request (those carry Origin on POST)
    try:
        parts = urlsplit(str(origin).strip())
    except ValueError:
        return False
    host = _host_of(environ)
    if not parts.scheme or not parts.netloc or host is None:
        return False
    scheme = parts.scheme.lower()
    return _with_port(parts.netloc.lower(), scheme) == _with_port(host, scheme)


def error_type_of(error: str | None) -> str | None:
    """The type name of a rendered error (``"Type: message"`` or ``"Type"``)."""
    if error is None:
        return None
    return error.split(": ", 1)[0]


def message_of(error: str | None) -> str | None:
    """The message of a rendered error (``None`` if it has none)."""
    if error is None:
        return None
    parts = error.split(": ", 1)
    return parts[1] if len(parts) == 2 else None


def redacted_exit(record: ExitRecord) -> str:
    """An exit's error as text without its message: ``"Type [message hidden]"``."""
    if record.error is None:
        return "no error"
    if record.reason == "heartbeat_missed":
        return record.error  # greenkeep's own words
    kind = record.error.split(": ", 1)[0]
    return kind if message_of(record.error) is None else f"{kind} {HIDDEN}"


def redacted_error(error: BaseException | None) -> str | None:
    """A supervisor's `error` as text without any crash message in it."""
    if error is None:
        return None
    if isinstance(error, RestartIntensityExceeded):
        last = error.last_crash
        return (
            f"supervisor {error.supervisor!r} gave up: more than {error.max_restarts} "
            f"restart(s) within {error.period:g} s (last exit: child {last.child_id!r} "
            f"incarnation {last.incarnation}, {last.reason}: {redacted_exit(last)})"
        )
    return f"{type(error).__name__} {HIDDEN}"
