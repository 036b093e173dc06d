"""The project's files speak of the project alone: every document they name is one of its
own files, and none points outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = ".." + "/shared"  # built, so that this file does not name it itself


def project_files() -> list[Path]:
    """The files git tracks (or would: untracked but not ignored), text only."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    files = []
    for name in listed:
        path = ROOT / name
        if path.is_file() and name != "uv.lock":
            try:
                path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                continue
            files.append(path)
    return files


def test_every_document_named_is_the_projects_own() -> None:
    files = project_files()
    own = {path.name for path in files}
    named = {
        (path.relative_to(ROOT).as_posix(), doc)
        for path in files
        for doc in re.findall(r"\b[\w-]+\.md\b", path.read_text(encoding="utf-8"))
    }

    assert len(files) > 50
    assert [] == sorted((where, doc) for where, doc in named if doc not in own)


def test_nothing_points_outside_the_repository() -> None:
    assert [] == [
        path.relative_to(ROOT).as_posix()
        for path in project_files()
        if OUTSIDE in path.read_text(encoding="utf-8")
    ]
