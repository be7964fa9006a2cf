"""In-app user management (curation.services.users, /curation/users/): creating with a one-time
set-password link, roles and expertise, pause and restore, the lock-out rules, the audit log, the
drill-down figures and the list's search and paging."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from annotation import roles
from annotation.models import AuditEvent, Expertise
from annotation.services import queue
from curation.models import AnnotatorQuality
from curation.services import gold
from curation.services import users as users_service
from curation.services.agreement import agreement_report
from tests.support.audit import events
from tests.support.factories import make_pair, make_user
from tests.support.judging import judge, judged_pair

pytestmark = pytest.mark.django_db


@pytest.fixture
def boss():
    return make_user("boss", "admin")


def signed_in(client, user):
    client.force_login(user)
    return client


def fresh(user):
    return get_user_model().objects.get(pk=user.pk)


# --- Creating and inviting -------------------------------------------------------------------------


def test_a_new_user_gets_the_role_and_expertise_and_cannot_sign_in_before_setting_a_password(client, boss):
    response = signed_in(client, boss).post(
        reverse("curation:user-new"),
        {
            "username": "ada",
            "email": "ada@example.org",
            "role": "annotator",
            "disciplines": ["physics"],
            "tasks": ["RU"],
        },
    )
    ada = get_user_model().objects.get(username="ada")
    assert response.status_code == 302 and response["Location"] == reverse("curation:user-detail", args=[ada.pk])
    assert users_service.state_of(ada) == {
        "username": "ada",
        "role": "annotator",
        "disciplines": ["physics"],
        "tasks": ["RU"],
        "paused": False,
    }
    assert not ada.has_usable_password()
    assert [e.actor for e in events("user.created", ada)] == [boss]
    assert [e.actor for e in events("user.invite_link", ada)] == [boss]


def invite_link_from(client, user_id: int) -> str:
    page = client.get(reverse("curation:user-detail", args=[user_id])).content.decode()
    match = re.search(r'id="invite-link" value="([^"]+)"', page)
    assert match, "the detail page shows the link right after it was made"
    return match.group(1)


def test_the_invitation_link_sets_a_password_once_and_signs_the_invitee_in(client, boss):
    signed_in(client, boss).post(reverse("curation:user-new"), {"username": "ada", "role": "annotator"})
    ada = get_user_model().objects.get(username="ada")
    link = invite_link_from(client, ada.pk)
    assert 'id="invite-link"' not in client.get(reverse("curation:user-detail", args=[ada.pk])).content.decode(), (
        "the link is shown once"
    )
    client.logout()
    path = link.split("testserver", 1)[1]
    landing = client.get(path, follow=True)
    assert b"Set your password" in landing.content and b"set-password-form" in landing.content
    form_url = landing.redirect_chain[-1][0]
    weak = client.post(form_url, {"new_password1": "password1234", "new_password2": "password1234"})
    assert weak.status_code == 200 and b"too common" in weak.content
    done = client.post(form_url, {"new_password1": "lunar-module-1969", "new_password2": "lunar-module-1969"})
    assert done.status_code == 302 and done["Location"] == reverse("home")
    assert fresh(ada).check_password("lunar-module-1969")
    assert client.get(reverse("home")).context["user"] == ada, "setting the password signs them in"
    client.logout()
    again = client.get(path, follow=True)
    assert b"link-invalid" in again.content and b"set-password-form" not in again.content, "the link works once"


def test_a_taken_or_bad_username_is_refused_with_the_form_again(client, boss):
    make_user("ada", "annotator")
    for name, reason in (("ADA", "exists already"), ("a b", "Enter a valid username"), ("x" * 151, "at most 150")):
        response = signed_in(client, boss).post(reverse("curation:user-new"), {"username": name, "role": "annotator"})
        assert response.status_code == 400 and reason.lower() in response.content.decode().lower(), name
    assert get_user_model().objects.filter(username__iexact="ada").count() == 1


def test_unknown_roles_disciplines_and_tasks_are_refused(client, boss):
    for data in (
        {"username": "bob", "role": "owner"},
        {"username": "bob", "role": "annotator", "disciplines": ["alchemy"]},
        {"username": "bob", "role": "annotator", "tasks": ["XX"]},
    ):
        assert signed_in(client, boss).post(reverse("curation:user-new"), data).status_code == 400, data
    assert not get_user_model().objects.filter(username="bob").exists()


def test_a_new_link_for_an_existing_user_is_audited(client, boss):
    ann = make_user("ann", "annotator")
    response = signed_in(client, boss).post(reverse("curation:user-invite", args=[ann.pk]))
    assert response.status_code == 302
    assert "/curation/users/set-password/" in invite_link_from(client, ann.pk)
    (event,) = events("user.invite_link", ann)
    assert event.actor == boss and "token" not in str(event.after)


# --- Roles, expertise, lock-out ------------------------------------------------------------------


def test_an_admin_changes_role_and_expertise_with_before_and_after_in_the_audit_log(client, boss):
    ann = make_user("ann", "annotator", disciplines=["chemistry"])
    response = signed_in(client, boss).post(
        reverse("curation:user-edit", args=[ann.pk]), {"role": "reviewer", "tasks": ["GR", "RU"]}
    )
    assert response.status_code == 302
    ann = fresh(ann)
    assert roles.roles_of(ann) == {"reviewer"}
    (event,) = events("user.updated", ann)
    assert event.actor == boss
    assert event.before == {
        "username": "ann",
        "role": "annotator",
        "disciplines": ["chemistry"],
        "tasks": [],
        "paused": False,
    }
    assert event.after == {
        "username": "ann",
        "role": "reviewer",
        "disciplines": [],
        "tasks": ["GR", "RU"],
        "paused": False,
    }
    # The same again changes nothing and records nothing.
    signed_in(client, boss).post(
        reverse("curation:user-edit", args=[ann.pk]), {"role": "reviewer", "tasks": ["RU", "GR"]}
    )
    assert len(events("user.updated", ann)) == 1


def test_an_admin_cannot_remove_their_own_admin_role(client, boss):
    response = signed_in(client, boss).post(reverse("curation:user-edit", args=[boss.pk]), {"role": "annotator"})
    assert response.status_code == 400 and b"your own admin role" in response.content
    assert roles.is_admin(fresh(boss))
    assert not events("user.updated", boss)
    with pytest.raises(users_service.LockOut):
        users_service.update_user(boss, boss, role="reviewer", disciplines=[], tasks=[])


def test_another_admin_can_be_made_a_reviewer(boss):
    other = make_user("other-admin", "admin")
    assert users_service.update_user(boss, other, role="reviewer", disciplines=[], tasks=[])
    other = fresh(other)
    assert roles.roles_of(other) == {"reviewer"} and not other.is_superuser and not other.is_staff


def test_only_admins_may_use_the_service():
    reviewer, ann = make_user("rev", "reviewer"), make_user("ann", "annotator")
    for call in (
        lambda: users_service.create_user(reviewer, username="x", role="annotator", disciplines=[], tasks=[]),
        lambda: users_service.update_user(reviewer, ann, role="admin", disciplines=[], tasks=[]),
        lambda: users_service.set_paused(reviewer, ann, True),
        lambda: users_service.invitation(reviewer, ann),
    ):
        with pytest.raises(PermissionDenied):
            call()


# --- Pause and restore -----------------------------------------------------------------------------


def test_a_paused_annotator_gets_no_work_until_restored(client, boss):
    ann = make_user("ann", "annotator", disciplines=["chemistry"])
    make_pair("RU")
    assert signed_in(client, boss).post(reverse("curation:user-pause", args=[ann.pk])).status_code == 302
    assert Expertise.objects.get(user=ann).paused
    with pytest.raises(queue.AnnotatorPaused):
        queue.next_lease(ann)
    assert [e.after for e in events("user.paused", ann)] == [{"paused": True}]
    client.post(reverse("curation:user-restore", args=[ann.pk]))
    assert not Expertise.objects.get(user=ann).paused
    assert queue.next_lease(ann) is not None
    assert [e.actor for e in events("user.unpaused", ann)] == [boss]


def test_an_admin_cannot_pause_themselves(client, boss):
    response = signed_in(client, boss).post(reverse("curation:user-pause", args=[boss.pk]), follow=True)
    assert b"You cannot pause yourself" in response.content
    assert not Expertise.objects.get(user=boss).paused
    assert not events("user.paused", boss)


def test_restoring_an_annotator_flagged_by_gold_clears_the_flag(settings, boss):
    settings.GOLD_MIN_ITEMS, settings.GOLD_MIN_ACCURACY = 1, 0.9
    ann = make_user("ann", "annotator", disciplines=["chemistry"])
    pair = make_pair("RU")
    gold.mark_gold(boss, pair.pk, "expected")
    judge(ann, pair, "other")
    assert AnnotatorQuality.objects.get(user=ann).flagged and Expertise.objects.get(user=ann).paused
    assert users_service.set_paused(boss, ann, False)
    quality = AnnotatorQuality.objects.get(user=ann)
    assert not quality.flagged and quality.restored_by == boss
    assert not Expertise.objects.get(user=ann).paused
    assert events("annotator.restored", ann) and not events("user.unpaused", ann)


# --- Drill-down ------------------------------------------------------------------------------------


def test_the_drill_down_figures_match_the_agreement_page_and_gold(settings, client, boss):
    settings.GOLD_MIN_ITEMS = 100  # never paused here
    ann = make_user("ann", "annotator", disciplines=["chemistry"])
    # Three decided pairs: ann agrees with two of them (expected, expected) and not the third.
    for labels, mine in (
        (("expected", "expected"), "expected"),
        (("other", "other"), "other"),
        (("expected", "expected"), "both"),
    ):
        pair = judged_pair(*labels)
        judge(ann, pair, mine)
    goldie = make_pair("RU")
    gold.mark_gold(boss, goldie.pk, "expected")
    judge(ann, goldie, "expected")

    figures = users_service.figures_of(ann)
    assert figures.total == 4 and figures.in_window == 4 and figures.per_day[-1] == 4
    assert (figures.gold_judged, figures.gold_correct, figures.gold_accuracy) == (1, 1, 1.0)
    assert (figures.agreeing, figures.on_decided) == (2, 3)
    assert figures.by_task == [
        {"task": "RU", "judgements": 4, "on_decided": 3, "agreeing": 2, "agreement": pytest.approx(2 / 3)}
    ]
    row = next(r for r in agreement_report()["annotators"] if r["annotator"] == "ann")
    assert figures.consensus_agreement == pytest.approx(row["agreement"]["value"])

    page = signed_in(client, boss).get(reverse("curation:user-detail", args=[ann.pk])).content.decode()
    assert re.search(r'data-figure="total"><span class="value">4<', page)
    assert re.search(r'data-figure="gold"><span class="value">100 %', page)
    assert re.search(r'data-figure="consensus"><span class="value">66.7 %', page)
    assert re.search(r'<tr data-task="RU">.*?data-col="agreement">67 %', page, re.S)


def test_the_dashboard_names_open_the_drill_down(client, boss):
    ann = make_user("ann", "annotator")
    response = signed_in(client, boss).get(reverse("curation:user-by-name", args=["ann"]))
    assert response.status_code == 302 and response["Location"] == reverse("curation:user-detail", args=[ann.pk])
    assert client.get(reverse("curation:user-by-name", args=["nobody"])).status_code == 404
    assert client.get("/curation/users/999999/").status_code == 404


# --- The list --------------------------------------------------------------------------------------


def test_the_list_searches_filters_by_role_and_pages(client, boss, monkeypatch):
    from curation import views_users

    monkeypatch.setattr(views_users, "PAGE_SIZE", 2)
    for n in range(3):
        make_user(f"chem-{n}", "annotator")
    make_user("rev-1", "reviewer")
    signed_in(client, boss)

    def listed(query: str) -> list[str]:
        return re.findall(r'<tr data-user="([^"]+)"', client.get(f"/curation/users/?{query}").content.decode())

    assert listed("q=CHEM") == ["chem-0", "chem-1"]
    assert listed("q=CHEM&page=2") == ["chem-2"]
    assert listed("role=reviewer") == ["rev-1"]
    assert listed("role=admin") == ["boss"]
    assert listed("q=" + "x" * 101) == ["boss", "chem-0"], "an over-long search is ignored, not an error"
    assert client.get("/curation/users/?page=zz").status_code == 200


def test_the_list_costs_the_same_queries_for_more_users(client, boss, django_assert_max_num_queries):
    signed_in(client, boss)
    for n in range(30):
        make_user(f"ann-{n}", "annotator")
    with django_assert_max_num_queries(12):
        assert client.get("/curation/users/").status_code == 200


def test_pages_need_an_admin(client):
    reviewer = make_user("rev", "reviewer")
    signed_in(client, reviewer)
    assert client.get("/curation/users/").status_code == 403
    assert client.post("/curation/users/new/", {"username": "x", "role": "admin"}).status_code == 403
    assert not get_user_model().objects.filter(username="x").exists()
    assert not AuditEvent.objects.filter(action__startswith="user.").exclude(action="user.created").exists()
