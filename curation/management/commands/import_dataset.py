"""``manage.py import_dataset PATH``: a thin wrapper around :mod:`curation.services.importing`."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from annotation.models import PromptTuple
from annotation.services.importing import listing_lines
from curation.management.progress import ProgressStream
from curation.services.importing import FORMATS, ImportRefused, import_dataset


class Command(BaseCommand):
    help = (
        "Import a Science-T2I dataset from PATH: a parquet file or a directory of parquet files (the published "
        "Science-T2I-Trainset/-S/-C folders, each alone or together, or this platform's combined export; "
        "train-style rows with lists of paraphrases and several images per side, test-style rows with strings; "
        "category/law read by value: a task code or name, or a discipline, in either column), JSONL with one "
        "tuple per line and image paths relative to the file, or a JSON prompt list. Every paraphrase and "
        "image is kept: n explicit and m superficial images make max(n, m) pairs, pair i = (explicit[i %% n], "
        "superficial[i %% m]). Each pair gets the row's label as an imported decision and leaves the queue, "
        "unless --open-for-annotation. Every row is validated first (images decoded); if any row has an error "
        "nothing is written and the command fails. Idempotent: importing the same data again creates nothing. "
        "Details: curation/services/importing/."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="A .parquet file, a directory of them, a .jsonl file or a JSON prompt list.")
        parser.add_argument(
            "--format",
            choices=FORMATS,
            default="auto",
            help="Input format (default: auto, from the path and the file's first bytes).",
        )
        parser.add_argument("--split", help="Parquet: import only this split (train, test_S, test_C, ...).")
        parser.add_argument("--source", help="Source label stored on new tuples (default: the file or folder name).")
        parser.add_argument(
            "--task-default",
            metavar="CODE",
            help="Task for rows that name no task (no task column, category or law naming one; a "
            "discipline alone names none): a code such as RU, or 'none' to import them "
            "without a task. Without it (and without --auto-task or a merge) such rows are "
            "errors. Rows naming an unknown task are errors either way.",
        )
        parser.add_argument(
            "--auto-task",
            action="store_true",
            help="Guess the task of rows that name none from keywords of the implicit prompt "
            "(annotation/task_rules.py, as import_prompts --auto-task); a guess must belong "
            "to the discipline the row names. Rows it cannot assign are errors, or imported "
            "without a task with --task-default none; the report lists them.",
        )
        parser.add_argument(
            "--merge-same-prompt",
            action="store_true",
            help="A row without a task whose prompt one stored tuple (or another row) has with a "
            "task joins that tuple, as if it named the task; checked before --auto-task. "
            "Several tasks with that prompt: not merged, reported. Without it such rows are "
            "reported (same_prompt) and make a tuple of their own.",
        )
        parser.add_argument(
            "--open-for-annotation",
            action="store_true",
            help="Leave the imported pairs open for annotation, with no decision. By default each "
            "pair gets the row's label (published data: the explicit image is correct; this "
            "platform's export: its label column) as an imported decision, with the source, "
            "row and split as provenance, and leaves the queue; a pair with a decision of "
            "its own here (judgements at k, an adjudication) keeps it.",
        )
        parser.add_argument(
            "--scene",
            choices=PromptTuple.Scene.values,
            help="Scene of every tuple (default: complex for split test_C, else simple).",
        )
        parser.add_argument("--batch-size", type=int, default=100, help="Rows written per batch (default 100).")
        parser.add_argument("--dry-run", action="store_true", help="Validate and count, but write nothing.")
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print the report as one JSON object (no progress bar). The exit status is still non-zero on errors.",
        )

    def handle(self, *args, **opts):
        bar = None
        if not opts["json"]:
            from tqdm import tqdm

            bar = tqdm(
                total=1000,
                unit="‰",
                desc="import",
                file=ProgressStream(self.stderr),
                leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}",
            )

        def progress(fraction: float, message: str = "") -> None:
            if bar is not None:
                bar.update(max(0, int(fraction * 1000) - bar.n))
                bar.set_postfix_str(message, refresh=True)

        try:
            report = import_dataset(
                opts["path"],
                fmt=opts["format"],
                split=opts["split"],
                source=opts["source"],
                dry_run=opts["dry_run"],
                progress=progress,
                task_default=opts["task_default"],
                scene=opts["scene"],
                batch_size=opts["batch_size"],
                auto_task=opts["auto_task"],
                merge_same_prompt=opts["merge_same_prompt"],
                decisions="open" if opts["open_for_annotation"] else "import",
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
                t, i, p, d = summary["tuples"], summary["images"], summary["pairs"], summary["decisions"]
                decided = (
                    f"Decisions: {d['recorded']} recorded, {d['unchanged']} unchanged, {d['kept']} kept."
                    if summary["options"].get("decisions") == "import"
                    else "Decisions: none (pairs left open for annotation)."
                )
                plural = "s" if report.mode == "batched" else ""
                mode = f", {report.mode} transaction{plural}" if report.mode else ""
                self.stdout.write(
                    f"{prefix}read {report.rows} rows ({report.records} pairs, {report.format}{mode}). "
                    f"Tuples: {t['created']} created, {t['updated']} updated, {t['skipped']} skipped. "
                    f"Images: {i['created']} created, {i['skipped']} skipped. "
                    f"Pairs: {p['created']} created, {p['skipped']} skipped. {decided}"
                )
            for line in listing_lines(summary["unassigned"], summary["same_prompt"]):
                self.stdout.write(line)
        if not report.ok:
            raise CommandError(f"{report.error_count} row(s) have errors; nothing was written.")
