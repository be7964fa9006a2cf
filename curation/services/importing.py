"""Import Science-T2I datasets into the catalogue: tuples, images and pairs (``manage.py import_dataset``,
``POST /api/curation/imports/``).

Formats (``fmt="auto"`` picks by what ``path`` is):

* ``parquet`` — a Science-T2I parquet file, or a directory of ``*.parquet`` (recursive; the split of a file
  comes from its name or folder, see :func:`ml.core.data.parquet_split`). Both published row shapes:
  train-style rows (lists of paraphrased prompts; the first is used, the list is kept in the tuple's
  provenance) and test-style rows (strings); images are lists of ``{bytes, path}`` structs. Rows are read
  by :mod:`ml.core.data` (its per-row reader), so the platform and the ML code agree on the format.
* ``jsonl`` — one tuple per line, as :func:`ml.core.data.read_jsonl` reads it: ``implicit_prompt``,
  ``correct_image`` and ``wrong_image`` (image *paths*, relative to the file: image folders next to the
  file), optional ``explicit_prompt``, ``superficial_prompt``, ``task``, ``subject``, ``split``, plus the
  platform's ``scene``, ``source`` and ``provenance``. A line with neither image imports the tuple only.
* ``prompts`` — a JSON list of prompt records (``reality_simple_300.json``): handed to
  :func:`annotation.services.importing.import_prompts` unchanged (``auto`` picks it for a file starting with
  ``[``).

What is written, per record (one record = one explicit/superficial image pair of a row):
:func:`~annotation.services.catalog.upsert_tuple` (scene ``complex`` for split ``test_C``, else ``simple``,
unless a scene is given), :func:`~annotation.services.catalog.store_image` for the explicit image (kind
``explicit``) and the superficial image (kind ``superficial``), deduplicated by sha256, and
:func:`~annotation.services.catalog.create_pair` with the explicit image as the expected-correct one (the
i-th explicit image with the i-th superficial one).

**Tasks.** Parquet: the first non-empty of the columns ``task_code``, ``task``, ``category``, ``law`` is
looked up among the stored tasks by code or name (any case, ``_``/``-`` as spaces). JSONL: its ``task``.
A value that matches no task is a per-row error; a row that names none is an error too unless
``task_default`` is given: a task code, or ``"none"`` to import such rows without a task (never queued until
an admin assigns one). Decided so because a tuple silently filed without a task, or under a wrong one,
is data an admin would have to hunt for.

**Untrusted paths.** This is the platform's importer, for files that may come from anyone: an image path
in a row must be relative and stay inside the folder of the file that names it — absolute paths, ``..``
components and symbolic links pointing outside are per-row errors (``ml.core.data`` itself trusts its
operator's paths). The job and the API only read under ``settings.IMPORT_ROOTS``
(:func:`resolve_import_path`).

**Nothing half-imported.** Pass 1 reads every row, checks its fields and task, and decodes every image
with :func:`annotation.imaging.check_image` (the upload checks), and checks that no pair contradicts
another (the same two images with the roles swapped, in the file or in the catalogue — except a stored pair
whose consensus label is ``other``: the experts reversed it, the row states their answer, and it counts as
that pair, skipped; this is how an export of a version re-imports without change). Any error: nothing
is written, and the report lists the errors with their file and row (parquet rows count from 1 in each
file; JSONL rows are line numbers; problems of the whole file are row 0). Images are decoded on a thread
pool (one per core, up to 8), ``batch_size`` rows at a time with the next chunk read meanwhile, and the
stored pairs a chunk could contradict are found in one query; each row is still judged in order. Pass 2
re-reads the rows (memory stays flat in the file's size: parquet is read one row group at a time) and
writes them, ``batch_size`` rows at a time, with a few set-based statements per batch (``COPY`` on
PostgreSQL) instead of the per-row services; what is stored, counted and audited is the same
(see :class:`_BulkWriter`), and bytes pass 1 validated are not decoded again:

* inputs up to ``settings.IMPORT_SINGLE_TRANSACTION_MAX_BYTES`` (default 1 GiB; the files plus the images
  they reference) are written in **one transaction**: all or nothing;
* larger inputs are written in **one transaction per batch**. Each batch is complete (a tuple, its images
  and its pairs commit together) and every write is an upsert, so if the import stops half-way (a worker
  dies, the database goes away), running it again skips what is there and finishes the rest. One huge
  transaction would hold row locks on the tuples and a long-running snapshot for hours instead.

Image files are stored before their rows (content-addressed, see ``store_image``), so a rollback can leave
files without rows; the next import of the same bytes reuses them. An image is stored as an upload would be:
trimmed or normalised by :func:`annotation.imaging.check_image` (EXIF rotation, transparency, CMYK, 16-bit;
bytes after its end), hashed after; pass 1 notes which bytes change, pass 2 re-derives only those.

**Bounded reports.** Error messages name the row (line number in JSONL; row within its file in parquet;
0 for the file itself), the column and the reason; a value is quoted cut to 80 characters, a message to
``MAX_ERROR_CHARS``, so a 10 MB field cannot bloat the report or the job row.

**Idempotent.** Tuples are keyed by normalised implicit prompt + task, images by sha256, pairs by (tuple,
correct, wrong): importing a file again creates nothing and counts everything as skipped. Within one run a
tuple is upserted once (its first row wins), so the counts are the same on every run.

**Defaults never change stored tuples.** The scene derived from the split and the default source label
(the file or folder name) are set on *new* tuples only: a version's train split holds complex scenes too,
and re-importing an export must not relabel where a tuple came from. A scene or source given explicitly
(argument, or a row's own ``scene``/``source``) is written like any other field.

A dry run takes pass 1 and then counts, read-only, what would be created (an existing tuple counts as
skipped even where a real run would fill in an empty field of it).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.db import IntegrityError, transaction
from PIL import Image as PILImage

from annotation.imaging import ALLOWED_FORMATS, ImageRejected, check_image
from annotation.models import Image, Pair, PromptTuple, Task, normalise_prompt
from annotation.services import audit, catalog

FORMATS = ("auto", "parquet", "jsonl", "prompts")
MAX_TEXT = 2000
MAX_SHORT = 200
MAX_LISTED_ERRORS = 1000
MAX_ERROR_CHARS = 1000  # an error message longer than this is cut (a row may hold a 10 MB value)
MAX_PROVENANCE_CHARS = 20_000  # a row's provenance, as JSON
MAX_PATH_CHARS = 4096
DEFAULT_BATCH_SIZE = 100
DEFAULT_SINGLE_TRANSACTION_MAX_BYTES = 1024**3
NO_TASK = "none"
_TASK_COLUMNS = ("task_code", "task", "category", "law")
_JSONL_PLATFORM_KEYS = ("scene", "source", "provenance")

Progress = Callable[[float, str], None]


class RowError(ValueError):
    """One row cannot be imported; the message says why."""


class ImportRefused(ValueError):
    """The request itself is refused (a path outside the import roots, an unknown format or task)."""


# --- the report -----------------------------------------------------------------------------------


@dataclass
class DatasetImportReport:
    format: str = ""
    source: str = ""
    mode: str = ""  # "single" (one transaction), "batched" (one per batch) or "" (nothing written)
    dry_run: bool = False
    rows: int = 0
    records: int = 0
    tuples: dict = field(default_factory=lambda: {"created": 0, "updated": 0, "skipped": 0})
    images: dict = field(default_factory=lambda: {"created": 0, "skipped": 0})
    pairs: dict = field(default_factory=lambda: {"created": 0, "skipped": 0})
    errors: list[dict] = field(default_factory=list)
    error_count: int = 0
    payload_bytes: int = 0  # the images read in pass 1

    def add_error(self, file: str, row: int, message: str) -> None:
        self.error_count += 1
        if len(message) > MAX_ERROR_CHARS:
            message = f"{message[:MAX_ERROR_CHARS]}... ({len(message) - MAX_ERROR_CHARS} more characters)"
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"file": file, "row": row, "error": message})

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def as_dict(self) -> dict:
        errors = list(self.errors)
        if self.error_count > len(errors):
            errors.append({"file": None, "row": None,
                           "error": f"... and {self.error_count - len(errors)} more rows with errors"})
        return {"format": self.format, "source": self.source, "mode": self.mode, "dry_run": self.dry_run,
                "rows": self.rows, "records": self.records, "tuples": dict(self.tuples),
                "images": dict(self.images), "pairs": dict(self.pairs), "errors": errors,
                "error_count": self.error_count}


# --- rows -----------------------------------------------------------------------------------------


@dataclass
class _Item:
    """One record ready to write: the upsert_tuple arguments and the two images (or none)."""

    key: tuple[str, int | None]
    fields: dict
    explicit: object | None = None  # ml.core.data.ImageRef
    superficial: object | None = None
    create_only: tuple[str, ...] = ()  # fields that are defaults for a new tuple, never changes to a stored one
    columns: tuple[str, str] = ("explicit_image", "superficial_image")  # the images' names in the input


@dataclass
class _Row:
    file: str
    number: int
    items: list[_Item] = field(default_factory=list)
    error: str | None = None


class _Tasks:
    """Stored tasks by code or name (any case, ``_``/``-`` read as spaces); loaded once per import."""

    def __init__(self):
        from ml.core.data import _task_key

        self._key = _task_key
        self._by_key: dict[str, Task] = {}
        for task in Task.objects.all():
            self._by_key[_task_key(task.code)] = task
            self._by_key[_task_key(task.name)] = task

    def get(self, value: str) -> Task | None:
        return self._by_key.get(self._key(value))


@dataclass(frozen=True)
class _Options:
    source: str
    scene: str | None
    tasks: _Tasks
    task_default: Task | None
    allow_no_task: bool
    source_is_default: bool = False

    def resolve_task(self, values: list[str]) -> Task | None:
        named = [v.strip() for v in values if isinstance(v, str) and v.strip()]
        for value in named:
            task = self.tasks.get(value)
            if task is not None:
                return task
        if named:
            raise RowError(f"unknown task/category {_shown(named[0])}")
        if self.task_default is not None or self.allow_no_task:
            return self.task_default
        raise RowError("the row names no task or category (give a task default to import such rows)")


def _shown(value, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: error messages name a bad value without echoing 10 MB."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _text(value, name: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowError(f"{name} must be a string")
    value = value.strip()
    if len(value) > limit:
        raise RowError(f"{name} is {len(value)} characters long; the limit is {limit}")
    return value


def _make_item(record, *, task: Task | None, scene: str | None, opts: _Options, provenance: dict,
               subject=None, source=None, explicit=None, superficial=None) -> _Item:
    implicit = _text(record.implicit_prompt, "implicit_prompt", MAX_TEXT)
    if not implicit:
        raise RowError("implicit prompt is missing or empty")
    create_only = []
    if not (opts.scene or scene):
        create_only.append("scene")
    scene = opts.scene or scene or (PromptTuple.Scene.COMPLEX if record.split == "test_C" else PromptTuple.Scene.SIMPLE)
    if not source and opts.source_is_default:
        create_only.append("source")
    size = len(json.dumps(provenance, default=str))
    if size > MAX_PROVENANCE_CHARS:
        raise RowError(f"provenance is {size} characters long as JSON; the limit is {MAX_PROVENANCE_CHARS}")
    if scene not in PromptTuple.Scene.values:
        raise RowError(f"scene must be one of {', '.join(PromptTuple.Scene.values)}, not {_shown(scene)}")
    fields = {
        "implicit_prompt": implicit,
        "explicit_prompt": _text(record.explicit_prompt, "explicit_prompt", MAX_TEXT),
        "superficial_prompt": _text(record.superficial_prompt, "superficial_prompt", MAX_TEXT),
        "subject": _text(subject if subject is not None else record.subject, "subject", MAX_SHORT),
        "source": _text(source, "source", MAX_SHORT) or opts.source,
        "scene": scene,
        "task": task,
        "provenance": provenance,
    }
    return _Item((normalise_prompt(implicit), task.pk if task else None), fields, explicit, superficial,
                 tuple(create_only))


def _safe_image_path(value, folder: Path, column: str) -> None:
    """Refuse image paths that leave ``folder`` (absolute, ``..``, or a link pointing outside)."""
    if not isinstance(value, str) or not value:
        raise RowError(f"{column} must be a non-empty path")
    if len(value) > MAX_PATH_CHARS or "\x00" in value:
        raise RowError(f"{column} {_shown(value)}: not a usable path ({len(value)} characters)")
    pure = PurePosixPath(value.replace("\\", "/"))
    if pure.is_absolute() or Path(value).is_absolute() or (len(value) > 1 and value[1] == ":"):
        raise RowError(f"{column} {_shown(value)}: absolute paths are refused; use a path relative to the file")
    if ".." in pure.parts:
        raise RowError(f"{column} {_shown(value)}: paths may not contain '..'")
    base = folder.resolve()
    try:
        inside = (base / value).resolve().is_relative_to(base)
    except (OSError, RuntimeError) as exc:  # a name too long, a symlink loop
        raise RowError(f"{column} {_shown(value)}: cannot be resolved ({exc.__class__.__name__})") from None
    if not inside:
        raise RowError(f"{column} {_shown(value)} leads outside the file's folder")


class _Source:
    """Rows of one input, readable any number of times (once per pass)."""

    kind = ""

    def total_rows(self) -> int:
        raise NotImplementedError

    def size_bytes(self) -> int:
        raise NotImplementedError

    def rows(self, opts: _Options) -> Iterator[_Row]:
        raise NotImplementedError


class _ParquetSource(_Source):
    kind = "parquet"

    def __init__(self, path: Path, split: str | None):
        from ml.core.data import parquet_split, read_parquet_dir

        read_parquet_dir(path, split)  # checks the files and their columns now (DataError); rows read below
        root = path if path.is_dir() else path.parent
        if path.is_file():
            files = [(path, parquet_split(path, path.parent))]
        else:
            files = [(f, parquet_split(f, path)) for f in sorted(path.rglob("*.parquet"))]
        self.files = [(f, s) for f, s in files if split is None or s == split]
        self.root = root

    def _label(self, file: Path) -> str:
        return file.relative_to(self.root).as_posix() if file.is_relative_to(self.root) else file.name

    def total_rows(self) -> int:
        import pyarrow.parquet as pq

        return sum(pq.ParquetFile(f).metadata.num_rows for f, _ in self.files)

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f, _ in self.files)

    def rows(self, opts: _Options) -> Iterator[_Row]:
        import pyarrow.parquet as pq

        for file, split in self.files:
            label = self._label(file)
            number = 0
            parquet = pq.ParquetFile(file)
            # One row group at a time: iter_batches over the whole file keeps what it read in memory until
            # the end of the file (the resident set grew by the file's size).
            batches = (batch for group in range(parquet.num_row_groups)
                       for batch in parquet.iter_batches(batch_size=64, row_groups=[group]))
            for batch in batches:
                for values in batch.to_pylist():
                    number += 1
                    row = _Row(label, number)
                    try:
                        row.items = self._items(values, file.parent, split, opts, label, number)
                    except RowError as exc:
                        row.error = str(exc)
                    yield row

    def _items(self, values: dict, folder: Path, split: str, opts: _Options, label: str, number: int):
        from ml.core.data import DataError, _parquet_records

        for column in ("explicit_image", "superficial_image"):
            value = values.get(column)
            for item in value if isinstance(value, list) else [value] if isinstance(value, dict) else []:
                if isinstance(item, dict) and not item.get("bytes") and item.get("path"):
                    _safe_image_path(item["path"], folder, column)
        try:
            records = list(_parquet_records(values, folder, split))
        except DataError as exc:
            raise RowError(str(exc)) from None
        task = opts.resolve_task([values.get(c) for c in _TASK_COLUMNS])
        provenance = {"file": label, "row": number, "split": split}
        for column in ("category", "law"):
            if isinstance(values.get(column), str) and values[column]:
                provenance[column] = values[column]
        for column in ("implicit_prompts", "explicit_prompts", "superficial_prompts"):
            if column in records[0].extra:
                provenance[column] = records[0].extra[column]
        subject = values.get("subject") if isinstance(values.get("subject"), str) else ""
        scene = values.get("scene") if isinstance(values.get("scene"), str) and values.get("scene") else None
        return [_make_item(r, task=task, scene=scene, opts=opts, provenance=provenance, subject=subject,
                           explicit=r.correct_image, superficial=r.wrong_image) for r in records]


class _JsonlSource(_Source):
    kind = "jsonl"

    def __init__(self, path: Path):
        self.path = path

    def total_rows(self) -> int:
        with self.path.open("rb") as fh:
            return sum(1 for line in fh if line.strip())

    def size_bytes(self) -> int:
        return self.path.stat().st_size

    def rows(self, opts: _Options) -> Iterator[_Row]:
        with self.path.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                row = _Row(self.path.name, number)
                try:
                    row.items = [self._item(line, opts, number)]
                except RowError as exc:
                    row.error = str(exc)
                yield row

    def _item(self, line: bytes, opts: _Options, number: int) -> _Item:
        from ml.core.data import DataError, TupleRecord, _jsonl_record

        try:
            obj = json.loads(line.decode("utf-8-sig" if number == 1 else "utf-8"))
        except UnicodeDecodeError as exc:
            raise RowError(f"the line is not UTF-8 ({exc})") from None
        except json.JSONDecodeError as exc:
            raise RowError(f"not JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(obj, dict):
            raise RowError("expected a JSON object")
        folder = self.path.parent
        platform = {key: obj.pop(key) for key in _JSONL_PLATFORM_KEYS if key in obj}
        provenance = platform.get("provenance") or {}
        if not isinstance(provenance, dict):
            raise RowError("provenance must be an object")
        if "correct_image" not in obj and "wrong_image" not in obj:  # a tuple without images
            for key in ("implicit_prompt", "explicit_prompt", "superficial_prompt", "task", "subject", "split"):
                _text(obj.get(key), key, MAX_TEXT)
            record = TupleRecord(obj.get("implicit_prompt") or "", obj.get("explicit_prompt") or "",
                                 obj.get("superficial_prompt") or "", None, None, subject=obj.get("subject") or "",
                                 split=obj.get("split") or "")
            task_value = obj.get("task")
        else:
            for column in ("correct_image", "wrong_image"):
                if obj.get(column):
                    _safe_image_path(obj[column], folder, column)
            try:
                record = _jsonl_record(obj, folder)
            except DataError as exc:
                raise RowError(str(exc)) from None
            task_value = obj.get("task")
        task = opts.resolve_task([task_value])
        provenance = {"file": self.path.name, "row": number, **provenance}
        scene = platform.get("scene")
        if scene is not None and not isinstance(scene, str):
            raise RowError("scene must be a string")
        item = _make_item(record, task=task, scene=(scene or "").strip().lower() or None, opts=opts,
                          provenance=provenance, source=platform.get("source"),
                          explicit=record.correct_image, superficial=record.wrong_image)
        item.columns = ("correct_image", "wrong_image")
        return item


def _image_bytes(ref) -> bytes:
    """The encoded bytes of an :class:`ml.core.data.ImageRef`, refusing oversized files before reading."""
    if ref.data is not None:
        return ref.data
    try:
        size = ref.path.stat().st_size
        if size > settings.IMAGE_MAX_BYTES:
            raise ImageRejected(f"The file is {size} bytes; the limit is {settings.IMAGE_MAX_BYTES}.")
        return ref.path.read_bytes()
    except OSError as exc:
        raise RowError(f"cannot read image {ref.path.name}: {exc.strerror or exc}") from None


# --- the import -------------------------------------------------------------------------------------


def detect_format(path: Path) -> str:
    if path.is_dir():
        return "parquet"
    if path.suffix.lower() == ".parquet":
        return "parquet"
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return "jsonl"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        return "prompts"
    return "jsonl"


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
) -> DatasetImportReport:
    """Validate everything in ``path``, then write it (see the module docstring); return the report.

    Raises :class:`ImportRefused` for a bad call (unknown format, task default or scene); problems of the
    input (missing file, unreadable parquet, bad rows) are errors in the report.
    """
    progress = progress or (lambda fraction, message="": None)
    if fmt not in FORMATS:
        raise ImportRefused(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
    if scene is not None and scene not in PromptTuple.Scene.values:
        raise ImportRefused(f"scene must be one of {', '.join(PromptTuple.Scene.values)}, not {scene!r}.")
    if batch_size < 1:
        raise ImportRefused("batch_size must be at least 1.")
    path = Path(path)
    label = path.name or str(path)
    source_given, source = source, label if source is None else source
    if len(source) > MAX_SHORT:
        raise ImportRefused(f"The source label is {len(source)} characters long; the limit is {MAX_SHORT}.")
    tasks = _Tasks()
    default_task, allow_no_task = None, False
    if task_default is not None:
        if task_default.strip().casefold() == NO_TASK:
            allow_no_task = True
        else:
            default_task = tasks.get(task_default)
            if default_task is None:
                raise ImportRefused(f"unknown task {task_default!r}.")
    opts = _Options(source=source[:MAX_SHORT], scene=scene, tasks=tasks, task_default=default_task,
                    allow_no_task=allow_no_task, source_is_default=source_given is None)
    report = DatasetImportReport(dry_run=dry_run, source=opts.source)
    if not path.exists():
        report.format = fmt
        report.add_error(label, 0, f"{path}: no such file or directory")
        return report
    fmt = detect_format(path) if fmt == "auto" else fmt
    report.format = fmt
    if fmt == "prompts":
        return _import_prompt_list(path, report, opts, task_default, dry_run, progress)
    try:
        src = _ParquetSource(path, split) if fmt == "parquet" else _JsonlSource(path)
        if fmt == "jsonl" and path.is_dir():
            raise RowError(f"{path} is a directory; a JSONL import reads one file")
        total = max(1, src.total_rows())
    except (ValueError, OSError) as exc:  # ml.core.data.DataError is a ValueError; pyarrow errors too
        report.add_error(label, 0, str(exc))
        return report

    # Pass 1: validate every row, images decoded.
    payload = src.size_bytes()
    seen_pairs: dict[tuple, tuple[str, int]] = {}
    seen_images: dict[str, tuple[int, int, str]] = {}
    normalised: dict[str, str] = {}  # sha256 read → sha256 stored, for images check_image trimmed or normalised
    progress(0.0, "validating")
    try:
        _validate(src, opts, report, seen_pairs, batch_size, total, progress, seen_images, normalised)
    except (ValueError, OSError) as exc:  # a file that breaks mid-read (pyarrow errors are ValueErrors)
        report.add_error(label, 0, str(exc))
    if not report.ok:
        progress(0.5, f"{report.error_count} row(s) with errors; nothing written")
        return report
    payload += report.payload_bytes

    # Pass 2: write (or count, for a dry run).
    limit = getattr(settings, "IMPORT_SINGLE_TRANSACTION_MAX_BYTES", DEFAULT_SINGLE_TRANSACTION_MAX_BYTES)
    writer = (_Writer(report, dry_run=True, normalised=normalised) if dry_run
              else _BulkWriter(report, seen_pairs, seen_images, normalised))
    report.mode = "" if dry_run else ("single" if payload <= limit else "batched")
    try:
        if report.mode == "batched":
            for done in _batches(src.rows(opts), batch_size, writer):
                progress(0.5 + 0.5 * done / total, f"wrote {done} of {total} rows")
        else:
            with transaction.atomic():
                for done in _batches(src.rows(opts), batch_size, writer, atomic=False):
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


def _validate(src: _Source, opts: _Options, report: DatasetImportReport, seen_pairs: dict, batch_size: int,
              total: int, progress: Progress, seen_images: dict | None = None,
              normalised: dict | None = None) -> None:
    """Pass 1: every row read, checked and its images decoded; errors go to the report.

    Rows are taken ``batch_size`` at a time: their images are decoded on a thread pool (Pillow releases the
    GIL while decoding, so this uses every core) and the stored pairs they could contradict are looked up in
    one query; then each row is judged in order, exactly as one row at a time would be."""
    with _ImageChecker() as checker:
        for chunk, checked in checker.checked(_chunks(src.rows(opts), batch_size)):
            stored = _StoredReversals(chunk, checked)
            for row in chunk:
                report.rows += 1
                if row.error is None:
                    try:
                        report.payload_bytes += _validate_row(row, seen_pairs, checked, stored, seen_images,
                                                              normalised)
                    except RowError as exc:
                        row.error = str(exc)
                if row.error is not None:
                    report.add_error(row.file, row.number, row.error)
                else:
                    report.records += sum(1 for item in row.items if item.explicit is not None)
                if report.rows % batch_size == 0:
                    progress(0.5 * report.rows / total, f"validated {report.rows} of {total} rows")


def _chunks(rows: Iterator[_Row], size: int) -> Iterator[list[_Row]]:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _pool_size() -> int:
    """Threads for image work: the cores this process may use, at most 8."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, cores))


