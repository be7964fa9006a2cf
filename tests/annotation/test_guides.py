"""Task guides: safe Markdown, the admin's editing pages, worked examples from decided pairs, and the rule
that a worked example is never judged again nor gold."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation.models import GuideExample, Judgement, Pair, Task, TaskGuide
from annotation.services import catalog, guides, queue
from curation.models import Consensus
from curation.services import gold, judging
from tests.support.factories import make_pair

pytestmark = pytest.mark.django_db

HOSTILE = (
    "# Rust\n\n<script>alert('x')</script>\n\n<img src=x onerror=alert(1)>\n\n"
    "[click](javascript:alert(1)) [shout](JAVASCRIPT:alert(2)) <javascript:alert(3)>\n\n**Brown** flakes count."
)


def rust():
    return Task.objects.get(code="RU")


def judge_pair(user, pair: Pair, *, pick: str) -> Judgement:
    """``user`` judges ``pair`` choosing the ``expected`` or the ``other`` image, whatever side it was shown on."""
    lease = queue.next_lease(user, task="RU")
    assert lease.pair_id == pair.pk
    wanted = pair.image_correct_id if pick == "expected" else pair.image_wrong_id
    choice = "left" if lease.left_image_id == wanted else "right"
    judgement, _ = judging.judge(user, lease.id, queue.JudgementInput(choice=choice))
    return judgement


def decided_pair(annotator, *, pick="other") -> Pair:
    """A pair of RU with k=1 that ``annotator`` decided (``other``: reversed), so it is complete."""
    pair = make_pair("RU", k=1)
    judge_pair(annotator, pair, pick=pick)
    pair.refresh_from_db()
    assert pair.status == Pair.Status.COMPLETE
    return pair


def test_hostile_markdown_is_shown_as_text_never_run(client, annotator, admin_user):
    guides.save_guide(admin_user, rust(), body=HOSTILE, reasons=[])
    client.force_login(annotator)
    html = client.get(reverse("guide", args=["RU"])).content.decode()
    body = html[html.index('id="guide-body"') :]
    assert "<strong>Brown</strong>" in body  # Markdown works
    assert "<script>alert" not in html and "&lt;script&gt;alert" in body
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in body
    assert 'href="javascript:' not in html.lower() and "javascript:alert(1)" in body  # shown, not linked


def test_the_annotate_page_carries_the_guides_of_the_annotators_tasks_only(client, annotator, admin_user):
    guides.save_guide(admin_user, rust(), body="Rust is *brown*.", reasons=["colour", "flakes"])
    guides.save_guide(admin_user, Task.objects.get(code="BU"), body="Buoyancy secret", reasons=["x"])
    client.force_login(annotator)
    html = client.get(reverse("annotate")).content.decode()
    assert '<template class="guide-source" data-task="RU"><p>Rust is <em>brown</em>.</p>' in html
    assert "Buoyancy secret" not in html
    assert '"RU": ["colour", "flakes"]' in html


def test_admins_edit_the_guide_and_its_reasons_in_the_app(client, admin_user, reviewer):
    client.force_login(reviewer)
    assert client.get(reverse("curation:guide-edit", args=["RU"])).status_code == 403
    client.force_login(admin_user)
    assert client.get(reverse("curation:guide-list")).status_code == 200
    response = client.post(
        reverse("curation:guide-edit", args=["RU"]),
        {"body": "Count **brown** flakes.", "reasons": "colour\n\n  flakes \ncolour\n"},
    )
    assert response.status_code == 302
    guide = TaskGuide.objects.get(task__code="RU")
    assert guide.body == "Count **brown** flakes." and guide.reasons == ["colour", "flakes"]
    page = client.get(reverse("curation:guide-edit", args=["RU"])).content.decode()
    assert "<strong>brown</strong>" in page  # the preview


def test_the_guide_form_refuses_too_many_or_too_long_reasons(client, admin_user):
    client.force_login(admin_user)
    url = reverse("curation:guide-edit", args=["RU"])
    response = client.post(url, {"body": "", "reasons": "\n".join(f"r{i}" for i in range(9))})
    assert response.status_code == 400 and b"at most 8 reasons" in response.content
    response = client.post(url, {"body": "", "reasons": "x" * 61})
    assert response.status_code == 400
    assert not TaskGuide.objects.exists()


def test_a_worked_example_shows_the_image_the_decision_says_is_right(client, annotator, admin_user):
    pair = decided_pair(annotator, pick="other")
    assert Consensus.objects.get(pair=pair).outcome == Consensus.Outcome.REVERSED
    client.force_login(admin_user)
    page = client.get(reverse("curation:guide-edit", args=["RU"])).content.decode()
    assert f'data-pair="{pair.pk}"' in page  # offered as a candidate
    response = client.post(reverse("curation:guide-example-add", args=["RU"]), {"pair": pair.pk, "note": "flakes"})
    assert response.status_code == 302
    example = GuideExample.objects.get(pair=pair)
    assert example.right_image_id == pair.image_wrong_id  # reversed: the "wrong" image is right
    client.force_login(annotator)
    page = client.get(reverse("guide", args=["RU"])).content.decode()
    assert reverse("guide-example-image", args=["RU", example.pk, "right"]) in page and "flakes" in page
    right = client.get(reverse("guide-example-image", args=["RU", example.pk, "right"]))
    other = client.get(reverse("guide-example-image", args=["RU", example.pk, "other"]))
    assert right.status_code == other.status_code == 200
    assert b"".join(right.streaming_content) == pair.image_wrong.file.open("rb").read()


def test_only_a_decided_closed_non_gold_pair_can_be_an_example(annotator, admin_user):
    pending = make_pair("RU", k=3)
    with pytest.raises(guides.GuideError, match="decided"):
        judging_add(admin_user, pending)
    open_decided = make_pair("RU", k=1)
    with pytest.raises(guides.GuideError, match="still takes judgements"):
        guides.add_example(admin_user, rust(), open_decided.pk, right_image_id=open_decided.image_correct_id)
    golden = make_pair("RU", k=1)
    gold.mark_gold(admin_user, golden.pk, "expected")
    with pytest.raises(guides.GuideError, match="gold"):
        guides.add_example(admin_user, rust(), golden.pk, right_image_id=golden.image_correct_id)
    assert not GuideExample.objects.exists()


def judging_add(admin, pair):
    from curation.services import consensus

    return consensus.add_worked_example(admin, rust(), pair.pk)


def test_a_worked_example_is_never_reopened_made_gold_or_undone(annotator, admin_user):
    """So the queue, which serves open and gold pairs only, never serves it (and needs no check of its own)."""
    pair = decided_pair(annotator, pick="expected")
    judgement = Judgement.objects.get(pair=pair)
    judging_add(admin_user, pair)
    with pytest.raises(ValueError, match="worked example"):
        judging.set_pair_k(pair.pk, 3, actor=admin_user)  # would reopen it
    with pytest.raises(ValueError, match="worked example"):
        gold.mark_gold(admin_user, pair.pk, "expected")
    with pytest.raises(queue.PairUnavailable):
        judging.undo(annotator, judgement.pk)
    catalog.set_pair_retired(pair.pk, True, actor=admin_user)
    catalog.set_pair_retired(pair.pk, False, actor=admin_user)  # back to complete: its one judgement is k
    pair.refresh_from_db()
    assert pair.status == Pair.Status.COMPLETE and not pair.is_gold and pair.k == 1
    assert Judgement.objects.filter(pk=judgement.pk).exists()


def test_the_guide_is_for_the_tasks_annotators_and_staff_only(client, outsider, reviewer, admin_user):
    guides.save_guide(admin_user, rust(), body="Rust.", reasons=[])
    client.force_login(outsider)
    assert client.get(reverse("guide", args=["RU"])).status_code == 404
    client.force_login(reviewer)
    assert client.get(reverse("guide", args=["RU"])).status_code == 200
    assert client.get(reverse("guide", args=["NOPE"])).status_code == 404
