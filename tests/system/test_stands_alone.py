"""The project stands on its own: nothing outside docs/ points at a folder beside the repository, and no test
reads beside it (tests/support/stands_alone.py refuses such reads in the test process)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from tests.support.paths import DATA, REPO
from tests.support.stands_alone import OutsideRepository, beside_repository, in_allowed_root

# Spelt in pieces so that this file does not name them itself.
NEIGHBOUR = "/".join(["..", "shared"])
FORBIDDEN = [NEIGHBOUR, "/".join(["shared", "GUIDE"])]
SKIPPED_FOLDERS = {
    ".git",
    ".venv",
    "var",
    "node_modules",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    "test-artifacts",
    "build",
}


def tracked_files() -> list[str]:
    """The repository's files: ``git ls-files`` in a checkout, else every file but caches and the venv."""
    if (REPO / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        return [name for name in listed.decode().split("\0") if name]
    found = []
    for folder, subfolders, files in os.walk(REPO):
        subfolders[:] = [name for name in subfolders if name not in SKIPPED_FOLDERS and not name.endswith(".egg-info")]
        found += [os.path.relpath(os.path.join(folder, name), REPO) for name in files]
    return found


def test_no_file_outside_docs_points_beside_the_repository():
    files = [name for name in tracked_files() if not name.startswith("docs/")]
    assert len(files) > 100, "the listing found the repository's files"
    offending = {}
    for name in files:
        path = REPO / name
        if not path.is_file():  # deleted in the working tree, not yet committed
            continue
        content = path.read_bytes()
        hits = [word for word in FORBIDDEN if word.encode() in content]
        if hits:
            offending[name] = hits
    assert offending == {}, "the project must stand on its own; copy what is needed into the repository"


def test_reading_beside_the_repository_is_refused_in_the_tests():
    beside = REPO.parent / "shared" / "data" / "reality_simple_300.json"
    if not beside_repository(beside) and (REPO.parent == REPO.parent.parent or in_allowed_root(REPO)):
        pytest.skip("this checkout sits at the root, in the temporary folder or the Python installation")
    assert beside_repository(beside) and beside_repository(str(REPO.parent / "shared"))
    with pytest.raises(OutsideRepository):
        beside.read_text()
    with pytest.raises(OutsideRepository):
        os.listdir(REPO.parent / "shared")
    with pytest.raises(OutsideRepository):
        open(os.path.join(str(REPO), "..", "shared", "GUIDE.md"))  # noqa: SIM115 - refused before it opens anything


def test_the_repository_and_temporary_folders_stay_readable(tmp_path):
    assert not beside_repository(REPO) and not beside_repository(REPO / "tests")
    assert not beside_repository(tmp_path) and not beside_repository(3)
    assert not beside_repository(REPO.parent) and not beside_repository(REPO.parent / ".cache" / "x")
    assert (DATA / "task_rules_prompts.json").read_text()
    (tmp_path / "x.txt").write_text("x")
    assert os.listdir(tmp_path) == ["x.txt"]
