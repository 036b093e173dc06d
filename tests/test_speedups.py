"""
The optional C speedup (`greenkeep._speedups`): its crash-site check agrees with the
Python definition (`greenkeep._storm.crash_site`), a pool's storm accounting comes out the
same with its crash post and without it (`greenkeep._worker._post_crash` set to ``None``:
the pure-Python path, as where the speedup could not be built), and its bulk restart run
agrees with the Python twin (`greenkeep._pool_run._straight_run_py`).
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
    """Where .ci/run runs (a C compiler at hand) the speedup is built, and the worker and
    the pool's manager use it."""
    import greenkeep._pool_run

    assert _speedups is not None
    assert greenkeep._worker._post_crash is _speedups.post_crash
    assert greenkeep._pool_run._straight_run is _speedups.straight_run


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


def _either(
    request: pytest.FixtureRequest, patch: pytest.MonkeyPatch, module: Any, name: str
) -> str:
    # "python": the compiled step *name* of *module* set to None (its Python path runs);
    # "compiled": skipped where it is not built (failed where .ci/run requires it).
    if request.param == "python":
        patch.setattr(module, name, None)
    elif getattr(module, name) is None:
        if REQUIRED:
            pytest.fail("GREENKEEP_REQUIRE_SPEEDUPS is set but the C speedup is not built")
        pytest.skip("the C speedup is not built here")
    return str(request.param)


