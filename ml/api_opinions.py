"""``GET /api/ml/pairs/<id>/opinions/``: the active scorer's and the LMM judges' opinions of a pair (reviewers).

Advisory: the adjudication page fetches it only when the reviewer asks ("Show the models' opinions",
``static/ml/opinions.js``), after they have looked at the pair. It never carries judgements or the
consensus (:func:`ml.queries.pair_opinions`).
"""

from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Pair
from annotation.permissions import IsReviewer
from ml import queries


class PairOpinionSerializer(serializers.Serializer):
    model = serializers.IntegerField()
    name = serializers.CharField()
    prefers_expected = serializers.FloatField(
        allow_null=True, help_text="0..1: how much it prefers the expected image; null: no readable answer."
    )
    run = serializers.IntegerField(allow_null=True)
    protocol = serializers.CharField(required=False)


class PairOpinionsSerializer(serializers.Serializer):
    pair = serializers.IntegerField()
    scorer = PairOpinionSerializer(allow_null=True)
    judges = PairOpinionSerializer(many=True)


class PairOpinionsView(APIView):
    permission_classes = [IsReviewer]

    @extend_schema(
        responses={
            200: PairOpinionsSerializer,
            403: OpenApiResponse(description="Not a reviewer or admin."),
            404: OpenApiResponse(description="No such pair."),
        },
        summary="The active scorer's and the LMM judges' opinions of a pair (advisory)",
    )
    def get(self, request, pk: int):
        pair = get_object_or_404(Pair, pk=pk)
        return Response(PairOpinionsSerializer(queries.pair_opinions(pair)).data)
