"""The permission matrix: the declared answer of every (route, method) for every role.

One row per route *pattern* as Django's resolver spells it (``django.urls.get_resolver``), per
method. tests/system/test_permission_matrix.py fails when a route has no row (a new endpoint must be
declared here), when a row names a route that no longer exists, when a method a route answers is
not declared, and when any role gets another answer than the row says.

Answers, in the order of ``ROLES`` (anonymous, annotator, annotator of another field, reviewer,
admin): a status code, ``A`` (API refusal of the anonymous: 401 or 403) or ``L`` (a page's
redirect to the login page). The annotator's field is chemistry (task RU); the other field is
biology. Paths and bodies name objects of tests/support/permission_world.py as ``{name}``.

The Django admin (``admin/...``) is not listed route by route: tests/system/test_permission_matrix.py
checks that only staff (admins) get any of its pages, with a few representative rows below.

The OpenAPI schema and its docs page are public on purpose (they describe the API, they hold no
data); everything else needs a signed-in user.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from tests.support.permission_answers import (
    ADMINS,
    ANNOTATOR_ONLY,
    EVERYONE,
    PAGE_ADMINS,
    PAGE_REVIEWERS,
    PAGE_SIGNED_IN,
    REVIEWERS,
    SIGNED_IN,
)
from tests.support.permission_answers import body as _b
from tests.support.permission_rows import admin_pages, annotator_pages, ml_pages, reviewer_pages
from tests.support.permission_world import ROLES


@dataclass(frozen=True)
class Cell:
    route: str
    method: str
    path: str
    answers: tuple[str, ...]
    body: Callable[[dict], dict] | None = None
    multipart: bool = False

    def expected(self, role: str) -> str:
        return self.answers[ROLES.index(role)]


def _upload(world):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.support.factories import png_bytes

    return {"file": SimpleUploadedFile("new.png", png_bytes(), content_type="image/png")}


def _token(world):
    return {"username": "ann-chem", "password": world["PASSWORD"]}


def _login(world):
    return {"username": "ann-chem", "password": world["PASSWORD"]}


def _task_put(world):
    return {"code": "ZZ", "name": "Unused", "discipline": "physics", "kind": "ST", "description": ""}


def _schedule(world):
    return {
        "name": "weekly",
        "kind": "generate",
        "trigger": "cron",
        "cron": "0 4 * * 1",
        "params": {"model": world["generator"], "tuples": {"task": "RU", "limit": 2}},
    }


def _schedule_form(world):
    return {
        "name": "weekly",
        "kind": "generate",
        "trigger": "cron",
        "cron": "0 4 * * 1",
        "enabled": "on",
        "check_every_minutes": 60,
        "min_new_pairs": 100,
        "params": json.dumps({"model": world["generator"], "tuples": {"task": "RU", "limit": 2}}),
    }


def _run(world):
    return {"kind": "generate", "params": {"model": world["generator"], "tuples": {"task": "RU", "limit": 2}}}


def _run_form(world):
    return {"model": world["generator"], "tuples_task": "RU", "tuples_limit": 2}


_ROWS = [
    # --- OpenAPI (public) and the token endpoint (anyone may trade a password for a token) ------
    ("api/schema/", "GET", "/api/schema/", EVERYONE),
    ("api/docs/", "GET", "/api/docs/", EVERYONE),
    ("api/auth/token/", "POST", "/api/auth/token/", EVERYONE, _token),
    # --- The annotator's queue ---------------------------------------------------------------
    ("api/queue/next/", "POST", "/api/queue/next/", "A 200 204 403 403"),
    (
        "api/leases/<int:lease_id>/judgement/",
        "POST",
        "/api/leases/{lease}/judgement/",
        "A 201 404 403 403",
        _b(choice="left"),
    ),
    ("api/leases/<int:lease_id>/heartbeat/", "POST", "/api/leases/{lease}/heartbeat/", ANNOTATOR_ONLY),
    ("api/leases/<int:lease_id>/release/", "POST", "/api/leases/{lease}/release/", ANNOTATOR_ONLY),
    ("api/leases/<int:lease_id>/image/<str:side>/", "GET", "/api/leases/{lease}/image/left/", "A 200 404 200 200"),
    ("api/judgements/undo/", "POST", "/api/judgements/undo/", "A 200 404 403 403"),
    ("api/me/", "GET", "/api/me/", SIGNED_IN),
    ("api/", "GET", "/api/", SIGNED_IN),
    ("api/<drf_format_suffix:format>", "GET", "/api/.json", SIGNED_IN),
    # --- Taxonomy: everyone signed in reads, admins write ------------------------------------
    ("api/^disciplines/$", "GET", "/api/disciplines/", SIGNED_IN),
    ("api/^disciplines/$", "POST", "/api/disciplines/", "A 403 403 403 201", _b(slug="geology", name="Geology")),
    ("api/^disciplines/(?P<slug>[^/.]+)/$", "GET", "/api/disciplines/chemistry/", SIGNED_IN),
    (
        "api/^disciplines/(?P<slug>[^/.]+)/$",
        "PUT",
        "/api/disciplines/astronomy/",
        ADMINS,
        _b(slug="astronomy", name="Astronomy and space"),
    ),
    ("api/^disciplines/(?P<slug>[^/.]+)/$", "PATCH", "/api/disciplines/chemistry/", ADMINS, _b(name="Chem")),
    ("api/^disciplines/(?P<slug>[^/.]+)/$", "DELETE", "/api/disciplines/astronomy/", "A 403 403 403 204"),
    ("api/^tasks/$", "GET", "/api/tasks/", SIGNED_IN),
    (
        "api/^tasks/$",
        "POST",
        "/api/tasks/",
        "A 403 403 403 201",
        _b(code="TI", name="Tides", discipline="physics", kind="CT"),
    ),
    ("api/^tasks/(?P<code>[^/.]+)/$", "GET", "/api/tasks/RU/", SIGNED_IN),
    ("api/^tasks/(?P<code>[^/.]+)/$", "PUT", "/api/tasks/ZZ/", ADMINS, _task_put),
    ("api/^tasks/(?P<code>[^/.]+)/$", "PATCH", "/api/tasks/RU/", ADMINS, _b(description="Iron oxidises.")),
    ("api/^tasks/(?P<code>[^/.]+)/$", "DELETE", "/api/tasks/ZZ/", "A 403 403 403 204"),
    # --- Catalogue: reviewers read, admins write; annotators never see tuples, images or pairs --
    ("api/^tuples/$", "GET", "/api/tuples/", REVIEWERS),
    (
        "api/^tuples/$",
        "POST",
        "/api/tuples/",
        "A 403 403 403 201",
        _b(implicit_prompt="Ice left in the sun.", task="ME"),
    ),
    ("api/^tuples/(?P<pk>[^/.]+)/$", "GET", "/api/tuples/{tuple}/", REVIEWERS),
    ("api/^tuples/(?P<pk>[^/.]+)/$", "PATCH", "/api/tuples/{tuple}/", ADMINS, _b(subject="bolt")),
    ("api/^images/$", "GET", "/api/images/", REVIEWERS),
    ("api/^images/$", "POST", "/api/images/", "A 403 403 403 201", _upload, True),
    ("api/^images/(?P<pk>[^/.]+)/$", "GET", "/api/images/{image}/", REVIEWERS),
    ("api/^images/(?P<pk>[^/.]+)/file/$", "GET", "/api/images/{image}/file/", REVIEWERS),
    ("api/^pairs/$", "GET", "/api/pairs/", REVIEWERS),
    (
        "api/^pairs/$",
        "POST",
        "/api/pairs/",
        "A 403 403 403 201",
        _b(tuple="{tuple}", image_correct="{new_a}", image_wrong="{new_b}"),
    ),
    ("api/^pairs/(?P<pk>[^/.]+)/$", "GET", "/api/pairs/{pair}/", REVIEWERS),
    ("api/^pairs/(?P<pk>[^/.]+)/$", "PATCH", "/api/pairs/{pair}/", ADMINS, _b(k=4)),
    # --- Judgements: annotators their own only (another annotator's is not found) -------------
    ("api/^judgements/$", "GET", "/api/judgements/", SIGNED_IN),
    ("api/^judgements/(?P<pk>[^/.]+)/$", "GET", "/api/judgements/{judgement}/", "A 200 404 200 200"),
    # --- Curation API: reviewers read and adjudicate; admins gold, quality, audit, versions, jobs
    ("api/curation/^consensus/$", "GET", "/api/curation/consensus/", REVIEWERS),
    ("api/curation/^consensus/(?P<pair_id>\\d+)/$", "GET", "/api/curation/consensus/{pair}/", REVIEWERS),
    ("api/curation/^adjudications/$", "GET", "/api/curation/adjudications/", REVIEWERS),
    (
        "api/curation/^adjudications/$",
        "POST",
        "/api/curation/adjudications/",
        "A 403 403 201 201",
        _b(pair="{spare_pair}", label="expected", comment=""),
    ),
    ("api/curation/agreement/", "GET", "/api/curation/agreement/", REVIEWERS),
    ("api/curation/audit/", "GET", "/api/curation/audit/", ADMINS),
    ("api/curation/gold/", "GET", "/api/curation/gold/", REVIEWERS),
    (
        "api/curation/gold/",
        "POST",
        "/api/curation/gold/",
        "A 403 403 403 201",
        _b(pair="{spare_pair}", answer="expected"),
    ),
    ("api/curation/gold/<int:pair_id>/", "DELETE", "/api/curation/gold/{gold_pair}/", "A 403 403 403 204"),
    ("api/curation/quality/", "GET", "/api/curation/quality/", ADMINS),
    ("api/curation/quality/<int:user_id>/restore/", "POST", "/api/curation/quality/{annotator_id}/restore/", ADMINS),
    ("api/curation/versions/", "GET", "/api/curation/versions/", REVIEWERS),
    (
        "api/curation/versions/",
        "POST",
        "/api/curation/versions/",
        "A 403 403 403 201",
        _b(name="v-matrix", outcomes=["adjudicated"]),
    ),
    ("api/curation/versions/<int:pk>/", "GET", "/api/curation/versions/{version}/", REVIEWERS),
    ("api/curation/versions/<int:pk>/members/", "GET", "/api/curation/versions/{version}/members/", REVIEWERS),
    (
        "api/curation/versions/<int:a>/diff/<int:b>/",
        "GET",
        "/api/curation/versions/{version}/diff/{other_version}/",
        REVIEWERS,
    ),
    ("api/curation/versions/<int:version_id>/exports/", "GET", "/api/curation/versions/{version}/exports/", ADMINS),
    (
        "api/curation/versions/<int:version_id>/exports/",
        "POST",
        "/api/curation/versions/{version}/exports/",
        "A 403 403 403 202",
        _b(format="webdataset"),
    ),
    (
        "api/curation/versions/<int:version_id>/exports/<str:export_format>/",
        "GET",
        "/api/curation/versions/{version}/exports/jsonl/",
        ADMINS,
    ),
    (
        "api/curation/versions/<int:version_id>/exports/<str:export_format>/<path:path>",
        "GET",
        "/api/curation/versions/{version}/exports/jsonl/{export_file}",
        ADMINS,
    ),
    ("api/curation/jobs/<int:job_id>/", "GET", "/api/curation/jobs/{job}/", ADMINS),
    (
        "api/curation/imports/",
        "POST",
        "/api/curation/imports/",
        "A 403 403 403 202",
        _b(path="prompts.json", format="prompts", dry_run=True),
    ),
    # --- ML API: admins only -------------------------------------------------------------------
    ("api/ml/^runs/$", "GET", "/api/ml/runs/", ADMINS),
    ("api/ml/^runs/$", "POST", "/api/ml/runs/", "A 403 403 403 201", _run),
    ("api/ml/^runs/(?P<pk>\\d+)/$", "GET", "/api/ml/runs/{run}/", ADMINS),
    ("api/ml/^runs/(?P<pk>\\d+)/cancel/$", "POST", "/api/ml/runs/{queued_run}/cancel/", ADMINS),
    ("api/ml/run-kinds/", "GET", "/api/ml/run-kinds/", ADMINS),
    ("api/ml/images/<int:pk>/origin/", "GET", "/api/ml/images/{generated_image}/origin/", ADMINS),
    ("api/ml/^models/$", "GET", "/api/ml/models/", ADMINS),
    (
        "api/ml/^models/$",
        "POST",
        "/api/ml/models/",
        "A 403 403 403 201",
        _b(kind="scorer", name="sciscore-matrix", location="/models/matrix"),
    ),
    ("api/ml/^models/compare/$", "GET", "/api/ml/models/compare/?a={base_model}&b={model}", ADMINS),
    ("api/ml/^models/(?P<pk>\\d+)/$", "GET", "/api/ml/models/{model}/", ADMINS),
    ("api/ml/^models/(?P<pk>\\d+)/activate/$", "POST", "/api/ml/models/{model}/activate/", ADMINS),
    ("api/ml/schedules/", "GET", "/api/ml/schedules/", ADMINS),
    ("api/ml/schedules/", "POST", "/api/ml/schedules/", "A 403 403 403 201", _schedule),
    ("api/ml/schedules/<int:pk>/", "GET", "/api/ml/schedules/{schedule}/", ADMINS),
    ("api/ml/schedules/<int:pk>/", "PATCH", "/api/ml/schedules/{schedule}/", ADMINS, _b(cron="0 5 * * *")),
    ("api/ml/schedules/<int:pk>/", "DELETE", "/api/ml/schedules/{schedule}/", "A 403 403 403 204"),
    ("api/ml/schedules/<int:pk>/pause/", "POST", "/api/ml/schedules/{schedule}/pause/", ADMINS),
    ("api/ml/schedules/<int:pk>/resume/", "POST", "/api/ml/schedules/{schedule}/resume/", ADMINS),
    ("api/ml/schedules/<int:pk>/fire/", "POST", "/api/ml/schedules/{schedule}/fire/", "A 403 403 403 202"),
    # --- Pages: sign-in, home, annotate ---------------------------------------------------------
    ("favicon.ico", "GET", "/favicon.ico", "200 200 200 200 200"),
    ("accounts/login/", "GET", "/accounts/login/", "200 302 302 302 302"),
    ("accounts/login/", "POST", "/accounts/login/", "302 302 302 302 302", _login),
    ("accounts/logout/", "POST", "/accounts/logout/", "302 302 302 302 302"),
    ("", "GET", "/", PAGE_SIGNED_IN),
    ("annotate/", "GET", "/annotate/", "L 200 200 403 403"),
    # --- Curation pages ---------------------------------------------------------------------------
    ("curation/adjudication/", "GET", "/curation/adjudication/", PAGE_REVIEWERS),
    ("curation/adjudication/<int:pair_id>/", "GET", "/curation/adjudication/{pair}/", PAGE_REVIEWERS),
    (
        "curation/adjudication/<int:pair_id>/",
        "POST",
        "/curation/adjudication/{spare_pair}/",
        "L 403 403 302 302",
        _b(label="expected", comment=""),
    ),
    ("curation/agreement/", "GET", "/curation/agreement/", PAGE_REVIEWERS),
    ("curation/audit/", "GET", "/curation/audit/", PAGE_ADMINS),
    ("curation/dashboard/", "GET", "/curation/dashboard/", PAGE_ADMINS),
    ("curation/versions/", "GET", "/curation/versions/", PAGE_REVIEWERS),
    ("curation/versions/new/", "GET", "/curation/versions/new/", PAGE_ADMINS),
    (
        "curation/versions/new/",
        "POST",
        "/curation/versions/new/",
        "L 403 403 403 302",
        _b(name="v-page", outcomes="adjudicated"),
    ),
    ("curation/versions/<int:version_id>/", "GET", "/curation/versions/{version}/", PAGE_REVIEWERS),
    (
        "curation/versions/<int:a>/diff/<int:b>/",
        "GET",
        "/curation/versions/{version}/diff/{other_version}/",
        PAGE_REVIEWERS,
    ),
    (
        "curation/versions/<int:version_id>/exports/",
        "POST",
        "/curation/versions/{version}/exports/",
        "L 403 403 403 302",
        _b(format="webdataset"),
    ),
    ("curation/jobs/<int:job_id>/", "GET", "/curation/jobs/{job}/", PAGE_ADMINS),
    ("curation/imports/new/", "GET", "/curation/imports/new/", PAGE_ADMINS),
    (
        "curation/imports/new/",
        "POST",
        "/curation/imports/new/",
        "L 403 403 403 302",
        _b(path="prompts.json", format="prompts", dry_run="on"),
    ),
    # --- ML pages: admins only ------------------------------------------------------------------------
    ("ml/runs/", "GET", "/ml/runs/", PAGE_ADMINS),
    ("ml/runs/new/", "GET", "/ml/runs/new/?kind=generate", PAGE_ADMINS),
    ("ml/runs/new/", "POST", "/ml/runs/new/?kind=generate", "L 403 403 403 302", _run_form),
    ("ml/runs/<int:run_id>/", "GET", "/ml/runs/{run}/", PAGE_ADMINS),
    ("ml/runs/<int:run_id>/cancel/", "POST", "/ml/runs/{queued_run}/cancel/", "L 403 403 403 302"),
    ("ml/models/", "GET", "/ml/models/", PAGE_ADMINS),
    ("ml/models/compare/", "GET", "/ml/models/compare/?a={base_model}&b={model}", PAGE_ADMINS),
    ("ml/models/<int:model_id>/", "GET", "/ml/models/{model}/", PAGE_ADMINS),
    ("ml/models/<int:model_id>/activate/", "POST", "/ml/models/{model}/activate/", "L 403 403 403 302"),
    ("ml/images/<int:image_id>/origin/", "GET", "/ml/images/{generated_image}/origin/", PAGE_ADMINS),
    ("ml/schedules/", "GET", "/ml/schedules/", PAGE_ADMINS),
    ("ml/schedules/new/", "GET", "/ml/schedules/new/", PAGE_ADMINS),
    ("ml/schedules/new/", "POST", "/ml/schedules/new/", "L 403 403 403 302", _schedule_form),
    ("ml/schedules/<int:schedule_id>/edit/", "GET", "/ml/schedules/{schedule}/edit/", PAGE_ADMINS),
    (
        "ml/schedules/<int:schedule_id>/edit/",
        "POST",
        "/ml/schedules/{schedule}/edit/",
        "L 403 403 403 302",
        _schedule_form,
    ),
    ("ml/schedules/<int:schedule_id>/delete/", "GET", "/ml/schedules/{schedule}/delete/", PAGE_ADMINS),
    ("ml/schedules/<int:schedule_id>/delete/", "POST", "/ml/schedules/{schedule}/delete/", "L 403 403 403 302"),
    ("ml/schedules/<int:schedule_id>/pause/", "POST", "/ml/schedules/{schedule}/pause/", "L 403 403 403 302"),
    ("ml/schedules/<int:schedule_id>/resume/", "POST", "/ml/schedules/{schedule}/resume/", "L 403 403 403 302"),
    ("ml/schedules/<int:schedule_id>/fire/", "POST", "/ml/schedules/{schedule}/fire/", "L 403 403 403 302"),
    # --- The Django admin: representative rows (every admin page: test_only_staff_...) --------
    ("admin/", "GET", "/admin/", "302 302 302 302 200"),
    ("admin/annotation/pair/", "GET", "/admin/annotation/pair/", "302 302 302 302 200"),
    ("admin/auth/user/", "GET", "/admin/auth/user/", "302 302 302 302 200"),
]

FORMAT_SUFFIX = "\\.(?P<format>[a-z0-9]+)/?$"


def _cell(route, method, path, answers, body=None, multipart=False) -> Cell:
    parsed = tuple(answers.split())
    assert len(parsed) == len(ROLES), (route, method)
    return Cell(route, method, path, parsed, body, multipart)


# The pages of issue 16, each area in its own module (they were built side by side).
_ROWS += annotator_pages.ROWS + reviewer_pages.ROWS + admin_pages.ROWS + ml_pages.ROWS

CELLS = [_cell(*row) for row in _ROWS]
ADMIN_SITE_PREFIX = "admin/"
