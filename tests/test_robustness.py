"""
Crashes that are awkward to report are handled like any other crash, whatever renders
the logs, and a crashed incarnation's memory is freed.
"""

from __future__ import annotations

import gc
import io
import json
import sys
import weakref
from collections.abc import Callable

import gevent
import gevent.event
import pytest
import structlog

import greenkeep
from greenkeep import ChildSpec, Supervisor

from _events import DEADLINE, Events


class BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


class BadRepr(Exception):
    def __repr__(self) -> str:
        raise RuntimeError("__repr__ is broken")

    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken too")


def huge() -> BaseException:
    return ValueError("x" * 5_000_000)


def cyclic() -> BaseException:
    a = ValueError("a")
    b = KeyError("b")
    a.__cause__ = b
    b.__context__ = a
    b.__cause__ = a
    return a


def recurse(n: int = 0) -> int:
    return recurse(n + 1) + 1


def recursion() -> BaseException:
    try:
        recurse()
    except RecursionError as exc:
        return exc
    raise AssertionError("unreachable")


CASES: dict[str, Callable[[], BaseException]] = {
    "__str__ raises": lambda: BadStr(),
    "__repr__ and __str__ raise": lambda: BadRepr(),
    "5 MB message": huge,
    "cyclic cause/context": cyclic,
}


def crash_once(make: Callable[[], BaseException] | None) -> Callable[[], None]:
    def target() -> None:
        info = greenkeep.current()
        assert info is not None
        gevent.sleep(0)
        if info.incarnation == 1:
            if make is None:
                recurse()
            raise make()
        gevent.event.Event().wait()

    return target


def json_logging(buf: io.StringIO) -> None:
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.WriteLoggerFactory(file=buf),
    )


def console_logging(buf: io.StringIO) -> None:
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=buf))


@pytest.mark.parametrize("configure", [json_logging, console_logging], ids=["json", "console"])
@pytest.mark.parametrize("case", [*sorted(CASES), "RecursionError"])
def test_awkward_crash_is_handled_like_any_crash(
    case: str, configure: Callable[[io.StringIO], None]
) -> None:
    """The child is reported once as an abnormal exit and restarted; rendering the log line
    neither fails nor takes the supervisor down."""
    buf = io.StringIO()
    configure(buf)
    events = Events()
    make = None if case == "RecursionError" else CASES[case]
    sup = Supervisor([ChildSpec("c", crash_once(make))], subscribers=[events])
    sup.start()

    exited = events.wait("child_exited", child_id="c")
    events.wait("child_restarted", child_id="c")
    sup.stop()

    assert ("abnormal", "restart") == (exited["reason"], exited["action"])
    assert len(exited["error"]) < 3_000
    assert [] == events.of("event_delivery_failed")
    assert "child_exited" in buf.getvalue()
    if configure is json_logging:
        lines = [json.loads(line) for line in buf.getvalue().splitlines()]
        assert "child_restarted" in [line["event"] for line in lines]


def test_recursion_error_record_names_it() -> None:
    """A RecursionError is recorded by name, with a bounded traceback."""
    events = Events()
    sup = Supervisor([ChildSpec("c", crash_once(None))], subscribers=[events], max_restarts=0)
    sup.start()

    with pytest.raises(greenkeep.RestartIntensityExceeded) as info:
        sup.join(timeout=DEADLINE)

    record = info.value.last_crash
    assert (record.error or "").startswith("RecursionError: maximum recursion depth")
    assert len(record.traceback or "") <= 20_000
    assert sys.getrecursionlimit() == sys.getrecursionlimit()


def test_crashed_incarnation_memory_is_freed() -> None:
    """Nothing greenkeep keeps pins the frames of a crashed incarnation."""
    refs: list[weakref.ref[object]] = []

    class Payload:
        pass

    def target() -> None:
        info = greenkeep.current()
        assert info is not None
        gevent.sleep(0)
        if info.incarnation <= 3:
            payload = Payload()  # held by this frame, which the traceback references
            refs.append(weakref.ref(payload))
            raise ValueError("crash", id(payload))
        gevent.event.Event().wait()

    events = Events()
    sup = Supervisor([ChildSpec("c", target)], subscribers=[events], max_restarts=5)
    sup.start()
    for incarnation in (2, 3, 4):
        events.wait("child_restarted", child_id="c", incarnation=incarnation)
    gc.collect()

    assert 3 == len(refs)
    assert [None, None, None] == [ref() for ref in refs]
    record = sup.which_children()[0].last_exit
    assert record is not None and not hasattr(record, "__traceback__")
    sup.stop()
