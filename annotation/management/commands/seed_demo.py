"""``manage.py seed_demo``: demo users, tuples and image pairs (see :mod:`annotation.demo`)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from annotation import demo
from annotation.services.importing import import_prompts


class Command(BaseCommand):
    help = (
        "Fill an empty installation with something to try: one user per role (admin, reviewer) and "
        "annotators for each discipline, created with fixed demo passwords printed at the end (an existing "
        "account of the same name keeps its password); and, for each "
        "of the 16 Science-T2I tasks, two hand-written tuples with a drawn correct/wrong image pair. "
        "Idempotent: a second run creates nothing. Never run it on a production database: the demo "
        "passwords are public."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--prompts",
            metavar="FILE",
            help="Also import a prompt file (same formats as import_prompts), e.g. "
            "the Science-T2I repository's reality_simple_300.json. Its tuples get no images.",
        )
        parser.add_argument(
            "--auto-task",
            action="store_true",
            help="With --prompts: guess each prompt's task from keywords (as import_prompts --auto-task).",
        )

    def handle(self, *args, **opts):
        if opts["auto_task"] and not opts["prompts"]:
            raise CommandError("--auto-task only applies together with --prompts FILE.")
        try:
            report = demo.seed()
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        created = report.created
        self.stdout.write(
            f"Demo content: created {created['users']} users, {created['tuples']} tuples, "
            f"{created['images']} images, {created['pairs']} pairs "
            f"({len(demo.DEMO_TUPLES)} demo tuples in all)."
        )
        if opts["prompts"]:
            self._import(opts["prompts"], opts["auto_task"])
        self.stdout.write("\nLog in to the web app (make demo prints its URL) as:")
        width = max(len(name) for name, _, _ in report.logins)
        self.stdout.write(f"  {'user'.ljust(width)}  {'password'.ljust(20)}  role")
        for username, password, role in report.logins:
            self.stdout.write(f"  {username.ljust(width)}  {password.ljust(20)}  {role}")

    def _import(self, path: str, auto_task: bool) -> None:
        try:
            result = import_prompts(path, auto_task=auto_task)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for error in result.as_dict()["errors"]:
            self.stderr.write(f"row {error['row']}: {error['error']}")
        if result.error_count:
            raise CommandError(f"{path}: {result.error_count} row(s) have errors; none of its prompts was imported.")
        self.stdout.write(
            f"Prompts from {path}: created {result.created}, updated {result.updated}, "
            f"skipped {result.skipped}; {result.unassigned_task} without a task."
        )