class _ImageChecker:
    """Reads and checks the images of chunks of rows on a thread pool (``check_image`` without the full
    decode: header, limits, PNG checksums, JPEG structure to its end marker; see annotation.imaging).

    The rows' own order of checks is kept by :func:`_validate_row`, which re-raises an image's exception
    where it would have happened."""

    def __enter__(self):
        from concurrent.futures import ThreadPoolExecutor

        workers = _pool_size()
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="import-check") if workers > 1 else None
        if self.pool is not None:
            # check_image turns DecompressionBombWarning into an error inside warnings.catch_warnings(), which
            # saves and restores the process-wide filter list; threads interleaving those saves could drop the
            # filter for one another or leave it behind. With the filter already in the list for the pool's
            # lifetime, every list they save or restore holds it, and this context restores the original.
            self._warnings = warnings.catch_warnings()
            self._warnings.__enter__()
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self._warnings.__exit__(*exc)

    def checked(self, chunks: Iterator[list[_Row]]) -> Iterator[tuple[list[_Row], dict]]:
        """Each chunk with ``{id(ref): (data, CheckedImage) or the exception}``; the next chunk is read, and
        its images queued, while this one's decode (at most two chunks in memory)."""
        pending = None
        for chunk in chunks:
            started = (chunk, self._start(chunk))
            if pending is not None:
                yield self._finish(*pending)
            pending = started
        if pending is not None:
            yield self._finish(*pending)

    def _start(self, chunk: list[_Row]) -> list:
        refs = [ref for row in chunk if row.error is None for item in row.items if item.explicit is not None
                for ref in (item.explicit, item.superficial)]
        if self.pool is None:
            return [(ref, _check_ref(ref)) for ref in refs]
        return [(ref, self.pool.submit(_check_ref, ref)) for ref in refs]

    def _finish(self, chunk: list[_Row], started: list) -> tuple[list[_Row], dict]:
        return chunk, {id(ref): result if self.pool is None else result.result() for ref, result in started}


