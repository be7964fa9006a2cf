"""Gold items: marking, changing and unmarking (curation.services.gold) through the API, the
command and the admin; audit events and permissions."""

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command

from annotation.models import Pair
from curation.models import AnnotatorQuality, Consensus, GoldItem
from curation.services import gold
from tests.support.audit import events
from tests.support.factories import make_pair
from tests.support.judging import chemist, judge

pytestmark = pytest.mark.django_db


def _mark(api, user, pair_id, answer="expected"):
    api.force_authenticate(user)
    return api.post("/api/curation/gold/", {"pair": pair_id, "answer": answer}, format="json")


def test_it_marks_a_pair_gold_with_its_answer_and_audits_it(api, admin_user):
    pair = make_pair("RU")
    response = _mark(api, admin_user, pair.id, "other")
    assert response.status_code == 201
    assert response.json() == {
        "pair": pair.id,
        "answer": "other",
        "qualification": False,
        "created_by": "boss",
        "created_at": response.json()["created_at"],
    }
    pair.refresh_from_db()
    assert pair.is_gold and GoldItem.objects.get(pair=pair).answer == "other"
    [event] = events("gold.marked", pair)
    assert event.actor == admin_user
    assert event.before["is_gold"] is False and event.after == {**event.before, "is_gold": True, "answer": "other"}


def test_it_treats_the_same_answer_again_as_a_no_op_and_audits_a_changed_answer(api, admin_user):
    pair = make_pair("RU")
    _mark(api, admin_user, pair.id, "expected")
    again = _mark(api, admin_user, pair.id, "expected")
    assert again.status_code == 200 and again.json()["answer"] == "expected"
    changed = _mark(api, admin_user, pair.id, "both")
    assert changed.status_code == 200 and changed.json()["answer"] == "both"
    assert len(events("gold.marked", pair)) == 1
    [event] = events("gold.changed", pair)
    assert (event.before["answer"], event.after["answer"]) == ("expected", "both")


def test_it_reopens_a_complete_judged_pair_and_drops_its_consensus(api, admin_user, settings):
    settings.GOLD_RATE = 0
    pair = make_pair("RU", k=1)
    judge(chemist(), pair, "expected")
    pair.refresh_from_db()
    assert pair.status == Pair.Status.COMPLETE and Consensus.objects.filter(pair=pair).exists()
    _mark(api, admin_user, pair.id)
    pair.refresh_from_db()
    assert (pair.is_gold, pair.status, pair.judgement_count) == (True, Pair.Status.OPEN, 1)
    assert not Consensus.objects.filter(pair=pair).exists()


def test_it_unmarks_a_gold_pair_raising_k_to_its_judgements(api, admin_user, settings):
    settings.GOLD_RATE = 1
    pair = make_pair("RU", k=1)
    _mark(api, admin_user, pair.id)
    for _ in range(2):
        judge(chemist(), pair, "expected")
    response = api.delete(f"/api/curation/gold/{pair.id}/")
    assert response.status_code == 204
    pair.refresh_from_db()
    assert (pair.is_gold, pair.k, pair.judgement_count, pair.status) == (False, 2, 2, Pair.Status.COMPLETE)
    assert not GoldItem.objects.filter(pair=pair).exists()
    assert Consensus.objects.get(pair=pair).outcome == Consensus.Outcome.CONFIRMED
    [event] = events("gold.unmarked", pair)
    assert event.before["answer"] == "expected" and event.after["is_gold"] is False
    assert api.delete(f"/api/curation/gold/{pair.id}/").status_code == 404


def test_it_keeps_k_and_reopens_an_unmarked_pair_with_few_judgements(admin_user):
    pair = make_pair("RU", k=3)
    gold.mark_gold(admin_user, pair.id, "expected")
    unmarked = gold.unmark_gold(admin_user, pair.id)
    assert (unmarked.k, unmarked.status, unmarked.is_gold) == (3, Pair.Status.OPEN, False)


def test_it_lists_gold_items_for_reviewers(api, admin_user, reviewer):
    first, second = make_pair("RU"), make_pair("RU")
    gold.mark_gold(admin_user, first.id, "expected")
    gold.mark_gold(admin_user, second.id, "neither")
    api.force_authenticate(reviewer)
    response = api.get("/api/curation/gold/")
    assert response.status_code == 200
    assert [(row["pair"], row["answer"]) for row in response.json()["results"]] == [
        (second.id, "neither"),
        (first.id, "expected"),
    ]


