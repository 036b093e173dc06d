"""
Tests for rendering crashes into bounded, inert text (`greenkeep._render`), and for
`ExitRecord` never keeping the live exception.
"""

# The tests assert `expected == actual` (ruff's SIM300 calls that a Yoda condition).

from __future__ import annotations

import gc
import sys
import weakref

import pytest
from hypothesis import given

from greenkeep import _render
from greenkeep._exits import ExitKind, ExitRecord
from greenkeep._render import (
    MESSAGE_LIMIT,
    TRACEBACK_LIMIT,
    error_text,
    raise_site,
    render_traceback,
    safe_repr,
    safe_str,
    type_name,
)

from strategies import any_exits

#: Room for the "... [N more characters]" / "[N characters dropped]..." markers.
MARKER = 64
HUGE = 5_000_000


class Boom(Exception):
    """An exception type defined in Python, so it can be weakly referenced."""


class BadStr(Exception):
    """An exception whose __str__ raises."""

    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


class BadRepr(Exception):
    """An exception whose __repr__ raises."""

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ exploded")


class NotAStr(Exception):
    """An exception whose __str__ returns something that is not a str."""

    def __str__(self):  # type: ignore[override]
        return 42


def here() -> str:
    """The caller's "file:line", evaluated on the line that calls it."""
    frame = sys._getframe(1)
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def raise_boom() -> None:
    """Raise a Boom whose single argument is the raising line's "file:line"."""
    raise Boom(here())


def call_raise_boom() -> None:
    """Raise from one level deeper."""
    raise_boom()


def caught(fn, *args: object) -> BaseException:
    """Call *fn* and return what it raised."""
    try:
        fn(*args)
    except BaseException as e:
        return e
    raise AssertionError(f"{fn!r} did not raise")


def raise_it(exc: BaseException) -> None:
    """Raise *exc*, so that it gets a traceback."""
    raise exc


def recurse(n: int) -> int:
    """Recurse until the interpreter gives up."""
    return recurse(n + 1) + 1


class TestSafeText:
    def test_str_raises(self):
        """
        safe_str of an object whose __str__ raises names its type instead of raising.
        """
        assert f"<{__name__}.BadStr object (str() failed)>" == safe_str(BadStr())

    def test_repr_raises(self):
        """
        safe_repr of an object whose __repr__ raises names its type instead of raising.
        """
        assert f"<{__name__}.BadRepr object (repr() failed)>" == safe_repr(BadRepr())

    def test_str_not_a_str(self):
        """
        A __str__ that returns a non-str does not break safe_str.
        """
        text = safe_str(NotAStr())

        assert isinstance(text, str)
        assert "NotAStr" in text

    def test_huge_str_bounded(self):
        """
        A multi-megabyte message is cut to MESSAGE_LIMIT characters plus a short marker.
        """
        text = safe_str("x" * HUGE)

        assert "x" * MESSAGE_LIMIT + f"... [{HUGE - MESSAGE_LIMIT} more characters]" == text

    def test_huge_repr_bounded(self):
        """
        safe_repr keeps at most *limit* characters of a huge repr, plus a marker.
        """
        text = safe_repr("y" * HUGE, limit=50)

        assert text.startswith("'" + "y" * 49)
        assert len(text) <= 50 + MARKER

    def test_short_text_untouched(self):
        """
        Text within the limit is returned as is.
        """
        assert ("hello", "'hello'") == (safe_str("hello"), safe_repr("hello"))


class TestErrorText:
    def test_builtin(self):
        """
        A builtin exception renders as "Type: message" without a module.
        """
        assert "ValueError: bad input" == error_text(ValueError("bad input"))

    def test_custom_type_is_qualified(self):
        """
        A user exception is named with its module.
        """
        assert f"{__name__}.Boom: kaput" == error_text(Boom("kaput"))

    def test_empty_message(self):
        """
        An exception without a message renders as its type alone.
        """
        assert "RuntimeError" == error_text(RuntimeError())

    def test_str_raises(self):
        """
        An exception whose __str__ raises still renders, with its type.
        """
        assert f"{__name__}.BadStr: <{__name__}.BadStr object (str() failed)>" == error_text(
            BadStr("secret")
        )

    def test_huge_message_bounded(self):
        """
        A multi-megabyte message is bounded by MESSAGE_LIMIT (plus the type and a marker).
        """
        text = error_text(ValueError("z" * HUGE))

        assert text.startswith("ValueError: zzz")
        assert len(text) <= len("ValueError: ") + MESSAGE_LIMIT + MARKER

    @given(exc=any_exits.filter(lambda e: e is not None))
    def test_never_raises(self, exc):
        """
        Every kind of exit renders to non-empty text that starts with its type's name.
        """
        text = error_text(exc)

        assert text.startswith(type_name(exc))

    def test_type_name(self):
        """
        type_name omits "builtins." but keeps other modules.
        """
        assert ("KeyError", f"{__name__}.Boom") == (type_name(KeyError()), type_name(Boom()))


