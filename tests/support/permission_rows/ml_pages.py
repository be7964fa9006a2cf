"""Permission-matrix rows of the ML pages.

Format and answers: tests/support/permission_matrix.py and tests/support/permission_answers.py.
"""

from __future__ import annotations

from tests.support.permission_answers import PAGE_ADMINS

ROWS: list[tuple] = [
    # The pair gallery with ml's filters (ml/views_gallery.py); reviewers use /curation/pairs/.
    ("ml/pairs/", "GET", "/ml/pairs/?run={run}&scorer_disagrees=on", PAGE_ADMINS),
]
