"""Every exported error pickles intact (errors cross process boundaries) and keeps its parts."""

from __future__ import annotations

import pickle

import pytest

import greenkeep
from greenkeep import ExitRecord, SpecProblem

RECORD = ExitRecord("c", 3, "abnormal", "ValueError: boom", "Traceback ...", 1.5)

ERRORS = [
    greenkeep.InvalidSpecError([SpecProblem("child 'a'", "restart", "one of ...", "x")]),
    greenkeep.InvalidArgumentError("Supervisor 's'.stop()", "timeout", ">= 0", -1),
    greenkeep.SupervisorNotRunningError("s", "stopped", "start a child"),
    greenkeep.SupervisorAlreadyStartedError("s", "running"),
    greenkeep.RestartIntensityExceeded("s", 3, 5.0, 4, RECORD),
    greenkeep.ChildStartError("s", "db", RECORD),
    greenkeep.ChildStartError("s", "db", None),
    greenkeep.CalledFromManagerError("s", "terminate a child"),
    greenkeep.ChildNotFoundError("s", "x"),
    greenkeep.ChildAlreadyStartedError("s", "x"),
    greenkeep.ChildAlreadyPresentError("s", "x"),
    greenkeep.ChildRunningError("s", "x", "deleted"),
    greenkeep.ChildRestartingError("s", "x", "restarted"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_pickles_intact(error: greenkeep.GreenkeepError) -> None:
    """An error survives pickling with its type, message and attributes."""
    copy = pickle.loads(pickle.dumps(error))

    assert (type(error), str(error)) == (type(copy), str(copy))
    assert dict(vars(error).items()) == dict(vars(copy).items())


def test_every_exported_error_is_covered() -> None:
    """The list above has an instance of every exported concrete error class."""
    exported = {
        value
        for value in (getattr(greenkeep, n) for n in greenkeep.__all__)
        if isinstance(value, type) and issubclass(value, greenkeep.GreenkeepError)
    }

    assert exported - {greenkeep.GreenkeepError, greenkeep.ChildError} == {type(e) for e in ERRORS}
