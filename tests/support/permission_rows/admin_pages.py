"""Permission-matrix rows of the admin's pages: users, raw judgement exports.

Format and answers: tests/support/permission_matrix.py and tests/support/permission_answers.py.
"""

from __future__ import annotations

ROWS: list[tuple] = []