def _check_ref(ref):
    try:
        data = _image_bytes(ref)
        return data, check_image(data, full_decode=False)
    except (RowError, ImageRejected) as exc:
        return exc


class _StoredReversals:
    """The stored pairs that hold a chunk's images with the roles swapped, found in one query:
    ``get(key, correct, wrong)`` lists ``(pk, consensus label)`` by pk, as the per-row query did."""

    def __init__(self, chunk: list[_Row], checked: dict):
        self.found: dict[tuple, list] = {}
        corrects, wrongs = set(), set()
        for row in chunk:
            for item in row.items if row.error is None else ():
                if item.explicit is None:
                    continue
                results = (checked[id(item.explicit)], checked[id(item.superficial)])
                if all(not isinstance(r, Exception) for r in results):
                    corrects.add(results[0][1].sha256)
                    wrongs.add(results[1][1].sha256)
        if not corrects:
            return
        # a stored pair contradicts a row when its correct image is the row's wrong one and vice versa
        stored = Pair.objects.filter(image_correct__sha256__in=sorted(wrongs),
                                     image_wrong__sha256__in=sorted(corrects))
        for pk, prompt, task, correct, wrong, label in stored.order_by("pk").values_list(
                "pk", "tuple__implicit_normalised", "tuple__task_id", "image_correct__sha256",
                "image_wrong__sha256", "consensus__label"):
            self.found.setdefault((prompt, wrong, correct), []).append((pk, task, label))

    def get(self, key: tuple, correct: str, wrong: str) -> list[tuple[int, str | None]]:
        """Stored pairs of ``key`` (normalised prompt, task id) with ``wrong`` as their correct image."""
        rows = self.found.get((key[0], correct, wrong), ())
        return [(pk, label) for pk, task, label in rows if not key[1] or task == key[1]]


