"""The curation API under /api/curation/: consensus per pair and reviewer adjudications.

Reviewers and admins only (annotators 403, anonymous 401). Thin views: an input serializer
validates, :mod:`curation.services.adjudication` decides, an output serializer renders.

=============================  ==========================================================
endpoint                       what
=============================  ==========================================================
GET consensus/                 every consensus row; ``?outcome=``, ``?task=``
GET consensus/<pair_id>/       one pair's consensus (404 before its first judgement)
GET adjudications/             every adjudication, newest first; ``?pair=``
POST adjudications/            ``{pair, label, comment}``: 201; 400 bad label; 404 unknown pair
=============================  ==========================================================
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.response import Response

from annotation.models import Pair
from annotation.permissions import IsReviewer
from annotation.query_params import choice_param as _choice_param
from annotation.query_params import int_param as _int_param
from annotation.query_params import openapi_param as _param
from curation import serializers as s
from curation.models import Adjudication, Consensus
from curation.services import adjudication as service


@extend_schema_view(
    list=extend_schema(
        parameters=[
            _param("outcome", f"One of {', '.join(Consensus.Outcome.values)}."),
            _param("task", "Only pairs of this task code."),
        ],
        summary="Consensus of every pair that has been judged",
    ),
    retrieve=extend_schema(
        parameters=[OpenApiParameter("pair_id", int, OpenApiParameter.PATH, description="The pair id.")],
        summary="One pair's consensus",
    ),
)
class ConsensusViewSet(viewsets.ReadOnlyModelViewSet):
    """What each pair's judgements say, or the reviewer's decision (outcome ``adjudicated``)."""

    serializer_class = s.ConsensusSerializer
    permission_classes = [IsReviewer]
    lookup_field = "pair_id"
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        items = Consensus.objects.select_related("pair__tuple__task").order_by("pair_id")
        if outcome := _choice_param(self.request, "outcome", Consensus.Outcome.values):
            items = items.filter(outcome=outcome)
        if task := self.request.query_params.get("task"):
            items = items.filter(pair__tuple__task__code__iexact=task)
        return items


@extend_schema_view(
    list=extend_schema(
        parameters=[_param("pair", "Only adjudications of this pair id.", int)], summary="Adjudications, newest first"
    ),
)
class AdjudicationViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Reviewers' decisions; the latest one per pair is the pair's label."""

    serializer_class = s.AdjudicationSerializer
    permission_classes = [IsReviewer]

    def get_queryset(self):
        items = Adjudication.objects.select_related("reviewer").order_by("-created_at", "-id")
        if (pair_id := _int_param(self.request, "pair")) is not None:
            items = items.filter(pair_id=pair_id)
        return items

    @extend_schema(
        request=s.AdjudicationInputSerializer,
        responses={
            201: s.AdjudicationSerializer,
            400: OpenApiResponse(description="Invalid label or comment, or a gold pair."),
            404: OpenApiResponse(description="No such pair."),
        },
        summary="Decide a pair's label",
    )
    def create(self, request):
        serializer = s.AdjudicationInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        try:
            decision = service.adjudicate(request.user, fields["pair"], fields["label"], fields["comment"])
        except Pair.DoesNotExist:
            raise NotFound(f"No pair {fields['pair']}.") from None
        except service.InvalidAdjudication as exc:
            raise ValidationError({"detail": str(exc)}) from None
        return Response(self.get_serializer(decision).data, status=status.HTTP_201_CREATED)
