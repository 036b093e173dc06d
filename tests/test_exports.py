"""greenkeep's public API: __all__ is explicit, sorted, complete and importable."""

from __future__ import annotations

import collections.abc
import copy
import dataclasses
import enum
import importlib
import inspect
import pickle
import sys
import traceback
import types
import typing

import pytest

import greenkeep
from greenkeep._exports import fix_module_metadata


def _isort_key(name: str) -> tuple[int, str]:
    # Constants, then classes, then everything else (ruff's RUF022 "isort-style" order).
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


def test_all_is_sorted_and_unique() -> None:
    """__all__ lists each name once, constants then classes then functions, each sorted."""
    assert len(set(greenkeep.__all__)) == len(greenkeep.__all__)
    assert sorted(greenkeep.__all__, key=_isort_key) == list(greenkeep.__all__)


def test_every_name_in_all_exists() -> None:
    """Every name in __all__ is an attribute of the package."""
    missing = [name for name in greenkeep.__all__ if not hasattr(greenkeep, name)]

    assert [] == missing


def test_every_public_name_is_in_all() -> None:
    """Nothing public is exported by accident: every public attribute is in __all__."""
    public = {
        name
        for name, value in vars(greenkeep).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    }

    assert public == set(greenkeep.__all__) - {"__version__"}


def test_errors_share_a_base() -> None:
    """Every exception greenkeep exports derives from GreenkeepError."""
    errors = [
        value
        for value in (getattr(greenkeep, n) for n in greenkeep.__all__)
        if isinstance(value, type) and issubclass(value, BaseException)
    ]

    assert len(errors) >= 10
    assert all(issubclass(e, greenkeep.GreenkeepError) for e in errors)


def test_version() -> None:
    """__version__ is a PEP 440 string."""
    assert greenkeep.__version__[0].isdigit()


# ---------------------------------------------------------------------- public module names

#: The public modules: each one's __all__ is its API.
PUBLIC_MODULES = (
    "greenkeep",
    "greenkeep.gunicorn",
    "greenkeep.prometheus",
    "greenkeep.runner",
    "greenkeep.testing",
    "greenkeep.wsgi",
)


def _exports() -> list[tuple[str, str, object]]:
    # (module, name, value) for every name in a public module's __all__.
    found = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        found.extend((module_name, name, getattr(module, name)) for name in module.__all__)
    return found


def _defined_here(value: object) -> bool:
    return (inspect.isclass(value) or inspect.isfunction(value)) and str(
        getattr(value, "__module__", "")
    ).startswith("greenkeep")


def _class_members(cls: type) -> list[tuple[str, object]]:
    # (attribute, function or class) defined in the body of *cls* (properties' accessors,
    # classmethods' and staticmethods' functions included).
    members = []
    for attr, value in vars(cls).items():
        if isinstance(value, property):
            members += [(attr, f) for f in (value.fget, value.fset, value.fdel) if f is not None]
        elif isinstance(value, (classmethod, staticmethod)):
            members.append((attr, value.__func__))
        elif inspect.isfunction(value) or inspect.isclass(value):
            members.append((attr, value))
    return members


def _resolve(module: str, qualname: str) -> tuple[object, ...]:
    # What module.qualname names, looking through class bodies as pickle does (a property
    # names its accessors, a classmethod or staticmethod its function); () if nothing.
    found: tuple[object, ...] = (sys.modules.get(module),)
    for part in qualname.split("."):
        value = vars(found[0]).get(part) if len(found) == 1 and found[0] is not None else None
        if isinstance(value, property):
            found = (value.fget, value.fset, value.fdel)
        elif isinstance(value, (classmethod, staticmethod)):
            found = (value.__func__,)
        else:
            found = () if value is None else (value,)
    return found


def test_exported_names_report_a_public_module() -> None:
    """Every exported class and function of greenkeep's reports the public module that
    exports it, never the private one it is defined in; nothing exported names a private
    module."""
    wrong = [
        (module, name, getattr(value, "__module__", None))
        for module, name, value in _exports()
        if str(getattr(value, "__module__", "")).startswith("greenkeep._")
        or (_defined_here(value) and value.__module__ != module)
    ]

    assert [] == wrong


