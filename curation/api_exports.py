"""The export and job API under /api/curation/ (admins only; reviewers and annotators 403, anonymous 401).

Thin views: :mod:`curation.services.exporting` writes exports, :mod:`curation.services.jobs` runs them in the
background; downloads are served by :mod:`curation.views_downloads` (with HTTP range support).

==================================================  ===========================================================
endpoint                                            what
==================================================  ===========================================================
POST versions/<id>/exports/                         ``{format}``: 202 with the job (queued or running; an
                                                    identical request in flight gets the same job), or 200
                                                    with the finished export and its download URLs
GET versions/<id>/exports/                          the finished exports of a version
GET versions/<id>/exports/<format>/                 one finished export (files, sizes, sha256, URLs); 404
GET versions/<id>/exports/<format>/<path>           download one file; ``Range: bytes=...`` → 206
GET jobs/<id>/                                      a background job: status, progress, message, result, error
==================================================  ===========================================================
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.permissions import IsAdminRole
from curation.models import DatasetVersion, Job
from curation.services import exporting, jobs
from curation.tasks import run_job


class JobSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    # A plain string in the schema: "status" enums of other models would collide with an enum component here.
    status = serializers.CharField(read_only=True, help_text="queued, running, succeeded or failed.")

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "status",
            "progress",
            "message",
            "params",
            "result",
            "error",
            "created_by",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class ExportRequestSerializer(serializers.Serializer):
    format = serializers.ChoiceField(
        choices=exporting.FORMATS,
        default="parquet",
        help_text=(
            "parquet (Science-T2I, all splits), published (the published layout: "
            "Trainset, Science-T2I-S, Science-T2I-C), jsonl (+ image folder) or webdataset."
        ),
    )


class ExportFileSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="Relative to the export directory.")
    bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    url = serializers.CharField(help_text="Download URL (supports HTTP Range requests).")


class ExportSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    format = serializers.ChoiceField(choices=exporting.FORMATS)
    files = ExportFileSerializer(many=True)
    bytes = serializers.IntegerField(help_text="All files together.")
    counts = serializers.JSONField(help_text="Rows per split, task and label; files per split; excluded rows.")
    manifest = serializers.CharField(help_text="The sha256 manifest's path (sha256sum format).")


def export_payload(request, result: dict) -> dict:
    """An export result for the API: no server paths, a download URL per file."""
    files = [
        {
            **f,
            "url": request.build_absolute_uri(
                reverse(
                    "curation-export-download",
                    kwargs={"version_id": result["version"], "export_format": result["format"], "path": f["path"]},
                )
            ),
        }
        for f in result["files"]
    ]
    return {key: result[key] for key in ("version", "format", "bytes", "counts", "manifest")} | {"files": files}


_VERSION = OpenApiParameter("version_id", int, OpenApiParameter.PATH, description="The dataset version id.")
_FORMAT = OpenApiParameter(
    "export_format", str, OpenApiParameter.PATH, enum=list(exporting.FORMATS), description="The export format."
)


class VersionExportsView(APIView):
    """Exports of a frozen dataset version, made in the background and cached once finished."""

    permission_classes = [IsAdminRole]

    @extend_schema(
        parameters=[_VERSION],
        request=ExportRequestSerializer,
        responses={
            202: OpenApiResponse(JobSerializer, description="The export job (new, or the identical one in flight)."),
            200: OpenApiResponse(ExportSerializer, description="A finished export: its files and download URLs."),
            404: OpenApiResponse(description="No such version."),
        },
        summary="Export a dataset version (background job)",
    )
    def post(self, request, version_id: int):
        version = get_object_or_404(DatasetVersion, pk=version_id)
        serializer = ExportRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fmt = serializer.validated_data["format"]
        finished = exporting.finished_export(version, fmt)
        if finished is not None:
            return Response(export_payload(request, finished), status=status.HTTP_200_OK)
        job, _ = jobs.start(Job.Kind.EXPORT, {"version": version.pk, "format": fmt}, request.user, celery_task=run_job)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        parameters=[_VERSION],
        responses={200: ExportSerializer(many=True), 404: OpenApiResponse()},
        summary="The finished exports of a dataset version",
    )
    def get(self, request, version_id: int):
        version = get_object_or_404(DatasetVersion, pk=version_id)
        done = [exporting.finished_export(version, fmt) for fmt in exporting.FORMATS]
        return Response([export_payload(request, result) for result in done if result is not None])


class VersionExportDetailView(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(
        parameters=[_VERSION, _FORMAT],
        responses={200: ExportSerializer, 404: OpenApiResponse(description="Not exported (yet).")},
        summary="One finished export of a dataset version",
    )
    def get(self, request, version_id: int, export_format: str):
        version = get_object_or_404(DatasetVersion, pk=version_id)
        if export_format not in exporting.FORMATS:
            raise NotFound(f"Unknown export format {export_format!r}.")
        finished = exporting.finished_export(version, export_format)
        if finished is None:
            raise NotFound(f"Version {version.pk} has no finished {export_format} export.")
        return Response(export_payload(request, finished))


class JobDetailView(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(
        parameters=[OpenApiParameter("job_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The job id.")],
        responses={200: JobSerializer, 404: OpenApiResponse(description="No such job.")},
        summary="A background import or export job",
    )
    def get(self, request, job_id: int):
        return Response(JobSerializer(get_object_or_404(Job.objects.select_related("created_by"), pk=job_id)).data)
