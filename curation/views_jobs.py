"""Admin pages for background jobs: start an export from a version page, follow a job, start an import.

* ``POST /curation/versions/<id>/exports/`` (``format``): starts the export through :func:`jobs.start` (an
  identical request in flight gets the same job, as in the API) and redirects to the job page; when the
  export is already finished it redirects back to the version page, which lists its files.
* ``GET /curation/jobs/<id>/``: kind, parameters, status, progress, message, error (traceback folded),
  result summary; refreshes itself every 2 s while the job is queued or running (no JavaScript); a finished
  export links to its files (the download URL answers HTTP ranges).
* ``GET/POST /curation/imports/new/``: path (relative to the first import root, or absolute under one),
  format and dry run; validated with :func:`importing.resolve_import_path`; starts an import job and
  redirects to its page. Lists the import roots and the top level of the first root.

Admins only (403 for everyone else, login required); every POST is CSRF-protected (Django's middleware).
:func:`version_exports` gives the version page's Export section (passed by ``views_versions.version_detail``).
"""

from __future__ import annotations

import json

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from annotation import roles
from curation.models import DatasetVersion, Job
from curation.services import exporting, importing, jobs
from curation.tasks import run_job

ROOT_LISTING_LIMIT = 200  # entries of the first import root shown on the import page
REFRESH_SECONDS = 2
IN_FLIGHT = (Job.Status.QUEUED, Job.Status.RUNNING)


def _require_admin(user) -> None:
    if not roles.is_admin(user):
        raise PermissionDenied("Only admins run imports and exports.")


def download_url(version_id: int, fmt: str, path: str) -> str:
    return reverse("curation-export-download", kwargs={"version_id": version_id, "export_format": fmt, "path": path})


def _files_with_urls(result: dict) -> list[dict]:
    return [{**f, "url": download_url(result["version"], result["format"], f["path"])} for f in result["files"]]


def version_exports(version: DatasetVersion) -> list[dict]:
    """One entry per format for the version page: the finished export (files with URLs) or the job in flight."""
    in_flight = {}
    for job in Job.objects.filter(kind=Job.Kind.EXPORT, status__in=IN_FLIGHT, params__version=version.pk):
        in_flight.setdefault(job.params.get("format", "parquet"), job)
    entries = []
    for fmt in exporting.FORMATS:
        finished = exporting.finished_export(version, fmt)
        entries.append(
            {
                "format": fmt,
                "finished": finished is not None,
                "files": _files_with_urls(finished) if finished else [],
                "bytes": finished["bytes"] if finished else 0,
                "rows": finished["counts"].get("rows") if finished else None,
                "job": in_flight.get(fmt),
            }
        )
    return entries


@require_POST
@login_required
def version_export(request, version_id: int):
    _require_admin(request.user)
    version = get_object_or_404(DatasetVersion, pk=version_id)
    fmt = request.POST.get("format", "")
    if fmt not in exporting.FORMATS:
        messages.error(request, f"Unknown export format {fmt!r}: use one of {', '.join(exporting.FORMATS)}.")
        return redirect("curation:version-detail", version_id=version.pk)
    if exporting.finished_export(version, fmt) is not None:
        messages.info(request, f"The {fmt} export of {version.name} is finished: its files are listed below.")
        return redirect(reverse("curation:version-detail", args=[version.pk]) + "#exports")
    job, created = jobs.start(
        Job.Kind.EXPORT, {"version": version.pk, "format": fmt}, request.user, celery_task=run_job
    )
    if not created:
        messages.info(request, f"An identical {fmt} export is already under way: job {job.pk}.")
    return redirect("curation:job-detail", job_id=job.pk)


def _summary(job: Job) -> list[tuple[str, str]]:
    """The result as a few (label, value) rows for people; the full JSON is shown folded."""
    result = job.result or {}
    rows: list[tuple[str, str]] = []
    if job.kind == Job.Kind.EXPORT and result.get("files"):
        counts = result.get("counts") or {}
        rows.append(("rows", str(counts.get("rows", ""))))
        if counts.get("excluded") is not None:
            rows.append(("left out (both/neither)", str(counts.get("excluded"))))
        rows.append(("files", str(len(result["files"]))))
        rows.append(("bytes", str(result.get("bytes", ""))))
    elif job.kind == Job.Kind.IMPORT and result:
        rows.append(("format", str(result.get("format", ""))))
        rows.append(("dry run", "yes" if result.get("dry_run") else "no"))
        rows.append(("rows", str(result.get("rows", ""))))
        for name in ("tuples", "images", "pairs", "decisions"):
            if isinstance(result.get(name), dict):
                rows.append((name, ", ".join(f"{k} {v}" for k, v in result[name].items())))
        if isinstance(result.get("unassigned"), dict):
            rows.append(("rows without a task", str(result["unassigned"].get("count", 0))))
        if isinstance(result.get("same_prompt"), dict):
            same = result["same_prompt"]
            rows.append(
                ("prompts also with a task elsewhere", f"{same.get('count', 0)} ({same.get('merged', 0)} merged)")
            )
        rows.append(("rows with errors", str(result.get("error_count", 0))))
    return rows


