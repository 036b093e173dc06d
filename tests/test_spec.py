"""
Tests for child specs (`greenkeep._spec`): eager, complete validation and normalised values.
"""

# The tests assert `expected == actual` (ruff's SIM300 calls that a Yoda condition).

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from greenkeep._errors import InvalidSpecError, SpecProblem
from greenkeep._spec import DEFAULT_SHUTDOWN, ChildSpec, Restart, Shutdown, Subtree, validate_specs

from strategies import child_ids

RESTART_ALLOWED = "one of 'permanent', 'transient', 'temporary'"
SHUTDOWN_ALLOWED = "a number of seconds >= 0, 'brutal' or 'infinity'"
READY_ALLOWED = "None or a number of seconds > 0"
TARGET_ALLOWED = "a callable or a Supervisor"
NAN = float("nan")


def work() -> None:
    """A valid target."""


class FakeSupervisor(Subtree):
    """Callable, and a subtree as a `Supervisor` is."""

    def __call__(self) -> None:
        """Run (never called here)."""


class NonCallableSupervisor(Subtree):
    """A subtree, but not callable itself."""


class BadRepr:
    """A value whose repr raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


def only_problem(excinfo: pytest.ExceptionInfo[InvalidSpecError]) -> SpecProblem:
    """The single problem of an `InvalidSpecError`."""
    (problem,) = excinfo.value.problems
    return problem


def same(a: object, b: object) -> bool:
    """Equal, or the same object (so NaN matches itself)."""
    return a is b or a == b


class TestInvalidFields:
    @pytest.mark.parametrize(
        ("changes", "field", "allowed", "got"),
        [
            pytest.param({"target": 42}, "target", TARGET_ALLOWED, 42, id="target-int"),
            pytest.param({"target": "work"}, "target", TARGET_ALLOWED, "work", id="target-str"),
            pytest.param({"target": None}, "target", TARGET_ALLOWED, None, id="target-none"),
            pytest.param({"args": "ab"}, "args", "a tuple or list", "ab", id="args-str"),
            pytest.param({"args": b"ab"}, "args", "a tuple or list", b"ab", id="args-bytes"),
            pytest.param({"args": 5}, "args", "a tuple or list", 5, id="args-int"),
            pytest.param({"args": None}, "args", "a tuple or list", None, id="args-none"),
            pytest.param(
                {"kwargs": {1: "x"}},
                "kwargs",
                "a mapping with str keys",
                {1: "x"},
                id="kwargs-int-key",
            ),
            pytest.param(
                {"kwargs": [("a", 1)]},
                "kwargs",
                "a mapping with str keys",
                [("a", 1)],
                id="kwargs-list",
            ),
            pytest.param(
                {"kwargs": "a=1"}, "kwargs", "a mapping with str keys", "a=1", id="kwargs-str"
            ),
            pytest.param(
                {"restart": "sometimes"}, "restart", RESTART_ALLOWED, "sometimes", id="restart"
            ),
            pytest.param(
                {"restart": "PERMANENT"},
                "restart",
                RESTART_ALLOWED,
                "PERMANENT",
                id="restart-case",
            ),
            pytest.param({"restart": 1}, "restart", RESTART_ALLOWED, 1, id="restart-int"),
            pytest.param({"shutdown": -1}, "shutdown", SHUTDOWN_ALLOWED, -1, id="shutdown-neg"),
            pytest.param(
                {"shutdown": -0.5}, "shutdown", SHUTDOWN_ALLOWED, -0.5, id="shutdown-neg-float"
            ),
            pytest.param(
                {"shutdown": -math.inf},
                "shutdown",
                SHUTDOWN_ALLOWED,
                -math.inf,
                id="shutdown-neg-inf",
            ),
            pytest.param({"shutdown": NAN}, "shutdown", SHUTDOWN_ALLOWED, NAN, id="shutdown-nan"),
            pytest.param(
                {"shutdown": True}, "shutdown", SHUTDOWN_ALLOWED, True, id="shutdown-true"
            ),
            pytest.param(
                {"shutdown": False}, "shutdown", SHUTDOWN_ALLOWED, False, id="shutdown-false"
            ),
            pytest.param(
                {"shutdown": "forever"},
                "shutdown",
                SHUTDOWN_ALLOWED,
                "forever",
                id="shutdown-str",
            ),
            pytest.param({"shutdown": "5"}, "shutdown", SHUTDOWN_ALLOWED, "5", id="shutdown-5"),
            pytest.param({"ready_timeout": 0}, "ready_timeout", READY_ALLOWED, 0, id="ready-zero"),
            pytest.param(
                {"ready_timeout": -1.5}, "ready_timeout", READY_ALLOWED, -1.5, id="ready-neg"
            ),
            pytest.param(
                {"ready_timeout": NAN}, "ready_timeout", READY_ALLOWED, NAN, id="ready-nan"
            ),
            pytest.param(
                {"ready_timeout": True}, "ready_timeout", READY_ALLOWED, True, id="ready-bool"
            ),
            pytest.param(
                {"ready_timeout": "1"}, "ready_timeout", READY_ALLOWED, "1", id="ready-str"
            ),
            pytest.param(
                {"significant": 1}, "significant", "True or False", 1, id="significant-int"
            ),
            pytest.param(
                {"significant": "yes"},
                "significant",
                "True or False",
                "yes",
                id="significant-str",
            ),
            pytest.param(
                {"significant": None},
                "significant",
                "True or False",
                None,
                id="significant-none",
            ),
        ],
    )
    def test_one_bad_field(self, changes, field, allowed, got):
        """
        A single invalid field is reported with the child, the field, what is allowed and
        what arrived, in the parts and in the message.
        """
        fields = {"id": "w", "target": work, **changes}

        with pytest.raises(InvalidSpecError) as excinfo:
            ChildSpec(**fields)

        problem = only_problem(excinfo)

        assert "child 'w'" == problem.owner
        assert field == problem.field
        assert allowed == problem.allowed
        assert same(got, problem.got)
        assert f"child 'w': {field} must be {allowed} (got {got!r})" == str(excinfo.value)

    @pytest.mark.parametrize(
        ("bad_id", "owner", "allowed"),
        [
            pytest.param("", "child ''", "a non-empty string", id="empty"),
            pytest.param(True, "child True", "a str or an int (not a bool)", id="true"),
            pytest.param(False, "child False", "a str or an int (not a bool)", id="false"),
            pytest.param(1.5, "child <invalid id>", "a str or an int (not a bool)", id="float"),
            pytest.param(None, "child <invalid id>", "a str or an int (not a bool)", id="none"),
            pytest.param(("a",), "child <invalid id>", "a str or an int (not a bool)", id="tuple"),
        ],
    )
    def test_bad_id(self, bad_id, owner, allowed):
        """
        An empty, bool, float or other non-str/int id is rejected, and the message shows it.
        """
        with pytest.raises(InvalidSpecError) as excinfo:
            ChildSpec(bad_id, work)

        problem = only_problem(excinfo)

        assert (owner, "id", allowed) == (problem.owner, problem.field, problem.allowed)
        assert bad_id is problem.got
        assert f"{owner}: id must be {allowed} (got {bad_id!r})" == str(excinfo.value)

    def test_significant_permanent(self):
        """
        A significant child must not be permanent; the message says which ones may be.
        """
        with pytest.raises(InvalidSpecError) as excinfo:
            ChildSpec("w", work, restart="permanent", significant=True)

        problem = only_problem(excinfo)

        assert ("child 'w'", "significant", True) == (problem.owner, problem.field, problem.got)
        assert problem.allowed.startswith("False for a permanent child")
        assert "transient and temporary" in problem.allowed
        assert str(excinfo.value).startswith("child 'w': significant must be False")
        assert str(excinfo.value).endswith("(got True)")

    def test_significant_default_restart_is_permanent(self):
        """
        significant=True without a restart type is rejected, since the default is permanent.
        """
        with pytest.raises(InvalidSpecError) as excinfo:
            ChildSpec("w", work, significant=True)

        assert "significant" == only_problem(excinfo).field

    def test_bad_restart_with_significant_reports_only_restart(self):
        """
        An unknown restart type is not also blamed on significant=True (it is not known to
        be permanent).
        """
        with pytest.raises(InvalidSpecError) as excinfo:
            ChildSpec("w", work, restart="bogus", significant=True)

        assert ["restart"] == [p.field for p in excinfo.value.problems]

    def test_every_bad_field_listed(self):
        """
        A spec with many invalid fields lists all of them in one error, in field order.
        """
        with pytest.raises(InvalidSpecError) as excinfo:
            ChildSpec(
                "w",
                42,
                args="ab",
                kwargs={1: 2},
                restart="sometimes",
                shutdown=-1,
                significant="yes",
                ready_timeout=0,
            )

        err = excinfo.value
        lines = str(err).splitlines()

        assert [
            ("target", 42),
            ("args", "ab"),
            ("kwargs", {1: 2}),
            ("restart", "sometimes"),
            ("shutdown", -1),
            ("significant", "yes"),
            ("ready_timeout", 0),
        ] == [(p.field, p.got) for p in err.problems]
        assert {"child 'w'"} == {p.owner for p in err.problems}
        assert "7 invalid fields:" == lines[0]
        assert [f"  - {p}" for p in err.problems] == lines[1:]
        assert "  - child 'w': shutdown must be " + SHUTDOWN_ALLOWED + " (got -1)" in lines

    def test_bad_id_and_other_fields_listed_together(self):
        """
        A bad id does not hide the other invalid fields.
        """
        with pytest.raises(InvalidSpecError) as excinfo:
            ChildSpec(1.5, None, shutdown="soon")

        assert ["id", "target", "shutdown"] == [p.field for p in excinfo.value.problems]
        assert {"child <invalid id>"} == {p.owner for p in excinfo.value.problems}

    def test_first_problem_shortcuts(self):
        """
        The error's owner/field/allowed/got repeat its first problem.
        """
        with pytest.raises(InvalidSpecError) as excinfo:
            ChildSpec("w", work, shutdown=-2, ready_timeout=0)

        err = excinfo.value
        first = err.problems[0]

        assert (first.owner, first.field, first.allowed, first.got) == (
            err.owner,
            err.field,
            err.allowed,
            err.got,
        )
        assert ("child 'w'", "shutdown", SHUTDOWN_ALLOWED, -2) == (
            err.owner,
            err.field,
            err.allowed,
            err.got,
        )

    def test_is_a_value_error(self):
        """
        InvalidSpecError is a ValueError, so generic handlers catch it.
        """
        with pytest.raises(ValueError, match="target must be a callable"):
            ChildSpec("w", 42)

    def test_unprintable_value(self):
        """
        A value whose repr raises still yields a readable message.
        """
        bad = BadRepr()

        with pytest.raises(InvalidSpecError) as excinfo:
            ChildSpec("w", bad)

        assert bad is excinfo.value.got
        assert "(repr() failed)" in str(excinfo.value)

    def test_huge_value_is_clipped(self):
        """
        A huge invalid value does not make a huge message.
        """
        with pytest.raises(InvalidSpecError) as excinfo:
            ChildSpec("w", work, args="x" * 1_000_000)

        assert len(str(excinfo.value)) < 400

    def test_needs_a_problem(self):
        """
        An InvalidSpecError without problems is a programming error.
        """
        with pytest.raises(ValueError, match="at least one problem"):
            InvalidSpecError([])


class TestValidForms:
    def test_defaults(self):
        """
        A minimal spec gets OTP's defaults: permanent, 5 s shutdown, no args, not significant.
        """
        spec = ChildSpec("w", work)

        assert (
            "w",
            work,
            (),
            {},
            Restart.PERMANENT,
            DEFAULT_SHUTDOWN,
            False,
            None,
        ) == (
            spec.id,
            spec.target,
            spec.args,
            spec.kwargs,
            spec.restart,
            spec.shutdown,
            spec.significant,
            spec.ready_timeout,
        )
        assert 5.0 == DEFAULT_SHUTDOWN
        assert not spec.is_supervisor

    @pytest.mark.parametrize(
        ("restart", "expected"),
        [
            ("permanent", Restart.PERMANENT),
            ("transient", Restart.TRANSIENT),
            ("temporary", Restart.TEMPORARY),
            (Restart.PERMANENT, Restart.PERMANENT),
            (Restart.TRANSIENT, Restart.TRANSIENT),
            (Restart.TEMPORARY, Restart.TEMPORARY),
        ],
    )
    def test_restart_string_or_enum(self, restart, expected):
        """
        A restart type is accepted as its string value or as the enum member.
        """
        spec = ChildSpec("w", work, restart=restart)

        assert expected is spec.restart

    @pytest.mark.parametrize(
        ("shutdown", "expected"),
        [
            (0, 0.0),
            (3, 3.0),
            (2.5, 2.5),
            (0.0, 0.0),
            (10**6, 1e6),
        ],
    )
    def test_shutdown_seconds_become_float(self, shutdown, expected):
        """
        A shutdown in seconds, int or float, is kept as a float.
        """
        spec = ChildSpec("w", work, shutdown=shutdown)

        assert expected == spec.shutdown
        assert float is type(spec.shutdown)

    @pytest.mark.parametrize(
        ("shutdown", "expected"),
        [
            ("brutal", Shutdown.BRUTAL),
            (Shutdown.BRUTAL, Shutdown.BRUTAL),
            ("infinity", Shutdown.INFINITY),
            (Shutdown.INFINITY, Shutdown.INFINITY),
            (math.inf, Shutdown.INFINITY),
            (float("inf"), Shutdown.INFINITY),
        ],
    )
    def test_shutdown_policies(self, shutdown, expected):
        """
        "brutal", "infinity" and float('inf') become `Shutdown` members.
        """
        spec = ChildSpec("w", work, shutdown=shutdown)

        assert expected is spec.shutdown

    def test_shutdown_none_is_default(self):
        """
        shutdown=None means the default, 5 seconds for a worker.
        """
        spec = ChildSpec("w", work, shutdown=None)

        assert DEFAULT_SHUTDOWN == spec.shutdown

    def test_supervisor_default_shutdown_is_infinity(self):
        """
        A child that runs a supervisor waits as long as it takes by default.
        """
        spec = ChildSpec("sup", FakeSupervisor())

        assert Shutdown.INFINITY is spec.shutdown
        assert spec.is_supervisor

    def test_non_callable_supervisor_target(self):
        """
        A supervisor is accepted as a target even if it is not callable itself.
        """
        target = NonCallableSupervisor()

        spec = ChildSpec("sup", target)

        assert target is spec.target
        assert spec.is_supervisor

    def test_supervisor_shutdown_can_be_set(self):
        """
        A supervisor child's shutdown can still be set explicitly.
        """
        spec = ChildSpec("sup", FakeSupervisor(), shutdown=2)

        assert 2.0 == spec.shutdown

    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            ([1, 2], (1, 2)),
            ((1, 2), (1, 2)),
            (range(3), (0, 1, 2)),
            ([], ()),
        ],
    )
    def test_args_become_tuple(self, args, expected):
        """
        args may be any non-string sequence and is kept as a tuple.
        """
        spec = ChildSpec("w", work, args)

        assert expected == spec.args
        assert tuple is type(spec.args)

    def test_kwargs_are_copied(self):
        """
        kwargs are copied, so changing the caller's dict later does not change the spec.
        """
        given_kwargs = {"host": "db"}

        spec = ChildSpec("w", work, kwargs=given_kwargs)
        given_kwargs["host"] = "other"

        assert {"host": "db"} == spec.kwargs

    @pytest.mark.parametrize("restart", ["transient", "temporary"])
    def test_significant_transient_or_temporary(self, restart):
        """
        Transient and temporary children may be significant.
        """
        spec = ChildSpec("w", work, restart=restart, significant=True)

        assert spec.significant is True

    @pytest.mark.parametrize(
        ("ready_timeout", "expected"), [(None, None), (1, 1.0), (0.25, 0.25), (math.inf, math.inf)]
    )
    def test_ready_timeout(self, ready_timeout, expected):
        """
        ready_timeout is None or a positive number of seconds, kept as a float.
        """
        spec = ChildSpec("w", work, ready_timeout=ready_timeout)

        assert expected == spec.ready_timeout

    @given(child_id=child_ids)
    def test_any_str_or_int_id(self, child_id):
        """
        Any non-empty str or any int is a valid id, kept as is.
        """
        spec = ChildSpec(child_id, work)

        assert child_id == spec.id

    def test_repr(self):
        """
        The repr names the target and shows every field.
        """
        spec = ChildSpec("w", work, (1,), {"a": 2}, restart="transient", shutdown="brutal")

        assert (
            "ChildSpec(id='w', target=work, args=(1,), kwargs={'a': 2}, restart='transient', "
            "shutdown='brutal', significant=False, ready_timeout=None, heartbeat=None, "
            "backoff=None)"
        ) == repr(spec)


class TestImmutableAndEqual:
    @pytest.mark.parametrize(
        "name",
        ["id", "target", "args", "kwargs", "restart", "shutdown", "significant", "ready_timeout"],
    )
    def test_setattr_raises(self, name):
        """
        No field of a spec can be set or deleted after construction.
        """
        spec = ChildSpec("w", work)

        with pytest.raises(AttributeError, match="immutable"):
            setattr(spec, name, None)
        with pytest.raises(AttributeError, match="immutable"):
            delattr(spec, name)

        assert "w" == spec.id

    def test_no_new_attributes(self):
        """
        A spec cannot grow new attributes either.
        """
        spec = ChildSpec("w", work)

        with pytest.raises(AttributeError):
            spec.extra = 1

    def test_equal_field_by_field(self):
        """
        Two specs built from equal fields are equal and hash alike.
        """
        a = ChildSpec("w", work, [1], {"k": "v"}, restart="transient", shutdown=3)
        b = ChildSpec("w", work, (1,), {"k": "v"}, restart=Restart.TRANSIENT, shutdown=3.0)

        assert a == b
        assert hash(a) == hash(b)

    @pytest.mark.parametrize(
        "changes",
        [
            {"id": "other"},
            {"target": print},
            {"args": (2,)},
            {"kwargs": {"k": "other"}},
            {"restart": "temporary"},
            {"shutdown": 4},
            {"significant": True},
            {"ready_timeout": 1},
        ],
    )
    def test_any_field_differs(self, changes):
        """
        Specs that differ in any one field are not equal.
        """
        base = {"id": "w", "target": work, "args": (1,), "kwargs": {"k": "v"}}
        fields = {**base, "restart": "transient", **changes}

        assert ChildSpec(**base, restart="transient") != ChildSpec(**fields)

    def test_not_equal_to_other_types(self):
        """
        A spec is never equal to something that is not a spec.
        """
        spec = ChildSpec("w", work)

        assert spec != ("w", work)
        assert spec != "w"


class TestValidateSpecs:
    def test_valid_list(self):
        """
        A list of specs with unique ids comes back as a list, in order.
        """
        a, b = ChildSpec("a", work), ChildSpec("b", work)

        assert [a, b] == validate_specs("supervisor 'root'", (a, b))

    def test_empty(self):
        """
        A supervisor may start with no children.
        """
        assert [] == validate_specs("supervisor 'root'", [])

    def test_non_spec_items_with_index(self):
        """
        Every item that is not a ChildSpec is reported with its index.
        """
        a, b = ChildSpec("a", work), ChildSpec("b", work)

        with pytest.raises(InvalidSpecError) as excinfo:
            validate_specs("supervisor 'root'", [a, "b", b, None])

        assert [
            SpecProblem("supervisor 'root'", "children[1]", "a ChildSpec", "b"),
            SpecProblem("supervisor 'root'", "children[3]", "a ChildSpec", None),
        ] == list(excinfo.value.problems)
        assert str(excinfo.value).splitlines()[1:] == [
            "  - supervisor 'root': children[1] must be a ChildSpec (got 'b')",
            "  - supervisor 'root': children[3] must be a ChildSpec (got None)",
        ]

    def test_duplicate_id_with_index(self):
        """
        A duplicate id is reported at its index, naming the index that had it first.
        """
        specs = [ChildSpec("a", work), ChildSpec("b", work), ChildSpec("a", print)]

        with pytest.raises(InvalidSpecError) as excinfo:
            validate_specs("supervisor 'root'", specs)

        problem = only_problem(excinfo)

        assert (
            "supervisor 'root'",
            "children[2].id",
            "unique (children[0] already has this id)",
            "a",
        ) == (problem.owner, problem.field, problem.allowed, problem.got)
        assert (
            "supervisor 'root': children[2].id must be unique (children[0] already has this "
            "id) (got 'a')"
        ) == str(excinfo.value)

    def test_non_specs_and_duplicates_together(self):
        """
        Non-spec items and duplicate ids are all reported in one error.
        """
        specs = [ChildSpec(1, work), 7, ChildSpec(1, work), ChildSpec(2, work), ChildSpec(2, work)]

        with pytest.raises(InvalidSpecError) as excinfo:
            validate_specs("supervisor 'root'", specs)

        assert ["children[1]", "children[2].id", "children[4].id"] == [
            p.field for p in excinfo.value.problems
        ]

    @pytest.mark.parametrize(
        "children",
        ["ab", b"ab", {"a": 1}, {1, 2}, None, 3],
        ids=["str", "bytes", "dict", "set", "none", "int"],
    )
    def test_not_a_list(self, children):
        """
        children must be a list (or other sequence) of specs.
        """
        with pytest.raises(InvalidSpecError) as excinfo:
            validate_specs("supervisor 'root'", children)

        problem = only_problem(excinfo)

        assert ("supervisor 'root'", "children", "a list of ChildSpec") == (
            problem.owner,
            problem.field,
            problem.allowed,
        )
        assert children is problem.got

    @given(ids=st.lists(st.integers(min_value=0, max_value=5), max_size=10))
    def test_duplicates_reported_at_every_repeat(self, ids):
        """
        Every repeat of an id is reported at its index, pointing at the first occurrence.
        """
        specs = [ChildSpec(i, work) for i in ids]
        first: dict[int, int] = {}
        expected = []
        for index, i in enumerate(ids):
            if i in first:
                expected.append((f"children[{index}].id", f"unique (children[{first[i]}] "))
            else:
                first[i] = index

        try:
            validate_specs("supervisor 'root'", specs)
        except InvalidSpecError as err:
            actual = [(p.field, p.allowed[: len("unique (children[0] ")]) for p in err.problems]
        else:
            actual = []

        assert expected == actual