def test_public_classes_members_report_their_class_module() -> None:
    """The methods, properties and nested classes defined in an exported class report the
    module their class reports (what a class inherits from a private base stays with that
    base, which is why `SupervisorBase` is exported)."""
    wrong = [
        f"{cls.__module__}.{cls.__qualname__}.{attr}: {member.__module__}"
        for _, _, cls in _exports()
        if inspect.isclass(cls) and _defined_here(cls)
        for attr, member in _class_members(cls)
        if str(member.__module__).startswith("greenkeep._")
    ]

    assert [] == wrong


def test_module_and_qualname_find_the_object() -> None:
    """For every exported class and function, and every member defined in an exported class,
    ``__module__`` + ``__qualname__`` names the object itself (pickle finds classes so)."""
    objects: list[object] = []
    for _, _, value in _exports():
        if _defined_here(value):
            objects.append(value)
            if inspect.isclass(value):
                objects += [m for _, m in _class_members(value)]
    wrong = [
        f"{o.__module__}.{o.__qualname__}"
        for o in objects
        if str(o.__module__).startswith("greenkeep")
        and o not in _resolve(o.__module__, o.__qualname__)
    ]

    assert len(objects) > 100
    assert [] == wrong


def test_errors_render_with_the_public_name() -> None:
    """An error prints as ``greenkeep.InvalidSpecError`` in reprs, tracebacks and greenkeep's
    own exit records."""
    error = greenkeep.InvalidSpecError([greenkeep.SpecProblem("child 'a'", "id", "a str", 1.5)])
    try:
        raise error
    except greenkeep.InvalidSpecError as caught:
        printed = traceback.format_exception(type(caught), caught, caught.__traceback__)
    record = greenkeep.ExitRecord.of("a", 1, greenkeep.ExitKind.ABNORMAL, error, 0.0)

    assert str(type(error)) == "<class 'greenkeep.InvalidSpecError'>"
    assert printed[-1].startswith("greenkeep.InvalidSpecError: child 'a': id must be a str")
    assert record.error is not None
    assert record.error.startswith("greenkeep.InvalidSpecError: ")
    assert "greenkeep._" not in "".join(printed[-1:]) + repr(greenkeep.Restart.PERMANENT)


def test_exported_classes_and_functions_pickle_by_reference() -> None:
    """Every exported class and function pickles (by its public name) back to itself."""
    wrong = [
        f"{module}.{name}"
        for module, name, value in _exports()
        if _defined_here(value) and pickle.loads(pickle.dumps(value)) is not value
    ]

    assert [] == wrong


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_errors_enums_and_unlimited_pickle_and_copy(protocol: int) -> None:
    """Errors, every member of every exported enum, and `UNLIMITED` survive pickling at every
    protocol and copying (members and `UNLIMITED` come back as themselves)."""
    record = greenkeep.ExitRecord("c", 3, "abnormal", "ValueError: boom", None, 1.5)
    errors = [
        greenkeep.InvalidSpecError([greenkeep.SpecProblem("child 'a'", "restart", "x", "y")]),
        greenkeep.RestartIntensityExceeded("s", 3, 5.0, 4, record),
        greenkeep.ChildNotFoundError("s", "x"),
    ]
    members = [
        member
        for value in (getattr(greenkeep, name) for name in greenkeep.__all__)
        if isinstance(value, type) and issubclass(value, enum.Enum)
        for member in value
    ]

    for error in errors:
        for copied in (pickle.loads(pickle.dumps(error, protocol)), copy.deepcopy(error)):
            assert (type(copied), str(copied)) == (type(error), str(error))
            assert vars(copied) == vars(error)
    assert len(members) >= 15
    for member in [*members, greenkeep.UNLIMITED]:
        assert pickle.loads(pickle.dumps(member, protocol)) is member
        assert copy.copy(member) is member
        assert copy.deepcopy(member) is member


