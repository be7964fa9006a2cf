"""The entry points: :func:`export_version` (built in a temporary folder, renamed into place when complete;
a finished export is reused; the formats are described in the package docstring, :mod:`curation.services.exporting`)
and the job handler :func:`run_export_job`.

:func:`export_version` calls :func:`~.base.write_manifest` through this module's globals: a test that
patches it patches ``curation.services.exporting.orchestration.write_manifest``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path

from curation.models import DatasetVersion, Job
from curation.services.exporting.base import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_SHARD_BYTES,
    MANIFEST,
    METADATA,
    ExportError,
    Progress,
    check_format,
    export_dir,
    export_result,
    finished_export,
    write_manifest,
)
from curation.services.exporting.hashing import Hasher
from curation.services.exporting.jsonl import write_jsonl_export
from curation.services.exporting.parquet import write_parquet_export
from curation.services.exporting.published import write_published_export
from curation.services.exporting.source import Source
from curation.services.exporting.staging import claim_temporary, discard_export, release_temporary, sweep_abandoned
from curation.services.exporting.webdataset import write_webdataset_export

# --- the entry points ------------------------------------------------------------------------------


def _no_progress(fraction: float, message: str = "") -> None:
    """The progress callback of a caller that does not follow progress."""


def export_version(
    version: DatasetVersion,
    fmt: str,
    *,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress: Progress | None = None,
    out: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> dict:
    """Export ``version`` as ``fmt`` (see the module docstring); reuse a finished export of the same kind.

    ``out`` replaces the default directory ``MEDIA_ROOT/exports/<id>/<fmt>``; it must not exist, be empty,
    or hold a finished export of this version and format (anything else is an :class:`ExportError`).
    """
    check_format(fmt)
    if shard_bytes < 1 or batch_size < 1:
        raise ExportError("shard_bytes and batch_size must be positive.")
    progress = progress or _no_progress
    target = Path(out) if out is not None else export_dir(version, fmt)
    cached = finished_export(version, fmt, target)
    if cached is not None:
        progress(1.0, "reused the finished export")
        return cached
    if target.exists():
        if out is None and (target / MANIFEST).is_file():
            discard_export(target)  # an export of an earlier row with this id (content hash differs)
        elif not target.is_dir() or any(target.iterdir()):
            raise ExportError(f"{target} exists and is not an export of version {version.pk} as {fmt}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_abandoned(target)
    temporary, lock = claim_temporary(target)
    try:
        with Hasher(temporary) as hasher:
            counts = _WRITERS[fmt](Source(version, batch_size, progress, hasher), temporary, shard_bytes)
            meta = {
                "version_id": version.pk,
                "version": version.name,
                "content_hash": version.content_hash,
                "format": fmt,
                "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "counts": counts,
            }
            (temporary / METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
            write_manifest(temporary)
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
        release_temporary(lock)
    progress(1.0, f"exported {counts['rows']} rows as {fmt}")
    return export_result(target, meta, sizes)


def run_export_job(job: Job, progress: Progress) -> dict:
    """The export job handler (see :mod:`curation.services.jobs`): params ``{version, format}``."""
    version = DatasetVersion.objects.get(pk=job.params["version"])
    fmt = job.params.get("format", "parquet")
    shard_bytes = int(job.params.get("shard_bytes") or DEFAULT_SHARD_BYTES)
    return export_version(version, fmt, shard_bytes=shard_bytes, progress=progress)


_WRITERS = {
    "parquet": write_parquet_export,
    "published": write_published_export,
    "jsonl": write_jsonl_export,
    "webdataset": write_webdataset_export,
}
