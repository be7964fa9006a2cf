"""Judging and what it sets off: the one place where a change of a pair's judgements meets its consequences.

The annotation app records judgements (:mod:`annotation.services.queue`) and knows nothing of curation. Each
change of a pair's judgements — a judgement, an undo, a new overlap target k — has consequences here, and
this module is where they are called, in the order they run, inside the change's own transaction and while
the pair's row is locked:

1. the change itself and its audit event (``annotation.services.queue`` / ``catalog``);
2. the pair's consensus (:func:`curation.services.consensus.recompute_consensus`), which writes its own
   audit event when the decision changes;
3. for a gold pair, the annotator's gold accuracy, which may pause the annotator
   (:func:`curation.services.gold.record_gold_judgement`).

Views call the functions below, never the annotation services' judgement functions directly, so no path
can record a judgement without its consequences (tests/curation/test_judging.py).
"""

from __future__ import annotations

from annotation.models import Lease, Pair
from annotation.services import catalog, queue
from annotation.services.queue import JudgementInput
from curation.services import consensus, gold


def after_judgements_changed(pair: Pair, annotator) -> None:
    """The consequences of ``annotator``'s judgement of ``pair`` being added or undone (``pair``: locked,
    as it now stands)."""
    consensus.recompute_consensus(pair.pk, actor=annotator, locked_pair=pair)
    gold.record_gold_judgement(pair.pk, annotator, locked_pair=pair)


def judge(user, lease_id: int, data: JudgementInput):
    """Record ``user``'s judgement through their lease (:func:`annotation.services.queue.submit_judgement`:
    ``(judgement, created)``, or a :class:`~annotation.services.queue.QueueError`), with its consequences."""
    if data.reasons:
        queue.check_reasons(user, lease_id, data.reasons)
    return queue.submit_judgement(user, lease_id, data, consequences=after_judgements_changed)


def undo(user, judgement_id: int | None = None) -> Lease:
    """Take back ``user``'s judgement ``judgement_id``, or their latest
    (:func:`annotation.services.queue.undo_last_judgement`), with its consequences."""
    return queue.undo_last_judgement(user, judgement_id=judgement_id, consequences=after_judgements_changed)


def set_pair_k(pair_id: int, k: int, *, actor=None) -> Pair:
    """Change a pair's overlap target (:func:`annotation.services.catalog.set_pair_k`); its consensus
    depends on k, so it is recomputed under the same lock."""
    return catalog.set_pair_k(pair_id, k, actor=actor, consequences=_after_k_changed)


def _after_k_changed(pair: Pair, actor) -> None:
    consensus.recompute_consensus(pair.pk, actor=actor, locked_pair=pair)