def test_class_annotations_still_resolve() -> None:
    """`typing.get_type_hints` works on every exported class (its string annotations are
    evaluated where the class's module says it lives), and dataclasses keep their fields."""
    classes = [
        value for _, _, value in _exports() if inspect.isclass(value) and _defined_here(value)
    ]
    hints = {cls: typing.get_type_hints(cls) for cls in classes}

    assert hints[greenkeep.ChildSpec]["restart"] is greenkeep.Restart
    assert hints[greenkeep.StopReport]["unstopped"] == tuple[greenkeep.Unstopped, ...]
    assert [f.name for f in dataclasses.fields(greenkeep.ExitRecord)][:2] == [
        "child_id",
        "incarnation",
    ]
    assert dataclasses.replace(greenkeep.ChildCounts(1, 1, 0, 1), active=0).active == 0


# ---------------------------------------------------------------------- public signatures

#: Stand-ins for the names that public signatures import only for type checkers (typeshed's
#: WSGI types, which do not exist at run time), so that get_type_hints can evaluate them.
_CHECKER_ONLY: dict[str, object] = {
    "WSGIApplication": typing.Any,
    "WSGIEnvironment": typing.Any,
    "StartResponse": typing.Any,
}

#: Parameters of public callables that users never pass, with the private type they take.
_INTERNAL_PARAMETERS = {
    # Handles come from WorkerPool.worker(); the constructor takes the pool's own record.
    ("greenkeep.WorkerHandle.__init__", "record"),
    # The shared base is built only by Supervisor and WorkerPool, from their own config.
    ("greenkeep.SupervisorBase.__init__", "config"),
}

#: The dunder methods whose signatures users see (the others are Python's protocols).
_PUBLIC_DUNDERS = frozenset({"__init__", "__new__", "__call__", "__enter__", "__exit__"})


def _public_callables() -> list[tuple[str, object]]:
    # (where, function or class) for every exported function, every exported class (its
    # annotations), and every public method, property and constructor a user can reach on an
    # exported class, inherited ones included.
    found: list[tuple[str, object]] = []
    for module, name, value in _exports():
        where = f"{module}.{name}"
        if inspect.isfunction(value):
            found.append((where, value))
        if not (inspect.isclass(value) and _defined_here(value)):
            continue
        found.append((where, value))
        members: dict[str, object] = {}
        for klass in reversed(value.__mro__):
            if str(klass.__module__).startswith("greenkeep"):
                members.update(_class_members(klass))
        found += [
            (f"{where}.{attr}", member)
            for attr, member in members.items()
            if (not attr.startswith("_") or attr in _PUBLIC_DUNDERS) and inspect.isfunction(member)
        ]
    return found


def _named_classes(hint: object) -> typing.Iterator[type]:
    # Every class an evaluated annotation names: in unions, generics, Callable's argument
    # lists, a TypeVar's bound and constraints (a Literal's values are values, not classes).
    if isinstance(hint, (list, tuple)):
        for item in hint:
            yield from _named_classes(item)
    elif isinstance(hint, typing.TypeVar):
        yield from _named_classes((hint.__bound__, *hint.__constraints__))
    elif typing.get_origin(hint) is not None:
        origin = typing.get_origin(hint)
        if isinstance(origin, type):
            yield origin
        if origin is not typing.Literal:
            yield from _named_classes(typing.get_args(hint))
    elif isinstance(hint, type):
        yield hint


def test_public_signatures_name_only_public_types() -> None:
    """No annotation of a public callable, or of a public class's attributes, names a class
    whose module is private (what mypy's messages and get_type_hints show users)."""
    private = []
    for where, obj in _public_callables():
        hints = typing.get_type_hints(obj, localns=_CHECKER_ONLY)
        for key, hint in hints.items():
            if key.startswith("_") or (where, key) in _INTERNAL_PARAMETERS:
                continue
            private += [
                f"{where}: {key}: {cls.__module__}.{cls.__qualname__}"
                for cls in _named_classes(hint)
                if cls.__module__.startswith("greenkeep._")
            ]

    assert len(_public_callables()) > 150
    assert [] == private


def test_internal_parameters_are_still_there() -> None:
    """The exceptions above name parameters that exist (a renamed one must leave the list)."""
    callables = dict(_public_callables())

    for where, parameter in _INTERNAL_PARAMETERS:
        assert parameter in inspect.signature(callables[where]).parameters


