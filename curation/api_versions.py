"""The dataset-version API under /api/curation/versions/.

Thin views: an input serializer validates the shape, :mod:`curation.services.versions` decides
(and refuses bad filters with ``VersionError`` → 400), output serializers render. Versions are
immutable: there is no PUT, PATCH or DELETE (405).

=================================  =================  ===================================================
endpoint                           who                what
=================================  =================  ===================================================
GET versions/                      reviewers, admins  every version, newest first, with counts
POST versions/                     admins             the filters (see ``VersionRequest``): 201 with the
                                                      frozen version; 400 bad input, duplicate name or
                                                      nothing selected
GET versions/<id>/                 reviewers, admins  one version with counts, filters and parent
GET versions/<id>/members/         reviewers, admins  its members, by pair id, paginated; ``?split=``
GET versions/<a>/diff/<b>/         reviewers, admins  pairs added, removed, relabelled and moved a → b
=================================  =================  ===================================================
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.permissions import IsReviewer, ReviewerReadAdminWrite
from annotation.query_params import choice_param as _choice_param
from annotation.query_params import openapi_param as _param
from curation.models import DatasetVersion, VersionMember
from curation.services import splits, versions


# The output serializers of a version render any stored JSON: a version made outside build_version (a
# benchmark seed, an old row) may lack keys, which render as zero, empty or null instead of failing (500).
class SplitCountsSerializer(serializers.Serializer):
    train = serializers.IntegerField(default=0)
    validation = serializers.IntegerField(default=0)
    test_S = serializers.IntegerField(default=0)
    test_C = serializers.IntegerField(default=0)


class TaskCountsSerializer(SplitCountsSerializer):
    total = serializers.IntegerField(default=0)


class VersionCountsSerializer(serializers.Serializer):
    total = serializers.IntegerField(default=0)
    splits = SplitCountsSerializer(default=dict)
    tasks = serializers.DictField(child=TaskCountsSerializer(), default=dict, help_text="Per task code.")


class VersionFiltersSerializer(serializers.Serializer):
    tasks = serializers.ListField(child=serializers.CharField(), allow_null=True, help_text="Null: all tasks.")
    disciplines = serializers.ListField(
        child=serializers.CharField(), allow_null=True, help_text="Null: all disciplines."
    )
    outcomes = serializers.ListField(child=serializers.CharField(), default=list)
    min_agreement = serializers.FloatField(allow_null=True)
    exclude_pairs = serializers.ListField(child=serializers.IntegerField(), default=list)
    exclude_tuples = serializers.ListField(child=serializers.IntegerField(), default=list)


class SplitRatiosSerializer(serializers.Serializer):
    train = serializers.FloatField(min_value=0, max_value=1)
    validation = serializers.FloatField(min_value=0, max_value=1)
    test = serializers.FloatField(
        min_value=0, max_value=1, help_text="Applies within simple scenes (test_S) and within complex scenes (test_C)."
    )


class SplitRatiosSeedSerializer(serializers.Serializer):
    train = serializers.FloatField(allow_null=True)
    validation = serializers.FloatField(allow_null=True)
    test = serializers.FloatField(
        allow_null=True, help_text="Within simple scenes (test_S) and within complex scenes (test_C)."
    )
    seed = serializers.IntegerField(allow_null=True)
    keep_imported_splits = serializers.BooleanField(
        required=False, help_text="Whether imported pairs kept the split they came from."
    )
    imported_split_groups = serializers.IntegerField(
        required=False, help_text="How many groups kept an imported split."
    )


class VersionSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True)
    counts = VersionCountsSerializer(read_only=True)
    filters = VersionFiltersSerializer(read_only=True)
    split_ratios = SplitRatiosSeedSerializer(read_only=True)

    class Meta:
        model = DatasetVersion
        fields = [
            "id",
            "name",
            "content_hash",
            "counts",
            "filters",
            "split_ratios",
            "parent",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields


# Named "Version" so that the request component is "VersionRequest".
@extend_schema_serializer(component_name="Version")
class VersionInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    tasks = serializers.ListField(
        child=serializers.CharField(max_length=8),
        required=False,
        allow_null=True,
        help_text="Task codes; absent, null or empty: all tasks.",
    )
    disciplines = serializers.ListField(
        child=serializers.CharField(max_length=40),
        required=False,
        allow_null=True,
        help_text="Discipline slugs; absent or empty: all.",
    )
    outcomes = serializers.ListField(
        child=serializers.ChoiceField(choices=versions.SELECTABLE_OUTCOMES),
        required=False,
        allow_empty=False,
        default=list(versions.DEFAULT_OUTCOMES),
        help_text="Consensus outcomes to include; pending and disputed pairs have no label. Pairs labelled "
        "both/neither come only with 'rejected'.",
    )
    min_agreement = serializers.FloatField(
        required=False,
        allow_null=True,
        min_value=0,
        max_value=1,
        help_text="Minimum share of agreeing judgements (adjudicated pairs are exempt).",
    )
    exclude_pairs = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list)
    exclude_tuples = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, default=list)
    ratios = SplitRatiosSerializer(required=False, help_text="Default 0.8 / 0.1 / 0.1; must sum to 1.")
    seed = serializers.IntegerField(required=False, default=0)
    parent = serializers.PrimaryKeyRelatedField(
        queryset=DatasetVersion.objects.all(),
        required=False,
        allow_null=True,
        help_text="The version whose split assignments to keep. Absent: the latest version; null: none.",
    )
    keep_imported_splits = serializers.BooleanField(
        required=False,
        default=True,
        help_text="Imported pairs keep the split they came from (a published test set stays a test set); "
        "false: draw every group.",
    )


class VersionMemberSerializer(serializers.ModelSerializer):
    tuple = serializers.IntegerField(source="pair.tuple_id", read_only=True)
    task = serializers.CharField(source="pair.tuple.task.code", read_only=True, allow_null=True)

    class Meta:
        model = VersionMember
        fields = ["pair", "tuple", "task", "label", "outcome", "agreement", "n_judgements", "split", "group_key"]
        read_only_fields = fields


class ChangeSerializer(serializers.Serializer):
    pair = serializers.IntegerField()
    to = serializers.CharField()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.CharField()  # a keyword in Python
        return fields


class DiffCountsSerializer(serializers.Serializer):
    added = serializers.IntegerField()
    removed = serializers.IntegerField()
    relabelled = serializers.IntegerField()
    moved = serializers.IntegerField()
    unchanged = serializers.IntegerField()


class VersionDiffSerializer(serializers.Serializer):
    a = serializers.IntegerField(help_text="The older version.")
    b = serializers.IntegerField(help_text="The newer version.")
    added = serializers.ListField(child=serializers.IntegerField(), help_text="Pair ids only in b.")
    removed = serializers.ListField(child=serializers.IntegerField(), help_text="Pair ids only in a.")
    relabelled = ChangeSerializer(many=True, help_text="Shared pairs whose label changed.")
    moved = ChangeSerializer(many=True, help_text="Shared pairs whose split changed.")
    counts = DiffCountsSerializer()


def _versions():
    return DatasetVersion.objects.select_related("created_by").order_by("-created_at", "-id")


@extend_schema_view(get=extend_schema(summary="Every dataset version, newest first"))
class VersionListView(generics.ListAPIView):
    """Frozen dataset versions with their counts per task and split."""

    serializer_class = VersionSerializer
    permission_classes = [ReviewerReadAdminWrite]

    def get_queryset(self):
        return _versions()

    @extend_schema(
        request=VersionInputSerializer,
        responses={
            201: OpenApiResponse(VersionSerializer, description="Frozen."),
            400: OpenApiResponse(description="Bad filters, a duplicate name, or nothing selected."),
        },
        summary="Build and freeze a dataset version",
    )
    def post(self, request):
        serializer = VersionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = dict(serializer.validated_data)
        if "parent" not in fields:
            fields["parent"] = versions.LATEST
        name = fields.pop("name")
        try:
            version = versions.build_version(request.user, name, **fields)
        except versions.VersionError as exc:
            field, _, message = str(exc).partition(": ")
            known = field in VersionInputSerializer().fields
            raise ValidationError({field: [message]} if known else {"detail": str(exc)}) from None
        return Response(VersionSerializer(version).data, status=status.HTTP_201_CREATED)


@extend_schema_view(get=extend_schema(summary="One dataset version with its counts"))
class VersionDetailView(generics.RetrieveAPIView):
    serializer_class = VersionSerializer
    permission_classes = [IsReviewer]

    def get_queryset(self):
        return _versions()


@extend_schema_view(
    get=extend_schema(
        parameters=[_param("split", f"One of {', '.join(splits.SPLITS)}.")],
        summary="The members of a version, by pair id",
    )
)
class VersionMemberListView(generics.ListAPIView):
    """Each pair with the label, outcome, agreement and split frozen in the version."""

    serializer_class = VersionMemberSerializer
    permission_classes = [IsReviewer]

    def get_queryset(self):
        version = get_object_or_404(DatasetVersion, pk=self.kwargs["pk"])
        members = VersionMember.objects.filter(version=version).select_related("pair__tuple__task").order_by("pair_id")
        if split := _choice_param(self.request, "split", list(splits.SPLITS)):
            members = members.filter(split=split)
        return members


class VersionDiffView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        responses={200: VersionDiffSerializer, 404: OpenApiResponse(description="No such version.")},
        summary="What changed from version a to version b",
    )
    def get(self, request, a: int, b: int):
        old = get_object_or_404(DatasetVersion, pk=a)
        new = get_object_or_404(DatasetVersion, pk=b)
        return Response(versions.diff_versions(old, new))
