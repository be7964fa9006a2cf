"""``manage.py register_model KIND NAME LOCATION``: add a checkpoint to the model registry.

Run it where the checkpoints are (a GPU worker, or any host that mounts their filesystem): it refuses a
LOCATION that does not exist on this machine unless ``--no-check``. The API (``POST /api/ml/models/``)
does the same without the existence check, since the web host may not mount that filesystem.
"""

from __future__ import annotations

import json
import os
from pathlib import PurePosixPath

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from annotation import roles
from curation.models import DatasetVersion
from ml.models import ModelVersion
from ml.services import judges, registry


class Command(BaseCommand):
    help = (
        "Register a checkpoint (a directory, or a scorer's bare checkpoint file, on the GPU workers' filesystem) "
        "in the model registry and print its id. Audited as the --admin account. Run it where the files are: "
        "LOCATION must exist on this machine unless --no-check."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "kind",
            choices=ModelVersion.Kind.values,
            metavar="KIND",
            help="what the checkpoint is: scorer, generator_base, generator_lora or judge (an LMM judge: its "
            "config names the backend, see --config)",
        )
        parser.add_argument("name", metavar="NAME", help="the registry name, unique per kind (e.g. sciscore-v3)")
        parser.add_argument(
            "location",
            metavar="LOCATION",
            help="absolute path of the checkpoint as the GPU workers see it; an endpoint judge's server base URL "
            "(http://host:8000/v1)",
        )
        parser.add_argument(
            "--parent",
            type=int,
            metavar="ID",
            help="id of the model it derives from (required for a generator_lora: its generator)",
        )
        parser.add_argument(
            "--dataset-version", type=int, metavar="ID", help="id of the dataset version it was trained on"
        )
        parser.add_argument(
            "--config",
            metavar="JSON",
            help='a JSON object stored as the model\'s config (e.g. \'{"arch": "ViT-H-14"}\'; a judge: '
            '\'{"backend": "endpoint", "model": "Qwen/Qwen2-VL-7B-Instruct", "api_key_env": "JUDGE_API_KEY"}\' '
            'or \'{"backend": "local"}\')',
        )
        parser.add_argument(
            "--activate", action="store_true", help="make it the active scorer once registered (scorers only)"
        )
        parser.add_argument(
            "--admin",
            default="admin",
            metavar="USERNAME",
            help="the admin account recorded as creator in the registry and audit log (default: admin)",
        )
        parser.add_argument(
            "--no-check",
            action="store_true",
            help="do not check that LOCATION exists on this machine (it is on the workers only)",
        )

    def handle(self, *args, **opts):
        user = get_user_model().objects.filter(username=opts["admin"]).first()
        if user is None or not roles.is_admin(user):
            raise CommandError(f"No admin account {opts['admin']!r}: pass --admin USERNAME of an admin.")
        location = opts["location"].strip()
        endpoint = opts["kind"] == ModelVersion.Kind.JUDGE and judges.is_url(location)  # a server's base URL
        if not endpoint and not PurePosixPath(location).is_absolute():
            raise CommandError(
                f"LOCATION must be an absolute path as the GPU workers see it, not {location!r} "
                f"(here that would be {os.path.abspath(location)})."
            )
        if not endpoint and not opts["no_check"] and not os.path.exists(location):
            raise CommandError(
                f"{location} does not exist on this machine. Run the command where the "
                "checkpoints are, or pass --no-check if only the workers see this path."
            )
        if opts["activate"] and opts["kind"] != ModelVersion.Kind.SCORER:
            raise CommandError("--activate is for scorers only.")
        config = self._config(opts["config"])
        parent = self._find(ModelVersion, opts["parent"], "--parent", "model")
        version = self._find(DatasetVersion, opts["dataset_version"], "--dataset-version", "dataset version")
        try:
            with transaction.atomic():  # registered and activated, or neither
                model = registry.register_model(
                    user, opts["kind"], opts["name"], location, config=config, parent=parent, dataset_version=version
                )
                if opts["activate"]:
                    model = registry.activate_scorer(user, model)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        active = " (the active scorer)" if model.is_active else ""
        self.stdout.write(f"Registered {model.kind} {model.name} at {model.location}{active}: id {model.pk}")

    @staticmethod
    def _config(text: str | None) -> dict:
        if text is None:
            return {}
        try:
            config = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CommandError(f"--config is not valid JSON: {exc}.") from None
        if not isinstance(config, dict):
            raise CommandError('--config must be a JSON object, e.g. \'{"arch": "ViT-H-14"}\'.')
        return config

    @staticmethod
    def _find(model_class, pk: int | None, option: str, what: str):
        if pk is None:
            return None
        found = model_class.objects.filter(pk=pk).first()
        if found is None:
            raise CommandError(f"{option} {pk}: no {what} with this id.")
        return found
