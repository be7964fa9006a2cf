"""``manage.py freeze_version NAME [filters] --user ADMIN``: build and freeze a dataset version.

The same service as the pages and the API (:func:`curation.services.versions.build_version`);
prints the new version's id, or with ``--json`` ``{"id", "name", "counts", "content_hash", ...}``.
"""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError

from curation.models import DatasetVersion
from curation.services import versions


def _list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


class Command(BaseCommand):
    help = (
        "Freeze a dataset version: the non-gold pairs whose consensus matches the filters, with their labels "
        "frozen and leakage-free splits (grouped by implicit prompt and subject; test_S simple scenes, test_C "
        "complex scenes). Splits of groups shared with the parent (default: the latest version) are kept. "
        "Prints the version id. Example: freeze_version v1 --tasks RU,BU --min-agreement 0.67 --user boss"
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="A unique name for the version.")
        parser.add_argument("--user", required=True, help="Username of the admin who freezes it (audited).")
        parser.add_argument("--tasks", help="Comma-separated task codes, e.g. RU,BU (default: all).")
        parser.add_argument("--disciplines", help="Comma-separated discipline slugs, e.g. physics (default: all).")
        parser.add_argument(
            "--outcomes",
            default=",".join(versions.DEFAULT_OUTCOMES),
            help=f"Comma-separated consensus outcomes among {', '.join(versions.SELECTABLE_OUTCOMES)} "
            f"(default: {','.join(versions.DEFAULT_OUTCOMES)}).",
        )
        parser.add_argument(
            "--min-agreement",
            type=float,
            help="Minimum share of agreeing judgements, 0..1 (adjudicated pairs are exempt).",
        )
        parser.add_argument("--exclude-pairs", default="", help="Comma-separated pair ids to leave out.")
        parser.add_argument("--exclude-tuples", default="", help="Comma-separated tuple ids to leave out.")
        parser.add_argument("--seed", type=int, default=0, help="Seed of the split assignment (default 0).")
        parser.add_argument(
            "--ratios",
            default="0.8,0.1,0.1",
            help="train,validation,test shares summing to 1 (default 0.8,0.1,0.1); the test "
            "share applies within simple (test_S) and complex (test_C) scenes.",
        )
        parser.add_argument(
            "--parent",
            help="Id or name of the version whose splits to keep (default: the latest); 'none' for no parent.",
        )
        parser.add_argument(
            "--draw-imported-splits",
            action="store_true",
            help="Draw a split for imported pairs too. By default a group whose pairs were "
            "imported with a split (e.g. from Science-T2I-S) keeps it.",
        )
        parser.add_argument("--json", action="store_true", help="Print a JSON object instead of the id.")

    def handle(self, *args, name, user, **opts):
        try:
            admin = get_user_model().objects.get(username=user)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user {user!r}.") from None
        try:
            ratios = [float(value) for value in _list(opts["ratios"])]
        except ValueError:
            raise CommandError("--ratios: three numbers, e.g. 0.8,0.1,0.1") from None
        try:
            version = versions.build_version(
                admin,
                name,
                tasks=_list(opts["tasks"]),
                disciplines=_list(opts["disciplines"]),
                outcomes=_list(opts["outcomes"]),
                min_agreement=opts["min_agreement"],
                exclude_pairs=_list(opts["exclude_pairs"]),
                exclude_tuples=_list(opts["exclude_tuples"]),
                ratios=ratios,
                seed=opts["seed"],
                parent=self._parent(opts["parent"]),
                keep_imported_splits=not opts["draw_imported_splits"],
            )
        except PermissionDenied:
            raise CommandError(f"{user} is not an admin; only admins freeze versions.") from None
        except versions.VersionError as exc:
            raise CommandError(str(exc)) from None
        if opts["json"]:
            self.stdout.write(json.dumps(versions.describe(version)))
        else:
            self.stdout.write(str(version.pk))

    def _parent(self, value):
        if value is None:
            return versions.LATEST
        if value.strip().lower() == "none":
            return None
        version = DatasetVersion.objects.filter(name=value).first()
        if version is None and value.isdigit():
            version = DatasetVersion.objects.filter(pk=int(value)).first()
        if version is None:
            raise CommandError(f"--parent: no version {value!r}.")
        return version
