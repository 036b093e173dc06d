"""
The optional C speedup (`greenkeep._speedups`): its crash-site check agrees with the
Python definition (`greenkeep._storm.crash_site`), and a pool's storm accounting comes out
the same with it and without it (`greenkeep._worker._same_site` set to ``None``: the
pure-Python path, as where the speedup could not be built).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from types import CodeType
from typing import Any

import gevent
import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

import greenkeep
import greenkeep._worker
from greenkeep import WorkerPool
from greenkeep._storm import crash_site

from _events import DEADLINE, wait_until

try:
    from greenkeep import _speedups
except ImportError:  # not built here (no C compiler at install time)
    _speedups = None  # type: ignore[assignment]

#: Set by .ci/run: there the speedup must have been built.
REQUIRED = bool(os.environ.get("GREENKEEP_REQUIRE_SPEEDUPS"))

compiled = pytest.mark.skipif(
    _speedups is None and not REQUIRED, reason="the C speedup is not built here"
)


class Odd(Exception):
    pass


def _deeper(depth: int, site: int, kind: type[Exception]) -> None:
    if depth > 1:
        _deeper(depth - 1, site, kind)
    elif site == 0:
        raise kind("site 0")
    else:
        raise kind("site 1")


def _other_function(kind: type[Exception]) -> None:
    raise kind("elsewhere")


def _raised(depth: int, site: int, kind: type[Exception]) -> Exception:
    try:
        if site == 2:
            _other_function(kind)
        else:
            _deeper(depth, site, kind)
    except Exception as exc:
        return exc
    raise AssertionError("nothing raised")


def _reference(exc: BaseException, code: Any, lasti: Any, kind: Any) -> bool:
    # The definition: the exception's exact type and its innermost traceback entry.
    (exc_type, code_id, exc_lasti), exc_code = crash_site(exc)
    return (
        exc_type is kind
        and exc.__traceback__ is not None
        and exc_code is code
        and code_id == id(code)
        and type(lasti) is int
        and exc_lasti == lasti
    )


@compiled
def test_the_speedup_is_built_where_it_must_be() -> None:
    """Where .ci/run runs (a C compiler at hand) the speedup is built, and the worker uses
    it."""
    assert _speedups is not None
    assert greenkeep._worker._same_site is _speedups.same_site


crashes = st.tuples(
    st.integers(1, 4), st.integers(0, 2), st.sampled_from([ValueError, KeyError, Odd])
)


@compiled
@given(crashes, crashes, st.booleans())
def test_same_site_agrees_with_the_python_definition(
    crash: tuple[int, int, type[Exception]],
    other: tuple[int, int, type[Exception]],
    shift: bool,
) -> None:
    """For crashes at different depths, sites, functions and types: the compiled check of
    one crash against another's site says what the Python definition says."""
    exc = _raised(*crash)
    (kind, _, lasti), code = crash_site(_raised(*other))
    candidate = lasti + 2 if shift else lasti
    assert code is not None
    assert _reference(exc, code, candidate, kind) == _speedups.same_site(
        exc, code, candidate, kind
    )


@compiled
def test_same_site_on_edge_inputs() -> None:
    """No traceback, a subclass, a lasti that is not an int: False; not an exception, or a
    wrong number of arguments: a TypeError that says so."""
    exc = _raised(1, 0, ValueError)
    (kind, _, lasti), code = crash_site(exc)
    assert code is not None
    assert _speedups.same_site(exc, code, lasti, kind)
    assert not _speedups.same_site(ValueError("never raised"), code, lasti, ValueError)
    assert not _speedups.same_site(exc, code, lasti, Exception)  # exactly the type
    assert not _speedups.same_site(exc, code, float(lasti), kind)
    assert not _speedups.same_site(exc, code, 2**80, kind)
    with pytest.raises(TypeError, match="'exc' must be an exception instance, not str"):
        _speedups.same_site("boom", code, lasti, kind)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"takes 4 arguments .*, 3 given"):
        _speedups.same_site(exc, code, lasti)  # type: ignore[call-arg]


@pytest.fixture(params=["compiled", "python"])
def site_check(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each worker-side test once with the compiled check, once with the Python one."""
    if request.param == "python":
        monkeypatch.setattr(greenkeep._worker, "_same_site", None)
    elif greenkeep._worker._same_site is None:
        if REQUIRED:
            pytest.fail("GREENKEEP_REQUIRE_SPEEDUPS is set but the C speedup is not built")
        pytest.skip("the C speedup is not built here")
    return str(request.param)


def _site_a() -> None:
    raise ValueError("site a")


def _site_b() -> None:
    raise ValueError("site b")  # the same type as site a, another place


def _site_c() -> None:
    raise KeyError("site c")


SITES: list[Callable[[], None]] = [_site_a, _site_a, _site_b, _site_a, _site_c, _site_b]


def _line(site: Callable[[], None]) -> int:
    code: CodeType = site.__code__
    return code.co_firstlineno + 1


@pytest.mark.parametrize("mode", ["fresh", "reuse"])
def test_storm_totals_are_exact_per_kind_with_either_check(site_check: str, mode: str) -> None:
    """200 workers, each crashing six times at sites that change from one incarnation to
    the next (two sites of one type, one of another): every storm's total is exactly the
    number of crashes of its kind, so no crash was counted in another kind's storm."""
    workers = 200

    def target(worker_id: int) -> None:
        info = greenkeep.current()
        assert info is not None
        if info.incarnation <= len(SITES):
            SITES[info.incarnation - 1]()
        gevent.sleep(DEADLINE)  # done crashing: wait to be stopped

    with capture_logs() as logs:
        pool = WorkerPool(target, workers, mode=mode, max_restarts=greenkeep.UNLIMITED)
        pool.start()
        wait_until(
            lambda: sum(w.restarts for w in pool.which_children()) >= workers * len(SITES),
            DEADLINE,
        )
        pool.stop()

    expected = Counter(
        (("KeyError" if site is _site_c else "ValueError"), _line(site)) for site in SITES
    )
    totals = {
        (e["error_type"], int(e["location"].rsplit(":", 1)[1])): e["total"]
        for e in logs
        if e["event"] == "storm_ended"
    }
    assert {kind: count * workers for kind, count in expected.items()} == totals
