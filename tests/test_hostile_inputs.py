"""
Every public constructor and method, driven by Hypothesis with hostile values (wrong types,
bools for ints, NaN, infinities, negatives, huge ints, unhashables, strings for numbers,
containers mutated after use), one argument at a time, the others valid.

Each call either is valid and works, or raises a `greenkeep.GreenkeepError` that names the
argument; never a bare ``TypeError``, ``KeyError``, ``AttributeError`` or ``ValueError``
from inside greenkeep. A supervisor (or pool) that was running before a refused call is
unchanged afterwards: the same children in the same states and incarnations, and no event
of a child starting, exiting or restarting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gevent
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import greenkeep
import greenkeep.runner
from greenkeep import ChildSpec, Supervisor, WorkerPool
from greenkeep.testing import ManualClock
from greenkeep.wsgi import StatusApp

from _events import DEADLINE, Events

HOSTILE = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, 1, -1, 2, 2**31, 2**63, 10**9, 10**100]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.5, 1e-300, 1e300]),
    st.text(max_size=4),
    st.sampled_from(["3", "1.5", "nan", "inf", "-1", "Permanent", "brutal ", "fresh", "/x"]),
    st.binary(max_size=3),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.tuples(st.integers()),
    st.frozensets(st.integers(), max_size=2),
    st.sampled_from([object(), greenkeep.UNLIMITED, greenkeep.Restart.PERMANENT, print]),
)

#: What the fuzzed calls may create or start: small, so that a valid huge value is refused
#: by the test (it would be valid, and slow), not by greenkeep.
SMALL = 64

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def idle(*args: object, **kwargs: object) -> None:
    greenkeep.ready()  # at once, whatever ready_timeout a spec was given
    gevent.sleep(3600)


def names(error: greenkeep.GreenkeepError, argument: str) -> bool:
    """Whether *error* names *argument*: a problem's field is the argument or an item of it
    (``children[0]``, ``subscribers[1]``, ``children[0].significant``), or, for a rule
    between two arguments (``max_delay`` must be ``>= initial``), a problem's words name
    it."""
    if isinstance(error, greenkeep.ChildError):  # a valid id that no child has
        return argument == "child_id"
    if isinstance(error, greenkeep.InvalidSpecError):
        problems = [(p.field, p.allowed) for p in error.problems]
    elif isinstance(error, greenkeep.InvalidArgumentError):
        problems = [(error.field, error.allowed)]
    else:
        return False
    return any(
        f == argument or f.startswith((f"{argument}[", f"{argument}.")) or argument in allowed
        for f, allowed in problems
    )


def call(fn: Callable[[], Any], argument: str) -> tuple[Any, greenkeep.GreenkeepError | None]:
    """Run *fn*; a GreenkeepError must name *argument*. Anything else propagates."""
    try:
        return fn(), None
    except greenkeep.GreenkeepError as error:
        refused = error
    assert names(refused, argument), (
        f"{type(refused).__name__} does not name {argument}: {refused}"
    )
    return None, refused


def too_big(value: object) -> bool:
    """A valid-looking count the test would rather not create (slow, not wrong)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > SMALL


# ---------------------------------------------------------------------- constructors

SPEC_ARGS = {
    "id": "c",
    "target": idle,
    "args": (),
    "kwargs": None,
    "restart": "permanent",
    "shutdown": None,
    "significant": False,
    "ready_timeout": None,
    "heartbeat": None,
    "backoff": None,
}

SUPERVISOR_ARGS = {
    "children": [ChildSpec("c", idle)],
    "strategy": "one_for_one",
    "max_restarts": 3,
    "period": 5.0,
    "name": "s",
    "auto_shutdown": "never",
    "logger": None,
    "subscribers": (),
    "clock": None,
    "log_summary_interval": 1.0,
    "random": None,
}

POOL_ARGS = {
    "target": idle,
    "size": 2,
    "args": (),
    "kwargs": None,
    "mode": "fresh",
    "restart": "permanent",
    "shutdown": None,
    "max_restarts": None,
    "period": 5.0,
    "name": "p",
    "logger": None,
    "subscribers": (),
    "clock": None,
    "log_summary_interval": 1.0,
    "heartbeat": None,
    "backoff": None,
    "random": None,
}

BACKOFF_ARGS = {"initial": 0.1, "factor": 2.0, "max_delay": 30.0, "jitter": 0.1, "reset_after": 60}


