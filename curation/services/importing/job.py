"""The background job (``Job.Kind.IMPORT``) and where it, the API and the import page may read: only under
``settings.IMPORT_ROOTS`` (:func:`resolve_import_path`).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.conf import settings

from curation.services.importing.base import ImportRefused, Progress
from curation.services.importing.orchestration import import_dataset


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


def import_params(data: dict) -> dict:
    """The job's parameters from the validated fields of the API or the import page: the same for both, so
    identical requests share one job either way."""
    return {
        "path": data["path"],
        "fmt": data["format"],
        "split": data["split"] or None,
        "source": data["source"] or None,
        "task_default": data["task_default"] or None,
        "auto_task": bool(data["auto_task"]),
        "merge_same_prompt": bool(data["merge_same_prompt"]),
        "decisions": data["decisions"] or "import",
        "dry_run": data["dry_run"],
    }


class ImportFailed(RuntimeError):
    """A job's import had row errors; the report is in the job's result."""


def run_import_job(job, progress: Progress) -> dict:
    """The handler of ``Job.Kind.IMPORT`` (see curation.services.jobs): params ``{path, fmt, split, source,
    dry_run, task_default, decisions, auto_task, merge_same_prompt}`` (the last three optional, for jobs
    queued before they existed). Row errors fail the job with the report kept in ``job.result``."""
    from curation.models import Job

    params = job.params or {}
    path = resolve_import_path(params.get("path", ""))
    report = import_dataset(
        path,
        fmt=params.get("fmt") or params.get("format") or "auto",
        split=params.get("split") or None,
        source=params.get("source") or None,
        dry_run=bool(params.get("dry_run")),
        progress=progress,
        actor=job.created_by,
        task_default=params.get("task_default") or None,
        job=job,
        decisions=params.get("decisions") or "import",
        auto_task=bool(params.get("auto_task")),
        merge_same_prompt=bool(params.get("merge_same_prompt")),
        within=import_roots(),
    )
    result = report.as_dict()
    if not report.ok:
        Job.objects.filter(pk=job.pk).update(result=result)
        raise ImportFailed(f"{report.error_count} row(s) have errors; nothing was written.")
    return result