class TestRaiseSite:
    def test_points_at_raising_line(self):
        """
        raise_site is the file and line of the raise statement.
        """
        exc = caught(raise_boom)

        assert exc.args[0] == raise_site(exc)

    def test_innermost_frame(self):
        """
        Raised through several calls, raise_site still points where it was raised.
        """
        exc = caught(call_raise_boom)

        assert exc.args[0] == raise_site(exc)

    def test_reraise_keeps_site(self):
        """
        A bare re-raise in a caller keeps the original raise site.
        """

        def reraise() -> None:
            try:
                raise_boom()
            except Boom:
                raise

        exc = caught(reraise)

        assert exc.args[0] == raise_site(exc)

    def test_never_raised(self):
        """
        An exception that was never raised has no site.
        """
        assert "?" == raise_site(ValueError("never raised"))

    def test_recursion_error(self):
        """
        A RecursionError's site is inside the recursing function.
        """
        exc = caught(recurse, 0)

        assert raise_site(exc).startswith(f"{__file__}:")
        assert recurse.__code__.co_firstlineno + 2 == int(raise_site(exc).rsplit(":", 1)[1])


class TestRenderTraceback:
    def test_plain(self):
        """
        A raised exception renders as Python's usual traceback text.
        """
        exc = caught(raise_boom)

        text = render_traceback(exc)

        assert text.startswith("Traceback (most recent call last):")
        assert "raise Boom(here())" in text
        assert text.endswith(f"Boom: {exc.args[0]}\n")

    def test_str_raises(self):
        """
        An exception whose __str__ raises still gets a traceback.
        """
        exc = caught(raise_it, BadStr("x"))

        text = render_traceback(exc)

        assert text.startswith("Traceback (most recent call last):")
        assert "BadStr" in text

    def test_repr_raises(self):
        """
        An exception whose __repr__ raises still gets a traceback and its message.
        """
        exc = BadRepr("readable")

        text = render_traceback(exc)

        assert "BadRepr: readable" in text

    def test_huge_message_bounded(self):
        """
        A multi-megabyte message gives a traceback bounded by TRACEBACK_LIMIT.
        """
        exc = caught(raise_it, ValueError("q" * HUGE))

        text = render_traceback(exc)

        assert len(text) <= TRACEBACK_LIMIT + MARKER
        assert text.startswith("[")
        assert "characters dropped]...\n" in text[:40]
        assert text.endswith("qqq\n")

    def test_custom_limit_keeps_the_end(self):
        """
        A small limit drops the head and keeps the end, where the raise is.
        """
        exc = caught(call_raise_boom)

        text = render_traceback(exc, limit=120)

        assert len(text) <= 120 + MARKER
        assert "characters dropped]..." in text
        assert text.endswith(f"Boom: {exc.args[0]}\n")

    @pytest.mark.parametrize("link", ["__cause__", "__context__"])
    def test_two_exception_cycle(self, link):
        """
        A cycle of two exceptions through __cause__ or __context__ terminates, bounded, and
        shows both.
        """
        a, b = ValueError("first"), KeyError("second")
        setattr(a, link, b)
        setattr(b, link, a)

        text = render_traceback(a)

        assert "KeyError: 'second'" in text
        assert text.endswith("ValueError: first\n")
        assert len(text) <= TRACEBACK_LIMIT + MARKER

    def test_self_cycle(self):
        """
        An exception that is its own cause renders once and terminates.
        """
        exc = caught(raise_boom)
        exc.__cause__ = exc
        exc.__context__ = exc

        text = render_traceback(exc)

        assert 1 == text.count("Traceback (most recent call last):")

    def test_raised_cycle(self):
        """
        A raised cause/context loop, as built by real handlers, terminates.
        """
        try:
            try:
                raise_boom()
            except Boom as inner:
                raise RuntimeError("while handling") from inner
        except RuntimeError as outer:
            outer.__cause__.__context__ = outer
            text = render_traceback(outer)

        assert "Boom" in text
        assert text.endswith("RuntimeError: while handling\n")

    def test_long_chain_bounded(self):
        """
        A chain of thousands of chained exceptions is cut to TRACEBACK_LIMIT, keeping the
        newest.
        """
        exc = ValueError("0")
        for i in range(1, 3000):
            newer = ValueError(str(i))
            newer.__context__ = exc
            exc = newer

        text = render_traceback(exc)

        assert len(text) <= TRACEBACK_LIMIT + MARKER
        assert text.endswith("ValueError: 2999\n")

    def test_recursion_error(self):
        """
        A RecursionError with its ~1000-frame traceback renders bounded, raise site last.
        """
        exc = caught(recurse, 0)

        text = render_traceback(exc)

        assert len(text) <= TRACEBACK_LIMIT + MARKER
        assert "Previous line repeated" in text
        assert "return recurse(n + 1) + 1" in text
        assert text.endswith("RecursionError: maximum recursion depth exceeded\n")

    def test_formatting_and_fallback_fail(self, monkeypatch):
        """
        If formatting fails and so does the fallback (as on an exhausted stack), a fixed text
        comes back instead of an exception.
        """

        def fail(*args: object, **kwargs: object) -> str:
            raise RecursionError("no stack left")

        monkeypatch.setattr(_render.traceback, "format_exception", fail)
        monkeypatch.setattr(_render, "error_text", fail)

        assert "(traceback could not be formatted)\n" == render_traceback(ValueError("x"))

    def test_formatting_fails(self, monkeypatch):
        """
        If formatting fails, the error text comes back with a note.
        """

        def fail(*args: object, **kwargs: object) -> str:
            raise RuntimeError("formatting broke")

        monkeypatch.setattr(_render.traceback, "format_exception", fail)

        assert "ValueError: x\n(traceback could not be formatted)\n" == render_traceback(
            ValueError("x")
        )

    def test_never_raises_near_stack_limit(self):
        """
        Called at every depth up to the recursion limit, render_traceback returns text or
        fails only at the call itself, never from inside.
        """
        exc = caught(raise_boom)
        rendered: list[str] = []
        escaped: list[str] = []

        def descend() -> None:
            try:
                rendered.append(render_traceback(exc))
            except RecursionError as err:
                if err.__traceback__.tb_next is not None:
                    escaped.append(raise_site(err))
            try:
                descend()
            except RecursionError:
                return

        descend()

        assert [] == escaped
        assert {str} == {type(t) for t in rendered}


