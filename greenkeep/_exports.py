"""
Public names for what public modules export: `fix_module_metadata` makes a class or function
defined in a private module (``greenkeep._errors``) report the public module that exports it
(``greenkeep``), so that tracebacks, reprs and documentation show ``greenkeep.InvalidSpecError``
and never the private module it happens to live in.

The private modules keep their names too: ``greenkeep._errors.InvalidSpecError`` is the same
object, so pickles made by older versions, which name the private module, still load.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from types import FunctionType

__all__ = ["fix_module_metadata"]

#: The modules whose objects are moved: greenkeep's private modules.
_PRIVATE = "greenkeep._"

_Movable = type | FunctionType


def fix_module_metadata(namespace: Mapping[str, object]) -> None:
    """
    For every name in the ``__all__`` of a public module's *namespace* (its ``globals()``)
    that is a class or function defined in a greenkeep private module, set ``__module__`` to
    the public module's ``__name__``; and so for the functions, properties' accessors,
    class and static methods and nested classes defined in the body of such a class.

    At the edges:

    - Only objects of a private greenkeep module are moved. Everything else (constants,
      instances, ``typing`` aliases, classes of other packages, objects already public) is
      left alone, and so is what a class inherits from a base that is not exported itself:
      a private base's ``start`` stays in the private module, where its class is.
    - An object exported under another name than its own gets that name too (``__name__``
      and ``__qualname__``, its members' qualified names with it), so that ``module.qualname``
      finds it again: pickle finds classes (exceptions, enums) by that path.
    - A class's own annotations are resolved first (as ``typing.get_type_hints`` does), since
      ``get_type_hints`` evaluates a class's string annotations in the module that
      ``__module__`` names, which does not hold the private module's imports. Annotations
      that do not resolve (names that only a type checker imports) stay strings.
    - An object exported twice is moved once, under its first name. A second call changes
      nothing.
    """
    module = str(namespace["__name__"])
    names = typing.cast("Iterable[str]", namespace["__all__"])
    seen: set[int] = set()
    for name in names:
        value = namespace[name]
        if isinstance(value, (type, FunctionType)) and _is_private(value):
            _move(value, module, name, seen)


def _is_private(obj: _Movable) -> bool:
    module = getattr(obj, "__module__", None)
    return isinstance(module, str) and module.startswith(_PRIVATE)


def _move(obj: _Movable, module: str, qualname: str, seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    old_module = obj.__module__
    old_qualname = obj.__qualname__
    if isinstance(obj, type):
        _resolve_annotations(obj)  # while __module__ still names the module that has them
    obj.__module__ = module
    if qualname != old_qualname:
        obj.__qualname__ = qualname
        obj.__name__ = qualname.rpartition(".")[2]
    if not isinstance(obj, type):
        return
    prefix = old_qualname + "."
    for attr in list(vars(obj).values()):
        for member in _members(attr):
            if member.__module__ == old_module and member.__qualname__.startswith(prefix):
                _move(member, module, qualname + member.__qualname__[len(old_qualname) :], seen)


def _members(attr: object) -> list[_Movable]:
    # The classes and functions a class attribute carries: itself, a property's accessors,
    # a classmethod's or staticmethod's function.
    if isinstance(attr, property):
        found: list[object] = [attr.fget, attr.fset, attr.fdel]
    elif isinstance(attr, (classmethod, staticmethod)):
        found = [attr.__func__]
    else:
        found = [attr]
    return [item for item in found if isinstance(item, (type, FunctionType))]


def _resolve_annotations(cls: type) -> None:
    own = vars(cls).get("__annotations__")
    if not isinstance(own, dict) or not any(isinstance(v, str) for v in own.values()):
        return
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except Exception:  # a name only a type checker imports (or a base's): keep the strings
        return
    cls.__annotations__ = {key: hints.get(key, value) for key, value in own.items()}