# ---------------------------------------------------------------------- choices as Literal types

#: Each exported Literal alias and the enum whose values it spells out.
CHOICES = [
    (greenkeep.StrategyValue, greenkeep.Strategy),
    (greenkeep.RestartValue, greenkeep.Restart),
    (greenkeep.ShutdownValue, greenkeep.Shutdown),
    (greenkeep.AutoShutdownValue, greenkeep.AutoShutdown),
    (greenkeep.RestartModeValue, greenkeep.RestartMode),
]


@pytest.mark.parametrize(("literal", "choices"), CHOICES, ids=[c.__name__ for _, c in CHOICES])
def test_literal_values_are_the_enum_values(literal: object, choices: type[enum.Enum]) -> None:
    """Each Literal alias lists exactly its enum's values, in order: they cannot drift."""
    assert typing.get_origin(literal) is typing.Literal
    assert typing.get_args(literal) == tuple(member.value for member in choices)


def test_every_exported_choice_enum_has_a_literal() -> None:
    """Every exported enum that a constructor accepts as a string has its alias above."""
    accepted = {
        cls
        for where, obj in _public_callables()
        if where.endswith(".__init__")
        for hint in typing.get_type_hints(obj, localns=_CHECKER_ONLY).values()
        for cls in _named_classes(hint)
        if issubclass(cls, enum.Enum)
    }

    assert accepted == {choices for _, choices in CHOICES}


@pytest.mark.parametrize(
    ("callable_", "parameter", "expected"),
    [
        (greenkeep.Supervisor, "strategy", greenkeep.Strategy | greenkeep.StrategyValue),
        (
            greenkeep.Supervisor,
            "auto_shutdown",
            greenkeep.AutoShutdown | greenkeep.AutoShutdownValue,
        ),
        (greenkeep.ChildSpec, "restart", greenkeep.Restart | greenkeep.RestartValue),
        (
            greenkeep.ChildSpec,
            "shutdown",
            float | greenkeep.Shutdown | greenkeep.ShutdownValue | None,
        ),
        (greenkeep.WorkerPool, "mode", greenkeep.RestartMode | greenkeep.RestartModeValue),
        (greenkeep.WorkerPool, "restart", greenkeep.Restart | greenkeep.RestartValue),
        (
            greenkeep.WorkerPool,
            "shutdown",
            float | greenkeep.Shutdown | greenkeep.ShutdownValue | None,
        ),
    ],
)
def test_choices_are_typed_as_enum_or_literal(
    callable_: type, parameter: str, expected: object
) -> None:
    """A choice is typed as its enum or one of its values (not any str), so a typo is a type
    error; *shutdown* also takes seconds and None."""
    assert typing.get_type_hints(callable_.__init__)[parameter] == expected


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: greenkeep.Supervisor(strategy="one_for_on"), "strategy"),
        (lambda: greenkeep.Supervisor(auto_shutdown="any"), "auto_shutdown"),
        (lambda: greenkeep.ChildSpec("a", print, restart="permanant"), "restart"),
        (lambda: greenkeep.ChildSpec("a", print, shutdown="brutally"), "shutdown"),
        (lambda: greenkeep.WorkerPool(print, 1, mode="fressh"), "mode"),
    ],
    ids=["strategy", "auto_shutdown", "restart", "shutdown", "mode"],
)
def test_a_typo_is_still_refused_at_run_time(
    build: typing.Callable[[], object], field: str
) -> None:
    """Python does not enforce Literal types: the run-time check of the strings stays."""
    with pytest.raises(greenkeep.InvalidSpecError) as caught:
        build()

    assert caught.value.field == field


# ---------------------------------------------------------------------- the fixup's edges


@pytest.fixture
def private_module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A private greenkeep module (``greenkeep._sample``) with a few definitions."""
    module = types.ModuleType("greenkeep._sample")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    source = """
from __future__ import annotations
import enum
from dataclasses import dataclass
from collections.abc import Callable


class _Base:
    def inherited(self) -> None: ...