def _validate_row(row: _Row, seen_pairs: dict, checked: dict, stored: _StoredReversals,
                  seen_images: dict | None = None, normalised: dict | None = None) -> int:
    """Decode the row's images; refuse a pair of identical images or one that contradicts another pair.
    ``seen_images`` collects each checked image's ``(width, height, format)`` by sha256, and ``normalised``
    the sha256 of the bytes read → that of the bytes to store, for images check_image trimmed or normalised
    (annotation.imaging), for pass 2."""
    payload = 0
    for index, item in enumerate(row.items):
        if item.explicit is None:
            continue
        hashes = []
        for name, ref in zip(item.columns, (item.explicit, item.superficial)):
            try:
                result = checked[id(ref)]
                if isinstance(result, Exception):
                    raise result
                data, image = result
                hashes.append(image.sha256)
                if seen_images is not None:
                    seen_images[image.sha256] = (image.width, image.height, image.format)
                if image.changes and normalised is not None:  # pass 2 stores the normalised bytes
                    normalised[hashlib.sha256(data).hexdigest()] = image.sha256
            except (ImageRejected, RowError) as exc:
                where = f" {index + 1}" if len(row.items) > 1 else ""
                raise RowError(f"{name}{where}: {exc}") from None
            payload += len(data)
        correct, wrong = hashes
        if correct == wrong:
            raise RowError("the explicit and the superficial image are the same image")
        reverse = (item.key, wrong, correct)
        if reverse in seen_pairs:
            file, number = seen_pairs[reverse]
            raise RowError(f"contradicts {file} row {number}: the same two images with the roles swapped")
        seen_pairs.setdefault((item.key, correct, wrong), (row.file, row.number))
        for pk, label in stored.get(item.key, correct, wrong):
            if label != "other":  # "other": the experts chose this orientation; the row is that pair
                raise RowError(f"contradicts stored pair {pk}: the same two images with the roles swapped")
    return payload


