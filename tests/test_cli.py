"""
``python -m greenkeep`` at the door: what it says, and with which exit status, when what it is
given cannot run, and its ``--version`` and ``--help``.

Every case runs the real CLI in a child interpreter, on small target modules written to the
test's own directory and put on ``PYTHONPATH``. (The roots that run, and how they end, are
tested in test_runner.py.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import greenkeep
from greenkeep.runner import EXIT_FAILED, EXIT_OK, EXIT_USAGE

#: Seconds a child interpreter gets to exit: a bound that turns a hang into a failure, never a
#: time the tests wait for.
DEADLINE = 20.0

PROG = "python -m greenkeep: "

TARGETS = '''
"""Targets for python -m greenkeep; importing this module prints nothing and starts nothing."""

from greenkeep import ChildSpec, Supervisor


def application(environ, start_response):
    """A WSGI application: a callable, but not a factory."""
    start_response("200 OK", [])
    return [b"ok"]


def needs_a_name(*, name):
    return Supervisor([], name=name)


def returns_none():
    return None


def returns_int():
    return 3


def returns_dict():
    return {"name": "app"}


number = 3


def raises():
    raise RuntimeError("the database URL is not set")


def job():
    print("job ran", flush=True)


def build_with_defaults(name="app"):
    return Supervisor(
        [ChildSpec("job", job, restart="transient", significant=True)],
        auto_shutdown="any_significant",
        name=name,
    )


def build_with_varargs(*args, **kwargs):
    return build_with_defaults()
'''


@pytest.fixture
def targets(tmp_path: Path) -> Path:
    """The test's directory, holding the target modules."""
    (tmp_path / "cli_targets.py").write_text(TARGETS)
    (tmp_path / "cli_import_fails.py").write_text(
        'print("importing", flush=True)\nraise RuntimeError("no config file")\n'
    )
    (tmp_path / "cli_dependency_missing.py").write_text(
        "import no_such_dependency_of_cli_targets  # noqa: F401\n"
    )
    return tmp_path


