"""Export a frozen dataset version: Science-T2I parquet, JSONL + image folder, WebDataset tar shards.

``export_version(version, fmt)`` writes ``MEDIA_ROOT/exports/<version id>/<format>/`` (or ``out=``) and
returns a result dict (``path``, ``files``, ``bytes``, ``counts``, ``manifest``). The export is built in a
temporary sibling directory (``.<name>.tmp-<random>``) and renamed into place only when complete, so a
reader never sees half an export; on any error the temporary directory is removed and nothing appears at
the final path. A process killed outright cannot remove it: each temporary directory has a flocked
``.lock`` sibling, and the next export of the same target removes those whose lock is free
(:func:`sweep_abandoned`; tested by SIGKILLing a worker mid-export). A finished export (its directory holds ``MANIFEST.sha256``) of the same version and format
is reused: versions are immutable, and ``export.json`` records the version's content hash to be sure.

Every export holds ``MANIFEST.sha256`` (``sha256sum`` format: ``<hex>  <relative path>``, one line per file,
sorted; verify with ``sha256sum -c MANIFEST.sha256``) and ``export.json`` (provenance and counts).

Members are streamed split by split in pair order, ``batch_size`` at a time (``.values().iterator()``),
and image bytes are read from ``default_storage`` per batch, so memory is bounded by about two batches
(plus one parquet row group) whatever the size of the version. The work is spread over threads, as the
encoded bytes are only copied, never decoded: the next batch's images are read in the background while
the current one is written, parquet row groups are encoded and written in the background while the next
is built, and the sha256 of the manifest is computed in the background as files are finished (from the
bytes in memory for the JSONL image folder), so finishing the export does not read everything back.
Shards roll over before ``shard_bytes`` (default 500 MB) would be exceeded, judged by the encoded image
bytes plus text of each row; a single row larger than the limit gets a shard of its own. The figures are
in ``docs/benchmarks/export.md`` (``bench/export_import.py``).

Labels and images
-----------------
A member's label is stated relative to the pair's *expected* image (see :mod:`curation.models`). The
exported "correct" image is the one the experts judged correct:

* ``expected`` → correct = ``pair.image_correct``, wrong = ``pair.image_wrong``;
* ``other`` → **swapped**: correct = ``pair.image_wrong``, wrong = ``pair.image_correct`` (the experts chose
  the image the catalogue expected to be wrong);
* ``both`` / ``neither`` have no correct image: they are **left out of parquet and WebDataset** (whose layout
  states which image is correct) and counted under ``counts["excluded"]``; JSONL keeps every member, with
  ``correct_image``/``wrong_image`` in the pair's expected orientation for these two labels, so consumers
  must filter on ``label`` (``expected_image``/``other_image`` always give the catalogue's orientation).

Formats
-------
* ``parquet`` — the published Science-T2I columns ``implicit_prompt``, ``explicit_prompt``,
  ``superficial_prompt`` (strings), ``explicit_image`` = [correct image], ``superficial_image`` = [wrong
  image] (lists of ``datasets.Image`` structs ``{bytes, path}`` with embedded bytes), ``category`` (task
  name), ``law`` (task code); plus ``tuple_id``, ``pair_id``, ``task`` (code), ``discipline``, ``label``,
  ``consensus`` (the frozen outcome), ``agreement``, ``n_judgements``. Files
  ``<split>-<i:05d>-of-<n:05d>.parquet`` for the splits ``train``, ``validation``, ``test_S``, ``test_C``
  (a split without rows has no file), and a dataset card ``README.md`` whose YAML ``configs`` map each split
  to its files, so ``datasets.load_dataset(<dir>)`` finds all four splits. The image bytes columns are
  written without compression, dictionary or statistics (JPEG/PNG/WebP bytes do not compress); the other
  columns use pyarrow's defaults.
* ``jsonl`` — ``tuples.jsonl`` (every member) and ``<split>.jsonl``; images in ``images/<sha256>.<ext>``
  (each stored once), referenced by paths relative to the export directory (readable by
  :func:`ml.core.data.read_jsonl` once both/neither rows are filtered out).
* ``webdataset`` — ``<split>-<n:05d>.tar`` shards; sample key ``p<pair id>``: ``<key>.json`` (prompts, ids,
  label, consensus, ...), ``<key>.correct.<ext>``, ``<key>.wrong.<ext>`` (standard ``tarfile``).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import glob
import hashlib
import io
import json
import os
import secrets
import shutil
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from curation.models import DatasetVersion, Job, Label, VersionMember

FORMATS = ("parquet", "jsonl", "webdataset")
SPLITS = tuple(VersionMember.Split.values)  # train, validation, test_S, test_C
DEFAULT_SHARD_BYTES = 500 * 1000 * 1000
DEFAULT_BATCH_SIZE = 64
MANIFEST = "MANIFEST.sha256"
METADATA = "export.json"
DECIDED = (Label.EXPECTED, Label.OTHER)  # labels with a correct image: the only ones in parquet / WebDataset
_ROW_OVERHEAD = 512  # bytes per row besides images and prompts, for the shard size estimate

Progress = Callable[[float, str], None]


class ExportError(ValueError):
    """An export that cannot be made as asked (unknown format, a target that is not ours, ...)."""


# --- where exports live ----------------------------------------------------------------------------

def export_root() -> Path:
    return Path(settings.MEDIA_ROOT) / "exports"


def export_dir(version: DatasetVersion | int, fmt: str) -> Path:
    _check_format(fmt)
    return export_root() / str(getattr(version, "pk", version)) / fmt


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}: use one of {', '.join(FORMATS)}.")


def finished_export(version: DatasetVersion, fmt: str, out: str | Path | None = None) -> dict | None:
    """The result of a finished export of ``version`` in ``fmt`` (at ``out`` or the default place), or None."""
    target = Path(out) if out is not None else export_dir(version, fmt)
    if not (target / MANIFEST).is_file() or not (target / METADATA).is_file():
        return None
    meta = json.loads((target / METADATA).read_text(encoding="utf-8"))
    if meta.get("version_id") != version.pk or meta.get("content_hash") != version.content_hash \
            or meta.get("format") != fmt:
        return None
    return _result(target, meta)


def _result(target: Path, meta: dict, sizes: dict[str, int] | None = None) -> dict:
    """The result dict of the export in ``target``; ``sizes`` are file sizes already known (no stat)."""
    files, sizes = [], sizes or {}
    for line in (target / MANIFEST).read_text(encoding="utf-8").splitlines():
        digest, name = line.split("  ", 1)
        size = sizes.get(name)
        files.append({"path": name, "bytes": (target / name).stat().st_size if size is None else size,
                      "sha256": digest})
    files.append({"path": MANIFEST, "bytes": (target / MANIFEST).stat().st_size,
                  "sha256": _sha256_file(target / MANIFEST)})
    return {
        "version": meta["version_id"],
        "format": meta["format"],
        "path": str(target),
        "files": files,
        "bytes": sum(f["bytes"] for f in files),
        "counts": meta["counts"],
        "manifest": MANIFEST,
    }


def read_manifest(target: str | Path) -> dict[str, str]:
    """``{relative path: sha256}`` of an export's manifest."""
    lines = (Path(target) / MANIFEST).read_text(encoding="utf-8").splitlines()
    return {name: digest for digest, name in (line.split("  ", 1) for line in lines)}


