"""``manage.py verify_media``: a thin wrapper around :mod:`annotation.services.media_integrity`."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from annotation.services.media_integrity import verify_media


class Command(BaseCommand):
    help = (
        "Check that every Image row's file is in media storage (filesystem or S3) and hashes to its sha256, "
        "and list orphan files under images/ that no row references. Prints one line per problem and the "
        "counts; exits 1 when anything is missing, mismatched or orphaned. Changes nothing unless "
        "--delete-orphans is given (rows are never touched)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-hash", action="store_true", help="Only check that files exist (skip reading and hashing them)."
        )
        parser.add_argument(
            "--delete-orphans", action="store_true", help="Delete orphan files older than --grace-seconds."
        )
        parser.add_argument(
            "--grace-seconds",
            type=float,
            default=3600,
            metavar="S",
            help="Orphans younger than this are kept even with --delete-orphans: they may be "
            "an upload whose row is not committed yet (default 3600).",
        )
        parser.add_argument("--json", action="store_true", help="Print the report as one JSON object.")

    def handle(self, *args, **options):
        def on_problem(kind: str, name: str, detail: str) -> None:
            if not options["json"]:
                self.stdout.write(f"{kind}: {name} ({detail})")

        report = verify_media(
            check_hashes=not options["no_hash"],
            delete_orphans=options["delete_orphans"],
            orphan_grace_seconds=options["grace_seconds"],
            on_problem=on_problem,
        )
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), sort_keys=True))
        else:
            self.stdout.write(
                f"{report.rows} image rows, {report.files} files under images/: "
                f"{report.missing} missing, {report.mismatched} mismatched, "
                f"{report.orphans} orphans ({report.orphans_deleted} deleted)"
            )
        if not report.clean:
            raise CommandError("media storage and the image table disagree (see above)", returncode=1)
