"""``manage.py seed_ml_demo``: tiny models for the demo's retraining loop (see :mod:`ml.demo`)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from annotation import roles
from ml import demo


class Command(BaseCommand):
    help = (
        "Write a tiny FLUX pipeline, a tiny scorer, a tiny Grounding DINO and a tiny LMM judge under "
        "ML_MODEL_ROOT/demo/ and register all but the detector (the scorer becomes the active one if none is), so "
        "generate, train scorer, SFT, OFT, evaluation and judge runs work on the CPU. Idempotent. Run seed_demo "
        "first (it makes the admin)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--admin", default="admin", help="the admin account recorded as creator (default: admin)")

    def handle(self, *args, **opts):
        user = get_user_model().objects.filter(username=opts["admin"]).first()
        if user is None or not roles.is_admin(user):
            raise CommandError(f"No admin account {opts['admin']!r}: run seed_demo first, or pass --admin NAME.")
        models = demo.seed_models(user)
        made = ", ".join(models.created) if models.created else "nothing new"
        self.stdout.write(
            f"Demo models: registered {made}. Generator {models.generator.name} (id "
            f"{models.generator.pk}), active scorer {models.scorer.name} (id {models.scorer.pk}), LMM judge "
            f"{models.judge.name if models.judge else '-'}; "
            f"the OFT detector parameter is {models.detector}"
        )
