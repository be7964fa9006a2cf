"""The import: :func:`import_dataset` checks every row (pass 1, :mod:`.checking`), then writes them (pass 2:
:mod:`.bulk`; a dry run counts them with :mod:`.writing`) and records the audit event; a JSON prompt list
goes to the prompt importer instead.

**Nothing half-imported.** Nothing is written unless pass 1 found no error (see :mod:`.checking`). Pass 2
re-reads the rows (memory stays flat in the file's size: parquet is read one row group at a time) and
writes them, ``batch_size`` rows at a time, with a few set-based statements per batch (``COPY`` on
PostgreSQL) instead of the per-row services; what is stored, counted and audited is the same
(see :class:`.bulk.BulkWriter`), and bytes pass 1 validated are not decoded again:

* inputs up to ``settings.IMPORT_SINGLE_TRANSACTION_MAX_BYTES`` (default 1 GiB; the files plus the images
  they reference) are written in **one transaction**: all or nothing;
* larger inputs are written in **one transaction per batch**. Each batch is complete (a tuple, its images
  and its pairs commit together) and every write is an upsert, so if the import stops half-way (a worker
  dies, the database goes away), running it again skips what is there and finishes the rest. One huge
  transaction would hold row locks on the tuples and a long-running snapshot for hours instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction

from annotation.models import PromptTuple
from annotation.services import audit
from curation.services.importing.base import (
    DECISIONS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_SINGLE_TRANSACTION_MAX_BYTES,
    FORMATS,
    MAX_SHORT,
    NO_TASK,
    DatasetImportReport,
    ImportRefused,
    Progress,
)
from curation.services.importing.bulk import BulkWriter
from curation.services.importing.checking import validate_rows
from curation.services.importing.reading import JsonlSource, ParquetSource, detect_format
from curation.services.importing.records import Options
from curation.services.importing.tasks import Tasks, TaskTracker
from curation.services.importing.writing import Writer, write_batches


def _no_progress(fraction: float, message: str = "") -> None:
    """The progress callback of a caller that does not follow progress."""


def import_dataset(
    path: str | Path,
    *,
    fmt: str = "auto",
    split: str | None = None,
    source: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    actor=None,
    task_default: str | None = None,
    scene: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    job=None,
    decisions: str = "import",
    auto_task: bool = False,
    merge_same_prompt: bool = False,
    within: list[Path] | None = None,
) -> DatasetImportReport:
    """Validate everything in ``path``, then write it (see the module docstring); return the report.

    ``decisions``: ``"import"`` records each pair's label as an imported decision (the pair leaves the
    queue), ``"open"`` leaves new pairs open for annotation (:mod:`.records`). ``auto_task``: rows naming no
    task get the task the keyword rules guess; ``merge_same_prompt``: a row without a task joins the one
    tuple that has its prompt with a task (:mod:`.tasks`). ``task_default``: a task code for rows naming
    none, or ``"none"`` to import them without a task. ``within``: folders every file read must lie in once
    links are resolved (the job and the API pass the import roots; the command line reads what the operator
    names).

    Raises :class:`ImportRefused` for a bad call (unknown format, decisions, task default or scene; a task
    default code together with ``auto_task``); problems of the input (missing file, unreadable parquet,
    bad rows) are errors in the report.
    """
    progress = progress or _no_progress
    if fmt not in FORMATS:
        raise ImportRefused(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
    if decisions not in DECISIONS:
        raise ImportRefused(f"decisions must be one of {', '.join(DECISIONS)}, not {decisions!r}.")
    if scene is not None and scene not in PromptTuple.Scene.values:
        raise ImportRefused(f"scene must be one of {', '.join(PromptTuple.Scene.values)}, not {scene!r}.")
    if batch_size < 1:
        raise ImportRefused("batch_size must be at least 1.")
    path = Path(path)
    label = path.name or str(path)
    source_given, source = source, label if source is None else source
    if len(source) > MAX_SHORT:
        raise ImportRefused(f"The source label is {len(source)} characters long; the limit is {MAX_SHORT}.")
    tasks = Tasks()
    default_task, allow_no_task = None, False
    if task_default is not None:
        if task_default.strip().casefold() == NO_TASK:
            allow_no_task = True
        else:
            default_task = tasks.get(task_default)
            if default_task is None:
                raise ImportRefused(f"unknown task {task_default!r}.")
            if auto_task:
                raise ImportRefused(
                    "Give either a task default code or auto_task, not both (a task default of "
                    "'none' imports the rows the rules cannot assign without a task)."
                )
    opts = Options(
        source=source[:MAX_SHORT],
        scene=scene,
        tasks=tasks,
        task_default=default_task,
        allow_no_task=allow_no_task,
        source_is_default=source_given is None,
        auto_task=bool(auto_task),
        merge_same_prompt=bool(merge_same_prompt),
        decisions=decisions,
    )
    report = DatasetImportReport(dry_run=dry_run, source=opts.source)
    report.options = {
        "decisions": decisions,
        "auto_task": bool(auto_task),
        "merge_same_prompt": bool(merge_same_prompt),
        "task_default": default_task.code if default_task else (NO_TASK if allow_no_task else None),
    }
    if not path.exists():
        report.format = fmt
        report.add_error(label, 0, f"{path}: no such file or directory")
        return report
    fmt = detect_format(path) if fmt == "auto" else fmt
    report.format = fmt
    if fmt == "prompts":
        return _import_prompt_list(path, report, opts, task_default, dry_run, progress)
    if fmt == "jsonl" and path.is_dir():
        report.add_error(label, 0, f"{path} is a directory; a JSONL import reads one file")
        return report
    try:
        src = ParquetSource(path, split, within) if fmt == "parquet" else JsonlSource(path)
        total = max(1, src.total_rows())
    except (ValueError, OSError) as exc:  # science_t2i.format.DataError is a ValueError; pyarrow errors too
        report.add_error(label, 0, str(exc))
        return report

    # Pass 1: validate every row, images decoded.
    payload = src.size_bytes()
    seen_pairs: dict[tuple, tuple[str, int]] = {}
    seen_images: dict[str, tuple[int, int, str]] = {}
    normalised: dict[str, str] = {}  # sha256 read → sha256 stored, for images check_image trimmed or normalised
    tracker = TaskTracker(merge=opts.merge_same_prompt)
    progress(0.0, "validating")
    try:
        validate_rows(src, opts, report, seen_pairs, batch_size, total, progress, seen_images, normalised, tracker)
    except (ValueError, OSError) as exc:  # a file that breaks mid-read (pyarrow errors are ValueErrors)
        report.add_error(label, 0, str(exc))
    else:
        _resolve_tasks(tracker, opts, report, seen_pairs, src.labels())
    if not report.ok:
        progress(0.5, f"{report.error_count} row(s) with errors; nothing written")
        return report
    payload += report.payload_bytes

    # Pass 2: write (or count, for a dry run).
    limit = getattr(settings, "IMPORT_SINGLE_TRANSACTION_MAX_BYTES", DEFAULT_SINGLE_TRANSACTION_MAX_BYTES)
    writer = (
        Writer(report, dry_run=True, normalised=normalised)
        if dry_run
        else BulkWriter(report, seen_pairs, seen_images, normalised)
    )
    report.mode = "" if dry_run else ("single" if payload <= limit else "batched")
    try:
        if report.mode == "batched":
            for done in write_batches(src.rows(opts), batch_size, writer):
                progress(0.5 + 0.5 * done / total, f"wrote {done} of {total} rows")
        else:
            with transaction.atomic():
                for done in write_batches(src.rows(opts), batch_size, writer, atomic=False):
                    progress(0.5 + 0.5 * done / total, f"{'counted' if dry_run else 'wrote'} {done} of {total} rows")
                if not dry_run:
                    _audit(actor, job, report, path)
    except IntegrityError as exc:  # a concurrent writer stored one of these rows first
        raise ImportRefused(
            "Another writer changed the catalogue during the import; "
            + ("nothing was written" if report.mode == "single" else "run the import again to finish it")
            + f" ({exc})."
        ) from exc
    finally:
        writer.close()
    if report.mode == "batched":
        with transaction.atomic():
            _audit(actor, job, report, path)
    progress(1.0, "dry run done" if dry_run else "import done")
    return report


def _resolve_tasks(
    tracker: TaskTracker, opts: Options, report: DatasetImportReport, seen_pairs: dict, files: list[str]
) -> None:
    """After pass 1: the merges of task-less rows (pass 2 reads them through ``opts.merges``), the task
    listings, and the rows that still need a task reported as errors, in file and row order."""
    before = report.error_count
    opts.merges.update(tracker.resolve(opts.tasks, report))
    for (key, correct, wrong), seen in list(seen_pairs.items()):  # pass 2 keys merged rows by their task
        if key[1] is None and key[0] in opts.merges:
            seen_pairs.setdefault(((key[0], opts.merges[key[0]].pk), correct, wrong), seen)
    if report.error_count != before:
        order = {file: index for index, file in enumerate(files)}
        report.errors.sort(key=lambda e: (order.get(e["file"], len(order)), e["row"] or 0))


@dataclass(frozen=True)
class DatasetImport:
    """What the audit event of an import without a job points at (``target_type`` "datasetimport"):
    the imported path."""

    pk: str


def _audit(actor, job, report: DatasetImportReport, path: Path) -> None:
    target = job if job is not None else DatasetImport(str(path)[-64:])
    counts = {
        k: v
        for k, v in report.as_dict().items()
        if k in ("format", "source", "mode", "options", "rows", "records", "tuples", "images", "pairs", "decisions")
    }
    counts["unassigned"] = report.unassigned["count"]
    counts["same_prompt"] = {k: report.same_prompt.get(k, 0) for k in ("count", "merged")}
    audit.record(actor, "dataset.imported", target, after={"path": str(path), **counts})


def _import_prompt_list(path, report, opts, task_default, dry_run, progress) -> DatasetImportReport:
    """A JSON prompt list goes through the prompt importer (same rules as ``import_prompts``)."""
    from annotation.services.importing import import_prompts

    progress(0.0, "importing prompts")
    task = None if task_default is None or opts.allow_no_task else task_default
    try:
        inner = import_prompts(
            path,
            task=task,
            auto_task=opts.auto_task,
            merge_same_prompt=opts.merge_same_prompt,
            source=opts.source,
            scene=opts.scene,
            dry_run=dry_run,
        )
    except ValueError as exc:
        raise ImportRefused(str(exc)) from exc
    report.rows = inner.created + inner.updated + inner.skipped + inner.error_count
    report.tuples = {"created": inner.created, "updated": inner.updated, "skipped": inner.skipped}
    for error in inner.errors:
        report.add_error(path.name, error["row"], error["error"])
    report.error_count = inner.error_count
    listed = inner.as_dict()
    report.unassigned = listed["unassigned"]
    report.same_prompt = listed["same_prompt"]
    report.mode = "" if dry_run or inner.error_count else "single"
    progress(1.0, "import done")
    return report
