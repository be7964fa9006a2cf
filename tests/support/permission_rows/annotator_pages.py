"""Permission-matrix rows of the annotator's pages: guidelines, recent judgements, qualification.

Format and answers: tests/support/permission_matrix.py and tests/support/permission_answers.py.
"""

from __future__ import annotations

ROWS: list[tuple] = []