def _batches(rows: Iterator[_Row], batch_size: int, writer, *, atomic: bool = True) -> Iterator[int]:
    """Write ``rows`` ``batch_size`` at a time (each batch in its own transaction when ``atomic``);
    yield the number of rows done after each batch."""
    done = 0
    for batch in _chunks(rows, batch_size):
        done += _write_batch(batch, writer, atomic)
        yield done


def _write_batch(batch: list[_Row], writer, atomic: bool) -> int:
    if atomic:
        with transaction.atomic():
            writer.write_batch(batch)
    else:
        writer.write_batch(batch)
    return len(batch)


class _Writer:
    """Writes rows through the catalogue services and counts what happened, each thing once per run."""

    def __init__(self, report: DatasetImportReport, *, dry_run: bool, normalised: dict | None = None):
        self.report, self.dry_run = report, dry_run
        self.normalised = normalised or {}  # pass 1's sha256 read → sha256 stored (trimmed or normalised)
        self.tuples: dict[tuple, PromptTuple | None] = {}
        self.images: dict[str, Image | None] = {}
        self.pairs: set[tuple] = set()

    def write_batch(self, batch: list[_Row]) -> None:
        for row in batch:
            self.write(row)

    def close(self) -> None:
        pass

    def write(self, row: _Row) -> None:
        if row.error is not None:  # pass 1 saw none; the input changed under us
            raise ImportRefused(f"{row.file} row {row.number} changed since it was validated: {row.error}")
        for item in row.items:
            tuple_ = self._tuple(item)
            if item.explicit is None:
                continue
            correct = self._image(_image_bytes(item.explicit), Image.Kind.EXPLICIT, tuple_)
            wrong = self._image(_image_bytes(item.superficial), Image.Kind.SUPERFICIAL, tuple_)
            self._pair(item, tuple_, correct, wrong)

    def _tuple(self, item: _Item) -> PromptTuple | None:
        if item.key in self.tuples:
            return self.tuples[item.key]
        if self.dry_run:
            found = self._find_tuple(item)
            self.report.tuples["skipped" if found else "created"] += 1
            self.tuples[item.key] = found
            return found
        fields = item.fields
        if item.create_only and self._find_tuple(item) is not None:
            fields = {**fields, **{name: None if name == "scene" else "" for name in item.create_only}}
        tuple_, outcome = catalog.upsert_tuple(**fields)
        self.report.tuples[outcome] += 1
        self.tuples[item.key] = tuple_
        return tuple_

    @staticmethod
    def _find_tuple(item: _Item) -> PromptTuple | None:
        matches = PromptTuple.objects.filter(implicit_normalised=item.key[0])
        found = matches.filter(task_id=item.key[1]).first()
        if found is None and item.key[1] is not None:
            found = matches.filter(task__isnull=True).first()
        return found

    def _image(self, data: bytes, kind: str, tuple_: PromptTuple | None):
        import hashlib

        sha = hashlib.sha256(data).hexdigest()
        sha = self.normalised.get(sha, sha) if self.dry_run else sha  # a real run stores through store_image
        if sha in self.images:
            return self.images[sha] if not self.dry_run else sha
        if self.dry_run:
            exists = Image.objects.filter(sha256=sha).exists()
            self.report.images["skipped" if exists else "created"] += 1
            self.images[sha] = None
            return sha
        image, created = catalog.store_image(data, kind=kind, tuple=tuple_)
        self.report.images["created" if created else "skipped"] += 1
        self.images[sha] = image
        return image

    def _pair(self, item: _Item, tuple_, correct, wrong) -> None:
        if self.dry_run:
            key = (item.key, correct, wrong)
            if key in self.pairs:
                return
            self.pairs.add(key)
            exists = tuple_ is not None and (
                Pair.objects.filter(tuple=tuple_, image_correct__sha256=correct, image_wrong__sha256=wrong).exists()
                or Pair.objects.filter(tuple=tuple_, image_correct__sha256=wrong, image_wrong__sha256=correct,
                                       consensus__label="other").exists())
            self.report.pairs["skipped" if exists else "created"] += 1
            return
        key = (tuple_.pk, correct.pk, wrong.pk)
        if key in self.pairs:
            return
        self.pairs.add(key)
        if Pair.objects.filter(tuple=tuple_, image_correct=wrong, image_wrong=correct,
                               consensus__label="other").exists():
            self.report.pairs["skipped"] += 1  # stored the other way round, and the experts reversed it
            return
        _, created = catalog.create_pair(tuple_, correct, wrong)
        self.report.pairs["created" if created else "skipped"] += 1


