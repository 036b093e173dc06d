"""
Turning live exceptions into bounded, inert text.

greenkeep keeps what a crash *said*, never the exception object: a live exception holds its
traceback, the traceback holds frames, and the frames hold everything the dead incarnation
referenced. Every function here is total: it never raises, whatever the exception's
``__str__``/``__repr__`` do, however long its message, however its ``__cause__`` chain loops.
"""

from __future__ import annotations

import os
import traceback
from types import TracebackType

__all__ = [
    "MESSAGE_LIMIT",
    "TRACEBACK_LIMIT",
    "error_text",
    "raise_site",
    "render_traceback",
    "safe_repr",
    "safe_str",
    "type_name",
    "user_frames",
]

#: Longest message kept from an exception, in characters.
MESSAGE_LIMIT = 2_000
#: Longest rendered traceback kept, in characters (the end, where the raise is, is kept).
TRACEBACK_LIMIT = 16_000

#: Where greenkeep's own modules are: their frames lead a worker's traceback.
_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def safe_repr(value: object, limit: int = 200) -> str:
    """`repr` that never raises and never returns more than about *limit* characters."""
    try:
        text = repr(value)
    except BaseException:
        return f"<{type_name(value)} object (repr() failed)>"
    return _clip(text, limit)


def safe_str(value: object, limit: int = MESSAGE_LIMIT) -> str:
    """`str` that never raises and never returns more than about *limit* characters."""
    try:
        text = str(value)
    except BaseException:
        return f"<{type_name(value)} object (str() failed)>"
    if type(text) is not str:  # a __str__ returning a str subclass with odd behaviour
        return safe_repr(value, limit)
    return _clip(text, limit)


def type_name(value: object) -> str:
    """The qualified name of *value*'s type, module-prefixed unless it is a builtin."""
    cls = type(value)
    module = getattr(cls, "__module__", None)
    qualname = getattr(cls, "__qualname__", cls.__name__)
    if module in (None, "builtins"):
        return str(qualname)
    return f"{module}.{qualname}"


def error_text(exc: BaseException) -> str:
    """``"Type: message"`` (or just ``"Type"`` for an empty message), bounded."""
    message = safe_str(exc)
    name = type_name(exc)
    return f"{name}: {message}" if message else name


def raise_site(exc: BaseException) -> str:
    """
    ``"file:line"`` of the frame that raised *exc* (the innermost traceback entry), or
    ``"?"`` if it has no traceback.
    """
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


def user_frames(tb: TracebackType | None) -> TracebackType | None:
    """*tb* from its first frame outside greenkeep: the worker's own frame, which caught
    the exception, leads every worker's traceback and says nothing about the crash. *tb*
    itself if every frame is greenkeep's (a crash of greenkeep's own)."""
    first = tb
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_PACKAGE):
        tb = tb.tb_next
    return first if tb is None else tb


def render_traceback(exc: BaseException, limit: int = TRACEBACK_LIMIT) -> str:
    """
    The formatted traceback of *exc*, its causes and contexts included, from the user's
    code on (greenkeep's leading frames are dropped: `user_frames`; *exc* is not changed),
    bounded to *limit* characters (the head is dropped, so the raise site stays visible).
    """
    try:
        text = "".join(traceback.format_exception(type(exc), exc, user_frames(exc.__traceback__)))
    except BaseException:
        try:
            text = error_text(exc) + "\n(traceback could not be formatted)\n"
        except BaseException:
            text = "(traceback could not be formatted)\n"
    if len(text) > limit:
        text = f"[{len(text) - limit} characters dropped]...\n{text[-limit:]}"
    return text
