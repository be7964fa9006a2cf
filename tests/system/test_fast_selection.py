"""The table of tests that ``make test-fast`` leaves out (tests/support/markers.py) names tests that exist,
and its marks reach the collected tests before ``-m`` selects."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support import markers
from tests.support.paths import REPO


@pytest.mark.parametrize("entry", sorted({**markers.FUZZ, **markers.SLOW}))
def test_every_entry_names_a_module_or_test_that_exists(entry):
    module, _, test = entry.partition("::")
    path = REPO / module
    assert path.is_file(), f"{module} is not a test module"
    if test:
        assert re.search(rf"^(async )?def {re.escape(test)}\(", path.read_text(), re.M), f"{test} is not in {module}"


def test_node_ids_map_to_their_module_and_test():
    assert markers.entry_of("tests/a/test_b.py::test_c[x-1]") == ("tests/a/test_b.py", "tests/a/test_b.py::test_c")
    assert markers.entry_of("tests/a/test_b.py::test_c") == ("tests/a/test_b.py", "tests/a/test_b.py::test_c")


def test_minus_m_selects_by_the_table():
    """``-m fuzz`` picks the fuzz run and nothing of its neighbour (a pytest of its own, collection only)."""
    listed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--collect-only",
            "-q",
            "-m",
            "fuzz",
            "tests/system/test_api_fuzz.py",
            "tests/system/test_api_fuzz_regressions.py",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    selected = [line for line in listed.stdout.splitlines() if "::" in line]
    assert selected and all(line.startswith("tests/system/test_api_fuzz.py::") for line in selected)
    assert "deselected" in listed.stdout