@require_safe
@login_required
def job_detail(request, job_id: int):
    _require_admin(request.user)
    job = get_object_or_404(Job.objects.select_related("created_by"), pk=job_id)
    export, version, files_gone = None, None, False
    if job.kind == Job.Kind.EXPORT:
        version = DatasetVersion.objects.filter(pk=job.params.get("version")).first()
        if job.status == Job.Status.SUCCEEDED and version is not None:
            finished = exporting.finished_export(version, job.params.get("format", "parquet"))
            if finished is None:
                files_gone = True
            else:
                export = {**finished, "files": _files_with_urls(finished)}
    result = {k: v for k, v in (job.result or {}).items() if k != "path"}  # no server paths on pages
    return render(
        request,
        "curation/job_detail.html",
        {
            "job": job,
            "in_flight": job.status in IN_FLIGHT,
            "refresh": REFRESH_SECONDS,
            "percent": round(100 * (job.progress or 0)),
            "params_json": json.dumps(job.params, indent=2, sort_keys=True),
            "result_json": json.dumps(result, indent=2, sort_keys=True) if result else "",
            "summary": _summary(job),
            "import_errors": (job.result or {}).get("errors", []) if job.kind == Job.Kind.IMPORT else [],
            "error_first_line": job.error.split("\n", 1)[0] if job.error else "",
            "version": version,
            "export": export,
            "files_gone": files_gone,
        },
    )


class ImportForm(forms.Form):
    path = forms.CharField(max_length=1000, help_text="Relative to the first import root, or absolute under one.")
    format = forms.ChoiceField(choices=[(f, f) for f in importing.FORMATS], initial="auto")
    dry_run = forms.BooleanField(required=False, label="Dry run", help_text="Validate and count; write nothing.")
    split = forms.CharField(max_length=50, required=False, help_text="Parquet: only this split (optional).")
    source = forms.CharField(
        max_length=200, required=False, help_text="Source label of new tuples (default: the file or folder name)."
    )
    task_default = forms.CharField(
        max_length=80,
        required=False,
        help_text="Task code for rows naming none, or 'none'; empty: such rows are errors.",
    )
    auto_task = forms.BooleanField(
        required=False,
        label="Guess tasks",
        help_text="Rows naming no task get the task the keyword rules guess from the "
        "prompt (if it fits the discipline the row names). Rows they cannot "
        "assign are errors, or imported without a task with default 'none'.",
    )
    merge_same_prompt = forms.BooleanField(
        required=False,
        label="Merge same prompt",
        help_text="A row without a task joins the one tuple that has its prompt "
        "with a task (several tasks: reported, not merged).",
    )
    decisions = forms.ChoiceField(
        choices=[
            ("import", "import the labels as decisions (pairs leave the queue)"),
            ("open", "open for annotation (no decisions)"),
        ],
        initial="import",
        required=False,
        label="Decisions",
        help_text="Published data: the explicit image is correct; this platform's "
        "export: its label column. A pair decided here keeps its decision.",
    )

    def clean_path(self) -> str:
        value = self.cleaned_data["path"]
        try:
            resolved = importing.resolve_import_path(value)
        except importing.ImportRefused as exc:
            raise forms.ValidationError(f"Refused: {exc}") from None
        if not importing.path_exists(resolved):
            raise forms.ValidationError(f"{value!r} does not exist under the import root.")
        return str(resolved)

    def clean(self) -> dict:
        data = super().clean()
        default = (data.get("task_default") or "").strip()
        if data.get("auto_task") and default and default.casefold() != importing.NO_TASK:
            self.add_error(
                "auto_task",
                "Give either a default task code or guessed tasks, not both (default 'none' goes with guessed tasks).",
            )
        return data

    def params(self) -> dict:
        """The same parameters as the API builds, so identical requests share one job either way."""
        return importing.import_params(self.cleaned_data)


def _root_listing(root) -> tuple[list[dict], bool]:
    """The top level of ``root`` (folders first), at most ROOT_LISTING_LIMIT entries; hidden names skipped."""
    try:
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    except OSError:
        return [], False
    entries.sort(key=lambda p: (not p.is_dir(), p.name.lower()))
    listed = []
    for entry in entries[:ROOT_LISTING_LIMIT]:
        is_dir = entry.is_dir()
        try:
            size = None if is_dir else entry.stat().st_size
        except OSError:
            size = None
        listed.append({"name": entry.name, "is_dir": is_dir, "bytes": size})
    return listed, len(entries) > ROOT_LISTING_LIMIT


@require_http_methods(["GET", "HEAD", "POST"])
@login_required
def import_new(request):
    _require_admin(request.user)
    form = ImportForm(request.POST or None, initial={"path": request.GET.get("path", "")})
    if request.method == "POST" and form.is_valid():
        job, created = jobs.start(Job.Kind.IMPORT, form.params(), request.user, celery_task=run_job)
        if not created:
            messages.info(request, f"An identical import is already under way: job {job.pk}.")
        return redirect("curation:job-detail", job_id=job.pk)
    roots = importing.import_roots()
    listing, truncated = _root_listing(roots[0])
    recent = Job.objects.filter(kind=Job.Kind.IMPORT).select_related("created_by")[:10]
    return render(
        request,
        "curation/import_new.html",
        {
            "form": form,
            "roots": roots,
            "first_root": roots[0],
            "first_root_exists": roots[0].is_dir(),
            "listing": listing,
            "truncated": truncated,
            "limit": ROOT_LISTING_LIMIT,
            "recent": recent,
        },
        status=400 if form.is_bound else 200,
    )
