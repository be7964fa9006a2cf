"""``GET /api/ml/leaderboard/?version=&view=discipline|task&split=``: the live "Table 1" as JSON (admins).

The same table as the page ``/ml/leaderboard/`` (:mod:`ml.leaderboard`): columns, the paper's reference rows
(labelled, discipline view only), the pooled humans (leave-one-out), one row per annotator and one per
evaluated judge. A cell is ``{accuracy, n, low, high}`` (a reference cell has only ``accuracy`` and
``reference: true``) or null. Without ``version``: the newest version.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.permissions import IsAdminRole
from annotation.query_params import int_param, openapi_param
from ml import leaderboard


class AccuracyCellSerializer(serializers.Serializer):
    accuracy = serializers.FloatField(allow_null=True)
    n = serializers.IntegerField(required=False)
    low = serializers.FloatField(required=False, allow_null=True)
    high = serializers.FloatField(required=False, allow_null=True)
    reference = serializers.BooleanField(required=False)


class LeaderboardColumnSerializer(serializers.Serializer):
    split = serializers.CharField()
    group = serializers.CharField(help_text="A discipline name or task code; empty for the whole split (Avg).")
    label = serializers.CharField(help_text="As the paper writes it: S-Phys, S-Avg, C-Chem...")


class LeaderboardRowSerializer(serializers.Serializer):
    label = serializers.CharField()
    kind = serializers.CharField(help_text="reference, humans, annotator, scorer or judge.")
    run = serializers.IntegerField(source="run.pk", allow_null=True, default=None)
    note = serializers.CharField()
    cells = serializers.ListField(child=AccuracyCellSerializer(allow_null=True))


class LeaderboardSerializer(serializers.Serializer):
    version = serializers.IntegerField(source="version.pk")
    version_name = serializers.CharField(source="version.name")
    view = serializers.CharField()
    columns = LeaderboardColumnSerializer(many=True)
    reference = LeaderboardRowSerializer(many=True)
    reference_source = serializers.CharField()
    humans = LeaderboardRowSerializer(allow_null=True)
    annotators = LeaderboardRowSerializer(many=True)
    judges = LeaderboardRowSerializer(many=True)


class LeaderboardView(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(
        parameters=[
            openapi_param("version", "A dataset version id (default: the newest).", int),
            openapi_param("view", "discipline (default) or task."),
            openapi_param("split", "The split of the per-task view: test_S (default), test_C or validation."),
        ],
        responses={200: LeaderboardSerializer, 403: OpenApiResponse(description="Not an admin."), 404: None},
        summary="Accuracy of humans and judges on a dataset version, with n and 95 % intervals",
    )
    def get(self, request):
        wanted = int_param(request, "version")
        versions = leaderboard.versions()
        version = versions.filter(pk=wanted).first() if wanted is not None else versions.first()
        if version is None:
            raise NotFound("No such dataset version.")
        data = leaderboard.table(
            version, request.query_params.get("view", "discipline"), request.query_params.get("split")
        )
        return Response(
            LeaderboardSerializer({**data, "version": version, "reference_source": leaderboard.PAPER_SOURCE}).data
        )