def greenkeep_cli(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m greenkeep *args`` in a child interpreter, with *directory* on its path."""
    path = os.pathsep.join(filter(None, [str(directory), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "COLUMNS": "1000"}
    return subprocess.run(
        [sys.executable, "-m", "greenkeep", *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )


def reason(stderr: str) -> str:
    """The one reason line of a usage error (after argparse's usage lines, if any)."""
    lines = stderr.splitlines()
    if lines and lines[0].startswith("usage:"):
        lines = [line for line in lines if not line.startswith(("usage:", " "))]
    assert "Traceback" not in stderr
    assert 1 == len(lines), stderr
    assert lines[0].startswith(PROG), stderr
    return lines[0]


ALLOWED = "a Supervisor, a WorkerPool or a callable with no required arguments returning one"


class TestTargetsThatAreNotRoots:
    @pytest.mark.parametrize(
        ("target", "arrived"),
        [
            (
                "cli_targets:application",
                "(got function application(environ, start_response), which requires "
                "arguments: environ, start_response)",
            ),
            (
                "cli_targets:needs_a_name",
                "(got function needs_a_name(*, name), which requires arguments: name)",
            ),
            ("cli_targets:returns_none", "(got function returns_none(), which returned None)"),
            ("cli_targets:returns_int", "(got function returns_int(), which returned int 3)"),
            (
                "cli_targets:returns_dict",
                "(got function returns_dict(), which returned dict {'name': 'app'})",
            ),
            ("cli_targets:number", "(got int 3)"),
        ],
    )
    def test_exit_2_with_one_line_naming_the_target_what_is_allowed_and_what_arrived(
        self, targets: Path, target: str, arrived: str
    ) -> None:
        """A target that is not a root, nor a callable with no required arguments returning
        one, is a usage error: one line, no traceback, and nothing started (no log line)."""
        done = greenkeep_cli(targets, target)

        assert EXIT_USAGE == done.returncode
        assert f"{PROG}module:factory {target!r} must be {ALLOWED} {arrived}" == reason(
            done.stderr
        )
        assert "" == done.stdout

    @pytest.mark.parametrize(
        "target", ["cli_targets:build_with_defaults", "cli_targets:build_with_varargs"]
    )
    def test_a_factory_whose_arguments_are_all_optional_runs(
        self, targets: Path, target: str
    ) -> None:
        """Arguments with defaults, *args and **kwargs are not required: the factory runs."""
        done = greenkeep_cli(targets, "--log-format", "json", target)

        assert EXIT_OK == done.returncode, done.stderr
        assert "job ran\n" == done.stdout


class TestTargetsThatCannotBeLoaded:
    @pytest.mark.parametrize(
        ("target", "says"),
        [
            ("no_such_module_of_cli_targets:build", "No module named"),
            ("cli_targets:nope", "has no attribute 'nope'"),
            ("cli_targets:number.nope", "has no attribute 'nope'"),
            ("cli_targets", "expected module:factory"),
            ("cli_targets:", "expected module:factory"),
            (":build", "expected module:factory"),
            (".cli_targets:build", "expected module:factory"),
        ],
    )
    def test_exit_2_with_one_line_naming_the_target(
        self, targets: Path, target: str, says: str
    ) -> None:
        """A module that does not exist, an attribute that does not exist or a target without
        ``module:`` and ``:factory`` is a usage error, on one line."""
        done = greenkeep_cli(targets, target)

        assert EXIT_USAGE == done.returncode
        line = reason(done.stderr)
        assert f"{PROG}cannot load {target!r}: " in line
        assert says in line
        assert "" == done.stdout


class TestUserCodeThatFails:
    """The user's own code raising (the factory, or the module while it is imported) is the
    program failing, not a usage error: status 1, with the traceback that says where."""

    @pytest.mark.parametrize(
        ("target", "error"),
        [
            ("cli_targets:raises", "RuntimeError: the database URL is not set"),
            ("cli_import_fails:build", "RuntimeError: no config file"),
            (
                "cli_dependency_missing:build",
                "ModuleNotFoundError: No module named 'no_such_dependency_of_cli_targets'",
            ),
        ],
    )
    def test_exit_1_with_the_traceback_and_a_last_line_naming_the_target(
        self, targets: Path, target: str, error: str
    ) -> None:
        done = greenkeep_cli(targets, "--log-format", "json", target)

        assert EXIT_FAILED == done.returncode
        lines = done.stderr.splitlines()
        assert "Traceback (most recent call last):" == lines[0], done.stderr
        assert error in lines
        module = target.partition(":")[0]
        assert any(f"{module}.py" in line for line in lines)  # the user's frame
        assert lines[-1].startswith(f"{PROG}{target!r} failed"), done.stderr
        assert "nothing was started" in lines[-1]
        assert "runner_started" not in done.stderr


class TestArguments:
    @pytest.mark.parametrize("value", ["-1", "nan", "soon"])
    def test_a_stop_timeout_that_is_not_seconds_exits_2_before_the_target_is_imported(
        self, targets: Path, value: str
    ) -> None:
        """A negative, NaN or non-numeric bound is argparse's usage error naming the option
        and the value, before the module is imported (not run()'s, naming the target)."""
        done = greenkeep_cli(targets, "--stop-timeout", value, "cli_import_fails:build")

        assert EXIT_USAGE == done.returncode
        line = reason(done.stderr)
        assert "--stop-timeout" in line
        assert repr(value) in line
        assert "" == done.stdout  # the module was not imported

    def test_version_prints_greenkeep_and_its_version(self, targets: Path) -> None:
        done = greenkeep_cli(targets, "--version")

        assert (EXIT_OK, f"greenkeep {greenkeep.__version__}\n", "") == (
            done.returncode,
            done.stdout,
            done.stderr,
        )

    def test_every_option_has_help_text(self, targets: Path) -> None:
        done = greenkeep_cli(targets, "--help")

        assert EXIT_OK == done.returncode
        options = done.stdout.split("\noptions:\n", 1)[1]
        entries = re.split(r"\n(?=  -)", options.strip("\n"))
        helps = {}
        for entry in entries:
            invocation, _, text = entry.strip().partition("  ")
            option = re.findall(r"--[\w-]+", invocation)[-1]
            helps[option] = " ".join(text.split())
        assert {
            "--help",
            "--version",
            "--stop-timeout",
            "--patch",
            "--log-format",
            "--log-level",
        } <= set(helps)
        assert all(helps.values()), helps
        for word in ("auto", "json", "console", "keep"):
            assert f"{word}:" in helps["--log-format"]
        assert "lowest level" in helps["--log-level"]
