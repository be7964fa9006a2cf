"""``manage.py import_dataset PATH``: a thin wrapper around :mod:`curation.services.importing`."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from annotation.models import PromptTuple
from curation.services.importing import FORMATS, ImportRefused, import_dataset


class Command(BaseCommand):
    help = (
        "Import a Science-T2I dataset from PATH: a parquet file or a directory of parquet files (train-style "
        "rows with lists of paraphrases and test-style rows with strings; category/law mapped onto the stored "
        "tasks), JSONL with one tuple per line and image paths relative to the file, or a JSON prompt list. "
        "Every row is validated first (images decoded); if any row has an error nothing is written and the "
        "command fails. Idempotent: importing the same data again creates nothing. "
        "Details: curation/services/importing/."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="A .parquet file, a directory of them, a .jsonl file or a JSON prompt list.")
        parser.add_argument("--format", choices=FORMATS, default="auto",
                            help="Input format (default: auto, from the path and the file's first bytes).")
        parser.add_argument("--split", help="Parquet: import only this split (train, test_S, test_C, ...).")
        parser.add_argument("--source", help="Source label stored on new tuples (default: the file or folder name).")
        parser.add_argument("--task-default", metavar="CODE",
                            help="Task for rows that name no task or category (a code such as RU), or 'none' to "
                                 "import them without a task. Without it such rows are errors. Rows naming an "
                                 "unknown task are errors either way.")
        parser.add_argument("--scene", choices=PromptTuple.Scene.values,
                            help="Scene of every tuple (default: complex for split test_C, else simple).")
        parser.add_argument("--batch-size", type=int, default=100, help="Rows written per batch (default 100).")
        parser.add_argument("--dry-run", action="store_true", help="Validate and count, but write nothing.")
        parser.add_argument("--json", action="store_true",
                            help="Print the report as one JSON object (no progress bar). The exit status is still "
                                 "non-zero on errors.")

    def handle(self, *args, **opts):
        bar = None
        if not opts["json"]:
            from tqdm import tqdm

            bar = tqdm(total=1000, unit="‰", desc="import", file=self.stderr._out, leave=False,
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

        def progress(fraction: float, message: str = "") -> None:
            if bar is not None:
                bar.update(max(0, int(fraction * 1000) - bar.n))
                bar.set_postfix_str(message, refresh=True)

        try:
            report = import_dataset(
                opts["path"], fmt=opts["format"], split=opts["split"], source=opts["source"],
                dry_run=opts["dry_run"], progress=progress, task_default=opts["task_default"], scene=opts["scene"],
                batch_size=opts["batch_size"],
            )
        except ImportRefused as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if bar is not None:
                bar.close()
        summary = report.as_dict()
        if opts["json"]:
            self.stdout.write(json.dumps(summary))
        else:
            for error in summary["errors"]:
                where = f"{error['file']} row {error['row']}" if error["file"] else "..."
                self.stderr.write(f"{where}: {error['error']}")
            if report.ok:
                prefix = "Dry run, nothing written: would have " if report.dry_run else ""
                t, i, p = summary["tuples"], summary["images"], summary["pairs"]
                self.stdout.write(
                    f"{prefix}read {report.rows} rows ({report.records} pairs, {report.format}"
                    f"{', ' + report.mode + ' transaction' + ('s' if report.mode == 'batched' else '') if report.mode else ''}). "
                    f"Tuples: {t['created']} created, {t['updated']} updated, {t['skipped']} skipped. "
                    f"Images: {i['created']} created, {i['skipped']} skipped. "
                    f"Pairs: {p['created']} created, {p['skipped']} skipped."
                )
        if not report.ok:
            raise CommandError(f"{report.error_count} row(s) have errors; nothing was written.")
