"""``manage.py mark_gold PAIR_ID --answer LABEL [--unmark]``: gold items from the command line.

Goes through :mod:`curation.services.gold` like the API and the admin; the audit log names no
actor (the command line).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotation.models import Pair
from curation.models import Label
from curation.services import gold


class Command(BaseCommand):
    help = (
        "Make a pair gold with a known answer, change its answer, or (--unmark) make it a normal pair again. "
        "Answers are relative to the pair's expected image: expected, other, both or neither. Gold pairs are "
        "mixed into every qualified annotator's queue once, to measure them; marking the same answer twice "
        "changes nothing. Example: mark_gold 42 --answer expected"
    )

    def add_arguments(self, parser):
        parser.add_argument("pair_id", type=int)
        parser.add_argument("--answer", choices=Label.values, help="The correct label (required unless --unmark).")
        parser.add_argument("--unmark", action="store_true", help="Make the gold pair a normal pair again.")

    def handle(self, *args, pair_id, answer, unmark, **opts):
        if unmark == (answer is not None):
            raise CommandError("Give either --answer or --unmark.")
        try:
            if unmark:
                pair = gold.unmark_gold(None, pair_id)
                self.stdout.write(f"Pair {pair_id} is a normal pair again (k {pair.k}, {pair.status}).")
                return
            item, created = gold.mark_gold(None, pair_id, answer)
        except Pair.DoesNotExist:
            raise CommandError(f"No pair {pair_id}.") from None
        except gold.NotGold as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"Pair {pair_id} is gold{' now' if created else ''}, answer {item.answer}.")
