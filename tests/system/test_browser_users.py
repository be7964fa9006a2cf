"""The user management pages in a real Chromium (issue 16, "Admins"): an admin creates an annotator with the
form, hands over the one-time link, the invitee sets a password with it and is signed in; the admin edits the
expertise, pauses and restores, and reaches the drill-down from a name on the dashboard. At 1366×768,
1920×1080 and 390×844 the list, new-user and detail pages have no serious accessibility violation and never
scroll sideways; screenshots go to test-artifacts/users-<page>-<width>.png."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from annotation import roles
from annotation.models import AuditEvent, Expertise
from tests.support.browser import (
    WIDTHS,
    accessibility_violations,
    chromium_page,
    screenshot,
    sideways_overflow,
    sign_in,
)
from tests.support.factories import make_user
from tests.support.judging import judge, judged_pair

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PASSWORD = "a-long-test-password"


def check_at_every_width(page, name: str) -> None:
    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        assert accessibility_violations(page) == [], f"{name} at {width}"
        assert sideways_overflow(page) <= 0, f"{name} is wider than {width} px"
        screenshot(page, f"users-{name}-{width}")


def test_an_admin_invites_edits_pauses_and_restores_an_annotator(live_server):
    make_user("curator", "admin", password=PASSWORD)
    with chromium_page(live_server.url) as page:
        sign_in(page, "curator", PASSWORD)
        page.click("nav.topnav >> text=Users")
        page.click("#new-user")
        page.fill("#id_username", "marie")
        page.fill("#id_email", "marie@example.org")
        page.select_option("#id_role", "annotator")
        page.check("#id_disciplines input[value=chemistry]")
        check_at_every_width(page, "new")
        page.set_viewport_size({"width": 1366, "height": 768})
        page.click("#new-user-form button[type=submit]")
        link = page.input_value("#invite-link")
        assert "/curation/users/set-password/" in link
        marie = get_user_model().objects.get(username="marie")
        assert Expertise.objects.get(user=marie).disciplines.get().slug == "chemistry"

        page.check("#id_tasks input[value=GR]")
        page.click("#user-edit-form button[type=submit]")
        assert page.inner_text("#user-meta").count("GR") == 1
        page.click("#pause")
        assert page.is_visible("#paused-badge")
        assert Expertise.objects.get(user=marie).paused
        check_at_every_width(page, "detail")
        page.set_viewport_size({"width": 1366, "height": 768})
        page.click("#restore")
        assert not page.is_visible("#paused-badge")
        assert not Expertise.objects.get(user=marie).paused

        page.goto("/curation/users/?q=mar")
        assert page.locator("#users-table tbody tr").count() == 1
        check_at_every_width(page, "list")

        page.context.clear_cookies()  # the invitee, in a browser without the admin's session
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(link)
        page.fill("#id_new_password1", "radium-and-polonium-1898")
        page.fill("#id_new_password2", "radium-and-polonium-1898")
        assert accessibility_violations(page) == [] and sideways_overflow(page) <= 0
        screenshot(page, "users-set-password-390")
        page.click("#set-password-form button[type=submit]")
        assert page.inner_text(".whoami").startswith("marie")
    marie = get_user_model().objects.get(username="marie")
    assert marie.check_password("radium-and-polonium-1898") and roles.roles_of(marie) == {"annotator"}
    actions = set(
        AuditEvent.objects.filter(target_type="user", target_id=str(marie.pk)).values_list("action", flat=True)
    )
    assert {"user.created", "user.invite_link", "user.updated", "user.paused", "user.unpaused"} <= actions


def test_a_name_on_the_dashboard_opens_the_annotators_figures(live_server):
    make_user("curator", "admin", password=PASSWORD)
    ann = make_user("ann", "annotator", disciplines=["chemistry"])
    judge(ann, judged_pair("expected", "expected"), "expected")
    with chromium_page(live_server.url) as page:
        sign_in(page, "curator", PASSWORD)
        page.goto("/curation/dashboard/")
        check_at_every_width(page, "dashboard")  # its wide tables scroll inside their own boxes
        page.set_viewport_size({"width": 1366, "height": 768})
        page.click("#throughput tr[data-annotator=ann] a")
        page.wait_for_url(f"**/curation/users/{ann.pk}/")
        assert page.inner_text("[data-figure=total] .value") == "1"
        assert page.inner_text("[data-figure=consensus] .value") == "100 %"
        assert page.inner_text("#user-tasks tr[data-task=RU] [data-col=agreement]") == "100 %"
        check_at_every_width(page, "figures")