def split(args: dict[str, Any], positional: int) -> Callable[..., Any]:
    names_ = list(args)

    def build(cls: Callable[..., Any], values: dict[str, Any]) -> Any:
        return cls(
            *(values[n] for n in names_[:positional]),
            **{n: values[n] for n in names_[positional:]},
        )

    return build


def run_briefly(sup: Supervisor | WorkerPool) -> None:
    """A supervisor built from a hostile but valid value starts and stops cleanly."""
    sup.start()
    sup.stop(timeout=DEADLINE)


@SETTINGS
@given(argument=st.sampled_from(list(SPEC_ARGS)), value=HOSTILE)
def test_child_spec(argument: str, value: object) -> None:
    values = {**SPEC_ARGS, argument: value}
    spec, _ = call(lambda: split(SPEC_ARGS, 2)(ChildSpec, values), argument)
    if spec is not None:
        try:
            run_briefly(Supervisor([spec], name="s"))
        except greenkeep.ChildStartError:  # a bound shorter than the child's first turn
            assert "ready_timeout" == argument


@SETTINGS
@given(argument=st.sampled_from(list(SUPERVISOR_ARGS)), value=HOSTILE)
def test_supervisor(argument: str, value: object) -> None:
    values = {**SUPERVISOR_ARGS, argument: value}
    sup, _ = call(lambda: split(SUPERVISOR_ARGS, 1)(Supervisor, values), argument)
    if sup is not None:
        run_briefly(sup)


@SETTINGS
@given(argument=st.sampled_from(list(POOL_ARGS)), value=HOSTILE)
def test_worker_pool(argument: str, value: object) -> None:
    assume(not (argument == "size" and too_big(value)))
    values = {**POOL_ARGS, argument: value}
    pool, _ = call(lambda: split(POOL_ARGS, 2)(WorkerPool, values), argument)
    if pool is not None:
        run_briefly(pool)


@SETTINGS
@given(argument=st.sampled_from(list(BACKOFF_ARGS)), value=HOSTILE)
def test_backoff(argument: str, value: object) -> None:
    call(lambda: greenkeep.Backoff(**{**BACKOFF_ARGS, argument: value}), argument)


@SETTINGS
@given(value=HOSTILE)
def test_manual_clock(value: object) -> None:
    clock, error = call(lambda: ManualClock(value), "start")  # type: ignore[arg-type]
    clock = clock or ManualClock(5.0)
    before = clock()
    _, error = call(lambda: clock.advance(value), "seconds")  # type: ignore[arg-type]
    if error is not None:
        assert before == clock()


@SETTINGS
@given(argument=st.sampled_from(["root", "app", "prefix", "metrics"]), value=HOSTILE)
def test_status_app(argument: str, value: object) -> None:
    values: dict[str, Any] = {
        "root": Supervisor(name="s"),
        "app": None,
        "prefix": "",
        "metrics": None,
    }
    values[argument] = value
    root = values.pop("root")
    call(lambda: StatusApp(root, **values), argument)


# ---------------------------------------------------------------------- running supervisors


class Running:
    """A running supervisor (or pool) and what would show that a call changed it."""

    def __init__(self, sup: Supervisor | WorkerPool, events: Events) -> None:
        self.sup = sup
        self.events = events
        sup.start()
        self.before = self.state()

    def state(self) -> tuple[object, ...]:
        children = [(c.id, c.status, c.incarnation) for c in self.sup.which_children()]
        changes = [e["event"] for e in self.events.all if e["event"].startswith("child_")]
        return self.sup.state, children, repr(self.sup.count_children()), changes

    def unchanged(self) -> bool:
        return self.before == self.state()

    def close(self) -> None:
        self.sup.stop(timeout=DEADLINE)


def running_supervisor() -> Running:
    events = Events()
    sup = Supervisor(
        [ChildSpec(1, idle), ChildSpec("b", idle)], name="s", subscribers=[events], logger=None
    )
    return Running(sup, events)


def running_pool() -> Running:
    events = Events()
    return Running(WorkerPool(idle, 3, name="p", subscribers=[events], logger=None), events)


SUPERVISOR_METHODS: dict[str, Callable[[Supervisor, Any], Any]] = {
    "terminate_child": lambda s, v: s.terminate_child(v),
    "restart_child": lambda s, v: s.restart_child(v),
    "delete_child": lambda s, v: s.delete_child(v),
    "get_child_spec": lambda s, v: s.get_child_spec(v),
    "start_child": lambda s, v: s.start_child(v),
    "stop": lambda s, v: s.stop(v),
    "stop_block": lambda s, v: s.stop(DEADLINE, block=v),
}
ARGUMENT = {"stop": "timeout", "stop_block": "block", "start_child": "spec"}


