"""Which tests ``make test-fast`` leaves out, in one table: the ``fuzz`` run and the ``slow`` tests.

``make test`` (and CI) runs everything; ``make test-fast`` runs ``-m "not slow and not browser and not fuzz"``
for the edit loop. Tests marked in their own module (``pytest.mark.slow``, ``pytest.mark.browser``) keep their
marks; the entries below are added at collection by tests/conftest.py. An entry is a module
(``tests/x/test_y.py``) or one test (``tests/x/test_y.py::test_z``, every parameter of it). The seconds are
what one test took on the 2-core development machine under load from other work (``--durations``); a test
over about 5 s goes here when the fast run would otherwise pass 5 minutes.
"""

from __future__ import annotations

import pytest

FUZZ = {
    "tests/system/test_api_fuzz.py": "schemathesis against every operation as every role",
}

SLOW: dict[str, str] = {}


def entry_of(nodeid: str) -> tuple[str, str]:
    """The module and the module::test (parameters dropped) of a collected test's node id."""
    test = nodeid.split("[", 1)[0]
    return test.split("::", 1)[0], test


def mark(items) -> None:
    for item in items:
        module, test = entry_of(item.nodeid)
        if module in FUZZ or test in FUZZ:
            item.add_marker(pytest.mark.fuzz)
        if module in SLOW or test in SLOW:
            item.add_marker(pytest.mark.slow)
