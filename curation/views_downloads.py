"""Downloads of finished exports, with HTTP range support (admins only).

``GET /api/curation/versions/<id>/exports/<format>/<path>`` serves one file of a finished export
(:mod:`curation.services.exporting`). Django's ``FileResponse`` does not answer ranges (and the one
package that adds them, django-ranged-response, is unmaintained since 2017), so :func:`ranged_file_response`
does, following RFC 9110 §14:

* a single byte range ``bytes=a-b``, ``bytes=a-`` or a suffix ``bytes=-n`` → 206 with ``Content-Range``
  (an end past the file is clamped);
* a range starting at or past the end, or ``bytes=-0`` → 416 with ``Content-Range: bytes */<size>``;
* several ranges, a malformed header, another unit, or an ``If-Range`` that no longer matches the file's
  ``ETag``/``Last-Modified`` → the whole file, 200 (a server may ignore a Range header);
* always ``Accept-Ranges: bytes``, ``ETag`` (size and mtime) and ``Last-Modified``;
* always inert (annotation.media): ``X-Content-Type-Options: nosniff``, a sandboxing
  ``Content-Security-Policy``, an attachment ``Content-Disposition``, and ``application/octet-stream``
  for any type a browser could run as a document (HTML, SVG, XML, JavaScript).

The path is resolved under the export's directory, and anything that lands outside it (``..``, absolute
paths, symlinks) is a 404, as is a directory or an export that is not finished.
"""

from __future__ import annotations

import mimetypes
import re
from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponseBadRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.utils.http import http_date
from django.views.decorators.http import require_safe
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import roles
from annotation.media import harden, safe_download_type
from annotation.permissions import IsAdminRole
from curation.models import DatasetVersion
from curation.services import exporting
from curation.services.exporting import raw_judgements