@SETTINGS
@given(method=st.sampled_from(list(SUPERVISOR_METHODS)), value=HOSTILE)
def test_supervisor_methods(method: str, value: object) -> None:
    running = running_supervisor()
    try:
        argument = ARGUMENT.get(method, "child_id")
        _, error = call(lambda: SUPERVISOR_METHODS[method](running.sup, value), argument)  # type: ignore[arg-type]
        if error is not None and not isinstance(error, greenkeep.ChildError):
            assert running.unchanged(), error
    finally:
        running.close()


POOL_METHODS: dict[str, Callable[[WorkerPool, Any], Any]] = {
    "resize": lambda p, v: p.resize(v),
    "worker": lambda p, v: p.worker(v),
    "stop": lambda p, v: p.stop(v),
}


@SETTINGS
@given(method=st.sampled_from(list(POOL_METHODS)), value=HOSTILE)
def test_pool_methods(method: str, value: object) -> None:
    assume(not (method == "resize" and too_big(value)))
    running = running_pool()
    try:
        argument = {"resize": "size", "worker": "worker_id", "stop": "timeout"}[method]
        _, error = call(lambda: POOL_METHODS[method](running.sup, value), argument)  # type: ignore[arg-type]
        if error is not None:
            assert running.unchanged(), error
    finally:
        running.close()


@SETTINGS
@given(value=HOSTILE)
def test_join_and_a_handles_join(value: object) -> None:
    """``join(timeout)`` of a stopped supervisor and of a finished worker's handle (so a
    valid timeout returns at once)."""
    pool = WorkerPool(lambda i: None, 1, restart="temporary", name="p", logger=None)
    pool.start()
    handle = pool.worker(0)
    handle.join(timeout=DEADLINE)
    call(lambda: handle.join(value), "timeout")  # type: ignore[arg-type]
    pool.stop(timeout=DEADLINE)
    call(lambda: pool.join(value), "timeout")  # type: ignore[arg-type]


@pytest.mark.parametrize("container", ["args", "kwargs", "children", "subscribers"])
def test_containers_mutated_after_use_change_nothing(container: str) -> None:
    """A list or dict handed to a constructor and changed afterwards leaves what was built
    as it was built."""
    seen: list[object] = []
    if container == "args":
        args: list[object] = [1]
        spec = ChildSpec("c", idle, args)
        args.append(2)
        assert (1,) == tuple(spec.args)
    elif container == "kwargs":
        kwargs: dict[str, object] = {"a": 1}
        spec = ChildSpec("c", idle, (), kwargs)
        kwargs["b"] = 2
        assert {"a": 1} == dict(spec.kwargs)
    elif container == "children":
        children = [ChildSpec("c", idle)]
        sup = Supervisor(children, name="s")
        children.append(ChildSpec("d", idle))
        assert ["c"] == [c.id for c in sup.which_children()]
    else:
        subscribers: list[Callable[[Any], None]] = [seen.append]
        sup = Supervisor([ChildSpec("c", idle)], name="s", subscribers=subscribers)
        subscribers.append(print)  # would fail the test's output check if called
        subscribers.clear()
        run_briefly(sup)
        assert seen


def job() -> Supervisor:
    """A root that ends on its own once its one child has returned."""
    return Supervisor(
        [ChildSpec("job", lambda: None, restart="transient", significant=True)],
        auto_shutdown="any_significant",
        name="job",
        logger=None,
    )


@SETTINGS
@given(argument=st.sampled_from(["root", "stop_timeout", "signals", "logger"]), value=HOSTILE)
def test_the_runners_arguments(argument: str, value: object) -> None:
    """``greenkeep.runner.run``: a valid call runs the job to its end (status 0)."""
    values: dict[str, Any] = {"root": job, "stop_timeout": 1.0, "signals": (15,), "logger": None}
    values[argument] = value
    root = values.pop("root")
    status, _ = call(lambda: greenkeep.runner.run(root, **values), argument)
    assert status in (None, greenkeep.runner.EXIT_OK)


@SETTINGS
@given(argument=st.sampled_from(["factory", "stop_timeout", "logger"]), value=HOSTILE)
def test_the_gunicorn_hooks_arguments(argument: str, value: object) -> None:
    from greenkeep.gunicorn import Hooks

    values: dict[str, Any] = {"factory": job, "stop_timeout": 1.0, "logger": None}
    values[argument] = value
    factory = values.pop("factory")
    call(lambda: Hooks(factory, **values), argument)