@pytest.fixture(params=["compiled", "python"])
def site_check(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each worker-side test once with the compiled crash post, once with the Python one."""
    return _either(request, monkeypatch, greenkeep._worker, "_post_crash")


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


# ------------------------------------------------------------------ the bulk restart run

#: A worker's state before the run: (status, live is its posted incarnation, stop
#: requested, someone waiting, its greenlet: "none", "ended" or "parked").
worker_states = st.tuples(
    st.sampled_from(["running", "stopping"]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.sampled_from(["none", "ended", "parked"]),
)
#: What is posted: ("storm", worker index, announced) or ("other", what).
posts = st.one_of(
    st.tuples(st.just("storm"), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("other"), st.sampled_from(["exception", "wake", "short", "record"])),
)


def _park() -> Any:
    from greenlet import getcurrent
    from greenlet import greenlet as raw

    parked = raw(lambda: getcurrent().parent.switch())
    parked.switch()  # started, waiting: a parked greenlet (truthy)
    return parked


def _ended() -> Any:
    from greenlet import greenlet as raw

    ended = raw(lambda: None)
    ended.switch()
    return ended


def _straight_setup(states: list[Any], posted: list[Any]) -> tuple[list[Any], Any, Any]:
    from collections import deque

    from greenkeep._pool_run import Worker
    from greenkeep._states import RUNNING, STOPPING
    from greenkeep._storm import Storm
    from greenkeep._worker import Channel

    channel = Channel(lambda item: None, "test")
    workers = []
    for index, (status, live, stop, waiting, greenlet) in enumerate(states):
        worker = Worker(index, lambda worker_id: None, (index,), {}, channel, None)
        worker.status = RUNNING if status == "running" else STOPPING
        worker.incarnation = 3
        worker.live = 3 if live else 0
        worker.stop_requested = stop
        worker.waiters = {3: None} if waiting else None
        worker.restarts = 2
        worker.greenlet = {"none": None, "ended": _ended(), "parked": _park()}[greenlet]
        workers.append(worker)
    queue: Any = deque()
    for post in posted:
        if post[0] == "storm":
            storm = Storm.opened((ValueError, 0, 0), None)
            storm.announced = post[2]
            queue.append((workers[post[1] % len(workers)], 3, storm))
        else:
            queue.append(
                {
                    "exception": (workers[0], 3, ValueError("in full")),
                    "wake": object(),
                    "short": (workers[0], 3),
                    "record": (object(), 3, Storm.opened((ValueError, 0, 0), None)),
                }[post[1]]
            )
    return workers, queue, channel


def _straight_outcome(
    run: Any, states: list[Any], posted: list[Any], bound: int, reuse: bool
) -> Any:
    # One run of *run* over a fresh setup, described by value (object identities mapped
    # to positions), so that two runs can be compared.
    import gevent

    from greenkeep._worker import WorkerGreenlet

    workers, queue, _ = _straight_setup(states, posted)
    before = {id(w.greenlet): i for i, w in enumerate(workers) if w.greenlet is not None}
    head = list(queue)
    resumes: list[Any] = []
    starts: list[Any] = []
    retirees: list[Any] = []
    hub, work = gevent.get_hub(), (lambda: None)
    handled = run(queue, 5, 5 + bound, 1.5, reuse, resumes, starts, retirees, hub, work)
    left = [head.index(item) for item in queue]
    state = [
        (w.live, w.incarnation, w.restarts, w.last_reason, w.started_at, w.stop_event)
        for w in workers
    ]
    new = [
        (type(g) is WorkerGreenlet, g.parent is hub, g.run is work, g.child.id, g.incarnation)
        for g in starts
    ]
    # Each new greenlet is its worker's greenlet now (a worker restarted twice in the run
    # holds only its last one).
    owners = [next((i for i, w in enumerate(workers) if w.greenlet is g), None) for g in starts]
    return (
        handled,
        left,
        state,
        new,
        owners,
        [before[id(g)] for g in resumes],
        [before[id(g)] for g in retirees],
    )


@compiled
@given(
    st.lists(worker_states, min_size=1, max_size=4),
    st.lists(posts, max_size=12),
    st.integers(0, 14),
    st.booleans(),
)
def test_the_compiled_bulk_restart_agrees_with_the_python_one(
    states: list[Any], posted: list[Any], bound: int, reuse: bool
) -> None:
    """`_speedups.straight_run` and its Python twin take the same items off the queue,
    leave the same ones, and leave every worker, every new greenlet and the three lists
    alike."""
    from greenkeep._pool_run import _straight_run_py

    python = _straight_outcome(_straight_run_py, states, posted, bound, reuse)
    assert python == _straight_outcome(_speedups.straight_run, states, posted, bound, reuse)


@compiled
def test_the_compiled_bulk_restart_restarts_a_straight_crash() -> None:
    """One crash posted as its announced storm by a running worker's live incarnation:
    restarted (one more incarnation and restart, a new greenlet, the parked one retired);
    the item behind it, a crash in full, stays."""
    states = [("running", True, False, False, "parked")]
    posted = [("storm", 0, True), ("other", "exception")]
    handled, left, state, new, owners, resumes, retirees = _straight_outcome(
        _speedups.straight_run, states, posted, 10, False
    )
    assert (handled, left) == (6, [1])
    assert state == [(4, 4, 3, "abnormal", 1.5, None)]
    assert new == [(True, True, True, 0, 4)]
    assert (owners, resumes, retirees) == ([0], [], [0])


@compiled
def test_the_compiled_bulk_restart_rejects_bad_calls() -> None:
    """Wrong argument counts and types raise TypeError; classes without the slots it needs
    are refused by configure (and the configuration in force is kept)."""
    from collections import deque

    with pytest.raises(TypeError, match="10 arguments"):
        _speedups.straight_run(deque(), 0, 1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="must be a list"):
        _speedups.straight_run(deque(), 0, 1, 0.0, True, (), [], [], None, None)  # type: ignore[arg-type]

    class Plain:
        pass

    with pytest.raises(AttributeError):
        _speedups.configure(Plain, Plain, Plain, None, "abnormal")

    class NotSlots:
        live = 0

    with pytest.raises(TypeError, match="writable object slot"):
        _speedups.configure(NotSlots, NotSlots, NotSlots, None, "abnormal")
    # still configured as before: a straight crash still restarts
    test_the_compiled_bulk_restart_restarts_a_straight_crash()


# ------------------------------------------------------------------ the crash post


def _crash_here() -> Exception:
    try:
        raise ValueError("the crash loop's crash")
    except ValueError as exc:
        return exc


def _post_setup(damped: bool) -> tuple[Any, Any, list[Any]]:
    from greenkeep._pool_run import Worker
    from greenkeep._worker import Channel

    posted: list[Any] = []
    channel = Channel(posted.append, "test")
    channel.damped = {} if damped else None
    worker = Worker(0, lambda worker_id: None, (0,), {}, channel, None)
    return channel, worker, posted


def _site_of(exc: Exception, storm: Any) -> tuple[Any, int, Any, Any]:
    (kind, _, lasti), code = crash_site(exc)
    return (code, lasti, kind, storm)


@compiled
def test_the_compiled_crash_post_posts_what_the_python_path_would() -> None:
    """Damping off: the crash in full. The same crash as the record's site, its storm live
    with its period's sample: the storm, counted in. Anything else (another site, an ended
    storm, no sample yet, no site): nothing posted, False (the Python path posts it)."""
    from greenkeep._storm import Storm

    channel, worker, posted = _post_setup(damped=False)
    exc = _crash_here()
    assert _speedups.post_crash(channel, worker, 7, exc)
    assert posted == [(worker, 7, exc)]

    channel, worker, posted = _post_setup(damped=True)
    exc = _crash_here()
    storm = Storm.opened((ValueError, 0, 0), None)
    storm.sample = (0, 1, "ValueError: the crash loop's crash")
    worker.site = _site_of(exc, storm)
    assert _speedups.post_crash(channel, worker, 7, _crash_here())  # the same site again
    assert posted == [(worker, 7, storm)]
    assert storm.count == 1

    other = _raised(1, 0, ValueError)  # another site
    assert not _speedups.post_crash(channel, worker, 8, other)
    storm.ended = True
    assert not _speedups.post_crash(channel, worker, 8, _crash_here())
    storm.ended, storm.sample = False, None  # the period's first: it renders its sample
    assert not _speedups.post_crash(channel, worker, 8, _crash_here())
    worker.site = greenkeep._worker.NO_SITE
    assert not _speedups.post_crash(channel, worker, 8, _crash_here())
    assert not _speedups.post_crash(object(), worker, 8, _crash_here())  # not a Channel
    assert (len(posted), storm.count) == (1, 1)  # nothing more posted or counted
    with pytest.raises(TypeError, match="4 arguments"):
        _speedups.post_crash(channel, worker, 8)  # type: ignore[call-arg]


# ------------------------------------------------------------------ the start loop


@pytest.fixture(params=["compiled", "python"])
def start_loop(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each start test once with the compiled start loop, once with the Python one."""
    import greenkeep._launch

    return _either(request, monkeypatch, greenkeep._launch, "_start_run")


