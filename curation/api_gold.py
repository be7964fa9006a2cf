"""The gold and annotator-quality API under /api/curation/.

Thin views: an input serializer validates, :mod:`curation.services.gold` decides, an output
serializer renders.

======================================  =================  ==========================================
endpoint                                who                what
======================================  =================  ==========================================
GET gold/                               reviewers, admins  every gold item, newest first
POST gold/                              admins             ``{pair, answer, qualification?}``: 201
                                                           marked, 200 answer changed or unchanged;
                                                           404 unknown pair
DELETE gold/<pair_id>/                  admins             unmark: 204; 404 when not gold
GET quality/                            admins             gold accuracy per annotator; ``?flagged=``
POST quality/<user_id>/restore/         admins             clear the flag and the pause: 200
======================================  =================  ==========================================
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation.models import Pair
from annotation.permissions import IsAdminRole, ReviewerReadAdminWrite
from annotation.query_params import choice_param as _choice_param
from annotation.query_params import openapi_param as _param
from curation.models import AnnotatorQuality, GoldItem, Label
from curation.services import gold


class GoldItemSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)
    qualification = serializers.BooleanField(
        source="pair.is_qualification", read_only=True, help_text="In its task's qualification set."
    )

    class Meta:
        model = GoldItem
        fields = ["pair", "answer", "qualification", "created_by", "created_at"]
        read_only_fields = fields


# Named "GoldItem" so that the request component is "GoldItemRequest".
@extend_schema_serializer(component_name="GoldItem")
class GoldItemInputSerializer(serializers.Serializer):
    # A plain id, not a related field: an unknown pair is a 404, not a 400.
    pair = serializers.IntegerField(min_value=1, help_text="The pair id.")
    answer = serializers.ChoiceField(choices=Label.choices, help_text="Relative to the pair's expected image.")
    qualification = serializers.BooleanField(
        required=False,
        allow_null=True,
        default=None,
        help_text="Put the pair in its task's qualification set (true) or take it out (false); absent: as it is.",
    )


class AnnotatorQualitySerializer(serializers.ModelSerializer):
    user_id = serializers.IntegerField(read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    accuracy = serializers.FloatField(
        source="gold_accuracy",
        read_only=True,
        allow_null=True,
        help_text="gold_correct / gold_judged; null before the first gold judgement.",
    )
    paused = serializers.SerializerMethodField()
    restored_by = serializers.CharField(source="restored_by.username", read_only=True, allow_null=True)

    class Meta:
        model = AnnotatorQuality
        fields = [
            "user_id",
            "username",
            "gold_judged",
            "gold_correct",
            "accuracy",
            "flagged",
            "paused",
            "flagged_at",
            "restored_at",
            "restored_by",
        ]
        read_only_fields = fields

    def get_paused(self, quality) -> bool:
        expertise = getattr(quality.user, "expertise", None)
        return bool(expertise and expertise.paused)


@extend_schema_view(get=extend_schema(summary="Every gold item, newest first"))
class GoldListView(generics.ListAPIView):
    """Pairs with a known answer, mixed into annotators' queues to measure them."""

    serializer_class = GoldItemSerializer
    permission_classes = [ReviewerReadAdminWrite]

    def get_queryset(self):
        return gold.gold_items()

    @extend_schema(
        request=GoldItemInputSerializer,
        responses={
            201: OpenApiResponse(GoldItemSerializer, description="The pair is gold now."),
            200: OpenApiResponse(GoldItemSerializer, description="It was gold already; the answer is as given."),
            404: OpenApiResponse(description="No such pair."),
        },
        summary="Make a pair gold, or change its answer",
    )
    def post(self, request):
        serializer = GoldItemInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        fields = serializer.validated_data
        try:
            item, created = gold.mark_gold(
                request.user, fields["pair"], fields["answer"], qualification=fields.get("qualification")
            )
        except Pair.DoesNotExist:
            raise NotFound(f"No pair {fields['pair']}.") from None
        return Response(
            GoldItemSerializer(item).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK
        )


class GoldDetailView(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(
        responses={
            204: OpenApiResponse(description="The pair is a normal pair again."),
            404: OpenApiResponse(description="No such pair, or it is not gold."),
        },
        summary="Unmark a gold pair",
    )
    def delete(self, request, pair_id: int):
        try:
            gold.unmark_gold(request.user, pair_id)
        except (Pair.DoesNotExist, gold.NotGold):
            raise NotFound(f"Pair {pair_id} is not a gold item.") from None
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    get=extend_schema(
        parameters=[_param("flagged", "true: only flagged annotators; false: only the others.")],
        summary="Gold accuracy of every annotator with gold judgements",
    )
)
class QualityListView(generics.ListAPIView):
    """Counters cover the current assessment period: since the annotator's last restore."""

    serializer_class = AnnotatorQualitySerializer
    permission_classes = [IsAdminRole]

    def get_queryset(self):
        rows = gold.quality_rows()
        flagged = _choice_param(self.request, "flagged", ["true", "false"])
        return rows if flagged is None else rows.filter(flagged=flagged == "true")


class QualityRestoreView(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(
        request=None,
        responses={200: AnnotatorQualitySerializer, 404: OpenApiResponse(description="No such user.")},
        summary="Restore a flagged annotator: un-pause them and start a fresh assessment period",
    )
    def post(self, request, user_id: int):
        user = get_object_or_404(get_user_model(), pk=user_id)
        return Response(AnnotatorQualitySerializer(gold.restore(request.user, user)).data)