class _BulkWriter:
    """Writes rows a batch at a time with a few set-based queries per batch; what it stores and counts, and
    the audit events it records, are what writing each row through the catalogue services would give
    (``_Writer`` above, which dry runs still use):

    * **tuples** whose normalised prompt is not stored are inserted together, as ``catalog.upsert_tuple``
      would create them; any other (a stored prompt, or a second task of a prompt created in this batch)
      goes through ``catalog.upsert_tuple`` itself, which fills in or takes over the stored tuple;
    * **images** are hashed; bytes that pass 1 validated (a pair of hashes it saw for the same tuple key) are
      not decoded again — their size and format come from pass 1 — while any other bytes (the input changed
      since) get the full check. Stored hashes count as skipped; new images are written under their content
      key, as ``catalog.store_image`` does (on a few threads, every file before its row), and inserted
      together;
    * **pairs** are skipped when stored, or stored the other way round with the experts' label ``other``; a
      pair whose tuple or an image was created in this batch (this transaction) cannot be stored and is not
      looked up; new pairs are inserted together;
    * the **audit events** of what was created (``tuple.created``, ``image.created``, ``pair.created``) are
      inserted together at the end of the batch, in its transaction.
    """

    def __init__(self, report: DatasetImportReport, validated: dict, checked: dict | None = None,
                 normalised: dict | None = None):
        self.report, self.validated = report, validated  # validated: pass 1's (key, correct, wrong) → row
        self.checked = checked or {}  # pass 1's sha256 → (width, height, format)
        self.normalised = normalised or {}  # pass 1's sha256 read → sha256 stored (trimmed or normalised)
        self.tuples: dict[tuple, int] = {}  # key → tuple id, once per run
        self.images: dict[str, int] = {}  # sha256 → image id, once per run
        self.pairs: set[tuple[int, int, int]] = set()
        self._files = None  # thread pool for image files, made on first use
        self.k = settings.DEFAULT_OVERLAP_K
        if self.k < 1:
            raise ValueError("k must be at least 1.")

    def write_batch(self, batch: list[_Row]) -> None:
        from annotation.models import AuditEvent

        for row in batch:
            if row.error is not None:  # pass 1 saw none; the input changed under us
                raise ImportRefused(f"{row.file} row {row.number} changed since it was validated: {row.error}")
        items = [item for row in batch for item in row.items]
        events: list[AuditEvent] = []
        new_tuples = self._tuples(items, events)
        images, new_images = self._images(items, events)
        self._pairs(items, images, new_tuples | new_images, events)
        _insert(AuditEvent, events)

    @staticmethod
    def _event(action: str, target_type: str, pk: int, after: dict):
        from annotation.models import AuditEvent

        return AuditEvent(actor=None, action=action, target_type=target_type, target_id=str(pk), after=after)

    def _tuples(self, items: list[_Item], events: list) -> set:
        """Every item's tuple id into ``self.tuples``; returns ``{("t", id)}`` of the tuples created here."""
        pending, keys = [], set()
        for item in items:
            if item.key not in self.tuples and item.key not in keys:
                keys.add(item.key)
                pending.append(item)
        if not pending:
            return set()
        stored = set(PromptTuple.objects.filter(implicit_normalised__in=sorted({i.key[0] for i in pending}))
                     .values_list("implicit_normalised", flat=True))
        fresh, slow, claimed = [], [], set()
        for item in pending:
            if item.key[0] in stored or item.key[0] in claimed:
                slow.append(item)
            else:
                claimed.add(item.key[0])
                fresh.append(item)
        created = set()
        if fresh:
            rows = _insert(PromptTuple, [self._new_tuple(item.fields) for item in fresh])
            for item, tuple_ in zip(fresh, rows):
                self.tuples[item.key] = tuple_.pk
                created.add(("t", tuple_.pk))
                events.append(self._event("tuple.created", "prompttuple", tuple_.pk, catalog._tuple_state(tuple_)))
            self.report.tuples["created"] += len(fresh)
        for item in slow:  # in row order, after the new prompts of this batch exist: as one row at a time
            fields = item.fields
            if item.create_only and _Writer._find_tuple(item) is not None:
                fields = {**fields, **{name: None if name == "scene" else "" for name in item.create_only}}
            tuple_, outcome = catalog.upsert_tuple(**fields)
            self.report.tuples[outcome] += 1
            self.tuples[item.key] = tuple_.pk
            if outcome == "created":
                created.add(("t", tuple_.pk))
        return created

    @staticmethod
    def _new_tuple(fields: dict) -> PromptTuple:
        """The row ``catalog.upsert_tuple(**fields)`` creates when no tuple matches."""
        implicit = fields["implicit_prompt"].strip()
        return PromptTuple(
            implicit_prompt=implicit, implicit_normalised=normalise_prompt(implicit),
            provenance=fields["provenance"] or {}, explicit_prompt=fields["explicit_prompt"].strip(),
            superficial_prompt=fields["superficial_prompt"].strip(), subject=fields["subject"].strip(),
            source=fields["source"], scene=fields["scene"] or PromptTuple.Scene.SIMPLE, task=fields["task"])

    def _images(self, items: list[_Item], events: list) -> tuple[list, set]:
        """Per item, ``(correct id, wrong id)`` (None for an item without images), and ``{("i", id)}`` of
        the images created here."""
        hashed, fresh = [], {}  # fresh: sha → [data, kind, tuple id, checked or None], first seen first
        for item in items:
            if item.explicit is None:
                hashed.append(None)
                continue
            read = []
            for ref, kind in ((item.explicit, Image.Kind.EXPLICIT), (item.superficial, Image.Kind.SUPERFICIAL)):
                data = _image_bytes(ref)
                sha = hashlib.sha256(data).hexdigest()
                read.append((self.normalised.get(sha, sha), data, kind, sha in self.normalised))
            trusted = (item.key, read[0][0], read[1][0]) in self.validated
            pair = []
            for sha, data, kind, changed in read:
                known = sha in self.images or sha in fresh
                # bytes pass 1 did not see are checked in full, as store_image would; bytes it trimmed or
                # normalised are checked again for the bytes to store (not kept in memory since pass 1)
                checked = None if known or (trusted and not changed) else check_image(data, full_decode=not trusted)
                if checked is not None:
                    sha, data = checked.sha256, checked.data
                if sha not in self.images and sha not in fresh:
                    fresh[sha] = [data, kind, self.tuples[item.key], checked]
                pair.append((sha, data, kind))
            hashed.append(pair)
        created = set()
        if fresh:
            for sha, pk in Image.objects.filter(sha256__in=sorted(fresh)).values_list("sha256", "pk"):
                self.images[sha] = pk
                del fresh[sha]
                self.report.images["skipped"] += 1
        if fresh:
            rows, files = [], []
            for sha, (data, kind, tuple_id, checked) in fresh.items():
                if checked is not None:
                    width, height, fmt = checked.width, checked.height, checked.format
                else:
                    width, height, fmt = self.checked.get(sha) or _image_header(data)
                key = catalog.storage_key(sha, ALLOWED_FORMATS[fmt])
                files.append((key, data))
                rows.append(Image(file=key, sha256=sha, width=width, height=height, format=fmt,
                                  size_bytes=len(data), kind=kind, tuple_id=tuple_id, generator="", seed=None))
            self._store_files(files)  # every file before its row, as store_image does
            rows = _insert(Image, rows)
            for image in rows:
                self.images[image.sha256] = image.pk
                created.add(("i", image.pk))
                events.append(self._event("image.created", "image", image.pk, {
                    "sha256": image.sha256, "kind": image.kind, "tuple": image.tuple_id, "generator": "",
                    "seed": None}))
            self.report.images["created"] += len(rows)
        ids = [None if pair is None else (self.images[pair[0][0]], self.images[pair[1][0]]) for pair in hashed]
        return ids, created

    def _store_files(self, files: list[tuple[str, bytes]]) -> None:
        """Write new image files, several at a time (file system calls release the GIL)."""
        if self._files is None and len(files) > 1 and _pool_size() > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._files = ThreadPoolExecutor(min(4, 2 * _pool_size()), thread_name_prefix="import-store")
        if self._files is None:
            for key, data in files:
                _store_file(key, data)
        else:
            for _ in self._files.map(lambda file: _store_file(*file), files):
                pass

    def close(self) -> None:
        if self._files is not None:
            self._files.shutdown(wait=True)
            self._files = None

    def _pairs(self, items: list[_Item], images: list, new: set, events: list) -> None:
        candidates = []
        for item, ids in zip(items, images):
            if ids is None:
                continue
            key = (self.tuples[item.key], *ids)
            if key not in self.pairs:
                self.pairs.add(key)
                candidates.append(key)
        lookup = [k for k in candidates if not ({("t", k[0]), ("i", k[1]), ("i", k[2])} & new)]
        same, reversed_other = set(), set()
        if lookup:
            image_ids = sorted({i for k in lookup for i in k[1:]})
            stored = Pair.objects.filter(tuple_id__in=sorted({k[0] for k in lookup}), image_correct_id__in=image_ids,
                                         image_wrong_id__in=image_ids)
            for tuple_id, correct, wrong, label in stored.values_list("tuple_id", "image_correct_id",
                                                                      "image_wrong_id", "consensus__label"):
                same.add((tuple_id, correct, wrong))
                if label == "other":  # stored the other way round, and the experts reversed it
                    reversed_other.add((tuple_id, wrong, correct))
        rows = []
        for key in candidates:
            if key in reversed_other or key in same:
                self.report.pairs["skipped"] += 1
            else:
                rows.append(Pair(tuple_id=key[0], image_correct_id=key[1], image_wrong_id=key[2], k=self.k))
        if rows:
            for pair in _insert(Pair, rows):
                events.append(self._event("pair.created", "pair", pair.pk, catalog._pair_state(pair)))
            self.report.pairs["created"] += len(rows)


