"""The dataset import API under /api/curation/ (admins only; reviewers and annotators 403, anonymous 401).

=========================  ==========================================================================
endpoint                   what
=========================  ==========================================================================
POST imports/              ``{path, format, split, source, task_default, dry_run}``: 202 with the background
                           job (an identical request in flight gets the same job back); 400 for a path
                           outside ``settings.IMPORT_ROOTS``, one that does not exist, or bad fields
GET jobs/<id>/             the job: status, progress, message, result (the import report), error
                           (curation/api_exports.py)
=========================  ==========================================================================

The server only reads files under the import roots: an admin puts the dataset there (``scp``, a mounted
volume) and names it relative to the first root, or absolutely. The import itself is
:func:`curation.services.importing.import_dataset`; a job with row errors fails, writes nothing, and keeps
the report (with every row's error) in ``result``.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.permissions import IsAdminRole
from curation.api_exports import JobSerializer
from curation.models import Job
from curation.services import jobs
from curation.services.importing import FORMATS, ImportRefused, path_exists, resolve_import_path


# A pattern, not an enum: an enum here would collide with the export formats' "FormatEnum" component
# (same field name, other choices), which drf-spectacular reports as a warning.
@extend_schema_field({"type": "string", "pattern": "^(" + "|".join(FORMATS) + ")$", "default": "auto"})
class ImportFormatField(serializers.ChoiceField):
    pass


@extend_schema_serializer(component_name="DatasetImport")  # the request component: DatasetImportRequest
class ImportRequestSerializer(serializers.Serializer):
    path = serializers.CharField(max_length=1000, help_text="A file or directory under an import root "
                                                           "(relative paths are relative to the first root).")
    format = ImportFormatField(choices=FORMATS, default="auto",
                                     help_text="auto, parquet (Science-T2I), jsonl (tuples + image paths) or "
                                               "prompts (a JSON prompt list).")
    split = serializers.CharField(max_length=50, required=False, allow_blank=True, default="",
                                  help_text="Parquet: import only this split (train, test_S, test_C, ...).")
    source = serializers.CharField(max_length=200, required=False, allow_blank=True, default="",
                                   help_text="Source label of new tuples (default: the file or folder name).")
    task_default = serializers.CharField(max_length=80, required=False, allow_blank=True, default="",
                                         help_text="Task code for rows naming no task, or 'none' to import them "
                                                   "without one; empty: such rows are errors.")
    dry_run = serializers.BooleanField(default=False, help_text="Validate and count; write nothing.")

    def validate_path(self, value: str) -> str:
        try:
            resolved = resolve_import_path(value)
        except ImportRefused as exc:
            raise serializers.ValidationError(str(exc)) from None
        if not path_exists(resolved):
            raise serializers.ValidationError(f"{value!r} does not exist under the import root.")
        return str(resolved)


class ImportsView(APIView):
    """Import a Science-T2I dataset (parquet, JSONL + images, prompt list) from the server's import roots."""

    permission_classes = [IsAdminRole]

    @extend_schema(
        request=ImportRequestSerializer,
        responses={
            202: OpenApiResponse(JobSerializer, description="The import job (new, or the identical one in flight). "
                                                            "Poll GET /api/curation/jobs/<id>/."),
            400: OpenApiResponse(description="Bad fields, or a path outside the import roots."),
        },
        summary="Import a dataset (background job)",
    )
    def post(self, request):
        serializer = ImportRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        params = {"path": data["path"], "fmt": data["format"], "split": data["split"] or None,
                  "source": data["source"] or None, "task_default": data["task_default"] or None,
                  "dry_run": data["dry_run"]}
        job, _ = jobs.start(Job.Kind.IMPORT, params, request.user)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
