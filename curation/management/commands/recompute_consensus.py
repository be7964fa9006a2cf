"""``manage.py recompute_consensus``: rebuild every pair's consensus (see curation.services.consensus)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count

from curation.models import Consensus
from curation.services.consensus import recompute_all


class Command(BaseCommand):
    help = (
        "Recompute the consensus of every pair that has judgements, adjudications or a consensus row, "
        "e.g. after changing CONSENSUS_MIN_SHARE or a pair's k. Idempotent: rows already up to date are not "
        "written. Each pair is recomputed in its own short transaction, so it is safe while annotators work."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=500, help="Pair ids read per batch (default 500).")

    def handle(self, *args, batch_size, **opts):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        done = recompute_all(
            batch_size=batch_size, progress=lambda n, total: self.stdout.write(f"recomputed {n}/{total} pairs")
        )
        outcomes = dict(Consensus.objects.order_by().values_list("outcome").annotate(n=Count("pk")))
        summary = ", ".join(f"{outcomes.get(o, 0)} {o}" for o in Consensus.Outcome.values)
        self.stdout.write(self.style.SUCCESS(f"Done: {done} pairs. Consensus now: {summary}."))