def _insert(model, objs: list) -> list:
    """``model.objects.bulk_create(objs)``, primary keys set on the objects. On PostgreSQL the rows go in
    with one ``COPY`` (about three times faster than Django's INSERT for tens of thousands of rows): their
    ids are taken from the table's sequence first, and every column's value is what ``bulk_create`` would
    send (``pre_save`` then ``get_db_prep_save``), so the rows are the same."""
    import enum

    from django.db import connections, router

    if not objs:
        return objs
    alias = router.db_for_write(model)
    connection = connections[alias]
    meta = model._meta
    if connection.vendor != "postgresql":
        return model.objects.using(alias).bulk_create(objs, batch_size=1000)
    fields = [f for f in meta.concrete_fields if not f.primary_key]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor, connection.wrap_database_errors:
        cursor.execute("SELECT nextval(pg_get_serial_sequence(%s, %s)) FROM generate_series(1, %s)",
                       [meta.db_table, meta.pk.column, len(objs)])
        ids = sorted(row[0] for row in cursor.fetchall())
        columns = ", ".join(quote(f.column) for f in (meta.pk, *fields))
        with cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy:
            for pk, obj in zip(ids, objs):
                obj.pk = pk
                values = [pk]
                for f in fields:
                    value = f.get_db_prep_save(f.pre_save(obj, True), connection)
                    values.append(value.value if isinstance(value, enum.Enum) else value)
                copy.write_row(values)
    for obj in objs:
        obj._state.adding, obj._state.db = False, alias
    return objs


