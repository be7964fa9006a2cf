"""/api/tuples/ and /api/pairs/: reviewers read, admins write through the catalog services."""

import pytest

from annotation.models import Pair, PromptTuple, Task
from annotation.services import catalog, queue
from curation.services import judging
from tests.support.factories import TupleFactory, make_image, make_pair, make_user


@pytest.fixture
def as_admin(api, admin_user):
    api.force_authenticate(admin_user)
    return api


@pytest.fixture
def as_reviewer(api, reviewer):
    api.force_authenticate(reviewer)
    return api


def judge(user, choice="left"):
    lease = queue.next_lease(user)
    return judging.judge(user, lease.id, queue.JudgementInput(choice=choice))[0]


# --- Tuples ---------------------------------------------------------------------------------


def test_it_shows_reviewers_every_field_of_a_tuple(as_reviewer):
    tuple_ = TupleFactory(scene="complex", source="reality_simple_300.json", provenance={"row": 7})
    body = as_reviewer.get(f"/api/tuples/{tuple_.id}/").json()
    assert body["implicit_prompt"] == tuple_.implicit_prompt
    assert body["explicit_prompt"] == tuple_.explicit_prompt
    assert body["superficial_prompt"] == tuple_.superficial_prompt
    assert (body["task"], body["discipline"], body["subject"], body["scene"]) == ("RU", "chemistry", "nail", "complex")
    assert (body["source"], body["provenance"]) == ("reality_simple_300.json", {"row": 7})


