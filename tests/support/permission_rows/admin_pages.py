"""Permission-matrix rows of the admin's pages: users, raw judgement exports.

Format and answers: tests/support/permission_matrix.py and tests/support/permission_answers.py.
"""

from __future__ import annotations

from tests.support.permission_answers import EVERYONE, PAGE_ADMINS
from tests.support.permission_answers import body as _b

ADMIN_POSTS = "L 403 403 403 302"  # a change: sign-in first, admins only, then back to the page

ROWS: list[tuple] = [
    # --- User management (curation/views_users.py) -----------------------------------------------------
    ("curation/users/", "GET", "/curation/users/?q=ann&role=annotator", PAGE_ADMINS),
    ("curation/users/new/", "GET", "/curation/users/new/", PAGE_ADMINS),
    (
        "curation/users/new/",
        "POST",
        "/curation/users/new/",
        ADMIN_POSTS,
        _b(username="newcomer", email="", role="annotator"),
    ),
    ("curation/users/<int:user_id>/", "GET", "/curation/users/{annotator_id}/", PAGE_ADMINS),
    (
        "curation/users/<int:user_id>/edit/",
        "POST",
        "/curation/users/{annotator_id}/edit/",
        ADMIN_POSTS,
        _b(role="reviewer"),
    ),
    ("curation/users/<int:user_id>/pause/", "POST", "/curation/users/{annotator_id}/pause/", ADMIN_POSTS),
    ("curation/users/<int:user_id>/restore/", "POST", "/curation/users/{annotator_id}/restore/", ADMIN_POSTS),
    ("curation/users/<int:user_id>/invite/", "POST", "/curation/users/{annotator_id}/invite/", ADMIN_POSTS),
    ("curation/users/by-name/<str:username>/", "GET", "/curation/users/by-name/ann-chem/", "L 403 403 403 302"),
    # The invitation's set-password page: the token is the permission; a bad one is a page that says so.
    ("curation/users/set-password/<uidb64>/<token>/", "GET", "/curation/users/set-password/MQ/bad-token/", EVERYONE),
    ("curation/users/set-password/<uidb64>/<token>/", "POST", "/curation/users/set-password/MQ/bad-token/", EVERYONE),
    # --- Raw judgements (curation/views_downloads.py): admins only, reviewers included in the refusal ----
    # Declared without a format, which sends the admin back to the page with the links (302): a download
    # is a stream, and tests/system/test_csrf_forms.py reads every page a role gets with 200 as HTML. The
    # downloads themselves: tests/curation/test_raw_judgements.py.
    ("curation/judgements/export/", "GET", "/curation/judgements/export/", "L 403 403 403 302"),
    (
        "curation/versions/<int:version_id>/judgements/",
        "GET",
        "/curation/versions/{version}/judgements/?names=1",
        "L 403 403 403 302",
    ),
]