class Thing(_Base):
    size: Callable[[], int] | None

    def method(self) -> Thing:
        return self

    @property
    def prop(self) -> int:
        return 1

    @classmethod
    def make(cls) -> Thing:
        return cls()

    class Inner:
        def deep(self) -> None: ...


class _Hidden:
    def method(self) -> None: ...


@dataclass(frozen=True)
class Record:
    value: int


class Colour(str, enum.Enum):
    RED = "red"


def helper() -> None: ...


CONSTANT = 3
"""
    exec(compile(source, "<greenkeep._sample>", "exec"), vars(module))
    return module


def _public_namespace(private: types.ModuleType, **exports: object) -> dict[str, object]:
    namespace: dict[str, object] = {"__name__": "greenkeep.sample", "__all__": list(exports)}
    namespace.update(exports)
    return namespace


def test_fixup_moves_classes_members_and_functions(private_module: types.ModuleType) -> None:
    """Classes and functions move with the members defined in their bodies; inherited
    members, constants and unexported classes stay; annotations still resolve."""
    m = private_module
    namespace = _public_namespace(
        m, Thing=m.Thing, Record=m.Record, Colour=m.Colour, helper=m.helper, CONSTANT=3
    )

    fix_module_metadata(namespace)

    moved = [
        m.Thing,
        m.Thing.method,
        m.Thing.prop.fget,
        m.Thing.make.__func__,
        m.Thing.Inner,
        m.Thing.Inner.deep,
        m.Record,
        m.Record.__init__,
        m.Colour,
        m.helper,
    ]
    assert {o.__module__ for o in moved} == {"greenkeep.sample"}
    assert m.Thing.Inner.deep.__qualname__ == "Thing.Inner.deep"
    assert m._Base.inherited.__module__ == "greenkeep._sample"
    assert m._Hidden.method.__module__ == "greenkeep._sample"
    assert typing.get_type_hints(m.Thing)["size"] == collections.abc.Callable[[], int] | None
    assert typing.get_type_hints(m.Record) == {"value": int}


def test_fixup_renames_an_alias_and_is_idempotent(private_module: types.ModuleType) -> None:
    """An object exported under another name takes it (members too); a second call, or a
    second name for the same object, changes nothing."""
    m = private_module
    namespace = _public_namespace(m, Widget=m.Thing, Gadget=m.Thing)

    fix_module_metadata(namespace)
    fix_module_metadata(namespace)

    assert (m.Thing.__name__, m.Thing.__qualname__) == ("Widget", "Widget")
    assert m.Thing.method.__qualname__ == "Widget.method"
    assert m.Thing.Inner.deep.__qualname__ == "Widget.Inner.deep"


def test_fixup_leaves_unresolvable_annotations(private_module: types.ModuleType) -> None:
    """A class whose annotations name what only a type checker imports keeps them as strings
    (get_type_hints fails on it before and after, as it would anyway)."""
    m = private_module
    exec("from __future__ import annotations\nclass Checked:\n    x: NotImported\n", vars(m))
    namespace = _public_namespace(m, Checked=m.Checked)

    fix_module_metadata(namespace)

    assert m.Checked.__module__ == "greenkeep.sample"
    assert m.Checked.__annotations__ == {"x": "NotImported"}


def test_the_methods_of_supervisors_are_defined_on_public_classes() -> None:
    """A type checker names the class that defines a method (``Argument "timeout" to
    "stop" of "..."``): every public method of `Supervisor`, `WorkerPool` and `WorkerHandle`
    is defined on a class that greenkeep exports (it said ``of "Manager"``)."""
    exported = {id(getattr(greenkeep, name)) for name in greenkeep.__all__}
    wrong = [
        f"{cls.__name__}.{name}: defined on {owner.__module__}.{owner.__qualname__}"
        for cls in (greenkeep.Supervisor, greenkeep.WorkerPool, greenkeep.WorkerHandle)
        for name in dir(cls)
        if not name.startswith("_")
        for owner in [next(c for c in cls.__mro__ if name in vars(c))]
        if id(owner) not in exported
    ]

    assert [] == wrong
