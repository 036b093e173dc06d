"""greenkeep's public API: __all__ is explicit, sorted, complete and importable."""

from __future__ import annotations

import inspect

import greenkeep


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
