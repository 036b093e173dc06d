"""
The checks behind every "must be X (got Y)" message: numbers of seconds, choices among an
enum's values, callables. Pure; each check appends a `SpecProblem` to a list (so a
constructor reports every bad argument at once) or, for a single argument of a method,
raises `InvalidArgumentError`.
"""

from __future__ import annotations

import enum
import inspect
import math
from collections.abc import Callable
from typing import TypeVar

from greenkeep._errors import InvalidArgumentError, SpecProblem

__all__ = [
    "ID_ALLOWED",
    "LOGGER_ALLOWED",
    "check_child_id",
    "check_choice",
    "check_logger",
    "check_seconds",
    "check_timeout",
    "is_child_id",
    "is_logger",
    "is_number",
    "required_arguments",
    "seconds_allowed",
]

#: What a child id may be, in words.
ID_ALLOWED = "a str or an int (not a bool)"

E = TypeVar("E", bound=enum.Enum)


def is_number(value: object) -> bool:
    """An ``int`` or ``float`` that is not a ``bool``."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_child_id(value: object) -> bool:
    """A ``str`` or an ``int`` that is not a ``bool``: what can be a child's id. Ids match
    by kind and value: ``1``, ``True`` and ``1.0`` are three different things, and only the
    first can be an id (an ``IntEnum`` or ``StrEnum`` member is the int or str it equals)."""
    return isinstance(value, (str, int)) and not isinstance(value, bool)


def check_child_id(owner: str, value: object, field: str = "child_id") -> None:
    """
    Check the id a method looks a child up by, before anything is looked at.

    Raises:
        InvalidArgumentError: *value* cannot be an id (not "not found": no child is
            touched).
    """
    if not is_child_id(value):
        raise InvalidArgumentError(owner, field, ID_ALLOWED, value)


def is_logger(value: object) -> bool:
    """``None`` or something a structlog logger's methods can be called on (``bind``,
    ``info``, ``error``, ``critical``)."""
    return value is None or all(
        callable(getattr(value, m, None)) for m in ("bind", "info", "error", "critical")
    )


#: What a ``logger`` argument accepts, in words.
LOGGER_ALLOWED = "None or a structlog logger"


def check_logger(owner: str, value: object) -> None:
    """
    Check a method's or constructor's ``logger`` argument (see `is_logger`).

    Raises:
        InvalidArgumentError: Naming *owner*, ``logger``, what is allowed and what arrived.
    """
    if not is_logger(value):
        raise InvalidArgumentError(owner, "logger", LOGGER_ALLOWED, value)


def required_arguments(factory: Callable[..., object]) -> list[str]:
    """The names of *factory*'s parameters that a call without arguments leaves unfilled.
    Empty for a callable whose signature cannot be read (a builtin without one): calling it
    is then the only test."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except Exception:
        return []
    variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [p.name for p in parameters if p.default is p.empty and p.kind not in variadic]


def seconds_allowed(*, none: bool, positive: bool, finite: bool) -> str:
    """The words for what a seconds argument accepts, e.g. ``"None or a number of seconds
    >= 0"``."""
    text = f"a {'finite ' if finite else ''}number of seconds {'> 0' if positive else '>= 0'}"
    return f"None or {text}" if none else text


def check_seconds(
    owner: str,
    field: str,
    value: object,
    problems: list[SpecProblem],
    *,
    none: bool = True,
    positive: bool = False,
    finite: bool = True,
) -> float | None:
    """
    Check a number of seconds; return it as a float (``None`` for an allowed ``None``).

    An invalid value appends one problem to *problems* and returns ``None``. NaN is never
    valid; infinity only when *finite* is false.
    """
    if value is None and none:
        return None
    if is_number(value):
        seconds = float(value)  # type: ignore[arg-type]
        if (
            not math.isnan(seconds)
            and (seconds > 0 if positive else seconds >= 0)
            and (not finite or math.isfinite(seconds))
        ):
            return seconds
    allowed = seconds_allowed(none=none, positive=positive, finite=finite)
    problems.append(SpecProblem(owner, field, allowed, value))
    return None


def check_timeout(owner: str, timeout: object, field: str = "timeout") -> float | None:
    """
    Check a method's ``timeout`` argument (called *field*): ``None`` or seconds >= 0
    (infinity allowed).

    Raises:
        InvalidArgumentError: Naming *owner*, the argument and what arrived.
    """
    problems: list[SpecProblem] = []
    seconds = check_seconds(owner, field, timeout, problems, finite=False)
    if problems:
        problem = problems[0]
        raise InvalidArgumentError(owner, problem.field, problem.allowed, problem.got)
    return seconds


def check_choice(
    choices: type[E], value: object, owner: str, field: str, problems: list[SpecProblem]
) -> E | None:
    """A member of the enum *choices*, given as itself or its value; else a problem."""
    if isinstance(value, choices):
        return value
    for member in choices:
        if type(value) is str and member.value == value:
            return member
    allowed = "one of " + ", ".join(repr(member.value) for member in choices)
    problems.append(SpecProblem(owner, field, allowed, value))
    return None
