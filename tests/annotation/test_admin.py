"""The Django admin: every page loads for admins, annotators are sent to the login page, and
pair changes go through the catalog services."""

import pytest

from annotation.models import Expertise, Pair, PromptTuple
from annotation.services import catalog, queue
from tests.support.factories import TupleFactory, make_image, make_pair, make_user


@pytest.fixture
def service_calls(monkeypatch):
    """Records the catalog services the admin calls (and still runs them)."""
    calls = []

    def spy(name):
        real = getattr(catalog, name)

        def record(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)

        return record

    for name in ("create_pair", "set_pair_k", "set_pair_retired"):
        monkeypatch.setattr(catalog, name, spy(name))
    return calls


@pytest.fixture
def world(annotator):
    """One of every model: a pair judged by `annotator` (so a lease and a judgement exist)."""
    pair = make_pair("RU")
    lease = queue.next_lease(annotator)
    judgement, _ = queue.submit_judgement(annotator, lease.id, queue.JudgementInput(choice="left"))
    return {
        "discipline": pair.tuple.task.discipline_id,
        "task": pair.tuple.task_id,
        "prompttuple": pair.tuple_id,
        "image": pair.image_correct_id,
        "pair": pair.id,
        "lease": lease.id,
        "judgement": judgement.id,
        "expertise": Expertise.objects.get(user=annotator).id,
        "user": annotator.id,
    }


MODELS = [
    ("annotation", "discipline"),
    ("annotation", "task"),
    ("annotation", "prompttuple"),
    ("annotation", "image"),
    ("annotation", "pair"),
    ("annotation", "lease"),
    ("annotation", "judgement"),
    ("annotation", "expertise"),
    ("auth", "user"),
]
PAGES = [pytest.param(f"/admin/{app}/{model}/", id=f"{model}-changelist") for app, model in MODELS] + [
    pytest.param(f"/admin/{app}/{model}/{{{model}}}/change/", id=f"{model}-change") for app, model in MODELS
]


@pytest.mark.parametrize("page", PAGES)
def test_it_shows_every_admin_page_to_an_admin(client, admin_user, world, page):
    client.force_login(admin_user)
    assert client.get(page.format(**world)).status_code == 200


@pytest.mark.parametrize("page", PAGES)
def test_it_sends_an_annotator_to_the_admin_login(client, annotator, world, page):
    client.force_login(annotator)
    response = client.get(page.format(**world))
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize(
    ("model", "status"),
    [
        ("discipline", 200),
        ("task", 200),
        ("prompttuple", 200),
        ("pair", 200),
        ("expertise", 200),
        ("image", 403),
        ("lease", 403),
        ("judgement", 403),
    ],
)
def test_it_offers_add_pages_only_where_the_admin_may_create(client, admin_user, model, status):
    client.force_login(admin_user)
    assert client.get(f"/admin/annotation/{model}/add/").status_code == status


@pytest.mark.parametrize("model", ["lease", "judgement"])
def test_it_shows_leases_and_judgements_read_only(client, admin_user, world, model):
    client.force_login(admin_user)
    page = client.get(f"/admin/annotation/{model}/{world[model]}/change/").content.decode()
    assert 'name="_save"' not in page
    assert client.post(f"/admin/annotation/{model}/{world[model]}/change/", {}).status_code == 403


def test_it_previews_an_image_through_the_reviewer_file_endpoint(client, admin_user, world):
    client.force_login(admin_user)
    page = client.get(f"/admin/annotation/image/{world['image']}/change/").content.decode()
    assert f'src="/api/images/{world["image"]}/file/"' in page
    assert client.get(f"/api/images/{world['image']}/file/").status_code == 200


def test_it_edits_expertise_inline_on_the_user(client, admin_user, world):
    client.force_login(admin_user)
    page = client.get(f"/admin/auth/user/{world['user']}/change/").content.decode()
    assert 'name="expertise-0-disciplines"' in page
    assert "annotator" in client.get("/admin/auth/user/").content.decode()


def test_it_creates_a_pair_through_the_service(client, admin_user, service_calls):
    tuple_ = TupleFactory()
    a, b = make_image(tuple=tuple_), make_image(tuple=tuple_)
    client.force_login(admin_user)
    response = client.post(
        "/admin/annotation/pair/add/", {"tuple": tuple_.id, "image_correct": a.id, "image_wrong": b.id, "k": 5}
    )
    assert response.status_code == 302, response.content.decode()
    pair = Pair.objects.get()
    assert (pair.tuple_id, pair.k, pair.status, pair.judgement_count) == (tuple_.id, 5, "open", 0)
    assert service_calls == ["create_pair"]


def test_it_refuses_a_pair_of_one_image_twice(client, admin_user):
    tuple_ = TupleFactory()
    a = make_image(tuple=tuple_)
    client.force_login(admin_user)
    response = client.post(
        "/admin/annotation/pair/add/", {"tuple": tuple_.id, "image_correct": a.id, "image_wrong": a.id, "k": 3}
    )
    assert response.status_code == 200
    assert not Pair.objects.exists()


def test_it_retires_a_pair_and_sets_k_through_the_services(client, admin_user, world, service_calls):
    client.force_login(admin_user)
    url = f"/admin/annotation/pair/{world['pair']}/change/"
    assert client.post(url, {"status": "retired", "k": 4}).status_code == 302
    pair = Pair.objects.get(pk=world["pair"])
    assert (pair.status, pair.k, pair.judgement_count) == ("retired", 4, 1)
    assert client.post(url, {"status": "open", "k": 1}).status_code == 302
    pair.refresh_from_db()
    assert (pair.status, pair.k) == ("complete", 1)  # un-retired: one judgement meets k = 1
    assert service_calls == ["set_pair_k", "set_pair_retired"] * 2


def test_it_refuses_k_below_the_judgement_count(client, admin_user, world):
    colleague = make_user("ann-chem-2", "annotator", disciplines=["chemistry"])
    queue.submit_judgement(colleague, queue.next_lease(colleague).id, queue.JudgementInput(choice="right"))
    client.force_login(admin_user)
    response = client.post(f"/admin/annotation/pair/{world['pair']}/change/", {"status": "open", "k": 1})
    assert response.status_code == 200
    assert "already has 2 judgements" in response.content.decode()
    assert Pair.objects.get(pk=world["pair"]).k == 3


def test_it_retires_pairs_with_the_bulk_action(client, admin_user):
    pairs = [make_pair("RU"), make_pair("BU")]
    client.force_login(admin_user)
    response = client.post("/admin/annotation/pair/", {"action": "retire", "_selected_action": [p.id for p in pairs]})
    assert response.status_code == 302
    assert set(Pair.objects.values_list("status", flat=True)) == {"retired"}


def test_it_refuses_a_duplicate_tuple_in_the_admin(client, admin_user):
    existing = TupleFactory()
    client.force_login(admin_user)
    response = client.post(
        "/admin/annotation/prompttuple/add/",
        {
            "implicit_prompt": existing.implicit_prompt.upper(),
            "task": existing.task_id,
            "scene": "simple",
            "provenance": "{}",
            "images-TOTAL_FORMS": 0,
            "images-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200
    assert f"Tuple {existing.id} already has this implicit prompt and task" in response.content.decode()
    assert PromptTuple.objects.count() == 1
