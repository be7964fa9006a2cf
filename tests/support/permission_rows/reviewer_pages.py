"""Permission-matrix rows of the reviewer's pages: home, adjudication, the pair gallery.

Format and answers: tests/support/permission_matrix.py and tests/support/permission_answers.py.
"""

from __future__ import annotations

from tests.support.permission_answers import PAGE_REVIEWERS, REVIEWERS

ROWS: list[tuple] = [
    # The adjudication page's script reads one pair and the next one's id (curation/api.py ReviewItemView).
    ("curation/adjudication/<int:pair_id>/data/", "GET", "/curation/adjudication/{pair}/data/", REVIEWERS),
    ("curation/pairs/", "GET", "/curation/pairs/", PAGE_REVIEWERS),
]