class TestExitRecordKeepsNoException:
    @staticmethod
    def record_and_ref(with_traceback: bool) -> tuple[ExitRecord, weakref.ref[BaseException]]:
        """Raise, record the exit, and return the record and a weak reference only."""
        exc = caught(call_raise_boom)
        ref = weakref.ref(exc)
        record = ExitRecord.of(
            "w", 1, ExitKind.ABNORMAL, exc, at=0.0, with_traceback=with_traceback
        )
        return record, ref

    @pytest.mark.parametrize("with_traceback", [False, True])
    def test_exception_is_freed(self, with_traceback):
        """
        Once the caller lets go, the exception is garbage: the record pins nothing of it.
        """
        record, ref = self.record_and_ref(with_traceback)

        gc.collect()

        assert ref() is None
        assert f"{__name__}.Boom: " == record.error[: len(f"{__name__}.Boom: ")]

    def test_control_kept_exception_stays(self):
        """
        The weak-reference check would see a leak: a kept exception stays alive.
        """
        exc = caught(call_raise_boom)
        ref = weakref.ref(exc)
        kept = [exc]
        del exc

        gc.collect()

        assert kept[0] is ref()

    def test_fields_are_plain_text(self):
        """
        Every field of a record is a str, number or None, never a live object.
        """
        record, _ = self.record_and_ref(with_traceback=True)

        assert {str, int, float} >= {type(v) for v in vars(record).values() if v is not None}
