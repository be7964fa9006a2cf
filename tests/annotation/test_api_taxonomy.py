"""/api/disciplines/ and /api/tasks/: everyone signed in reads, admins write, deleting what is in use is a 409."""

import pytest

from annotation.models import Discipline, Task
from tests.support.factories import TupleFactory


@pytest.fixture
def as_admin(api, admin_user):
    api.force_authenticate(admin_user)
    return api


def test_it_lists_the_sixteen_seeded_tasks_with_code_name_discipline_and_kind(api, annotator):
    api.force_authenticate(annotator)
    body = api.get("/api/tasks/").json()
    assert body["count"] == 16
    bu = next(t for t in body["results"] if t["code"] == "BU")
    assert {k: bu[k] for k in ("code", "name", "discipline", "kind")} == {
        "code": "BU",
        "name": "Buoyancy",
        "discipline": "physics",
        "kind": "ST",
    }


def test_it_filters_tasks_by_discipline_and_kind(api, annotator):
    api.force_authenticate(annotator)
    codes = {t["code"] for t in api.get("/api/tasks/?discipline=chemistry&kind=ST").json()["results"]}
    assert codes == {"IM", "FR"}


def test_it_refuses_an_unknown_kind_filter(api, annotator):
    api.force_authenticate(annotator)
    assert api.get("/api/tasks/?kind=XX").status_code == 400


def test_it_lists_disciplines_by_name(api, annotator):
    api.force_authenticate(annotator)
    assert [d["slug"] for d in api.get("/api/disciplines/").json()["results"]] == ["biology", "chemistry", "physics"]


def test_it_lets_an_admin_add_a_discipline_and_a_task(as_admin):
    assert as_admin.post("/api/disciplines/", {"slug": "geology", "name": "Geology"}, format="json").status_code == 201
    response = as_admin.post(
        "/api/tasks/", {"code": "er", "name": "Erosion", "discipline": "geology", "kind": "CT"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["code"] == "ER"
    assert Task.objects.get(code="ER").discipline.slug == "geology"


def test_it_refuses_a_duplicate_task_code_in_any_case(as_admin):
    response = as_admin.post(
        "/api/tasks/", {"code": "bu", "name": "Buoyancy again", "discipline": "physics", "kind": "ST"}, format="json"
    )
    assert response.status_code == 400
    assert "code" in response.json()


def test_it_refuses_a_task_code_that_cannot_sit_in_a_url(as_admin):
    response = as_admin.post(
        "/api/tasks/", {"code": "A/B", "name": "Slash", "discipline": "physics", "kind": "ST"}, format="json"
    )
    assert response.status_code == 400


def test_it_refuses_a_task_of_an_unknown_discipline(as_admin):
    response = as_admin.post(
        "/api/tasks/", {"code": "XX", "name": "Nowhere", "discipline": "alchemy", "kind": "ST"}, format="json"
    )
    assert response.status_code == 400
    assert "discipline" in response.json()


def test_it_moves_a_task_to_another_discipline(as_admin):
    assert as_admin.patch("/api/tasks/RU/", {"discipline": "physics"}, format="json").status_code == 200
    assert Task.objects.get(code="RU").discipline.slug == "physics"


def test_it_answers_409_when_deleting_a_discipline_with_tasks(as_admin):
    response = as_admin.delete("/api/disciplines/physics/")
    assert response.status_code == 409
    assert "9 tasks" in response.json()["detail"]
    assert Discipline.objects.filter(slug="physics").exists()


def test_it_answers_409_when_deleting_a_task_with_tuples(as_admin):
    TupleFactory()
    TupleFactory()
    response = as_admin.delete("/api/tasks/RU/")
    assert response.status_code == 409
    assert "2 prompt tuples" in response.json()["detail"]
    assert Task.objects.filter(code="RU").exists()


def test_it_deletes_an_unused_task(as_admin):
    assert as_admin.delete("/api/tasks/GR/").status_code == 204
    assert not Task.objects.filter(code="GR").exists()


def test_it_pages_by_page_size_up_to_500(as_admin):
    Discipline.objects.bulk_create(Discipline(slug=f"d{i:03}", name=f"Discipline {i:03}") for i in range(510))
    assert len(as_admin.get("/api/disciplines/?page_size=5").json()["results"]) == 5
    assert len(as_admin.get("/api/disciplines/").json()["results"]) == 50
    assert len(as_admin.get("/api/disciplines/?page_size=10000").json()["results"]) == 500