def test_it_creates_a_tuple(as_admin):
    response = as_admin.post(
        "/api/tuples/",
        {
            "implicit_prompt": "An unripe mango, simple and realistic.",
            "explicit_prompt": "A hard, green mango.",
            "superficial_prompt": "A ripe yellow-orange mango.",
            "task": "ri",
            "subject": "mango",
            "provenance": {"file": "ripeness.json"},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["task"], body["discipline"], body["scene"]) == ("RI", "biology", "simple")
    assert PromptTuple.objects.get(pk=body["id"]).provenance == {"file": "ripeness.json"}


def test_it_answers_200_with_the_stored_tuple_for_a_duplicate_and_merges_new_fields(as_admin):
    first = as_admin.post("/api/tuples/", {"implicit_prompt": "An unripe mango.", "task": "RI"}, format="json")
    again = as_admin.post(
        "/api/tuples/",
        {"implicit_prompt": "  an UNRIPE mango ", "task": "RI", "explicit_prompt": "A green mango."},
        format="json",
    )
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["explicit_prompt"] == "A green mango."
    assert again.json()["implicit_prompt"] == "An unripe mango."
    assert PromptTuple.objects.count() == 1


def test_it_keeps_the_stored_scene_on_a_duplicate_without_scene(as_admin):
    as_admin.post("/api/tuples/", {"implicit_prompt": "A mango.", "task": "RI", "scene": "complex"}, format="json")
    again = as_admin.post("/api/tuples/", {"implicit_prompt": "A mango.", "task": "RI"}, format="json")
    assert again.json()["scene"] == "complex"


def test_it_treats_the_same_prompt_under_another_task_as_another_tuple(as_admin):
    as_admin.post("/api/tuples/", {"implicit_prompt": "A mango.", "task": "RI"}, format="json")
    other = as_admin.post("/api/tuples/", {"implicit_prompt": "A mango.", "task": "SC"}, format="json")
    assert other.status_code == 201


def test_it_creates_a_tuple_without_a_task(as_admin):
    response = as_admin.post("/api/tuples/", {"implicit_prompt": "A floating brick."}, format="json")
    assert response.status_code == 201
    assert (response.json()["task"], response.json()["discipline"]) == (None, None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"implicit_prompt": "   ", "task": "RI"}, "implicit_prompt"),
        ({"implicit_prompt": "A mango.", "task": "ZZ"}, "task"),
        ({"implicit_prompt": "A mango.", "scene": "medium"}, "scene"),
        ({"implicit_prompt": "A mango.", "provenance": [1, 2]}, "provenance"),
    ],
)
def test_it_refuses_an_invalid_tuple(as_admin, body, field):
    response = as_admin.post("/api/tuples/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_it_patches_a_tuple_without_erasing_or_changing_its_identity(as_admin):
    tuple_ = TupleFactory(scene="complex")
    response = as_admin.patch(
        f"/api/tuples/{tuple_.id}/",
        {"superficial_prompt": "A bright silver nail.", "explicit_prompt": "", "implicit_prompt": "Changed?"},
        format="json",
    )
    assert response.status_code == 200, response.content
    tuple_.refresh_from_db()
    assert tuple_.superficial_prompt == "A bright silver nail."
    assert tuple_.explicit_prompt.startswith("A rusty brown nail")  # empty never erases
    assert tuple_.implicit_prompt.startswith("A metal nail")  # identity is fixed
    assert tuple_.scene == "complex"  # not given, not reset


def test_it_filters_tuples_by_task_discipline_and_scene(as_reviewer):
    rust = TupleFactory(scene="simple")
    TupleFactory(scene="complex")
    buoyancy = TupleFactory(task=Task.objects.get(code="BU"))

    def ids(query):
        return {t["id"] for t in as_reviewer.get(f"/api/tuples/?{query}").json()["results"]}

    assert ids("task=BU") == {buoyancy.id}
    assert ids("discipline=chemistry&scene=simple") == {rust.id}
    assert len(ids("")) == 3


def test_it_never_shows_tuples_to_annotators(api, annotator):
    tuple_ = TupleFactory()
    api.force_authenticate(annotator)
    assert api.get("/api/tuples/").status_code == 403
    response = api.get(f"/api/tuples/{tuple_.id}/")
    assert response.status_code == 403
    assert tuple_.explicit_prompt not in response.content.decode()


# --- Pairs ----------------------------------------------------------------------------------


def test_it_shows_a_pair_with_its_counters(as_reviewer, annotator):
    pair = make_pair("RU", k=2)
    judge(annotator)
    body = as_reviewer.get(f"/api/pairs/{pair.id}/").json()
    assert body == {
        "id": pair.id,
        "tuple": pair.tuple_id,
        "task": "RU",
        "image_correct": pair.image_correct_id,
        "image_wrong": pair.image_wrong_id,
        "status": "open",
        "k": 2,
        "judgement_count": 1,
        "created_at": body["created_at"],
    }


def test_it_creates_a_pair_and_answers_200_for_the_same_pair_again(as_admin, settings):
    tuple_ = TupleFactory()
    a, b = make_image(tuple=tuple_), make_image(tuple=tuple_)
    body = {"tuple": tuple_.id, "image_correct": a.id, "image_wrong": b.id}
    first = as_admin.post("/api/pairs/", body, format="json")
    again = as_admin.post("/api/pairs/", {**body, "k": 7}, format="json")
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["k"] == settings.DEFAULT_OVERLAP_K
    assert again.json() == first.json()  # the existing pair, unchanged
    assert Pair.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"image_wrong": "same"}, "image_wrong"),
        ({"image_wrong": 999999}, "image_wrong"),
        ({"tuple": 999999}, "tuple"),
        ({"k": 0}, "k"),
    ],
)
def test_it_refuses_an_invalid_pair(as_admin, change, field):
    tuple_ = TupleFactory()
    a, b = make_image(), make_image()
    body = {"tuple": tuple_.id, "image_correct": a.id, "image_wrong": b.id, **change}
    if body["image_wrong"] == "same":
        body["image_wrong"] = a.id
    response = as_admin.post("/api/pairs/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Pair.objects.exists()


def test_it_sets_k_and_completes_a_pair_that_has_enough_judgements(as_admin, annotator):
    pair = make_pair("RU", k=3)
    judge(annotator)
    response = as_admin.patch(f"/api/pairs/{pair.id}/", {"k": 1}, format="json")
    assert response.status_code == 200
    assert (response.json()["k"], response.json()["status"]) == (1, "complete")


def test_it_refuses_k_below_the_judgements_already_made(as_admin, annotator):
    pair = make_pair("RU", k=3)
    judge(annotator)
    judge(make_user("ann-chem-2", "annotator", disciplines=["chemistry"]))
    response = as_admin.patch(f"/api/pairs/{pair.id}/", {"k": 1}, format="json")
    assert response.status_code == 400
    assert "2 judgements" in response.json()["k"][0]
    pair.refresh_from_db()
    assert pair.k == 3


def test_it_retires_and_unretires_a_pair(as_admin):
    pair = make_pair("RU")
    assert as_admin.patch(f"/api/pairs/{pair.id}/", {"status": "retired"}, format="json").json()["status"] == "retired"
    assert as_admin.patch(f"/api/pairs/{pair.id}/", {"status": "complete"}, format="json").json()["status"] == "open"


def test_it_never_writes_the_counter_from_a_patch(as_admin):
    pair = make_pair("RU")
    response = as_admin.patch(f"/api/pairs/{pair.id}/", {"judgement_count": 2, "k": 5}, format="json")
    assert response.status_code == 200
    assert (response.json()["judgement_count"], response.json()["k"]) == (0, 5)


def test_it_refuses_an_empty_patch(as_admin):
    pair = make_pair("RU")
    assert as_admin.patch(f"/api/pairs/{pair.id}/", {}, format="json").status_code == 400


def test_it_filters_pairs_by_status_and_task(as_reviewer):
    rust = make_pair("RU")
    retired = make_pair("RU")
    buoyancy = make_pair("BU")
    catalog.set_pair_retired(retired.id, True)

    def ids(query):
        return {p["id"] for p in as_reviewer.get(f"/api/pairs/?{query}").json()["results"]}

    assert ids("status=open") == {rust.id, buoyancy.id}
    assert ids("status=retired") == {retired.id}
    assert ids("task=ru&status=open") == {rust.id}
    assert ids(f"tuple={buoyancy.tuple_id}") == {buoyancy.id}


@pytest.mark.parametrize("query", ["status=finished", "tuple=abc"])
def test_it_refuses_a_malformed_pair_filter(as_reviewer, query):
    assert as_reviewer.get(f"/api/pairs/?{query}").status_code == 400


def test_it_refuses_prompts_longer_than_the_importers_accept(as_admin):
    # A 4 MB prompt used to reach the database and fail on the size of an index row (answered as an outage).
    from annotation.models import PROMPT_MAX_CHARS

    huge = as_admin.post("/api/tuples/", {"implicit_prompt": "x" * 4_000_000}, format="json")
    assert huge.status_code == 400 and "implicit_prompt" in huge.json()
    at_limit = as_admin.post("/api/tuples/", {"implicit_prompt": "y" * PROMPT_MAX_CHARS}, format="json")
    assert at_limit.status_code == 201, at_limit.json()
    tuple_id = at_limit.json()["id"]
    for field in ("explicit_prompt", "superficial_prompt"):
        response = as_admin.patch(f"/api/tuples/{tuple_id}/", {field: "z" * (PROMPT_MAX_CHARS + 1)}, format="json")
        assert response.status_code == 400 and field in response.json()
    paraphrase = as_admin.patch(
        f"/api/tuples/{tuple_id}/", {"implicit_paraphrases": ["p" * (PROMPT_MAX_CHARS + 1)]}, format="json"
    )
    assert paraphrase.status_code == 400