def _records(count: int, target: Callable[[int], None]) -> tuple[Any, list[Any], list[Any]]:
    import contextvars

    from greenkeep._pool_run import Worker
    from greenkeep._worker import Channel

    posted: list[Any] = []
    channel = Channel(posted.append, "test")
    records = [Worker(i, target, (i,), {}, channel, contextvars.Context()) for i in range(count)]
    return channel, records, posted


def _let_the_hub_run() -> None:
    for _ in range(3):
        gevent.sleep(0)


def test_a_batch_of_starts_runs_each_incarnation_once(start_loop: str) -> None:
    """Three new greenlets started in one callback: each runs its incarnation once, in
    order, and posts its exit (a crash in full, a return) exactly once."""
    from greenkeep import _launch

    ran: list[int] = []

    def target(worker_id: int) -> None:
        ran.append(worker_id)
        if worker_id == 1:
            raise ValueError("worker 1")

    _, records, posted = _records(3, target)
    hub = gevent.get_hub()
    greenlets = [_launch.create(record, 5, hub) for record in records]
    _launch.start(greenlets)
    _let_the_hub_run()
    assert ran == [0, 1, 2]
    assert [(item[0].id, item[1], type(item[2])) for item in posted] == [
        (0, 5, type(None)),
        (1, 5, ValueError),
        (2, 5, type(None)),
    ]
    assert all(record.ran == -5 for record in records)


def test_a_greenlet_killed_before_it_ever_ran_posts_its_exit(start_loop: str) -> None:
    """A kill that reaches a new greenlet before its start: the incarnation never runs, and
    its exit (GreenletExit) is posted once; the next greenlet of the batch still runs."""
    from greenlet import GreenletExit

    from greenkeep import _launch

    ran: list[int] = []
    _, records, posted = _records(2, ran.append)
    hub = gevent.get_hub()
    greenlets = [_launch.create(record, 1, hub) for record in records]
    _launch.kill(greenlets[0])  # (scheduled first: it runs before the start)
    _launch.start(greenlets)
    _let_the_hub_run()
    assert ran == [1]
    assert [(item[0].id, type(item[2])) for item in posted] == [
        (0, GreenletExit),
        (1, type(None)),
    ]


def test_starts_scheduled_before_a_stop_never_run(start_loop: str) -> None:
    """The channel halted after the starts were scheduled: no incarnation runs, each posts
    KILLED."""
    from greenkeep import _launch
    from greenkeep._worker import KILLED

    ran: list[int] = []
    channel, records, posted = _records(2, ran.append)
    hub = gevent.get_hub()
    _launch.start([_launch.create(record, 1, hub) for record in records])
    channel.halted = True
    _let_the_hub_run()
    assert ran == []
    assert [(item[0].id, item[2]) for item in posted] == [(0, KILLED), (1, KILLED)]
