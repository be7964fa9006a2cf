"""Consensus per pair, recomputed when a judgement is added or undone (curation.services.consensus).

Judgements go through the real queue. ``judge`` states what the annotator means relative to the
expected image and maps it to left/right with the lease's display order, which is random.
"""

import pytest
from django.core.management import call_command

from annotation.models import AuditEvent, Pair
from annotation.services import queue
from curation.models import Consensus
from curation.services import judging
from curation.services.consensus import recompute_all, recompute_consensus
from tests.support.factories import make_pair
from tests.support.judging import chemist, judge, judged_pair

pytestmark = pytest.mark.django_db


def consensus_of(pair: Pair) -> Consensus:
    return Consensus.objects.get(pair=pair)


@pytest.mark.parametrize(
    ("labels", "outcome", "label", "agreement"),
    [
        (["expected", "expected", "expected"], "confirmed", "expected", 1.0),
        (["expected", "other", "expected"], "confirmed", "expected", 2 / 3),
        (["other", "other", "expected"], "reversed", "other", 2 / 3),
        (["both", "both", "neither"], "rejected", "both", 2 / 3),
        (["neither", "neither", "neither"], "rejected", "neither", 1.0),
        (["expected", "other", "both"], "disputed", "", 1 / 3),
        (["expected", "expected"], "pending", "", 1.0),
    ],
)
def test_it_decides_the_outcome_at_k_3(labels, outcome, label, agreement):
    consensus = consensus_of(judged_pair(*labels))
    assert (consensus.outcome, consensus.label) == (outcome, label)
    assert consensus.agreement == pytest.approx(agreement)
    assert consensus.n_judgements == len(labels)
    assert consensus.counts == {name: labels.count(name) for name in ("expected", "other", "both", "neither")}


def test_it_requires_the_configured_majority_share(settings):
    settings.CONSENSUS_MIN_SHARE = 0.75
    assert consensus_of(judged_pair("expected", "expected", "other")).outcome == "disputed"
    assert consensus_of(judged_pair("expected", "expected", "expected")).outcome == "confirmed"


def test_it_treats_a_tie_as_disputed(settings):
    settings.CONSENSUS_MIN_SHARE = 0.5
    consensus = consensus_of(judged_pair("expected", "expected", "other", "other", k=4))
    assert (consensus.outcome, consensus.label, consensus.agreement) == ("disputed", "", 0.5)


def test_it_recomputes_when_a_judgement_is_undone():
    pair = make_pair("RU")
    last = chemist()
    judge(chemist(), pair, "other")
    judge(chemist(), pair, "other")
    judge(last, pair, "expected")
    assert consensus_of(pair).outcome == "reversed"
    lease = judging.undo(last)
    consensus = consensus_of(pair)
    assert (consensus.outcome, consensus.label, consensus.n_judgements) == ("pending", "", 2)
    judging.judge(last, lease.id, queue.JudgementInput("both"))
    assert consensus_of(pair).outcome == "reversed"
    assert consensus_of(pair).counts["both"] == 1


def test_it_audits_only_changes_of_outcome_or_label():
    pair = make_pair("RU")
    judges = [chemist() for _ in range(3)]
    for user in judges:
        judge(user, pair, "expected")
    judging.undo(judges[-1])
    events = AuditEvent.objects.filter(action="consensus.changed", target_type="pair", target_id=str(pair.pk))
    assert [(e.before["outcome"], e.after["outcome"], e.actor) for e in events.order_by("id")] == [
        ("pending", "confirmed", judges[-1]),
        ("confirmed", "pending", judges[-1]),
    ]
    assert events.order_by("id").first().after["counts"]["expected"] == 3


def test_it_keeps_gold_pairs_out_of_consensus():
    pair = make_pair("RU")
    Pair.objects.filter(pk=pair.pk).update(is_gold=True)
    for _ in range(3):
        judge(chemist(), pair, "expected")
    assert not Consensus.objects.filter(pair=pair).exists()


def test_it_removes_the_consensus_of_a_pair_that_became_gold():
    pair = judged_pair("other", "other", "other")
    Pair.objects.filter(pk=pair.pk).update(is_gold=True)
    assert recompute_consensus(pair.pk) is None
    assert not Consensus.objects.filter(pair=pair).exists()
    event = AuditEvent.objects.filter(action="consensus.changed").latest("id")
    assert (event.before["outcome"], event.after) == ("reversed", None)


def test_it_recomputes_everything_idempotently_and_repairs_stale_rows(capsys):
    confirmed = judged_pair("expected", "expected", "expected")
    disputed = judged_pair("expected", "other", "both")
    make_pair("RU")  # never judged: no row is made for it
    Consensus.objects.filter(pair=confirmed).update(outcome="disputed", label="")
    stamp = consensus_of(disputed).updated_at
    assert recompute_all(batch_size=1) == 2
    assert consensus_of(confirmed).outcome == "confirmed"
    assert consensus_of(disputed).updated_at == stamp  # an up-to-date row is not rewritten
    assert Consensus.objects.count() == 2
    events = AuditEvent.objects.filter(action="consensus.changed").count()
    call_command("recompute_consensus", "--batch-size", "1")
    out = capsys.readouterr().out
    assert "recomputed 1/2 pairs" in out and "recomputed 2/2 pairs" in out
    assert "1 confirmed" in out and "1 disputed" in out
    assert AuditEvent.objects.filter(action="consensus.changed").count() == events


def test_it_recomputes_when_an_admin_changes_k():

    pair = judged_pair("expected", "expected")
    assert consensus_of(pair).outcome == "pending"
    judging.set_pair_k(pair.id, 2)
    assert consensus_of(pair).outcome == "confirmed"
