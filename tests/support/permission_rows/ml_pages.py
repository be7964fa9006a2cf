"""Permission-matrix rows of the ML pages.

Format and answers: tests/support/permission_matrix.py and tests/support/permission_answers.py.
"""

from __future__ import annotations

from tests.support.permission_answers import ADMINS, PAGE_ADMINS, REVIEWERS, body

ROWS: list[tuple] = [
    # The pair gallery with ml's filters (ml/views_gallery.py); reviewers use /curation/pairs/.
    ("ml/pairs/", "GET", "/ml/pairs/?run={run}&scorer_disagrees=on", PAGE_ADMINS),
    # Register a model from the browser (ml/forms_models.py); the POST's answers: a form back to an admin.
    ("ml/models/new/", "GET", "/ml/models/new/?kind=judge", PAGE_ADMINS),
    (
        "ml/models/new/",
        "POST",
        "/ml/models/new/",
        "L 403 403 403 302",
        # A leading space in the config: body() formats values that start with "{".
        body(kind="judge", name="matrix-judge", location="/models/judge", config=' {"backend": "local"}'),
    ),
    # The leaderboard (ml/views_leaderboard.py): per-annotator accuracies, so admins only.
    ("ml/leaderboard/", "GET", "/ml/leaderboard/?version={version}", PAGE_ADMINS),
    ("ml/leaderboard/items/", "GET", "/ml/leaderboard/items/?run={judge_run}&split=test_S", PAGE_ADMINS),
    ("api/ml/leaderboard/", "GET", "/api/ml/leaderboard/?version={version}", ADMINS),
    # The models' advisory opinions of a pair, for the adjudication page (ml/api_opinions.py).
    ("api/ml/pairs/<int:pk>/opinions/", "GET", "/api/ml/pairs/{pair}/opinions/", REVIEWERS),
    # The generator leaderboard and an evaluation's images (ml/views_generators.py).
    ("ml/generators/", "GET", "/ml/generators/?split=test_S", PAGE_ADMINS),
    ("ml/runs/<int:run_id>/generations/", "GET", "/ml/runs/{eval_generator_run}/generations/", PAGE_ADMINS),
    (
        "ml/runs/<int:run_id>/generations/<str:label>/<int:tuple_index>/<str:kind>/<int:n>.png",
        "GET",
        "/ml/runs/{eval_generator_run}/generations/model/0/IP/0.png",
        PAGE_ADMINS,
    ),
]