_RANGE = re.compile(r"^bytes=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)
_CHUNK = 64 * 1024


class _IgnoreAccept(BaseContentNegotiation):
    """Files are bytes whatever the client accepts; errors render with the first (JSON) renderer."""

    def select_parser(self, request, parsers):
        return parsers[0]

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """``(first, last)`` (inclusive) for a satisfiable single range, ``"unsatisfiable"``, or None to ignore."""
    match = _RANGE.match(header or "")
    if not match:
        return None  # another unit, several ranges, or not a range at all
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        length = int(last)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid range-spec: ignore the header
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


def _validators(stat) -> tuple[str, str]:
    return f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"', http_date(stat.st_mtime)


def _segment(path: Path, start: int, length: int):
    with path.open("rb") as handle:
        handle.seek(start)
        while length > 0:
            block = handle.read(min(_CHUNK, length))
            if not block:
                break
            length -= len(block)
            yield block


def ranged_file_response(request, path: Path, *, filename: str | None = None):
    """The file at ``path`` as a download: 200, 206 for a single satisfiable range, 416 otherwise."""
    stat = path.stat()
    size, (etag, modified) = stat.st_size, _validators(stat)
    content_type = safe_download_type(mimetypes.guess_type(path.name)[0])
    wanted = None
    header = request.META.get("HTTP_RANGE")
    if header and request.method in ("GET", "HEAD"):
        if_range = request.META.get("HTTP_IF_RANGE")
        if not if_range or if_range.strip() in (etag, modified):
            wanted = parse_range(header, size)
    if wanted == "unsatisfiable":
        response = Response(
            {"detail": f"Range not satisfiable: the file has {size} bytes.", "code": "range_not_satisfiable"},
            status=416,
        )
        response["Content-Range"] = f"bytes */{size}"
    elif wanted is None:
        response = FileResponse(
            path.open("rb"), as_attachment=True, filename=filename or path.name, content_type=content_type
        )
    else:
        start, end = wanted
        response = StreamingHttpResponse(_segment(path, start, end - start + 1), status=206, content_type=content_type)
        response["Content-Length"] = str(end - start + 1)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    harden(response, disposition="attachment", filename=filename or path.name)
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = etag
    response["Last-Modified"] = modified
    return response


def resolve_export_file(version_id: int, export_format: str, relative: str) -> Path:
    """The file ``relative`` inside a finished export; Http404 for anything else."""
    if export_format not in exporting.FORMATS:
        raise Http404("Unknown export format.")
    base = exporting.export_dir(version_id, export_format)
    if not (base / exporting.MANIFEST).is_file():
        raise Http404("No finished export.")
    base = base.resolve()
    try:
        target = (base / relative).resolve()
    except (OSError, ValueError):
        raise Http404("No such file.") from None
    if not target.is_relative_to(base) or target == base or not target.is_file():
        raise Http404("No such file.")
    return target


class ExportDownloadView(APIView):
    """One file of a finished export; single byte ranges answered with 206."""

    permission_classes = [IsAdminRole]
    content_negotiation_class = _IgnoreAccept

    @extend_schema(
        parameters=[
            OpenApiParameter("version_id", int, OpenApiParameter.PATH, description="The dataset version id."),
            OpenApiParameter(
                "export_format",
                str,
                OpenApiParameter.PATH,
                enum=list(exporting.FORMATS),
                description="The export format.",
            ),
            OpenApiParameter(
                "path",
                str,
                OpenApiParameter.PATH,
                description="The file, relative to the export directory (e.g. train-00000-of-00001"
                ".parquet, images/<sha256>.png, MANIFEST.sha256).",
            ),
            OpenApiParameter(
                "Range",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="One byte range: bytes=first-last, bytes=first- or bytes=-suffix.",
            ),
        ],
        responses={
            # The media type is guessed from the file name (application/json, image/png, ...).
            (200, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The whole file."),
            (206, "*/*"): OpenApiResponse(OpenApiTypes.BINARY, description="The requested range."),
            404: OpenApiResponse(description="No such version, finished export or file."),
            416: OpenApiResponse(description="The range starts past the end of the file."),
        },
        summary="Download a file of a finished export (HTTP Range supported)",
        operation_id="curation_versions_exports_download",
    )
    def get(self, request, version_id: int, export_format: str, path: str):
        get_object_or_404(DatasetVersion, pk=version_id)
        target = resolve_export_file(version_id, export_format, path)
        return ranged_file_response(request, target)


# --- Raw judgements (admins only) ------------------------------------------------------------------
# /curation/judgements/export/ and /curation/versions/<id>/judgements/: every judgement, or those of
# one version's member pairs, as CSV or JSONL (?format=csv|jsonl), pseudonymous unless ?names=1,
# streamed a batch at a time (curation/services/exporting/raw_judgements.py); without a format, back
# to the page that links the formats. Reviewers see judgements pair by pair while adjudicating, but a
# bulk file of everyone's work (with names on request) is personal data leaving the app, so it is an
# admin's download.

_CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}


def _raw_judgements_response(request, version_id: int | None):
    if not roles.is_admin(request.user):
        raise PermissionDenied("Only admins download raw judgements.")
    if version_id is not None:
        get_object_or_404(DatasetVersion, pk=version_id)
    if "format" not in request.GET:  # the links are on these pages, one per format
        if version_id is None:
            return redirect(reverse("curation:dashboard") + "#raw-judgements")
        return redirect(reverse("curation:version-detail", args=[version_id]) + "#raw-judgements")
    fmt = request.GET["format"]
    if fmt not in raw_judgements.FORMATS:
        return HttpResponseBadRequest(f"format must be one of {', '.join(raw_judgements.FORMATS)}.")
    names_param = request.GET.get("names", "")
    if names_param not in ("", "0", "1"):
        return HttpResponseBadRequest("names must be 0 or 1.")
    names = names_param == "1"
    records = raw_judgements.rows(version_id, names=names)
    lines = raw_judgements.csv_lines(records) if fmt == "csv" else raw_judgements.jsonl_lines(records)
    response = StreamingHttpResponse(lines, content_type=_CONTENT_TYPES[fmt])
    harden(response, disposition="attachment", filename=raw_judgements.filename(version_id, fmt, names=names))
    response["Cache-Control"] = "no-store"
    return response


@require_safe
@login_required
def raw_judgements_all(request):
    return _raw_judgements_response(request, None)


@require_safe
@login_required
def raw_judgements_version(request, version_id: int):
    return _raw_judgements_response(request, version_id)
