"""Who may call what: the permission matrix of the catalogue API, token and session auth, /api/me/."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from annotation.models import Discipline
from annotation.services import queue
from curation.services import judging
from tests.support.factories import make_image, make_pair, make_user, png_bytes

ROLES = ("anonymous", "annotator", "reviewer", "admin")
ANON = "401/403"  # DRF answers 403 while session auth is the first authenticator, 401 otherwise


def _upload(w):
    return {"file": SimpleUploadedFile("new.png", png_bytes(), content_type="image/png")}


# (method, path, body, anonymous, annotator, reviewer, admin); {names} come from the `world` fixture.
MATRIX = [
    ("get", "/api/me/", None, ANON, 200, 200, 200),
    ("get", "/api/disciplines/", None, ANON, 200, 200, 200),
    ("get", "/api/disciplines/chemistry/", None, ANON, 200, 200, 200),
    ("post", "/api/disciplines/", lambda w: {"slug": "geology", "name": "Geology"}, ANON, 403, 403, 201),
    ("patch", "/api/disciplines/chemistry/", lambda w: {"name": "Chemistry (all)"}, ANON, 403, 403, 200),
    ("delete", "/api/disciplines/astronomy/", None, ANON, 403, 403, 204),
    ("delete", "/api/disciplines/chemistry/", None, ANON, 403, 403, 409),
    ("get", "/api/tasks/", None, ANON, 200, 200, 200),
    ("get", "/api/tasks/RU/", None, ANON, 200, 200, 200),
    (
        "post",
        "/api/tasks/",
        lambda w: {"code": "TI", "name": "Tides", "discipline": "physics", "kind": "CT"},
        ANON,
        403,
        403,
        201,
    ),
    ("patch", "/api/tasks/RU/", lambda w: {"description": "Iron oxidises."}, ANON, 403, 403, 200),
    ("delete", "/api/tasks/RU/", None, ANON, 403, 403, 409),
    ("get", "/api/tuples/", None, ANON, 403, 200, 200),
    ("get", "/api/tuples/{tuple}/", None, ANON, 403, 200, 200),
    ("post", "/api/tuples/", lambda w: {"implicit_prompt": "Ice left in the sun.", "task": "ME"}, ANON, 403, 403, 201),
    ("patch", "/api/tuples/{tuple}/", lambda w: {"subject": "bolt"}, ANON, 403, 403, 200),
    ("delete", "/api/tuples/{tuple}/", None, ANON, 403, 403, 405),
    ("get", "/api/images/", None, ANON, 403, 200, 200),
    ("get", "/api/images/{image}/", None, ANON, 403, 200, 200),
    ("get", "/api/images/{image}/file/", None, ANON, 403, 200, 200),
    ("post", "/api/images/", _upload, ANON, 403, 403, 201),
    ("delete", "/api/images/{image}/", None, ANON, 403, 403, 405),
    ("get", "/api/pairs/", None, ANON, 403, 200, 200),
    ("get", "/api/pairs/{pair}/", None, ANON, 403, 200, 200),
    (
        "post",
        "/api/pairs/",
        lambda w: {"tuple": w["tuple"], "image_correct": w["new_a"], "image_wrong": w["new_b"]},
        ANON,
        403,
        403,
        201,
    ),
    ("patch", "/api/pairs/{pair}/", lambda w: {"k": 4}, ANON, 403, 403, 200),
    ("delete", "/api/pairs/{pair}/", None, ANON, 403, 403, 405),
    ("get", "/api/judgements/", None, ANON, 200, 200, 200),
    ("get", "/api/judgements/{judgement}/", None, ANON, 200, 200, 200),
    ("post", "/api/judgements/", lambda w: {"pair": w["pair"], "choice": "left"}, ANON, 405, 405, 405),
]

CASES = [
    pytest.param(method, path, body, role, expected, id=f"{method} {path} as {role}")
    for method, path, body, *codes in MATRIX
    for role, expected in zip(ROLES, codes, strict=True)
]


@pytest.fixture
def users(annotator, reviewer, admin_user):
    return {"annotator": annotator, "reviewer": reviewer, "admin": admin_user}


@pytest.fixture
def world(annotator):
    """A judged pair (by `annotator`), two spare images and a discipline nothing uses."""
    pair = make_pair("RU")
    lease = queue.next_lease(annotator)
    judgement, _ = judging.judge(annotator, lease.id, queue.JudgementInput(choice="left"))
    Discipline.objects.create(slug="astronomy", name="Astronomy")
    return {
        "tuple": pair.tuple_id,
        "pair": pair.id,
        "image": pair.image_correct_id,
        "judgement": judgement.id,
        "new_a": make_image().id,
        "new_b": make_image().id,
    }


@pytest.mark.parametrize(("method", "path", "body", "role", "expected"), CASES)
def test_it_enforces_the_permission_matrix(api, users, world, method, path, body, role, expected):
    if role != "anonymous":
        api.force_authenticate(users[role])
    data = body(world) if body else None
    fmt = "multipart" if data and any(isinstance(v, SimpleUploadedFile) for v in data.values()) else "json"
    response = getattr(api, method)(path.format(**world), data, format=fmt)
    if expected == ANON:
        assert response.status_code in (401, 403), response.content
    else:
        assert response.status_code == expected, response.content


def test_it_issues_a_token_that_authenticates(api, reviewer):
    response = api.post("/api/auth/token/", {"username": "rev", "password": "pw-for-tests-1"}, format="json")
    assert response.status_code == 200
    api.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert api.get("/api/me/").json()["username"] == "rev"


def test_it_refuses_a_token_for_a_wrong_password(api, reviewer):
    response = api.post("/api/auth/token/", {"username": "rev", "password": "nope"}, format="json")
    assert response.status_code == 400
    assert "token" not in response.json()


def test_it_rejects_an_unknown_token(api, reviewer):
    api.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    response = api.get("/api/me/")
    assert response.status_code in (401, 403)
    assert "Invalid token" in response.json()["detail"]


def test_it_accepts_a_session(client, reviewer):
    assert client.login(username="rev", password="pw-for-tests-1")
    assert client.get("/api/tuples/").status_code == 200


def test_it_describes_the_signed_in_annotator(api, annotator):
    api.force_authenticate(annotator)
    assert api.get("/api/me/").json() == {
        "username": "ann-chem",
        "roles": ["annotator"],
        "expertise": {"disciplines": ["chemistry"], "tasks": []},
    }


def test_it_lists_task_expertise(api, db):
    user = make_user("expert", "annotator", disciplines=["physics"], tasks=["RU", "BU"])
    api.force_authenticate(user)
    assert api.get("/api/me/").json()["expertise"] == {"disciplines": ["physics"], "tasks": ["BU", "RU"]}


def test_it_counts_a_superuser_as_admin(api, admin_user):
    api.force_authenticate(admin_user)
    assert api.get("/api/me/").json()["roles"] == ["admin"]