def verify_manifest(target: str | Path) -> list[str]:
    """The files whose sha256 differs from the manifest, or that are missing or not listed; [] when intact."""
    target = Path(target)
    listed = read_manifest(target)
    bad = [name for name, digest in listed.items()
           if not (target / name).is_file() or _sha256_file(target / name) != digest]
    present = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()} - {MANIFEST}
    return sorted(bad + sorted(present - set(listed)))


# --- the entry points ------------------------------------------------------------------------------

def export_version(version: DatasetVersion, fmt: str, *, shard_bytes: int = DEFAULT_SHARD_BYTES,
                   progress: Progress | None = None, out: str | Path | None = None,
                   batch_size: int = DEFAULT_BATCH_SIZE) -> dict:
    """Export ``version`` as ``fmt`` (see the module docstring); reuse a finished export of the same kind.

    ``out`` replaces the default directory ``MEDIA_ROOT/exports/<id>/<fmt>``; it must not exist, be empty,
    or hold a finished export of this version and format (anything else is an :class:`ExportError`).
    """
    _check_format(fmt)
    if shard_bytes < 1 or batch_size < 1:
        raise ExportError("shard_bytes and batch_size must be positive.")
    progress = progress or (lambda fraction, message="": None)
    target = Path(out) if out is not None else export_dir(version, fmt)
    cached = finished_export(version, fmt, target)
    if cached is not None:
        progress(1.0, "reused the finished export")
        return cached
    if target.exists():
        if out is None and (target / MANIFEST).is_file():
            _discard(target)  # an export of an earlier row with this id (content hash differs)
        elif not target.is_dir() or any(target.iterdir()):
            raise ExportError(f"{target} exists and is not an export of version {version.pk} as {fmt}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_abandoned(target)
    temporary, lock = _claim_temporary(target)
    try:
        with _Hasher(temporary) as hasher:
            counts = _WRITERS[fmt](_Source(version, batch_size, progress, hasher), temporary, shard_bytes)
            meta = {
                "version_id": version.pk, "version": version.name, "content_hash": version.content_hash,
                "format": fmt, "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                "counts": counts,
            }
            (temporary / METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n",
                                              encoding="utf-8")
            _write_manifest(temporary)
            sizes = hasher.sizes()
        try:
            if target.is_dir():
                target.rmdir()  # empty (checked above); a concurrent export may have filled it meanwhile
            os.rename(temporary, target)
        except OSError:
            cached = finished_export(version, fmt, target)
            if cached is None:
                raise
            return cached  # a concurrent identical export finished first; ours is discarded below
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
        _release(lock)
    progress(1.0, f"exported {counts['rows']} rows as {fmt}")
    return _result(target, meta, sizes)


def run_export_job(job: Job, progress: Progress) -> dict:
    """The export job handler (see :mod:`curation.services.jobs`): params ``{version, format}``."""
    version = DatasetVersion.objects.get(pk=job.params["version"])
    fmt = job.params.get("format", "parquet")
    shard_bytes = int(job.params.get("shard_bytes") or DEFAULT_SHARD_BYTES)
    return export_version(version, fmt, shard_bytes=shard_bytes, progress=progress)


def _claim_temporary(target: Path) -> tuple[Path, tuple[int, Path]]:
    """A fresh temporary sibling of ``target`` and its lock (``.<name>.tmp-<token>.lock``, flocked).

    The lock is taken before the folder exists and dropped after it is gone, and the kernel drops it when
    its process dies (a SIGKILLed worker): a temporary folder whose lock can be taken is abandoned."""
    while True:
        token = secrets.token_hex(8)
        lock_path = target.parent / f".{target.name}.tmp-{token}.lock"
        fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                break
        except (BlockingIOError, FileNotFoundError):
            pass
        os.close(fd)  # a sweeper took the lock between create and flock (and removed it): again
    temporary = target.parent / f".{target.name}.tmp-{token}"
    temporary.mkdir()
    return temporary, (fd, lock_path)


def _release(lock: tuple[int, Path]) -> None:
    fd, lock_path = lock
    lock_path.unlink(missing_ok=True)
    os.close(fd)


def sweep_abandoned(target: Path, *, unlocked_after: float = 3600) -> list[str]:
    """Remove what dead exports of ``target`` left beside it; returns the names removed.

    A worker killed mid-export (SIGKILL, power loss) leaves its temporary folder: it is abandoned when its
    lock can be taken. Folders without a lock (made before locks existed) go once ``unlocked_after``
    seconds old, and aside folders of :func:`_discard` always (nobody reads them)."""
    removed = []
    prefix = glob.escape(f".{target.name}")
    for lock_path in sorted(target.parent.glob(f"{prefix}.tmp-*.lock")):
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue  # a live export
        try:
            shutil.rmtree(lock_path.with_suffix(""), ignore_errors=True)
            lock_path.unlink(missing_ok=True)
            removed.append(lock_path.with_suffix("").name)
        finally:
            os.close(fd)
    old = time.time() - unlocked_after
    for folder in sorted(target.parent.glob(f"{prefix}.tmp-*")) + sorted(target.parent.glob(f"{prefix}.old-*")):
        if not folder.is_dir() or Path(f"{folder}.lock").exists():
            continue
        if ".old-" in folder.name or folder.stat().st_mtime < old:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    return removed


def _discard(path: Path) -> None:
    aside = path.with_name(f".{path.name}.old-{os.getpid()}-{id(path)}")
    os.rename(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _list_files(folder: Path) -> list[str]:
    """Every file under ``folder`` as a sorted relative POSIX path (directory entries' types: no stat)."""
    names = []
    for directory, _, files in os.walk(folder):
        base = Path(directory).relative_to(folder)
        names.extend((base / name).as_posix() for name in files)
    return sorted(names)


def _write_manifest(folder: Path) -> None:
    """``MANIFEST.sha256`` of every file in ``folder``; digests the writers already computed (in the
    background, see :class:`_Hasher`) are taken from the folder's hasher, the rest are computed here."""
    names = _list_files(folder)
    hasher = _Hasher.of(folder)
    known = hasher.digests() if hasher is not None else {}
    lines = [f"{known.get(name) or _sha256_file(folder / name)}  {name}" for name in names if name != MANIFEST]
    (folder / MANIFEST).write_text("\n".join(lines) + "\n", encoding="utf-8")


class _Hasher:
    """sha256 of an export's files on a background thread while the writers go on (hashlib releases the
    GIL, so on a machine with more than one core the manifest costs little wall time).

    ``add_file(name, path)`` hashes a finished file (opened at once, so renaming it afterwards is fine:
    ``rename(name, new)`` files the digest under the new name); ``add_bytes(name, data)`` hashes the bytes
    just written to ``name`` without reading them back. At most ``max_pending`` bytes wait in the queue, so
    memory stays bounded when hashing falls behind. Used as a context manager around the writing of
    ``folder``; :func:`_write_manifest` finds it by the folder (``_Hasher.of``) and takes its digests."""

    _active: dict[str, _Hasher] = {}

    def __init__(self, folder: Path, max_pending: int = 64 * 1024 * 1024):
        import queue
        import threading

        self.folder = folder
        self._queue: queue.Queue = queue.Queue()
        self._room = threading.Condition()
        self._pending, self._max_pending = 0, max_pending
        self._digests: dict[str, str] = {}
        self._sizes: dict[str, int] = {}
        self._renamed: dict[str, str] = {}
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="export-sha256", daemon=True)

    @classmethod
    def of(cls, folder: Path) -> _Hasher | None:
        return cls._active.get(str(folder))

    def __enter__(self) -> _Hasher:
        self._thread.start()
        _Hasher._active[str(self.folder)] = self
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        _Hasher._active.pop(str(self.folder), None)
        if exc is not None and self._error is None:
            self._error = exc  # the export failed: what is still queued is closed, not hashed
        self._queue.put(None)
        self._thread.join()

    def add_file(self, name: str, path: Path | None = None) -> None:
        self._queue.put((name, (path or self.folder / name).open("rb")))

    def add_bytes(self, name: str, data: bytes) -> None:
        with self._room:
            while self._pending and self._pending + len(data) > self._max_pending and self._error is None:
                self._room.wait()
            self._pending += len(data)
        self._queue.put((name, data))

    def rename(self, name: str, new: str) -> None:
        self._renamed[new] = name

    def sizes(self) -> dict[str, int]:
        """``{relative path: bytes}`` of everything hashed here (call after :meth:`digests`)."""
        sizes = dict(self._sizes)
        for new, old in self._renamed.items():
            if old in sizes:
                sizes[new] = sizes.pop(old)
        return sizes

    def digests(self) -> dict[str, str]:
        """``{relative path: sha256}`` of everything added so far (waits until it is hashed)."""
        self._queue.join()
        if self._error is not None:
            raise self._error
        digests = dict(self._digests)
        for new, old in self._renamed.items():
            if old in digests:
                digests[new] = digests.pop(old)
        return digests

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                self._queue.task_done()
                return
            name, source = job
            try:
                if isinstance(source, bytes):
                    if self._error is None:
                        self._digests[name] = hashlib.sha256(source).hexdigest()
                        self._sizes[name] = len(source)
                else:
                    with source:
                        if self._error is None:
                            digest, size = hashlib.sha256(), 0
                            for block in iter(lambda: source.read(1 << 20), b""):
                                digest.update(block)
                                size += len(block)
                            self._digests[name], self._sizes[name] = digest.hexdigest(), size
            except BaseException as exc:  # raised again by digests(): the export fails
                self._error = exc
            finally:
                if isinstance(source, bytes):
                    with self._room:
                        self._pending -= len(source)
                        self._room.notify_all()
                self._queue.task_done()


# --- reading members in bounded batches ------------------------------------------------------------

_FIELDS = {
    "pair_id": "pair_id",
    "tuple_id": "pair__tuple_id",
    "implicit_prompt": "pair__tuple__implicit_prompt",
    "explicit_prompt": "pair__tuple__explicit_prompt",
    "superficial_prompt": "pair__tuple__superficial_prompt",
    "subject": "pair__tuple__subject",
    "scene": "pair__tuple__scene",
    "task": "pair__tuple__task__code",
    "task_name": "pair__tuple__task__name",
    "discipline": "pair__tuple__task__discipline__slug",
    "label": "label",
    "consensus": "outcome",
    "agreement": "agreement",
    "n_judgements": "n_judgements",
    "split": "split",
    "expected_file": "pair__image_correct__file",
    "expected_sha256": "pair__image_correct__sha256",
    "expected_format": "pair__image_correct__format",
    "other_file": "pair__image_wrong__file",
    "other_sha256": "pair__image_wrong__sha256",
    "other_format": "pair__image_wrong__format",
}


@dataclass
class Row:
    """One member with both images' bytes; ``correct``/``wrong`` follow the label (swapped for ``other``)."""

    values: dict
    expected: bytes
    other: bytes

    @property
    def swapped(self) -> bool:
        return self.values["label"] == Label.OTHER

    def image(self, which: str) -> tuple[bytes, str, str]:
        """(bytes, sha256, extension) of the ``correct``/``wrong`` (by label) or ``expected``/``other`` image."""
        if which in ("correct", "wrong"):
            which = ("other" if self.swapped else "expected") if which == "correct" else \
                ("expected" if self.swapped else "other")
        data = self.expected if which == "expected" else self.other
        return data, self.values[f"{which}_sha256"], _extension(self.values[f"{which}_format"])

    @property
    def size(self) -> int:
        text = sum(len(self.values[k] or "") for k in ("implicit_prompt", "explicit_prompt", "superficial_prompt"))
        return len(self.expected) + len(self.other) + 4 * text + _ROW_OVERHEAD


def _extension(image_format: str) -> str:
    ext = (image_format or "bin").lower()
    return {"jpeg": "jpg", "tiff": "tif"}.get(ext, ext)


def _read(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def _load_images(batch: list[dict]) -> list[Row]:
    return [Row(values, _read(values["expected_file"]), _read(values["other_file"])) for values in batch]


class _Source:
    """The version's members, split by split, as batches of :class:`Row` (images read per batch).

    The images of the next batch are read on a background thread while the current one is written
    (reading releases the GIL), so at most two batches are in memory. Only ``_read`` (storage) runs there;
    the database is read on the caller's thread."""

    def __init__(self, version: DatasetVersion, batch_size: int, progress: Progress,
                 hasher: _Hasher | None = None):
        self.version, self.batch_size, self._progress = version, batch_size, progress
        self.total = VersionMember.objects.filter(version=version).count()
        self.done = 0
        self.hasher = hasher

    def members(self, split: str, labels=None):
        rows = VersionMember.objects.filter(version=self.version, split=split)
        if labels is not None:
            rows = rows.filter(label__in=list(labels))
        return rows

    def label_counts(self) -> dict:
        counts = {}
        for split, label in VersionMember.objects.filter(version=self.version).values_list("split", "label"):
            counts.setdefault(split, {}).setdefault(label, 0)
            counts[split][label] += 1
        return counts

    def batches(self, split: str, labels=None) -> Iterator[list[Row]]:
        from concurrent.futures import ThreadPoolExecutor

        query = self.members(split, labels).order_by("pair_id").values(*_FIELDS.values())
        with ThreadPoolExecutor(1, thread_name_prefix="export-read") as reader:
            pending = None
            for batch in self._value_batches(query):
                loading = reader.submit(_load_images, batch)
                if pending is not None:
                    yield self._loaded(pending.result())
                pending = loading
            if pending is not None:
                yield self._loaded(pending.result())

    def _value_batches(self, query) -> Iterator[list[dict]]:
        batch: list[dict] = []
        for values in query.iterator(chunk_size=self.batch_size):
            batch.append({key: values[field] for key, field in _FIELDS.items()})
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def _loaded(self, rows: list[Row]) -> list[Row]:
        self.done += len(rows)
        self._progress(min(0.99, self.done / max(1, self.total)), f"{self.done} of {self.total} members")
        return rows

    def skip(self, n: int) -> None:
        """Members passed over (labels not exported) still count as progress."""
        self.done += n


def _common(row: Row) -> dict:
    v = row.values
    return {
        "tuple_id": v["tuple_id"], "pair_id": v["pair_id"], "task": v["task"] or "",
        "discipline": v["discipline"] or "", "label": v["label"], "consensus": v["consensus"],
        "agreement": v["agreement"], "n_judgements": v["n_judgements"],
    }


def _counts_skeleton() -> dict:
    return {"rows": 0, "splits": {}, "tasks": {}, "labels": {}, "excluded": {}, "files": {}}


def _count(counts: dict, row: Row) -> None:
    v = row.values
    counts["rows"] += 1
    counts["splits"][v["split"]] = counts["splits"].get(v["split"], 0) + 1
    per_task = counts["tasks"].setdefault(v["task"] or "", {})
    per_task[v["split"]] = per_task.get(v["split"], 0) + 1
    counts["labels"][v["label"]] = counts["labels"].get(v["label"], 0) + 1


def _excluded(source: _Source, counts: dict, split: str) -> None:
    n = source.members(split).exclude(label__in=DECIDED).count()
    if n:
        counts["excluded"][split] = n
        source.skip(n)


# --- parquet ---------------------------------------------------------------------------------------

_EXTRA_COLUMNS = (("tuple_id", "int64"), ("pair_id", "int64"), ("task", "string"), ("discipline", "string"),
                  ("label", "string"), ("consensus", "string"), ("agreement", "float64"),
                  ("n_judgements", "int64"))


def parquet_schema():
    """The Science-T2I schema of :mod:`ml.core.data` plus our columns, with ``datasets`` features metadata."""
    import pyarrow as pa

    from ml.core.data import _IMAGE_COLUMNS, _PROMPT_COLUMNS, _features

    image = pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    columns = [(c, pa.string()) for c in _PROMPT_COLUMNS] + [(c, image) for c in _IMAGE_COLUMNS]
    columns += [("category", pa.string()), ("law", pa.string())]
    columns += [(name, getattr(pa, dtype)()) for name, dtype in _EXTRA_COLUMNS]
    published = _features()
    extra = dict(_EXTRA_COLUMNS)
    features = {name: published.get(name) or {"dtype": extra[name], "_type": "Value"} for name, _ in columns}
    return pa.schema(columns, metadata={"huggingface": json.dumps({"info": {"features": features}})})


def _parquet_options(schema) -> dict:
    """ParquetWriter options: the encoded images (JPEG, PNG, WebP: already compressed) are stored as they
    are, without compression, a dictionary or min/max statistics, which would cost time for nothing;
    every other column keeps pyarrow's defaults (snappy, dictionary, statistics)."""
    import pyarrow as pa

    images, others = [], []
    for field in schema:
        if pa.types.is_list(field.type) and pa.types.is_struct(field.type.value_type):
            images.append(f"{field.name}.list.element.bytes")
            others.append(f"{field.name}.list.element.path")
        else:
            others.append(field.name)
    return {"compression": {**{c: "snappy" for c in others}, **{c: "none" for c in images}},
            "use_dictionary": others, "write_statistics": others}


def _parquet_row(row: Row) -> dict:
    v = row.values
    correct, correct_sha, correct_ext = row.image("correct")
    wrong, wrong_sha, wrong_ext = row.image("wrong")
    return {
        "implicit_prompt": v["implicit_prompt"], "explicit_prompt": v["explicit_prompt"] or "",
        "superficial_prompt": v["superficial_prompt"] or "",
        "explicit_image": [{"bytes": correct, "path": f"{correct_sha}.{correct_ext}"}],
        "superficial_image": [{"bytes": wrong, "path": f"{wrong_sha}.{wrong_ext}"}],
        "category": v["task_name"] or "", "law": v["task"] or "",
        **_common(row),
    }


def _parquet_table(rows: list[dict], schema):
    """``pa.Table.from_pylist(rows, schema=schema)`` built column by column: the same table, without the
    per-row dictionary walk (the image bytes are copied once, into one buffer per column)."""
    import itertools

    import pyarrow as pa

    arrays = []
    for field in schema:
        values = [row[field.name] for row in rows]
        if pa.types.is_list(field.type) and pa.types.is_struct(field.type.value_type):
            offsets = pa.array(itertools.accumulate((len(v) for v in values), initial=0), pa.int32())
            items = [item for v in values for item in v]
            struct = field.type.value_type
            children = [pa.array([item[f.name] for item in items], f.type) for f in struct]
            arrays.append(pa.ListArray.from_arrays(
                offsets, pa.StructArray.from_arrays(children, fields=list(struct)), type=field.type))
        else:
            arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


class _ShardedParquet:
    """Parquet shards of one split, each under ``shard_bytes`` (estimated), one row group per flush.

    Row groups are encoded and written on a background thread (pyarrow releases the GIL) while the next
    batch is read and converted; at most one row group waits, so memory stays at about two batches."""

    def __init__(self, folder: Path, split: str, shard_bytes: int, schema, hasher: _Hasher | None = None):
        self.folder, self.split, self.shard_bytes, self.schema = folder, split, shard_bytes, schema
        self.hasher = hasher
        self.shards: list[Path] = []
        self.writer, self.size, self.rows = None, 0, []
        self._pool, self._pending = None, None

    def add(self, row: Row) -> None:
        if self.writer is not None and self.size + row.size > self.shard_bytes:
            self._flush()
            self._close_shard()
        if self.writer is None:
            import pyarrow.parquet as pq

            path = self.folder / f".{self.split}-{len(self.shards):05d}.part"
            self.shards.append(path)
            self.writer, self.size = pq.ParquetWriter(path, self.schema, **_parquet_options(self.schema)), 0
        self.rows.append(_parquet_row(row))
        self.size += row.size

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def _close_shard(self) -> None:
        self._wait()
        self.writer.close()
        self.writer = None
        if self.hasher is not None:
            self.hasher.add_file(self.shards[-1].name)

    def _flush(self) -> None:
        if self.rows:
            table = _parquet_table(self.rows, self.schema)
            self.rows = []
            self._wait()
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(1, thread_name_prefix="export-parquet")
            self._pending = self._pool.submit(self.writer.write_table, table)

    def end_batch(self) -> None:
        if self.writer is not None:
            self._flush()

    def abandon(self) -> None:
        """Stop the background writer (after an error; the temporary folder is removed by the caller)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001 — the export is failing already; keep its own error
                pass
            self.writer = None

    def close(self) -> list[str]:
        if self.writer is not None:
            self._flush()
            self._close_shard()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        n, names = len(self.shards), []
        for i, path in enumerate(self.shards):
            name = f"{self.split}-{i:05d}-of-{n:05d}.parquet"
            os.rename(path, self.folder / name)
            if self.hasher is not None:
                self.hasher.rename(path.name, name)
            names.append(name)
        return names


def write_parquet_export(source: _Source, folder: Path, shard_bytes: int) -> dict:
    schema, counts = parquet_schema(), _counts_skeleton()
    agreements: dict[str, list] = {}
    for split in SPLITS:
        shards = _ShardedParquet(folder, split, shard_bytes, schema, source.hasher)
        try:
            for batch in source.batches(split, DECIDED):
                for row in batch:
                    shards.add(row)
                    _count(counts, row)
                    _agreement_add(agreements, split, row.values["agreement"])
                shards.end_batch()
            files = shards.close()
        except BaseException:
            shards.abandon()
            raise
        if files:
            counts["files"][split] = files
        _excluded(source, counts, split)
    counts["agreement"] = _agreement_summary(agreements)
    (folder / "README.md").write_text(dataset_card(source.version, counts), encoding="utf-8")
    return counts


def _agreement_add(agreements: dict, split: str, value) -> None:
    # Running sums only: memory stays flat in the number of rows.
    for key in (split, "all"):
        stats = agreements.setdefault(key, [0, 0.0, None, None, 0])  # n, sum, min, max, unanimous
        if value is None:
            continue
        stats[0] += 1
        stats[1] += value
        stats[2] = value if stats[2] is None else min(stats[2], value)
        stats[3] = value if stats[3] is None else max(stats[3], value)
        stats[4] += value >= 1.0


def _agreement_summary(agreements: dict) -> dict:
    return {key: {"n": n, "mean": round(total / n, 4) if n else None, "min": low, "max": high,
                  "unanimous": unanimous}
            for key, (n, total, low, high, unanimous) in agreements.items()}


def dataset_card(version: DatasetVersion, counts: dict) -> str:
    """The README.md of a parquet export: YAML ``configs`` per split, counts, agreement, licence, provenance."""
    splits = [s for s in SPLITS if counts["files"].get(s)]
    yaml = ["---", "license: apache-2.0", "task_categories:", "- text-to-image",
            f"pretty_name: {json.dumps(f'Science-T2I ({version.name})')}", "configs:", "- config_name: default", "  data_files:"]
    for split in splits:
        yaml += [f"  - split: {split}", f"    path: \"{split}-*.parquet\""]
    yaml.append("---")
    created = version.created_at.isoformat(timespec="seconds") if version.created_at else ""
    exported = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    lines = [
        f"# Science-T2I — version `{version.name}`", "",
        "Expert-curated adversarial image pairs for scientifically faithful text-to-image generation, exported "
        "from the Science-T2I curation platform.", "",
        "## Provenance", "",
        f"- version: `{version.name}` (id {version.pk})",
        f"- content hash: `{version.content_hash}`",
        f"- frozen: {created}",
        f"- exported: {exported}",
        f"- filters: `{json.dumps(version.filters, sort_keys=True)}`",
        f"- split ratios: `{json.dumps(version.split_ratios, sort_keys=True)}`",
        "- integrity: `MANIFEST.sha256` (`sha256sum -c MANIFEST.sha256`)", "",
        "## Columns", "",
        "The published Science-T2I columns: `implicit_prompt`, `explicit_prompt`, `superficial_prompt`; "
        "`explicit_image` (the image the experts judged scientifically correct) and `superficial_image` (the "
        "wrong one), each a list of one `datasets.Image` with embedded bytes; `category` (task name) and `law` "
        "(task code). Extra columns: `tuple_id`, `pair_id`, `task`, `discipline`, `label`, `consensus` (the "
        "frozen outcome), `agreement` (share of judgements with the majority label), `n_judgements`.", "",
        "`label` is relative to the image the catalogue *expected* to be correct: `expected` means the experts "
        "agreed; `other` means they chose the other image, so for those rows the images are **swapped** "
        "relative to the catalogue (`explicit_image` is always the image the experts judged correct). Pairs "
        "labelled `both` or `neither` have no correct image and are not in this export.", "",
        "## Counts", "",
        "| task | " + " | ".join(SPLITS) + " | total |",
        "|---|" + "---|" * (len(SPLITS) + 1),
    ]
    for task in sorted(counts["tasks"]):
        per = counts["tasks"][task]
        lines.append(f"| {task or '(none)'} | " + " | ".join(str(per.get(s, 0)) for s in SPLITS)
                     + f" | {sum(per.values())} |")
    lines.append("| **all** | " + " | ".join(str(counts["splits"].get(s, 0)) for s in SPLITS)
                 + f" | {counts['rows']} |")
    lines.append("")
    if counts["excluded"]:
        lines += ["Left out (label both/neither): " + ", ".join(f"{s} {n}" for s, n in counts["excluded"].items()),
                  ""]
    lines += ["## Agreement", "", "| split | rows with agreement | mean | min | unanimous |", "|---|---|---|---|---|"]
    for key, stats in counts["agreement"].items():
        lines.append(f"| {key} | {stats['n']} | {stats['mean']} | {stats['min']} | {stats['unanimous']} |")
    lines += [
        "", "## Licence", "",
        "Apache-2.0. Prompts derived from the published Science-T2I dataset are used under its Apache-2.0 "
        "licence; keep this notice and cite Science-T2I when redistributing.", "",
    ]
    return "\n".join(yaml) + "\n" + "\n".join(lines)


# --- JSONL + image folder --------------------------------------------------------------------------

def write_jsonl_export(source: _Source, folder: Path, shard_bytes: int) -> dict:
    counts = _counts_skeleton()
    images = folder / "images"
    images.mkdir()
    with (folder / "tuples.jsonl").open("w", encoding="utf-8") as everything:
        for split in SPLITS:
            path = folder / f"{split}.jsonl"
            with path.open("w", encoding="utf-8") as per_split:
                for batch in source.batches(split):
                    for row in batch:
                        line = json.dumps(_jsonl_record(row, images, source.hasher), ensure_ascii=False) + "\n"
                        everything.write(line)
                        per_split.write(line)
                        _count(counts, row)
            if not counts["splits"].get(split):
                path.unlink()
            else:
                counts["files"][split] = [path.name]
    return counts


def _jsonl_record(row: Row, images: Path, hasher: _Hasher | None = None) -> dict:
    v = row.values
    paths = {}
    for which in ("expected", "other"):
        data, sha, ext = row.image(which)
        name = f"{sha}.{ext}"
        try:
            with open(images / name, "xb") as handle:  # each image once (no stat before: "x" says it)
                handle.write(data)
        except FileExistsError:
            pass
        else:
            if hasher is not None:
                hasher.add_bytes(f"images/{name}", data)
        paths[which] = f"images/{name}"
    correct, wrong = ("other", "expected") if row.swapped else ("expected", "other")
    return {
        "implicit_prompt": v["implicit_prompt"], "explicit_prompt": v["explicit_prompt"] or "",
        "superficial_prompt": v["superficial_prompt"] or "",
        "correct_image": paths[correct], "wrong_image": paths[wrong],
        "expected_image": paths["expected"], "other_image": paths["other"],
        "subject": v["subject"] or "", "scene": v["scene"], "split": v["split"],
        **_common(row),
    }


# --- WebDataset ------------------------------------------------------------------------------------

def write_webdataset_export(source: _Source, folder: Path, shard_bytes: int) -> dict:
    counts = _counts_skeleton()
    for split in SPLITS:
        names: list[str] = []
        tar, size = None, 0
        try:
            for batch in source.batches(split, DECIDED):
                for row in batch:
                    if tar is not None and size + row.size > shard_bytes:
                        _close_tar(tar)
                        tar = None
                        if source.hasher is not None:
                            source.hasher.add_file(names[-1])
                    if tar is None:
                        names.append(f"{split}-{len(names):05d}.tar")
                        tar, size = _open_tar(folder / names[-1]), 0
                    _add_sample(tar, row)
                    size += row.size
                    _count(counts, row)
        finally:
            if tar is not None:
                _close_tar(tar)
                if source.hasher is not None:
                    source.hasher.add_file(names[-1])
        if names:
            counts["files"][split] = names
        _excluded(source, counts, split)
    return counts


_WRITE_BUFFER = 1 << 20


def _open_tar(path: Path) -> tarfile.TarFile:
    """A PAX tar writing through a 1 MiB buffer, each member's data copied in one piece (``tarfile`` alone
    writes 16 KiB pieces through an 8 KiB buffer: a system call per piece). The bytes are the same."""
    handle = open(path, "wb", buffering=_WRITE_BUFFER)  # noqa: SIM115 — closed by _close_tar
    try:
        return tarfile.open(fileobj=handle, mode="w", format=tarfile.PAX_FORMAT, copybufsize=_WRITE_BUFFER)
    except BaseException:
        handle.close()
        raise


def _close_tar(tar: tarfile.TarFile) -> None:
    handle = tar.fileobj
    try:
        tar.close()
    finally:
        handle.close()


def _add_sample(tar: tarfile.TarFile, row: Row) -> None:
    v = row.values
    key = f"p{v['pair_id']:09d}"
    meta = {"implicit_prompt": v["implicit_prompt"], "explicit_prompt": v["explicit_prompt"] or "",
            "superficial_prompt": v["superficial_prompt"] or "", "category": v["task_name"] or "",
            "subject": v["subject"] or "", "split": v["split"], **_common(row)}
    correct, _, correct_ext = row.image("correct")
    wrong, _, wrong_ext = row.image("wrong")
    for name, data in ((f"{key}.json", json.dumps(meta, ensure_ascii=False).encode()),
                       (f"{key}.correct.{correct_ext}", correct), (f"{key}.wrong.{wrong_ext}", wrong)):
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        tar.addfile(info, io.BytesIO(data))


_WRITERS = {"parquet": write_parquet_export, "jsonl": write_jsonl_export, "webdataset": write_webdataset_export}
