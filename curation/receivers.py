"""Receivers of annotation signals; imported by :meth:`curation.apps.CurationConfig.ready`."""

from django.dispatch import receiver

from annotation.models import Judgement
from annotation.signals import judgements_changed
from curation.services.consensus import recompute_consensus
from curation.services.gold import record_gold_judgement


@receiver(judgements_changed, dispatch_uid="curation.consensus")
def update_consensus(sender, pair_id, actor, pair=None, **kwargs):
    """Any sender: a judgement added or undone (``Judgement``) or the pair's k changed (``Pair``)."""
    recompute_consensus(pair_id, actor=actor, locked_pair=pair)


# --- Gold items: the gold receiver goes here. ------------------------------------------------


@receiver(judgements_changed, sender=Judgement, dispatch_uid="curation.gold")
def update_gold_quality(sender, pair_id, actor, pair=None, **kwargs):
    """Sent by the queue (``sender=Judgement``), ``actor`` is the annotator whose judgement changed."""
    record_gold_judgement(pair_id, actor, locked_pair=pair)