@pytest.mark.parametrize("who", ["annotator", "reviewer"])
def test_it_lets_only_admins_mark_and_unmark(api, request, admin_user, who):
    user = request.getfixturevalue(who)
    pair = make_pair("RU")
    assert _mark(api, user, pair.id).status_code == 403
    gold.mark_gold(admin_user, pair.id, "expected")
    assert api.delete(f"/api/curation/gold/{pair.id}/").status_code == 403
    assert Pair.objects.get(pk=pair.id).is_gold


def test_it_refuses_annotators_the_gold_list_and_anonymous_users_everything(api, annotator):
    api.force_authenticate(annotator)
    assert api.get("/api/curation/gold/").status_code == 403
    api.force_authenticate(None)
    assert api.get("/api/curation/gold/").status_code == 401


def test_it_answers_404_for_an_unknown_pair_and_400_for_a_bad_answer(api, admin_user):
    assert _mark(api, admin_user, 999_999).status_code == 404
    response = _mark(api, admin_user, make_pair("RU").id, "left")
    assert response.status_code == 400 and "answer" in response.json()


def test_it_refuses_non_admins_in_the_service(annotator):
    with pytest.raises(PermissionDenied):
        gold.mark_gold(annotator, make_pair("RU").id, "expected")


def test_it_marks_and_unmarks_from_the_command_line(capsys):
    pair = make_pair("RU")
    call_command("mark_gold", str(pair.id), "--answer", "other")
    assert "is gold now, answer other" in capsys.readouterr().out
    assert GoldItem.objects.get(pair=pair).answer == "other"
    [event] = events("gold.marked", pair)
    assert event.actor is None
    call_command("mark_gold", str(pair.id), "--unmark")
    assert "normal pair again" in capsys.readouterr().out
    assert not Pair.objects.get(pk=pair.id).is_gold


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--unmark"], "is not a gold item"), (["--answer", "both", "--unmark"], "either"), ([], "either")],
)
def test_it_explains_command_line_mistakes(args, message):
    pair = make_pair("RU")
    with pytest.raises(CommandError, match=message):
        call_command("mark_gold", str(pair.id), *args)


def test_it_names_an_unknown_pair_on_the_command_line(db):
    with pytest.raises(CommandError, match="No pair 999999"):
        call_command("mark_gold", "999999", "--answer", "expected")


def test_it_marks_changes_and_unmarks_through_the_django_admin(client, admin_user):
    pair = make_pair("RU")
    client.force_login(admin_user)
    assert client.post("/admin/curation/golditem/add/", {"pair": pair.id, "answer": "both"}).status_code == 302
    item = GoldItem.objects.get(pair=pair)
    assert Pair.objects.get(pk=pair.id).is_gold and events("gold.marked", pair)[0].actor == admin_user
    client.post(f"/admin/curation/golditem/{item.id}/change/", {"answer": "neither"})
    assert GoldItem.objects.get(pair=pair).answer == "neither" and events("gold.changed", pair)
    assert client.get(f"/admin/curation/golditem/{item.id}/delete/").status_code == 403
    client.post("/admin/curation/golditem/", {"action": "unmark", "_selected_action": [item.id]})
    assert not Pair.objects.get(pk=pair.id).is_gold and events("gold.unmarked", pair)


def test_it_shows_the_curation_admin_pages_read_only_where_they_must_be(client, admin_user, settings):
    settings.GOLD_RATE = 1
    pair = make_pair("RU")
    gold.mark_gold(admin_user, pair.id, "expected")
    judge(chemist(), pair, "expected")
    client.force_login(admin_user)
    for model in ("golditem", "annotatorquality", "consensus", "adjudication"):
        assert client.get(f"/admin/curation/{model}/").status_code == 200, model
    assert client.get("/admin/curation/golditem/add/").status_code == 200
    for model in ("annotatorquality", "consensus", "adjudication"):
        assert client.get(f"/admin/curation/{model}/add/").status_code == 403, model
    quality_page = client.get(f"/admin/curation/annotatorquality/{AnnotatorQuality.objects.get().pk}/change/")
    assert quality_page.status_code == 200 and 'name="_save"' not in quality_page.content.decode()


def test_it_documents_the_gold_and_quality_endpoints(client, db):
    paths = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["paths"]
    assert {"post", "get"} <= set(paths["/api/curation/gold/"])
    assert "delete" in paths["/api/curation/gold/{pair_id}/"]
    assert "get" in paths["/api/curation/quality/"]
    assert "post" in paths["/api/curation/quality/{user_id}/restore/"]