def _image_header(data: bytes) -> tuple[int, int, str]:
    """Width, height and format from the header, as ``check_image`` reads them (no pixel decoded)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)  # checked in pass 1
        with PILImage.open(io.BytesIO(data)) as img:
            return img.size[0], img.size[1], img.format


def _store_file(key: str, data: bytes) -> None:
    """Write image bytes under their content key unless there already, as ``catalog.store_image`` does.

    On local media the file is created directly (``O_EXCL``: an existing file is kept, as the storage's
    ``exists`` check did), which saves the storage API's per-file stat, lock and name probing: about a
    third of an import's time went to it. Other storages (S3) go through the storage API.
    """
    from django.core.files.base import ContentFile
    from django.core.files.storage import FileSystemStorage, default_storage

    if isinstance(default_storage, FileSystemStorage):
        _create_local_file(default_storage.path(key), data)
    elif not default_storage.exists(key):
        saved = default_storage.save(key, ContentFile(data))
        if saved != key:  # a concurrent writer won the race for the same bytes
            default_storage.delete(saved)


def _create_local_file(path: str, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, flags, 0o666)
        except FileExistsError:
            return
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as handle:
        if settings.FILE_UPLOAD_PERMISSIONS is not None:
            os.fchmod(fd, settings.FILE_UPLOAD_PERMISSIONS)
        handle.write(data)


@dataclass(frozen=True)
class DatasetImport:
    """What the audit event of an import without a job points at (``target_type`` "datasetimport"):
    the imported path."""

    pk: str


def _audit(actor, job, report: DatasetImportReport, path: Path) -> None:
    target = job if job is not None else DatasetImport(str(path)[-64:])
    counts = {k: v for k, v in report.as_dict().items() if k in ("format", "source", "mode", "rows", "records",
                                                                   "tuples", "images", "pairs")}
    audit.record(actor, "dataset.imported", target, after={"path": str(path), **counts})


def _import_prompt_list(path, report, opts, task_default, dry_run, progress) -> DatasetImportReport:
    """A JSON prompt list goes through the prompt importer (same rules as ``import_prompts``)."""
    from annotation.services.importing import import_prompts

    progress(0.0, "importing prompts")
    task = None if task_default is None or opts.allow_no_task else task_default
    try:
        inner = import_prompts(path, task=task, source=opts.source, scene=opts.scene, dry_run=dry_run)
    except ValueError as exc:
        raise ImportRefused(str(exc)) from exc
    report.rows = inner.created + inner.updated + inner.skipped + inner.error_count
    report.tuples = {"created": inner.created, "updated": inner.updated, "skipped": inner.skipped}
    for error in inner.errors:
        report.add_error(path.name, error["row"], error["error"])
    report.error_count = inner.error_count
    report.mode = "" if dry_run or inner.error_count else "single"
    progress(1.0, "import done")
    return report


# --- the background job -----------------------------------------------------------------------------


def import_roots() -> list[Path]:
    """Where the job and the API may read: ``settings.IMPORT_ROOTS`` (default ``MEDIA_ROOT/imports``)."""
    roots = getattr(settings, "IMPORT_ROOTS", None) or [Path(settings.MEDIA_ROOT) / "imports"]
    return [Path(root).resolve() for root in roots]


def resolve_import_path(value: str) -> Path:
    """The real path of ``value`` if it lies under an import root (a relative value is relative to the
    first root); :class:`ImportRefused` otherwise. Links are resolved before the check."""
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ImportRefused("path is empty.")
    roots = import_roots()
    candidate = Path(value)
    if not candidate.is_absolute():
        candidate = roots[0] / candidate
    resolved = Path(os.path.realpath(candidate))
    if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
        raise ImportRefused(f"{value!r} is not under an import root ({', '.join(map(str, roots))}).")
    return resolved


def path_exists(path: Path) -> bool:
    """``path.exists()``, but False for a path the filesystem cannot hold: a name over its length limit
    raises ``OSError`` (ENAMETOOLONG), which was a 500 in the import API and form."""
    try:
        return path.exists()
    except OSError:
        return False


class ImportFailed(RuntimeError):
    """A job's import had row errors; the report is in the job's result."""


def run_import_job(job, progress: Progress) -> dict:
    """The handler of ``Job.Kind.IMPORT`` (see curation.services.jobs): params ``{path, fmt, split, source,
    dry_run, task_default}``. Row errors fail the job with the report kept in ``job.result``."""
    from curation.models import Job

    params = job.params or {}
    path = resolve_import_path(params.get("path", ""))
    report = import_dataset(
        path, fmt=params.get("fmt") or params.get("format") or "auto", split=params.get("split") or None,
        source=params.get("source") or None, dry_run=bool(params.get("dry_run")), progress=progress,
        actor=job.created_by, task_default=params.get("task_default") or None, job=job,
    )
    result = report.as_dict()
    if not report.ok:
        Job.objects.filter(pk=job.pk).update(result=result)
        raise ImportFailed(f"{report.error_count} row(s) have errors; nothing was written.")
    return result
