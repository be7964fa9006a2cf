"""The dataset import API under /api/curation/ (admins only; reviewers and annotators 403, anonymous 401).

=========================  ==========================================================================
endpoint                   what
=========================  ==========================================================================
POST imports/              ``{path, format, split, source, task_default, auto_task, merge_same_prompt,
                           decisions, dry_run}``: 202 with the background job (an identical request in
                           flight gets the same job back); 400 for a path outside
                           ``settings.IMPORT_ROOTS``, one that does not exist, or bad fields (a task
                           default code together with ``auto_task`` included)
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
from curation.services.importing import (
    DECISIONS,
    FORMATS,
    NO_TASK,
    ImportRefused,
    import_params,
    path_exists,
    resolve_import_path,
)
from curation.tasks import run_job


# A pattern, not an enum: an enum here would collide with the export formats' "FormatEnum" component
# (same field name, other choices), which drf-spectacular reports as a warning.
@extend_schema_field({"type": "string", "pattern": "^(" + "|".join(FORMATS) + ")$", "default": "auto"})
class ImportFormatField(serializers.ChoiceField):
    pass


@extend_schema_serializer(component_name="DatasetImport")  # the request component: DatasetImportRequest
class ImportRequestSerializer(serializers.Serializer):
    path = serializers.CharField(
        max_length=1000,
        help_text="A file or directory under an import root (relative paths are relative to the first root).",
    )
    format = ImportFormatField(
        choices=FORMATS,
        default="auto",
        help_text="auto, parquet (Science-T2I), jsonl (tuples + image paths) or prompts (a JSON prompt list).",
    )
    split = serializers.CharField(
        max_length=50,
        required=False,
        allow_blank=True,
        default="",
        help_text="Parquet: import only this split (train, test_S, test_C, ...).",
    )
    source = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        help_text="Source label of new tuples (default: the file or folder name).",
    )
    task_default = serializers.CharField(
        max_length=80,
        required=False,
        allow_blank=True,
        default="",
        help_text="Task code for rows naming no task, or 'none' to import them "
        "without one; empty: such rows are errors.",
    )
    auto_task = serializers.BooleanField(
        default=False,
        help_text="Guess the task of rows naming none from keywords "
        "of the implicit prompt (annotation/task_rules.py; "
        "a guess must fit the discipline the row names). "
        "Rows it cannot assign: errors, or without a task "
        "with task_default 'none'.",
    )
    merge_same_prompt = serializers.BooleanField(
        default=False,
        help_text="A row without a task whose prompt one "
        "tuple has with a task joins that tuple "
        "(several tasks: reported, not merged).",
    )
    decisions = serializers.ChoiceField(
        choices=DECISIONS,
        default="import",
        help_text="import: each pair gets the row's label as an imported decision "
        "and leaves the queue; open: pairs stay open for annotation.",
    )
    dry_run = serializers.BooleanField(default=False, help_text="Validate and count; write nothing.")

    def validate(self, attrs: dict) -> dict:
        default = (attrs.get("task_default") or "").strip()
        if attrs.get("auto_task") and default and default.casefold() != NO_TASK:
            raise serializers.ValidationError(
                {
                    "auto_task": "Give either a task default code or auto_task, not both "
                    "(task_default 'none' goes with auto_task)."
                }
            )
        return attrs

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
            202: OpenApiResponse(
                JobSerializer,
                description="The import job (new, or the identical one in flight). Poll GET /api/curation/jobs/<id>/.",
            ),
            400: OpenApiResponse(description="Bad fields, or a path outside the import roots."),
        },
        summary="Import a dataset (background job)",
    )
    def post(self, request):
        serializer = ImportRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        params = import_params(data)
        job, _ = jobs.start(Job.Kind.IMPORT, params, request.user, celery_task=run_job)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
