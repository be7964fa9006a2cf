"""Permission-matrix rows of the annotator's pages: guidelines, recent judgements, qualification.

Format and answers: tests/support/permission_matrix.py and tests/support/permission_answers.py.
"""

from __future__ import annotations

from tests.support.permission_answers import PAGE_ADMINS
from tests.support.permission_answers import body as _b

ROWS: list[tuple] = [
    # --- The annotator's pages: guides (their tasks; reviewers and admins any), their judgements ------
    ("annotate/mine/", "GET", "/annotate/mine/", "L 200 200 403 403"),
    ("guides/<str:code>/", "GET", "/guides/RU/", "L 200 404 200 200"),
    (
        "api/guides/<str:code>/examples/<int:example_id>/<str:which>/",
        "GET",
        "/api/guides/RU/examples/{guide_example}/right/",
        "A 200 404 200 200",
    ),
    ("api/me/progress/", "GET", "/api/me/progress/", "A 200 200 403 403"),
    # --- Session feedback (attention checks once a session has ended): annotators ---------------
    ("curation/sessions/", "GET", "/curation/sessions/", "L 200 200 403 403"),
    ("curation/sessions/end/", "POST", "/curation/sessions/end/", "L 302 302 403 403"),
    # --- Guide editing: admins only -----------------------------------------------------------
    ("curation/guides/", "GET", "/curation/guides/", PAGE_ADMINS),
    ("curation/guides/<str:code>/", "GET", "/curation/guides/RU/", PAGE_ADMINS),
    (
        "curation/guides/<str:code>/",
        "POST",
        "/curation/guides/RU/",
        "L 403 403 403 302",
        _b(body="# Rust", reasons="colour"),
    ),
    (
        "curation/guides/<str:code>/examples/",
        "POST",
        "/curation/guides/RU/examples/",
        "L 403 403 403 302",
        _b(pair="{pair}", note=""),
    ),
    (
        "curation/guides/<str:code>/examples/<int:example_id>/remove/",
        "POST",
        "/curation/guides/RU/examples/{guide_example}/remove/",
        "L 403 403 403 302",
    ),
    # --- The task's qualification set and the annotators' qualification: admins only ------------
    (
        "curation/guides/<str:code>/qualification/",
        "POST",
        "/curation/guides/RU/qualification/",
        "L 403 403 403 302",
        _b(pair="{gold_pair}", on="0"),
    ),
    (
        "curation/guides/<str:code>/qualification/<int:user_id>/",
        "POST",
        "/curation/guides/RU/qualification/{annotator_id}/",
        "L 403 403 403 302",
        _b(passed="1"),
    ),
]
