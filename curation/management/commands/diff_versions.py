"""``manage.py diff_versions A B [--json]``: pairs added, removed, relabelled and moved from A to B."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from curation.models import DatasetVersion
from curation.services import versions


def find_version(value: str) -> DatasetVersion:
    """A version by name, or by id when no version has that name."""
    version = DatasetVersion.objects.filter(name=value).first()
    if version is None and value.isdigit():
        version = DatasetVersion.objects.filter(pk=int(value)).first()
    if version is None:
        raise CommandError(f"No version {value!r} (give an id or a name).")
    return version


class Command(BaseCommand):
    help = (
        "Compare two dataset versions (ids or names): pairs added in B, removed from A, relabelled, and "
        "moved between splits. Example: diff_versions v1 v2 --json"
    )

    def add_arguments(self, parser):
        parser.add_argument("a", help="The older version (id or name).")
        parser.add_argument("b", help="The newer version (id or name).")
        parser.add_argument("--json", action="store_true", help="Print the whole diff as JSON.")

    def handle(self, *args, a, b, **opts):
        old, new = find_version(a), find_version(b)
        diff = versions.diff_versions(old, new)
        if opts["json"]:
            self.stdout.write(json.dumps(diff))
            return
        counts = diff["counts"]
        self.stdout.write(
            f"{old.name} -> {new.name}: {counts['added']} added, {counts['removed']} removed, "
            f"{counts['relabelled']} relabelled, {counts['moved']} moved, {counts['unchanged']} unchanged"
        )
        if diff["added"]:
            self.stdout.write("added: " + " ".join(map(str, diff["added"])))
        if diff["removed"]:
            self.stdout.write("removed: " + " ".join(map(str, diff["removed"])))
        for change in diff["relabelled"]:
            self.stdout.write(f"relabelled: pair {change['pair']} {change['from']} -> {change['to']}")
        for change in diff["moved"]:
            self.stdout.write(f"moved: pair {change['pair']} {change['from']} -> {change['to']}")
