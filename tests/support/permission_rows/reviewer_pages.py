"""Permission-matrix rows of the reviewer's pages: home, adjudication, the pair gallery.

Format and answers: tests/support/permission_matrix.py and tests/support/permission_answers.py.
"""

from __future__ import annotations

ROWS: list[tuple] = []
