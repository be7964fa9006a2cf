"""``GET /api/curation/agreement/``: inter-annotator agreement for reviewers and admins.

A thin view over :func:`curation.services.agreement.agreement_report`: the query serializer
validates the filters (an unknown task or discipline is a 400, not an empty report), the output
serializers document the report's shape in the OpenAPI schema and render it unchanged.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Discipline, Task
from annotation.permissions import IsReviewer
from annotation.serializers import TaskByCodeField
from curation.models import Label
from curation.services.agreement import DEFAULT_MIN_SHARED, agreement_report


class AgreementQuerySerializer(serializers.Serializer):
    task = TaskByCodeField(queryset=Task.objects.all(), required=False, help_text="Only this task code.")
    discipline = serializers.SlugRelatedField(
        slug_field="slug", queryset=Discipline.objects.all(), required=False, help_text="Only this discipline slug."
    )
    min_shared = serializers.IntegerField(
        min_value=1,
        default=DEFAULT_MIN_SHARED,
        help_text="Cohen's κ only for two annotators who judged at least this many of the same pairs.",
    )


class AgreementStatisticSerializer(serializers.Serializer):
    value = serializers.FloatField(allow_null=True, help_text="Null when undefined; `reason` says why.")
    n_items = serializers.IntegerField(help_text="Pairs the statistic was computed on.")
    n_judgements = serializers.IntegerField(help_text="Judgements the statistic was computed on.")
    reason = serializers.CharField(allow_null=True, help_text="Why the value is null; null otherwise.")


class FleissStatisticSerializer(AgreementStatisticSerializer):
    raters_per_item = serializers.IntegerField(
        allow_null=True, help_text="The modal number of judgements per pair: only pairs with it are used."
    )
    n_items_excluded = serializers.IntegerField(help_text="Pairs left out for another number of judgements.")


class AgreementGroupSerializer(serializers.Serializer):
    n_pairs = serializers.IntegerField()
    n_judgements = serializers.IntegerField()
    krippendorff_alpha = AgreementStatisticSerializer(help_text="Nominal α on pairs with two or more judgements.")
    fleiss_kappa = FleissStatisticSerializer()


class TaskAgreementSerializer(AgreementGroupSerializer):
    task = serializers.CharField(help_text="Task code.")
    name = serializers.CharField()
    discipline = serializers.CharField(help_text="Discipline slug.")


class DisciplineAgreementSerializer(AgreementGroupSerializer):
    discipline = serializers.CharField(help_text="Discipline slug.")
    name = serializers.CharField()


class CohenMatrixSerializer(serializers.Serializer):
    min_shared = serializers.IntegerField()
    annotators = serializers.ListField(child=serializers.CharField(), help_text="Usernames: rows and columns.")
    matrix = serializers.ListField(
        child=serializers.ListField(child=AgreementStatisticSerializer()),
        help_text="Symmetric; n_items is the number of pairs both judged (the diagonal: each one's judgements).",
    )


class AnnotatorAgreementSerializer(serializers.Serializer):
    annotator = serializers.CharField()
    n_judgements = serializers.IntegerField(help_text="All their judgements in scope.")
    n_agree = serializers.IntegerField(help_text="Judgements equal to the pair's decided consensus label.")
    agreement = AgreementStatisticSerializer(
        help_text="n_agree over their judgements on pairs with a decided consensus."
    )


class AgreementFiltersSerializer(serializers.Serializer):
    task = serializers.CharField(allow_null=True)
    discipline = serializers.CharField(allow_null=True)


class AgreementSerializer(serializers.Serializer):
    filters = AgreementFiltersSerializer()
    labels = serializers.ListField(
        child=serializers.CharField(), help_text=f"The nominal categories: {', '.join(Label.values)}."
    )
    overall = AgreementGroupSerializer()
    tasks = TaskAgreementSerializer(many=True)
    disciplines = DisciplineAgreementSerializer(many=True)
    cohen = CohenMatrixSerializer()
    annotators = AnnotatorAgreementSerializer(many=True)


class AgreementView(APIView):
    """Agreement of the judgements of non-gold pairs, per task, per discipline and overall."""

    permission_classes = [IsReviewer]

    @extend_schema(
        parameters=[AgreementQuerySerializer],
        responses=AgreementSerializer,
        summary="Krippendorff's α, Fleiss' κ, pairwise Cohen's κ and agreement with consensus",
    )
    def get(self, request):
        query = AgreementQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        filters = query.validated_data
        report = agreement_report(
            task=filters["task"].code if "task" in filters else None,
            discipline=filters["discipline"].slug if "discipline" in filters else None,
            min_shared=filters["min_shared"],
        )
        return Response(AgreementSerializer(report).data)
