"""``manage.py import_prompts FILE``: a thin wrapper around :mod:`annotation.services.importing`."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from annotation.models import PromptTuple
from annotation.services.importing import ImportReport, import_prompts, listing_lines


class Command(BaseCommand):
    help = (
        "Import implicit prompts (and optionally full Science-T2I tuples) from FILE. "
        'FILE is a JSON list of {"prompt", "object"} records (like reality_simple_300.json) or of full '
        "tuples, or JSONL with one full tuple per line: implicit_prompt (required), explicit_prompt, "
        "superficial_prompt, task (code or name), subject, scene, source, provenance. "
        "Every row is validated first; if any row has an error nothing is written and the command fails. "
        "Idempotent: a tuple is keyed by its normalised implicit prompt and task, so importing the same "
        "file again reports every row as skipped. The report lists the rows left without a task and the "
        "prompts that come without a task here but have one on a stored tuple (or another row); "
        "--merge-same-prompt joins such rows to that tuple. Details: annotation/services/importing.py."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path of the JSON or JSONL file.")
        assign = parser.add_mutually_exclusive_group()
        assign.add_argument("--task", metavar="CODE", help="Task code (e.g. RU) for every row that names none.")
        assign.add_argument(
            "--auto-task",
            action="store_true",
            help="Guess the task of rows that name none from keywords of the implicit prompt "
            "(rules in annotation/task_rules.py). Rows no rule matches stay without a task (listed in the "
            "report).",
        )
        parser.add_argument(
            "--merge-same-prompt",
            action="store_true",
            help="A row without a task whose prompt one stored tuple (or another row of the file) has with a "
            "task joins that tuple, as if it named the task; checked before --auto-task guesses. Several "
            "tasks with that prompt: not merged, reported. Without it such rows are reported and make a "
            "tuple of their own.",
        )
        parser.add_argument("--source", help="Source label for rows that name none (default: the file name).")
        parser.add_argument(
            "--scene",
            choices=PromptTuple.Scene.values,
            default=PromptTuple.Scene.SIMPLE,
            help="Scene for rows that name none (default: simple).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help='Print one JSON object {"created", "updated", "skipped", "errors": [{"row", "error"}], '
            '"unassigned_task", "unassigned": {"count", "rows"}, "same_prompt": {"count", "rows", "merged", '
            '"prompts"}} instead of text. The exit status is still non-zero on errors.',
        )
        parser.add_argument("--dry-run", action="store_true", help="Validate and count, but write nothing.")

    def handle(self, *args, **opts):
        try:
            report = import_prompts(
                opts["file"],
                task=opts["task"],
                auto_task=opts["auto_task"],
                source=opts["source"],
                scene=opts["scene"],
                dry_run=opts["dry_run"],
                merge_same_prompt=opts["merge_same_prompt"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        if opts["json"]:
            self.stdout.write(json.dumps(report.as_dict()))
        else:
            self._print_text(report, dry_run=opts["dry_run"])
        if report.error_count:
            raise CommandError(f"{report.error_count} row(s) have errors; nothing was written.")

    def _print_text(self, report: ImportReport, *, dry_run: bool) -> None:
        for error in report.as_dict()["errors"]:
            self.stderr.write(f"row {error['row']}: {error['error']}")
        if report.error_count:
            return
        prefix = "Dry run, nothing written: would have " if dry_run else ""
        self.stdout.write(
            f"{prefix}created {report.created}, updated {report.updated}, skipped {report.skipped}; "
            f"{report.unassigned_task} without a task."
        )
        counts = sorted(report.per_task.items(), key=lambda kv: kv[0] or "~")  # "no task" last
        self.stdout.write("Rows per task: " + ", ".join(f"{code or 'no task'} {n}" for code, n in counts))
        summary = report.as_dict()
        for line in listing_lines(summary["unassigned"], summary["same_prompt"]):
            self.stdout.write(line)
